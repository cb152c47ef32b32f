//! What the orchestrator knows about one step Job, reduced to what decisions
//! need: which attempt it is and whether it runs, succeeded or failed (and
//! why).
//!
//! Built from the Job and, for a failed Job, from its pods' termination
//! messages (the Job's pods use `FallbackToLogsOnError`, so the kubelet puts
//! the tail of the log there). Keeping this apart from the API types lets the
//! decisions be tested without a cluster.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use vmi_api::labels;

/// One step Job as the decisions see it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobView {
    /// The Job's name.
    pub name: String,
    /// The attempt it runs (its attempt annotation; 1 when missing).
    pub attempt: i32,
    /// When the Job was created.
    pub created_at: Option<Time>,
    /// Where the Job is.
    pub state: JobState,
}

/// Where a Job is.
#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    /// Pods are running or about to.
    Active,
    /// The Job is being deleted; its name is not free yet.
    Deleting,
    /// The Job completed.
    Succeeded {
        /// When it completed.
        finished_at: Option<Time>,
    },
    /// The Job failed.
    Failed(JobFailure),
}

/// Why a Job failed, from its `Failed` condition and its last failed pod.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobFailure {
    /// When it failed.
    pub finished_at: Option<Time>,
    /// The `Failed` condition's reason, e.g. `BackoffLimitExceeded` or
    /// `DeadlineExceeded`.
    pub reason: String,
    /// The `Failed` condition's message.
    pub message: String,
    /// The last failed pod, when one is left.
    pub pod: Option<String>,
    /// The tail of that pod's log (its termination message), oldest first.
    pub log_tail: Vec<String>,
    /// Pods of the Job that failed (the Job's `status.failed`).
    pub failed_pods: i32,
}

/// How many log lines a failure keeps in status.
pub const LOG_TAIL_LINES: usize = 10;

impl JobView {
    /// Reads `job` (and, when it failed, its `pods`).
    pub fn from_job(job: &Job, pods: &[Pod]) -> JobView {
        let name = job.metadata.name.clone().unwrap_or_default();
        let attempt = job
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(labels::ATTEMPT))
            .and_then(|a| a.parse().ok())
            .unwrap_or(1);
        let status = job.status.as_ref();
        let condition = |kind: &str| {
            status
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == kind && c.status == "True"))
        };
        let state = if job.metadata.deletion_timestamp.is_some() {
            JobState::Deleting
        } else if condition("Complete").is_some() {
            JobState::Succeeded {
                finished_at: status.and_then(|s| s.completion_time.clone()),
            }
        } else if let Some(failed) = condition("Failed") {
            let (pod, log_tail) = last_failed_pod(pods);
            JobState::Failed(JobFailure {
                finished_at: failed.last_transition_time.clone(),
                reason: failed.reason.clone().unwrap_or_default(),
                message: failed.message.clone().unwrap_or_default(),
                pod,
                log_tail,
                failed_pods: status.and_then(|s| s.failed).unwrap_or(0),
            })
        } else {
            JobState::Active
        };
        JobView {
            name,
            attempt,
            created_at: job.metadata.creation_timestamp.clone(),
            state,
        }
    }
}

/// The newest failed pod and the last lines of its termination message.
fn last_failed_pod(pods: &[Pod]) -> (Option<String>, Vec<String>) {
    let failed = pods
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"))
        .max_by_key(|p| {
            p.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_millisecond())
        });
    let Some(pod) = failed else {
        return (None, Vec::new());
    };
    let message = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .and_then(|t| t.message.clone())
        .unwrap_or_default();
    let lines: Vec<String> = message
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].to_vec();
    (pod.metadata.name.clone(), tail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(status: serde_json::Value, annotations: serde_json::Value) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "vmi-step-03-backup-cpms", "annotations": annotations},
            "status": status,
        }))
        .unwrap()
    }

    fn pod(name: &str, created: &str, phase: &str, message: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "status": {"phase": phase, "containerStatuses": [{
                "name": "step", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "message": message}}
            }]}
        }))
        .unwrap()
    }

    #[test]
    fn a_failed_job_carries_the_newest_failed_pods_log_tail() {
        let failed = job(
            json!({"failed": 2, "conditions": [
                {"type": "FailureTarget", "status": "True"},
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit",
                 "lastTransitionTime": "2026-11-21T10:00:00Z"}]}),
            json!({"vmi.config.openshift.io/attempt": "2"}),
        );
        let log: String = (1..=15).map(|i| format!("line {i}\n")).collect();
        let pods = [
            pod("p-old", "2026-11-21T09:00:00Z", "Failed", "old\n"),
            pod("p-new", "2026-11-21T09:30:00Z", "Failed", &log),
        ];
        let view = JobView::from_job(&failed, &pods);
        assert_eq!(view.attempt, 2);
        let JobState::Failed(failure) = view.state else {
            panic!("expected failed, got {:?}", view.state)
        };
        assert_eq!(failure.reason, "BackoffLimitExceeded");
        assert_eq!(failure.pod.as_deref(), Some("p-new"));
        assert_eq!(failure.failed_pods, 2);
        assert_eq!(failure.log_tail.len(), LOG_TAIL_LINES);
        assert_eq!(failure.log_tail.last().unwrap(), "line 15");
        assert_eq!(failure.log_tail[0], "line 6");
    }

    #[test]
    fn job_states_are_read_from_true_conditions_only() {
        let running = job(
            json!({"active": 1, "conditions": [{"type": "Failed", "status": "False"}]}),
            json!({}),
        );
        let view = JobView::from_job(&running, &[]);
        assert_eq!(view.state, JobState::Active);
        assert_eq!(view.attempt, 1, "no annotation means the first attempt");
        let done = job(
            json!({"completionTime": "2026-11-21T10:00:00Z", "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True"},
                {"type": "Complete", "status": "True"}]}),
            json!({}),
        );
        assert!(matches!(
            JobView::from_job(&done, &[]).state,
            JobState::Succeeded {
                finished_at: Some(_)
            }
        ));
    }
}
