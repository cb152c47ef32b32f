//! The control plane is real: the controller manager runs Jobs, collects
//! garbage and rolls Deployments, and RBAC applies to service-account tokens.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde::de::DeserializeOwned;
use serde_json::json;
use vmi_sim::ControlPlane;

fn from_json<T: DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).unwrap()
}

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

async fn setup(prefix: &str) -> (&'static ControlPlane, Client, String) {
    let plane = ControlPlane::shared().expect("the control plane starts");
    eprintln!(
        "control plane up in {:?} ({})",
        plane.startup,
        plane.server()
    );
    let client = plane.client().await.unwrap();
    let namespace = plane.namespace(&client, prefix).await.unwrap();
    (plane, client, namespace)
}

#[tokio::test]
async fn a_job_gets_its_pod_from_the_job_controller() {
    let (_, client, ns) = setup("job").await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let job: Job = from_json(json!({
        "metadata": {"name": "vmi-step-00-preflight"},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "step", "image": "vmi:test", "command": ["vmi-step", "preflight"]}]
        }}}
    }));
    let created = jobs.create(&PostParams::default(), &job).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let pod = eventually("the Job's pod", Duration::from_secs(30), || async {
        let list = pods
            .list(
                &ListParams::default().labels("batch.kubernetes.io/job-name=vmi-step-00-preflight"),
            )
            .await
            .ok()?;
        list.items.into_iter().next()
    })
    .await;
    let owner = &pod.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Job", created.metadata.uid.unwrap().as_str())
    );
}

#[tokio::test]
async fn deleting_an_owner_collects_its_dependents() {
    let (_, client, ns) = setup("gc").await;
    let maps: Api<ConfigMap> = Api::namespaced(client, &ns);
    let owner = maps
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": "owner"}})),
        )
        .await
        .unwrap();
    let dependent: ConfigMap = from_json(
        json!({"metadata": {"name": "dependent", "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid.unwrap()
        }]}}),
    );
    maps.create(&PostParams::default(), &dependent)
        .await
        .unwrap();
    maps.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    eventually("the garbage collector", Duration::from_secs(30), || async {
        maps.get_opt("dependent")
            .await
            .ok()
            .and_then(|found| found.is_none().then_some(()))
    })
    .await;
}

#[tokio::test]
async fn a_deployment_gets_a_replica_set_and_pods() {
    let (_, client, ns) = setup("deploy").await;
    let deployment: Deployment = from_json(json!({
        "metadata": {"name": "vsphere-problem-detector-operator"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"name": "vsphere-problem-detector-operator"}},
            "template": {"metadata": {"labels": {"name": "vsphere-problem-detector-operator"}},
                "spec": {"containers": [{"name": "operator", "image": "detector:test"}]}}}
    }));
    Api::<Deployment>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    eventually("a ReplicaSet", Duration::from_secs(30), || async {
        sets.list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .next()
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    eventually("two pods", Duration::from_secs(30), || async {
        (pods
            .list(&ListParams::default().labels("name=vsphere-problem-detector-operator"))
            .await
            .ok()?
            .items
            .len()
            == 2)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn rbac_applies_to_a_service_account_token() {
    let (plane, client, ns) = setup("rbac").await;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    accounts
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": "vmi-step"}})),
        )
        .await
        .unwrap();
    let request: TokenRequest =
        from_json(json!({"spec": {"audiences": [], "expirationSeconds": 3600}}));
    let issued: TokenRequest = accounts
        .create_subresource("token", "vmi-step", &PostParams::default(), &request)
        .await
        .unwrap();
    let token = issued.status.unwrap().token;
    let kubeconfig = plane.dir().join(format!("{ns}-vmi-step.kubeconfig"));
    plane.write_token_kubeconfig(&token, &kubeconfig).unwrap();
    let as_step = vmi_sim::control_plane::client_from(&kubeconfig)
        .await
        .unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(as_step, &ns);

    let denied = maps.list(&ListParams::default()).await.unwrap_err();
    assert!(
        matches!(&denied, kube::Error::Api(status) if status.code == 403),
        "expected forbidden, got {denied:?}"
    );
    assert!(
        denied.to_string().contains("system:serviceaccount:"),
        "the refusal names the account: {denied}"
    );

    let role: Role = from_json(json!({"metadata": {"name": "read-configmaps"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]}));
    let binding: RoleBinding = from_json(json!({"metadata": {"name": "vmi-step-reads-configmaps"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-configmaps"},
        "subjects": [{"kind": "ServiceAccount", "name": "vmi-step", "namespace": ns}]}));
    Api::<Role>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(client, &ns)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    eventually(
        "the role binding to take effect",
        Duration::from_secs(10),
        || async { maps.list(&ListParams::default()).await.ok() },
    )
    .await;
}

#[tokio::test]
async fn the_api_server_reports_the_pinned_release() {
    let (_, client, _) = setup("version").await;
    let version = client.apiserver_version().await.unwrap();
    let minor: u32 = version.minor.trim_end_matches('+').parse().unwrap();
    assert_eq!(version.major, "1");
    assert!(
        minor >= 33,
        "k8s-openapi 0.29 needs Kubernetes 1.33 or newer, got {}",
        version.git_version
    );
    assert!(
        version.git_version.starts_with(&format!("v1.{minor}.")),
        "{}",
        version.git_version
    );
}
