//! The orchestrator's decisions, without any I/O: from a vmi, the pipeline
//! and the step Jobs that exist, the status to write, the one Job to create
//! (if any) and the events to publish.
//!
//! Everything is level-triggered (DESIGN §5). The Jobs are the truth about
//! what runs; `status.steps` is the record of what finished. A step whose
//! Job exists is never started again; a step whose Job is gone is re-run
//! (attempt + 1) only if its record says the Job was seen running or failed,
//! which is exactly the "delete the Job to retry" contract. A restart at any
//! moment therefore repeats nothing that has finished.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use vmi_api::migration::StepFailure;
use vmi_api::{
    MigrationState, Phase, Pipeline, StepDefinition, StepState, StepStatus, UndoStatus,
    VSphereMigrationInfra, VSphereMigrationInfraStatus,
};

use crate::conditions::{self, DEGRADED, PROGRESSING, READY, Wanted};
use crate::observed::{JobFailure, JobState, JobView};

/// Everything one decision reads.
pub struct Observed<'a> {
    /// The vmi, freshly read.
    pub vmi: &'a VSphereMigrationInfra,
    /// The pipeline it runs.
    pub pipeline: &'a Pipeline,
    /// Its step and rollback Jobs, by name.
    pub jobs: &'a BTreeMap<String, JobView>,
    /// Jobs that carry one of this vmi's Job names but belong to something
    /// else (another vmi in the namespace, or a person).
    pub foreign_jobs: &'a [String],
    /// Another vmi that holds the cluster, as `namespace/name (phase)`.
    pub blocked_by: Option<String>,
    /// The time to record.
    pub now: Time,
}

/// A Job to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRequest {
    /// Index of the step in the pipeline.
    pub step: usize,
    /// `true` for the step's undo (`vmi-rollback-NN-<step>`).
    pub undo: bool,
    /// The attempt the Job runs.
    pub attempt: i32,
    /// The Job's name.
    pub name: String,
    /// The event to publish once the Job is created.
    pub note: Note,
}

/// An event to publish about the vmi.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// `Warning` rather than `Normal`.
    pub warning: bool,
    /// CamelCase reason, e.g. `StepFailed`.
    pub reason: &'static str,
    /// What happened, naming the step and Job.
    pub message: String,
    /// What the event is about (a Job and attempt, or the migration at a
    /// step): events with the same reason and subject count as one series,
    /// so distinct happenings need distinct subjects.
    pub subject: String,
    /// The step the event is about, when it is about one.
    pub step: Option<String>,
}

impl Note {
    /// A note about attempt `attempt` of `job`, which runs step `step`.
    fn about_job(
        warning: bool,
        reason: &'static str,
        job: &str,
        attempt: i32,
        step: &str,
        message: String,
    ) -> Note {
        Note {
            warning,
            reason,
            message,
            subject: format!("{job}#{attempt}"),
            step: Some(step.to_owned()),
        }
    }
}

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The status to write (written only when it differs).
    pub status: VSphereMigrationInfraStatus,
    /// The Job to create, if any: at most one runs at a time.
    pub create: Option<JobRequest>,
    /// Events to publish once the status is written (the created Job's own
    /// event travels with its request).
    pub notes: Vec<Note>,
    /// Whether the vmi waits for another vmi (checked again later).
    pub blocked: bool,
}

/// How the current situation reads, before it becomes conditions.
struct Outcome {
    phase: Phase,
    current: Option<usize>,
    progressing: Wanted,
    degraded: Option<Wanted>,
}

/// Decides what to do for one vmi.
pub fn decide(observed: &Observed<'_>) -> Decision {
    let vmi = observed.vmi;
    let old = vmi.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let mut notes = Vec::new();
    let ns = vmi.metadata.namespace.as_deref().unwrap_or("default");
    let ctx = Context { ns, observed };

    sync_with_jobs(&ctx, &mut status.steps, &mut notes);

    let mut create = None;
    let mut blocked = false;
    let outcome = if matches!(old.phase, Some(Phase::Succeeded | Phase::RolledBack)) {
        finished(&ctx, &status, old.phase)
    } else if let (Some(holder), false) = (&observed.blocked_by, has_started(&status)) {
        blocked = true;
        Outcome {
            phase: Phase::Pending,
            current: None,
            progressing: Wanted::new(
                false,
                "AnotherMigrationActive",
                format!(
                    "vmi {holder} holds this cluster; only one migration may run at a time. \
                     This vmi starts when that one has Succeeded or RolledBack, or delete this vmi."
                ),
            ),
            degraded: None,
        }
    } else if let Some(foreign) = observed.foreign_jobs.first() {
        job_conflict(&ctx, &status, foreign)
    } else if vmi.spec.state == MigrationState::Rollback || rollback_started(&status) {
        rollback(&ctx, &mut status, &mut create)
    } else {
        forward(&ctx, &mut status, &mut create)
    };

    apply_outcome(&ctx, &old, &mut status, &outcome, &mut notes);
    Decision {
        status,
        create,
        notes,
        blocked,
    }
}

struct Context<'a> {
    ns: &'a str,
    observed: &'a Observed<'a>,
}

impl Context<'_> {
    fn pipeline(&self) -> &Pipeline {
        self.observed.pipeline
    }

    fn label(&self, index: usize) -> String {
        self.pipeline()
            .steps
            .get(index)
            .map(|s| self.pipeline().progress_label(s))
            .unwrap_or_default()
    }

    /// What status records about a failed Job, and when it failed.
    fn failure_record(
        &self,
        def: &StepDefinition,
        job: &JobView,
        failure: &JobFailure,
        reported: &Option<StepFailure>,
    ) -> (StepFailure, Option<Time>) {
        let reported = reported.as_ref().map(|f| f.cause.clone());
        let record = StepFailure {
            cause: failure_cause(def, failure, reported),
            last_log_lines: failure.log_tail.clone(),
            logs_command: self.logs_command(&job.name, failure),
        };
        let finished_at = failure
            .finished_at
            .clone()
            .or_else(|| Some(self.observed.now.clone()));
        (record, finished_at)
    }

    fn logs_command(&self, job: &str, failure: &JobFailure) -> String {
        match &failure.pod {
            Some(pod) => format!("oc logs -n {} {pod}", self.ns),
            None => format!("oc logs -n {} job/{job}", self.ns),
        }
    }
}

fn has_started(status: &VSphereMigrationInfraStatus) -> bool {
    !status.steps.is_empty()
}

fn rollback_started(status: &VSphereMigrationInfraStatus) -> bool {
    status.steps.iter().any(|s| s.undo.is_some())
}

fn entry_mut(steps: &mut [StepStatus], index: usize) -> Option<&mut StepStatus> {
    steps.iter_mut().find(|s| s.index as usize == index)
}

fn entry(steps: &[StepStatus], index: usize) -> Option<&StepStatus> {
    steps.iter().find(|s| s.index as usize == index)
}

/// Records in `steps` what the Jobs say: new attempts, completions,
/// failures, for both the steps and their undos.
fn sync_with_jobs(ctx: &Context<'_>, steps: &mut Vec<StepStatus>, notes: &mut Vec<Note>) {
    for def in &ctx.pipeline().steps {
        let index = def.index as usize;
        if let Some(job) = ctx.observed.jobs.get(&def.job_name()) {
            sync_step(ctx, def, steps, job, notes);
        }
        if let Some(job) = ctx.observed.jobs.get(&def.rollback_job_name())
            && let Some(entry) = entry_mut(steps, index)
        {
            sync_undo(ctx, def, entry, job, notes);
        }
    }
    steps.sort_by_key(|s| s.index);
}

fn sync_step(
    ctx: &Context<'_>,
    def: &StepDefinition,
    steps: &mut Vec<StepStatus>,
    job: &JobView,
    notes: &mut Vec<Note>,
) {
    let index = def.index as usize;
    let label = ctx.label(index);
    if entry(steps, index).is_none_or(|e| e.attempt < job.attempt) {
        // A Job we created but did not record yet (or a newer attempt):
        // adopt it. Undo history is kept.
        let undo = entry(steps, index).and_then(|e| e.undo.clone());
        let backups = entry(steps, index)
            .map(|e| e.backups.clone())
            .unwrap_or_default();
        steps.retain(|s| s.index as usize != index);
        let mut fresh = StepStatus::started(def.index as i32, &def.name, &job.name, job.attempt);
        fresh.started_at = job.created_at.clone();
        fresh.undo = undo;
        fresh.backups = backups;
        steps.push(fresh);
    }
    let Some(entry) = entry_mut(steps, index) else {
        return;
    };
    if entry.attempt > job.attempt || entry.undo.is_some() {
        return; // an older Job, or the step is being undone: its record stands
    }
    match &job.state {
        JobState::Active | JobState::Deleting => {}
        JobState::Succeeded { finished_at } => {
            if matches!(entry.state, StepState::Running | StepState::Failed) {
                entry.state = StepState::Succeeded;
                entry.failure = None;
                entry.finished_at = finished_at
                    .clone()
                    .or_else(|| Some(ctx.observed.now.clone()));
                let took = duration_text(entry.started_at.as_ref(), entry.finished_at.as_ref());
                notes.push(Note::about_job(
                    false,
                    "StepSucceeded",
                    &job.name,
                    entry.attempt,
                    &def.name,
                    format!(
                        "Step {label} succeeded{took}: {}",
                        entry.result.as_deref().unwrap_or("done")
                    ),
                ));
            } else if entry.state == StepState::Skipped && entry.finished_at.is_none() {
                entry.finished_at = finished_at
                    .clone()
                    .or_else(|| Some(ctx.observed.now.clone()));
                notes.push(Note::about_job(
                    false,
                    "StepSkipped",
                    &job.name,
                    entry.attempt,
                    &def.name,
                    format!(
                        "Step {label} skipped: {}",
                        entry
                            .result
                            .as_deref()
                            .map(|r| r.trim_start_matches("skipped: "))
                            .unwrap_or("not needed")
                    ),
                ));
            }
        }
        JobState::Failed(failure) => {
            if entry.state != StepState::Failed {
                let (record, finished_at) = ctx.failure_record(def, job, failure, &entry.failure);
                let cause = record.cause.clone();
                entry.state = StepState::Failed;
                entry.finished_at = finished_at;
                entry.failure = Some(record);
                notes.push(Note::about_job(
                    true,
                    "StepFailed",
                    &job.name,
                    entry.attempt,
                    &def.name,
                    format!("Step {label} failed: {cause}. Job {}", job.name),
                ));
            }
        }
    }
}

fn sync_undo(
    ctx: &Context<'_>,
    def: &StepDefinition,
    entry: &mut StepStatus,
    job: &JobView,
    notes: &mut Vec<Note>,
) {
    let label = ctx.label(def.index as usize);
    let undo = entry.undo.get_or_insert_with(|| UndoStatus {
        job_name: job.name.clone(),
        attempt: job.attempt,
        started_at: job.created_at.clone(),
        finished_at: None,
        result: None,
        failure: None,
    });
    if undo.attempt > job.attempt {
        return;
    }
    if undo.attempt < job.attempt {
        *undo = UndoStatus {
            job_name: job.name.clone(),
            attempt: job.attempt,
            started_at: job.created_at.clone(),
            finished_at: None,
            result: None,
            failure: None,
        };
        entry.state = StepState::RollingBack;
    }
    match &job.state {
        JobState::Active | JobState::Deleting => {
            if entry.state != StepState::RollbackFailed {
                entry.state = StepState::RollingBack;
            }
        }
        JobState::Succeeded { finished_at } => {
            if entry.state != StepState::RolledBack {
                entry.state = StepState::RolledBack;
                undo.failure = None;
                undo.finished_at = finished_at
                    .clone()
                    .or_else(|| Some(ctx.observed.now.clone()));
                notes.push(Note::about_job(
                    false,
                    "UndoSucceeded",
                    &job.name,
                    undo.attempt,
                    &def.name,
                    format!(
                        "Step {label} undone: {}",
                        undo.result.as_deref().unwrap_or("restored from its backup")
                    ),
                ));
            }
        }
        JobState::Failed(failure) => {
            if entry.state != StepState::RollbackFailed {
                let (record, finished_at) = ctx.failure_record(def, job, failure, &undo.failure);
                let cause = record.cause.clone();
                entry.state = StepState::RollbackFailed;
                undo.finished_at = finished_at;
                undo.failure = Some(record);
                notes.push(Note::about_job(
                    true,
                    "UndoFailed",
                    &job.name,
                    undo.attempt,
                    &def.name,
                    format!("Undo of step {label} failed: {cause}. Job {}", job.name),
                ));
            }
        }
    }
}

/// The one-line cause of a failed Job: what the step reported, else the
/// last line it logged, else what the Job controller says.
fn failure_cause(def: &StepDefinition, failure: &JobFailure, reported: Option<String>) -> String {
    if failure.reason == "DeadlineExceeded" {
        return format!(
            "the step ran longer than its timeout of {} s (the Job's activeDeadlineSeconds) and was stopped",
            def.timeout_seconds
        );
    }
    if let Some(cause) = reported.filter(|c| !c.trim().is_empty()) {
        return cause;
    }
    if let Some(last) = failure.log_tail.last() {
        return last.clone();
    }
    if failure.reason == "BackoffLimitExceeded" {
        return format!(
            "the step's pod failed {} time(s) and left no log",
            failure.failed_pods.max(1)
        );
    }
    if failure.message.is_empty() {
        "the Job failed without saying why".to_owned()
    } else {
        failure.message.clone()
    }
}

fn duration_text(start: Option<&Time>, end: Option<&Time>) -> String {
    match (start, end) {
        (Some(start), Some(end)) => {
            let seconds = end.0.as_second() - start.0.as_second();
            format!(" in {}", human_seconds(seconds.max(0)))
        }
        _ => String::new(),
    }
}

fn human_seconds(seconds: i64) -> String {
    if seconds < 60 {
        format!("{seconds}s")
    } else if seconds < 3600 {
        format!("{}m{:02}s", seconds / 60, seconds % 60)
    } else {
        format!("{}h{:02}m", seconds / 3600, (seconds % 3600) / 60)
    }
}

fn job_conflict(ctx: &Context<'_>, status: &VSphereMigrationInfraStatus, job: &str) -> Outcome {
    Outcome {
        phase: status.phase.unwrap_or(Phase::Pending),
        current: None,
        progressing: Wanted::new(false, "JobConflict", "waiting for the Job name to be free"),
        degraded: Some(Wanted::new(
            true,
            "JobConflict",
            format!(
                "Job {}/{job} exists but does not belong to this vmi: an earlier vmi in this \
                 namespace owns it (delete that vmi; its Jobs go with it), or it was created by \
                 hand. Nothing starts until the name is free: oc delete job -n {} {job}",
                ctx.ns, ctx.ns
            ),
        )),
    }
}

fn finished(
    ctx: &Context<'_>,
    status: &VSphereMigrationInfraStatus,
    phase: Option<Phase>,
) -> Outcome {
    let phase = phase.unwrap_or(Phase::Succeeded);
    let asked = ctx.observed.vmi.spec.state;
    let message = match (phase, asked) {
        (Phase::Succeeded, MigrationState::Rollback) => {
            "the migration succeeded; it cannot be rolled back past remove-source".to_owned()
        }
        (Phase::RolledBack, MigrationState::Running) => {
            "this migration was rolled back; to migrate again, delete it and create a new vmi"
                .to_owned()
        }
        _ => "finished".to_owned(),
    };
    Outcome {
        phase,
        current: status
            .current_step
            .as_ref()
            .and(ctx.pipeline().steps.len().checked_sub(1)),
        progressing: Wanted::new(false, phase_reason(phase), message),
        degraded: None,
    }
}

/// The forward run: the first step not yet done either runs, waits, or
/// starts.
fn forward(
    ctx: &Context<'_>,
    status: &mut VSphereMigrationInfraStatus,
    create: &mut Option<JobRequest>,
) -> Outcome {
    let vmi = ctx.observed.vmi;
    let state = vmi.spec.state;
    let pipeline = ctx.pipeline();
    let planning = pipeline.planning_steps();
    for def in &pipeline.steps {
        let index = def.index as usize;
        let label = ctx.label(index);
        let job = ctx.observed.jobs.get(&def.job_name());
        let recorded = entry(&status.steps, index).cloned();
        let job_busy =
            job.is_some_and(|j| matches!(j.state, JobState::Active | JobState::Deleting));
        let attempt = match &recorded {
            Some(e)
                if !job_busy && matches!(e.state, StepState::Succeeded | StepState::Skipped) =>
            {
                continue;
            }
            Some(e) if job_busy => {
                let paused = state == MigrationState::Paused;
                let deleting = job.is_some_and(|j| j.state == JobState::Deleting);
                let message = if deleting {
                    format!(
                        "step {label}: Job {} is being deleted; the step runs again once it is gone",
                        def.job_name()
                    )
                } else if paused {
                    format!(
                        "pause requested: step {label} finishes first (Job {}, attempt {})",
                        def.job_name(),
                        e.attempt
                    )
                } else {
                    format!(
                        "step {label} is running: Job {}, attempt {}",
                        def.job_name(),
                        e.attempt
                    )
                };
                return Outcome {
                    phase: Phase::Running,
                    current: Some(index),
                    progressing: Wanted::new(true, "StepRunning", message),
                    degraded: None,
                };
            }
            Some(e) if job.is_some() => {
                // The Job finished but the step is not done: it failed.
                let failure = e.failure.clone();
                return failed_outcome(ctx, def, e, failure.as_ref(), false);
            }
            Some(e) => e.attempt + 1, // the Job was deleted: re-run
            None => 1,
        };
        // The step has to start (attempt 1) or re-run (attempt > 1).
        let gate = if state == MigrationState::Paused {
            Some((
                "Paused",
                format!("paused before step {label}; set spec.state: Running to continue"),
            ))
        } else if state == MigrationState::Pending && index >= planning {
            Some((
                "Planned",
                format!(
                    "planned: the read-only checks are done; set spec.state: Running to start step {label}"
                ),
            ))
        } else if attempt == 1 && vmi.spec.pause_before.iter().any(|s| s.name() == def.name) {
            Some((
                "PauseBefore",
                format!(
                    "paused before step {label} as spec.pauseBefore asks; remove {} from spec.pauseBefore to continue",
                    def.name
                ),
            ))
        } else {
            None
        };
        if let Some((reason, message)) = gate {
            let phase = if reason == "Planned" {
                Phase::Pending
            } else {
                Phase::Paused
            };
            return Outcome {
                phase,
                current: Some(index),
                progressing: Wanted::new(false, reason, message),
                degraded: None,
            };
        }
        let name = def.job_name();
        *create = Some(JobRequest {
            step: index,
            undo: false,
            attempt,
            name: name.clone(),
            note: start_note(ctx, index, false, attempt, &name),
        });
        let mut fresh = StepStatus::started(def.index as i32, &def.name, &name, attempt);
        fresh.started_at = Some(ctx.observed.now.clone());
        if let Some(old) = &recorded {
            fresh.backups.clone_from(&old.backups);
        }
        status.steps.retain(|s| s.index as usize != index);
        status.steps.push(fresh);
        status.steps.sort_by_key(|s| s.index);
        return Outcome {
            phase: Phase::Running,
            current: Some(index),
            progressing: Wanted::new(
                true,
                "StepRunning",
                format!("step {label} is running: Job {name}, attempt {attempt}"),
            ),
            degraded: None,
        };
    }
    Outcome {
        phase: Phase::Succeeded,
        current: pipeline.steps.len().checked_sub(1),
        progressing: Wanted::new(
            false,
            "Succeeded",
            "every step succeeded; the Jobs stay for triage",
        ),
        degraded: None,
    }
}

fn failed_outcome(
    ctx: &Context<'_>,
    def: &StepDefinition,
    entry: &StepStatus,
    failure: Option<&StepFailure>,
    undo: bool,
) -> Outcome {
    let index = def.index as usize;
    let label = ctx.label(index);
    let job = if undo {
        def.rollback_job_name()
    } else {
        def.job_name()
    };
    let what = if undo { "the undo of step" } else { "step" };
    let cause = failure
        .map(|f| f.cause.as_str())
        .unwrap_or("the Job failed");
    let logs = failure
        .map(|f| f.logs_command.clone())
        .unwrap_or_else(|| format!("oc logs -n {} job/{job}", ctx.ns));
    let message = format!(
        "{what} {label} failed (attempt {}): {cause}. Read the log: {logs}. \
         Fix the cause, then retry by deleting the Job: oc delete job -n {} {job}",
        if undo {
            entry.undo.as_ref().map_or(1, |u| u.attempt)
        } else {
            entry.attempt
        },
        ctx.ns
    );
    Outcome {
        phase: Phase::Failed,
        current: Some(index),
        progressing: Wanted::new(false, "Failed", format!("stopped: {what} {label} failed")),
        degraded: Some(Wanted::new(
            true,
            if undo { "RollbackFailed" } else { "StepFailed" },
            message,
        )),
    }
}

/// The rollback: undo the reversible steps that ran, newest first, once
/// nothing else runs; refused once the point of no return has started.
fn rollback(
    ctx: &Context<'_>,
    status: &mut VSphereMigrationInfraStatus,
    create: &mut Option<JobRequest>,
) -> Outcome {
    let pipeline = ctx.pipeline();
    let state = ctx.observed.vmi.spec.state;
    // A step that still runs finishes first.
    for def in &pipeline.steps {
        let job = ctx.observed.jobs.get(&def.job_name());
        if job.is_some_and(|j| matches!(j.state, JobState::Active | JobState::Deleting)) {
            return Outcome {
                phase: Phase::RollingBack,
                current: Some(def.index as usize),
                progressing: Wanted::new(
                    true,
                    "WaitingForStep",
                    format!(
                        "rollback requested: step {} finishes first (Job {})",
                        ctx.label(def.index as usize),
                        def.job_name()
                    ),
                ),
                degraded: None,
            };
        }
    }
    if let Some(point) = pipeline.steps.iter().find(|s| s.point_of_no_return)
        && entry(&status.steps, point.index as usize).is_some()
    {
        let phase = status.phase.unwrap_or(Phase::Failed);
        return Outcome {
            phase: if phase == Phase::Running {
                Phase::Paused
            } else {
                phase
            },
            current: Some(point.index as usize),
            progressing: Wanted::new(false, "RollbackRefused", "rollback refused"),
            degraded: Some(Wanted::new(
                true,
                "RollbackRefused",
                format!(
                    "rollback refused: step {} has started, and it is the point of no return (the source vCenter is being removed from the cluster). \
                     Set spec.state: Running to finish the migration; retry a failed step by deleting its Job",
                    ctx.label(point.index as usize)
                ),
            )),
        };
    }
    let mut candidates: Vec<&StepDefinition> = pipeline
        .steps
        .iter()
        .filter(|def| {
            def.reversible
                && entry(&status.steps, def.index as usize)
                    .is_some_and(|e| e.state != StepState::Skipped)
        })
        .collect();
    candidates.reverse();
    for def in candidates {
        let index = def.index as usize;
        let label = ctx.label(index);
        let job = ctx.observed.jobs.get(&def.rollback_job_name());
        let Some(recorded) = entry(&status.steps, index).cloned() else {
            continue;
        };
        let job_busy =
            job.is_some_and(|j| matches!(j.state, JobState::Active | JobState::Deleting));
        let attempt = match (&recorded.state, &recorded.undo) {
            (StepState::RolledBack, _) if !job_busy => continue,
            (_, Some(undo)) if job_busy => {
                return Outcome {
                    phase: Phase::RollingBack,
                    current: Some(index),
                    progressing: Wanted::new(
                        true,
                        "UndoRunning",
                        format!(
                            "undoing step {label}: Job {}, attempt {}",
                            undo.job_name, undo.attempt
                        ),
                    ),
                    degraded: None,
                };
            }
            (StepState::RollbackFailed, Some(undo)) if job.is_some() => {
                let failure = undo.failure.clone();
                return failed_outcome(ctx, def, &recorded, failure.as_ref(), true);
            }
            (_, Some(undo)) => undo.attempt + 1,
            (_, None) => 1,
        };
        if state != MigrationState::Rollback {
            return Outcome {
                phase: Phase::Paused,
                current: Some(index),
                progressing: Wanted::new(
                    false,
                    "RollbackPaused",
                    format!(
                        "a rollback has started and cannot be resumed forward; set spec.state: Rollback to undo step {label} next"
                    ),
                ),
                degraded: None,
            };
        }
        let name = def.rollback_job_name();
        *create = Some(JobRequest {
            step: index,
            undo: true,
            attempt,
            name: name.clone(),
            note: start_note(ctx, index, true, attempt, &name),
        });
        if let Some(entry) = entry_mut(&mut status.steps, index) {
            entry.state = StepState::RollingBack;
            entry.undo = Some(UndoStatus {
                job_name: name.clone(),
                attempt,
                started_at: Some(ctx.observed.now.clone()),
                finished_at: None,
                result: None,
                failure: None,
            });
        }
        return Outcome {
            phase: Phase::RollingBack,
            current: Some(index),
            progressing: Wanted::new(
                true,
                "UndoRunning",
                format!("undoing step {label}: Job {name}, attempt {attempt}"),
            ),
            degraded: None,
        };
    }
    Outcome {
        phase: Phase::RolledBack,
        current: None,
        progressing: Wanted::new(
            false,
            "RolledBack",
            "every reversible step that ran was undone; delete this vmi and create a new one to migrate again",
        ),
        degraded: None,
    }
}

fn phase_reason(phase: Phase) -> &'static str {
    match phase {
        Phase::Pending => "Pending",
        Phase::Running => "Running",
        Phase::Paused => "Paused",
        Phase::Succeeded => "Succeeded",
        Phase::Failed => "Failed",
        Phase::RollingBack => "RollingBack",
        Phase::RolledBack => "RolledBack",
    }
}

/// Writes phase, current step and conditions, and the notes for phase
/// changes.
fn apply_outcome(
    ctx: &Context<'_>,
    old: &VSphereMigrationInfraStatus,
    status: &mut VSphereMigrationInfraStatus,
    outcome: &Outcome,
    notes: &mut Vec<Note>,
) {
    let generation = ctx.observed.vmi.metadata.generation;
    let now = &ctx.observed.now;
    status.phase = Some(outcome.phase);
    status.observed_generation = generation;
    if let Some(index) = outcome.current {
        status.current_step = Some(ctx.label(index));
    }
    let ready = match outcome.phase {
        Phase::Succeeded => Wanted::new(true, "Succeeded", "the migration succeeded"),
        Phase::RolledBack => Wanted::new(true, "RolledBack", "the migration was rolled back"),
        phase => Wanted::new(
            false,
            phase_reason(phase),
            outcome.progressing.message.clone(),
        ),
    };
    let degraded = outcome
        .degraded
        .clone()
        .unwrap_or_else(|| Wanted::new(false, "AsExpected", ""));
    let was_degraded = conditions::is_true(&old.conditions, DEGRADED);
    let old_reason = conditions::reason(&old.conditions, DEGRADED).map(str::to_owned);
    conditions::set(&mut status.conditions, READY, &ready, generation, now);
    conditions::set(
        &mut status.conditions,
        PROGRESSING,
        &outcome.progressing,
        generation,
        now,
    );
    conditions::set(&mut status.conditions, DEGRADED, &degraded, generation, now);

    if degraded.status
        && (!was_degraded || old_reason.as_deref() != Some(degraded.reason.as_str()))
        && matches!(degraded.reason.as_str(), "RollbackRefused" | "JobConflict")
    {
        notes.push(Note {
            warning: true,
            reason: if degraded.reason == "JobConflict" {
                "JobConflict"
            } else {
                "RollbackRefused"
            },
            message: degraded.message.clone(),
            subject: status.current_step.clone().unwrap_or_default(),
            step: None,
        });
    }
    if old.phase != Some(outcome.phase) {
        let reason = match outcome.phase {
            Phase::Pending if outcome.progressing.reason == "AnotherMigrationActive" => {
                Some(("Blocked", true))
            }
            Phase::Pending if outcome.progressing.reason == "Planned" => Some(("Planned", false)),
            Phase::Paused => Some(("Paused", false)),
            Phase::Succeeded => Some(("MigrationSucceeded", false)),
            Phase::RollingBack => Some(("RollbackStarted", false)),
            Phase::RolledBack => Some(("RolledBack", false)),
            Phase::Running if old.phase == Some(Phase::Paused) => Some(("Resumed", false)),
            _ => None,
        };
        if let Some((reason, warning)) = reason {
            notes.push(Note {
                warning,
                reason,
                message: outcome.progressing.message.clone(),
                subject: format!(
                    "{reason} {}",
                    status.current_step.as_deref().unwrap_or_default()
                ),
                step: None,
            });
        }
    }
}

fn start_note(ctx: &Context<'_>, step: usize, undo: bool, attempt: i32, job: &str) -> Note {
    let label = ctx.label(step);
    let (reason, what) = match (undo, attempt) {
        (false, 1) => ("StepStarted", "Started step"),
        (false, _) => ("StepRetried", "Re-running step"),
        (true, 1) => ("UndoStarted", "Undoing step"),
        (true, _) => ("UndoRetried", "Re-running the undo of step"),
    };
    Note {
        warning: false,
        reason,
        message: format!("{what} {label} (attempt {attempt}): Job {job}"),
        subject: format!("{job}#{attempt}"),
        step: ctx.pipeline().steps.get(step).map(|s| s.name.clone()),
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
