//! How one ProverPool is shared among namespaces (which namespaces may submit to it, and the
//! weighted share of its slots each one gets), and how it reuses results.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Who may submit ProofJobs to a pool, and how its slots are shared among them.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SharingSpec {
    /// Namespaces, besides the pool's own, whose ProofJobs may name this pool in
    /// `spec.poolRef` (with `poolRef.namespace`). Unset: only the pool's own namespace; `{}`:
    /// every namespace. A job from a namespace not selected fails at once with reason
    /// `NamespaceNotAdmitted`. The job, its input and its result stay in the job's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Weights and caps of particular namespaces. While several namespaces have jobs queued,
    /// each gets slots in proportion to its weight; a namespace may use slots others leave
    /// idle and gives them back as the others' jobs arrive (running proofs are never
    /// preempted). Namespaces not listed weigh `defaultWeight`.
    /// Each namespace at most once (the API server refuses a second entry).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["namespace"]))]
    pub namespaces: Vec<NamespaceShare>,

    /// Weight of a namespace not listed in `namespaces` (1 to 1000, default 1).
    #[serde(default = "default_weight")]
    #[schemars(range(min = 1, max = 1000))]
    pub default_weight: i32,

    /// Most jobs of any one namespace not listed in `namespaces` that run at once. Unset: no
    /// cap beyond the pool's slots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100_000))]
    pub default_max_running: Option<i32>,
}

/// The weight and cap of one namespace in a shared pool.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceShare {
    /// The namespace.
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,

    /// Its weight (1 to 1000, default 1): with weights 3 and 1, two busy namespaces get three
    /// quarters and one quarter of the slots.
    #[serde(default = "default_weight")]
    #[schemars(range(min = 1, max = 1000))]
    pub weight: i32,

    /// Most of its jobs that run at once, even when the pool has idle slots. Unset:
    /// `defaultMaxRunning`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100_000))]
    pub max_running: Option<i32>,
}

fn default_weight() -> i32 {
    1
}

impl Default for SharingSpec {
    fn default() -> Self {
        Self {
            namespace_selector: None,
            namespaces: Vec::new(),
            default_weight: default_weight(),
            default_max_running: None,
        }
    }
}

impl SharingSpec {
    /// The weight and the cap on running jobs of `namespace`.
    pub fn share_of(&self, namespace: &str) -> (u32, Option<u32>) {
        let listed = self.namespaces.iter().find(|n| n.namespace == namespace);
        let weight = listed.map_or(self.default_weight, |n| n.weight);
        let cap = listed
            .and_then(|n| n.max_running)
            .or(self.default_max_running);
        (weight.max(1) as u32, cap.map(|c| c.max(1) as u32))
    }

    /// Whether any namespace has a cap on its running jobs.
    pub fn has_caps(&self) -> bool {
        self.default_max_running.is_some()
            || self.namespaces.iter().any(|n| n.max_running.is_some())
    }
}

/// One namespace's jobs on a pool, on the pool's status.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceQueue {
    /// The namespace the jobs are in.
    pub namespace: String,

    /// Its weight on this pool.
    pub weight: i32,

    /// Its jobs waiting for a slot.
    #[serde(default)]
    pub queued: i32,

    /// Its jobs being proved now.
    #[serde(default)]
    pub running: i32,

    /// The percentage of the pool's slots it is due while it has jobs: its weight over the
    /// weights of every namespace with queued or running jobs.
    #[serde(default)]
    pub share_percent: i32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn listed_namespaces_take_their_weight_and_cap_the_rest_the_defaults() {
        let sharing: SharingSpec = serde_json::from_value(json!({
            "namespaces": [{"namespace": "team-a", "weight": 3, "maxRunning": 5}],
            "defaultMaxRunning": 2
        }))
        .unwrap();
        assert_eq!(sharing.share_of("team-a"), (3, Some(5)));
        assert_eq!(sharing.share_of("team-b"), (1, Some(2)));
        assert_eq!(SharingSpec::default().share_of("x"), (1, None));
    }
}

/// Reusing verified results: a job whose input and parameters match an earlier verified job's
/// gets that proof without proving.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ResultReuse {
    /// Also reuse results of jobs in other namespaces (default false: only results of the
    /// job's own namespace). The job then learns that someone proved the same input, and gets
    /// the proof; the other job's name is not shown.
    #[serde(default)]
    pub across_namespaces: bool,
}
