//! Step 13 migrate-volumes: vSphere CSI persistent volumes to the target
//! vCenter (DESIGN §7).
//!
//! Moving the disks is not implemented yet; what is here is the gate the
//! pipeline needs around it. Without vSphere CSI volumes the step is
//! skipped. With some, it stops the migration before the source is
//! removed, naming them: removing the source vCenter would leave those
//! volumes on a vCenter the cluster no longer knows.

use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{Api, ListParams};

use crate::context::{Outcome, StepContext, StepError};
use crate::steps::preflight::CSI_DRIVER;

/// `namespace/claim` (or `unclaimed`) of each vSphere CSI volume, by PV name.
pub async fn csi_volumes(context: &StepContext) -> Result<Vec<(String, String)>, StepError> {
    let volumes = Api::<PersistentVolume>::all(context.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(StepError::kube("list PersistentVolumes"))?;
    Ok(volumes
        .items
        .into_iter()
        .filter(|pv| {
            pv.spec
                .as_ref()
                .and_then(|s| s.csi.as_ref())
                .is_some_and(|c| c.driver == CSI_DRIVER)
        })
        .map(|pv| {
            let claim = pv
                .spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .map(|c| {
                    format!(
                        "{}/{}",
                        c.namespace.clone().unwrap_or_default(),
                        c.name.clone().unwrap_or_default()
                    )
                })
                .unwrap_or_else(|| "unclaimed".into());
            (pv.metadata.name.unwrap_or_default(), claim)
        })
        .collect())
}

/// Runs the step.
pub async fn run(context: &StepContext) -> Result<Outcome, StepError> {
    let volumes = csi_volumes(context).await?;
    if volumes.is_empty() {
        return Ok(Outcome::skipped(
            "the cluster has no vSphere CSI persistent volume",
        ));
    }
    let listed: Vec<String> = volumes
        .iter()
        .map(|(pv, claim)| format!("PV {pv} ({claim})"))
        .collect();
    let migrate = context.vmi.spec.volumes.as_ref().is_some_and(|v| v.migrate);
    let why = if migrate {
        "moving vSphere CSI volumes between vCenters is not available in this version of vmi"
    } else {
        "spec.volumes.migrate is not true"
    };
    Err(StepError::Refused(format!(
        "{} vSphere CSI volume(s) live on the source vCenter and {why}: {}; removing the source (step 15) would strand them; move them by hand (back up with your backup tool, recreate on the target) or delete them, then retry this step; nothing was changed",
        volumes.len(),
        listed.join(", ")
    )))
}
