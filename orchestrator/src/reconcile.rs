//! One reconcile of one vmi: read it and its Jobs fresh from the API server,
//! [`decide`], create the Job it asks for, write the status (guarded by the
//! resourceVersion read), then publish the events.
//!
//! Reads are fresh rather than from the watch cache so that a decision never
//! rests on a stale view; Job names are deterministic, so even two replicas
//! acting at once could not start a step twice (the second create is refused
//! with AlreadyExists).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{debug, info, warn};
use vmi_api::{Phase, Pipeline, StepState, VSphereMigrationInfra, labels};

use crate::decide::{Decision, Note, Observed, decide};
use crate::job::{self, JobTemplate};
use crate::metrics::Metrics;
use crate::observed::{JobState, JobView};

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// The pipeline the vmis run.
    pub pipeline: Pipeline,
    /// How step Jobs run.
    pub template: JobTemplate,
    /// Publishes events on the vmis.
    pub recorder: Recorder,
    /// Every vmi in scope (the controller's cache), for the one-migration rule.
    pub store: Store<VSphereMigrationInfra>,
    /// The Prometheus metrics.
    pub metrics: Metrics,
}

/// Why a reconcile did not finish; it is retried.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// An API call failed.
    #[error("vmi {vmi}: {action}: {}", crate::kube_text::kube_error(.source))]
    Kube {
        /// `namespace/name` of the vmi.
        vmi: String,
        /// What was being done.
        action: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The vmi cannot own Jobs yet.
    #[error(transparent)]
    NotOwnable(#[from] job::NotOwnable),
    /// The vmi kept changing under the orchestrator.
    #[error("vmi {0}: its status kept changing while being written (5 conflicts); retrying")]
    Conflicts(String),
}

/// How long a vmi waiting for another one waits before checking again.
const BLOCKED_RECHECK: Duration = Duration::from_secs(10);

/// Reconciles one vmi (see the module documentation).
pub async fn reconcile(
    object: Arc<VSphereMigrationInfra>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let name = object.name_any();
    let namespace = object.namespace().unwrap_or_default();
    let key = format!("{namespace}/{name}");
    let api: Api<VSphereMigrationInfra> = Api::namespaced(ctx.client.clone(), &namespace);
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let kube_err = |action: &str| {
        let vmi = key.clone();
        let action = action.to_owned();
        move |source| ReconcileError::Kube {
            vmi,
            action,
            source,
        }
    };
    for _ in 0..5 {
        let Some(vmi) = api.get_opt(&name).await.map_err(kube_err("read the vmi"))? else {
            ctx.metrics.forget(&key);
            return Ok(Action::await_change());
        };
        if vmi.metadata.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        let (jobs, foreign) = read_jobs(&ctx, &vmi, &jobs_api, &namespace)
            .await
            .map_err(kube_err("list its Jobs"))?;
        let decision = decide(&Observed {
            vmi: &vmi,
            pipeline: &ctx.pipeline,
            jobs: &jobs,
            foreign_jobs: &foreign,
            blocked_by: holder_other_than(&ctx.store, &vmi),
            now: Time(k8s_openapi::jiff::Timestamp::now()),
        });
        let Decision {
            status,
            create,
            notes,
            blocked,
        } = decision;
        if let Some(request) = &create {
            let step = &ctx.pipeline.steps[request.step];
            let job = job::build(&vmi, step, request.undo, request.attempt, &ctx.template)?;
            match jobs_api.create(&PostParams::default(), &job).await {
                Ok(_) => {
                    info!(vmi = %key, job = %request.name, attempt = request.attempt, "created Job");
                    ctx.metrics
                        .job_created(&step.name, request.undo, request.attempt);
                    publish(&ctx, &vmi, std::slice::from_ref(&request.note)).await;
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    debug!(vmi = %key, job = %request.name, "Job exists already; reading again");
                    continue;
                }
                Err(source) => {
                    return Err(ReconcileError::Kube {
                        vmi: key,
                        action: format!("create Job {}", request.name),
                        source,
                    });
                }
            }
        }
        if vmi.status.as_ref() != Some(&status) {
            let mut updated = vmi.clone();
            updated.status = Some(status.clone());
            match api
                .replace_status(&name, &PostParams::default(), &updated)
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    debug!(vmi = %key, "status changed while writing it; reading again");
                    continue;
                }
                Err(source) => {
                    return Err(ReconcileError::Kube {
                        vmi: key,
                        action: "write its status".to_owned(),
                        source,
                    });
                }
            }
        }
        publish(&ctx, &vmi, &notes).await;
        ctx.metrics.observe(&key, &ctx.pipeline, &status, &notes);
        return Ok(if blocked {
            Action::requeue(BLOCKED_RECHECK)
        } else {
            Action::await_change()
        });
    }
    Err(ReconcileError::Conflicts(key))
}

/// The vmi's step Jobs by name, and the names of Jobs that carry one of its
/// Job names but belong to something else.
async fn read_jobs(
    ctx: &Context,
    vmi: &VSphereMigrationInfra,
    jobs_api: &Api<Job>,
    namespace: &str,
) -> Result<(BTreeMap<String, JobView>, Vec<String>), kube::Error> {
    let uid = vmi.metadata.uid.clone().unwrap_or_default();
    let names: Vec<String> = ctx
        .pipeline
        .steps
        .iter()
        .flat_map(|s| [s.job_name(), s.rollback_job_name()])
        .collect();
    let listed = jobs_api
        .list(&ListParams::default().labels(&format!(
            "{}={}",
            labels::MANAGED_BY,
            labels::MANAGED_BY_VALUE
        )))
        .await?;
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let mut ours = BTreeMap::new();
    let mut foreign = Vec::new();
    for job in listed.items {
        let job_name = job.name_any();
        if !names.contains(&job_name) {
            continue;
        }
        let owned = job
            .owner_references()
            .iter()
            .any(|o| o.uid == uid && o.controller == Some(true));
        if !owned {
            foreign.push(job_name);
            continue;
        }
        let mut view = JobView::from_job(&job, &[]);
        if matches!(view.state, JobState::Failed(_)) && !failure_recorded(vmi, &view) {
            let pods = pods_api
                .list(
                    &ListParams::default()
                        .labels(&format!("batch.kubernetes.io/job-name={job_name}")),
                )
                .await?;
            let job_uid = job.metadata.uid.clone();
            let own_pods: Vec<Pod> = pods
                .items
                .into_iter()
                .filter(|p| {
                    p.owner_references()
                        .iter()
                        .any(|o| Some(&o.uid) == job_uid.as_ref())
                })
                .collect();
            view = JobView::from_job(&job, &own_pods);
        }
        ours.insert(job_name, view);
    }
    Ok((ours, foreign))
}

/// Whether the status already records the failure of this Job's attempt, so
/// its pods need not be read again.
fn failure_recorded(vmi: &VSphereMigrationInfra, job: &JobView) -> bool {
    let steps = vmi
        .status
        .as_ref()
        .map(|s| s.steps.as_slice())
        .unwrap_or_default();
    steps.iter().any(|entry| {
        let step = entry.job_name == job.name
            && entry.attempt == job.attempt
            && entry.state == StepState::Failed;
        let undo = entry.state == StepState::RollbackFailed
            && entry
                .undo
                .as_ref()
                .is_some_and(|u| u.job_name == job.name && u.attempt == job.attempt);
        step || undo
    })
}

/// The vmi that holds the cluster when it is not `vmi`, described as
/// `namespace/name (phase X)`.
///
/// One migration at a time: among the vmis not finished (Succeeded or
/// RolledBack) and not being deleted, one that has started wins over one
/// that has not, then the oldest, then by namespace and name.
pub fn holder_other_than(
    store: &Store<VSphereMigrationInfra>,
    vmi: &VSphereMigrationInfra,
) -> Option<String> {
    let me = (vmi.namespace(), vmi.name_any());
    let mut candidates: Vec<Arc<VSphereMigrationInfra>> = store
        .state()
        .into_iter()
        .filter(|v| (v.namespace(), v.name_any()) != me)
        .collect();
    candidates.push(Arc::new(vmi.clone()));
    candidates.retain(|v| {
        v.metadata.deletion_timestamp.is_none()
            && !matches!(
                v.status.as_ref().and_then(|s| s.phase),
                Some(Phase::Succeeded | Phase::RolledBack)
            )
    });
    let holder = candidates.iter().min_by_key(|v| {
        let started = v.status.as_ref().is_some_and(|s| !s.steps.is_empty());
        (
            !started,
            v.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second()),
            v.namespace(),
            v.name_any(),
        )
    })?;
    if (holder.namespace(), holder.name_any()) == me {
        return None;
    }
    let phase = holder
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .map_or_else(|| "new".to_owned(), |p| format!("{p:?}"));
    Some(format!(
        "{}/{} (phase {phase})",
        holder.namespace().unwrap_or_default(),
        holder.name_any()
    ))
}

/// Events carry at most 1 kB of note.
const NOTE_LIMIT: usize = 1000;

async fn publish(ctx: &Context, vmi: &VSphereMigrationInfra, notes: &[Note]) {
    let reference = vmi.object_ref(&());
    for note in notes {
        let mut message = note.message.clone();
        if message.len() > NOTE_LIMIT {
            let mut cut = NOTE_LIMIT;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        if note.warning {
            warn!(vmi = %vmi.name_any(), reason = note.reason, "{message}");
        } else {
            info!(vmi = %vmi.name_any(), reason = note.reason, "{message}");
        }
        let event = Event {
            type_: if note.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: note.reason.to_owned(),
            note: Some(message),
            action: if note.subject.is_empty() {
                "Migration".to_owned()
            } else {
                note.subject.chars().take(128).collect()
            },
            secondary: None,
        };
        if let Err(err) = ctx.recorder.publish(&event, &reference).await {
            warn!(vmi = %vmi.name_any(), reason = note.reason, error = %crate::kube_text::kube_error(&err), "cannot publish event");
        }
    }
}
