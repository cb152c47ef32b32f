//! Rebind: the PersistentVolume replaced by one of the same name that
//! points at the target disk, and its claim bound to it again.
//!
//! The old PV is first set to `Retain`, so deleting it can never delete the
//! source disk; its `kubernetes.io/pv-protection` finalizer (the PV is
//! still bound, so the protection controller would hold it forever) and
//! the CSI provisioner's deletion finalizer are then removed. The claim keeps its uid and `volumeName`, goes `Lost` for a
//! moment, and the persistent-volume controller binds it again when the new
//! PV appears with the claim's uid in its `claimRef`.

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::journal::Entry;
use crate::context::{StepContext, StepError};
use crate::machines::Stall;

/// How often the waits look again.
const POLL: Duration = Duration::from_millis(300);
/// Finalizers vmi takes off the old PV once it is `Retain` and detached:
/// the PV protection controller's (it would hold a bound PV forever) and
/// the CSI provisioner's (it guards the disk's deletion, which `Retain`
/// already rules out; HonorPVReclaimPolicy puts it on dynamic PVs).
const RELEASED_FINALIZERS: [&str; 2] = [
    "kubernetes.io/pv-protection",
    "external-provisioner.volume.kubernetes.io/finalizer",
];
/// The attribute that marks a PV as dynamically provisioned; a static PV
/// must not carry it (OpenShift docs, vSphere CSI limitations).
pub const PROVISIONER_IDENTITY: &str = "storage.kubernetes.io/csiProvisionerIdentity";
/// The topology keys vSphere CSI uses on OpenShift.
pub const ZONE_KEY: &str = "topology.csi.vmware.com/openshift-zone";
/// See [`ZONE_KEY`].
pub const REGION_KEY: &str = "topology.csi.vmware.com/openshift-region";
/// Annotation on a claim naming the disk its PV points at since vmi
/// rebound it.
pub const REBOUND_TO: &str = "vmi.config.openshift.io/rebound-to";
/// Annotation naming where the disk came from, for triage.
pub const MOVED_FROM: &str = "vmi.config.openshift.io/moved-from";

/// The PV as it is recorded: without server-set fields or status.
pub fn trimmed(object: &impl serde::Serialize) -> Value {
    let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.remove("status");
    }
    if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in [
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            metadata.remove(field);
        }
    }
    value
}

/// The `moved-from` mark of the PV that replaces `entry`'s original:
/// `<source vCenter>/<source disk id>`. With the disk's handle, it tells the
/// new PV from the original, also when both name the same disk id (a
/// relocated disk keeps its id; a registered copy may get it too).
pub fn moved_from(entry: &Entry) -> String {
    format!("{}/{}", entry.source.server, entry.source.id)
}

/// The `moved-from` mark `pv` carries, if any.
pub fn mark_of(pv: &PersistentVolume) -> Option<&str> {
    pv.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(MOVED_FROM))
        .map(String::as_str)
}

/// The new PV: the original with the target disk, no provisioner identity,
/// the target's topology, the original reclaim policy and the same claim.
pub fn new_pv(entry: &Entry, region: &str, zone: &str) -> Value {
    let mut pv = entry.original_pv.clone();
    if let Some(metadata) = pv.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("uid");
        metadata.remove("finalizers");
        let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.insert(MOVED_FROM.into(), json!(moved_from(entry)));
        }
    }
    let spec = &mut pv["spec"];
    spec["csi"]["volumeHandle"] = json!(entry.target.id);
    if let Some(attributes) = spec["csi"]
        .get_mut("volumeAttributes")
        .and_then(Value::as_object_mut)
    {
        attributes.remove(PROVISIONER_IDENTITY);
    }
    spec["persistentVolumeReclaimPolicy"] = json!(entry.reclaim_policy);
    let mut expressions = Vec::new();
    if !zone.is_empty() {
        expressions.push(json!({"key": ZONE_KEY, "operator": "In", "values": [zone]}));
    }
    if !region.is_empty() {
        expressions.push(json!({"key": REGION_KEY, "operator": "In", "values": [region]}));
    }
    if expressions.is_empty() {
        if let Some(spec) = spec.as_object_mut() {
            spec.remove("nodeAffinity");
        }
    } else {
        spec["nodeAffinity"] =
            json!({"required": {"nodeSelectorTerms": [{"matchExpressions": expressions}]}});
    }
    if let Some(claim) = spec.get_mut("claimRef").and_then(Value::as_object_mut) {
        claim.remove("resourceVersion");
    }
    pv
}

fn handle(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.csi.as_ref())
        .map_or("", |c| c.volume_handle.as_str())
}

/// Replaces the PV and waits until its claim is bound to the new one.
pub async fn rebind(
    context: &StepContext,
    entry: &Entry,
    region: &str,
    zone: &str,
    stall: Duration,
) -> Result<(), StepError> {
    let mark = moved_from(entry);
    let swap = Swap {
        name: &entry.persistent_volume,
        claim: entry.claim.as_deref(),
        from: &entry.source.id,
        to: &entry.target.id,
        from_mark: original_mark(entry),
        to_mark: Some(&mark),
        manifest: new_pv(entry, region, zone),
    };
    replace(context, &swap, stall).await
}

/// The `moved-from` mark the original PV carried (from an earlier move, if
/// any).
fn original_mark(entry: &Entry) -> Option<&str> {
    entry.original_pv["metadata"]["annotations"][MOVED_FROM].as_str()
}

/// Puts the original PV back (same disk, policy and attributes as before
/// the move) and waits until its claim is bound to it again: the undo of
/// a rebind.
pub async fn restore_original(
    context: &StepContext,
    entry: &Entry,
    stall: Duration,
) -> Result<(), StepError> {
    let mut manifest = entry.original_pv.clone();
    if let Some(metadata) = manifest.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("uid");
        metadata.remove("finalizers");
    }
    if let Some(claim) = manifest["spec"]
        .get_mut("claimRef")
        .and_then(Value::as_object_mut)
    {
        claim.remove("resourceVersion");
    }
    let mark = moved_from(entry);
    let swap = Swap {
        name: &entry.persistent_volume,
        claim: entry.claim.as_deref(),
        from: &entry.target.id,
        to: &entry.source.id,
        from_mark: Some(&mark),
        to_mark: original_mark(entry),
        manifest,
    };
    replace(context, &swap, stall).await?;
    let api = Api::<PersistentVolume>::all(context.client.clone());
    let pv = api
        .get(&entry.persistent_volume)
        .await
        .map_err(StepError::kube(format!(
            "read PersistentVolume {}",
            entry.persistent_volume
        )))?;
    let policy = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.clone())
        .unwrap_or_default();
    if policy != entry.reclaim_policy {
        api.patch(
            &entry.persistent_volume,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"persistentVolumeReclaimPolicy": entry.reclaim_policy}})),
        )
        .await
        .map_err(StepError::kube(format!(
            "restore the reclaim policy of PersistentVolume {}",
            entry.persistent_volume
        )))?;
    }
    Ok(())
}

/// One PV swapped for another of the same name.
struct Swap<'a> {
    name: &'a str,
    claim: Option<&'a str>,
    /// The disk the PV points at before.
    from: &'a str,
    /// The disk it points at after.
    to: &'a str,
    /// The `moved-from` mark of the PV before.
    from_mark: Option<&'a str>,
    /// The `moved-from` mark of the PV after (always another than before).
    to_mark: Option<&'a str>,
    /// The PV to create.
    manifest: Value,
}

/// Which side of a swap a stored PV is.
#[derive(Debug, PartialEq, Eq)]
enum Side {
    /// The PV the swap creates, in place.
    After,
    /// The PV the swap replaces.
    Before,
    /// Neither: someone else changed it.
    Foreign,
}

impl Swap<'_> {
    /// Which side `pv` is: by its disk and its `moved-from` mark together,
    /// since the disk id alone may be the same on both sides.
    fn side_of(&self, pv: &PersistentVolume) -> Side {
        let (disk, mark) = (handle(pv), mark_of(pv));
        if disk == self.to && mark == self.to_mark {
            Side::After
        } else if disk == self.from && mark == self.from_mark {
            Side::Before
        } else {
            Side::Foreign
        }
    }
}

/// Replaces PV `swap.name` pointing at `swap.from` with `swap.manifest`,
/// then waits for the claim to bind.
async fn replace(context: &StepContext, swap: &Swap<'_>, stall: Duration) -> Result<(), StepError> {
    let name = swap.name;
    let api = Api::<PersistentVolume>::all(context.client.clone());
    let action = |what: &str| format!("{what} PersistentVolume {name}");
    let mut watchdog = Stall::new(stall);
    loop {
        let current = api
            .get_opt(name)
            .await
            .map_err(StepError::kube(action("read")))?;
        let Some(pv) = current else {
            let manifest: PersistentVolume = serde_json::from_value(swap.manifest.clone())
                .map_err(|e| {
                    StepError::Refused(format!(
                        "internal: the new PV {name} is not a PersistentVolume: {e}"
                    ))
                })?;
            match api.create(&PostParams::default(), &manifest).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(StepError::kube(action("create the new"))(e)),
            }
            continue;
        };
        match swap.side_of(&pv) {
            Side::After if pv.metadata.deletion_timestamp.is_none() => break,
            Side::After | Side::Before => {}
            Side::Foreign => {
                return Err(StepError::Refused(format!(
                    "PersistentVolume {name} now points at disk {} with {MOVED_FROM} {:?}; vmi expected disk {} ({:?}) or {} ({:?}); someone changed it during the move; check it by hand (docs/volumes.md)",
                    handle(&pv),
                    mark_of(&pv),
                    swap.from,
                    swap.from_mark,
                    swap.to,
                    swap.to_mark
                )));
            }
        }
        let policy = pv
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
            .unwrap_or("Delete");
        if policy != "Retain" {
            api.patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"persistentVolumeReclaimPolicy": "Retain"}})),
            )
            .await
            .map_err(StepError::kube(action("set Retain on")))?;
            continue; // read again: delete only once Retain is stored
        }
        if pv.metadata.deletion_timestamp.is_none() {
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(StepError::kube(action("delete the old"))(e)),
            }
            continue;
        }
        let finalizers = pv.metadata.finalizers.clone().unwrap_or_default();
        if finalizers
            .iter()
            .any(|f| RELEASED_FINALIZERS.contains(&f.as_str()))
        {
            let keep: Vec<&String> = finalizers
                .iter()
                .filter(|f| !RELEASED_FINALIZERS.contains(&f.as_str()))
                .collect();
            let patch = json!({"metadata": {"finalizers": keep, "resourceVersion": pv.metadata.resource_version}});
            match api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
                Err(e) => return Err(StepError::kube(action("release the old"))(e)),
            }
            continue;
        }
        let observed = format!(
            "the old PersistentVolume {name} is held by finalizer(s) {}",
            finalizers.join(", ")
        );
        if let Some(waited) = watchdog.observe(observed.clone()) {
            return Err(StepError::Unverified(format!(
                "{observed} for {} s; the PV should point at disk {}; find the controller that owns that finalizer, then delete this step's Job to retry",
                waited.as_secs(),
                swap.to
            )));
        }
        tokio::time::sleep(POLL).await;
    }
    wait_bound(context, name, swap.claim, swap.to, stall).await
}

/// Waits until the new PV and its claim are Bound to each other.
async fn wait_bound(
    context: &StepContext,
    name: &str,
    claim: Option<&str>,
    disk: &str,
    stall: Duration,
) -> Result<(), StepError> {
    let Some((namespace, claim)) = claim.and_then(|c| c.split_once('/')) else {
        return Ok(());
    };
    let pvs = Api::<PersistentVolume>::all(context.client.clone());
    let claims = Api::<PersistentVolumeClaim>::namespaced(context.client.clone(), namespace);
    let mut watchdog = Stall::new(stall);
    let mut nudged = false;
    loop {
        let pv_phase = pvs
            .get_opt(name)
            .await
            .map_err(StepError::kube(format!("read PersistentVolume {name}")))?
            .and_then(|p| p.status)
            .and_then(|s| s.phase)
            .unwrap_or_default();
        let pvc = claims
            .get_opt(claim)
            .await
            .map_err(StepError::kube(format!(
                "read PersistentVolumeClaim {namespace}/{claim}"
            )))?;
        let Some(pvc) = pvc else {
            return Err(StepError::Refused(format!(
                "PersistentVolumeClaim {namespace}/{claim} was deleted during the move; PV {name} keeps its data; recreate the claim from the volume journal (docs/volumes.md) to use it"
            )));
        };
        let claim_phase = pvc
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        let claim_volume = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .unwrap_or_default();
        if pv_phase == "Bound" && claim_phase == "Bound" && claim_volume == name {
            return Ok(());
        }
        if !nudged {
            // The persistent-volume controller looks at a Lost claim again
            // only on its resync (15 s by default) or when the claim
            // changes: an annotation naming the new disk is that change,
            // and tells whoever reads the claim where its data now is.
            let patch = json!({"metadata": {"annotations": {REBOUND_TO: disk}}});
            claims
                .patch(claim, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(StepError::kube(format!(
                    "annotate PersistentVolumeClaim {namespace}/{claim}"
                )))?;
            nudged = true;
        }
        let observed = format!(
            "PV {name} is {pv_phase}, claim {namespace}/{claim} is {claim_phase} (volumeName {claim_volume})"
        );
        if let Some(waited) = watchdog.observe(observed.clone()) {
            return Err(StepError::Unverified(format!(
                "{observed} after {} s; the persistent-volume controller (kube-controller-manager) has not bound them; check its logs, then delete this step's Job to retry",
                waited.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volumes::journal::{Disk, State};

    fn entry() -> Entry {
        Entry {
            persistent_volume: "pvc-1".into(),
            claim: Some("apps/data".into()),
            state: State::Registered,
            mode: "Copy".into(),
            original_pv: json!({
                "apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": "pvc-1", "uid": "u1", "finalizers": ["kubernetes.io/pv-protection"],
                    "annotations": {"pv.kubernetes.io/provisioned-by": "csi.vsphere.vmware.com"}},
                "spec": {
                    "csi": {"driver": "csi.vsphere.vmware.com", "volumeHandle": "src-id", "fsType": "ext4",
                        "volumeAttributes": {"type": "vSphere CNS Block Volume", PROVISIONER_IDENTITY: "123-csi"}},
                    "persistentVolumeReclaimPolicy": "Retain",
                    "claimRef": {"namespace": "apps", "name": "data", "uid": "c1", "resourceVersion": "9"},
                    "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": ZONE_KEY, "operator": "In", "values": ["old-zone"]}]}]}}
                }
            }),
            original_pvc: None,
            reclaim_policy: "Delete".into(),
            owners: vec![],
            source: Disk {
                server: "vc-a".into(),
                id: "src-id".into(),
                ..Disk::default()
            },
            target: Disk {
                server: "vc-b".into(),
                id: "dst-id".into(),
                ..Disk::default()
            },
            helper_vm: None,
            message: None,
            workloads_started: false,
        }
    }

    #[test]
    fn the_new_pv_is_static_on_the_target_zone_with_the_original_policy() {
        let pv = new_pv(&entry(), "region-b", "zone-b");
        assert_eq!(pv["spec"]["csi"]["volumeHandle"], "dst-id");
        assert!(pv["spec"]["csi"]["volumeAttributes"][PROVISIONER_IDENTITY].is_null());
        assert_eq!(
            pv["spec"]["csi"]["volumeAttributes"]["type"],
            "vSphere CNS Block Volume"
        );
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
        let expressions =
            &pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"];
        assert_eq!(expressions[0]["values"][0], "zone-b");
        assert_eq!(expressions[1]["key"], REGION_KEY);
        assert_eq!(pv["spec"]["claimRef"]["uid"], "c1");
        assert!(pv["spec"]["claimRef"]["resourceVersion"].is_null());
        assert!(pv["metadata"]["uid"].is_null() && pv["metadata"]["finalizers"].is_null());
        assert_eq!(pv["metadata"]["annotations"][MOVED_FROM], "vc-a/src-id");
    }

    fn stored(value: Value) -> PersistentVolume {
        serde_json::from_value(value).unwrap()
    }

    /// The swap of the rebind: original PV to new PV.
    fn forward<'a>(entry: &'a Entry, mark: &'a str) -> Swap<'a> {
        Swap {
            name: "pvc-1",
            claim: None,
            from: &entry.source.id,
            to: &entry.target.id,
            from_mark: original_mark(entry),
            to_mark: Some(mark),
            manifest: Value::Null,
        }
    }

    /// A relocated disk keeps its id: the original PV and the new one name
    /// the same disk, and only the mark tells them apart. Before, the
    /// original counted as already replaced and the PV was never rewritten.
    #[test]
    fn a_disk_that_keeps_its_id_still_gets_its_new_pv() {
        let mut entry = entry();
        entry.target.id = entry.source.id.clone();
        let mark = moved_from(&entry);
        let forward = forward(&entry, &mark);
        let original = stored(entry.original_pv.clone());
        let replaced = stored(new_pv(&entry, "region-b", "zone-b"));
        assert_eq!(forward.side_of(&original), Side::Before);
        assert_eq!(forward.side_of(&replaced), Side::After);
        let undo = Swap {
            name: "pvc-1",
            claim: None,
            from: &entry.target.id,
            to: &entry.source.id,
            from_mark: Some(&mark),
            to_mark: original_mark(&entry),
            manifest: Value::Null,
        };
        assert_eq!(undo.side_of(&replaced), Side::Before);
        assert_eq!(undo.side_of(&original), Side::After);
    }

    #[test]
    fn a_pv_someone_else_changed_is_neither_side() {
        let entry = entry();
        let mark = moved_from(&entry);
        let forward = forward(&entry, &mark);
        let mut other = new_pv(&entry, "region-b", "zone-b");
        other["spec"]["csi"]["volumeHandle"] = json!("someone-elses");
        assert_eq!(forward.side_of(&stored(other)), Side::Foreign);
        let mut marked_elsewhere = new_pv(&entry, "region-b", "zone-b");
        marked_elsewhere["metadata"]["annotations"][MOVED_FROM] = json!("vc-z/src-id");
        assert_eq!(forward.side_of(&stored(marked_elsewhere)), Side::Foreign);
    }
}
