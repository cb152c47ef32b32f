//! A volume counts as detached only when Kubernetes and vSphere both say
//! so: no VolumeAttachment names its PV, and vCenter lists no VM as a
//! consumer of its First Class Disk. Copying a disk some VM still writes to
//! would copy a torn filesystem.

use std::time::Duration;

use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::api::{Api, ListParams};

use super::journal::Entry;
use crate::context::{StepContext, StepError};
use crate::machines::Stall;
use crate::vsphere::{MoRef, VCenter};

/// How often the wait looks again.
const POLL: Duration = Duration::from_millis(500);

/// The VolumeAttachments naming `pv`, as `name (node)`.
pub async fn attachments(context: &StepContext, pv: &str) -> Result<Vec<String>, StepError> {
    let all = Api::<VolumeAttachment>::all(context.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(StepError::kube("list VolumeAttachments"))?;
    Ok(all
        .items
        .into_iter()
        .filter(|a| a.spec.source.persistent_volume_name.as_deref() == Some(pv))
        .map(|a| {
            format!(
                "VolumeAttachment {} (node {})",
                a.metadata.name.unwrap_or_default(),
                a.spec.node_name
            )
        })
        .collect())
}

/// What holds `entry`'s source disk now: VolumeAttachments naming its PV,
/// then VMs vCenter lists as its consumers; empty when it is detached.
pub async fn holders(
    context: &StepContext,
    source: &VCenter,
    entry: &Entry,
) -> Result<Vec<String>, StepError> {
    let mut holding = attachments(context, &entry.persistent_volume).await?;
    if holding.is_empty() {
        let datastore = MoRef::new("Datastore", &entry.source.datastore);
        match source.retrieve_disk(&entry.source.id, &datastore).await? {
            Some(disk) if disk.consumers.is_empty() => {}
            Some(disk) => holding.push(format!(
                "vCenter {} lists VM(s) {} as users of disk {}",
                source.server(),
                disk.consumers.join(", "),
                entry.source.id
            )),
            None => {
                return Err(StepError::Refused(format!(
                    "disk {} of PV {} is no longer on vCenter {} ({}); nothing was copied; find the disk (docs/volumes.md, state Quiesced), then delete this step's Job to retry",
                    entry.source.id,
                    entry.persistent_volume,
                    source.server(),
                    entry.source.path
                )));
            }
        }
    }
    Ok(holding)
}

/// Waits until `entry`'s volume is detached everywhere.
pub async fn wait_detached(
    context: &StepContext,
    source: &VCenter,
    entry: &Entry,
    stall: Duration,
) -> Result<(), StepError> {
    let mut watchdog = Stall::new(stall);
    loop {
        let holding = holders(context, source, entry).await?;
        if holding.is_empty() {
            return Ok(());
        }
        let observed = holding.join("; ");
        if let Some(waited) = watchdog.observe(observed.clone()) {
            return Err(StepError::Unverified(format!(
                "PV {} is still attached after {} s with its workloads stopped: {observed}; check the CSI driver's attacher and the node, detach the disk if its VM is gone, then delete this step's Job to retry",
                entry.persistent_volume,
                waited.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}
