//! The orchestrator on the simulated cluster, driven with a test pipeline
//! whose steps are a tiny shell program: order, retries, timeouts, failure,
//! pause, pauseBefore, re-run by deleting a Job, rollback, the singleton
//! rule, RBAC through the step pods' tokens, and the metrics endpoint.

mod support;

use std::time::Duration;

use support::{Rig, http_get, job_names, pipeline};
use vmi_api::{Phase, StepState};
use vmi_sim::test_steps::StepRun;

const PATIENCE: Duration = Duration::from_secs(90);

fn run(step: &str, attempt: u32) -> StepRun {
    StepRun {
        step: step.into(),
        undo: false,
        attempt,
    }
}

fn undo(step: &str) -> StepRun {
    StepRun {
        step: step.into(),
        undo: true,
        attempt: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_run_in_order_and_leave_their_history() {
    let mut rig = Rig::new(&pipeline(&[
        (
            "preflight",
            "timeoutSeconds: 60, retries: 0, reversible: false, readOnly: true",
        ),
        ("disable-cvo", ""),
        ("allow-multi-vcenter", ""),
        ("backup-cpms", ""),
    ]))
    .await;
    let port = rig.start_orchestrator("a");
    rig.create_vmi("move", "Running", &[]).await;
    let vmi = rig.wait_for_phase("move", Phase::Succeeded, PATIENCE).await;

    assert_eq!(
        rig.steps.runs(),
        [
            run("preflight", 1),
            run("disable-cvo", 1),
            run("allow-multi-vcenter", 1),
            run("backup-cpms", 1)
        ]
    );
    let status = vmi.status.unwrap();
    assert_eq!(status.observed_generation, vmi.metadata.generation);
    assert_eq!(status.steps.len(), 4);
    for (i, entry) in status.steps.iter().enumerate() {
        assert_eq!(entry.index, i as i32);
        assert_eq!(entry.state, StepState::Succeeded, "{entry:?}");
        assert_eq!(entry.attempt, 1);
        assert!(entry.started_at.is_some() && entry.finished_at.is_some());
    }
    assert_eq!(status.steps[2].job_name, "vmi-step-02-allow-multi-vcenter");
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Succeeded")
    );

    // Finished Jobs stay for triage, owned by the vmi.
    let jobs = rig.jobs().await;
    assert_eq!(
        job_names(&jobs),
        [
            "vmi-step-00-preflight",
            "vmi-step-01-disable-cvo",
            "vmi-step-02-allow-multi-vcenter",
            "vmi-step-03-backup-cpms"
        ]
    );
    assert!(
        jobs.iter()
            .all(|j| j.metadata.owner_references.as_ref().unwrap()[0].name == "move")
    );

    let events = rig
        .events_until("move", |events| {
            events
                .iter()
                .any(|(_, reason, _)| reason == "MigrationSucceeded")
        })
        .await;
    let reasons: Vec<&str> = events.iter().map(|(_, r, _)| r.as_str()).collect();
    assert_eq!(
        reasons.iter().filter(|r| **r == "StepStarted").count(),
        4,
        "{events:?}"
    );
    assert_eq!(
        reasons.iter().filter(|r| **r == "StepSucceeded").count(),
        4,
        "{events:?}"
    );
    assert!(reasons.contains(&"MigrationSucceeded"), "{events:?}");

    let metrics = http_get(port, "/metrics");
    let key = format!("{}/move", rig.namespace);
    assert!(
        metrics.contains(&format!(
            "vmi_migration_phase{{migration=\"{key}\",phase=\"Succeeded\"}} 1"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("vmi_step_duration_seconds_count{step=\"backup-cpms\"} 1"),
        "{metrics}"
    );
    assert!(metrics.lines().any(|l| l == "vmi_leader 1"), "{metrics}");
    assert_eq!(http_get(port, "/healthz"), "ok\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_stops_everything_and_deleting_the_job_retries_it() {
    let mut rig = Rig::new(&pipeline(&[
        (
            "preflight",
            "timeoutSeconds: 60, retries: 1, reversible: false",
        ),
        ("disable-cvo", ""),
        ("allow-multi-vcenter", ""),
    ]))
    .await;
    // preflight's first pod fails, the Job's retry (backoffLimit 1) succeeds.
    rig.steps.set("preflight", false, "fail-times 1").unwrap();
    rig.steps.set("disable-cvo", false, "fail").unwrap();
    rig.start_orchestrator("a");
    rig.create_vmi("move", "Running", &[]).await;
    let vmi = rig.wait_for_phase("move", Phase::Failed, PATIENCE).await;

    let status = vmi.status.unwrap();
    assert_eq!(status.steps[0].state, StepState::Succeeded);
    assert_eq!(
        status.steps[0].attempt, 1,
        "a pod retry inside the Job is not a new attempt"
    );
    let failed = &status.steps[1];
    assert_eq!(failed.state, StepState::Failed);
    let failure = failed.failure.as_ref().unwrap();
    assert_eq!(failure.cause, "error: disable-cvo was told to fail");
    assert!(
        failure
            .last_log_lines
            .iter()
            .any(|l| l.contains("attempt 1")),
        "{failure:?}"
    );
    assert!(failure.logs_command.starts_with(&format!(
        "oc logs -n {} vmi-step-01-disable-cvo-",
        rig.namespace
    )));
    let degraded = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "StepFailed")
    );
    assert!(degraded.message.contains(&format!(
        "oc delete job -n {} vmi-step-01-disable-cvo",
        rig.namespace
    )));
    let events = rig
        .events_until("move", |events| {
            events.iter().any(|(_, reason, _)| reason == "StepFailed")
        })
        .await;
    assert!(
        events.iter().any(|(kind, reason, note)| kind == "Warning"
            && reason == "StepFailed"
            && note.contains("vmi-step-01-disable-cvo")),
        "{events:?}"
    );
    // Nothing after the failed step started.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(rig.jobs().await.len(), 2);
    assert_eq!(
        rig.steps.runs(),
        [
            run("preflight", 1),
            run("preflight", 1),
            run("disable-cvo", 1)
        ]
    );

    // Fix the cause, delete the Job: the step runs again as attempt 2.
    rig.steps.set("disable-cvo", false, "succeed").unwrap();
    rig.delete_job("vmi-step-01-disable-cvo").await;
    let vmi = rig.wait_for_phase("move", Phase::Succeeded, PATIENCE).await;
    let status = vmi.status.unwrap();
    assert_eq!(status.steps[1].attempt, 2);
    assert_eq!(status.steps[1].failure, None);
    assert_eq!(
        &rig.steps.runs()[3..],
        [run("disable-cvo", 2), run("allow-multi-vcenter", 1)]
    );
    let degraded = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(degraded.status, "False");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_past_its_deadline_is_stopped_and_reported() {
    let rig_pipeline = pipeline(&[
        (
            "preflight",
            "timeoutSeconds: 3, retries: 0, reversible: false",
        ),
        ("disable-cvo", ""),
    ]);
    let mut rig = Rig::new(&rig_pipeline).await;
    rig.steps.set("preflight", false, "hang").unwrap();
    rig.start_orchestrator("a");
    rig.create_vmi("move", "Running", &[]).await;
    let vmi = rig.wait_for_phase("move", Phase::Failed, PATIENCE).await;
    let failure = vmi.status.unwrap().steps[0].failure.clone().unwrap();
    assert!(failure.cause.contains("timeout of 3 s"), "{failure:?}");
    // The Job controller deleted the pod and the stand-in killed the process.
    let runs = rig.kubelet.job_runs("vmi-step-00-preflight");
    assert_eq!(runs.len(), 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while rig.kubelet.job_runs("vmi-step-00-preflight")[0]
        .exit_code
        .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the hung step was never killed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rig.steps.runs(), [run("preflight", 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_pause_before_stop_between_steps() {
    let mut rig = Rig::new(&pipeline(&[
        ("preflight", ""),
        ("disable-cvo", ""),
        ("allow-multi-vcenter", ""),
        ("backup-cpms", ""),
    ]))
    .await;
    rig.steps.set("disable-cvo", false, "sleep 3").unwrap();
    rig.start_orchestrator("a");
    rig.create_vmi("move", "Running", &["backup-cpms"]).await;
    // Pause while disable-cvo runs: it finishes, nothing new starts.
    rig.wait_for("move", "disable-cvo running", PATIENCE, |v| {
        v.status
            .as_ref()
            .is_some_and(|s| s.steps.iter().any(|e| e.name == "disable-cvo"))
    })
    .await;
    rig.patch_spec("move", serde_json::json!({"state": "Paused"}))
        .await;
    let vmi = rig.wait_for_phase("move", Phase::Paused, PATIENCE).await;
    let status = vmi.status.unwrap();
    assert_eq!(status.steps.len(), 2);
    assert_eq!(status.steps[1].state, StepState::Succeeded);
    assert_eq!(
        status.current_step.as_deref(),
        Some("2/4 allow-multi-vcenter")
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(rig.jobs().await.len(), 2);

    // Resume: runs until the pauseBefore gate.
    rig.patch_spec("move", serde_json::json!({"state": "Running"}))
        .await;
    let vmi = rig
        .wait_for("move", "paused before backup-cpms", PATIENCE, |v| {
            v.status.as_ref().is_some_and(|s| {
                s.phase == Some(Phase::Paused)
                    && s.steps.len() == 3
                    && s.steps[2].state == StepState::Succeeded
            })
        })
        .await;
    let status = vmi.status.unwrap();
    let progressing = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(progressing.reason, "PauseBefore");
    assert_eq!(rig.jobs().await.len(), 3);

    // Approve by removing the gate.
    rig.patch_spec("move", serde_json::json!({"pauseBefore": []}))
        .await;
    rig.wait_for_phase("move", Phase::Succeeded, PATIENCE).await;
    let events = rig
        .events_until("move", |events| {
            events.iter().any(|(_, reason, _)| reason == "Resumed")
        })
        .await;
    let reasons: Vec<&str> = events.iter().map(|(_, r, _)| r.as_str()).collect();
    assert!(
        reasons.contains(&"Paused") && reasons.contains(&"Resumed"),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_undoes_newest_first_and_is_refused_past_the_point_of_no_return() {
    let steps = [
        (
            "preflight",
            "timeoutSeconds: 60, retries: 0, reversible: false, readOnly: true",
        ),
        (
            "disable-cvo",
            "timeoutSeconds: 60, retries: 0, reversible: true",
        ),
        (
            "allow-multi-vcenter",
            "timeoutSeconds: 60, retries: 0, reversible: false",
        ),
        (
            "backup-cpms",
            "timeoutSeconds: 60, retries: 0, reversible: true",
        ),
        (
            "update-secrets",
            "timeoutSeconds: 60, retries: 0, reversible: true",
        ),
        (
            "remove-source",
            "timeoutSeconds: 60, retries: 0, reversible: false, pointOfNoReturn: true",
        ),
    ];
    let mut rig = Rig::new(&pipeline(&steps)).await;
    rig.steps.set("update-secrets", false, "fail").unwrap();
    rig.start_orchestrator("a");
    rig.create_vmi("move", "Running", &[]).await;
    rig.wait_for_phase("move", Phase::Failed, PATIENCE).await;
    rig.patch_spec("move", serde_json::json!({"state": "Rollback"}))
        .await;
    let vmi = rig
        .wait_for_phase("move", Phase::RolledBack, PATIENCE)
        .await;
    let undone: Vec<StepRun> = rig.steps.runs().into_iter().filter(|r| r.undo).collect();
    assert_eq!(
        undone,
        [
            undo("update-secrets"),
            undo("backup-cpms"),
            undo("disable-cvo")
        ],
        "newest first; allow-multi-vcenter is not reversible"
    );
    let status = vmi.status.unwrap();
    assert_eq!(status.steps[4].state, StepState::RolledBack);
    assert_eq!(
        status.steps[4].undo.as_ref().unwrap().job_name,
        "vmi-rollback-04-update-secrets"
    );
    assert_eq!(status.steps[2].state, StepState::Succeeded);

    // A second rig where the point of no return has started.
    let mut late = Rig::new(&pipeline(&steps)).await;
    late.steps.set("remove-source", false, "fail").unwrap();
    late.start_orchestrator("b");
    late.create_vmi("move", "Running", &[]).await;
    late.wait_for_phase("move", Phase::Failed, PATIENCE).await;
    late.patch_spec("move", serde_json::json!({"state": "Rollback"}))
        .await;
    let vmi = late
        .wait_for("move", "rollback refused", PATIENCE, |v| {
            v.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Degraded" && c.reason == "RollbackRefused")
            })
        })
        .await;
    let degraded = vmi
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert!(
        degraded.message.contains("5/6 remove-source"),
        "{}",
        degraded.message
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        late.steps.runs().iter().all(|r| !r.undo),
        "nothing was undone"
    );
    let events = late.events("move").await;
    assert!(
        events
            .iter()
            .any(|(k, r, _)| k == "Warning" && r == "RollbackRefused"),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_migration_waits_for_the_first_and_says_why() {
    let mut rig = Rig::new(&pipeline(&[("preflight", ""), ("disable-cvo", "")])).await;
    rig.steps.set("disable-cvo", false, "sleep 2").unwrap();
    rig.start_orchestrator("a");
    rig.create_vmi("first", "Running", &[]).await;
    rig.wait_for("first", "started", PATIENCE, |v| {
        v.status.as_ref().is_some_and(|s| !s.steps.is_empty())
    })
    .await;
    rig.create_vmi("second", "Running", &[]).await;
    let blocked = rig
        .wait_for("second", "blocked", PATIENCE, |v| {
            v.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.reason == "AnotherMigrationActive")
            })
        })
        .await;
    let message = blocked
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.reason == "AnotherMigrationActive")
        .unwrap()
        .message;
    assert!(
        message.contains(&format!("{}/first", rig.namespace)),
        "{message}"
    );
    rig.wait_for_phase("first", Phase::Succeeded, PATIENCE)
        .await;
    // The second one owns Jobs of the same names: the first's are in the way.
    let second = rig
        .wait_for("second", "job conflict", PATIENCE, |v| {
            v.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Degraded" && c.reason == "JobConflict")
            })
        })
        .await;
    assert!(
        second.status.unwrap().steps.is_empty(),
        "nothing of the second ran"
    );
    let runs = rig.steps.runs();
    assert_eq!(runs, [run("preflight", 1), run("disable-cvo", 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_pods_act_with_their_service_account_and_nothing_more() {
    let mut rig = Rig::new(&pipeline(&[("preflight", ""), ("disable-cvo", "")])).await;
    rig.steps
        .set("preflight", false, "kubectl get configmaps")
        .unwrap();
    rig.steps
        .set("disable-cvo", false, "kubectl get secrets")
        .unwrap();
    rig.start_orchestrator("a");
    rig.create_vmi("move", "Running", &[]).await;
    let vmi = rig.wait_for_phase("move", Phase::Failed, PATIENCE).await;
    let status = vmi.status.unwrap();
    assert_eq!(
        status.steps[0].state,
        StepState::Succeeded,
        "configmaps are allowed"
    );
    let cause = &status.steps[1].failure.as_ref().unwrap().cause;
    assert!(
        cause.contains(&format!(
            "system:serviceaccount:{}:vmi-step-runner\" cannot list resource \"secrets\"",
            rig.namespace
        )),
        "{cause}"
    );
}
