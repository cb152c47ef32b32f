//! vSphere CSI volumes on the simulated source cluster, as dynamic
//! provisioning by the vSphere CSI driver leaves them (research
//! `openshift-vsphere.md` §8.1), for the tests of migration step 13
//! migrate-volumes.
//!
//! For each volume: a PersistentVolumeClaim of storage class `thin-csi`,
//! then a First Class Disk in the source vCenter named after the PV
//! (`pvc-<claim uid>`, as the driver names it) with known random bytes
//! written into its data file, then the PersistentVolume (`csi.vsphere.vmware.com`,
//! `volumeHandle` the FCD id, the provisioner's annotation and attributes,
//! the source failure domain's topology, a `claimRef` to the claim), which
//! kube-controller-manager's PV binder then binds to the claim, as after a
//! real provisioning. [`seed_volumes`] adds workloads that use them (a
//! Deployment, a StatefulSet whose `volumeClaimTemplates` claims are the
//! pre-created ones, a bare Pod, and claims no pod uses), run Ready by a
//! [`ComponentPods`] of their namespace. [`seed_bare_volumes`] makes many
//! volumes without workloads, for benchmarks.
//!
//! vcsim's `disk.create` writes a descriptor `fcd/<id>.vmdk` and an empty
//! extent `fcd/<id>-flat.vmdk` (of length 0, whatever the capacity); the
//! seeded bytes are uploaded as the extent, through the datastore's HTTP
//! file interface (`govc datastore.upload`). [`fcd_info`], [`fcd_data`] and
//! [`read_datastore_file`] read FCDs and files back from either vCenter.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{
    Namespace, PersistentVolume, PersistentVolumeClaim, Pod, PodSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::SimError;
use crate::component_pods::ComponentPods;
use crate::seed::SimCluster;
use crate::vcsim::{GovcTarget, VCenterSim};

/// The vSphere CSI driver's name: `spec.csi.driver` of its PVs, the
/// provisioner of its storage classes, the attacher of its
/// VolumeAttachments.
pub const CSI_DRIVER: &str = "csi.vsphere.vmware.com";
/// The storage class OpenShift's vSphere CSI driver operator creates.
pub const STORAGE_CLASS: &str = "thin-csi";
/// The PV node affinity key for the zone (`topology.csi.vmware.com/openshift-zone`).
pub const ZONE_KEY: &str = "topology.csi.vmware.com/openshift-zone";
/// The PV node affinity key for the region.
pub const REGION_KEY: &str = "topology.csi.vmware.com/openshift-region";
/// `spec.csi.volumeAttributes.type` of a block volume.
pub const BLOCK_VOLUME_TYPE: &str = "vSphere CNS Block Volume";
/// The volume attribute only dynamically provisioned PVs have.
pub const PROVISIONER_IDENTITY_KEY: &str = "storage.kubernetes.io/csiProvisionerIdentity";
/// Its value on seeded PVs (`<start time ms>-<random>-<driver>`, as the
/// external provisioner writes it).
pub const PROVISIONER_IDENTITY: &str = "1761908400000-8081-csi.vsphere.vmware.com";
/// The image of the workload containers (nothing runs it).
pub const WORKLOAD_IMAGE: &str = "registry.example.com/vmi-sim/app:1";

/// How many `govc` processes run at once while seeding.
const GOVC_PARALLEL: usize = 8;
/// How many API requests are in flight at once while seeding.
const API_PARALLEL: usize = 16;
/// How long [`seed_volumes`] waits for the workload pods to be Ready.
const WORKLOADS_READY: Duration = Duration::from_secs(60);

/// A StatefulSet whose pods each use one volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatefulSetVolumes {
    /// The StatefulSet's name.
    pub name: String,
    /// The name of its volume claim template: claim `i` is
    /// `<template>-<name>-<i>`.
    pub template: String,
    /// Its replicas, one volume each.
    pub replicas: u32,
}

/// What [`seed_volumes`] creates in one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeWorkloads {
    /// The namespace (created when absent).
    pub namespace: String,
    /// A Deployment of 1 replica (strategy `Recreate`) using claim
    /// `<name>-data`.
    pub deployment: Option<String>,
    /// A StatefulSet with a volume claim template.
    pub stateful_set: Option<StatefulSetVolumes>,
    /// Bound claims no pod uses: `spare-<i>`.
    pub unused: u32,
    /// A Pod without owner using claim `<name>-data`.
    pub bare_pod: Option<String>,
    /// Capacity of each volume (FCD and PV), in MiB.
    pub capacity_mib: u64,
    /// Random bytes written into each FCD's data file.
    pub data_bytes: usize,
    /// Whether PVs get the source failure domain's `topology.csi.vmware.com`
    /// node affinity. The driver writes it when its topology is on (the
    /// failure domains have `openshift-region`/`openshift-zone` tags); a
    /// cluster installed with the generated failure domain has none.
    pub node_affinity: bool,
}

impl Default for VolumeWorkloads {
    /// Namespace `apps`: Deployment `web`, StatefulSet `db` (template
    /// `data`, 3 replicas), one spare claim, Pod `toolbox`; 1 GiB volumes
    /// with 256 KiB of data; node affinity on.
    fn default() -> Self {
        VolumeWorkloads {
            namespace: "apps".into(),
            deployment: Some("web".into()),
            stateful_set: Some(StatefulSetVolumes {
                name: "db".into(),
                template: "data".into(),
                replicas: 3,
            }),
            unused: 1,
            bare_pod: Some("toolbox".into()),
            capacity_mib: 1024,
            data_bytes: 256 * 1024,
            node_affinity: true,
        }
    }
}

/// Who uses a seeded volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeUser {
    /// The pod of this Deployment.
    Deployment(String),
    /// The pod of this ordinal of this StatefulSet.
    StatefulSet {
        /// The StatefulSet.
        name: String,
        /// The pod's ordinal.
        ordinal: u32,
    },
    /// This bare Pod.
    Pod(String),
    /// No pod: the claim is bound, nothing mounts it.
    Nobody,
}

/// One seeded volume: its claim, PV, FCD and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeededVolume {
    /// The claim's namespace.
    pub namespace: String,
    /// The claim's name.
    pub pvc: String,
    /// The PV's name (`pvc-<claim uid>`; also the FCD's name).
    pub pv: String,
    /// Who uses it.
    pub user: VolumeUser,
    /// The FCD id: the PV's `volumeHandle`.
    pub fcd_id: String,
    /// The source datacenter.
    pub datacenter: String,
    /// The source datastore's name.
    pub datastore: String,
    /// The FCD's descriptor, relative to the datastore (`fcd/<id>.vmdk`).
    pub descriptor_path: String,
    /// The FCD's data file, relative to the datastore
    /// (`fcd/<id>-flat.vmdk`), holding the seeded bytes.
    pub data_path: String,
    /// The capacity, in MiB.
    pub capacity_mib: u64,
    /// How many bytes were written into the data file.
    pub data_size: u64,
    /// SHA-256 (hex) of those bytes.
    pub data_sha256: String,
}

/// What [`seed_volumes`] made.
pub struct SeededVolumes {
    /// What was asked for.
    pub spec: VolumeWorkloads,
    /// Every volume, in the order: Deployment, StatefulSet ordinals, bare
    /// Pod, spare claims.
    pub volumes: Vec<SeededVolume>,
    /// The stand-in running the namespace's pods (bound round-robin to the
    /// control plane Nodes, Running and Ready); it stops when this is
    /// dropped.
    pub pods: ComponentPods,
}

impl SeededVolumes {
    /// The volume of claim `pvc`.
    pub fn volume(&self, pvc: &str) -> Option<&SeededVolume> {
        self.volumes.iter().find(|v| v.pvc == pvc)
    }

    /// The volumes some pod uses.
    pub fn used(&self) -> Vec<&SeededVolume> {
        self.volumes
            .iter()
            .filter(|v| v.user != VolumeUser::Nobody)
            .collect()
    }

    /// The volumes of the StatefulSet's pods.
    pub fn stateful_set_volumes(&self) -> Vec<&SeededVolume> {
        self.volumes
            .iter()
            .filter(|v| matches!(v.user, VolumeUser::StatefulSet { .. }))
            .collect()
    }

    /// Waits until the Deployment and the StatefulSet have as many Ready
    /// pods as their `spec.replicas` (0 included) and the bare Pod is
    /// Ready.
    pub async fn wait_ready(&self, client: &Client, limit: Duration) -> Result<(), SimError> {
        let deadline = Instant::now() + limit;
        loop {
            let pending = not_ready(client, &self.spec).await?;
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(SimError::Setup(format!(
                    "workloads not Ready after {limit:?}: {}",
                    pending.join(", ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Seeds `spec` on `cluster`: the storage class, claims bound to PVs whose
/// FCDs (in the source vCenter's datastore) hold known bytes, the
/// workloads using them, and a [`ComponentPods`] for the namespace. Returns
/// once every claim is Bound and every workload pod Ready.
pub async fn seed_volumes(
    cluster: &SimCluster,
    spec: &VolumeWorkloads,
) -> Result<SeededVolumes, SimError> {
    let client = cluster.client().await?;
    let ns = spec.namespace.as_str();
    let mut planned: Vec<Planned> = Vec::new();
    if let Some(name) = &spec.deployment {
        planned.push(Planned::new(
            format!("{name}-data"),
            VolumeUser::Deployment(name.clone()),
            json!({"app": name}),
        ));
    }
    if let Some(set) = &spec.stateful_set {
        for ordinal in 0..set.replicas {
            planned.push(Planned::new(
                format!("{}-{}-{ordinal}", set.template, set.name),
                VolumeUser::StatefulSet {
                    name: set.name.clone(),
                    ordinal,
                },
                // The StatefulSet controller labels its claims with the
                // set's selector.
                json!({"app": set.name}),
            ));
        }
    }
    if let Some(name) = &spec.bare_pod {
        planned.push(Planned::new(
            format!("{name}-data"),
            VolumeUser::Pod(name.clone()),
            json!({"app": name}),
        ));
    }
    for i in 0..spec.unused {
        planned.push(Planned::new(
            format!("spare-{i}"),
            VolumeUser::Nobody,
            json!({}),
        ));
    }
    let shape = Shape {
        capacity_mib: spec.capacity_mib,
        data_bytes: spec.data_bytes,
        node_affinity: spec.node_affinity,
    };
    let volumes = seed_planned(cluster, &client, ns, planned, &shape).await?;

    let pods = ComponentPods::start(&cluster.plane, &[ns]).await?;
    for workload in workloads(spec) {
        crate::seed::create(&client, &workload).await?;
    }
    let seeded = SeededVolumes {
        spec: spec.clone(),
        volumes,
        pods,
    };
    seeded.wait_ready(&client, WORKLOADS_READY).await?;
    Ok(seeded)
}

/// Seeds `count` volumes in `namespace` (created when absent), claims
/// `bulk-<i>` bound to PVs of 1 GiB whose FCDs hold `data_bytes` random
/// bytes each, without workloads (node affinity on). Several `govc` run at
/// once. Returns once every claim is Bound.
pub async fn seed_bare_volumes(
    cluster: &SimCluster,
    namespace: &str,
    count: usize,
    data_bytes: usize,
) -> Result<Vec<SeededVolume>, SimError> {
    let client = cluster.client().await?;
    let planned = (0..count)
        .map(|i| Planned::new(format!("bulk-{i}"), VolumeUser::Nobody, json!({})))
        .collect();
    let shape = Shape {
        capacity_mib: 1024,
        data_bytes,
        node_affinity: true,
    };
    seed_planned(cluster, &client, namespace, planned, &shape).await
}

/// The namespace of OpenShift's vSphere CSI driver, where it keeps its
/// `CNSVolumeInfo` records.
pub const CSI_NAMESPACE: &str = "openshift-cluster-csi-drivers";

/// The `CNSVolumeInfo` of volume `id` (the vCenter the CSI driver attaches it
/// through), or `None` when there is none.
pub async fn volume_info_server(client: &Client, id: &str) -> Result<Option<String>, SimError> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), CSI_NAMESPACE, &volume_info_resource());
    Ok(api
        .get_opt(id)
        .await
        .map_err(|e| SimError::Kube(format!("read CNSVolumeInfo {id}"), e))?
        .and_then(|o| o.data["spec"]["vCenterServer"].as_str().map(str::to_owned)))
}

fn volume_info_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cns.vmware.com", "v1alpha1", "CNSVolumeInfo"),
        "cnsvolumeinfoes",
    )
}

/// Records each disk's vCenter as a CSI driver running with two vCenters
/// does (after step 09 it does): the `CNSVolumeInfo` CRD and one object per
/// volume naming `server`.
async fn record_volume_infos(
    client: &Client,
    server: &str,
    disks: &[Disk],
) -> Result<(), SimError> {
    crate::crds::install_cns_volume_info_crd(client).await?;
    ensure_namespace(client, CSI_NAMESPACE).await?;
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), CSI_NAMESPACE, &volume_info_resource());
    for disk in disks {
        let mut record =
            DynamicObject::new(&disk.id, &volume_info_resource()).within(CSI_NAMESPACE);
        record.data = json!({"spec": {"volumeID": disk.id, "vCenterServer": server}});
        match api.create(&PostParams::default(), &record).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => {
                return Err(SimError::Kube(
                    format!("create CNSVolumeInfo {}", disk.id),
                    e,
                ));
            }
        }
    }
    Ok(())
}

/// Creates the `thin-csi` storage class as the vSphere CSI driver operator
/// does (the default class, `WaitForFirstConsumer`, expandable, the
/// cluster's storage policy), unless it exists.
pub async fn ensure_storage_class(client: &Client, infra_id: &str) -> Result<(), SimError> {
    let class: StorageClass = from_json(json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": CSI_DRIVER,
        "parameters": {"StoragePolicyName": format!("openshift-storage-policy-{infra_id}")},
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": true,
    }))?;
    create_if_absent(&Api::<StorageClass>::all(client.clone()), &class).await
}

/// An FCD as `RetrieveVStorageObject` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FcdInfo {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its capacity, in MiB.
    pub capacity_mib: u64,
    /// Its descriptor's datastore path, `[<datastore>] <path>`.
    pub file_path: String,
    /// The datastore's name.
    pub datastore: String,
    /// The descriptor's path in the datastore.
    pub descriptor_path: String,
    /// `config.consumerId`: the BIOS UUIDs (`config.uuid`) of the VMs it is
    /// attached to; empty when attached to none.
    pub consumers: Vec<String>,
}

/// A file read from a datastore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatastoreFile {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Their SHA-256, hex.
    pub sha256: String,
}

/// The FCD `id` in `vcenter` (any datastore), or `None` when it has none
/// of that id. Blocking.
pub fn fcd_info(vcenter: &VCenterSim, id: &str) -> Result<Option<FcdInfo>, SimError> {
    find_fcd(
        &vcenter.govc_target(),
        &vcenter.username,
        &vcenter.password,
        id,
    )
}

/// The bytes of the data file (extent) of FCD `id` in `vcenter`: its
/// descriptor is read, and the file its extent line names, in the same
/// directory. Blocking.
pub fn fcd_data(vcenter: &VCenterSim, id: &str) -> Result<DatastoreFile, SimError> {
    let info = fcd_info(vcenter, id)?
        .ok_or_else(|| SimError::Setup(format!("the {} vCenter has no FCD {id}", vcenter.role)))?;
    let descriptor = read_datastore_file(vcenter, &info.datastore, &info.descriptor_path)?;
    let text = String::from_utf8_lossy(&descriptor.bytes);
    let extent = extent_file(&text).ok_or_else(|| {
        SimError::Setup(format!(
            "the descriptor {} names no extent:\n{text}",
            info.file_path
        ))
    })?;
    let dir = info
        .descriptor_path
        .rsplit_once('/')
        .map(|(dir, _)| format!("{dir}/"))
        .unwrap_or_default();
    read_datastore_file(vcenter, &info.datastore, &format!("{dir}{extent}"))
}

/// Reads `path` from `datastore` of `vcenter` (its only datacenter)
/// through the datastore's HTTP file interface (`govc
/// datastore.download`). Blocking.
pub fn read_datastore_file(
    vcenter: &VCenterSim,
    datastore: &str,
    path: &str,
) -> Result<DatastoreFile, SimError> {
    let dir = tempfile::tempdir()
        .map_err(|e| SimError::Setup(format!("cannot create a temporary directory: {e}")))?;
    let local = dir.path().join("download");
    vcenter.govc(&[
        "datastore.download",
        "-ds",
        datastore,
        path,
        &local.to_string_lossy(),
    ])?;
    let bytes = std::fs::read(&local)
        .map_err(|e| SimError::Setup(format!("cannot read {}: {e}", local.display())))?;
    Ok(DatastoreFile {
        sha256: sha256_hex(&bytes),
        bytes,
    })
}

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The FCD `id` in the vCenter `target` as `username`, through the global
/// vslm object manager (`govc disk.ls` without `-ds`: every datastore), or
/// `None` when that vCenter has none of that id (vslm answers
/// `InvalidArgument`). Blocking.
pub(crate) fn find_fcd(
    target: &GovcTarget,
    username: &str,
    password: &str,
    id: &str,
) -> Result<Option<FcdInfo>, SimError> {
    let output = match target.govc_as(username, password, &["disk.ls", "-json", id]) {
        Ok(output) => output,
        Err(SimError::Setup(message))
            if message.contains("InvalidArgument") || message.contains("NotFound") =>
        {
            return Ok(None);
        }
        Err(err) => return Err(err),
    };
    let listing: Value = serde_json::from_str(&output)
        .map_err(|e| SimError::Setup(format!("govc disk.ls -json {id}: not JSON ({e})")))?;
    let Some(config) = listing["objects"]
        .as_array()
        .and_then(|objects| objects.first())
        .map(|o| &o["config"])
    else {
        return Ok(None);
    };
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let file_path = text(&config["backing"]["filePath"]);
    let (datastore, descriptor_path) = split_datastore_path(&file_path);
    Ok(Some(FcdInfo {
        id: text(&config["id"]["id"]),
        name: text(&config["name"]),
        capacity_mib: config["capacityInMB"].as_u64().unwrap_or_default(),
        datastore,
        descriptor_path,
        file_path,
        consumers: config["consumerId"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["id"].as_str().map(str::to_owned))
            .collect(),
    }))
}

/// `[ds] dir/file.vmdk` → (`ds`, `dir/file.vmdk`).
fn split_datastore_path(path: &str) -> (String, String) {
    match path.strip_prefix('[').and_then(|rest| rest.split_once(']')) {
        Some((datastore, file)) => (datastore.to_owned(), file.trim().to_owned()),
        None => (String::new(), path.to_owned()),
    }
}

/// The file of the first extent line of a VMDK descriptor
/// (`RW 2048 VMFS "<file>"`).
fn extent_file(descriptor: &str) -> Option<String> {
    descriptor
        .lines()
        .map(str::trim)
        .filter(|l| {
            ["RW ", "RDONLY ", "NOACCESS "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .find_map(|l| {
            let start = l.find('"')? + 1;
            let end = start + l[start..].find('"')?;
            Some(l[start..end].to_owned())
        })
}

/// One volume to seed.
struct Planned {
    pvc: String,
    user: VolumeUser,
    labels: Value,
}

impl Planned {
    fn new(pvc: String, user: VolumeUser, labels: Value) -> Planned {
        Planned { pvc, user, labels }
    }
}

/// What every volume of one seeding looks like.
struct Shape {
    capacity_mib: u64,
    data_bytes: usize,
    node_affinity: bool,
}

/// What seeding put in vSphere for one volume.
struct Disk {
    id: String,
    size: u64,
    sha256: String,
}

/// Claims, then FCDs with data, then PVs; returns once the claims are Bound.
async fn seed_planned(
    cluster: &SimCluster,
    client: &Client,
    namespace: &str,
    planned: Vec<Planned>,
    shape: &Shape,
) -> Result<Vec<SeededVolume>, SimError> {
    ensure_namespace(client, namespace).await?;
    ensure_storage_class(client, &cluster.options.infra_id).await?;

    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace);
    let size = quantity(shape.capacity_mib);
    let uids: Vec<String> = futures::stream::iter(planned.iter().map(|p| {
        let claims = claims.clone();
        let object = claim_object(namespace, &p.pvc, &p.labels, &size);
        async move {
            let claim: PersistentVolumeClaim = from_json(object)?;
            let name = claim.name_any();
            let created = claims
                .create(&PostParams::default(), &claim)
                .await
                .map_err(|e| SimError::Kube(format!("create claim {namespace}/{name}"), e))?;
            created
                .uid()
                .ok_or_else(|| SimError::Setup(format!("claim {namespace}/{name} has no uid")))
        }
    }))
    .buffered(API_PARALLEL)
    .try_collect()
    .await?;
    let pv_names: Vec<String> = uids.iter().map(|uid| format!("pvc-{uid}")).collect();

    let inv = &cluster.source_inventory;
    let (datacenter, datastore) = (inv.datacenter.clone(), inv.datastore.clone());
    let disks = {
        let target = cluster.source.govc_target();
        let (user, password) = (
            cluster.source.username.clone(),
            cluster.source.password.clone(),
        );
        let (names, datacenter, datastore) =
            (pv_names.clone(), datacenter.clone(), datastore.clone());
        let (capacity, data_bytes) = (shape.capacity_mib, shape.data_bytes);
        tokio::task::spawn_blocking(move || {
            let scratch = crate::children::temp_dir("volumes")?;
            in_parallel(names.len(), GOVC_PARALLEL, |i| {
                let govc = |args: &[&str]| target.govc_as(&user, &password, args);
                create_disk(
                    &govc,
                    &scratch,
                    &datacenter,
                    &datastore,
                    &names[i],
                    capacity,
                    data_bytes,
                )
            })
        })
        .await
        .map_err(|e| SimError::Setup(format!("seeding the FCDs panicked: {e}")))??
    };

    let volumes = Api::<PersistentVolume>::all(client.clone());
    let topology = shape.node_affinity.then(|| {
        let fd = &cluster.source_failure_domain;
        (fd.region.clone(), fd.zone.clone())
    });
    futures::stream::iter(planned.iter().enumerate().map(|(i, p)| {
        let object = volume_object(
            &pv_names[i],
            namespace,
            &p.pvc,
            &uids[i],
            &disks[i].id,
            &size,
            topology.as_ref(),
        );
        let volumes = volumes.clone();
        async move {
            let volume: PersistentVolume = from_json(object)?;
            let name = volume.name_any();
            volumes
                .create(&PostParams::default(), &volume)
                .await
                .map_err(|e| SimError::Kube(format!("create PV {name}"), e))
                .map(|_| ())
        }
    }))
    .buffer_unordered(API_PARALLEL)
    .try_collect::<Vec<()>>()
    .await?;

    let names: Vec<&str> = planned.iter().map(|p| p.pvc.as_str()).collect();
    let limit = Duration::from_secs(60) + Duration::from_millis(100) * names.len() as u32;
    wait_bound(&claims, &names, limit).await?;
    record_volume_infos(client, &cluster.source.server, &disks).await?;

    Ok(planned
        .into_iter()
        .zip(pv_names)
        .zip(disks)
        .map(|((p, pv), disk)| SeededVolume {
            namespace: namespace.to_owned(),
            pvc: p.pvc,
            pv,
            user: p.user,
            descriptor_path: format!("fcd/{}.vmdk", disk.id),
            data_path: format!("fcd/{}-flat.vmdk", disk.id),
            fcd_id: disk.id,
            datacenter: datacenter.clone(),
            datastore: datastore.clone(),
            capacity_mib: shape.capacity_mib,
            data_size: disk.size,
            data_sha256: disk.sha256,
        })
        .collect())
}

/// Creates FCD `name` and uploads `data_bytes` random bytes as its extent.
/// Blocking.
fn create_disk(
    govc: &dyn Fn(&[&str]) -> Result<String, SimError>,
    scratch: &Path,
    datacenter: &str,
    datastore: &str,
    name: &str,
    capacity_mib: u64,
    data_bytes: usize,
) -> Result<Disk, SimError> {
    let id = govc(&[
        "disk.create",
        "-dc",
        datacenter,
        "-ds",
        datastore,
        "-size",
        &format!("{capacity_mib}M"),
        name,
    ])?
    .trim()
    .to_owned();
    if id.is_empty() {
        return Err(SimError::Setup(format!("govc disk.create {name}: no id")));
    }
    let mut bytes = vec![0u8; data_bytes];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| SimError::Setup("no randomness for volume data".into()))?;
    let local = scratch.join(format!("{name}.bin"));
    std::fs::write(&local, &bytes)
        .map_err(|e| SimError::Setup(format!("cannot write {}: {e}", local.display())))?;
    let uploaded = govc(&[
        "datastore.upload",
        "-dc",
        datacenter,
        "-ds",
        datastore,
        &local.to_string_lossy(),
        &format!("fcd/{id}-flat.vmdk"),
    ]);
    let _ = std::fs::remove_file(&local);
    uploaded?;
    Ok(Disk {
        id,
        size: bytes.len() as u64,
        sha256: sha256_hex(&bytes),
    })
}

/// Runs `work(i)` for `i` in `0..count` on up to `threads` threads; the
/// results in order, or the first error.
fn in_parallel<T: Send>(
    count: usize,
    threads: usize,
    work: impl Fn(usize) -> Result<T, SimError> + Sync,
) -> Result<Vec<T>, SimError> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, Result<T, SimError>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.clamp(1, count.max(1)))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= count {
                            return mine;
                        }
                        mine.push((i, work(i)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .map_err(|_| SimError::Setup("a govc thread panicked".into()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|all| all.into_iter().flatten().collect())
    })?;
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, result)| result).collect()
}

/// A claim as the vSphere CSI provisioner finds it (the provisioner
/// annotations of a `WaitForFirstConsumer` class); the PV binder adds
/// `volumeName` and the bind annotations.
fn claim_object(namespace: &str, name: &str, labels: &Value, size: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace, "labels": labels,
            "annotations": {
                "volume.beta.kubernetes.io/storage-provisioner": CSI_DRIVER,
                "volume.kubernetes.io/storage-provisioner": CSI_DRIVER,
            }},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": STORAGE_CLASS,
            "volumeMode": "Filesystem",
            "resources": {"requests": {"storage": size}},
        },
    })
}

/// A PV as the vSphere CSI driver's provisioner creates it.
fn volume_object(
    name: &str,
    namespace: &str,
    claim: &str,
    claim_uid: &str,
    fcd_id: &str,
    size: &str,
    topology: Option<&(String, String)>,
) -> Value {
    let mut volume = json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name,
            "annotations": {"pv.kubernetes.io/provisioned-by": CSI_DRIVER}},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "capacity": {"storage": size},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": namespace, "name": claim, "uid": claim_uid},
            "csi": {
                "driver": CSI_DRIVER,
                "fsType": "ext4",
                "volumeHandle": fcd_id,
                "volumeAttributes": {
                    PROVISIONER_IDENTITY_KEY: PROVISIONER_IDENTITY,
                    "type": BLOCK_VOLUME_TYPE,
                },
            },
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": STORAGE_CLASS,
            "volumeMode": "Filesystem",
        },
    });
    if let Some((region, zone)) = topology {
        volume["spec"]["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [
            {"matchExpressions": [
                {"key": ZONE_KEY, "operator": "In", "values": [zone]},
                {"key": REGION_KEY, "operator": "In", "values": [region]},
            ]},
        ]}});
    }
    volume
}

/// `1024` → `1Gi`, `500` → `500Mi`.
fn quantity(mib: u64) -> String {
    if mib > 0 && mib.is_multiple_of(1024) {
        format!("{}Gi", mib / 1024)
    } else {
        format!("{mib}Mi")
    }
}

/// The Deployment, StatefulSet and bare Pod of `spec`.
fn workloads(spec: &VolumeWorkloads) -> Vec<Value> {
    let ns = spec.namespace.as_str();
    let size = quantity(spec.capacity_mib);
    let pod_spec = |container: &str, volume: &str, claim: Option<&str>| {
        let mut spec = json!({
            "containers": [{"name": container, "image": WORKLOAD_IMAGE,
                "volumeMounts": [{"name": volume, "mountPath": "/data"}]}],
        });
        if let Some(claim) = claim {
            spec["volumes"] =
                json!([{"name": volume, "persistentVolumeClaim": {"claimName": claim}}]);
        }
        spec
    };
    let mut objects = Vec::new();
    if let Some(name) = &spec.deployment {
        objects.push(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
            "spec": {
                "replicas": 1,
                // A ReadWriteOnce volume: the old pod goes before the new one.
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}},
                    "spec": pod_spec("app", "data", Some(&format!("{name}-data")))},
            },
        }));
    }
    if let Some(set) = &spec.stateful_set {
        objects.push(json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": set.name, "namespace": ns, "labels": {"app": set.name}},
            "spec": {
                "replicas": set.replicas,
                "serviceName": set.name,
                "selector": {"matchLabels": {"app": set.name}},
                "template": {"metadata": {"labels": {"app": set.name}},
                    "spec": pod_spec("db", &set.template, None)},
                "volumeClaimTemplates": [{
                    "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": set.template},
                    "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": STORAGE_CLASS,
                        "volumeMode": "Filesystem", "resources": {"requests": {"storage": size}}},
                }],
            },
        }));
    }
    if let Some(name) = &spec.bare_pod {
        objects.push(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
            "spec": pod_spec("toolbox", "data", Some(&format!("{name}-data"))),
        }));
    }
    objects
}

/// The workloads of `spec` that do not have their Ready pods yet.
async fn not_ready(client: &Client, spec: &VolumeWorkloads) -> Result<Vec<String>, SimError> {
    let ns = spec.namespace.as_str();
    let mut pending = Vec::new();
    if let Some(name) = &spec.deployment {
        let d: Deployment = get(client, ns, name).await?;
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = d.status.clone().unwrap_or_default();
        let ready = status.observed_generation >= d.metadata.generation
            && status.ready_replicas.unwrap_or(0) == want
            && status.replicas.unwrap_or(0) == want;
        if !ready {
            pending.push(format!(
                "deployment {ns}/{name} ({} of {want} Ready)",
                status.ready_replicas.unwrap_or(0)
            ));
        }
    }
    if let Some(set) = &spec.stateful_set {
        let s: StatefulSet = get(client, ns, &set.name).await?;
        let want = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = s.status.clone().unwrap_or_default();
        let ready = status.observed_generation >= s.metadata.generation
            && status.ready_replicas.unwrap_or(0) == want
            && status.replicas == want;
        if !ready {
            pending.push(format!(
                "statefulset {ns}/{} ({} of {want} Ready)",
                set.name,
                status.ready_replicas.unwrap_or(0)
            ));
        }
    }
    if let Some(name) = &spec.bare_pod {
        let pod: Pod = get(client, ns, name).await?;
        if !pod_ready(&pod) {
            pending.push(format!("pod {ns}/{name}"));
        }
    }
    Ok(pending)
}

/// Whether the pod's Ready condition is True.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The claims a pod spec mounts.
pub fn claims_of(spec: &PodSpec) -> Vec<String> {
    spec.volumes
        .iter()
        .flatten()
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.clone())
        .collect()
}

async fn get<K>(client: &Client, namespace: &str, name: &str) -> Result<K, SimError>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    Api::<K>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .map_err(|e| SimError::Kube(format!("get {namespace}/{name}"), e))
}

/// Waits until every claim in `names` is Bound.
async fn wait_bound(
    claims: &Api<PersistentVolumeClaim>,
    names: &[&str],
    limit: Duration,
) -> Result<(), SimError> {
    let deadline = Instant::now() + limit;
    loop {
        let listed = claims
            .list(&ListParams::default())
            .await
            .map_err(|e| SimError::Kube("list claims".into(), e))?;
        let bound: std::collections::HashSet<String> = listed
            .items
            .iter()
            .filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
            .map(|c| c.name_any())
            .collect();
        let pending: Vec<&&str> = names.iter().filter(|n| !bound.contains(**n)).collect();
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(SimError::Setup(format!(
                "{} claims not Bound after {limit:?}, e.g. {}",
                pending.len(),
                pending[0]
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ensure_namespace(client: &Client, name: &str) -> Result<(), SimError> {
    let namespace: Namespace = from_json(json!({"metadata": {"name": name}}))?;
    create_if_absent(&Api::<Namespace>::all(client.clone()), &namespace).await
}

async fn create_if_absent<K>(api: &Api<K>, object: &K) -> Result<(), SimError>
where
    K: Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(SimError::Kube(format!("create {}", object.name_any()), e)),
    }
}

fn from_json<K: DeserializeOwned>(value: Value) -> Result<K, SimError> {
    serde_json::from_value(value).map_err(|e| SimError::Setup(format!("a seeded object: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_extent_and_paths_are_read() {
        let descriptor = "# Disk DescriptorFile\nversion=1\ncreateType=\"vmfs\"\n\n# Extent description (1.0MB capacity)\nRW 2048 VMFS \"32ee3c2c-flat.vmdk\"\n\n# The Disk Data Base\n#DDB\n";
        assert_eq!(
            extent_file(descriptor).as_deref(),
            Some("32ee3c2c-flat.vmdk")
        );
        assert_eq!(extent_file("version=1\n"), None);
        assert_eq!(
            split_datastore_path("[datastore-a] fcd/x.vmdk"),
            ("datastore-a".to_owned(), "fcd/x.vmdk".to_owned())
        );
    }

    #[test]
    fn quantities_and_digests() {
        assert_eq!(quantity(1024), "1Gi");
        assert_eq!(quantity(500), "500Mi");
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn work_in_parallel_keeps_the_order() {
        let squares = in_parallel(50, 4, |i| Ok(i * i)).ok();
        assert_eq!(squares, Some((0..50).map(|i| i * i).collect()));
        let failed = in_parallel(10, 3, |i| {
            if i == 7 {
                Err(SimError::Setup("seven".into()))
            } else {
                Ok(i)
            }
        });
        assert!(matches!(failed, Err(SimError::Setup(m)) if m == "seven"));
        assert_eq!(in_parallel(0, 4, Ok).ok(), Some(vec![]));
    }
}
