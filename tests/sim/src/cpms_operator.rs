//! A stand-in for the generator of the control plane machine set operator
//! (research `openshift-vsphere.md` §5): when `openshift-machine-api/cluster`
//! is missing it is regenerated, `Inactive`, from the current control plane
//! Machines; an `Inactive` one that differs from what would be generated is
//! deleted and created again (so an edit to an Inactive CPMS is lost unless
//! it sets `state: Active` in the same write); an `Active` one is left alone.
//!
//! The generated failure domains are the Infrastructure's failure domains
//! the Machines are in (matched by server, datacenter and datastore), and
//! the provider spec is a control plane Machine's with the topology fields
//! cleared, as `ResetTopologyRelatedFields` does when the Infrastructure has
//! failure domains.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams,
    Preconditions,
};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

/// The namespace of Machines and the CPMS.
const NAMESPACE: &str = "openshift-machine-api";
/// How long the generator waits after an event before acting, as the real
/// one's requeue does.
const DELAY: Duration = Duration::from_millis(300);

/// The running stand-in.
pub struct CpmsGenerator {
    task: tokio::task::JoinHandle<()>,
    generated: Arc<AtomicU64>,
}

fn resource(group: &str, version: &str, kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

impl CpmsGenerator {
    /// Starts the generator.
    pub fn start(client: Client) -> CpmsGenerator {
        let generated = Arc::new(AtomicU64::new(0));
        let counter = generated.clone();
        let task = tokio::spawn(async move {
            let cpms = Api::<DynamicObject>::namespaced_with(
                client.clone(),
                NAMESPACE,
                &resource("machine.openshift.io", "v1", "ControlPlaneMachineSet"),
            );
            let mut events = watcher(cpms, watcher::Config::default())
                .default_backoff()
                .boxed();
            // The spec of the last CPMS it created, as the API server stored
            // it (with defaults), to tell an edit from its own object.
            let mut last_stored: Option<Value> = None;
            while let Some(event) = events.next().await {
                if event.is_err() {
                    continue;
                }
                tokio::time::sleep(DELAY).await;
                // Events that arrived meanwhile are covered by this pass.
                if let Ok(true) = reconcile(&client, &mut last_stored).await {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        CpmsGenerator { task, generated }
    }

    /// How many control plane machine sets it has (re)created.
    pub fn generated(&self) -> u64 {
        self.generated.load(Ordering::Relaxed)
    }
}

impl Drop for CpmsGenerator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One pass; returns whether it created a CPMS.
async fn reconcile(client: &Client, last_stored: &mut Option<Value>) -> Result<bool, kube::Error> {
    let cpms_api = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        NAMESPACE,
        &resource("machine.openshift.io", "v1", "ControlPlaneMachineSet"),
    );
    let current = cpms_api.get_opt("cluster").await?;
    if let Some(current) = &current
        && (current.metadata.deletion_timestamp.is_some()
            || current.data["spec"]["state"].as_str() == Some("Active"))
    {
        return Ok(false);
    }
    let Some(wanted) = generate(client).await? else {
        return Ok(false);
    };
    if let Some(current) = current {
        if Some(&current.data["spec"]) == last_stored.as_ref() {
            return Ok(false);
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: current.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        cpms_api.delete("cluster", &params).await?;
    }
    let object: DynamicObject = match serde_json::from_value(wanted) {
        Ok(o) => o,
        Err(_) => return Ok(false),
    };
    match cpms_api.create(&PostParams::default(), &object).await {
        Ok(created) => {
            *last_stored = Some(created.data["spec"].clone());
            Ok(true)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// The CPMS the operator would generate, or `None` with fewer than two
/// control plane Machines.
async fn generate(client: &Client) -> Result<Option<Value>, kube::Error> {
    let machines = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        NAMESPACE,
        &resource("machine.openshift.io", "v1beta1", "Machine"),
    )
    .list(&ListParams::default().labels("machine.openshift.io/cluster-api-machine-role=master"))
    .await?;
    let mut masters: Vec<&DynamicObject> = machines
        .items
        .iter()
        .filter(|m| m.metadata.deletion_timestamp.is_none())
        .collect();
    masters.sort_by_key(|m| m.metadata.name.clone());
    let Some(first) = masters.first() else {
        return Ok(None);
    };
    if masters.len() < 2 {
        return Ok(None);
    }
    let infrastructure = Api::<DynamicObject>::all_with(
        client.clone(),
        &resource("config.openshift.io", "v1", "Infrastructure"),
    )
    .get("cluster")
    .await?;
    let domains = infrastructure.data["spec"]["platformSpec"]["vsphere"]["failureDomains"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut names: Vec<String> = Vec::new();
    for machine in &masters {
        let workspace = &machine.data["spec"]["providerSpec"]["value"]["workspace"];
        if let Some(domain) = domains.iter().find(|d| {
            d["server"] == workspace["server"]
                && d["topology"]["datacenter"] == workspace["datacenter"]
                && d["topology"]["datastore"] == workspace["datastore"]
        }) && let Some(name) = domain["name"].as_str()
            && !names.iter().any(|n| n == name)
        {
            names.push(name.to_owned());
        }
    }
    let mut provider_spec = first.data["spec"]["providerSpec"]["value"].clone();
    if !domains.is_empty()
        && let Some(spec) = provider_spec.as_object_mut()
    {
        spec.remove("workspace");
        spec.remove("template");
        spec.insert("network".into(), json!({"devices": []}));
    }
    let labels = json!({
        "machine.openshift.io/cluster-api-cluster":
            first.metadata.labels.as_ref().and_then(|l| l.get("machine.openshift.io/cluster-api-cluster")).cloned().unwrap_or_default(),
        "machine.openshift.io/cluster-api-machine-role": "master",
        "machine.openshift.io/cluster-api-machine-type": "master",
    });
    let failure_domains: Vec<Value> = names.iter().map(|n| json!({"name": n})).collect();
    Ok(Some(json!({
        "apiVersion": "machine.openshift.io/v1",
        "kind": "ControlPlaneMachineSet",
        "metadata": {"name": "cluster", "namespace": NAMESPACE},
        "spec": {
            "state": "Inactive",
            "replicas": masters.len(),
            "strategy": {"type": "RollingUpdate"},
            "selector": {"matchLabels": labels},
            "template": {
                "machineType": "machines_v1beta1_machine_openshift_io",
                "machines_v1beta1_machine_openshift_io": {
                    "failureDomains": {"platform": "VSphere", "vsphere": failure_domains},
                    "metadata": {"labels": labels},
                    "spec": {"providerSpec": {"value": provider_spec}},
                },
            },
        },
    })))
}
