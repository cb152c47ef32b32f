//! The pods of the seeded vSphere components are Ready, come back after a
//! delete, and have logs the real API server serves through `pods/log`
//! (from the control plane's kubelet API); tests inject lines, crash loops
//! and unready pods. Step pods of the kubelet stand-in have their output
//! served the same way.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use serde_json::json;
use vmi_sim::seed::{SeedOptions, SimCluster};
use vmi_sim::{ControlPlane, Kubelet, Tools};

const CCM_NS: &str = "openshift-cloud-controller-manager";
const CCM: &str = "vsphere-cloud-controller-manager";
const CCM_CONTAINER: &str = "cloud-controller-manager";
const CSI_NS: &str = "openshift-cluster-csi-drivers";

async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn start() -> (SimCluster, Client) {
    let began = Instant::now();
    let cluster = SimCluster::start(SeedOptions::default())
        .await
        .expect("the simulated cluster starts");
    eprintln!(
        "seeded cluster with Ready component pods in {:?}",
        began.elapsed()
    );
    let client = cluster.client().await.unwrap();
    (cluster, client)
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

async fn pods(client: &Client, ns: &str, selector: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
}

async fn log(client: &Client, ns: &str, pod: &str, params: &LogParams) -> String {
    Api::<Pod>::namespaced(client.clone(), ns)
        .logs(pod, params)
        .await
        .unwrap_or_else(|e| panic!("pods/log of {ns}/{pod}: {e}"))
}

fn container(name: &str) -> LogParams {
    LogParams {
        container: Some(name.into()),
        ..LogParams::default()
    }
}

#[tokio::test]
async fn component_pods_are_ready_restart_and_serve_their_logs() {
    let (cluster, client) = start().await;

    // Every component Deployment and the CSI node DaemonSet are Ready.
    for ns in cluster.components.namespaces() {
        for d in Api::<Deployment>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .unwrap()
        {
            let status = d.status.clone().unwrap();
            assert_eq!(
                status.ready_replicas,
                d.spec.as_ref().unwrap().replicas,
                "{ns}/{}",
                d.metadata.name.as_deref().unwrap()
            );
        }
    }
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    let ds = Api::<DaemonSet>::namespaced(client.clone(), CSI_NS)
        .get("vmware-vsphere-csi-driver-node")
        .await
        .unwrap();
    let status = ds.status.unwrap();
    assert_eq!(status.desired_number_scheduled as usize, nodes.items.len());
    assert_eq!(status.number_ready, status.desired_number_scheduled);
    // One pod per Node, bound to the Node of its affinity.
    let node_pods = pods(&client, CSI_NS, "app=vmware-vsphere-csi-driver-node").await;
    let on: BTreeSet<String> = node_pods
        .iter()
        .map(|p| p.spec.as_ref().unwrap().node_name.clone().unwrap())
        .collect();
    let all: BTreeSet<String> = nodes
        .items
        .iter()
        .map(|n| n.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(on, all);

    // The default log: benign klog startup lines.
    let selector = "k8s-app=vsphere-cloud-controller-manager";
    let before = pods(&client, CCM_NS, selector).await;
    assert_eq!(before.len(), 2);
    let first = before[0].metadata.name.clone().unwrap();
    let text = log(&client, CCM_NS, &first, &container(CCM_CONTAINER)).await;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with('I')
            && lines[0].contains("main.go:42] starting cloud-controller-manager"),
        "{text}"
    );
    // The single container is the default, as with kubectl logs.
    assert_eq!(
        log(&client, CCM_NS, &first, &LogParams::default()).await,
        text
    );
    let stamped = log(
        &client,
        CCM_NS,
        &first,
        &LogParams {
            timestamps: true,
            tail_lines: Some(1),
            ..LogParams::default()
        },
    )
    .await;
    let (time, line) = stamped.trim_end().split_once(' ').unwrap();
    assert!(time.ends_with('Z') && time.len() == 30, "{stamped}");
    assert_eq!(line, lines[2]);
    let limited = log(
        &client,
        CCM_NS,
        &first,
        &LogParams {
            limit_bytes: Some(10),
            ..LogParams::default()
        },
    )
    .await;
    assert_eq!(limited, text[..10]);
    let missing = Api::<Pod>::namespaced(client.clone(), CCM_NS)
        .logs(&first, &container("no-such-container"))
        .await
        .unwrap_err();
    assert!(
        missing.to_string().contains("no-such-container"),
        "{missing}"
    );

    // A line injected for the workload shows in the running pods and in
    // their replacements; deleting the pods gives new Ready ones.
    let failure =
        "E1121 10:00:05.000000       1 vsphere.go:120] failed to connect to vcenter.example.com";
    cluster
        .components
        .inject_log(CCM_NS, CCM, CCM_CONTAINER, failure);
    assert!(
        log(&client, CCM_NS, &first, &container(CCM_CONTAINER))
            .await
            .contains(failure)
    );
    let old: BTreeSet<String> = before
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    Api::<Pod>::namespaced(client.clone(), CCM_NS)
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(selector),
        )
        .await
        .unwrap();
    let after = eventually(
        "two new Ready CCM pods",
        Duration::from_secs(30),
        || async {
            let now = pods(&client, CCM_NS, selector).await;
            (now.len() == 2
                && now.iter().all(ready)
                && now
                    .iter()
                    .all(|p| !old.contains(p.metadata.name.as_ref().unwrap())))
            .then_some(now)
        },
    )
    .await;
    let new = after[0].metadata.name.clone().unwrap();
    let text = log(&client, CCM_NS, &new, &container(CCM_CONTAINER)).await;
    assert_eq!(text.lines().count(), 4, "{text}");
    assert_eq!(text.lines().last(), Some(failure));
    cluster
        .components
        .wait_ready(&client, Duration::from_secs(30))
        .await
        .unwrap();

    // sinceSeconds: only what was written in the last second.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let fresh = "I1121 10:00:09.000000       1 main.go:99] a fresh line";
    cluster
        .components
        .inject_log(CCM_NS, CCM, CCM_CONTAINER, fresh);
    let recent = log(
        &client,
        CCM_NS,
        &new,
        &LogParams {
            since_seconds: Some(1),
            ..container(CCM_CONTAINER)
        },
    )
    .await;
    assert_eq!(recent, format!("{fresh}\n"));
    // Deleted pods are gone, with their logs.
    let gone = Api::<Pod>::namespaced(client.clone(), CCM_NS)
        .logs(&first, &LogParams::default())
        .await
        .unwrap_err();
    assert!(gone.to_string().contains("not found"), "{gone}");
}

#[tokio::test]
async fn crash_loops_and_unready_pods_show_as_on_a_real_cluster() {
    let (cluster, client) = start().await;
    let (ns, workload, c) = (
        CSI_NS,
        "vmware-vsphere-csi-driver-controller",
        "csi-driver-controller",
    );
    let selector = "app=vmware-vsphere-csi-driver-controller";
    cluster.components.inject_log(
        ns,
        workload,
        c,
        "F1121 10:00:01.000000       1 main.go:70] cannot log in to vCenter",
    );
    cluster
        .components
        .crash_loop(ns, workload, c)
        .await
        .unwrap();
    for pod in pods(&client, ns, selector).await {
        assert!(!ready(&pod));
        let status = &pod
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0];
        assert!(!status.ready);
        assert!(status.restart_count > 0);
        let waiting = status.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
        let terminated = status
            .last_state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap();
        assert_eq!(terminated.exit_code, 1);
        // The last crashed instance's log, now and with previous=true.
        let name = pod.metadata.name.clone().unwrap();
        let previous = log(
            &client,
            ns,
            &name,
            &LogParams {
                previous: true,
                ..container(c)
            },
        )
        .await;
        assert!(previous.contains("cannot log in to vCenter"), "{previous}");
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    eventually(
        "the Deployment to count no Ready pod",
        Duration::from_secs(30),
        || async {
            let d = deployments.get(workload).await.ok()?;
            (d.status?.ready_replicas.unwrap_or(0) == 0).then_some(())
        },
    )
    .await;
    let err = cluster
        .components
        .wait_ready(&client, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(err.to_string().contains(workload), "{err}");

    // A replacement crash-loops too.
    let victim = pods(&client, ns, selector).await[0]
        .metadata
        .name
        .clone()
        .unwrap();
    Api::<Pod>::namespaced(client.clone(), ns)
        .delete(&victim, &DeleteParams::default())
        .await
        .unwrap();
    let replacement = eventually(
        "a crash-looping replacement",
        Duration::from_secs(30),
        || async {
            pods(&client, ns, selector).await.into_iter().find(|p| {
                p.metadata.name.as_deref() != Some(victim.as_str())
                    && p.status
                        .as_ref()
                        .and_then(|s| s.container_statuses.as_ref())
                        .is_some_and(|s| s[0].restart_count > 0)
            })
        },
    )
    .await;
    assert!(!ready(&replacement));

    // Never Ready: running, started, not Ready; then healed.
    let (ns, workload) = ("openshift-machine-api", "machine-api-operator");
    cluster.components.never_ready(ns, workload).await.unwrap();
    let pod = &pods(&client, ns, "k8s-app=machine-api-operator").await[0];
    let status = &pod
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    assert!(status.started == Some(true) && !status.ready);
    assert!(status.state.as_ref().unwrap().running.is_some());
    assert!(!ready(pod));
    cluster.components.heal(ns, workload).await.unwrap();
    cluster
        .components
        .heal(CSI_NS, "vmware-vsphere-csi-driver-controller")
        .await
        .unwrap();
    cluster
        .components
        .wait_ready(&client, Duration::from_secs(30))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_step_pods_output_is_served_through_pods_log() {
    let plane = ControlPlane::shared().expect("the control plane starts");
    let client = plane.client().await.unwrap();
    let ns = plane.namespace(&client, "steplog").await.unwrap();
    let _kubelet = Kubelet::start(plane, client.clone(), &ns, Vec::new())
        .await
        .unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "vmi-step-09"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "step", "image": "vmi:test",
            "command": ["sh", "-c", "echo restarting pods; echo done"]}]},
    }))
    .unwrap();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &pod).await.unwrap();
    eventually(
        "the step pod to succeed",
        Duration::from_secs(30),
        || async {
            let pod = api.get("vmi-step-09").await.ok()?;
            (pod.status?.phase.as_deref() == Some("Succeeded")).then_some(())
        },
    )
    .await;
    assert_eq!(
        api.logs("vmi-step-09", &LogParams::default())
            .await
            .unwrap(),
        "restarting pods\ndone\n"
    );
    assert_eq!(
        api.logs(
            "vmi-step-09",
            &LogParams {
                tail_lines: Some(1),
                ..LogParams::default()
            }
        )
        .await
        .unwrap(),
        "done\n"
    );
    // What an administrator sees.
    let out = std::process::Command::new(Tools::get().unwrap().bin("kubectl"))
        .arg(format!("--kubeconfig={}", plane.kubeconfig().display()))
        .args(["logs", "-n", &ns, "vmi-step-09"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "restarting pods\ndone\n"
    );
}
