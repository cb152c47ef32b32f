//! vSphere CSI volumes on a seeded cluster and the CSI driver stand-in,
//! against the real API server, kube-controller-manager (PV binder,
//! Deployment, StatefulSet controllers) and the vCenter simulators: the
//! seeded PVs look dynamically provisioned and are bound, the workload pods
//! are Ready, every volume in use has an attached VolumeAttachment and its
//! FCD the Node's VM as consumer; scaling down detaches; the seeded bytes
//! read back; an attach that cannot work (no credentials, the disk in the
//! other vCenter) is reported in the VolumeAttachment and retried; a Node
//! whose VM is gone loses its attachments.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use vmi_sim::csi_driver::{
    ATTACHER_FINALIZER, CREDENTIALS_NAMESPACE, CREDENTIALS_SECRET, CsiDriverOptions,
    CsiDriverStandIn, attachment_name,
};
use vmi_sim::seed::{self, MachineNode, SeedOptions, SimCluster};
use vmi_sim::volumes::{
    self, CSI_DRIVER, PROVISIONER_IDENTITY_KEY, REGION_KEY, STORAGE_CLASS, SeededVolume,
    VolumeUser, VolumeWorkloads, ZONE_KEY,
};

const LIMIT: Duration = Duration::from_secs(60);

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

async fn start() -> (SimCluster, Client, CsiDriverStandIn) {
    let began = Instant::now();
    let cluster = SimCluster::start(SeedOptions::default()).await.unwrap();
    let client = cluster.client().await.unwrap();
    let csi = CsiDriverStandIn::start(
        &cluster.plane,
        &[&cluster.source, &cluster.target],
        CsiDriverOptions::default(),
    )
    .await
    .unwrap();
    eprintln!("seeded cluster in {:?}", began.elapsed());
    (cluster, client, csi)
}

async fn attachment(client: &Client, name: &str) -> Option<VolumeAttachment> {
    Api::<VolumeAttachment>::all(client.clone())
        .get_opt(name)
        .await
        .unwrap()
}

/// The BIOS UUID of a Node's VM, from its provider ID.
async fn vm_uuid(client: &Client, node: &str) -> String {
    let node = Api::<Node>::all(client.clone()).get(node).await.unwrap();
    let id = node.spec.unwrap().provider_id.unwrap();
    id.strip_prefix("vsphere://").unwrap().to_owned()
}

/// The Node of the (one) running pod that mounts `volume`'s claim.
async fn node_of(client: &Client, volume: &SeededVolume) -> Option<String> {
    let pods = Api::<Pod>::namespaced(client.clone(), &volume.namespace)
        .list(&ListParams::default())
        .await
        .unwrap();
    pods.items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && volumes::pod_ready(p))
        .filter(|p| volumes::claims_of(p.spec.as_ref().unwrap()).contains(&volume.pvc))
        .find_map(|p| p.spec.as_ref()?.node_name.clone())
}

fn consumers(cluster: &SimCluster, volume: &SeededVolume) -> Vec<String> {
    volumes::fcd_info(&cluster.source, &volume.fcd_id)
        .unwrap()
        .unwrap_or_else(|| panic!("FCD {} is in the source vCenter", volume.fcd_id))
        .consumers
}

async fn pv(client: &Client, name: &str) -> PersistentVolume {
    Api::<PersistentVolume>::all(client.clone())
        .get(name)
        .await
        .unwrap()
}

/// Waits until `volume` is attached, by an attached VolumeAttachment of the
/// right name, to the Node its pod runs on, and the FCD's consumer is that
/// Node's VM. Returns the VolumeAttachment's name.
async fn wait_attached(cluster: &SimCluster, client: &Client, volume: &SeededVolume) -> String {
    let node = eventually(&format!("a Ready pod using {}", volume.pvc), LIMIT, || {
        node_of(client, volume)
    })
    .await;
    let name = attachment_name(&volume.fcd_id, &node);
    let va = eventually(&format!("{name} attached"), LIMIT, || async {
        attachment(client, &name)
            .await
            .filter(|va| va.status.as_ref().is_some_and(|s| s.attached))
    })
    .await;
    assert_eq!(va.spec.attacher, CSI_DRIVER);
    assert_eq!(va.spec.node_name, node);
    assert_eq!(
        va.spec.source.persistent_volume_name.as_deref(),
        Some(volume.pv.as_str())
    );
    assert_eq!(va.finalizers(), [ATTACHER_FINALIZER]);
    let status = va.status.unwrap();
    assert!(status.attach_error.is_none(), "{:?}", status.attach_error);
    let metadata = status.attachment_metadata.unwrap_or_default();
    assert_eq!(
        metadata.get("type").map(String::as_str),
        Some("vSphere CNS Block Volume")
    );
    assert_eq!(consumers(cluster, volume), [vm_uuid(client, &node).await]);
    assert!(
        pv(client, &volume.pv)
            .await
            .finalizers()
            .iter()
            .any(|f| f == ATTACHER_FINALIZER)
    );
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_volumes_are_attached_detached_and_keep_their_bytes() {
    let (cluster, client, csi) = start().await;
    let began = Instant::now();
    let seeded = volumes::seed_volumes(&cluster, &VolumeWorkloads::default())
        .await
        .unwrap();
    eprintln!(
        "seeded {} volumes with Ready workloads in {:?}",
        seeded.volumes.len(),
        began.elapsed()
    );
    assert_eq!(seeded.volumes.len(), 6);
    assert_eq!(seeded.used().len(), 5);
    let ns = seeded.spec.namespace.clone();

    // The PVs and claims look dynamically provisioned, and are bound.
    let fd = &cluster.source_failure_domain;
    for volume in &seeded.volumes {
        let pv = pv(&client, &volume.pv).await;
        assert_eq!(
            volume.pv,
            format!("pvc-{}", {
                let claim = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
                    .get(&volume.pvc)
                    .await
                    .unwrap();
                assert_eq!(
                    claim.spec.as_ref().unwrap().volume_name.as_deref(),
                    Some(volume.pv.as_str())
                );
                assert_eq!(claim.status.unwrap().phase.as_deref(), Some("Bound"));
                claim.metadata.uid.unwrap()
            })
        );
        assert_eq!(
            pv.annotations()
                .get("pv.kubernetes.io/provisioned-by")
                .map(String::as_str),
            Some(CSI_DRIVER)
        );
        let spec = pv.spec.unwrap();
        let csi_source = spec.csi.unwrap();
        assert_eq!(csi_source.driver, CSI_DRIVER);
        assert_eq!(csi_source.volume_handle, volume.fcd_id);
        assert_eq!(csi_source.fs_type.as_deref(), Some("ext4"));
        let attributes = csi_source.volume_attributes.unwrap();
        assert_eq!(
            attributes.get("type").map(String::as_str),
            Some("vSphere CNS Block Volume")
        );
        assert!(attributes.contains_key(PROVISIONER_IDENTITY_KEY));
        assert_eq!(spec.storage_class_name.as_deref(), Some(STORAGE_CLASS));
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Delete")
        );
        assert_eq!(
            spec.claim_ref.unwrap().name.as_deref(),
            Some(volume.pvc.as_str())
        );
        let terms = spec
            .node_affinity
            .unwrap()
            .required
            .unwrap()
            .node_selector_terms;
        let expressions = terms[0].match_expressions.clone().unwrap();
        let value = |key: &str| {
            expressions
                .iter()
                .find(|e| e.key == key)
                .and_then(|e| e.values.clone())
        };
        assert_eq!(value(ZONE_KEY), Some(vec![fd.zone.clone()]));
        assert_eq!(value(REGION_KEY), Some(vec![fd.region.clone()]));
        let fcd = volumes::fcd_info(&cluster.source, &volume.fcd_id)
            .unwrap()
            .unwrap();
        assert_eq!(fcd.name, volume.pv);
        assert_eq!(fcd.capacity_mib, 1024);
        assert_eq!(fcd.datastore, cluster.source_inventory.datastore);
        assert_eq!(fcd.descriptor_path, volume.descriptor_path);
        assert!(
            volumes::fcd_info(&cluster.target, &volume.fcd_id)
                .unwrap()
                .is_none()
        );
    }

    // Every volume in use is attached to its pod's Node, the spare one is not.
    let began = Instant::now();
    let mut names = BTreeSet::new();
    for volume in seeded.used() {
        names.insert(wait_attached(&cluster, &client, volume).await);
    }
    eprintln!(
        "{} volumes attached {:?} later",
        names.len(),
        began.elapsed()
    );
    let spare = seeded.volume("spare-0").unwrap();
    assert!(consumers(&cluster, spare).is_empty());
    let all: BTreeSet<String> = Api::<VolumeAttachment>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|va| va.name_any())
        .collect();
    assert_eq!(all, names);
    eventually("the stand-in's snapshot", LIMIT, || async {
        (csi.attached() == 5).then_some(())
    })
    .await;
    assert!(csi.attachments().iter().all(|a| {
        a.vcenter.as_deref() == Some(cluster.source.server.as_str())
            && a.vm
                .as_deref()
                .is_some_and(|vm| vm.starts_with("/datacenter-a/vm/"))
    }));

    // The StatefulSet scaled to 0: its attachments go, its disks are free,
    // the others stay attached.
    let sets = Api::<StatefulSet>::namespaced(client.clone(), &ns);
    let scale = |replicas: i32| json!({"spec": {"replicas": replicas}});
    sets.patch("db", &PatchParams::default(), &Patch::Merge(&scale(0)))
        .await
        .unwrap();
    let began = Instant::now();
    let set_volumes = seeded.stateful_set_volumes();
    assert_eq!(set_volumes.len(), 3);
    eventually("the StatefulSet's disks detached", LIMIT, || async {
        for volume in &set_volumes {
            let p = pv(&client, &volume.pv).await;
            if !consumers(&cluster, volume).is_empty()
                || p.finalizers().iter().any(|f| f == ATTACHER_FINALIZER)
            {
                return None;
            }
        }
        let left = Api::<VolumeAttachment>::all(client.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        (left.len() == 2).then_some(())
    })
    .await;
    eprintln!("scaled to 0 and detached in {:?}", began.elapsed());
    for volume in seeded.used() {
        if !set_volumes.contains(&volume) {
            assert_eq!(consumers(&cluster, volume).len(), 1, "{}", volume.pvc);
        }
    }
    assert!(csi.detaches() >= 3);

    // The seeded bytes read back, through the descriptor's extent.
    for volume in &seeded.volumes {
        let data = volumes::fcd_data(&cluster.source, &volume.fcd_id).unwrap();
        assert_eq!(data.bytes.len() as u64, volume.data_size);
        assert_eq!(data.sha256, volume.data_sha256, "{}", volume.pvc);
        let file =
            volumes::read_datastore_file(&cluster.source, &volume.datastore, &volume.data_path)
                .unwrap();
        assert_eq!(file.sha256, volume.data_sha256);
    }
    assert_eq!(seeded.volumes[0].data_size, 256 * 1024);

    // Scaled back: the same claims are attached again.
    sets.patch("db", &PatchParams::default(), &Patch::Merge(&scale(3)))
        .await
        .unwrap();
    seeded.wait_ready(&client, LIMIT).await.unwrap();
    for volume in seeded.stateful_set_volumes() {
        wait_attached(&cluster, &client, volume).await;
    }
    assert!(csi.problems().is_empty(), "problems: {:?}", csi.problems());
}

/// A powered-off VM named `name` in `vcenter`'s inventory, and a worker
/// Node for it (no pods land there but the ones the test pins).
async fn node_with_vm(cluster: &SimCluster, client: &Client, target: bool, name: &str) -> String {
    let (vcenter, inv) = if target {
        (&cluster.target, &cluster.target_inventory)
    } else {
        (&cluster.source, &cluster.source_inventory)
    };
    vcenter
        .govc(&[
            "vm.create",
            "-dc",
            &inv.datacenter,
            "-ds",
            &inv.datastore,
            "-pool",
            &inv.resource_pool_path(),
            "-folder",
            &inv.folder_path(),
            "-net",
            &inv.port_group,
            "-on=false",
            name,
        ])
        .unwrap();
    let info: serde_json::Value = serde_json::from_str(
        &vcenter
            .govc(&["vm.info", "-json", "-dc", &inv.datacenter, name])
            .unwrap(),
    )
    .unwrap();
    let uuid = info["virtualMachines"][0]["config"]["uuid"]
        .as_str()
        .unwrap()
        .to_owned();
    let node = seed::machine_node(
        cluster.plane.kubelet_api().node_status(name),
        &MachineNode {
            name,
            role: "worker",
            provider_id: &format!("vsphere://{uuid}"),
            cpus: 4,
            memory_mib: 16384,
            topology: None,
            ready_since: "2026-10-01T11:00:00Z",
        },
    );
    seed::create(client, &node).await.unwrap();
    uuid
}

/// A pod bound to `node` at creation (as the scheduler would have) using
/// `claim`.
async fn pinned_pod(client: &Client, ns: &str, name: &str, node: &str, claim: &str) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"nodeName": node,
            "containers": [{"name": "app", "image": volumes::WORKLOAD_IMAGE}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]},
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
}

/// The CSI driver's CNSVolumeInfo records.
fn records(client: &Client) -> Api<kube::api::DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        volumes::CSI_NAMESPACE,
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("cns.vmware.com", "v1alpha1", "CNSVolumeInfo"),
            "cnsvolumeinfoes",
        ),
    )
}

async fn attach_error(client: &Client, name: &str, containing: &str) -> String {
    eventually(
        &format!("{name} failing with {containing:?}"),
        LIMIT,
        || async {
            let va = attachment(client, name).await?;
            let status = va.status?;
            let message = status.attach_error?.message?;
            (!status.attached && message.contains(containing)).then_some(message)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attaches_that_cannot_work_are_reported_and_gone_vms_release_their_disks() {
    let (cluster, client, csi) = start().await;
    let spec = VolumeWorkloads {
        namespace: "stray".into(),
        deployment: None,
        stateful_set: None,
        unused: 2,
        bare_pod: None,
        data_bytes: 64 * 1024,
        ..VolumeWorkloads::default()
    };
    let seeded = volumes::seed_volumes(&cluster, &spec).await.unwrap();
    let (first, second) = (
        seeded.volume("spare-0").unwrap(),
        seeded.volume("spare-1").unwrap(),
    );

    // A Node whose VM is in the target vCenter, a pod there using a disk of
    // the source vCenter.
    let target_node = "target-worker-0";
    node_with_vm(&cluster, &client, true, target_node).await;
    pinned_pod(&client, "stray", "on-target", target_node, &first.pvc).await;
    let name = attachment_name(&first.fcd_id, target_node);
    // The driver's record names the source vCenter: the node's VM is looked
    // for there only, as the real driver does.
    let message = attach_error(&client, &name, "failed to find VirtualMachine").await;
    assert!(
        message.contains(&format!(
            "in vCenter {}, which its CNSVolumeInfo record names",
            cluster.source.server
        )),
        "{message}"
    );
    // The record pointed at the target, whose credentials the driver lacks.
    records(&client)
        .patch(
            &first.fcd_id,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"vCenterServer": cluster.target.server}})),
        )
        .await
        .unwrap();
    let message = attach_error(&client, &name, "no credentials").await;
    assert!(
        message.contains(&cluster.target.server),
        "the message names the vCenter without credentials: {message}"
    );

    // With the target's credentials in the driver's secret, the VM is found
    // and the disk is not in its vCenter.
    let secrets = Api::<Secret>::namespaced(client.clone(), CREDENTIALS_NAMESPACE);
    let server = &cluster.target.server;
    secrets
        .patch(
            CREDENTIALS_SECRET,
            &PatchParams::default(),
            &Patch::Merge(&json!({"stringData": {
                format!("{server}.username"): cluster.target.username,
                format!("{server}.password"): cluster.target.password,
            }})),
        )
        .await
        .unwrap();
    let message = attach_error(&client, &name, "not found in vCenter").await;
    assert!(message.contains(&first.fcd_id), "{message}");
    assert!(consumers(&cluster, first).is_empty());
    assert!(csi.problems().len() >= 2, "{:?}", csi.problems());

    // The pod deleted: the attachment goes without touching vSphere.
    Api::<Pod>::namespaced(client.clone(), "stray")
        .delete("on-target", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the failed attachment gone", LIMIT, || async {
        let gone = attachment(&client, &name).await.is_none();
        let released = !pv(&client, &first.pv)
            .await
            .finalizers()
            .iter()
            .any(|f| f == ATTACHER_FINALIZER);
        (gone && released).then_some(())
    })
    .await;

    // Without a record the driver attaches nowhere.
    records(&client)
        .delete(&first.fcd_id, &DeleteParams::default())
        .await
        .unwrap();
    let lone = "source-extra-1";
    node_with_vm(&cluster, &client, false, lone).await;
    pinned_pod(&client, "stray", "unrecorded", lone, &first.pvc).await;
    let message = attach_error(
        &client,
        &attachment_name(&first.fcd_id, lone),
        "Could not find vCenter for VolumeID",
    )
    .await;
    assert!(message.contains(&first.fcd_id), "{message}");
    assert!(consumers(&cluster, first).is_empty());

    // A source Node whose VM is destroyed and Node deleted: its attachment
    // goes and the disk has no consumer left.
    let extra = "source-extra-0";
    let uuid = node_with_vm(&cluster, &client, false, extra).await;
    pinned_pod(&client, "stray", "on-extra", extra, &second.pvc).await;
    let name = attachment_name(&second.fcd_id, extra);
    eventually("the extra Node's attachment", LIMIT, || async {
        attachment(&client, &name)
            .await
            .filter(|va| va.status.as_ref().is_some_and(|s| s.attached))
    })
    .await;
    assert_eq!(consumers(&cluster, second), [uuid]);
    cluster
        .source
        .govc(&[
            "vm.destroy",
            "-dc",
            &cluster.source_inventory.datacenter,
            extra,
        ])
        .unwrap();
    Api::<Node>::all(client.clone())
        .delete(extra, &DeleteParams::default())
        .await
        .unwrap();
    eventually("the gone Node's attachment released", LIMIT, || async {
        (attachment(&client, &name).await.is_none() && consumers(&cluster, second).is_empty())
            .then_some(())
    })
    .await;
    assert!(
        csi.problems()
            .iter()
            .all(|p| !p.contains("failed to detach")),
        "{:?}",
        csi.problems()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_bare_volumes_are_seeded_in_parallel() {
    let count: usize = std::env::var("VMI_BULK_VOLUMES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let cluster = SimCluster::start(SeedOptions::default()).await.unwrap();
    let client = cluster.client().await.unwrap();
    let began = Instant::now();
    let seeded = volumes::seed_bare_volumes(&cluster, "bulk", count, 64 * 1024)
        .await
        .unwrap();
    eprintln!(
        "seeded {count} bare volumes (FCD with 64 KiB, PV, claim, Bound) in {:?}",
        began.elapsed()
    );
    assert_eq!(seeded.len(), count);
    assert!(seeded.iter().all(|v| v.user == VolumeUser::Nobody));
    let ids: BTreeSet<&str> = seeded.iter().map(|v| v.fcd_id.as_str()).collect();
    assert_eq!(ids.len(), count);
    let bound = Api::<PersistentVolumeClaim>::namespaced(client.clone(), "bulk")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
        .count();
    assert_eq!(bound, count);
    for volume in [&seeded[0], &seeded[count - 1]] {
        let data = volumes::fcd_data(&cluster.source, &volume.fcd_id).unwrap();
        assert_eq!(data.sha256, volume.data_sha256);
        assert_eq!(data.bytes.len(), 64 * 1024);
    }
}
