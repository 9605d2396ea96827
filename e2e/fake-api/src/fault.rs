//! Fault injection: rules that pick requests by method, path and query, to hold them behind a
//! gate (an API server that is slow to answer) or to answer them with an error (one that fails).

use std::sync::Arc;

use http::{Method, StatusCode};
use tokio::sync::watch;

/// Which requests a fault applies to.
///
/// ```
/// use zkfleet_fake_api::Rule;
/// // Status writes of any object: PUT .../pods/p/status
/// let status_writes = Rule::new("PUT", "/status");
/// // Watches of ConfigMaps, not lists: GET .../configmaps?watch=true
/// let configmap_watches = Rule::new("GET", "/configmaps").with_query("watch=true");
/// # let _ = (status_writes, configmap_watches);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    method: String,
    path_contains: String,
    query_contains: Option<String>,
}

impl Rule {
    /// Requests with `method` (any case; `"*"` for every method) whose path (without the query
    /// string) contains `path_contains`: a suffix such as `"/status"`, or a segment such as
    /// `"/configmaps/"`.
    pub fn new(method: &str, path_contains: &str) -> Self {
        Self {
            method: method.to_ascii_uppercase(),
            path_contains: path_contains.to_owned(),
            query_contains: None,
        }
    }

    /// Only requests whose query string, as sent (percent-encoded), contains `query_contains`.
    #[must_use]
    pub fn with_query(mut self, query_contains: &str) -> Self {
        self.query_contains = Some(query_contains.to_owned());
        self
    }

    pub(crate) fn matches(&self, method: &Method, path: &str, query: &str) -> bool {
        (self.method == "*" || self.method == method.as_str())
            && path.contains(&self.path_contains)
            && self
                .query_contains
                .as_ref()
                .is_none_or(|wanted| query.contains(wanted.as_str()))
    }
}

/// Holds the requests of a [`FakeApi::hold`](crate::FakeApi::hold) rule until it is opened.
///
/// Opening is final: requests matching the rule afterwards pass straight through. Dropping the
/// gate opens it, so a test that fails early does not leave requests hanging.
#[derive(Debug)]
pub struct Gate {
    state: Arc<GateState>,
}

#[derive(Debug)]
pub(crate) struct GateState {
    opened: watch::Sender<bool>,
    /// How many requests have reached the gate.
    arrivals: watch::Sender<usize>,
}

impl Gate {
    /// Lets every held request (and every later one) through.
    pub fn open(&self) {
        self.state.opened.send_replace(true);
    }

    /// Resolves once a request has reached the gate: it is then held, not yet answered, and
    /// nothing it would write has been written. Resolves at once if one already has.
    pub async fn reached(&self) {
        let mut arrivals = self.state.arrivals.subscribe();
        // The sender lives in `self.state`, so the wait cannot fail.
        let _ = arrivals.wait_for(|count| *count > 0).await;
    }

    /// How many requests have reached the gate so far, held or let through.
    pub fn arrivals(&self) -> usize {
        *self.state.arrivals.borrow()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
    }
}

impl GateState {
    /// Waits until the gate is opened.
    pub(crate) async fn pass(&self) {
        let mut opened = self.opened.subscribe();
        self.arrivals.send_modify(|count| *count += 1);
        let _ = opened.wait_for(|opened| *opened).await;
    }

    fn is_open(&self) -> bool {
        *self.opened.borrow()
    }
}

#[derive(Debug)]
struct Failure {
    rule: Rule,
    code: StatusCode,
    remaining: usize,
}

/// The faults a test has set up, consulted for every request.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    holds: Vec<(Rule, Arc<GateState>)>,
    failures: Vec<Failure>,
}

impl Faults {
    pub(crate) fn hold(&mut self, rule: Rule) -> Gate {
        let state = Arc::new(GateState {
            opened: watch::Sender::new(false),
            arrivals: watch::Sender::new(0),
        });
        self.holds.push((rule, Arc::clone(&state)));
        Gate { state }
    }

    pub(crate) fn fail(&mut self, rule: Rule, code: StatusCode, times: usize) {
        if times > 0 {
            self.failures.push(Failure {
                rule,
                code,
                remaining: times,
            });
        }
    }

    /// The closed gates a request must pass.
    pub(crate) fn gates_for(
        &mut self,
        method: &Method,
        path: &str,
        query: &str,
    ) -> Vec<Arc<GateState>> {
        self.holds.retain(|(_, gate)| !gate.is_open());
        self.holds
            .iter()
            .filter(|(rule, _)| rule.matches(method, path, query))
            .map(|(_, gate)| Arc::clone(gate))
            .collect()
    }

    /// The code to answer a request with instead of serving it, using up one of its rule's
    /// times; the oldest matching rule first.
    pub(crate) fn failure_for(
        &mut self,
        method: &Method,
        path: &str,
        query: &str,
    ) -> Option<StatusCode> {
        let failure = self
            .failures
            .iter_mut()
            .find(|failure| failure.rule.matches(method, path, query))?;
        let code = failure.code;
        failure.remaining -= 1;
        self.failures.retain(|failure| failure.remaining > 0);
        Some(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_method_path_and_query() {
        let rule = Rule::new("put", "/status");
        assert!(rule.matches(&Method::PUT, "/api/v1/namespaces/a/pods/p/status", ""));
        assert!(!rule.matches(&Method::PATCH, "/api/v1/namespaces/a/pods/p/status", ""));
        assert!(!rule.matches(&Method::PUT, "/api/v1/namespaces/a/pods/p", ""));
        let watches = Rule::new("*", "/pods").with_query("watch=true");
        assert!(watches.matches(&Method::GET, "/api/v1/pods", "&watch=true"));
        assert!(!watches.matches(&Method::GET, "/api/v1/pods", "limit=500"));
    }

    #[test]
    fn failures_are_used_up() {
        let mut faults = Faults::default();
        faults.fail(
            Rule::new("GET", "/pods"),
            StatusCode::SERVICE_UNAVAILABLE,
            2,
        );
        let next = |faults: &mut Faults| faults.failure_for(&Method::GET, "/api/v1/pods", "");
        assert_eq!(next(&mut faults), Some(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(next(&mut faults), Some(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(next(&mut faults), None);
    }

    #[test]
    fn dropping_a_gate_opens_it() {
        let mut faults = Faults::default();
        let gate = faults.hold(Rule::new("*", "/"));
        assert_eq!(faults.gates_for(&Method::GET, "/api/v1/pods", "").len(), 1);
        drop(gate);
        assert!(
            faults
                .gates_for(&Method::GET, "/api/v1/pods", "")
                .is_empty()
        );
    }
}
