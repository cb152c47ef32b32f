//! Steps 02 allow-multi-vcenter and 07 update-infra on the seeded cluster,
//! on both Infrastructure CRDs: OpenShift 4.22's Default one (legacy path:
//! the CRD refuses a second vCenter until step 02 relaxes it) and the
//! `VSphereMultiVCenterDay2` one (native path: step 02 is skipped).

mod support;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use serde_json::Value;
use support::{run_step, step_status, step_vmi};
use vmi_api::Step;
use vmi_api::migration::{MigrationPath, StepState};
use vmi_sim::crds::InfrastructureCrd;
use vmi_sim::seed::{SeedOptions, SimCluster};
use vmi_step_runner::Action;

async fn infrastructure(client: &kube::Client) -> DynamicObject {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "config.openshift.io",
        "v1",
        "Infrastructure",
    ));
    Api::<DynamicObject>::all_with(client.clone(), &resource)
        .get("cluster")
        .await
        .unwrap()
}

async fn crd(client: &kube::Client) -> Value {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
    ));
    serde_json::to_value(
        Api::<DynamicObject>::all_with(client.clone(), &resource)
            .get("infrastructures.config.openshift.io")
            .await
            .unwrap(),
    )
    .unwrap()
}

fn servers(infra: &DynamicObject) -> Vec<String> {
    infra.data["spec"]["platformSpec"]["vsphere"]["vcenters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["server"].as_str().unwrap().to_owned())
        .collect()
}

fn domains(infra: &DynamicObject) -> Vec<String> {
    infra.data["spec"]["platformSpec"]["vsphere"]["failureDomains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The vSphere spec without the lists step 07 owns.
fn unowned(infra: &DynamicObject) -> Value {
    let mut v = infra.data["spec"].clone();
    let vsphere = v["platformSpec"]["vsphere"].as_object_mut().unwrap();
    vsphere.remove("vcenters");
    vsphere.remove("failureDomains");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_path_relaxes_the_crd_then_adds_the_target() {
    let cluster = SimCluster::start(SeedOptions::default()).await.unwrap();
    let client = cluster.client().await.unwrap();
    let steps = [Step::DisableCvo, Step::AllowMultiVcenter, Step::UpdateInfra];
    let vmi = step_vmi(&cluster, &client, Some(MigrationPath::Legacy), &steps).await;
    let original_crd = crd(&client).await;
    let original = infrastructure(&client).await;

    // 07 before 02: the CRD refuses the second vCenter; nothing changes.
    let err = run_step(&cluster, &vmi, Action::Step(Step::UpdateInfra))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("step 02 allow-multi-vcenter relaxes that rule"),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(
        infrastructure(&client).await.metadata.resource_version,
        original.metadata.resource_version
    );

    // 02 while the CVO runs: refused, the CRD untouched.
    let err = run_step(&cluster, &vmi, Action::Step(Step::AllowMultiVcenter))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("step 01 disable-cvo scales it to 0 first"),
        "{err}"
    );
    assert_eq!(crd(&client).await, original_crd);

    run_step(&cluster, &vmi, Action::Step(Step::DisableCvo))
        .await
        .unwrap();
    run_step(&cluster, &vmi, Action::Step(Step::AllowMultiVcenter))
        .await
        .unwrap();
    let entry = step_status(&client, &vmi, Step::AllowMultiVcenter).await;
    assert!(
        entry.result.as_deref().unwrap().starts_with("relaxed"),
        "{entry:?}"
    );
    assert_eq!(entry.changes.len(), 1, "{entry:?}");
    assert_eq!(entry.backups.len(), 2, "{entry:?}");
    let relaxed = crd(&client).await;
    assert!(
        !relaxed
            .to_string()
            .contains("vcenters cannot be added or removed once set")
    );
    // Only that one rule list changed.
    let pointer = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/platformSpec/properties/vsphere/properties/vcenters/x-kubernetes-validations";
    let (mut a, mut b) = (original_crd["spec"].clone(), relaxed["spec"].clone());
    *a.pointer_mut(&pointer["/spec".len()..]).unwrap() = Value::Null;
    *b.pointer_mut(&pointer["/spec".len()..]).unwrap() = Value::Null;
    assert_eq!(a, b, "nothing else in the CRD changed");

    // Second run of 02: nothing changes.
    run_step(&cluster, &vmi, Action::Step(Step::AllowMultiVcenter))
        .await
        .unwrap();
    assert_eq!(
        crd(&client).await["metadata"]["resourceVersion"],
        relaxed["metadata"]["resourceVersion"]
    );
    assert!(
        step_status(&client, &vmi, Step::AllowMultiVcenter)
            .await
            .result
            .unwrap()
            .ends_with("nothing changed")
    );

    // The relaxed CRD refuses swapping the source for the target in place
    // (which the original 4.22 rule lets through: the count stays 1).
    let swap = serde_json::json!({"spec": {"platformSpec": {"vsphere": {"vcenters": [{
        "server": cluster.target.server, "datacenters": ["datacenter-b"]}]}}}});
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "config.openshift.io",
        "v1",
        "Infrastructure",
    ));
    let swap_err = Api::<DynamicObject>::all_with(client.clone(), &resource)
        .patch(
            "cluster",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(swap),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        swap_err.contains("Cannot add and remove vCenters"),
        "{swap_err}"
    );

    // 07: the target is added, the source and every other field kept.
    run_step(&cluster, &vmi, Action::Step(Step::UpdateInfra))
        .await
        .unwrap();
    let updated = infrastructure(&client).await;
    assert_eq!(
        servers(&updated),
        [cluster.source.server.clone(), cluster.target.server.clone()]
    );
    assert_eq!(domains(&updated), ["generated-failure-domain", "target-1"]);
    assert_eq!(unowned(&updated), unowned(&original));
    let entry = step_status(&client, &vmi, Step::UpdateInfra).await;
    assert_eq!(
        entry.changes,
        [
            format!(
                "infrastructure/cluster: added vCenter {}",
                cluster.target.server
            ),
            "infrastructure/cluster: added failure domain target-1".to_owned()
        ]
    );

    // Second run of 07: nothing changes.
    run_step(&cluster, &vmi, Action::Step(Step::UpdateInfra))
        .await
        .unwrap();
    assert_eq!(
        infrastructure(&client).await.metadata.resource_version,
        updated.metadata.resource_version
    );

    // Undo in rollback order: 07, 02, 01 — each back to its backup exactly.
    run_step(&cluster, &vmi, Action::Undo(Step::UpdateInfra))
        .await
        .unwrap();
    let restored = infrastructure(&client).await;
    assert_eq!(restored.data["spec"], original.data["spec"]);
    run_step(&cluster, &vmi, Action::Undo(Step::UpdateInfra))
        .await
        .unwrap();
    assert_eq!(
        infrastructure(&client).await.metadata.resource_version,
        restored.metadata.resource_version,
        "a second undo writes nothing"
    );
    run_step(&cluster, &vmi, Action::Undo(Step::AllowMultiVcenter))
        .await
        .unwrap();
    assert_eq!(crd(&client).await["spec"], original_crd["spec"]);
    run_step(&cluster, &vmi, Action::Undo(Step::DisableCvo))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_path_skips_02_and_adds_the_target() {
    let cluster = SimCluster::start(SeedOptions {
        infrastructure_crd: InfrastructureCrd::MultiVCenterDay2,
        ..SeedOptions::default()
    })
    .await
    .unwrap();
    let client = cluster.client().await.unwrap();
    let steps = [Step::AllowMultiVcenter, Step::UpdateInfra];
    let vmi = step_vmi(&cluster, &client, Some(MigrationPath::Native), &steps).await;
    let original_crd = crd(&client).await;
    let original = infrastructure(&client).await;

    run_step(&cluster, &vmi, Action::Step(Step::AllowMultiVcenter))
        .await
        .unwrap();
    let entry = step_status(&client, &vmi, Step::AllowMultiVcenter).await;
    assert_eq!(entry.state, StepState::Skipped);
    assert!(entry.result.unwrap().starts_with("skipped: native path"));
    assert_eq!(crd(&client).await, original_crd);

    run_step(&cluster, &vmi, Action::Step(Step::UpdateInfra))
        .await
        .unwrap();
    let updated = infrastructure(&client).await;
    assert_eq!(
        servers(&updated),
        [cluster.source.server.clone(), cluster.target.server.clone()]
    );
    assert_eq!(unowned(&updated), unowned(&original));

    run_step(&cluster, &vmi, Action::Undo(Step::UpdateInfra))
        .await
        .unwrap();
    assert_eq!(
        infrastructure(&client).await.data["spec"],
        original.data["spec"]
    );
}
