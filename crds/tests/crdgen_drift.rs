//! The committed CRD manifests must be exactly what `crdgen` renders from the Rust types.

use std::path::Path;

use zkfleet_crds::crdgen;

#[test]
fn committed_crds_match_the_rust_types() {
    // Read when the test runs, not baked in when it is compiled: a shared target directory can
    // hold this binary compiled in another checkout of the same sources.
    let root =
        Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test")).join("..");
    let drifted = crdgen::drifted(&root);
    assert!(
        drifted.is_empty(),
        "these CRD files differ from the zkfleet-crds types: {}\nrun `{}` to regenerate them",
        drifted
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        crdgen::REGENERATE_COMMAND,
    );
}

#[test]
fn rendering_is_deterministic() {
    assert_eq!(crdgen::outputs(), crdgen::outputs());
}

#[test]
fn chart_and_manifests_get_the_same_bytes() {
    let outputs = crdgen::outputs();
    let (chart, plain): (Vec<_>, Vec<_>) = outputs
        .iter()
        .partition(|(path, _)| path.starts_with("charts"));
    assert_eq!(chart.len(), 2);
    for ((chart_path, chart_yaml), (plain_path, plain_yaml)) in chart.iter().zip(&plain) {
        assert_eq!(chart_path.file_name(), plain_path.file_name());
        assert_eq!(chart_yaml, plain_yaml);
    }
    let names: Vec<_> = chart
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["proverpools.zkfleet.dev.yaml", "proofjobs.zkfleet.dev.yaml"]
    );
}
