//! Step 09 restart-pods: delete the pods of the vSphere components
//! ([`crate::components::COMPONENTS`]) so they start again with the new
//! configuration and credentials, and wait until every component is back
//! with only new pods, all Ready.
//!
//! Pods are deleted rather than their templates annotated: the operators
//! that own these workloads may overwrite template edits. The moment of the
//! restart is recorded first; a pod created after it counts as restarted, so
//! a second run (or a run after a crash) deletes only pods older than that.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{RoundMode, Timestamp, TimestampRound, Unit};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Preconditions};

use crate::backup::Backups;
use crate::components::{COMPONENTS, Component, Kind};
use crate::context::{Outcome, StepContext, StepError};

/// The backup key holding when the restart began (RFC 3339).
pub const RESTARTED_AT: &str = "09-restart-pods.at";
/// How long the components may take to come back.
const READY_TIMEOUT: Duration = Duration::from_secs(480);

/// The restart time recorded by step 09, if it ran.
pub async fn restarted_at(context: &StepContext) -> Result<Option<Timestamp>, StepError> {
    recorded_at(context, RESTARTED_AT).await
}

/// The restart time recorded under backup `key`, if any.
pub async fn recorded_at(context: &StepContext, key: &str) -> Result<Option<Timestamp>, StepError> {
    let Some(text) = Backups::of(context).load(key).await? else {
        return Ok(None);
    };
    text.parse::<Timestamp>().map(Some).map_err(|e| {
        StepError::Refused(format!(
            "the backup {key} holds {text:?}, not a time ({e}); delete that key to restart again"
        ))
    })
}

/// The component's pods.
pub async fn pods(context: &StepContext, component: &Component) -> Result<Vec<Pod>, StepError> {
    Api::<Pod>::namespaced(context.client.clone(), component.namespace)
        .list(&ListParams::default().labels(component.selector))
        .await
        .map(|l| l.items)
        .map_err(StepError::kube(format!(
            "list the pods of {}/{}",
            component.namespace, component.name
        )))
}

fn created(pod: &Pod) -> Option<Timestamp> {
    pod.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// How many pods the component's workload wants, or `None` when it does
/// not exist in this cluster.
pub async fn desired(
    context: &StepContext,
    component: &Component,
) -> Result<Option<i32>, StepError> {
    let what = format!("read {}/{}", component.namespace, component.name);
    Ok(match component.kind {
        Kind::Deployment => {
            Api::<Deployment>::namespaced(context.client.clone(), component.namespace)
                .get_opt(component.name)
                .await
                .map_err(StepError::kube(what))?
                .map(|d| d.spec.and_then(|s| s.replicas).unwrap_or(1))
        }
        Kind::DaemonSet => {
            Api::<DaemonSet>::namespaced(context.client.clone(), component.namespace)
                .get_opt(component.name)
                .await
                .map_err(StepError::kube(what))?
                .map(|d| d.status.unwrap_or_default().desired_number_scheduled)
        }
    })
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The crash loops and restarts of a pod's containers.
pub fn crashes(pod: &Pod) -> Vec<String> {
    let mut out = Vec::new();
    for status in pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default()
    {
        let waiting = status
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.clone());
        if waiting.as_deref() == Some("CrashLoopBackOff") || status.restart_count > 0 {
            out.push(format!(
                "pod {}/{} container {}: crash loop ({} restart(s){}); read `oc -n {} logs {} -c {} --previous`",
                pod.namespace().unwrap_or_default(),
                pod.name_any(),
                status.name,
                status.restart_count,
                waiting.map(|w| format!(", {w}")).unwrap_or_default(),
                pod.namespace().unwrap_or_default(),
                pod.name_any(),
                status.name
            ));
        }
    }
    out
}

/// Waits until every component has as many Ready pods as it wants, none of
/// them created before `since`. Returns the components that do not exist.
pub async fn wait_until_ready(
    context: &StepContext,
    since: Timestamp,
) -> Result<Vec<String>, StepError> {
    let started = Instant::now();
    loop {
        let mut missing = Vec::new();
        let mut lagging = Vec::new();
        let mut crashing: Vec<String> = Vec::new();
        for component in COMPONENTS {
            let Some(want) = desired(context, component).await? else {
                missing.push(format!("{}/{}", component.namespace, component.name));
                continue;
            };
            let pods = pods(context, component).await?;
            let live: Vec<&Pod> = pods
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            let old = live
                .iter()
                .filter(|p| created(p).is_some_and(|t| t < since))
                .count();
            let good = live
                .iter()
                .filter(|p| ready(p) && created(p).is_some_and(|t| t >= since))
                .count();
            for pod in live
                .iter()
                .filter(|p| created(p).is_some_and(|t| t >= since))
            {
                crashing.extend(crashes(pod));
            }
            if old > 0 || i32::try_from(good).unwrap_or(i32::MAX) < want {
                let not_ready: Vec<String> = live
                    .iter()
                    .filter(|p| !ready(p))
                    .map(|p| p.name_any())
                    .collect();
                lagging.push(format!(
                    "{}/{} ({good} of {want} new pods Ready{}{})",
                    component.namespace,
                    component.name,
                    if old > 0 {
                        format!(", {old} old pod(s) left")
                    } else {
                        String::new()
                    },
                    if not_ready.is_empty() {
                        String::new()
                    } else {
                        format!(", not Ready: {}", not_ready.join(", "))
                    }
                ));
            }
        }
        if !crashing.is_empty() {
            return Err(StepError::Refused(format!(
                "{}; fix the cause, then retry",
                crashing.join("; ")
            )));
        }
        if lagging.is_empty() {
            return Ok(missing);
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(StepError::Unverified(format!(
                "after {} s these vSphere components are not back: {}; read their pods' events and logs (`oc -n <namespace> describe pod <pod>`), fix the cause, then retry",
                READY_TIMEOUT.as_secs(),
                lagging.join("; ")
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Runs the step.
pub async fn run(context: &StepContext) -> Result<Outcome, StepError> {
    restart(context, RESTARTED_AT).await
}

/// Restarts every vSphere component once, the restart time recorded under
/// backup `key` (step 09 and step 15 each restart once).
pub async fn restart(context: &StepContext, key: &str) -> Result<Outcome, StepError> {
    let backups = Backups::of(context);
    let mut outcome = Outcome::default();
    let since = match recorded_at(context, key).await? {
        Some(at) => at,
        None => {
            // The next whole second, so that creation timestamps (whole
            // seconds) tell old pods from new ones exactly.
            let at = Timestamp::now()
                .round(
                    TimestampRound::new()
                        .smallest(Unit::Second)
                        .mode(RoundMode::Ceil),
                )
                .map_err(|e| StepError::Refused(format!("internal: {e}")))?;
            if backups.save_once(key, &at.to_string()).await? {
                outcome.backups.push(backups.describe(key));
            }
            recorded_at(context, key).await?.unwrap_or(at)
        }
    };
    let wait = since.duration_since(Timestamp::now());
    if wait.is_positive() {
        tokio::time::sleep(Duration::try_from(wait).unwrap_or_default()).await;
    }
    for component in COMPONENTS {
        for pod in pods(context, component).await? {
            if pod.metadata.deletion_timestamp.is_some()
                || created(&pod).is_some_and(|t| t >= since)
            {
                continue;
            }
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: pod.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match Api::<Pod>::namespaced(context.client.clone(), component.namespace)
                .delete(&pod.name_any(), &params)
                .await
            {
                Ok(_) => outcome.changes.push(format!(
                    "Pod {}/{}: deleted ({} restarts it)",
                    component.namespace,
                    pod.name_any(),
                    component.name
                )),
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => {
                    return Err(StepError::Kube {
                        action: format!("delete Pod {}/{}", component.namespace, pod.name_any()),
                        source: e,
                    });
                }
            }
        }
    }
    let missing = wait_until_ready(context, since).await?;
    let absent = if missing.is_empty() {
        String::new()
    } else {
        format!("; not in this cluster: {}", missing.join(", "))
    };
    outcome.result = if outcome.changes.is_empty() {
        format!(
            "every vSphere component already runs pods started after {since}{absent}; nothing changed"
        )
    } else {
        format!(
            "restarted {} pod(s) of the vSphere components; all are back and Ready{absent}",
            outcome.changes.len()
        )
    };
    Ok(outcome)
}
