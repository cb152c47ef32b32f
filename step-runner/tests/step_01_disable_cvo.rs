//! Step 01 disable-cvo on the seeded cluster: skipped on the native path;
//! on the legacy path it backs up the replicas, scales to 0, changes
//! nothing the second time, and its undo restores the backup exactly.

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use support::{run_step, step_status, step_vmi};
use vmi_api::Step;
use vmi_api::migration::MigrationPath;
use vmi_sim::seed::{SeedOptions, SimCluster};
use vmi_step_runner::Action;

async fn cvo(client: &kube::Client) -> Deployment {
    Api::<Deployment>::namespaced(client.clone(), "openshift-cluster-version")
        .get("cluster-version-operator")
        .await
        .unwrap()
}

fn replicas(d: &Deployment) -> (Option<i32>, Option<i32>) {
    (
        d.spec.as_ref().and_then(|s| s.replicas),
        d.status.as_ref().and_then(|s| s.replicas),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_cvo_on_both_paths() {
    let cluster = SimCluster::start(SeedOptions::default()).await.unwrap();
    let client = cluster.client().await.unwrap();
    let before = cvo(&client).await;
    assert_eq!(before.spec.as_ref().unwrap().replicas, Some(1));

    // Without a path from preflight it refuses and changes nothing.
    let vmi = step_vmi(&cluster, &client, None, &[Step::DisableCvo]).await;
    let err = run_step(&cluster, &vmi, Action::Step(Step::DisableCvo))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("run preflight"), "{err}");
    assert_eq!(
        cvo(&client).await.metadata.resource_version,
        before.metadata.resource_version
    );

    // Native path: skipped with the reason, nothing changed.
    let native = step_vmi(
        &cluster,
        &client,
        Some(MigrationPath::Native),
        &[Step::DisableCvo],
    )
    .await;
    run_step(&cluster, &native, Action::Step(Step::DisableCvo))
        .await
        .unwrap();
    let entry = step_status(&client, &native, Step::DisableCvo).await;
    assert!(
        entry
            .result
            .as_deref()
            .unwrap()
            .starts_with("skipped: native path"),
        "{entry:?}"
    );
    assert!(entry.changes.is_empty());
    assert_eq!(entry.state, vmi_api::migration::StepState::Skipped);
    assert_eq!(
        cvo(&client).await.metadata.resource_version,
        before.metadata.resource_version
    );

    // Legacy path: backed up, scaled to 0, verified, recorded.
    let legacy = step_vmi(
        &cluster,
        &client,
        Some(MigrationPath::Legacy),
        &[Step::DisableCvo],
    )
    .await;
    run_step(&cluster, &legacy, Action::Step(Step::DisableCvo))
        .await
        .unwrap();
    let after = cvo(&client).await;
    assert_eq!(replicas(&after).0, Some(0));
    assert_eq!(replicas(&after).1.unwrap_or(0), 0, "no CVO pod is left");
    let entry = step_status(&client, &legacy, Step::DisableCvo).await;
    assert_eq!(
        entry.result.as_deref(),
        Some("scaled the cluster-version operator from 1 to 0")
    );
    assert_eq!(
        entry.changes,
        ["Deployment openshift-cluster-version/cluster-version-operator: replicas 1 → 0"]
    );
    assert_eq!(
        entry.backups,
        [format!(
            "ConfigMap {}/vmi-backup-move: 01-disable-cvo.replicas",
            legacy.namespace
        )]
    );
    let backups = Api::<ConfigMap>::namespaced(client.clone(), &legacy.namespace);
    let backup = || async {
        backups.get("vmi-backup-move").await.unwrap().data.unwrap()["01-disable-cvo.replicas"]
            .clone()
    };
    assert_eq!(backup().await, "1");

    // Second run: nothing changes, the backup keeps the original value.
    run_step(&cluster, &legacy, Action::Step(Step::DisableCvo))
        .await
        .unwrap();
    assert_eq!(
        cvo(&client).await.metadata.resource_version,
        after.metadata.resource_version,
        "the second run wrote nothing"
    );
    let entry = step_status(&client, &legacy, Step::DisableCvo).await;
    assert!(
        entry
            .result
            .unwrap()
            .contains("already scaled to 0; nothing changed")
    );
    assert!(entry.changes.is_empty());
    assert_eq!(backup().await, "1");

    // Undo: back to exactly the backed-up replicas, with a pod again.
    run_step(&cluster, &legacy, Action::Undo(Step::DisableCvo))
        .await
        .unwrap();
    let restored = cvo(&client).await;
    assert_eq!(replicas(&restored), (Some(1), Some(1)));
    run_step(&cluster, &legacy, Action::Undo(Step::DisableCvo))
        .await
        .unwrap();
    assert_eq!(
        cvo(&client).await.metadata.resource_version,
        restored.metadata.resource_version,
        "a second undo writes nothing"
    );
}
