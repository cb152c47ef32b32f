//! The CVO-down clock on a real API server: the time the
//! cluster-version operator's Deployment asks for zero replicas (or is
//! gone) is added up, and an up Deployment adds nothing.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use vmi_sim::ControlPlane;
use vmi_sim::disruption::{CVO_DEPLOYMENT, CVO_NAMESPACE, CvoDowntime};

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not within 10 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cvo_downtime_adds_up_the_time_at_zero_replicas() {
    let plane = ControlPlane::shared().unwrap();
    let client = plane.client().await.unwrap();
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": CVO_NAMESPACE}})).unwrap(),
        )
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), CVO_NAMESPACE);
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": CVO_DEPLOYMENT},
                "spec": {"replicas": 1,
                    "selector": {"matchLabels": {"k8s-app": "cluster-version-operator"}},
                    "template": {"metadata": {"labels": {"k8s-app": "cluster-version-operator"}},
                        "spec": {"containers": [{"name": "cvo", "image": "cvo:test"}]}}},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let scale = |replicas: i32| {
        let deployments = deployments.clone();
        async move {
            deployments
                .patch(
                    CVO_DEPLOYMENT,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"replicas": replicas}})),
                )
                .await
                .unwrap();
        }
    };

    let downtime = CvoDowntime::start(client.clone());
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(downtime.total(), Duration::ZERO, "up: nothing counted");
    assert_eq!(downtime.periods(), 0);

    scale(0).await;
    until("the CVO is seen down", || downtime.is_down()).await;
    let down_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // An edit that keeps it at zero is the same period.
    deployments
        .patch(
            CVO_DEPLOYMENT,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    scale(1).await;
    until("the CVO is seen up", || !downtime.is_down()).await;
    let waited = down_at.elapsed();
    let total = downtime.total();
    assert!(
        total >= Duration::from_millis(2000) && total <= waited + Duration::from_millis(500),
        "down about 2 s, counted {total:?} (waited {waited:?})"
    );
    assert_eq!(downtime.periods(), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(downtime.total(), total, "up again: the clock stopped");

    // A deleted Deployment runs no CVO either.
    deployments
        .delete(CVO_DEPLOYMENT, &DeleteParams::default())
        .await
        .unwrap();
    until("the deleted CVO is seen down", || downtime.is_down()).await;
    assert_eq!(downtime.periods(), 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(downtime.total() > total, "the clock runs while it is gone");
}
