//! Step 10 monitor-pods: wait until the restarted vSphere components are
//! Ready, then read their logs over a window for the failure signatures of
//! [`crate::components::SIGNATURES`] and look for crash loops. A hit stops
//! the migration with the pod, container and line in status: a component
//! that cannot reach the new vCenter now would break the machines moved
//! next.
//!
//! The window is 120 s, or the vmi's annotation
//! `vmi.config.openshift.io/monitor-window-seconds`.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, LogParams};

use crate::components::{COMPONENTS, matching};
use crate::context::{Outcome, StepContext, StepError};
use crate::report;
use crate::steps::restart_pods::{crashes, pods, restarted_at, wait_until_ready};
use crate::vsphere::redact::Redactor;

/// The annotation that sets the window, in seconds.
pub const WINDOW_ANNOTATION: &str = "vmi.config.openshift.io/monitor-window-seconds";
/// The window when the annotation is absent.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(120);
/// The longest log line quoted in status.
const QUOTE: usize = 300;

fn window(context: &StepContext) -> Duration {
    context
        .vmi
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(WINDOW_ANNOTATION))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_WINDOW)
}

/// A redactor for every vCenter password the cluster and the vmi hold
/// (`*.password` of `kube-system/vsphere-creds` and of the credentials
/// Secret): a component's log line is quoted into status, and a component
/// may log its configuration.
async fn redactor(context: &StepContext) -> Result<Redactor, StepError> {
    let mut redactor = Redactor::default();
    for (namespace, name) in [
        ("kube-system", "vsphere-creds"),
        (
            context.vmi_ref.namespace.as_str(),
            context.vmi.spec.credentials_secret.name.as_str(),
        ),
    ] {
        let secret = Api::<Secret>::namespaced(context.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(StepError::kube(format!("read Secret {namespace}/{name}")))?;
        for (key, value) in secret.and_then(|s| s.data).unwrap_or_default() {
            if key.ends_with(".password") {
                redactor.add(&String::from_utf8_lossy(&value.0));
            }
        }
    }
    Ok(redactor)
}

fn quote(redactor: &Redactor, line: &str) -> String {
    let line = redactor.redact(line.trim());
    let line = line.as_str();
    match line.char_indices().nth(QUOTE) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_owned(),
    }
}

/// Runs the step.
pub async fn run(context: &StepContext) -> Result<Outcome, StepError> {
    let since = match restarted_at(context).await? {
        Some(at) => at,
        None => {
            return Err(StepError::Refused(
                "step 09 restart-pods has not run (no restart time in the backups): run it first; nothing was checked".into(),
            ));
        }
    };
    monitor(context, since).await
}

/// Waits for the vSphere components restarted at `since` to be Ready,
/// then reads their logs over the window for failure signatures; a hit is
/// recorded in the step's status and fails the step.
pub async fn monitor(context: &StepContext, since: Timestamp) -> Result<Outcome, StepError> {
    let missing = wait_until_ready(context, since).await?;
    let window = window(context);
    let elapsed = Timestamp::now().duration_since(since);
    let remaining = Duration::try_from(elapsed)
        .ok()
        .and_then(|e| window.checked_sub(e))
        .unwrap_or_default();
    tokio::time::sleep(remaining).await;
    let redactor = redactor(context).await?;
    let mut hits = Vec::new();
    let mut findings = Vec::new();
    let mut scanned = 0;
    for component in COMPONENTS {
        let api = Api::<Pod>::namespaced(context.client.clone(), component.namespace);
        for pod in pods(context, component).await? {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            hits.extend(crashes(&pod));
            let containers: Vec<String> = pod
                .spec
                .as_ref()
                .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
                .unwrap_or_default();
            for container in containers {
                let params = LogParams {
                    container: Some(container.clone()),
                    since_time: Some(since),
                    ..LogParams::default()
                };
                let log = api
                    .logs(&pod.name_any(), &params)
                    .await
                    .map_err(StepError::kube(format!(
                        "read the log of pod {}/{} container {container}",
                        component.namespace,
                        pod.name_any()
                    )))?;
                scanned += 1;
                if let Some((line, signature)) =
                    log.lines().find_map(|l| matching(l).map(|s| (l, s)))
                {
                    hits.push(format!(
                        "pod {}/{} container {container}: {} failure: \"{}\"; {}",
                        component.namespace,
                        pod.name_any(),
                        signature.name,
                        quote(&redactor, line),
                        signature.remedy
                    ));
                }
            }
        }
        findings.push(format!(
            "ok: {}/{} Ready",
            component.namespace, component.name
        ));
    }
    for name in &missing {
        findings.push(format!("absent: {name} is not in this cluster"));
    }
    if hits.is_empty() {
        return Ok(Outcome {
            result: format!(
                "every vSphere component is Ready; no failure signature in {scanned} container log(s) over {} s since the restart; nothing was changed",
                window.as_secs()
            ),
            findings,
            ..Outcome::default()
        });
    }
    findings.extend(hits.iter().map(|h| format!("problem: {h}")));
    let outcome = Outcome {
        result: format!("{} failure(s) in the vSphere components", hits.len()),
        findings,
        ..Outcome::default()
    };
    report::record(context, report::Entry::Run, &outcome).await?;
    Err(StepError::Refused(format!(
        "{}; then retry this step (delete its Job)",
        hits.join("; ")
    )))
}
