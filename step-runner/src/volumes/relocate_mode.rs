//! Relocate mode: a helper VM on the source carries the disk across with a
//! cross-vCenter `RelocateVM_Task` (a `ServiceLocator` naming the target),
//! and is taken apart on the target only after the move is proven.
//!
//! Needs a vCenter pair that can vMotion between each other (same SSO or
//! Advanced Cross vCenter vMotion, network between hosts). vcsim ignores
//! the locator, so in tests this path always ends "unverified", which is
//! the path that matters: nothing is then detached or deleted anywhere.

use super::journal::{Entry, HelperVm};
use super::locate::Datastore;
use crate::context::StepError;
use crate::vsphere::relocate::{RelocateSpec, ServiceLocator, relocate_across, verify_relocation};
use crate::vsphere::vm::NewVm;
use crate::vsphere::{MoRef, VCenter};

/// The helper VM's name for a PV: short, stable and the same on both sides.
pub fn helper_name(pv: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, pv.as_bytes());
    let hash: String = digest.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("vmi-volume-{hash}")
}

/// Where the helper VM goes on one side: folder and pool.
pub struct Placement {
    /// The VM folder.
    pub folder: MoRef,
    /// The resource pool.
    pub pool: MoRef,
}

/// The first resource pool below `datacenter`'s `compute_cluster` (an
/// inventory path), or below the datacenter when none is given.
pub async fn placement(
    vcenter: &VCenter,
    datacenter: &str,
    compute_cluster: Option<&str>,
) -> Result<Placement, StepError> {
    let missing = |what: String| {
        StepError::Refused(format!(
            "vCenter {}: {what} not found; nothing was changed",
            vcenter.server()
        ))
    };
    let folder = vcenter
        .find_by_inventory_path(&format!("/{datacenter}/vm"))
        .await?
        .ok_or_else(|| missing(format!("the VM folder of datacenter {datacenter}")))?;
    let pool = match compute_cluster {
        Some(cluster) => vcenter
            .find_by_inventory_path(&format!("{cluster}/Resources"))
            .await?
            .ok_or_else(|| missing(format!("the resource pool of {cluster}")))?,
        None => {
            let dc = vcenter
                .find_by_inventory_path(&format!("/{datacenter}"))
                .await?
                .ok_or_else(|| missing(format!("datacenter {datacenter}")))?;
            vcenter
                .objects_below(&dc, "ResourcePool", &["name"])
                .await?
                .into_iter()
                .next()
                .map(|p| p.obj)
                .ok_or_else(|| missing(format!("a resource pool in {datacenter}")))?
        }
    };
    Ok(Placement { folder, pool })
}

/// The helper VM on the source, created (with the disk attached) unless an
/// earlier run left it; its instance UUID is returned for the journal.
pub async fn prepare_helper(
    source: &VCenter,
    entry: &Entry,
    source_datastore: &Datastore,
    at: &Placement,
) -> Result<(MoRef, HelperVm), StepError> {
    let name = helper_name(&entry.persistent_volume);
    let path = format!("/{}/vm/{name}", source_datastore.datacenter);
    let vm = match source.find_by_inventory_path(&path).await? {
        Some(vm) => vm,
        None => {
            source
                .create_vm(&NewVm {
                    name: &name,
                    folder: &at.folder,
                    pool: &at.pool,
                    datastore: &source_datastore.name,
                    cpus: 1,
                    memory_mib: 128,
                })
                .await?
        }
    };
    let datastore = MoRef::new("Datastore", &entry.source.datastore);
    match source.retrieve_disk(&entry.source.id, &datastore).await? {
        None => {
            return Err(StepError::Unverified(format!(
                "disk {} of PV {} is no longer on datastore {} of vCenter {} and the journal records no copy on the target; vmi moves no empty helper VM; find the disk first (Recent Tasks, helper VM {name} on either vCenter), then delete this step's Job to retry",
                entry.source.id,
                entry.persistent_volume,
                entry.source.datastore,
                source.server()
            )));
        }
        Some(disk) if disk.consumers.is_empty() => {
            source.attach_fcd(&vm, &entry.source.id, &datastore).await?;
        }
        Some(_) => {}
    }
    let instance_uuid = source.instance_uuid(&vm).await?;
    Ok((
        vm,
        HelperVm {
            name,
            instance_uuid,
        },
    ))
}

/// Moves the helper VM to the target and proves it arrived with its disk on
/// `target_datastore`; returns the disk's file there. An unproven move is an
/// error naming where the VM and the disk are; nothing is detached or
/// deleted then.
pub async fn relocate(
    source: &VCenter,
    target: &VCenter,
    vm: &MoRef,
    helper: &HelperVm,
    target_datastore: &Datastore,
    at: &Placement,
) -> Result<(MoRef, String), StepError> {
    let locator = ServiceLocator::to(target)?;
    let spec = RelocateSpec {
        service: Some(&locator),
        folder: &at.folder,
        datastore: &target_datastore.moref,
        pool: &at.pool,
        host: None,
        disks: &[],
    };
    let moved = match target
        .find_vm_by_instance_uuid(&helper.instance_uuid)
        .await?
    {
        // An earlier run's relocate got there: prove it, do not move again.
        Some(_) => {
            verify_relocation(
                source,
                target,
                &helper.instance_uuid,
                &[],
                &target_datastore.name,
            )
            .await?
        }
        None => relocate_across(source, target, vm, &spec, &target_datastore.name).await?,
    };
    let file = moved.disks.first().cloned().ok_or_else(|| {
        StepError::Unverified(format!(
            "helper VM {} arrived on vCenter {} as {} without a disk; the disk is not where it should be; nothing was detached or deleted; see docs/volumes.md (state Detached, Relocate)",
            helper.name,
            target.server(),
            moved.vm
        ))
    })?;
    Ok((moved.vm, file))
}

/// Where the helper VM of `entry` is, if it still exists: `(on the target,
/// its reference)`. Looked up by the instance UUID the journal recorded
/// (kept by a cross-vCenter move), else by its name on the source.
pub async fn find_helper(
    source: &VCenter,
    target: &VCenter,
    entry: &Entry,
) -> Result<Option<(bool, MoRef)>, StepError> {
    let Some(helper) = &entry.helper_vm else {
        return Ok(None);
    };
    if !helper.instance_uuid.is_empty() {
        if let Some(vm) = target
            .find_vm_by_instance_uuid(&helper.instance_uuid)
            .await?
        {
            return Ok(Some((true, vm)));
        }
        if let Some(vm) = source
            .find_vm_by_instance_uuid(&helper.instance_uuid)
            .await?
        {
            return Ok(Some((false, vm)));
        }
    }
    let path = format!("/{}/vm/{}", entry.source.datacenter, helper.name);
    Ok(source
        .find_by_inventory_path(&path)
        .await?
        .map(|vm| (false, vm)))
}

/// Takes the helper VM `vm` apart on `vcenter`: detaches disk `disk_id`
/// (keeping it) when the VM still has it, then destroys the VM. Safe to
/// repeat after a kill half-way.
pub async fn take_apart(
    vcenter: &VCenter,
    vm: &MoRef,
    disk_id: &str,
    file: &str,
    datastore: &Datastore,
) -> Result<(), StepError> {
    if vcenter.disk_files(vm).await?.is_empty() {
        vcenter.destroy(vm).await?;
        return Ok(());
    }
    dismantle(vcenter, vm, disk_id, file, datastore).await
}

/// After a proven move: detaches the disk from the helper VM on the target
/// (keeping it) and destroys the helper VM.
pub async fn dismantle(
    target: &VCenter,
    vm: &MoRef,
    disk_id: &str,
    file: &str,
    target_datastore: &Datastore,
) -> Result<(), StepError> {
    if target
        .retrieve_disk(disk_id, &target_datastore.moref)
        .await?
        .is_some_and(|d| !d.consumers.is_empty())
    {
        target.detach_fcd(vm, disk_id).await?;
    } else {
        target.detach_disk(vm, file).await?;
    }
    if !target.disk_files(vm).await?.is_empty() {
        return Err(StepError::Unverified(format!(
            "the helper VM {vm} on vCenter {} still has a disk after the detach; it was not destroyed",
            target.server()
        )));
    }
    target.destroy(vm).await?;
    Ok(())
}
