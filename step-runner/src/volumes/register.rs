//! Registering a copied disk on the target: a First Class Disk from the
//! file (`RegisterDisk`), then a CNS volume backed by it
//! (`CnsCreateVolume`), the way vSphere CSI static provisioning would.
//! Both are looked up first, so a step killed between the call and the
//! journal write finds its own earlier result instead of failing on
//! "already registered".

use crate::context::StepError;
use crate::vsphere::cns::{ContainerCluster, NewVolume};
use crate::vsphere::datastore::DatastoreFile;
use crate::vsphere::fcd::Fcd;
use crate::vsphere::{MoRef, VCenter};

/// The First Class Disk on `datastore` whose file is `path`, if any.
pub async fn disk_at(
    target: &VCenter,
    datastore: &MoRef,
    path: &str,
) -> Result<Option<Fcd>, StepError> {
    for id in target.list_disks(datastore).await? {
        if let Some(disk) = target.retrieve_disk(&id, datastore).await?
            && disk.file_path == path
        {
            return Ok(Some(disk));
        }
    }
    Ok(None)
}

/// The disk for `file`: the one recorded as `known_id` when the target
/// still has it, else the one already registered from that file, else a
/// newly registered one named `name`.
pub async fn register(
    target: &VCenter,
    datastore: &MoRef,
    file: &DatastoreFile,
    name: &str,
    known_id: &str,
) -> Result<Fcd, StepError> {
    if !known_id.is_empty()
        && let Some(disk) = target.retrieve_disk(known_id, datastore).await?
    {
        return Ok(disk);
    }
    match target.register_disk(file, name).await {
        Ok(disk) => Ok(disk),
        // Whatever the refusal says (vcsim: InvalidArgument; vCenter: an
        // AlreadyExists fault; a lost answer: OutcomeUnknown), the file may
        // already be a disk, registered by an earlier run: look for it.
        Err(err) => match disk_at(target, datastore, &file.datastore_path()).await {
            Ok(Some(disk)) => Ok(disk),
            Ok(None) | Err(_) => Err(err.into()),
        },
    }
}

/// Makes disk `disk` a CNS volume named `name` for `cluster`, unless CNS
/// already knows it; verified by querying it back.
pub async fn ensure_cns_volume(
    target: &VCenter,
    disk: &Fcd,
    name: &str,
    cluster: &ContainerCluster,
) -> Result<(), StepError> {
    if !target.cns_query_volumes(&[&disk.id]).await?.is_empty() {
        return Ok(());
    }
    target
        .cns_create_volume(&NewVolume {
            name,
            backing_disk_id: &disk.id,
            datastore: &disk.datastore,
            capacity_mb: disk.capacity_mb,
            cluster,
        })
        .await?;
    if target.cns_query_volumes(&[&disk.id]).await?.is_empty() {
        return Err(StepError::Unverified(format!(
            "vCenter {} accepted CnsCreateVolume for disk {} ({name}) but does not list the volume; the disk is registered and the source kept; delete this step's Job to retry",
            target.server(),
            disk.id
        )));
    }
    Ok(())
}
