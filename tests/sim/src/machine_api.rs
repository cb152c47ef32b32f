//! A stand-in for the machine API on vSphere (research `openshift-vsphere.md`
//! §4): the MachineSet controller, the Machine controller with the vSphere
//! actuator, and the nodelink controller's part, acting on the vCenter
//! simulators with `govc` and the credentials the Machines' secret holds.
//!
//! - MachineSets: the Machines a set's selector matches (and no other
//!   controller owns) are kept at `spec.replicas`: new ones from the
//!   template (`generateName: <set>-`, the API server adds five random
//!   characters), the surplus deleted (`machine.openshift.io/delete-machine`
//!   or an error first, then the newest; `deletePolicy: Oldest` the
//!   oldest). The status counts them.
//! - Machines: the finalizer `machine.machine.openshift.io` is added. A
//!   Machine without a provider ID gets a VM in the vCenter its
//!   `workspace.server` names, cloned with the credentials of its
//!   `credentialsSecret` for that server, tagged with the cluster-id tag,
//!   and labelled with its region and zone tags; then its Node (name, role,
//!   provider ID, topology labels, a Ready status pointing at the kubelet
//!   API) and phase `Running`. Seeded Machines, which have VMs and Nodes,
//!   only get the finalizer.
//! - Deletion waits for the `preDrain` and `preTerminate` lifecycle hooks to
//!   be gone, destroys the VM with the credentials for its server, deletes
//!   the Node and removes the finalizer. Missing credentials leave it in
//!   `Deleting` with the error in `status.errorMessage`, as on a real
//!   cluster.
//!
//! Not simulated: drain, IP address claims, user data, data disks,
//! `tagIDs`, VM groups, linked clones, MachineHealthChecks, the webhooks,
//! and orphan adoption (a matching Machine without an owner is counted,
//! not adopted). Addresses are `InternalDNS` (the VM name) and an
//! `InternalIP` from 192.0.2.100–249 (vcsim VMs report no guest IP).

mod vsphere;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::{Node, Secret};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::kubelet_api::{self, KubeletApi};
use crate::seed::{self, MachineNode};
use crate::vcsim::{GovcTarget, VCenterSim};
use vsphere::{Govc, Placement, Trouble, VmFacts};

/// The namespace of Machines, MachineSets and their credentials.
pub const NAMESPACE: &str = "openshift-machine-api";
/// The finalizer the Machine controller puts on every Machine.
pub const FINALIZER: &str = "machine.machine.openshift.io";
/// The Machine label naming the cluster (its infrastructure id).
pub const CLUSTER_LABEL: &str = "machine.openshift.io/cluster-api-cluster";
/// The Machine label naming its role (`master`, `worker`).
pub const ROLE_LABEL: &str = "machine.openshift.io/cluster-api-machine-role";
/// The Machine label the actuator sets from the `openshift-region` tag.
pub const REGION_LABEL: &str = "machine.openshift.io/region";
/// The Machine label the actuator sets from the `openshift-zone` tag.
pub const ZONE_LABEL: &str = "machine.openshift.io/zone";
/// `status.errorReason` of a Machine whose configuration cannot work.
pub const INVALID_CONFIGURATION: &str = "InvalidConfiguration";

/// Between the phases of one Machine, as a clone and a first boot take time.
const PHASE_DELAY: Duration = Duration::from_millis(300);
/// How long a Machine waits after an error before the next attempt.
const RETRY: Duration = Duration::from_secs(2);
/// A pass at least this often, even without events (retries, hooks).
const RESYNC: Duration = Duration::from_secs(1);

/// The running stand-in. Stops when dropped.
pub struct MachineApi {
    task: tokio::task::JoinHandle<()>,
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    created: AtomicU64,
    destroyed: AtomicU64,
}

/// What the controller's tasks share.
struct Shared {
    client: Client,
    vcenters: Vec<GovcTarget>,
    kubelet_port: u16,
    counters: Arc<Counters>,
    /// Machines a worker is reconciling now: one worker per Machine.
    busy: Mutex<HashSet<String>>,
    /// Machines that failed, and when to try them again.
    retry_at: Mutex<HashMap<String, Instant>>,
    /// Wakes the main loop when a worker is done.
    wake: Notify,
    next_address: AtomicU32,
}

impl MachineApi {
    /// Starts the controllers on the current Tokio runtime (which must not
    /// be blocked: a test that calls blocking code should use the
    /// multi-threaded flavour). `kubelet` is the control plane's kubelet
    /// API, the new Nodes point at it; `vcenters` are the vCenters Machines
    /// may name in `workspace.server` (any other server is an invalid
    /// configuration).
    pub fn start(client: Client, kubelet: &KubeletApi, vcenters: &[&VCenterSim]) -> MachineApi {
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared {
            client,
            vcenters: vcenters.iter().map(|v| v.govc_target()).collect(),
            kubelet_port: kubelet.port(),
            counters: counters.clone(),
            busy: Mutex::new(HashSet::new()),
            retry_at: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            next_address: AtomicU32::new(0),
        });
        let task = tokio::spawn(run(shared));
        MachineApi { task, counters }
    }

    /// How many VMs it has cloned.
    pub fn created(&self) -> u64 {
        self.counters.created.load(Ordering::Relaxed)
    }

    /// How many VMs it has destroyed (and seen gone).
    pub fn destroyed(&self) -> u64 {
        self.counters.destroyed.load(Ordering::Relaxed)
    }
}

impl Drop for MachineApi {
    fn drop(&mut self) {
        // The workers live in the task's JoinSet: aborting it aborts them.
        self.task.abort();
    }
}

/// The main loop: a pass on every event, when a worker is done, and at
/// least every [`RESYNC`].
async fn run(shared: Arc<Shared>) {
    let mut events = triggers(&shared.client);
    let mut workers = JoinSet::new();
    loop {
        if let Err(err) = pass(&shared, &mut workers).await {
            eprintln!("vmi-sim machine API: {err}");
        }
        while workers.try_join_next().is_some() {}
        tokio::select! {
            _ = events.next() => {}
            () = shared.wake.notified() => {}
            () = tokio::time::sleep(RESYNC) => {}
        }
        // Let a burst of events arrive: one pass covers them.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Changes to Machines, MachineSets, Nodes and the namespace's secrets.
fn triggers(client: &Client) -> BoxStream<'static, ()> {
    let config = watcher::Config::default;
    let streams = vec![
        watcher(machines(client), config())
            .default_backoff()
            .map(|_| ())
            .boxed(),
        watcher(machine_sets(client), config())
            .default_backoff()
            .map(|_| ())
            .boxed(),
        watcher(Api::<Node>::all(client.clone()), config())
            .default_backoff()
            .map(|_| ())
            .boxed(),
        watcher(
            Api::<Secret>::namespaced(client.clone(), NAMESPACE),
            config(),
        )
        .default_backoff()
        .map(|_| ())
        .boxed(),
    ];
    futures::stream::select_all(streams).boxed()
}

/// One pass: every MachineSet reconciled, a worker started for every
/// Machine with something to do.
async fn pass(shared: &Arc<Shared>, workers: &mut JoinSet<()>) -> Result<(), String> {
    let client = &shared.client;
    let context = |what: &'static str| move |e: kube::Error| format!("list {what}: {e}");
    let all_machines = machines(client)
        .list(&ListParams::default())
        .await
        .map_err(context("Machines"))?
        .items;
    let sets = machine_sets(client)
        .list(&ListParams::default())
        .await
        .map_err(context("MachineSets"))?
        .items;
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(context("Nodes"))?
        .items;
    let ready = ready_nodes(&nodes);
    for set in &sets {
        if let Err(err) = reconcile_machine_set(client, set, &all_machines, &ready).await {
            eprintln!("vmi-sim machine API: MachineSet {}: {err}", set.name_any());
        }
    }
    for machine in all_machines.iter().filter(|m| needs_work(m)) {
        start_worker(shared, workers, machine.name_any());
    }
    Ok(())
}

/// Starts a worker for `name` unless one runs or it waits for a retry.
fn start_worker(shared: &Arc<Shared>, workers: &mut JoinSet<()>, name: String) {
    let due = shared
        .retry_at
        .lock()
        .map(|r| r.get(&name).is_none_or(|at| Instant::now() >= *at))
        .unwrap_or(false);
    let free = due
        && shared
            .busy
            .lock()
            .map(|mut busy| busy.insert(name.clone()))
            .unwrap_or(false);
    if !free {
        return;
    }
    let shared = shared.clone();
    workers.spawn(async move {
        let outcome = reconcile_machine(&shared, &name).await;
        if let Ok(mut retry_at) = shared.retry_at.lock() {
            match outcome {
                Ok(()) => retry_at.remove(&name),
                Err(()) => retry_at.insert(name.clone(), Instant::now() + RETRY),
            };
        }
        if let Ok(mut busy) = shared.busy.lock() {
            busy.remove(&name);
        }
        shared.wake.notify_one();
    });
}

/// Whether the Machine controller has something to do for `machine`.
fn needs_work(machine: &DynamicObject) -> bool {
    if deleting(machine) {
        return has_finalizer(machine);
    }
    if !has_finalizer(machine) {
        return true;
    }
    if phase(machine) == "Failed" {
        return false;
    }
    provider_id(machine).is_empty() || node_ref(machine).is_none() || phase(machine) != "Running"
}

// ---------------------------------------------------------------------------
// MachineSet controller

/// Keeps the set's Machines at `spec.replicas` and its status current.
async fn reconcile_machine_set(
    client: &Client,
    set: &DynamicObject,
    all_machines: &[DynamicObject],
    ready: &BTreeSet<String>,
) -> Result<(), String> {
    if deleting(set) {
        return Ok(());
    }
    let uid = set.metadata.uid.clone().unwrap_or_default();
    let selector = &set.data["spec"]["selector"];
    let active: Vec<&DynamicObject> = all_machines
        .iter()
        .filter(|m| !deleting(m) && controlled_by_or_orphan(m, &uid))
        .filter(|m| selector_matches(selector, &labels(m)))
        .collect();
    let wanted = set.data["spec"]["replicas"].as_u64().unwrap_or(1) as usize;
    if active.len() < wanted {
        for _ in active.len()..wanted {
            create_set_machine(client, set).await?;
        }
    } else if active.len() > wanted {
        let policy = set.data["spec"]["deletePolicy"].as_str().unwrap_or("");
        for machine in surplus(&active, active.len() - wanted, policy) {
            machines(client)
                .delete(&machine.name_any(), &DeleteParams::default())
                .await
                .map_err(|e| format!("delete Machine {}: {e}", machine.name_any()))?;
        }
    }
    write_set_status(client, set, &active, ready).await
}

/// Whether `machine` has no controller, or `uid` is its controller.
fn controlled_by_or_orphan(machine: &DynamicObject, uid: &str) -> bool {
    machine
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .is_none_or(|o| o.uid == uid)
}

/// A new Machine from the set's template, owned by the set.
async fn create_set_machine(client: &Client, set: &DynamicObject) -> Result<(), String> {
    let name = set.name_any();
    let template = &set.data["spec"]["template"];
    let mut metadata = json!({
        "generateName": format!("{name}-"),
        "namespace": NAMESPACE,
        "ownerReferences": [{"apiVersion": "machine.openshift.io/v1beta1", "kind": "MachineSet",
            "name": name, "uid": set.metadata.uid, "controller": true, "blockOwnerDeletion": true}],
    });
    for field in ["labels", "annotations"] {
        if template["metadata"][field].is_object() {
            metadata[field] = template["metadata"][field].clone();
        }
    }
    let machine: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "machine.openshift.io/v1beta1",
        "kind": "Machine",
        "metadata": metadata,
        "spec": template["spec"],
    }))
    .map_err(|e| format!("a Machine from the template: {e}"))?;
    machines(client)
        .create(&PostParams::default(), &machine)
        .await
        .map(|_| ())
        .map_err(|e| format!("create a Machine: {e}"))
}

/// The `count` Machines to delete: those annotated
/// `machine.openshift.io/delete-machine` or with an error first, then the
/// newest (the oldest with `deletePolicy: Oldest`).
fn surplus<'a>(active: &[&'a DynamicObject], count: usize, policy: &str) -> Vec<&'a DynamicObject> {
    let mut ranked: Vec<&DynamicObject> = active.to_vec();
    ranked.sort_by_key(|m| {
        let created = m
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second())
            .unwrap_or_default();
        let age_rank = if policy == "Oldest" {
            created
        } else {
            -created
        };
        (!must_delete(m), age_rank, m.name_any())
    });
    ranked.into_iter().take(count).collect()
}

/// Marked for deletion by a person, or broken.
fn must_delete(machine: &DynamicObject) -> bool {
    let marked = machine.annotations().keys().any(|k| {
        k == "machine.openshift.io/delete-machine"
            || k == "machine.openshift.io/cluster-api-delete-machine"
    });
    marked
        || !machine.data["status"]["errorReason"].is_null()
        || !machine.data["status"]["errorMessage"].is_null()
}

/// Writes replicas, fully labelled, ready and available replicas, the
/// label selector and the observed generation, when they changed.
async fn write_set_status(
    client: &Client,
    set: &DynamicObject,
    active: &[&DynamicObject],
    ready: &BTreeSet<String>,
) -> Result<(), String> {
    let template_labels = &set.data["spec"]["template"]["metadata"]["labels"];
    let fully_labeled = active
        .iter()
        .filter(|m| {
            let own = labels(m);
            template_labels
                .as_object()
                .into_iter()
                .flatten()
                .all(|(k, v)| {
                    v.as_str()
                        .is_some_and(|v| own.get(k).map(String::as_str) == Some(v))
                })
        })
        .count();
    let ready_count = active
        .iter()
        .filter(|m| running_and_ready(m, ready))
        .count();
    let status = json!({
        "replicas": active.len(),
        "fullyLabeledReplicas": fully_labeled,
        "readyReplicas": ready_count,
        "availableReplicas": ready_count,
        "labelSelector": format_selector(&set.data["spec"]["selector"]),
        "observedGeneration": set.metadata.generation,
    });
    let current = &set.data["status"];
    let unchanged = status
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| &current[k] == v);
    if unchanged {
        return Ok(());
    }
    machine_sets(client)
        .patch_status(
            &set.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .map(|_| ())
        .map_err(|e| format!("write the status: {e}"))
}

/// A label selector as `metav1.FormatLabelSelector` writes it, for the
/// `matchLabels` part (`k=v,…`, sorted).
fn format_selector(selector: &Value) -> String {
    let pairs: BTreeMap<&str, &str> = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
        .collect();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

// ---------------------------------------------------------------------------
// Machine controller

/// One Machine's turn. `Err` asks for a retry after [`RETRY`].
async fn reconcile_machine(shared: &Shared, name: &str) -> Result<(), ()> {
    let api = machines(&shared.client);
    let machine = match api.get_opt(name).await {
        Ok(Some(machine)) => machine,
        Ok(None) => return Ok(()),
        Err(err) => {
            eprintln!("vmi-sim machine API: get Machine {name}: {err}");
            return Err(());
        }
    };
    let outcome = if deleting(&machine) {
        delete_machine(shared, &machine).await
    } else if !has_finalizer(&machine) {
        add_finalizer(&api, &machine).await
    } else if provider_id(&machine).is_empty() {
        provision(shared, &machine).await
    } else {
        link_node(shared, &machine).await
    };
    match outcome {
        Ok(()) => Ok(()),
        Err(trouble) => report(&api, &machine, trouble).await,
    }
}

/// Writes what went wrong: an invalid configuration fails a Machine that
/// is not being deleted; anything else is an error message and a retry.
async fn report(
    api: &Api<DynamicObject>,
    machine: &DynamicObject,
    trouble: Trouble,
) -> Result<(), ()> {
    let (status, retry) = match trouble {
        Trouble::Invalid(message) if !deleting(machine) => (
            json!({"phase": "Failed", "errorReason": INVALID_CONFIGURATION,
                "errorMessage": message, "lastUpdated": now()}),
            false,
        ),
        Trouble::Invalid(message) | Trouble::Transient(message) => {
            (json!({"errorMessage": message}), true)
        }
    };
    if machine.data["status"]["errorMessage"] != status["errorMessage"]
        || machine.data["status"]["phase"] != status["phase"] && !status["phase"].is_null()
    {
        let written = patch_status(api, &machine.name_any(), status).await;
        if let Err(trouble) = written {
            eprintln!("vmi-sim machine API: {trouble:?}");
            return Err(());
        }
    }
    if retry { Err(()) } else { Ok(()) }
}

/// Adds the finalizer (guarded by the resource version).
async fn add_finalizer(api: &Api<DynamicObject>, machine: &DynamicObject) -> Result<(), Trouble> {
    let mut finalizers = machine.finalizers().to_vec();
    finalizers.push(FINALIZER.to_owned());
    patch(
        api,
        &machine.name_any(),
        json!({"metadata": {"finalizers": finalizers,
            "resourceVersion": machine.metadata.resource_version}}),
    )
    .await
}

/// Clones the Machine's VM and records it, then links its Node.
async fn provision(shared: &Shared, machine: &DynamicObject) -> Result<(), Trouble> {
    let name = machine.name_any();
    let api = machines(&shared.client);
    let infra_id = labels(machine)
        .get(CLUSTER_LABEL)
        .cloned()
        .unwrap_or_default();
    if infra_id.is_empty() {
        return Err(Trouble::Invalid(format!(
            "{name}: missing {CLUSTER_LABEL:?} label"
        )));
    }
    if phase(machine).is_empty() {
        patch_status(&api, &name, json!({"phase": "Provisioning"})).await?;
        tokio::time::sleep(PHASE_DELAY).await;
    }
    let spec = machine.data["spec"]["providerSpec"]["value"].clone();
    let login = login(shared, &name, &spec).await?;
    let placement = Placement::of(&spec);
    let counters = shared.counters.clone();
    let vm_name = name.clone();
    let facts = blocking(move || {
        let govc = login.govc();
        if vsphere::ensure_clone(&govc, &vm_name, &placement)? {
            counters.created.fetch_add(1, Ordering::Relaxed);
        }
        vsphere::reconcile_vm(&govc, &vm_name, &placement, &infra_id)
    })
    .await?;
    record_vm(shared, &name, &facts).await?;
    tokio::time::sleep(PHASE_DELAY).await;
    let machine = api
        .get(&name)
        .await
        .map_err(kube_trouble(format!("get Machine {name}")))?;
    link_node(shared, &machine).await
}

/// The vCenter and credentials a provider spec's Machine uses.
struct Login {
    target: GovcTarget,
    username: String,
    password: String,
}

impl Login {
    fn govc(&self) -> Govc<'_> {
        Govc {
            target: &self.target,
            username: &self.username,
            password: &self.password,
        }
    }
}

/// The vCenter of `workspace.server` and the credentials for it in the
/// `credentialsSecret` (keys `<server>.username`, `<server>.password`).
async fn login(shared: &Shared, name: &str, spec: &Value) -> Result<Login, Trouble> {
    let server = spec["workspace"]["server"].as_str().unwrap_or_default();
    let target = shared
        .vcenters
        .iter()
        .find(|v| v.server == server)
        .cloned()
        .ok_or_else(|| {
            let known: Vec<&str> = shared.vcenters.iter().map(|v| v.server.as_str()).collect();
            Trouble::Invalid(format!(
                "{name}: workspace.server {server:?} is not a vCenter of this cluster (known: {})",
                known.join(", ")
            ))
        })?;
    let secret_name = spec["credentialsSecret"]["name"]
        .as_str()
        .unwrap_or_default();
    if secret_name.is_empty() {
        return Err(Trouble::Invalid(format!(
            "{name}: providerSpec.credentialsSecret.name is not set"
        )));
    }
    let secret = Api::<Secret>::namespaced(shared.client.clone(), NAMESPACE)
        .get_opt(secret_name)
        .await
        .map_err(kube_trouble(format!(
            "get secret {NAMESPACE}/{secret_name}"
        )))?
        .ok_or_else(|| {
            Trouble::Invalid(format!(
                "credentials secret {NAMESPACE}/{secret_name} not found"
            ))
        })?;
    let field = |suffix: &str| -> Result<String, Trouble> {
        let key = format!("{server}.{suffix}");
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(&key))
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            .ok_or_else(|| {
                Trouble::Invalid(format!(
                    "secret {NAMESPACE}/{secret_name} does not have {key:?} field set"
                ))
            })
    };
    Ok(Login {
        target,
        username: field("username")?,
        password: field("password")?,
    })
}

/// Region and zone labels, the provider ID and the instance state
/// annotation on the Machine, then its status `Provisioned`.
async fn record_vm(shared: &Shared, name: &str, vm: &VmFacts) -> Result<(), Trouble> {
    let api = machines(&shared.client);
    let mut labels = json!({});
    if let Some(region) = &vm.region {
        labels[REGION_LABEL] = region.as_str().into();
    }
    if let Some(zone) = &vm.zone {
        labels[ZONE_LABEL] = zone.as_str().into();
    }
    patch(
        &api,
        name,
        json!({
            "metadata": {"labels": labels,
                "annotations": {"machine.openshift.io/instance-state": vm.power_state}},
            "spec": {"providerID": format!("vsphere://{}", vm.uuid)},
        }),
    )
    .await?;
    let n = shared.next_address.fetch_add(1, Ordering::Relaxed);
    let address = format!("192.0.2.{}", 100 + n % 150);
    patch_status(
        &api,
        name,
        json!({
            "phase": "Provisioned",
            "errorMessage": null,
            "errorReason": null,
            "lastUpdated": now(),
            "addresses": [{"type": "InternalIP", "address": address},
                {"type": "InternalDNS", "address": name}],
            "providerStatus": {
                "apiVersion": "machine.openshift.io/v1beta1",
                "kind": "VSphereMachineProviderStatus",
                "instanceId": vm.uuid,
                "instanceState": vm.power_state,
                "conditions": [{"type": "MachineCreation", "status": "True",
                    "reason": "MachineCreationSucceeded", "message": "Machine successfully created",
                    "lastTransitionTime": now()}],
            },
        }),
    )
    .await
}

/// Makes sure the Machine's Node exists, then points `status.nodeRef` at
/// it and sets phase `Running`.
async fn link_node(shared: &Shared, machine: &DynamicObject) -> Result<(), Trouble> {
    let name = machine.name_any();
    let nodes = Api::<Node>::all(shared.client.clone());
    let node = match nodes
        .get_opt(&name)
        .await
        .map_err(kube_trouble(format!("get Node {name}")))?
    {
        Some(node) => node,
        None => create_node(shared, machine).await?,
    };
    patch_status(
        &machines(&shared.client),
        &name,
        json!({
            "phase": "Running",
            "errorMessage": null,
            "errorReason": null,
            "lastUpdated": now(),
            "nodeRef": {"kind": "Node", "name": name, "uid": node.metadata.uid},
        }),
    )
    .await
}

/// The Machine's Node, as the kubelet registers it and the cloud
/// controller manager initializes it (see [`seed::machine_node`]).
async fn create_node(shared: &Shared, machine: &DynamicObject) -> Result<Node, Trouble> {
    let name = machine.name_any();
    let own = labels(machine);
    let spec = &machine.data["spec"]["providerSpec"]["value"];
    let topology = own
        .get(REGION_LABEL)
        .zip(own.get(ZONE_LABEL))
        .map(|(r, z)| (r.as_str(), z.as_str()));
    let manifest = seed::machine_node(
        kubelet_api::node_status(shared.kubelet_port, &name),
        &MachineNode {
            name: &name,
            role: own.get(ROLE_LABEL).map(String::as_str).unwrap_or("worker"),
            provider_id: provider_id(machine),
            cpus: spec["numCPUs"].as_u64().unwrap_or(4),
            memory_mib: spec["memoryMiB"].as_u64().unwrap_or(16384),
            topology,
            ready_since: &now(),
        },
    );
    seed::create(&shared.client, &manifest)
        .await
        .map_err(|e| Trouble::Transient(format!("create Node {name}: {e}")))?;
    Api::<Node>::all(shared.client.clone())
        .get(&name)
        .await
        .map_err(kube_trouble(format!("get Node {name}")))
}

/// Deletion: after the lifecycle hooks, the VM is destroyed with the
/// credentials for its server, then the Node deleted and the finalizer
/// removed.
async fn delete_machine(shared: &Shared, machine: &DynamicObject) -> Result<(), Trouble> {
    let name = machine.name_any();
    let api = machines(&shared.client);
    if phase(machine) != "Deleting" {
        patch_status(
            &api,
            &name,
            json!({"phase": "Deleting", "lastUpdated": now()}),
        )
        .await?;
    }
    let hooks = &machine.data["spec"]["lifecycleHooks"];
    let held = |kind: &str| hooks[kind].as_array().is_some_and(|h| !h.is_empty());
    if !has_finalizer(machine) || held("preDrain") || held("preTerminate") {
        return Ok(());
    }
    if had_vm(machine) {
        let spec = &machine.data["spec"]["providerSpec"]["value"];
        let login = login(shared, &name, spec).await?;
        let datacenter = Placement::of(spec).datacenter;
        let vm_name = name.clone();
        let destroyed =
            blocking(move || vsphere::destroy_vm(&login.govc(), &datacenter, &vm_name)).await?;
        if destroyed {
            shared.counters.destroyed.fetch_add(1, Ordering::Relaxed);
        }
    }
    if let Some(node) = node_ref(machine) {
        delete_node(shared, node).await?;
    }
    remove_finalizer(&api, &name).await
}

/// Whether the actuator ever gave the Machine a VM.
fn had_vm(machine: &DynamicObject) -> bool {
    !provider_id(machine).is_empty()
        || machine.data["status"]["providerStatus"]["instanceId"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
}

async fn delete_node(shared: &Shared, name: &str) -> Result<(), Trouble> {
    match Api::<Node>::all(shared.client.clone())
        .delete(name, &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Trouble::Transient(format!("delete Node {name}: {e}"))),
    }
}

/// Removes the finalizer from the Machine as it is now.
async fn remove_finalizer(api: &Api<DynamicObject>, name: &str) -> Result<(), Trouble> {
    let Some(machine) = api
        .get_opt(name)
        .await
        .map_err(kube_trouble(format!("get Machine {name}")))?
    else {
        return Ok(());
    };
    let finalizers: Vec<&String> = machine
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .collect();
    patch(
        api,
        name,
        json!({"metadata": {"finalizers": finalizers,
            "resourceVersion": machine.metadata.resource_version}}),
    )
    .await
}

// ---------------------------------------------------------------------------
// Small helpers, shared with the control plane machine set stand-in.

/// The API resource of an OpenShift kind.
pub(crate) fn resource(group: &str, version: &str, kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

/// Machines in [`NAMESPACE`].
pub(crate) fn machines(client: &Client) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        NAMESPACE,
        &resource("machine.openshift.io", "v1beta1", "Machine"),
    )
}

/// MachineSets in [`NAMESPACE`].
fn machine_sets(client: &Client) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        NAMESPACE,
        &resource("machine.openshift.io", "v1beta1", "MachineSet"),
    )
}

/// An object's labels.
pub(crate) fn labels(object: &DynamicObject) -> BTreeMap<String, String> {
    object.metadata.labels.clone().unwrap_or_default()
}

/// Whether the object is being deleted.
pub(crate) fn deleting(object: &DynamicObject) -> bool {
    object.metadata.deletion_timestamp.is_some()
}

fn has_finalizer(machine: &DynamicObject) -> bool {
    machine.finalizers().iter().any(|f| f == FINALIZER)
}

/// A Machine's phase, empty before the controller set one.
pub(crate) fn phase(machine: &DynamicObject) -> &str {
    machine.data["status"]["phase"].as_str().unwrap_or_default()
}

fn provider_id(machine: &DynamicObject) -> &str {
    machine.data["spec"]["providerID"]
        .as_str()
        .unwrap_or_default()
}

/// The Machine's Node, once linked.
pub(crate) fn node_ref(machine: &DynamicObject) -> Option<&str> {
    machine.data["status"]["nodeRef"]["name"].as_str()
}

/// The names of the Nodes whose Ready condition is True.
pub(crate) fn ready_nodes(nodes: &[Node]) -> BTreeSet<String> {
    nodes
        .iter()
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .filter_map(|n| n.metadata.name.clone())
        .collect()
}

/// Running, with a Node among `ready`.
pub(crate) fn running_and_ready(machine: &DynamicObject, ready: &BTreeSet<String>) -> bool {
    phase(machine) == "Running" && node_ref(machine).is_some_and(|n| ready.contains(n))
}

/// Whether `labels` match a label selector (`matchLabels` and
/// `matchExpressions` with `In`, `NotIn`, `Exists`, `DoesNotExist`).
pub(crate) fn selector_matches(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let match_labels = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| {
            v.as_str()
                .is_some_and(|v| labels.get(k).map(String::as_str) == Some(v))
        });
    let expressions = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| expression_matches(e, labels));
    match_labels && expressions
}

fn expression_matches(expression: &Value, labels: &BTreeMap<String, String>) -> bool {
    let value = expression["key"].as_str().and_then(|k| labels.get(k));
    let listed = |v: &String| {
        expression["values"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|x| x.as_str() == Some(v))
    };
    match expression["operator"].as_str() {
        Some("In") => value.is_some_and(listed),
        Some("NotIn") => !value.is_some_and(listed),
        Some("Exists") => value.is_some(),
        Some("DoesNotExist") => value.is_none(),
        _ => false,
    }
}

/// Five characters of the alphabet the API server uses for `generateName`.
pub(crate) fn random_suffix() -> Result<String, String> {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut bytes = [0u8; 5];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| "no randomness for a machine name".to_owned())?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect())
}

/// Now, as a Kubernetes timestamp.
pub(crate) fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

async fn patch(api: &Api<DynamicObject>, name: &str, value: Value) -> Result<(), Trouble> {
    api.patch(name, &PatchParams::default(), &Patch::Merge(&value))
        .await
        .map(|_| ())
        .map_err(kube_trouble(format!("patch Machine {name}")))
}

async fn patch_status(api: &Api<DynamicObject>, name: &str, status: Value) -> Result<(), Trouble> {
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .map(|_| ())
    .map_err(kube_trouble(format!("write the status of Machine {name}")))
}

fn kube_trouble(context: String) -> impl FnOnce(kube::Error) -> Trouble {
    move |e| Trouble::Transient(format!("{context}: {e}"))
}

/// Runs blocking vCenter work off the runtime's threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Trouble> + Send + 'static,
) -> Result<T, Trouble> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Trouble::Transient(format!("the vCenter task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(value: Value) -> DynamicObject {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let labels: BTreeMap<String, String> = [
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned()),
        ]
        .into();
        assert!(selector_matches(
            &json!({"matchLabels": {"a": "1"}}),
            &labels
        ));
        assert!(!selector_matches(
            &json!({"matchLabels": {"a": "2"}}),
            &labels
        ));
        assert!(selector_matches(
            &json!({"matchExpressions": [{"key": "b", "operator": "In", "values": ["2", "3"]},
                {"key": "c", "operator": "DoesNotExist"}]}),
            &labels
        ));
        assert!(!selector_matches(
            &json!({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}),
            &labels
        ));
        assert_eq!(
            format_selector(&json!({"matchLabels": {"z": "1", "a": "2"}})),
            "a=2,z=1"
        );
    }

    #[test]
    fn the_surplus_is_the_marked_then_the_newest() {
        let at = |name: &str, time: &str, annotations: Value| {
            machine(
                json!({"apiVersion": "machine.openshift.io/v1beta1", "kind": "Machine",
                "metadata": {"name": name, "creationTimestamp": time, "annotations": annotations}}),
            )
        };
        let old = at("old", "2026-01-01T00:00:00Z", json!({}));
        let new = at("new", "2026-02-01T00:00:00Z", json!({}));
        let marked = at(
            "marked",
            "2025-01-01T00:00:00Z",
            json!({"machine.openshift.io/delete-machine": "true"}),
        );
        let active = [&old, &new, &marked];
        let names = |v: Vec<&DynamicObject>| v.iter().map(|m| m.name_any()).collect::<Vec<_>>();
        assert_eq!(names(surplus(&active, 2, "")), ["marked", "new"]);
        assert_eq!(names(surplus(&active, 2, "Oldest")), ["marked", "old"]);
    }

    #[test]
    fn machine_names_get_five_characters_of_the_generate_name_alphabet() {
        let suffix = random_suffix().unwrap();
        assert_eq!(suffix.len(), 5);
        assert!(
            suffix
                .chars()
                .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c))
        );
    }
}
