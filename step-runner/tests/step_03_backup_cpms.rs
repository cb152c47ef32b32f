//! Step 03 backup-cpms on the seeded cluster with the control plane machine
//! set generator stand-in: the Active CPMS is backed up and deleted, the
//! regenerated one is Inactive, the control plane Machines are untouched,
//! a second run changes nothing, and the undo restores the Active spec.

mod support;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde_json::Value;
use support::{run_step, step_status, step_vmi};
use vmi_api::Step;
use vmi_api::migration::MigrationPath;
use vmi_sim::cpms_operator::CpmsOperator;
use vmi_sim::seed::{SeedOptions, SimCluster};
use vmi_step_runner::Action;

fn api(client: &kube::Client, version: &str, kind: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "machine.openshift.io",
        version,
        kind,
    ));
    Api::namespaced_with(client.clone(), "openshift-machine-api", &resource)
}

async fn cpms(client: &kube::Client) -> Option<DynamicObject> {
    api(client, "v1", "ControlPlaneMachineSet")
        .get_opt("cluster")
        .await
        .unwrap()
}

async fn machine_versions(client: &kube::Client) -> Vec<(String, String)> {
    api(client, "v1beta1", "Machine")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|m| {
            (
                m.metadata.name.unwrap(),
                m.metadata.resource_version.unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_cpms_leaves_an_inactive_one_and_undo_restores_it() {
    let cluster = SimCluster::start(SeedOptions::default()).await.unwrap();
    let client = cluster.client().await.unwrap();
    let vmi = step_vmi(
        &cluster,
        &client,
        Some(MigrationPath::Native),
        &[Step::BackupCpms],
    )
    .await;
    let original = cpms(&client).await.unwrap();
    assert_eq!(original.data["spec"]["state"], "Active");
    let machines = machine_versions(&client).await;

    // The operator stand-in regenerates the CPMS once the step deletes it.
    let generator = CpmsOperator::start(client.clone());
    run_step(&cluster, &vmi, Action::Step(Step::BackupCpms))
        .await
        .unwrap();
    let regenerated = cpms(&client).await.unwrap();
    assert_ne!(regenerated.metadata.uid, original.metadata.uid);
    assert_eq!(regenerated.data["spec"]["state"], "Inactive");
    assert_eq!(
        regenerated.data["spec"]["template"]["machines_v1beta1_machine_openshift_io"]["failureDomains"]
            ["vsphere"],
        serde_json::json!([{"name": "generated-failure-domain"}])
    );
    assert_eq!(
        machine_versions(&client).await,
        machines,
        "no Machine was touched"
    );
    assert_eq!(generator.generated(), 1);
    let entry = step_status(&client, &vmi, Step::BackupCpms).await;
    assert_eq!(entry.changes.len(), 1, "{entry:?}");
    let backup =
        Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), &vmi.namespace)
            .get("vmi-backup-move")
            .await
            .unwrap()
            .data
            .unwrap();
    let saved: Value =
        serde_json::from_str(&backup["03-backup-cpms.controlplanemachineset"]).unwrap();
    assert_eq!(
        saved["spec"], original.data["spec"],
        "the backup is the whole Active spec"
    );

    // Second run: nothing changes.
    run_step(&cluster, &vmi, Action::Step(Step::BackupCpms))
        .await
        .unwrap();
    assert_eq!(
        cpms(&client).await.unwrap().metadata.uid,
        regenerated.metadata.uid
    );
    assert!(
        step_status(&client, &vmi, Step::BackupCpms)
            .await
            .result
            .unwrap()
            .ends_with("nothing changed")
    );

    // Undo: Active again with exactly the original spec, and it stays.
    run_step(&cluster, &vmi, Action::Undo(Step::BackupCpms))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let restored = cpms(&client).await.unwrap();
    assert_eq!(restored.data["spec"], original.data["spec"]);
    assert_eq!(machine_versions(&client).await, machines);
    run_step(&cluster, &vmi, Action::Undo(Step::BackupCpms))
        .await
        .unwrap();
    assert_eq!(
        cpms(&client).await.unwrap().metadata.resource_version,
        restored.metadata.resource_version
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_a_cpms_is_refused() {
    let cluster = SimCluster::start(SeedOptions::default()).await.unwrap();
    let client = cluster.client().await.unwrap();
    let vmi = step_vmi(
        &cluster,
        &client,
        Some(MigrationPath::Native),
        &[Step::BackupCpms],
    )
    .await;
    api(&client, "v1", "ControlPlaneMachineSet")
        .delete("cluster", &Default::default())
        .await
        .unwrap();
    let err = run_step(&cluster, &vmi, Action::Step(Step::BackupCpms))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("there is no ControlPlaneMachineSet openshift-machine-api/cluster"),
        "{err}"
    );
    assert!(err.ends_with("nothing was changed"));
}
