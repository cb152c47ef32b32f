//! The committed CRD is the generated one, and the sample CR is exactly what
//! the types read.

use std::path::Path;

use serde_json::Value;
use vmi_api::VSphereMigrationInfra;

fn repo_file(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

#[test]
fn committed_crd_matches_the_types() {
    let generated = vmi_api::crd::crd_yaml().unwrap();
    let committed = repo_file(vmi_api::crd::CRD_PATH);
    assert!(
        generated == committed,
        "{} is stale: regenerate it with\n  cargo run -q -p vmi-api --bin crdgen > {}",
        vmi_api::crd::CRD_PATH,
        vmi_api::crd::CRD_PATH
    );
}

#[test]
fn crd_names_printer_columns_and_status() {
    let crd = vmi_api::crd::custom_resource_definition();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("vspheremigrationinfra.config.openshift.io")
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(
        crd.spec.names.short_names,
        Some(vec!["vmi".to_owned(), "vsmi".to_owned()])
    );
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some(),
        "status subresource"
    );
    let columns: Vec<_> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.as_str(), c.json_path.as_str()))
        .collect();
    assert_eq!(
        columns,
        [
            ("State", ".spec.state"),
            ("Phase", ".status.phase"),
            ("Step", ".status.currentStep"),
            ("Age", ".metadata.creationTimestamp")
        ]
    );
}

#[test]
fn sample_round_trips_through_the_types() {
    let text = repo_file("deploy/samples/vmi.yaml");
    let typed: VSphereMigrationInfra =
        serde_saphyr::from_str(&text).expect("the sample reads into the types");
    assert_eq!(typed.spec.failure_domains.len(), 2);
    assert_eq!(
        typed.spec.pause_before,
        [vmi_api::Step::RecreateCpms, vmi_api::Step::RemoveSource]
    );
    let original: Value = serde_saphyr::from_str(&text).unwrap();
    let written = serde_saphyr::to_string(&typed).unwrap();
    let reread: Value = serde_saphyr::from_str(&written).unwrap();
    assert_eq!(
        reread, original,
        "a field was lost or added on the way through the types:\n{written}"
    );
}
