//! The zkfleet CRDs on the real API server: the samples a user starts from are
//! accepted, and every deliberately bad manifest in `manifests/bad/` is refused
//! with the message its `# expect:` line names.

use std::path::{Path, PathBuf};

use kube::api::PostParams;
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::ApiResource;
use kube::{Api, ResourceExt};
use serde::Deserialize;
use zkfleet_e2e::TestNamespace;

fn repo() -> PathBuf {
    zkfleet_e2e::helm::repo_dir()
}

fn api_for(ns: &TestNamespace, obj: &DynamicObject) -> Api<DynamicObject> {
    let types = obj
        .types
        .as_ref()
        .expect("manifest has apiVersion and kind");
    let (group, version) = types.api_version.split_once('/').unwrap();
    let gvk = GroupVersionKind::gvk(group, version, &types.kind);
    Api::namespaced_with(ns.client.clone(), &ns.name, &ApiResource::from_gvk(&gvk))
}

fn documents(path: &Path) -> Vec<DynamicObject> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let value = serde_yaml::Value::deserialize(doc).unwrap();
            serde_yaml::from_value(value)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()))
        })
        .collect()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn samples_are_accepted_and_bad_manifests_refused_with_their_message() {
    let ns = TestNamespace::new("crds").await.unwrap();
    zkfleet_e2e::helm::apply_crds(&ns)
        .await
        .expect("the generated CRDs install");
    let server_dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };

    let samples = yaml_files(&repo().join("manifests/samples"));
    assert!(samples.len() >= 4, "samples: {samples:?}");
    for path in &samples {
        for obj in documents(path) {
            api_for(&ns, &obj)
                .create(&server_dry_run, &obj)
                .await
                .unwrap_or_else(|e| panic!("sample {} refused: {e}", path.display()));
        }
    }

    let bad = yaml_files(&repo().join("manifests/bad"));
    assert!(!bad.is_empty());
    let mut failures = Vec::new();
    for path in &bad {
        let text = std::fs::read_to_string(path).unwrap();
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no `# expect:` line", path.display()))
            .trim();
        let mut docs = documents(path);
        let refused_one = docs.pop().unwrap();
        // Multi-document files create the earlier objects first (an update
        // of an existing object is what they test).
        for earlier in &docs {
            api_for(&ns, earlier)
                .create(&PostParams::default(), earlier)
                .await
                .unwrap_or_else(|e| panic!("{}: setup object refused: {e}", path.display()));
        }
        let api = api_for(&ns, &refused_one);
        let result = if docs.is_empty() {
            api.create(&server_dry_run, &refused_one).await
        } else {
            let name = refused_one.name_any();
            let mut updated = refused_one.clone();
            updated.metadata.resource_version = api.get(&name).await.unwrap().resource_version();
            api.replace(&name, &server_dry_run, &updated).await
        };
        match result {
            Ok(_) => failures.push(format!("{}: accepted, expected: {expect}", path.display())),
            Err(e) if !e.to_string().contains(expect) => failures.push(format!(
                "{}: refused with the wrong message\n  expected: {expect}\n  got: {e}",
                path.display()
            )),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
