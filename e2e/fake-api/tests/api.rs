//! The fake judged by the real client: every check goes through `kube::Api`, or kube-runtime's
//! `watcher` and `reflector`, as the operator's code would.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, PodSpec, PodStatus, Secret};
use kube::api::{
    Api, DeleteParams, ListParams, ObjectList, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher::{self, Event};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio::sync::oneshot;
use zkfleet_fake_api::{FakeApi, Rule};

/// Bounds every wait on the fake, so a missing answer or event fails the test instead of
/// hanging it. Never reached when the fake behaves.
const PATIENCE: Duration = Duration::from_secs(10);

async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .expect("the fake did not answer in time")
}

fn config_map(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    let mut map = ConfigMap::default();
    map.metadata.name = Some(name.into());
    map.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
    );
    map.data = Some(BTreeMap::from([("mode".to_owned(), "fast".to_owned())]));
    map
}

fn pod(name: &str) -> Pod {
    let mut pod = Pod::default();
    pod.metadata.name = Some(name.into());
    pod.spec = Some(PodSpec {
        containers: vec![Container {
            name: "prover".into(),
            image: Some("prover:1".into()),
            ..Container::default()
        }],
        ..PodSpec::default()
    });
    pod
}

fn phase(phase: &str) -> Option<PodStatus> {
    Some(PodStatus {
        phase: Some(phase.into()),
        ..PodStatus::default()
    })
}

fn phase_of(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

/// The code and reason of a refusal.
fn refusal<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.reason),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn names<K: Resource + Clone>(list: &ObjectList<K>) -> Vec<String> {
    list.items.iter().map(ResourceExt::name_any).collect()
}

/// A watcher event as (what happened, to which object), to compare sequences.
fn summary(event: &Event<ConfigMap>) -> (&'static str, String) {
    match event {
        Event::Init => ("Init", String::new()),
        Event::InitApply(map) => ("InitApply", map.name_any()),
        Event::InitDone => ("InitDone", String::new()),
        Event::Apply(map) => ("Apply", map.name_any()),
        Event::Delete(map) => ("Delete", map.name_any()),
    }
}

#[tokio::test]
async fn create_get_and_list_with_selectors() -> Result<(), kube::Error> {
    let fake = FakeApi::new();
    let maps: Api<ConfigMap> = Api::namespaced(fake.client(), "apps");
    let pp = PostParams::default();

    let web = maps
        .create(
            &pp,
            &config_map("web", &[("app", "web"), ("tier", "front")]),
        )
        .await?;
    assert!(web.metadata.uid.is_some());
    assert!(web.metadata.resource_version.is_some());
    assert!(web.metadata.creation_timestamp.is_some());
    assert_eq!(web.metadata.generation, Some(1));
    maps.create(&pp, &config_map("db", &[("app", "db")]))
        .await?;
    maps.create(&pp, &config_map("cache", &[])).await?;
    let elsewhere: Api<ConfigMap> = Api::namespaced(fake.client(), "other");
    elsewhere
        .create(&pp, &config_map("web-elsewhere", &[("app", "web")]))
        .await?;
    // Another kind with the same name is another object.
    let mut secret = Secret::default();
    secret.metadata.name = Some("web".into());
    Api::<Secret>::namespaced(fake.client(), "apps")
        .create(&pp, &secret)
        .await?;

    let fetched = maps.get("web").await?;
    assert_eq!(fetched.data, web.data);
    assert_eq!(fetched.metadata.uid, web.metadata.uid);

    let listed = |selector: &str| {
        let maps = maps.clone();
        let lp = ListParams::default().labels(selector);
        async move { maps.list(&lp).await.map(|list| names(&list)) }
    };
    assert_eq!(listed("app=web").await?, ["web"]);
    assert_eq!(listed("app!=web").await?, ["cache", "db"]);
    assert_eq!(listed("app").await?, ["db", "web"]);
    assert_eq!(listed("app=web,tier=front").await?, ["web"]);
    assert_eq!(listed("app in (web,db)").await?, ["db", "web"]);
    assert_eq!(listed("").await?, ["cache", "db", "web"]);
    let by_name = maps
        .list(&ListParams::default().fields("metadata.name=db"))
        .await?;
    assert_eq!(names(&by_name), ["db"]);
    let everywhere = Api::<ConfigMap>::all(fake.client());
    let all_web = everywhere
        .list(&ListParams::default().labels("app=web"))
        .await?;
    assert_eq!(names(&all_web), ["web", "web-elsewhere"]);

    assert_eq!(refusal(maps.get("missing").await), (404, "NotFound".into()));
    let duplicate = maps.create(&pp, &config_map("web", &[])).await;
    assert_eq!(refusal(duplicate), (409, "AlreadyExists".into()));
    Ok(())
}

#[tokio::test]
async fn replace_status_with_a_stale_resource_version_conflicts() -> Result<(), kube::Error> {
    let fake = FakeApi::new();
    let pods: Api<Pod> = Api::default_namespaced(fake.client());
    let pp = PostParams::default();
    let created = pods.create(&pp, &pod("worker")).await?;

    let mut running = created.clone();
    running.status = phase("Running");
    let written = pods.replace_status("worker", &pp, &running).await?;
    assert_eq!(phase_of(&written), Some("Running"));
    assert_ne!(written.resource_version(), created.resource_version());

    // `created` still carries the version from before that write.
    let mut stale = created.clone();
    stale.status = phase("Failed");
    let refused = pods.replace_status("worker", &pp, &stale).await;
    assert_eq!(refusal(refused), (409, "Conflict".into()));
    let stored: Pod = fake.get("default", "worker").expect("stored");
    assert_eq!(phase_of(&stored), Some("Running"));
    Ok(())
}

#[tokio::test]
async fn replacing_an_object_keeps_its_status_and_counts_spec_generations()
-> Result<(), kube::Error> {
    let fake = FakeApi::new();
    let pods: Api<Pod> = Api::default_namespaced(fake.client());
    let pp = PostParams::default();
    let mut seeded = pod("worker");
    seeded.status = phase("Running");
    let seeded = fake.create(&seeded);
    assert_eq!(
        phase_of(&seeded),
        Some("Running"),
        "seeding keeps the status"
    );

    let mut relabelled = seeded.clone();
    relabelled.labels_mut().insert("pool".into(), "a".into());
    relabelled.status = phase("Failed");
    let replaced = pods.replace("worker", &pp, &relabelled).await?;
    assert_eq!(
        phase_of(&replaced),
        Some("Running"),
        "status is written through /status only"
    );
    assert_eq!(replaced.labels().get("pool").map(String::as_str), Some("a"));
    assert_eq!(
        replaced.metadata.generation,
        Some(1),
        "metadata is not spec"
    );

    let mut new_image = replaced.clone();
    new_image.spec.as_mut().expect("spec").containers[0].image = Some("prover:2".into());
    let replaced = pods.replace("worker", &pp, &new_image).await?;
    assert_eq!(replaced.metadata.generation, Some(2));

    // A write that changes nothing gets no new version.
    let again = pods.replace("worker", &pp, &replaced).await?;
    assert_eq!(again.resource_version(), replaced.resource_version());
    Ok(())
}

#[tokio::test]
async fn merge_and_json_patches() -> Result<(), kube::Error> {
    let fake = FakeApi::new();
    let maps: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let created = maps
        .create(&PostParams::default(), &config_map("settings", &[]))
        .await?;
    let params = PatchParams::default();

    let merge = Patch::Merge(json!({"data": {"mode": "safe", "extra": "1"}}));
    let patched = maps.patch("settings", &params, &merge).await?;
    let expected = BTreeMap::from([("extra".into(), "1".into()), ("mode".into(), "safe".into())]);
    assert_eq!(patched.data, Some(expected));

    let guarded = |expected_mode: &str, new_mode: &str| {
        let operations = json!([
            {"op": "test", "path": "/data/mode", "value": expected_mode},
            {"op": "replace", "path": "/data/mode", "value": new_mode},
        ]);
        Patch::<()>::Json(serde_json::from_value(operations).expect("a JSON patch"))
    };
    let patched = maps
        .patch("settings", &params, &guarded("safe", "slow"))
        .await?;
    assert_eq!(
        patched
            .data
            .as_ref()
            .and_then(|data| data.get("mode"))
            .map(String::as_str),
        Some("slow")
    );

    let refused = maps
        .patch("settings", &params, &guarded("safe", "fast"))
        .await;
    assert_eq!(refusal(refused), (422, "Invalid".into()));
    let stored: ConfigMap = fake.get("default", "settings").expect("stored");
    assert_eq!(
        stored
            .data
            .as_ref()
            .and_then(|data| data.get("mode"))
            .map(String::as_str),
        Some("slow")
    );

    let stale = Patch::Merge(json!({
        "metadata": {"resourceVersion": created.resource_version()},
        "data": {"mode": "fast"},
    }));
    assert_eq!(
        refusal(maps.patch("settings", &params, &stale).await),
        (409, "Conflict".into())
    );
    Ok(())
}

#[tokio::test]
async fn status_patches_and_server_side_apply() -> Result<(), kube::Error> {
    let fake = FakeApi::new();
    let pods: Api<Pod> = Api::default_namespaced(fake.client());
    let apply = PatchParams::apply("zkfleet-test").force();

    let desired = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "applied", "labels": {"pool": "a"}},
        "spec": {"containers": [{"name": "prover", "image": "prover:1"}]},
        "status": {"phase": "Succeeded"},
    });
    let applied = pods
        .patch("applied", &apply, &Patch::Apply(&desired))
        .await?;
    assert_eq!(applied.labels().get("pool").map(String::as_str), Some("a"));
    assert_eq!(
        applied.status, None,
        "an apply to the object does not write its status"
    );

    let status =
        Patch::Merge(json!({"spec": {"nodeName": "gpu-1"}, "status": {"phase": "Running"}}));
    let patched = pods
        .patch_status("applied", &PatchParams::default(), &status)
        .await?;
    assert_eq!(phase_of(&patched), Some("Running"));
    let node = patched
        .spec
        .as_ref()
        .and_then(|spec| spec.node_name.as_deref());
    assert_eq!(node, None, "a status patch writes only the status");

    let both =
        Patch::Merge(json!({"metadata": {"labels": {"b": "c"}}, "status": {"phase": "Failed"}}));
    let patched = pods
        .patch("applied", &PatchParams::default(), &both)
        .await?;
    assert_eq!(patched.labels().get("b").map(String::as_str), Some("c"));
    assert_eq!(phase_of(&patched), Some("Running"));

    let missing = pods
        .patch_status("absent", &PatchParams::default(), &status)
        .await;
    assert_eq!(refusal(missing), (404, "NotFound".into()));
    Ok(())
}

#[tokio::test]
async fn delete_with_and_without_finalizers() -> Result<(), kube::Error> {
    let fake = FakeApi::new();
    let maps: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let pp = PostParams::default();
    let dp = DeleteParams::default();

    maps.create(&pp, &config_map("plain", &[])).await?;
    assert!(
        maps.delete("plain", &dp).await?.is_right(),
        "deleted at once: a Status"
    );
    assert_eq!(refusal(maps.get("plain").await), (404, "NotFound".into()));

    let mut guarded = config_map("guarded", &[]);
    guarded.metadata.finalizers = Some(vec!["zkfleet.dev/artifacts".into()]);
    maps.create(&pp, &guarded).await?;
    let pending = maps
        .delete("guarded", &dp)
        .await?
        .left()
        .expect("held by its finalizer");
    assert!(pending.metadata.deletion_timestamp.is_some());
    let still_there = maps.get("guarded").await?;
    assert!(still_there.metadata.deletion_timestamp.is_some());
    assert!(
        maps.delete("guarded", &dp).await?.is_left(),
        "a second delete changes nothing"
    );

    let release = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    maps.patch("guarded", &PatchParams::default(), &release)
        .await?;
    assert_eq!(refusal(maps.get("guarded").await), (404, "NotFound".into()));
    Ok(())
}

#[tokio::test]
async fn watcher_sees_added_modified_and_deleted_in_order() -> Result<(), kube::Error> {
    let fake = FakeApi::new();
    let maps: Api<ConfigMap> = Api::default_namespaced(fake.client());
    maps.create(&PostParams::default(), &config_map("existing", &[]))
        .await?;
    let mut events = watcher::watcher(maps.clone(), watcher::Config::default()).boxed();
    let mut next = async || {
        let event = within(events.try_next()).await.expect("a watcher event");
        summary(&event.expect("the stream goes on"))
    };

    assert_eq!(next().await, ("Init", String::new()));
    assert_eq!(next().await, ("InitApply", "existing".into()));
    assert_eq!(next().await, ("InitDone", String::new()));

    maps.create(&PostParams::default(), &config_map("new", &[]))
        .await?;
    let relabel = Patch::Merge(json!({"metadata": {"labels": {"app": "web"}}}));
    maps.patch("new", &PatchParams::default(), &relabel).await?;
    maps.delete("new", &DeleteParams::default()).await?;

    assert_eq!(next().await, ("Apply", "new".into()));
    assert_eq!(next().await, ("Apply", "new".into()));
    assert_eq!(next().await, ("Delete", "new".into()));
    Ok(())
}

#[tokio::test]
async fn a_streaming_list_watcher_gets_its_initial_events() -> Result<(), kube::Error> {
    let fake = FakeApi::new();
    let maps: Api<ConfigMap> = Api::default_namespaced(fake.client());
    fake.create(&config_map("existing", &[]));
    let config = watcher::Config::default().streaming_lists();
    let mut events = watcher::watcher(maps.clone(), config).boxed();
    let mut next = async || {
        let event = within(events.try_next()).await.expect("a watcher event");
        summary(&event.expect("the stream goes on"))
    };
    assert_eq!(next().await, ("Init", String::new()));
    assert_eq!(next().await, ("InitApply", "existing".into()));
    assert_eq!(next().await, ("InitDone", String::new()));
    maps.create(&PostParams::default(), &config_map("new", &[]))
        .await?;
    assert_eq!(next().await, ("Apply", "new".into()));
    Ok(())
}

#[tokio::test]
async fn a_watch_with_a_label_selector_sees_objects_enter_and_leave_it() -> Result<(), kube::Error>
{
    let fake = FakeApi::new();
    let maps: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let config = watcher::Config::default().labels("app=web");
    let mut events = watcher::watcher(maps.clone(), config).boxed();
    let mut next = async || {
        let event = within(events.try_next()).await.expect("a watcher event");
        summary(&event.expect("the stream goes on"))
    };
    assert_eq!(next().await, ("Init", String::new()));
    assert_eq!(next().await, ("InitDone", String::new()));

    maps.create(
        &PostParams::default(),
        &config_map("other", &[("app", "db")]),
    )
    .await?;
    maps.create(
        &PostParams::default(),
        &config_map("web", &[("app", "web")]),
    )
    .await?;
    let leave = Patch::Merge(json!({"metadata": {"labels": {"app": "db"}}}));
    maps.patch("web", &PatchParams::default(), &leave).await?;
    let enter = Patch::Merge(json!({"metadata": {"labels": {"app": "web"}}}));
    maps.patch("other", &PatchParams::default(), &enter).await?;

    assert_eq!(next().await, ("Apply", "web".into()));
    assert_eq!(next().await, ("Delete", "web".into()));
    assert_eq!(next().await, ("Apply", "other".into()));
    Ok(())
}

#[tokio::test]
async fn a_watch_from_an_older_version_replays_what_it_missed() -> Result<(), kube::Error> {
    let fake = FakeApi::new();
    let maps: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let created = maps
        .create(&PostParams::default(), &config_map("a", &[]))
        .await?;
    let relabel = Patch::Merge(json!({"metadata": {"labels": {"seen": "later"}}}));
    maps.patch("a", &PatchParams::default(), &relabel).await?;

    let version = created.resource_version().expect("a version");
    let mut events = maps.watch(&WatchParams::default(), &version).await?.boxed();
    match within(events.try_next()).await? {
        Some(WatchEvent::Modified(map)) => {
            assert_eq!(map.labels().get("seen").map(String::as_str), Some("later"))
        }
        other => panic!("expected the missed modification, got {other:?}"),
    }

    let mut from_now = maps.watch(&WatchParams::default(), "0").await?.boxed();
    assert!(
        matches!(within(from_now.try_next()).await?, Some(WatchEvent::Added(map)) if map.name_any() == "a")
    );
    Ok(())
}

#[tokio::test]
async fn a_watch_from_before_the_kept_history_is_told_it_expired() -> Result<(), kube::Error> {
    let fake = FakeApi::new();
    // More writes than the history keeps.
    for index in 0..4200 {
        fake.create(&config_map(&format!("map-{index}"), &[]));
    }
    let maps: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let mut events = maps.watch(&WatchParams::default(), "1").await?.boxed();
    match within(events.try_next()).await? {
        Some(WatchEvent::Error(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected 410 Expired, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_reflector_store_follows_the_fake() -> Result<(), kube::Error> {
    let fake = FakeApi::new();
    let maps: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let (reader, writer) = reflector::store();
    let mut events = reflector::reflector(
        writer,
        watcher::watcher(maps.clone(), watcher::Config::default()),
    )
    .boxed();
    let mut next = async || {
        let event = within(events.try_next()).await.expect("a watcher event");
        summary(&event.expect("the stream goes on"))
    };
    assert_eq!(next().await, ("Init", String::new()));
    assert_eq!(next().await, ("InitDone", String::new()));
    within(reader.wait_until_ready())
        .await
        .expect("the writer lives");

    maps.create(&PostParams::default(), &config_map("cached", &[]))
        .await?;
    assert_eq!(next().await, ("Apply", "cached".into()));
    let cached = reader
        .get(&ObjectRef::new("cached").within("default"))
        .expect("in the store");
    assert_eq!(
        cached.resource_version(),
        maps.get("cached").await?.resource_version()
    );
    Ok(())
}

#[tokio::test]
async fn hold_delays_a_status_write_until_the_gate_opens() -> Result<(), kube::Error> {
    let fake = FakeApi::new();
    let pods: Api<Pod> = Api::default_namespaced(fake.client());
    let created = pods.create(&PostParams::default(), &pod("slow")).await?;
    let gate = fake.hold(Rule::new("PUT", "/status"));

    let (answered, mut was_answered) = oneshot::channel();
    let mut running = created.clone();
    running.status = phase("Running");
    let write = tokio::spawn({
        let pods = pods.clone();
        async move {
            let written = pods
                .replace_status("slow", &PostParams::default(), &running)
                .await;
            let _ = answered.send(());
            written
        }
    });

    within(gate.reached()).await;
    assert!(
        was_answered.try_recv().is_err(),
        "the held write is not answered"
    );
    let stored: Pod = fake.get("default", "slow").expect("stored");
    assert_eq!(stored.status, None, "nor applied");
    // Other requests are served meanwhile.
    assert_eq!(pods.get("slow").await?.status, None);

    gate.open();
    within(was_answered)
        .await
        .expect("answered once the gate opens");
    let written = write.await.expect("the writer task")?;
    assert_eq!(phase_of(&written), Some("Running"));

    let answered: Vec<(String, String)> = fake
        .requests()
        .iter()
        .map(|request| (request.method.to_string(), request.path.clone()))
        .collect();
    let pod_path = "/api/v1/namespaces/default/pods/slow";
    assert_eq!(
        answered[answered.len() - 2..],
        [
            ("GET".into(), pod_path.into()),
            ("PUT".into(), format!("{pod_path}/status"))
        ],
        "the read overtook the held write"
    );
    Ok(())
}

#[tokio::test]
async fn fail_answers_the_next_matching_requests_with_the_chosen_code() -> Result<(), kube::Error> {
    let fake = FakeApi::new();
    let pods: Api<Pod> = Api::default_namespaced(fake.client());
    let pp = PostParams::default();
    let created = pods.create(&pp, &pod("flaky")).await?;

    fake.fail(Rule::new("PUT", "/status"), 503, 1);
    let mut running = created.clone();
    running.status = phase("Running");
    let refused = pods.replace_status("flaky", &pp, &running).await;
    assert_eq!(refusal(refused), (503, "ServiceUnavailable".into()));
    let stored: Pod = fake.get("default", "flaky").expect("stored");
    assert_eq!(stored.status, None, "a failed write is not applied");
    pods.replace_status("flaky", &pp, &running).await?;

    fake.fail(Rule::new("POST", "/pods"), 409, 1);
    assert_eq!(
        refusal(pods.create(&pp, &pod("second")).await),
        (409, "Conflict".into())
    );
    pods.create(&pp, &pod("second")).await?;

    let status_writes: Vec<u16> = fake
        .requests()
        .iter()
        .filter(|request| request.method == "PUT" && request.path.ends_with("/status"))
        .map(|request| request.status)
        .collect();
    assert_eq!(status_writes, [503, 200]);
    Ok(())
}

#[tokio::test]
async fn metadata_only_reads() -> Result<(), kube::Error> {
    let fake = FakeApi::new();
    let maps: Api<ConfigMap> = Api::default_namespaced(fake.client());
    fake.create(&config_map("light", &[("app", "web")]));
    let metadata = maps.get_metadata("light").await?;
    assert_eq!(
        metadata.labels().get("app").map(String::as_str),
        Some("web")
    );
    let listed = maps.list_metadata(&ListParams::default()).await?;
    assert_eq!(names(&listed), ["light"]);
    Ok(())
}
