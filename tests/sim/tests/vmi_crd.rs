//! The vmi CRD on a real kube-apiserver: the sample is accepted and shown
//! with its printer columns, and every malformed spec of
//! api/tests/fixtures/rejected-specs.yaml is refused with a message naming
//! its field.

use std::process::Command;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde::Deserialize;
use serde_json::Value;
use vmi_api::VSphereMigrationInfra;
use vmi_sim::{ControlPlane, Tools};

const SAMPLE: &str = include_str!("../../../deploy/samples/vmi.yaml");
const CREDENTIALS: &str = include_str!("../../../deploy/samples/vcenter-credentials.yaml");
const REJECTED: &str = include_str!("../../../api/tests/fixtures/rejected-specs.yaml");

#[derive(Deserialize)]
struct RejectedSpec {
    name: String,
    patch: json_patch::Patch,
    field: String,
    #[serde(default)]
    message: Option<String>,
}

fn vmi_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("config.openshift.io", "v1alpha1", "VSphereMigrationInfra"),
        "vspheremigrationinfra",
    )
}

fn sample_in(namespace: &str, name: &str) -> Value {
    let mut sample: Value = serde_saphyr::from_str(SAMPLE).unwrap();
    sample["metadata"]["namespace"] = namespace.into();
    sample["metadata"]["name"] = name.into();
    sample
}

#[tokio::test]
async fn the_sample_is_accepted_and_listed_with_its_columns() {
    let plane = ControlPlane::shared().unwrap();
    let client = plane.client().await.unwrap();
    vmi_sim::crds::install_vmi_crd(&client).await.unwrap();
    let ns = plane.namespace(&client, "vmi-sample").await.unwrap();

    let mut credentials: Secret = serde_saphyr::from_str(CREDENTIALS).unwrap();
    credentials.metadata.namespace = Some(ns.clone());
    let stored = Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &credentials)
        .await
        .unwrap();
    let keys: Vec<_> = stored.data.unwrap().into_keys().collect();
    assert_eq!(
        keys,
        [
            "vcenter-b.example.com.password",
            "vcenter-b.example.com.username"
        ],
        "keys as in vsphere-creds"
    );

    let sample: VSphereMigrationInfra =
        serde_json::from_value(sample_in(&ns, "move-to-vcenter-b")).unwrap();
    assert_eq!(
        Some(sample.spec.credentials_secret.name.clone()),
        credentials.metadata.name,
        "the sample vmi names the sample secret"
    );
    let api: Api<VSphereMigrationInfra> = Api::namespaced(client, &ns);
    api.create(&PostParams::default(), &sample)
        .await
        .expect("the API server accepts the sample");
    let stored = api.get("move-to-vcenter-b").await.unwrap();
    assert_eq!(
        stored.spec, sample.spec,
        "the API server kept the spec as written"
    );

    let tools = Tools::get().unwrap();
    for name in [
        "vsmi",
        "vmi",
        "vspheremigrationinfra",
        "vspheremigrationinfra.config.openshift.io",
    ] {
        let output = Command::new(tools.bin("kubectl"))
            .args([
                "--kubeconfig",
                &plane.kubeconfig().to_string_lossy(),
                "get",
                name,
                "-n",
                &ns,
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "kubectl get {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let header: Vec<&str> = stdout
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(
            header,
            ["NAME", "STATE", "PHASE", "STEP", "AGE"],
            "kubectl get {name}"
        );
        assert!(
            stdout.contains("move-to-vcenter-b") && stdout.contains("Pending"),
            "{stdout}"
        );
    }
}

#[tokio::test]
async fn every_rejected_spec_is_refused_by_the_api_server_naming_its_field() {
    let plane = ControlPlane::shared().unwrap();
    let client = plane.client().await.unwrap();
    vmi_sim::crds::install_vmi_crd(&client).await.unwrap();
    let ns = plane.namespace(&client, "vmi-rejected").await.unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &vmi_resource());

    let cases: Vec<RejectedSpec> = serde_saphyr::from_str(REJECTED).unwrap();
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let mut object = sample_in(&ns, &format!("rejected-{i}"));
        json_patch::patch(&mut object, &case.patch).unwrap();
        let object: DynamicObject = serde_json::from_value(object).unwrap();
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => failures.push(format!("{}: accepted", case.name)),
            Err(kube::Error::Api(status)) => {
                let names_field = status.message.contains(&format!("{}: ", case.field));
                let says_what = case
                    .message
                    .as_ref()
                    .is_none_or(|m| status.message.contains(m.as_str()));
                if status.code != 422 || !names_field || !says_what {
                    failures.push(format!(
                        "{}: expected {} {:?}, got {}: {}",
                        case.name, case.field, case.message, status.code, status.message
                    ));
                }
            }
            Err(other) => failures.push(format!("{}: {other}", case.name)),
        }
    }
    assert!(cases.len() >= 40);
    assert!(
        failures.is_empty(),
        "{} of {} not refused as expected:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
