//! The vSphere CSI driver's record of which vCenter holds a volume. With
//! more than one vCenter the driver keeps one `CNSVolumeInfo`
//! (`cnsvolumeinfoes.cns.vmware.com`, named by the volume id, in the driver's
//! namespace) per volume and attaches a volume through the vCenter it names.
//! It creates the record when it creates a volume, never corrects one: a
//! moved volume would be attached through the old vCenter (a relocated disk
//! keeps its id), or not at all until the driver's full sync (a copy's new
//! id). So the step writes the record before the PV points at the disk.

use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::json;

use crate::context::{StepContext, StepError};

/// The namespace of OpenShift's vSphere CSI driver.
pub const CSI_NAMESPACE: &str = "openshift-cluster-csi-drivers";
const GROUP_VERSION: &str = "cns.vmware.com/v1alpha1";
const PLURAL: &str = "cnsvolumeinfoes";

fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cns.vmware.com", "v1alpha1", "CNSVolumeInfo"),
        PLURAL,
    )
}

/// Whether the cluster serves the driver's records (only a driver
/// configured with more than one vCenter installs them). Asked once per
/// run, not per volume.
pub async fn served(context: &StepContext) -> Result<bool, StepError> {
    match context.client.list_api_group_resources(GROUP_VERSION).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == PLURAL)),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(StepError::kube(format!("discover {GROUP_VERSION}"))(e)),
    }
}

/// Makes the driver's record of volume `id` name vCenter `server`, read
/// back; returns the change made, or `None` when the record was right.
/// Only for a cluster that [`served`] says keeps records.
pub async fn point_at(
    context: &StepContext,
    id: &str,
    server: &str,
) -> Result<Option<String>, StepError> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(context.client.clone(), CSI_NAMESPACE, &resource());
    let what = format!("CNSVolumeInfo {CSI_NAMESPACE}/{id}");
    let before = api
        .get_opt(id)
        .await
        .map_err(StepError::kube(format!("read {what}")))?;
    let was = before
        .as_ref()
        .and_then(|o| o.data["spec"]["vCenterServer"].as_str().map(str::to_owned));
    if was.as_deref() == Some(server) {
        return Ok(None);
    }
    if before.is_some() {
        api.patch(
            id,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"vCenterServer": server}})),
        )
        .await
        .map_err(StepError::kube(format!("point {what} at vCenter {server}")))?;
    } else {
        let mut record = DynamicObject::new(id, &resource()).within(CSI_NAMESPACE);
        record.data = json!({"spec": {"volumeID": id, "vCenterServer": server}});
        match api.create(&PostParams::default(), &record).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(StepError::kube(format!("create {what}"))(e)),
        }
    }
    let now = api
        .get_opt(id)
        .await
        .map_err(StepError::kube(format!("read {what}")))?
        .and_then(|o| o.data["spec"]["vCenterServer"].as_str().map(str::to_owned));
    if now.as_deref() != Some(server) {
        return Err(StepError::Unverified(format!(
            "{what} names vCenter {now:?} after vmi wrote {server}; something else writes it (the CSI driver?); check it, then delete this step's Job to retry"
        )));
    }
    Ok(Some(format!(
        "{what}: vCenter {} → {server}",
        was.as_deref().unwrap_or("(none)")
    )))
}
