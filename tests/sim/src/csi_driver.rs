//! A stand-in for the attach half of the vSphere CSI driver: the
//! attach/detach controller's part (a VolumeAttachment per volume and Node
//! in use) and the external attacher with the driver's
//! `ControllerPublishVolume`/`ControllerUnpublishVolume` (the First Class
//! Disk attached to the Node's VM in vSphere, the VolumeAttachment's status
//! written). The real driver needs a real vCenter and kubelets; this one
//! drives the vCenter simulators with `govc`.
//!
//! Every pod bound to a Node that exists, not finished, in the watched
//! namespaces, that mounts a claim bound to a PV of driver
//! `csi.vsphere.vmware.com`, makes the stand-in:
//! - create the VolumeAttachment the attach/detach controller would:
//!   `csi-<sha256 hex of volumeHandle + attacher + node name>`
//!   (`getAttachmentName` in `pkg/volume/csi/csi_attacher.go`), attacher
//!   `csi.vsphere.vmware.com`, `nodeName`, `source.persistentVolumeName`,
//!   with the external attacher's finalizer
//!   `external-attacher/csi-vsphere-vmware-com` (a pod being deleted keeps
//!   its attachment until it is gone, but makes none);
//! - put the same finalizer on the PV, find the Node's VM by name
//!   (`govc find / -type m -name <node>`) in every vCenter it has
//!   credentials for, find the FCD by the PV's `volumeHandle` in that
//!   vCenter, and attach it (`govc disk.attach -ds <its datastore>`: vim25
//!   `AttachDisk_Task`, which in vcsim only sets the FCD's
//!   `config.consumerId` to the VM's BIOS UUID); then `status.attached:
//!   true` with `attachmentMetadata` (`diskUUID`, `type`). A failure (no
//!   such VM, the FCD not in the VM's vCenter, the FCD attached to another
//!   VM) is written to `status.attachError` with `attached: false`, kept in
//!   [`CsiDriverStandIn::problems`], and retried every second.
//!
//! When no such pod is left for a volume and Node (the pod deleted, its
//! workload scaled down, its Node deleted), the VolumeAttachment is
//! deleted; the finalizer makes the stand-in detach the disk (`govc
//! disk.detach`, vim25 `DetachDisk_Task`) when the Node's VM has it, then
//! remove the finalizer, and the PV's once no VolumeAttachment names the
//! PV. A VM that no longer exists counts as detached, as the real driver
//! has it. A consumer the simulator still shows for a VM that is gone
//! (vcsim's `Destroy_Task` leaves the FCDs alone) is cleared, on detach and
//! before an attach, by a `DetachDisk_Task` on another VM of that vCenter
//! (vcsim clears the consumer whichever VM is asked), as a real vCenter no
//! longer lists a destroyed VM as a consumer.
//!
//! With a list of namespaces, only the PVs claimed there and their
//! VolumeAttachments are its own; run one stand-in per cluster.
//!
//! Credentials: by default the CSI driver's own secret,
//! `openshift-cluster-csi-drivers/vmware-vsphere-cloud-credentials`
//! (`<server>.username` / `<server>.password`), read for every operation, so
//! a vCenter without keys there cannot be used, as on a real cluster.
//!
//! It is level-triggered: every change of a Pod, claim, PV,
//! VolumeAttachment or Node, and every second, reconciles everything. It
//! runs on the control plane's kubelet API runtime, like
//! [`crate::ComponentPods`] (tests often run on a single-threaded runtime
//! and block it on `govc`).
//!
//! Not simulated: the Node's `status.volumesAttached`/`volumesInUse`, the
//! Multi-Attach check of the attach/detach controller (the vSphere side
//! refuses a disk attached to another VM instead), CNS (`CnsAttachVolume`),
//! the virtual disk device (vcsim adds none), and the node plugin (mounts).
//! The real attach/detach controller in kube-controller-manager leaves the
//! simulated Nodes alone: it only manages Nodes annotated
//! `volumes.kubernetes.io/controller-managed-attach-detach`, which a kubelet
//! writes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::SimError;
use crate::control_plane::{ControlPlane, client_from};
use crate::vcsim::{GovcTarget, VCenterSim};
use crate::volumes::{self, BLOCK_VOLUME_TYPE, CSI_DRIVER};

/// The finalizer the external attacher puts on VolumeAttachments and PVs.
pub const ATTACHER_FINALIZER: &str = "external-attacher/csi-vsphere-vmware-com";
/// The namespace of the CSI driver's credentials secret.
pub const CREDENTIALS_NAMESPACE: &str = "openshift-cluster-csi-drivers";
/// The CSI driver's credentials secret.
pub const CREDENTIALS_SECRET: &str = "vmware-vsphere-cloud-credentials";

/// How long a failed attach or detach waits before the next attempt.
const RETRY: Duration = Duration::from_secs(1);
/// A pass at least this often, even without events.
const RESYNC: Duration = Duration::from_secs(1);

/// The name the attach/detach controller gives the VolumeAttachment of
/// volume `volume_handle` on `node`: `csi-` and the SHA-256 (hex) of
/// handle, driver name and node name.
pub fn attachment_name(volume_handle: &str, node: &str) -> String {
    format!(
        "csi-{}",
        volumes::sha256_hex(format!("{volume_handle}{CSI_DRIVER}{node}").as_bytes())
    )
}

/// Which credentials the stand-in logs in to the vCenters with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CsiCredentials {
    /// `<server>.username` / `<server>.password` of
    /// `openshift-cluster-csi-drivers/vmware-vsphere-cloud-credentials`,
    /// read for every operation: a vCenter without keys there is not used.
    #[default]
    DriverSecret,
    /// Each simulator's own user.
    Simulators,
}

/// How the stand-in runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CsiDriverOptions {
    /// The namespaces whose pods it attaches volumes for; `None`: all.
    pub namespaces: Option<Vec<String>>,
    /// The credentials it uses.
    pub credentials: CsiCredentials,
}

/// One VolumeAttachment of the driver, as the stand-in last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The VolumeAttachment's name.
    pub name: String,
    /// `spec.source.persistentVolumeName`.
    pub pv: String,
    /// `spec.nodeName`.
    pub node: String,
    /// The PV's `volumeHandle` (the FCD id), when known.
    pub volume_handle: Option<String>,
    /// `status.attached`.
    pub attached: bool,
    /// `status.attachError.message`, if any.
    pub attach_error: Option<String>,
    /// Whether it is being deleted (detach pending).
    pub deleting: bool,
    /// The server of the vCenter the disk was attached in, by this stand-in.
    pub vcenter: Option<String>,
    /// The inventory path of the VM it was attached to, by this stand-in.
    pub vm: Option<String>,
}

/// The running stand-in; stops when dropped.
pub struct CsiDriverStandIn {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

/// One vCenter as the stand-in reaches it.
#[derive(Clone)]
struct VCenter {
    target: GovcTarget,
    username: String,
    password: String,
}

struct Shared {
    /// Bound to the kubelet API runtime: used by tasks there only.
    client: Client,
    vcenters: Arc<Vec<VCenter>>,
    options: CsiDriverOptions,
    state: Mutex<State>,
    /// Wakes the main loop when a worker is done.
    wake: Notify,
}

#[derive(Default)]
struct State {
    /// VolumeAttachments a worker is attaching or detaching now.
    busy: HashSet<String>,
    /// VolumeAttachments that failed, and when to try them again.
    retry_at: HashMap<String, Instant>,
    /// Where the stand-in attached each VolumeAttachment's disk.
    placed: HashMap<String, Placed>,
    attachments: Vec<Attachment>,
    problems: Vec<String>,
    attaches: u64,
    detaches: u64,
}

/// Where a disk was attached.
#[derive(Debug, Clone)]
struct Placed {
    server: String,
    vm: String,
    volume_handle: String,
}

impl CsiDriverStandIn {
    /// Starts the stand-in on `plane`'s kubelet API runtime for the
    /// vCenters `vcenters` (e.g. `[&cluster.source, &cluster.target]`).
    pub async fn start(
        plane: &ControlPlane,
        vcenters: &[&VCenterSim],
        options: CsiDriverOptions,
    ) -> Result<CsiDriverStandIn, SimError> {
        let runtime = plane.kubelet_api().runtime().clone();
        let kubeconfig = plane.kubeconfig().to_owned();
        let vcenters: Vec<VCenter> = vcenters
            .iter()
            .map(|v| VCenter {
                target: v.govc_target(),
                username: v.username.clone(),
                password: v.password.clone(),
            })
            .collect();
        let shared = runtime
            .spawn(async move {
                let client = client_from(&kubeconfig).await?;
                Ok::<_, SimError>(Arc::new(Shared {
                    client,
                    vcenters: Arc::new(vcenters),
                    options,
                    state: Mutex::new(State::default()),
                    wake: Notify::new(),
                }))
            })
            .await
            .map_err(|e| {
                SimError::Setup(format!("CSI driver stand-in: the start failed: {e}"))
            })??;
        let task = runtime.spawn(run(shared.clone()));
        Ok(CsiDriverStandIn { shared, task })
    }

    /// The driver's VolumeAttachments as of the last pass (at most about a
    /// second old), sorted by name.
    pub fn attachments(&self) -> Vec<Attachment> {
        self.read(|s| s.attachments.clone())
    }

    /// Every distinct attach or detach error seen, in order.
    pub fn problems(&self) -> Vec<String> {
        self.read(|s| s.problems.clone())
    }

    /// How many VolumeAttachments are attached, as of the last pass.
    pub fn attached(&self) -> usize {
        self.read(|s| s.attachments.iter().filter(|a| a.attached).count())
    }

    /// How many attaches succeeded (in vSphere, then in the status).
    pub fn attaches(&self) -> u64 {
        self.read(|s| s.attaches)
    }

    /// How many VolumeAttachments were detached and finalized.
    pub fn detaches(&self) -> u64 {
        self.read(|s| s.detaches)
    }

    /// Stops it (attachments, finalizers and disks stay as they are).
    pub fn stop(&self) {
        self.task.abort();
    }

    fn read<T: Default>(&self, f: impl FnOnce(&State) -> T) -> T {
        self.shared.state.lock().map(|s| f(&s)).unwrap_or_default()
    }
}

impl Drop for CsiDriverStandIn {
    fn drop(&mut self) {
        // The workers live in the task's JoinSet: aborting it aborts them.
        self.stop();
    }
}

/// The main loop: a pass on every event, when a worker is done, and at
/// least every [`RESYNC`].
async fn run(shared: Arc<Shared>) {
    let mut events = triggers(&shared.client);
    let mut workers = JoinSet::new();
    loop {
        if let Err(err) = pass(&shared, &mut workers).await {
            eprintln!("vmi-sim CSI driver stand-in: {err}");
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

/// Changes to Pods, claims, PVs, VolumeAttachments and Nodes.
fn triggers(client: &Client) -> BoxStream<'static, ()> {
    fn changes<K>(api: Api<K>) -> BoxStream<'static, ()>
    where
        K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
        K::DynamicType: Default,
    {
        watcher(api, watcher::Config::default())
            .default_backoff()
            .map(|_| ())
            .boxed()
    }
    futures::stream::select_all(vec![
        changes(Api::<Pod>::all(client.clone())),
        changes(Api::<PersistentVolumeClaim>::all(client.clone())),
        changes(Api::<PersistentVolume>::all(client.clone())),
        changes(Api::<VolumeAttachment>::all(client.clone())),
        changes(Api::<Node>::all(client.clone())),
    ])
    .boxed()
}

/// A volume that should be attached to a Node.
struct Want {
    pv: String,
    node: String,
    /// Some pod using it is not being deleted: a missing attachment is made.
    create: bool,
}

/// One pass: what should be attached, from the pods; every attachment
/// created, attached, deleted or detached accordingly; PV finalizers
/// released.
async fn pass(shared: &Arc<Shared>, workers: &mut JoinSet<()>) -> Result<(), String> {
    let client = &shared.client;
    let pods: Vec<Pod> = match &shared.options.namespaces {
        None => list(Api::all(client.clone()), "pods").await?,
        Some(namespaces) => {
            let mut pods = Vec::new();
            for ns in namespaces {
                pods.extend(list(Api::namespaced(client.clone(), ns), "pods").await?);
            }
            pods
        }
    };
    let claims: Vec<PersistentVolumeClaim> = list(Api::all(client.clone()), "claims").await?;
    let pvs: Vec<PersistentVolume> = list(Api::all(client.clone()), "PVs").await?;
    let nodes: Vec<Node> = list(Api::all(client.clone()), "Nodes").await?;
    let vas: Vec<VolumeAttachment> = list(Api::all(client.clone()), "VolumeAttachments").await?;

    let nodes: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
    let claims: HashMap<(String, String), String> = claims
        .iter()
        .filter_map(|c| {
            let volume = c.spec.as_ref()?.volume_name.clone()?;
            Some(((c.namespace()?, c.name_any()), volume))
        })
        .collect();
    // With a list of namespaces, only the PVs claimed there are its own.
    let watched = |pv: &PersistentVolume| match &shared.options.namespaces {
        None => true,
        Some(namespaces) => pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .and_then(|c| c.namespace.as_ref())
            .is_some_and(|ns| namespaces.contains(ns)),
    };
    let pvs: Vec<&PersistentVolume> = pvs.iter().filter(|pv| watched(pv)).collect();
    let handles: HashMap<String, String> = pvs
        .iter()
        .filter_map(|pv| {
            let csi = pv.spec.as_ref()?.csi.as_ref()?;
            (csi.driver == CSI_DRIVER).then(|| (pv.name_any(), csi.volume_handle.clone()))
        })
        .collect();
    let wanted = wanted(&pods, &nodes, &claims, &handles);

    let api = Api::<VolumeAttachment>::all(client.clone());
    let ours: Vec<&VolumeAttachment> = vas
        .iter()
        .filter(|va| va.spec.attacher == CSI_DRIVER)
        .filter(|va| {
            shared.options.namespaces.is_none()
                || va
                    .spec
                    .source
                    .persistent_volume_name
                    .as_ref()
                    .is_some_and(|pv| handles.contains_key(pv))
                || placed(shared, &va.name_any()).is_some()
        })
        .collect();
    let existing: HashSet<String> = ours.iter().map(|va| va.name_any()).collect();
    for (name, want) in &wanted {
        if want.create && !existing.contains(name) {
            create_attachment(&api, name, want).await?;
        }
    }
    for va in &ours {
        let name = va.name_any();
        let node = va.spec.node_name.clone();
        let pv = va.spec.source.persistent_volume_name.clone();
        // The handle the name was made from: the PV's, unless the PV was
        // replaced (then only what this stand-in attached tells).
        let handle = pv
            .as_ref()
            .and_then(|pv| handles.get(pv))
            .filter(|h| attachment_name(h, &node) == name)
            .cloned()
            .or_else(|| placed(shared, &name).map(|p| p.volume_handle));
        if va.metadata.deletion_timestamp.is_some() {
            if va.finalizers().iter().any(|f| f == ATTACHER_FINALIZER) && claim_work(shared, &name)
            {
                workers.spawn(detach(shared.clone(), name, node, handle));
            }
        } else if !wanted.contains_key(&name) {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(format!("delete VolumeAttachment {name}: {e}")),
            }
        } else if !is_attached(va)
            && let (Some(pv), Some(handle)) = (pv, handle)
            && claim_work(shared, &name)
        {
            workers.spawn(attach(shared.clone(), name, pv, node, handle));
        }
    }
    release_pvs(client, &pvs, &ours).await?;
    snapshot(shared, &ours, &handles);
    Ok(())
}

/// The attachments the pods need, by VolumeAttachment name.
fn wanted(
    pods: &[Pod],
    nodes: &HashSet<String>,
    claims: &HashMap<(String, String), String>,
    handles: &HashMap<String, String>,
) -> BTreeMap<String, Want> {
    let mut wanted: BTreeMap<String, Want> = BTreeMap::new();
    for pod in pods {
        let Some(spec) = pod.spec.as_ref() else {
            continue;
        };
        let Some(node) = spec.node_name.as_ref().filter(|n| nodes.contains(*n)) else {
            continue;
        };
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let ns = pod.namespace().unwrap_or_default();
        for claim in volumes::claims_of(spec) {
            let Some(pv) = claims.get(&(ns.clone(), claim)) else {
                continue;
            };
            let Some(handle) = handles.get(pv) else {
                continue;
            };
            let want = wanted
                .entry(attachment_name(handle, node))
                .or_insert_with(|| Want {
                    pv: pv.clone(),
                    node: node.clone(),
                    create: false,
                });
            want.create |= !terminating;
        }
    }
    wanted
}

fn is_attached(va: &VolumeAttachment) -> bool {
    va.status.as_ref().is_some_and(|s| s.attached)
}

fn placed(shared: &Shared, name: &str) -> Option<Placed> {
    shared
        .state
        .lock()
        .ok()
        .and_then(|s| s.placed.get(name).cloned())
}

/// Marks `name` busy unless a worker has it or it waits for a retry.
fn claim_work(shared: &Shared, name: &str) -> bool {
    let Ok(mut state) = shared.state.lock() else {
        return false;
    };
    if state.busy.contains(name)
        || state
            .retry_at
            .get(name)
            .is_some_and(|at| *at > Instant::now())
    {
        return false;
    }
    state.busy.insert(name.to_owned());
    true
}

/// The VolumeAttachment the attach/detach controller creates, with the
/// external attacher's finalizer already on it.
async fn create_attachment(
    api: &Api<VolumeAttachment>,
    name: &str,
    want: &Want,
) -> Result<(), String> {
    let va: VolumeAttachment = serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "VolumeAttachment",
        "metadata": {"name": name, "finalizers": [ATTACHER_FINALIZER]},
        "spec": {"attacher": CSI_DRIVER, "nodeName": want.node,
            "source": {"persistentVolumeName": want.pv}},
    }))
    .map_err(|e| format!("VolumeAttachment {name}: {e}"))?;
    match api.create(&PostParams::default(), &va).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(format!("create VolumeAttachment {name}: {e}")),
    }
}

/// Attaches the disk of one VolumeAttachment and writes its status.
async fn attach(shared: Arc<Shared>, name: String, pv: String, node: String, handle: String) {
    let outcome = async {
        set_finalizer(
            &Api::<PersistentVolume>::all(shared.client.clone()),
            &pv,
            true,
        )
        .await?;
        let logins = logins(&shared).await?;
        // With two vCenters the driver attaches only through the vCenter
        // its CNSVolumeInfo record names, and not at all without a record.
        let only = match volume_record(&shared.client, &handle).await? {
            None => None,
            Some(Some(server)) => Some(server),
            Some(None) => {
                return Err(format!(
                    "rpc error: code = Internal desc = Could not find vCenter for VolumeID: {handle:?}"
                ));
            }
        };
        let vcenters = shared.vcenters.clone();
        let (node, handle) = (node.clone(), handle.clone());
        blocking(move || attach_disk(&vcenters, &logins, &node, &handle, only.as_deref())).await?
    }
    .await;
    let api = Api::<VolumeAttachment>::all(shared.client.clone());
    let status = match &outcome {
        Ok(_) => json!({"attached": true, "attachError": null, "attachmentMetadata": {
            "diskUUID": handle.replace('-', ""), "type": BLOCK_VOLUME_TYPE}}),
        Err(message) => json!({"attached": false,
            "attachError": {"time": now(), "message": message}}),
    };
    let written = write_status(&api, &name, status).await;
    if let Ok(mut state) = shared.state.lock() {
        state.busy.remove(&name);
        match (outcome, written) {
            (Ok(placed), Ok(())) => {
                state.attaches += 1;
                state.retry_at.remove(&name);
                state.placed.insert(name, placed);
            }
            (Ok(placed), Err(message)) => {
                state.placed.insert(name.clone(), placed);
                fail(&mut state, &name, message);
            }
            (Err(message), _) => fail(&mut state, &name, message),
        }
    }
    shared.wake.notify_one();
}

/// The driver's record of volume `handle`: `None` when the cluster has no
/// `CNSVolumeInfo` CRD (a driver with one vCenter keeps none), else the
/// vCenter the record names, if there is one.
async fn volume_record(client: &Client, handle: &str) -> Result<Option<Option<String>>, String> {
    match client
        .list_api_group_resources("cns.vmware.com/v1alpha1")
        .await
    {
        Ok(list) if list.resources.iter().any(|r| r.name == "cnsvolumeinfoes") => {}
        Ok(_) => return Ok(None),
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(None),
        Err(e) => return Err(format!("discover cns.vmware.com/v1alpha1: {e}")),
    }
    volumes::volume_info_server(client, handle)
        .await
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Detaches the disk of a VolumeAttachment being deleted, then removes its
/// finalizer.
async fn detach(shared: Arc<Shared>, name: String, node: String, handle: Option<String>) {
    let api = Api::<VolumeAttachment>::all(shared.client.clone());
    let outcome = async {
        if let Some(handle) = handle {
            let logins = logins(&shared).await?;
            let vcenters = shared.vcenters.clone();
            blocking(move || detach_disk(&vcenters, &logins, &node, &handle)).await??;
        }
        set_finalizer(&api, &name, false).await
    }
    .await;
    if let Err(message) = &outcome {
        let status = json!({"detachError": {"time": now(), "message": message}});
        let _ = write_status(&api, &name, status).await;
    }
    if let Ok(mut state) = shared.state.lock() {
        state.busy.remove(&name);
        match outcome {
            Ok(()) => {
                state.detaches += 1;
                state.retry_at.remove(&name);
                state.placed.remove(&name);
            }
            Err(message) => fail(&mut state, &name, message),
        }
    }
    shared.wake.notify_one();
}

/// Records a problem (once per distinct message) and delays the retry.
fn fail(state: &mut State, name: &str, message: String) {
    state
        .retry_at
        .insert(name.to_owned(), Instant::now() + RETRY);
    if !state.problems.contains(&message) {
        eprintln!("vmi-sim CSI driver stand-in: {name}: {message}");
        state.problems.push(message);
    }
}

/// Writes a VolumeAttachment's status (merged); a VolumeAttachment gone
/// meanwhile is fine.
async fn write_status(
    api: &Api<VolumeAttachment>,
    name: &str,
    status: Value,
) -> Result<(), String> {
    match api
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(format!("write the status of VolumeAttachment {name}: {e}")),
    }
}

/// Adds (or removes) [`ATTACHER_FINALIZER`] on the object `name` as it is
/// now; an object gone is fine.
async fn set_finalizer<K>(api: &Api<K>, name: &str, present: bool) -> Result<(), String>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let Some(object) = api
        .get_opt(name)
        .await
        .map_err(|e| format!("get {name}: {e}"))?
    else {
        return Ok(());
    };
    let mut finalizers: Vec<String> = object
        .finalizers()
        .iter()
        .filter(|f| *f != ATTACHER_FINALIZER)
        .cloned()
        .collect();
    if present {
        if object.finalizers().iter().any(|f| f == ATTACHER_FINALIZER) {
            return Ok(());
        }
        finalizers.push(ATTACHER_FINALIZER.to_owned());
    } else if finalizers.len() == object.finalizers().len() {
        return Ok(());
    }
    let patch = json!({"metadata": {"finalizers": finalizers,
        "resourceVersion": object.resource_version()}});
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(format!("update the finalizers of {name}: {e}")),
    }
}

/// Removes [`ATTACHER_FINALIZER`] from every PV no VolumeAttachment of the
/// driver names any more.
async fn release_pvs(
    client: &Client,
    pvs: &[&PersistentVolume],
    ours: &[&VolumeAttachment],
) -> Result<(), String> {
    let named: HashSet<&str> = ours
        .iter()
        .filter_map(|va| va.spec.source.persistent_volume_name.as_deref())
        .collect();
    let api = Api::<PersistentVolume>::all(client.clone());
    for pv in pvs {
        let name = pv.name_any();
        if pv.finalizers().iter().any(|f| f == ATTACHER_FINALIZER) && !named.contains(name.as_str())
        {
            set_finalizer(&api, &name, false).await?;
        }
    }
    Ok(())
}

/// Keeps what the pass saw for [`CsiDriverStandIn::attachments`].
fn snapshot(shared: &Shared, ours: &[&VolumeAttachment], handles: &HashMap<String, String>) {
    let Ok(mut state) = shared.state.lock() else {
        return;
    };
    let mut attachments: Vec<Attachment> = ours
        .iter()
        .map(|va| {
            let name = va.name_any();
            let pv = va
                .spec
                .source
                .persistent_volume_name
                .clone()
                .unwrap_or_default();
            let placed = state.placed.get(&name);
            Attachment {
                volume_handle: placed
                    .map(|p| p.volume_handle.clone())
                    .or_else(|| handles.get(&pv).cloned()),
                pv,
                node: va.spec.node_name.clone(),
                attached: is_attached(va),
                attach_error: va
                    .status
                    .as_ref()
                    .and_then(|s| s.attach_error.as_ref())
                    .and_then(|e| e.message.clone()),
                deleting: va.metadata.deletion_timestamp.is_some(),
                vcenter: placed.map(|p| p.server.clone()),
                vm: placed.map(|p| p.vm.clone()),
                name,
            }
        })
        .collect();
    attachments.sort_by(|a, b| a.name.cmp(&b.name));
    state.attachments = attachments;
}

/// The user and password for each vCenter (in order), `None` where there
/// are none.
async fn logins(shared: &Shared) -> Result<Vec<Option<(String, String)>>, String> {
    let own = || {
        shared
            .vcenters
            .iter()
            .map(|v| Some((v.username.clone(), v.password.clone())))
            .collect()
    };
    if shared.options.credentials == CsiCredentials::Simulators {
        return Ok(own());
    }
    let secret = Api::<Secret>::namespaced(shared.client.clone(), CREDENTIALS_NAMESPACE)
        .get_opt(CREDENTIALS_SECRET)
        .await
        .map_err(|e| format!("get secret {CREDENTIALS_NAMESPACE}/{CREDENTIALS_SECRET}: {e}"))?;
    let data = secret.and_then(|s| s.data).unwrap_or_default();
    let key = |k: String| {
        data.get(&k)
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
    };
    Ok(shared
        .vcenters
        .iter()
        .map(|v| {
            let server = &v.target.server;
            Some((
                key(format!("{server}.username"))?,
                key(format!("{server}.password"))?,
            ))
        })
        .collect())
}

/// A Node's VM.
struct Vm {
    vcenter: usize,
    path: String,
    uuid: String,
}

/// `govc` against one vCenter with one login; errors as people read them.
fn govc(vcenter: &VCenter, login: &(String, String), args: &[&str]) -> Result<String, String> {
    vcenter
        .target
        .govc_as(&login.0, &login.1, args)
        .map_err(|e| readable(&e.to_string()))
}

/// The VM named `node` in the first vCenter that has one; or the servers
/// that could not be searched (no credentials).
fn find_vm(
    vcenters: &[VCenter],
    logins: &[Option<(String, String)>],
    node: &str,
    only: Option<&str>,
) -> Result<Result<Vm, Vec<String>>, String> {
    let mut skipped = Vec::new();
    for (i, vcenter) in vcenters.iter().enumerate() {
        if only.is_some_and(|server| server != vcenter.target.server) {
            continue;
        }
        let Some(login) = logins.get(i).and_then(Option::as_ref) else {
            skipped.push(vcenter.target.server.clone());
            continue;
        };
        let found = govc(vcenter, login, &["find", "/", "-type", "m", "-name", node])?;
        let Some(path) = found.lines().map(str::trim).find(|l| !l.is_empty()) else {
            continue;
        };
        let info: Value = serde_json::from_str(&govc(vcenter, login, &["vm.info", "-json", path])?)
            .map_err(|e| format!("govc vm.info -json {path}: not JSON ({e})"))?;
        let uuid = info["virtualMachines"][0]["config"]["uuid"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        return Ok(Ok(Vm {
            vcenter: i,
            path: path.to_owned(),
            uuid,
        }));
    }
    Ok(Err(skipped))
}

/// `ControllerPublishVolume`: the FCD `handle` attached to `node`'s VM.
/// Blocking.
fn attach_disk(
    vcenters: &[VCenter],
    logins: &[Option<(String, String)>],
    node: &str,
    handle: &str,
    only: Option<&str>,
) -> Result<Placed, String> {
    let failed = |why: String| {
        format!(
            "rpc error: code = Internal desc = failed to attach disk: {handle:?} with node: {node:?} err {why}"
        )
    };
    let vm = match find_vm(vcenters, logins, node, only).map_err(&failed)? {
        Ok(vm) => vm,
        Err(skipped) => {
            let searched = only
                .map(|server| format!(" in vCenter {server}, which its CNSVolumeInfo record names"))
                .unwrap_or_default();
            let unsearched = if skipped.is_empty() {
                String::new()
            } else {
                format!(
                    " (no credentials in {CREDENTIALS_NAMESPACE}/{CREDENTIALS_SECRET} for {})",
                    skipped.join(", ")
                )
            };
            return Err(format!(
                "rpc error: code = NotFound desc = failed to find VirtualMachine for node:{node:?}{searched}{unsearched}"
            ));
        }
    };
    let vcenter = &vcenters[vm.vcenter];
    let login = logins
        .get(vm.vcenter)
        .and_then(Option::as_ref)
        .ok_or_else(|| failed("no credentials".into()))?;
    let server = vcenter.target.server.clone();
    let fcd = volumes::find_fcd(&vcenter.target, &login.0, &login.1, handle)
        .map_err(|e| failed(readable(&e.to_string())))?
        .ok_or_else(|| {
            failed(format!(
                "volume {handle} not found in vCenter {server}, where the VM {} of the node is",
                vm.path
            ))
        })?;
    let placed = Placed {
        server,
        vm: vm.path.clone(),
        volume_handle: handle.to_owned(),
    };
    if fcd.consumers.contains(&vm.uuid) {
        return Ok(placed);
    }
    let consumers = live_consumers(vcenter, login, handle, &fcd.consumers).map_err(&failed)?;
    if let Some(other) = consumers.first() {
        return Err(failed(format!(
            "the disk is in use by another VM (BIOS UUID {other})"
        )));
    }
    govc(
        vcenter,
        login,
        &[
            "disk.attach",
            "-ds",
            &fcd.datastore,
            "-vm.ipath",
            &vm.path,
            handle,
        ],
    )
    .map_err(failed)?;
    Ok(placed)
}

/// `ControllerUnpublishVolume`: the FCD `handle` detached from `node`'s VM
/// when that VM has it. A VM that is gone counts as detached; a consumer
/// left for a VM that is gone is cleared. Blocking.
fn detach_disk(
    vcenters: &[VCenter],
    logins: &[Option<(String, String)>],
    node: &str,
    handle: &str,
) -> Result<(), String> {
    let failed = |why: String| {
        format!(
            "rpc error: code = Internal desc = failed to detach disk: {handle:?} from node: {node:?} err {why}"
        )
    };
    if let Ok(vm) = find_vm(vcenters, logins, node, None).map_err(&failed)? {
        let vcenter = &vcenters[vm.vcenter];
        let Some(login) = logins.get(vm.vcenter).and_then(Option::as_ref) else {
            return Ok(());
        };
        let fcd = volumes::find_fcd(&vcenter.target, &login.0, &login.1, handle)
            .map_err(|e| failed(readable(&e.to_string())))?;
        if fcd.is_some_and(|f| f.consumers.contains(&vm.uuid)) {
            govc(
                vcenter,
                login,
                &["disk.detach", "-vm.ipath", &vm.path, handle],
            )
            .map_err(failed)?;
        }
        return Ok(());
    }
    for (i, vcenter) in vcenters.iter().enumerate() {
        let Some(login) = logins.get(i).and_then(Option::as_ref) else {
            continue;
        };
        let Some(fcd) = volumes::find_fcd(&vcenter.target, &login.0, &login.1, handle)
            .map_err(|e| failed(readable(&e.to_string())))?
        else {
            continue;
        };
        live_consumers(vcenter, login, handle, &fcd.consumers).map_err(&failed)?;
    }
    Ok(())
}

/// The consumers of the FCD `handle` whose VMs exist in `vcenter`; when
/// some VM is gone, the consumer vcsim still shows is cleared first.
fn live_consumers(
    vcenter: &VCenter,
    login: &(String, String),
    handle: &str,
    consumers: &[String],
) -> Result<Vec<String>, String> {
    let mut live = Vec::new();
    for consumer in consumers {
        let found = govc(
            vcenter,
            login,
            &["find", "/", "-type", "m", "-config.uuid", consumer],
        )?;
        if !found.trim().is_empty() {
            live.push(consumer.clone());
        }
    }
    // vcsim keeps one consumer at most (AttachDisk_Task replaces it).
    if live.is_empty() && !consumers.is_empty() {
        clear_consumer(vcenter, login, handle)?;
    }
    Ok(live)
}

/// Clears the FCD's consumer with a `DetachDisk_Task` on any VM of the
/// vCenter (vcsim clears it whichever VM is asked).
fn clear_consumer(vcenter: &VCenter, login: &(String, String), handle: &str) -> Result<(), String> {
    let vms = govc(vcenter, login, &["find", "/", "-type", "m"])?;
    let Some(any) = vms.lines().map(str::trim).find(|l| !l.is_empty()) else {
        return Ok(());
    };
    govc(vcenter, login, &["disk.detach", "-vm.ipath", any, handle]).map(|_| ())
}

/// A govc error as people read it: `govc: ` instead of the program's path.
fn readable(message: &str) -> String {
    let mut text = message.to_owned();
    if let Some(end) = text.find("/govc: ") {
        let start = text[..end].rfind(' ').map_or(0, |at| at + 1);
        text.replace_range(start..end + 1, "");
    }
    text
}

async fn list<K>(api: Api<K>, what: &str) -> Result<Vec<K>, String>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(|e| format!("list {what}: {e}"))
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("a govc call panicked: {e}"))
}

fn now() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_names_are_the_attach_detach_controllers() {
        // sha256("vol-1" + "csi.vsphere.vmware.com" + "node-a")
        let name = attachment_name("vol-1", "node-a");
        assert_eq!(
            name,
            format!(
                "csi-{}",
                volumes::sha256_hex(b"vol-1csi.vsphere.vmware.comnode-a")
            )
        );
        assert_eq!(name.len(), 4 + 64);
        assert_ne!(name, attachment_name("vol-1", "node-b"));
    }

    #[test]
    fn govc_errors_read_well() {
        assert_eq!(
            readable("govc disk.attach failed: /cache/tools/bin/govc: InvalidArgument"),
            "govc disk.attach failed: govc: InvalidArgument"
        );
    }
}
