//! Stopping and restarting the workloads that use a volume: owners scaled
//! to 0 and back to the replicas the journal recorded, Jobs suspended and
//! resumed. (Pods without an owner are not moved: see `discover`.)
//!
//! The four kinds are read through one dynamic client: they differ only in
//! their group and in what "replicas" means for a Job. Deployments,
//! StatefulSets and ReplicaSets are scaled through their `scale`
//! subresource, so the step runner may change their replica count in any
//! namespace but never their pod template; a Job has no `scale` and is
//! suspended by a patch.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use serde_json::{Value, json};

use super::discover::pods_by_claim;
use super::journal::Owner;
use crate::context::{StepContext, StepError};
use crate::machines::Stall;

/// How often waits look again.
const POLL: Duration = Duration::from_millis(500);

/// The API of `owner`'s kind in its namespace.
fn api(context: &StepContext, owner: &Owner) -> Result<Api<DynamicObject>, StepError> {
    let (group, version) = match owner.kind.as_str() {
        "Deployment" | "StatefulSet" | "ReplicaSet" => ("apps", "v1"),
        "Job" => ("batch", "v1"),
        kind => {
            return Err(StepError::Refused(format!(
                "internal: vmi does not stop a {kind} ({})",
                owner.describe()
            )));
        }
    };
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &owner.kind));
    Ok(Api::namespaced_with(
        context.client.clone(),
        &owner.namespace,
        &resource,
    ))
}

/// `owner` as stored now, or `None` when it is gone.
async fn read(context: &StepContext, owner: &Owner) -> Result<Option<DynamicObject>, StepError> {
    api(context, owner)?
        .get_opt(&owner.name)
        .await
        .map_err(StepError::kube(format!("read {}", owner.describe())))
}

/// The replicas `object` asks for; for a Job, 1 unless suspended.
fn replicas(kind: &str, object: &DynamicObject) -> i32 {
    let spec = &object.data["spec"];
    if kind == "Job" {
        i32::from(spec["suspend"] != Value::Bool(true))
    } else {
        spec["replicas"]
            .as_i64()
            .and_then(|r| i32::try_from(r).ok())
            .unwrap_or(1)
    }
}

/// The owner's replicas now (for a Job: 1 unless suspended), to record
/// before it is scaled down. A workload already gone counts as 0.
pub async fn current_replicas(context: &StepContext, owner: &Owner) -> Result<i32, StepError> {
    Ok(read(context, owner)
        .await?
        .map_or(0, |object| replicas(&owner.kind, &object)))
}

/// Sets `owner`'s replicas, or for a Job whether it is suspended.
async fn set_replicas(
    context: &StepContext,
    owner: &Owner,
    replicas: i32,
) -> Result<(), StepError> {
    let api = api(context, owner)?;
    let params = PatchParams::default();
    let done = if owner.kind == "Job" {
        let body = json!({"spec": {"suspend": replicas == 0}});
        api.patch(&owner.name, &params, &Patch::Merge(&body))
            .await
            .map(drop)
    } else {
        let body = json!({"spec": {"replicas": replicas}});
        api.patch_scale(&owner.name, &params, &Patch::Merge(&body))
            .await
            .map(drop)
    };
    match done {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Err(StepError::Refused(format!(
            "{} is gone; the journal records it with {} replica(s); recreate it or remove it from the journal entries that name it (docs/volumes.md), then delete this step's Job to retry",
            owner.describe(),
            owner.replicas
        ))),
        Err(e) => Err(StepError::kube(format!("scale {}", owner.describe()))(e)),
    }
}

/// Stops `owner`: replicas 0, or a Job suspended.
pub async fn stop(context: &StepContext, owner: &Owner) -> Result<(), StepError> {
    set_replicas(context, owner, 0).await
}

/// Starts `owner` again as the journal recorded it.
pub async fn start(context: &StepContext, owner: &Owner) -> Result<(), StepError> {
    set_replicas(context, owner, owner.replicas).await
}

/// Waits until no running pod uses any of `claims` (`namespace/name`).
pub async fn wait_unused(
    context: &StepContext,
    claims: &[String],
    stall: Duration,
) -> Result<(), StepError> {
    let mut watchdog = Stall::new(stall);
    loop {
        let mut users = Vec::new();
        let namespaces: std::collections::BTreeSet<&str> = claims
            .iter()
            .filter_map(|c| c.split_once('/').map(|(n, _)| n))
            .collect();
        for namespace in namespaces {
            let pods = Api::<Pod>::namespaced(context.client.clone(), namespace)
                .list(&ListParams::default())
                .await
                .map_err(StepError::kube(format!("list Pods in {namespace}")))?
                .items;
            for (claim, pods) in pods_by_claim(&pods) {
                if claims.contains(&claim) {
                    users.extend(pods.iter().map(|p| {
                        format!(
                            "pod {namespace}/{} uses {claim}",
                            p.metadata.name.as_deref().unwrap_or_default()
                        )
                    }));
                }
            }
        }
        if users.is_empty() {
            return Ok(());
        }
        users.sort();
        let observed = users.join("; ");
        if let Some(waited) = watchdog.observe(observed.clone()) {
            return Err(StepError::Unverified(format!(
                "the workloads were stopped but after {} s still {observed}; find what recreates that pod (an owner vmi does not know, an operator) and stop it, then delete this step's Job to retry",
                waited.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// What keeps `owner` from being back: `None` once its pods are Ready at
/// the recorded replicas (a Job: resumed).
pub async fn not_back(context: &StepContext, owner: &Owner) -> Result<Option<String>, StepError> {
    if owner.kind == "Job" {
        return Ok(None);
    }
    let ready = read(context, owner)
        .await?
        .and_then(|object| object.data["status"]["readyReplicas"].as_i64())
        .unwrap_or(0);
    Ok((ready < i64::from(owner.replicas))
        .then(|| format!("{} has {ready}/{} ready", owner.describe(), owner.replicas)))
}
