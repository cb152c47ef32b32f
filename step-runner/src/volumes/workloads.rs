//! Stopping and restarting the workloads that use a volume: owners scaled
//! to 0 and back to the replicas the journal recorded, Jobs suspended and
//! resumed. (Pods without an owner are not moved: see `discover`.)

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use super::discover::pods_by_claim;
use super::journal::Owner;
use crate::context::{StepContext, StepError};
use crate::machines::Stall;

/// How often waits look again.
const POLL: Duration = Duration::from_millis(500);

fn describe_err(owner: &Owner, what: &str) -> String {
    format!("{what} {}", owner.describe())
}

/// The owner's replicas now (for a Job: 1 unless suspended), to record
/// before it is scaled down. A workload already gone counts as 0.
pub async fn current_replicas(context: &StepContext, owner: &Owner) -> Result<i32, StepError> {
    let client = context.client.clone();
    let ns = &owner.namespace;
    let action = describe_err(owner, "read");
    Ok(match owner.kind.as_str() {
        "Deployment" => Api::<Deployment>::namespaced(client, ns)
            .get_opt(&owner.name)
            .await
            .map_err(StepError::kube(action))?
            .and_then(|d| d.spec)
            .and_then(|s| s.replicas)
            .unwrap_or(0),
        "StatefulSet" => Api::<StatefulSet>::namespaced(client, ns)
            .get_opt(&owner.name)
            .await
            .map_err(StepError::kube(action))?
            .and_then(|d| d.spec)
            .and_then(|s| s.replicas)
            .unwrap_or(0),
        "ReplicaSet" => Api::<ReplicaSet>::namespaced(client, ns)
            .get_opt(&owner.name)
            .await
            .map_err(StepError::kube(action))?
            .and_then(|d| d.spec)
            .and_then(|s| s.replicas)
            .unwrap_or(0),
        "Job" => Api::<Job>::namespaced(client, ns)
            .get_opt(&owner.name)
            .await
            .map_err(StepError::kube(action))?
            .and_then(|j| j.spec)
            .map(|s| i32::from(s.suspend != Some(true)))
            .unwrap_or(0),
        _ => 1,
    })
}

async fn patch(context: &StepContext, owner: &Owner, body: Value) -> Result<(), StepError> {
    let client = context.client.clone();
    let ns = &owner.namespace;
    let params = PatchParams::default();
    let patch = Patch::Merge(&body);
    let result = match owner.kind.as_str() {
        "Deployment" => Api::<Deployment>::namespaced(client, ns)
            .patch(&owner.name, &params, &patch)
            .await
            .map(|_| ()),
        "StatefulSet" => Api::<StatefulSet>::namespaced(client, ns)
            .patch(&owner.name, &params, &patch)
            .await
            .map(|_| ()),
        "ReplicaSet" => Api::<ReplicaSet>::namespaced(client, ns)
            .patch(&owner.name, &params, &patch)
            .await
            .map(|_| ()),
        "Job" => Api::<Job>::namespaced(client, ns)
            .patch(&owner.name, &params, &patch)
            .await
            .map(|_| ()),
        kind => {
            return Err(StepError::Refused(format!(
                "internal: cannot scale a {kind}"
            )));
        }
    };
    match result {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Err(StepError::Refused(format!(
            "{} is gone; the journal records it with {} replica(s); recreate it or remove it from the journal entries that name it (docs/volumes.md), then delete this step's Job to retry",
            owner.describe(),
            owner.replicas
        ))),
        Err(e) => Err(StepError::kube(describe_err(owner, "scale"))(e)),
    }
}

/// Stops `owner`: replicas 0, or a Job suspended.
pub async fn stop(context: &StepContext, owner: &Owner) -> Result<(), StepError> {
    match owner.kind.as_str() {
        "Job" => patch(context, owner, json!({"spec": {"suspend": true}})).await,
        _ => patch(context, owner, json!({"spec": {"replicas": 0}})).await,
    }
}

/// Starts `owner` again as the journal recorded it.
pub async fn start(context: &StepContext, owner: &Owner) -> Result<(), StepError> {
    match owner.kind.as_str() {
        "Job" => {
            patch(
                context,
                owner,
                json!({"spec": {"suspend": owner.replicas == 0}}),
            )
            .await
        }
        _ => {
            patch(
                context,
                owner,
                json!({"spec": {"replicas": owner.replicas}}),
            )
            .await
        }
    }
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
    let client = context.client.clone();
    let ns = &owner.namespace;
    let action = describe_err(owner, "read");
    let (wanted, ready) = match owner.kind.as_str() {
        "Deployment" => {
            let d = Api::<Deployment>::namespaced(client, ns)
                .get_opt(&owner.name)
                .await
                .map_err(StepError::kube(action))?;
            let status = d.and_then(|d| d.status).unwrap_or_default();
            (owner.replicas, status.ready_replicas.unwrap_or(0))
        }
        "StatefulSet" => {
            let d = Api::<StatefulSet>::namespaced(client, ns)
                .get_opt(&owner.name)
                .await
                .map_err(StepError::kube(action))?;
            let status = d.and_then(|d| d.status).unwrap_or_default();
            (owner.replicas, status.ready_replicas.unwrap_or(0))
        }
        "ReplicaSet" => {
            let d = Api::<ReplicaSet>::namespaced(client, ns)
                .get_opt(&owner.name)
                .await
                .map_err(StepError::kube(action))?;
            let status = d.and_then(|d| d.status).unwrap_or_default();
            (owner.replicas, status.ready_replicas.unwrap_or(0))
        }
        _ => return Ok(None),
    };
    Ok((ready < wanted).then(|| format!("{} has {ready}/{wanted} ready", owner.describe())))
}
