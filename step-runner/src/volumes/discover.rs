//! Discovery: every vSphere CSI PersistentVolume, its claim, the pods that
//! use it and the workloads that own them, and whether vmi can move it.
//! Preflight, `plan` and step 13 all read the cluster through this, so what
//! the plan promises is what the step does.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use kube::api::{Api, ListParams};

use super::journal::Owner;
use crate::context::{StepContext, StepError};

/// The vSphere CSI driver's name, in PVs and VolumeAttachments.
pub const CSI_DRIVER: &str = "csi.vsphere.vmware.com";

/// What step 13 will do with a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// It will be moved.
    Move,
    /// It cannot be moved, for this reason; the step refuses to start
    /// unless `spec.volumes.skipUnmovable` is true.
    Unmovable(String),
    /// It is outside `spec.volumes.namespaceSelector`; it stays where it is.
    NotSelected,
}

/// One vSphere volume (CSI or in-tree) and what will happen to it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The PersistentVolume.
    pub pv: PersistentVolume,
    /// Its claim, when bound.
    pub claim: Option<PersistentVolumeClaim>,
    /// The workloads whose pods use the claim.
    pub owners: Vec<Owner>,
    /// What the step will do.
    pub disposition: Disposition,
}

impl Candidate {
    /// The PV's name.
    pub fn name(&self) -> &str {
        self.pv.metadata.name.as_deref().unwrap_or_default()
    }

    /// The CSI volume handle (the First Class Disk id), if a CSI volume.
    pub fn handle(&self) -> Option<&str> {
        self.pv
            .spec
            .as_ref()
            .and_then(|s| s.csi.as_ref())
            .map(|c| c.volume_handle.as_str())
    }

    /// `namespace/name` of its claim, from the PV's claimRef.
    pub fn claim_name(&self) -> Option<String> {
        claim_of(&self.pv)
    }

    /// `namespace/name` of its claim when that claim exists and is bound to
    /// this PV (same uid as the PV's claimRef, `volumeName` this PV): the
    /// claim a rebind must see bound again. A Released PV's claimRef names a
    /// claim that is gone or another one of the same name.
    pub fn bound_claim(&self) -> Option<String> {
        let claim = self.claim.as_ref()?;
        let claim_ref = self.pv.spec.as_ref()?.claim_ref.as_ref()?;
        let same_uid = claim.metadata.uid.is_some() && claim.metadata.uid == claim_ref.uid;
        let names_pv = claim.spec.as_ref()?.volume_name.as_deref() == Some(self.name());
        (same_uid && names_pv).then(|| self.claim_name()).flatten()
    }

    /// One line for plans and messages: `PV x (ns/claim, used by …)`.
    pub fn describe(&self) -> String {
        let claim = self.claim_name().unwrap_or_else(|| "unclaimed".into());
        if self.owners.is_empty() {
            format!("PV {} ({claim})", self.name())
        } else {
            let owners: Vec<String> = self.owners.iter().map(Owner::describe).collect();
            format!(
                "PV {} ({claim}, used by {})",
                self.name(),
                owners.join(", ")
            )
        }
    }
}

/// `namespace/name` of the PV's claimRef.
pub fn claim_of(pv: &PersistentVolume) -> Option<String> {
    let claim = pv.spec.as_ref()?.claim_ref.as_ref()?;
    Some(format!(
        "{}/{}",
        claim.namespace.as_deref().unwrap_or_default(),
        claim.name.as_deref().unwrap_or_default()
    ))
}

/// Whether `pv` is a vSphere CSI volume.
pub fn is_csi(pv: &PersistentVolume) -> bool {
    pv.spec
        .as_ref()
        .and_then(|s| s.csi.as_ref())
        .is_some_and(|c| c.driver == CSI_DRIVER)
}

/// Whether `pv` is an in-tree vSphere volume.
pub fn is_in_tree(pv: &PersistentVolume) -> bool {
    pv.spec.as_ref().is_some_and(|s| s.vsphere_volume.is_some())
}

/// A label selector as the API's query string.
pub fn selector_query(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for expression in selector.match_expressions.iter().flatten() {
        let values = expression.values.clone().unwrap_or_default().join(",");
        parts.push(match expression.operator.as_str() {
            "In" => format!("{} in ({values})", expression.key),
            "NotIn" => format!("{} notin ({values})", expression.key),
            "Exists" => expression.key.clone(),
            _ => format!("!{}", expression.key),
        });
    }
    parts.join(",")
}

/// The namespaces `spec.volumes.namespaceSelector` selects, or `None` for
/// all of them.
async fn selected_namespaces(context: &StepContext) -> Result<Option<BTreeSet<String>>, StepError> {
    let Some(selector) = context
        .vmi
        .spec
        .volumes
        .as_ref()
        .and_then(|v| v.namespace_selector.as_ref())
    else {
        return Ok(None);
    };
    let query = selector_query(selector);
    let namespaces = Api::<Namespace>::all(context.client.clone())
        .list(&ListParams::default().labels(&query))
        .await
        .map_err(StepError::kube(format!(
            "list the namespaces spec.volumes.namespaceSelector selects ({query})"
        )))?;
    Ok(Some(
        namespaces
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect(),
    ))
}

fn controller(references: Option<&Vec<OwnerReference>>) -> Option<&OwnerReference> {
    references?.iter().find(|r| r.controller == Some(true))
}

/// The workload that owns `pod`, or why vmi cannot stop it.
async fn owner_of(context: &StepContext, pod: &Pod) -> Result<Result<Owner, String>, StepError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let owner = |kind: &str, name: &str| Owner {
        kind: kind.into(),
        namespace: namespace.clone(),
        name: name.into(),
        replicas: 0,
    };
    let Some(reference) = controller(pod.metadata.owner_references.as_ref()) else {
        return Ok(Err(format!(
            "used by pod {namespace}/{pod_name}, which has no owner: vmi would have to delete it and create it again, which needs permission to create pods in every namespace, and vmi does not take that; delete the pod (create it again after step 13), or run it under a Deployment or StatefulSet"
        )));
    };
    Ok(match reference.kind.as_str() {
        "StatefulSet" => Ok(owner("StatefulSet", &reference.name)),
        "DaemonSet" => Err(format!(
            "used by DaemonSet {namespace}/{} (pod {pod_name}), which runs on every node and cannot be stopped for one volume",
            reference.name
        )),
        "ReplicaSet" => {
            let set = Api::<ReplicaSet>::namespaced(context.client.clone(), &namespace)
                .get_opt(&reference.name)
                .await
                .map_err(StepError::kube(format!(
                    "read ReplicaSet {namespace}/{}",
                    reference.name
                )))?;
            match set
                .as_ref()
                .and_then(|s| controller(s.metadata.owner_references.as_ref()))
            {
                Some(parent) if parent.kind == "Deployment" => {
                    Ok(owner("Deployment", &parent.name))
                }
                Some(parent) => Err(format!(
                    "used by pod {pod_name} of ReplicaSet {}, owned by {} {}, which vmi cannot stop; scale it to 0 yourself",
                    reference.name, parent.kind, parent.name
                )),
                None => Ok(owner("ReplicaSet", &reference.name)),
            }
        }
        "Job" => {
            let job = Api::<Job>::namespaced(context.client.clone(), &namespace)
                .get_opt(&reference.name)
                .await
                .map_err(StepError::kube(format!(
                    "read Job {namespace}/{}",
                    reference.name
                )))?;
            match job
                .as_ref()
                .and_then(|j| controller(j.metadata.owner_references.as_ref()))
            {
                Some(parent) => Err(format!(
                    "used by Job {}, owned by {} {}, which would start new Jobs during the move; suspend it and let the Job finish",
                    reference.name, parent.kind, parent.name
                )),
                None => Ok(owner("Job", &reference.name)),
            }
        }
        kind => Err(format!(
            "used by pod {pod_name} owned by {kind} {}, which vmi cannot stop; scale it to 0 yourself and retry",
            reference.name
        )),
    })
}

/// Whether the pod still holds its volumes (not finished).
pub fn holds_volumes(pod: &Pod) -> bool {
    !matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The claims (`namespace/name`) each pod uses, by claim.
pub fn pods_by_claim(pods: &[Pod]) -> BTreeMap<String, Vec<&Pod>> {
    let mut by_claim: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for pod in pods.iter().filter(|p| holds_volumes(p)) {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        for volume in pod
            .spec
            .as_ref()
            .map(|s| s.volumes.iter().flatten())
            .into_iter()
            .flatten()
        {
            if let Some(claim) = &volume.persistent_volume_claim {
                by_claim
                    .entry(format!("{namespace}/{}", claim.claim_name))
                    .or_default()
                    .push(pod);
            }
        }
    }
    by_claim
}

/// The claims (`namespace/name`) the pod template of each CronJob that is
/// not suspended mounts, with the CronJobs: such a CronJob may start a pod
/// on the volume while it is moved, and vmi does not stop CronJobs.
pub fn active_cron_jobs_by_claim(cron_jobs: &[CronJob]) -> BTreeMap<String, Vec<String>> {
    let mut by_claim: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for cron_job in cron_jobs {
        let Some(spec) = &cron_job.spec else { continue };
        if spec.suspend == Some(true) {
            continue;
        }
        let namespace = cron_job.metadata.namespace.clone().unwrap_or_default();
        let name = cron_job.metadata.name.clone().unwrap_or_default();
        let volumes = spec
            .job_template
            .spec
            .as_ref()
            .and_then(|j| j.template.spec.as_ref())
            .and_then(|p| p.volumes.as_ref());
        for volume in volumes.into_iter().flatten() {
            if let Some(claim) = &volume.persistent_volume_claim {
                by_claim
                    .entry(format!("{namespace}/{}", claim.claim_name))
                    .or_default()
                    .push(format!("{namespace}/{name}"));
            }
        }
    }
    by_claim
}

/// Every vSphere volume of the cluster (CSI and in-tree) with what step 13
/// will do with it. Whether the disk is on the source vCenter is checked
/// later, with vCenter ([`super::locate`]).
pub async fn discover(context: &StepContext) -> Result<Vec<Candidate>, StepError> {
    let pvs = Api::<PersistentVolume>::all(context.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(StepError::kube("list PersistentVolumes"))?;
    let volumes: Vec<PersistentVolume> = pvs
        .items
        .into_iter()
        .filter(|pv| is_csi(pv) || is_in_tree(pv))
        .collect();
    if volumes.is_empty() {
        return Ok(Vec::new());
    }
    let selected = selected_namespaces(context).await?;
    let pods = Api::<Pod>::all(context.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(StepError::kube("list Pods"))?
        .items;
    let by_claim = pods_by_claim(&pods);
    let cron_jobs = Api::<CronJob>::all(context.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(StepError::kube("list CronJobs"))?
        .items;
    let by_cron_job = active_cron_jobs_by_claim(&cron_jobs);
    let mut candidates = Vec::new();
    for pv in volumes {
        let claim_name = claim_of(&pv);
        let claim = match &claim_name {
            Some(name) => {
                let (namespace, claim) = name.split_once('/').unwrap_or_default();
                Api::<PersistentVolumeClaim>::namespaced(context.client.clone(), namespace)
                    .get_opt(claim)
                    .await
                    .map_err(StepError::kube(format!(
                        "read PersistentVolumeClaim {name}"
                    )))?
            }
            None => None,
        };
        let mut owners: BTreeMap<String, Owner> = BTreeMap::new();
        let mut reasons = Vec::new();
        for pod in claim_name
            .as_ref()
            .and_then(|c| by_claim.get(c))
            .into_iter()
            .flatten()
        {
            match owner_of(context, pod).await? {
                Ok(owner) => {
                    owners.insert(owner.describe(), owner);
                }
                Err(reason) => reasons.push(reason),
            }
        }
        for cron_job in claim_name
            .as_ref()
            .and_then(|c| by_cron_job.get(c))
            .into_iter()
            .flatten()
        {
            reasons.push(format!(
                "used by CronJob {cron_job}, which may start a pod on it while it is moved; suspend the CronJob (spec.suspend: true) until step 13 is done"
            ));
        }
        let namespace = claim_name
            .as_deref()
            .and_then(|c| c.split_once('/'))
            .map(|(n, _)| n.to_owned());
        let disposition = if is_in_tree(&pv) {
            Disposition::Unmovable(
                "an in-tree vSphere volume, which vSphere CSI does not support with two vCenters; migrate it to CSI first".into(),
            )
        } else if pv
            .spec
            .as_ref()
            .and_then(|s| s.csi.as_ref())
            .is_some_and(|c| c.volume_handle.starts_with("file:"))
        {
            Disposition::Unmovable(
                "a vSAN file share volume; vmi moves block volumes (First Class Disks) only".into(),
            )
        } else if let (Some(selected), Some(namespace)) = (&selected, &namespace)
            && !selected.contains(namespace)
        {
            Disposition::NotSelected
        } else if !reasons.is_empty() {
            reasons.dedup();
            Disposition::Unmovable(reasons.join("; "))
        } else {
            Disposition::Move
        };
        candidates.push(Candidate {
            pv,
            claim,
            owners: owners.into_values().collect(),
            disposition,
        });
    }
    candidates.sort_by(|a, b| a.name().cmp(b.name()));
    Ok(candidates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(claim_uid: &str, volume_name: &str) -> Candidate {
        Candidate {
            pv: serde_json::from_value(serde_json::json!({
                "metadata": {"name": "pvc-1"},
                "spec": {"claimRef": {"namespace": "apps", "name": "data", "uid": "c1"}}
            }))
            .unwrap(),
            claim: Some(
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": "data", "namespace": "apps", "uid": claim_uid},
                    "spec": {"volumeName": volume_name}
                }))
                .unwrap(),
            ),
            owners: Vec::new(),
            disposition: Disposition::Move,
        }
    }

    #[test]
    fn only_the_claim_bound_to_the_pv_is_waited_for() {
        assert_eq!(
            candidate("c1", "pvc-1").bound_claim().as_deref(),
            Some("apps/data")
        );
        // A Released PV: its claim was deleted and made again, bound elsewhere.
        assert_eq!(candidate("c2", "pvc-9").bound_claim(), None);
        assert_eq!(candidate("c2", "pvc-1").bound_claim(), None);
        let mut gone = candidate("c1", "pvc-1");
        gone.claim = None;
        assert_eq!(gone.bound_claim(), None);
        assert_eq!(gone.claim_name().as_deref(), Some("apps/data"));
    }

    #[test]
    fn a_suspended_cron_job_is_no_danger_an_active_one_is() {
        let cron_job = |name: &str, suspend: bool| -> CronJob {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "apps"},
                "spec": {"schedule": "0 3 * * *", "suspend": suspend, "jobTemplate": {"spec": {"template": {"spec": {
                    "containers": [{"name": "c"}],
                    "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]
                }}}}}
            }))
            .unwrap()
        };
        let found =
            active_cron_jobs_by_claim(&[cron_job("nightly", false), cron_job("paused", true)]);
        assert_eq!(found.len(), 1);
        assert_eq!(found["apps/data"], vec!["apps/nightly".to_owned()]);
    }
}
