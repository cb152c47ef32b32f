//! The decisions, one situation at a time, without a cluster.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use vmi_api::migration::StepFailure;
use vmi_api::{MigrationState, Phase, Pipeline, Step, StepState, VSphereMigrationInfra};

use super::*;
use crate::conditions::{self, DEGRADED};
use crate::observed::{JobFailure, JobState, JobView};

const PIPELINE: &str = "name: test\ndescription: four steps and a point of no return\nsteps:
  - {index: 0, name: preflight, description: checks, timeoutSeconds: 60, retries: 0, reversible: false, readOnly: true}
  - {index: 1, name: disable-cvo, description: one, timeoutSeconds: 60, retries: 1, reversible: true}
  - {index: 2, name: allow-multi-vcenter, description: two, timeoutSeconds: 60, retries: 1, reversible: true}
  - {index: 3, name: backup-cpms, description: three, timeoutSeconds: 30, retries: 1, reversible: false}
  - {index: 4, name: update-secrets, description: four, timeoutSeconds: 60, retries: 1, reversible: true}
  - {index: 5, name: remove-source, description: final, timeoutSeconds: 60, retries: 0, reversible: false, pointOfNoReturn: true}
";

fn pipeline() -> Pipeline {
    Pipeline::from_yaml(PIPELINE, "test").unwrap()
}

fn at(second: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + second).unwrap())
}

fn vmi(state: MigrationState) -> VSphereMigrationInfra {
    let mut vmi: VSphereMigrationInfra = serde_json::from_value(serde_json::json!({
        "apiVersion": "config.openshift.io/v1alpha1",
        "kind": "VSphereMigrationInfra",
        "metadata": {"name": "move", "namespace": "ns", "uid": "u-1", "generation": 3},
        "spec": {"vcenters": [], "failureDomains": [], "credentialsSecret": {"name": "c"}}
    }))
    .unwrap();
    vmi.spec.state = state;
    vmi
}

/// A small world: a vmi, its Jobs, and the decisions taken on it.
struct World {
    vmi: VSphereMigrationInfra,
    pipeline: Pipeline,
    jobs: BTreeMap<String, JobView>,
    foreign: Vec<String>,
    blocked_by: Option<String>,
    clock: i64,
}

impl World {
    fn new(state: MigrationState) -> World {
        World {
            vmi: vmi(state),
            pipeline: pipeline(),
            jobs: BTreeMap::new(),
            foreign: Vec::new(),
            blocked_by: None,
            clock: 0,
        }
    }

    /// Decides, "creates" the Job it asks for and writes the status.
    fn step(&mut self) -> Decision {
        self.clock += 1;
        let decision = decide(&Observed {
            vmi: &self.vmi,
            pipeline: &self.pipeline,
            jobs: &self.jobs,
            foreign_jobs: &self.foreign,
            blocked_by: self.blocked_by.clone(),
            now: at(self.clock),
        });
        if let Some(request) = &decision.create {
            assert!(
                !self.jobs.contains_key(&request.name),
                "asked to create {} which exists",
                request.name
            );
            self.jobs.insert(
                request.name.clone(),
                JobView {
                    name: request.name.clone(),
                    attempt: request.attempt,
                    created_at: Some(at(self.clock)),
                    state: JobState::Active,
                },
            );
        }
        self.vmi.status = Some(decision.status.clone());
        decision
    }

    fn finish(&mut self, job: &str) {
        self.jobs.get_mut(job).unwrap().state = JobState::Succeeded {
            finished_at: Some(at(self.clock + 5)),
        };
    }

    fn fail(&mut self, job: &str, reason: &str, log: &[&str]) {
        self.jobs.get_mut(job).unwrap().state = JobState::Failed(JobFailure {
            finished_at: Some(at(self.clock + 5)),
            reason: reason.into(),
            message: "Job has reached the specified backoff limit".into(),
            pod: Some(format!("{job}-abcde")),
            log_tail: log.iter().map(|l| (*l).to_owned()).collect(),
            failed_pods: 2,
        });
    }

    fn status(&self) -> &vmi_api::VSphereMigrationInfraStatus {
        self.vmi.status.as_ref().unwrap()
    }

    fn entry(&self, index: i32) -> &vmi_api::StepStatus {
        self.status()
            .steps
            .iter()
            .find(|s| s.index == index)
            .unwrap()
    }

    /// Runs every Job to success until nothing new starts.
    fn run_to_end(&mut self) -> Vec<String> {
        let mut started = Vec::new();
        for _ in 0..50 {
            let decision = self.step();
            match decision.create {
                Some(request) => {
                    started.push(request.name.clone());
                    self.finish(&request.name);
                }
                None => break,
            }
        }
        started
    }
}

fn created(decision: &Decision) -> Option<(&str, i32)> {
    decision
        .create
        .as_ref()
        .map(|r| (r.name.as_str(), r.attempt))
}

/// The reasons of every event the decision publishes, the created Job's last.
fn reasons(decision: &Decision) -> Vec<&str> {
    decision
        .notes
        .iter()
        .chain(decision.create.as_ref().map(|r| &r.note))
        .map(|n| n.reason)
        .collect()
}

#[test]
fn steps_run_in_order_one_job_at_a_time() {
    let mut world = World::new(MigrationState::Running);
    let first = world.step();
    assert_eq!(created(&first), Some(("vmi-step-00-preflight", 1)));
    assert_eq!(reasons(&first), ["StepStarted"]);
    assert_eq!(world.status().phase, Some(Phase::Running));
    assert_eq!(
        world.status().current_step.as_deref(),
        Some("0/6 preflight")
    );
    assert_eq!(world.entry(0).state, StepState::Running);
    // Nothing new while the Job runs.
    assert_eq!(created(&world.step()), None);
    world.finish("vmi-step-00-preflight");
    let next = world.step();
    assert_eq!(created(&next), Some(("vmi-step-01-disable-cvo", 1)));
    assert_eq!(reasons(&next), ["StepSucceeded", "StepStarted"]);
    assert_eq!(world.entry(0).state, StepState::Succeeded);
    assert_eq!(world.entry(0).finished_at, Some(at(7)));
    world.finish("vmi-step-01-disable-cvo");
    let rest = world.run_to_end();
    assert_eq!(
        rest,
        [
            "vmi-step-02-allow-multi-vcenter",
            "vmi-step-03-backup-cpms",
            "vmi-step-04-update-secrets",
            "vmi-step-05-remove-source"
        ]
    );
    let status = world.status();
    assert_eq!(status.phase, Some(Phase::Succeeded));
    assert!(conditions::is_true(&status.conditions, READY));
    assert!(!conditions::is_true(&status.conditions, PROGRESSING));
    assert_eq!(status.observed_generation, Some(3));
    assert!(
        status
            .steps
            .iter()
            .all(|s| s.state == StepState::Succeeded && s.attempt == 1)
    );
}

#[test]
fn a_failed_job_stops_everything_and_says_where_to_look() {
    let mut world = World::new(MigrationState::Running);
    world.step();
    world.finish("vmi-step-00-preflight");
    world.step();
    world.fail(
        "vmi-step-01-disable-cvo",
        "BackoffLimitExceeded",
        &["connecting", "error: cluster-version-operator not found"],
    );
    let decision = world.step();
    assert_eq!(created(&decision), None);
    assert_eq!(reasons(&decision), ["StepFailed"]);
    assert!(decision.notes[0].warning);
    let status = world.status();
    assert_eq!(status.phase, Some(Phase::Failed));
    let entry = world.entry(1);
    assert_eq!(entry.state, StepState::Failed);
    let failure = entry.failure.as_ref().unwrap();
    assert_eq!(failure.cause, "error: cluster-version-operator not found");
    assert_eq!(
        failure.logs_command,
        "oc logs -n ns vmi-step-01-disable-cvo-abcde"
    );
    let degraded = status
        .conditions
        .iter()
        .find(|c| c.type_ == DEGRADED)
        .unwrap();
    assert_eq!(degraded.status, "True");
    assert_eq!(degraded.reason, "StepFailed");
    assert!(
        degraded
            .message
            .contains("oc delete job -n ns vmi-step-01-disable-cvo"),
        "{}",
        degraded.message
    );
    assert!(
        degraded.message.contains("oc logs -n ns"),
        "{}",
        degraded.message
    );
    // Stays failed, no repeated event.
    let again = world.step();
    assert_eq!((created(&again), reasons(&again).len()), (None, 0));
}

#[test]
fn the_cause_the_step_reported_wins_over_its_last_log_line() {
    let mut world = World::new(MigrationState::Running);
    world.step();
    world.fail("vmi-step-00-preflight", "BackoffLimitExceeded", &["exit 1"]);
    world.vmi.status.as_mut().unwrap().steps[0].failure = Some(StepFailure {
        cause: "target datastore /dc2/datastore/ds9 not found".into(),
        last_log_lines: vec![],
        logs_command: String::new(),
    });
    world.step();
    assert_eq!(
        world.entry(0).failure.as_ref().unwrap().cause,
        "target datastore /dc2/datastore/ds9 not found"
    );
}

#[test]
fn a_timeout_says_it_was_one() {
    let mut world = World::new(MigrationState::Running);
    world.step();
    world.finish("vmi-step-00-preflight");
    world.step();
    world.fail("vmi-step-01-disable-cvo", "DeadlineExceeded", &[]);
    world.step();
    let cause = &world.entry(1).failure.as_ref().unwrap().cause;
    assert!(cause.contains("timeout of 60 s"), "{cause}");
}

#[test]
fn deleting_the_failed_job_reruns_the_step_with_the_next_attempt() {
    let mut world = World::new(MigrationState::Running);
    world.step();
    world.fail("vmi-step-00-preflight", "BackoffLimitExceeded", &["boom"]);
    world.step();
    // The Job is being deleted: wait for its name.
    world.jobs.get_mut("vmi-step-00-preflight").unwrap().state = JobState::Deleting;
    assert_eq!(created(&world.step()), None);
    world.jobs.remove("vmi-step-00-preflight");
    let retry = world.step();
    assert_eq!(created(&retry), Some(("vmi-step-00-preflight", 2)));
    assert_eq!(reasons(&retry), ["StepRetried"]);
    assert_eq!(world.status().phase, Some(Phase::Running));
    assert_eq!(world.entry(0).attempt, 2);
    assert_eq!(world.entry(0).failure, None);
    assert!(!conditions::is_true(&world.status().conditions, DEGRADED));
}

#[test]
fn a_restart_adopts_jobs_it_did_not_record_and_never_repeats_them() {
    let mut world = World::new(MigrationState::Running);
    // A Job exists (created before a crash), the status knows nothing.
    world.jobs.insert(
        "vmi-step-00-preflight".into(),
        JobView {
            name: "vmi-step-00-preflight".into(),
            attempt: 1,
            created_at: Some(at(0)),
            state: JobState::Active,
        },
    );
    assert_eq!(created(&world.step()), None);
    assert_eq!(world.entry(0).state, StepState::Running);
    assert_eq!(world.entry(0).started_at, Some(at(0)));
    // A newer attempt than recorded is adopted as well.
    world.jobs.get_mut("vmi-step-00-preflight").unwrap().attempt = 3;
    world.finish("vmi-step-00-preflight");
    let decision = world.step();
    assert_eq!(world.entry(0).attempt, 3);
    assert_eq!(world.entry(0).state, StepState::Succeeded);
    assert_eq!(created(&decision), Some(("vmi-step-01-disable-cvo", 1)));
}

#[test]
fn a_deleted_job_of_a_succeeded_step_is_not_rerun() {
    let mut world = World::new(MigrationState::Running);
    world.step();
    world.finish("vmi-step-00-preflight");
    world.step();
    world.jobs.remove("vmi-step-00-preflight");
    assert_eq!(created(&world.step()), None);
    assert_eq!(world.entry(0).attempt, 1);
}

#[test]
fn pending_runs_only_the_read_only_plan() {
    let mut world = World::new(MigrationState::Pending);
    assert_eq!(created(&world.step()), Some(("vmi-step-00-preflight", 1)));
    world.finish("vmi-step-00-preflight");
    let planned = world.step();
    assert_eq!(created(&planned), None);
    assert_eq!(world.status().phase, Some(Phase::Pending));
    assert!(reasons(&planned).contains(&"Planned"));
    world.vmi.spec.state = MigrationState::Running;
    assert_eq!(created(&world.step()), Some(("vmi-step-01-disable-cvo", 1)));
}

#[test]
fn pause_lets_the_running_step_finish_and_starts_nothing_new() {
    let mut world = World::new(MigrationState::Running);
    world.step();
    world.vmi.spec.state = MigrationState::Paused;
    assert_eq!(created(&world.step()), None);
    assert_eq!(
        world.status().phase,
        Some(Phase::Running),
        "the Job still runs"
    );
    world.finish("vmi-step-00-preflight");
    let paused = world.step();
    assert_eq!(created(&paused), None);
    assert_eq!(world.status().phase, Some(Phase::Paused));
    assert!(reasons(&paused).contains(&"Paused"));
    world.vmi.spec.state = MigrationState::Running;
    let resumed = world.step();
    assert_eq!(created(&resumed), Some(("vmi-step-01-disable-cvo", 1)));
    assert!(reasons(&resumed).contains(&"Resumed"));
}

#[test]
fn pause_before_gates_a_step_until_it_is_removed_but_not_its_retries() {
    let mut world = World::new(MigrationState::Running);
    world.vmi.spec.pause_before = vec![Step::DisableCvo];
    world.step();
    world.finish("vmi-step-00-preflight");
    let gated = world.step();
    assert_eq!(created(&gated), None);
    assert_eq!(world.status().phase, Some(Phase::Paused));
    let progressing = world
        .status()
        .conditions
        .iter()
        .find(|c| c.type_ == PROGRESSING)
        .unwrap();
    assert_eq!(progressing.reason, "PauseBefore");
    assert!(
        progressing
            .message
            .contains("remove disable-cvo from spec.pauseBefore")
    );
    world.vmi.spec.pause_before.clear();
    assert_eq!(created(&world.step()), Some(("vmi-step-01-disable-cvo", 1)));
    // A retry of a gated step is not gated again.
    world.vmi.spec.pause_before = vec![Step::DisableCvo];
    world.fail("vmi-step-01-disable-cvo", "BackoffLimitExceeded", &["x"]);
    world.step();
    world.jobs.remove("vmi-step-01-disable-cvo");
    assert_eq!(created(&world.step()), Some(("vmi-step-01-disable-cvo", 2)));
}

#[test]
fn rollback_undoes_reversible_steps_that_ran_newest_first() {
    let mut world = World::new(MigrationState::Running);
    world.step();
    world.finish("vmi-step-00-preflight");
    for job in [
        "vmi-step-01-disable-cvo",
        "vmi-step-02-allow-multi-vcenter",
        "vmi-step-03-backup-cpms",
    ] {
        world.step();
        world.finish(job);
    }
    world.step(); // starts 04
    world.vmi.status.as_mut().unwrap().steps[2].state = StepState::Skipped; // 02 skipped
    world.fail(
        "vmi-step-04-update-secrets",
        "BackoffLimitExceeded",
        &["no"],
    );
    world.step();
    assert_eq!(world.status().phase, Some(Phase::Failed));
    world.vmi.spec.state = MigrationState::Rollback;
    let mut undone = Vec::new();
    for _ in 0..10 {
        let decision = world.step();
        match decision.create {
            Some(request) => {
                assert!(request.undo);
                undone.push(request.name.clone());
                assert_eq!(world.status().phase, Some(Phase::RollingBack));
                world.finish(&request.name);
            }
            None => break,
        }
    }
    // 04 failed but may have changed things; 03 is not reversible; 02 was
    // skipped; 00 is read-only.
    assert_eq!(
        undone,
        [
            "vmi-rollback-04-update-secrets",
            "vmi-rollback-01-disable-cvo"
        ]
    );
    let status = world.status();
    assert_eq!(status.phase, Some(Phase::RolledBack));
    assert!(conditions::is_true(&status.conditions, READY));
    assert_eq!(world.entry(4).state, StepState::RolledBack);
    assert_eq!(world.entry(1).state, StepState::RolledBack);
    assert_eq!(world.entry(3).state, StepState::Succeeded);
    // A rolled-back vmi does not run forward again.
    world.vmi.spec.state = MigrationState::Running;
    assert_eq!(created(&world.step()), None);
    assert_eq!(world.status().phase, Some(Phase::RolledBack));
}

#[test]
fn rollback_waits_for_the_running_step_and_a_failed_undo_stops_it() {
    let mut world = World::new(MigrationState::Running);
    world.step();
    world.finish("vmi-step-00-preflight");
    world.step();
    world.vmi.spec.state = MigrationState::Rollback;
    assert_eq!(created(&world.step()), None, "step 01 still runs");
    assert_eq!(world.status().phase, Some(Phase::RollingBack));
    world.finish("vmi-step-01-disable-cvo");
    assert_eq!(
        created(&world.step()),
        Some(("vmi-rollback-01-disable-cvo", 1))
    );
    world.fail(
        "vmi-rollback-01-disable-cvo",
        "BackoffLimitExceeded",
        &["cannot scale"],
    );
    let failed = world.step();
    assert_eq!(reasons(&failed), ["UndoFailed"]);
    assert_eq!(world.status().phase, Some(Phase::Failed));
    assert_eq!(world.entry(1).state, StepState::RollbackFailed);
    let degraded = world
        .status()
        .conditions
        .iter()
        .find(|c| c.type_ == DEGRADED)
        .unwrap();
    assert_eq!(degraded.reason, "RollbackFailed");
    assert!(
        degraded
            .message
            .contains("oc delete job -n ns vmi-rollback-01-disable-cvo")
    );
    world.jobs.remove("vmi-rollback-01-disable-cvo");
    assert_eq!(
        created(&world.step()),
        Some(("vmi-rollback-01-disable-cvo", 2))
    );
}

#[test]
fn rollback_is_refused_once_the_point_of_no_return_has_started() {
    let mut world = World::new(MigrationState::Running);
    let started = world.run_to_end();
    assert_eq!(started.len(), 6);
    let mut world = World::new(MigrationState::Running);
    for _ in 0..5 {
        let d = world.step();
        let name = d.create.unwrap().name;
        world.finish(&name);
    }
    let last = world.step();
    assert_eq!(created(&last), Some(("vmi-step-05-remove-source", 1)));
    world.fail("vmi-step-05-remove-source", "BackoffLimitExceeded", &["x"]);
    world.step();
    world.vmi.spec.state = MigrationState::Rollback;
    let refused = world.step();
    assert_eq!(created(&refused), None);
    assert_eq!(reasons(&refused), ["RollbackRefused"]);
    let degraded = world
        .status()
        .conditions
        .iter()
        .find(|c| c.type_ == DEGRADED)
        .unwrap();
    assert_eq!(degraded.reason, "RollbackRefused");
    assert!(
        degraded.message.contains("5/6 remove-source"),
        "{}",
        degraded.message
    );
    assert_eq!(world.status().phase, Some(Phase::Failed));
    // Asked again: no second event.
    assert!(reasons(&world.step()).is_empty());
}

#[test]
fn a_second_migration_waits_and_says_for_which() {
    let mut world = World::new(MigrationState::Running);
    world.blocked_by = Some("other/first (phase Running)".into());
    let decision = world.step();
    assert!(decision.blocked);
    assert_eq!(created(&decision), None);
    assert_eq!(reasons(&decision), ["Blocked"]);
    assert_eq!(world.status().phase, Some(Phase::Pending));
    let progressing = world
        .status()
        .conditions
        .iter()
        .find(|c| c.type_ == PROGRESSING)
        .unwrap();
    assert!(
        progressing
            .message
            .contains("other/first (phase Running) holds this cluster")
    );
    world.blocked_by = None;
    assert_eq!(created(&world.step()), Some(("vmi-step-00-preflight", 1)));
}

#[test]
fn a_job_name_taken_by_someone_else_stops_the_migration() {
    let mut world = World::new(MigrationState::Running);
    world.foreign = vec!["vmi-step-00-preflight".into()];
    let decision = world.step();
    assert_eq!(created(&decision), None);
    assert_eq!(reasons(&decision), ["JobConflict"]);
    assert!(conditions::is_true(&world.status().conditions, DEGRADED));
}

#[test]
fn a_step_that_skipped_itself_is_recorded_as_skipped() {
    let mut world = World::new(MigrationState::Running);
    world.step();
    world.vmi.status.as_mut().unwrap().steps[0].state = StepState::Skipped;
    world.vmi.status.as_mut().unwrap().steps[0].result = Some("native path".into());
    world.finish("vmi-step-00-preflight");
    let decision = world.step();
    assert_eq!(reasons(&decision), ["StepSkipped", "StepStarted"]);
    assert_eq!(world.entry(0).state, StepState::Skipped);
}

#[test]
fn the_holders_jobs_do_not_count_as_a_conflict_while_waiting() {
    let mut world = World::new(MigrationState::Running);
    world.blocked_by = Some("ns/first (phase Running)".into());
    world.foreign = vec!["vmi-step-00-preflight".into()];
    let decision = world.step();
    assert!(decision.blocked);
    assert_eq!(reasons(&decision), ["Blocked"]);
    assert!(!conditions::is_true(&world.status().conditions, DEGRADED));
}
