//! Steps 09 restart-pods and 10 monitor-pods on the seeded cluster, whose
//! vSphere component pods are run by the component-pods stand-in: every
//! component comes back with new Ready pods, a second restart changes
//! nothing, and the monitor stops on a failure signature in a log or on a
//! crash loop, naming pod, container and line.

mod support;

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::json;
use support::{run_step, step_status, step_vmi_with};
use vmi_api::Step;
use vmi_api::migration::MigrationPath;
use vmi_sim::seed::{SeedOptions, SimCluster};
use vmi_step_runner::Action;
use vmi_step_runner::components::COMPONENTS;

async fn pod_names(client: &kube::Client) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for component in COMPONENTS {
        let pods = Api::<Pod>::namespaced(client.clone(), component.namespace)
            .list(&ListParams::default().labels(component.selector))
            .await
            .unwrap();
        for pod in pods {
            out.insert(format!(
                "{}/{}",
                component.namespace,
                pod.metadata.name.unwrap()
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_then_monitor_and_stop_on_a_failure_signature() {
    let cluster = SimCluster::start(SeedOptions::default()).await.unwrap();
    let client = cluster.client().await.unwrap();
    let vmi = step_vmi_with(
        &cluster,
        &client,
        Some(MigrationPath::Native),
        &[Step::RestartPods, Step::MonitorPods],
        |vmi| {
            vmi["metadata"]["annotations"] =
                json!({"vmi.config.openshift.io/monitor-window-seconds": "2"});
        },
    )
    .await;
    let before = pod_names(&client).await;
    assert!(before.len() >= COMPONENTS.len(), "{before:?}");

    // The monitor refuses before any restart.
    let err = run_step(&cluster, &vmi, Action::Step(Step::MonitorPods))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("step 09 restart-pods has not run"), "{err}");

    run_step(&cluster, &vmi, Action::Step(Step::RestartPods))
        .await
        .unwrap();
    let after = pod_names(&client).await;
    assert_eq!(after.len(), before.len());
    assert!(
        after.is_disjoint(&before),
        "every pod is new: {before:?} → {after:?}"
    );
    let entry = step_status(&client, &vmi, Step::RestartPods).await;
    assert_eq!(entry.changes.len(), before.len(), "{:?}", entry.changes);

    run_step(&cluster, &vmi, Action::Step(Step::RestartPods))
        .await
        .unwrap();
    assert_eq!(
        pod_names(&client).await,
        after,
        "a second run restarts nothing"
    );
    assert!(
        step_status(&client, &vmi, Step::RestartPods)
            .await
            .result
            .unwrap()
            .ends_with("nothing changed")
    );

    run_step(&cluster, &vmi, Action::Step(Step::MonitorPods))
        .await
        .unwrap();
    let entry = step_status(&client, &vmi, Step::MonitorPods).await;
    assert!(
        entry
            .result
            .as_deref()
            .unwrap()
            .starts_with("every vSphere component is Ready"),
        "{entry:?}"
    );
    assert_eq!(
        entry.findings.len(),
        COMPONENTS.len(),
        "{:?}",
        entry.findings
    );

    // A log line of a known failure stops the monitor, with pod, container and line.
    let line = "E1121 10:00:00.000000       1 nodemanager.go:91] Could not find vCenter for node ocp-x7k2p-worker-0";
    cluster.components.inject_log(
        "openshift-cloud-controller-manager",
        "vsphere-cloud-controller-manager",
        "cloud-controller-manager",
        line,
    );
    // A component that logs a password: the quote in status is redacted.
    cluster.components.inject_log(
        "openshift-cluster-storage-operator",
        "vsphere-problem-detector-operator",
        "problem-detector-operator",
        &format!(
            "E1121 10:00:01.000000       1 vsphere_check.go:77] Cannot complete login for user {} with password {}",
            cluster.target.username, cluster.target.password
        ),
    );
    let err = run_step(&cluster, &vmi, Action::Step(Step::MonitorPods))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("credentials failure"), "{err}");
    assert!(err.contains("with password [redacted]"), "{err}");
    assert!(!err.contains(&cluster.target.password), "{err}");
    let entry = step_status(&client, &vmi, Step::MonitorPods).await;
    assert!(
        !serde_json::to_string(&entry)
            .unwrap()
            .contains(&cluster.target.password)
    );
    assert!(
        err.contains("pod openshift-cloud-controller-manager/vsphere-cloud-controller-manager-"),
        "{err}"
    );
    assert!(
        err.contains("container cloud-controller-manager: vcenter-missing failure"),
        "{err}"
    );
    assert!(
        err.contains("Could not find vCenter for node ocp-x7k2p-worker-0"),
        "{err}"
    );
    let entry = step_status(&client, &vmi, Step::MonitorPods).await;
    assert!(
        entry
            .findings
            .iter()
            .any(|f| f.starts_with("problem: pod openshift-cloud-controller-manager/")),
        "{:?}",
        entry.findings
    );
    cluster
        .components
        .heal(
            "openshift-cloud-controller-manager",
            "vsphere-cloud-controller-manager",
        )
        .await
        .unwrap();

    // A crash-looping container stops it too, without waiting for readiness.
    cluster
        .components
        .crash_loop(
            "openshift-cluster-csi-drivers",
            "vmware-vsphere-csi-driver-controller",
            "csi-driver-controller",
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let err = run_step(&cluster, &vmi, Action::Step(Step::MonitorPods))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("container csi-driver-controller: crash loop"),
        "{err}"
    );
    assert!(err.contains("CrashLoopBackOff"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "stopped without waiting out the timeout"
    );
}
