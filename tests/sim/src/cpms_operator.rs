//! A stand-in for the control plane machine set operator (research
//! `openshift-vsphere.md` §5), and for the etcd operator's part in
//! replacing a control plane Machine.
//!
//! Generator: when `openshift-machine-api/cluster` is missing it is
//! regenerated, `Inactive`, from the current control plane Machines; an
//! `Inactive` one that differs from what would be generated is deleted and
//! created again (so an edit to an Inactive CPMS is lost unless it sets
//! `state: Active` in the same write); an `Active` one is left to the
//! controller below. The generated failure domains are the
//! Infrastructure's failure domains the Machines are in (matched by
//! server, datacenter and datastore), and the provider spec is a control
//! plane Machine's with the topology fields cleared, as
//! `ResetTopologyRelatedFields` does when the Infrastructure has failure
//! domains.
//!
//! Controller (an `Active` CPMS, see [`rollout`]): each index gets the
//! template's provider spec with its failure domain injected; a Machine
//! whose provider spec differs is replaced, with `RollingUpdate` one index
//! at a time (surge 1: the replacement, Running with a Ready Node, then the
//! old Machine deleted), with `OnDelete` only once someone deleted it. The
//! status counts replicas, ready, updated and unavailable ones as the real
//! controller does, with its Available, Degraded and Progressing
//! conditions.
//!
//! etcd operator: a control plane Machine being deleted keeps its
//! `EtcdQuorumOperator` pre-drain hook until `spec.replicas` other control
//! plane Machines run with Ready Nodes; then the hook is removed (the
//! member moved), and the machine API may delete it.

mod rollout;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams,
    Preconditions,
};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

/// The namespace of Machines and the CPMS.
const NAMESPACE: &str = "openshift-machine-api";
/// How long the operator waits after an event before acting, as the real
/// one's requeue does.
const DELAY: Duration = Duration::from_millis(300);
/// A pass at least this often, even without events.
const RESYNC: Duration = Duration::from_secs(2);

/// The running stand-in. Stops when dropped.
pub struct CpmsOperator {
    task: tokio::task::JoinHandle<()>,
    counters: Arc<Counters>,
}

/// What the stand-in counts and records, shared with its task.
#[derive(Debug, Default)]
struct Counters {
    generated: AtomicU64,
    replacements: AtomicU64,
    problems: Mutex<Vec<String>>,
}

impl Counters {
    /// Records a problem once (the real operator logs it and the webhook
    /// would have refused the change).
    fn problem(&self, message: String) {
        if let Ok(mut problems) = self.problems.lock()
            && !problems.contains(&message)
        {
            eprintln!("vmi-sim control plane machine set operator: {message}");
            problems.push(message);
        }
    }
}

fn resource(group: &str, version: &str, kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

fn cpms_api(client: &Client) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        NAMESPACE,
        &resource("machine.openshift.io", "v1", "ControlPlaneMachineSet"),
    )
}

impl CpmsOperator {
    /// Starts the generator, the controller and the etcd operator's part on
    /// the current Tokio runtime.
    pub fn start(client: Client) -> CpmsOperator {
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(run(client, counters.clone()));
        CpmsOperator { task, counters }
    }

    /// How many control plane machine sets it has (re)created.
    pub fn generated(&self) -> u64 {
        self.counters.generated.load(Ordering::Relaxed)
    }

    /// How many replacement control plane Machines it has created.
    pub fn replacements(&self) -> u64 {
        self.counters.replacements.load(Ordering::Relaxed)
    }

    /// What it refused to act on (e.g. an unknown failure domain), each
    /// once, oldest first.
    pub fn problems(&self) -> Vec<String> {
        self.counters
            .problems
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }
}

impl Drop for CpmsOperator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The loop: a pass after every event (CPMS, Machines, Nodes,
/// Infrastructure) and at least every [`RESYNC`].
async fn run(client: Client, counters: Arc<Counters>) {
    let mut events = triggers(&client);
    // The spec of the last CPMS it created, as the API server stored it
    // (with defaults), to tell an edit from its own object.
    let mut last_stored: Option<Value> = None;
    loop {
        tokio::select! {
            _ = events.next() => {}
            () = tokio::time::sleep(RESYNC) => {}
        }
        tokio::time::sleep(DELAY).await;
        // Events that arrived meanwhile are covered by this pass.
        if let Ok(true) = reconcile(&client, &mut last_stored).await {
            counters.generated.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(err) = rollout::reconcile(&client, &counters).await {
            eprintln!("vmi-sim control plane machine set operator: {err}");
        }
        if let Err(err) = rollout::release_etcd_hooks(&client).await {
            eprintln!("vmi-sim etcd operator: {err}");
        }
    }
}

fn triggers(client: &Client) -> BoxStream<'static, ()> {
    let config = watcher::Config::default;
    let machines = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        NAMESPACE,
        &resource("machine.openshift.io", "v1beta1", "Machine"),
    );
    let infrastructure = Api::<DynamicObject>::all_with(
        client.clone(),
        &resource("config.openshift.io", "v1", "Infrastructure"),
    );
    let streams = vec![
        watcher(cpms_api(client), config())
            .default_backoff()
            .map(|_| ())
            .boxed(),
        watcher(machines, config())
            .default_backoff()
            .map(|_| ())
            .boxed(),
        watcher(Api::<Node>::all(client.clone()), config())
            .default_backoff()
            .map(|_| ())
            .boxed(),
        watcher(infrastructure, config())
            .default_backoff()
            .map(|_| ())
            .boxed(),
    ];
    futures::stream::select_all(streams).boxed()
}

/// One pass; returns whether it created a CPMS.
async fn reconcile(client: &Client, last_stored: &mut Option<Value>) -> Result<bool, kube::Error> {
    let cpms_api = cpms_api(client);
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
