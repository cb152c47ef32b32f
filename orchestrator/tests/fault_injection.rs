//! Fault injection (DESIGN §9, reliability): whole migrations on the
//! simulated cluster, each disturbed once at a random moment, must end in
//! the same state as an undisturbed one.
//!
//! First one undisturbed run (the baseline: its backup keys, MachineSets,
//! tags, folders, disks, CNS volumes, PVs and VMs, and each step's
//! duration), then `VMI_FAULT_RUNS` disturbed runs (default 2), one rig at
//! a time. Every run is the legacy path (INI cloud-provider-config, the
//! most steps) with the default CSI volumes (a Deployment's, a
//! StatefulSet's three and an unused claim) moved in Copy mode. Each is
//! disturbed by one of (kinds in shuffled rounds of four, a random step,
//! a random moment within the time its process ran in the undisturbed
//! run; all but the orchestrator kill wait for a running step process if
//! the planned one ended first):
//!
//! - `kill-orchestrator`: SIGKILL, started again at once;
//! - `kill-step`: SIGKILL of the step's process (the kubelet stand-in's
//!   child): the pod fails with 137 and the Job controller starts another
//!   pod (`backoffLimit` = the step's `retries`, at least 1), which must
//!   resume the step;
//! - `restart-apiserver`: kube-apiserver stopped and started again (same
//!   port and certificates; etcd keeps everything);
//! - `freeze-vcenter`: the source or the target vcsim stopped (SIGSTOP)
//!   for 3–8 s, then continued (vcsim keeps its inventory in memory, so it
//!   cannot be restarted; see docs/reliability.md).
//!
//! While it waits, the suite plays the cluster and the operator: an
//! orchestrator process that exited (a leader that could not renew its
//! lease while the API server was away exits) is started again, as its
//! Deployment would; a step that failed has its Job deleted, the
//! documented retry (`oc delete job`), at most three times. Both are
//! counted and printed: a single disturbance should need neither retry.
//!
//! A run reaches the expected state when it Succeeded and: the end state
//! has no problem (every Machine, Node and setting on the target), every
//! volume moved with its bytes, nothing is duplicated (MachineSets, tag
//! categories and tags on both vCenters, target folders, disks, CNS
//! volumes, PVs per claim), the footprint matches the baseline's (the
//! same backup keys, MachineSets, categories, tags and folders; as many
//! disks, CNS volumes, PVs, journals and target VMs), the node rollouts
//! and control plane replacements are the baseline's, and the secrets
//! scan is clean.
//!
//! ```sh
//! cargo test -p vmi-orchestrator --test fault_injection -- --nocapture
//! VMI_FAULT_RUNS=50 cargo test -p vmi-orchestrator --test fault_injection -- --nocapture
//! VMI_TEST_SEED=<seed> VMI_FAULT_RUNS=50 VMI_FAULT_ONLY=17 cargo test …  # run 17 of that series again
//! VMI_FAULT_RUNS=8 VMI_FAULT_STEP=13 cargo test …  # every disturbance in step 13 (a name, or a list: 11,12,14)
//! ```
//!
//! The seed is printed first; each run prints its plan, what was hit and
//! how it ended; the end prints runs, disturbances by kind, how many
//! reached the expected state, those that did not (timeouts apart from
//! wrong end states) and the time.

mod programs;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use vmi_api::Pipeline;
use vmi_sim::faults::{self, FaultPlan, Footprint, Supervision};
use vmi_sim::migration::vmi_manifest::TARGET_FAILURE_DOMAIN;
use vmi_sim::migration::{self, MigrationRig, Programs, RigError, VmiOptions};
use vmi_sim::seed::SeedOptions;
use vmi_sim::test_random::TestRandom;
use vmi_sim::volumes::VolumeWorkloads;

/// How long one migration may take on a loaded 2-core machine (about
/// 60–70 s when quiet).
const PATIENCE: Duration = Duration::from_secs(15 * 60);
/// How long the volumes' workloads and attachments may take to settle.
const SETTLE: Duration = Duration::from_secs(60);

/// A rig with volumes and a vmi that moves them in Copy mode, its
/// orchestrator started.
async fn started_rig(programs: &Programs) -> Result<MigrationRig, RigError> {
    let mut rig = MigrationRig::start(SeedOptions::default(), programs.clone()).await?;
    rig.seed_volumes(&VolumeWorkloads {
        bare_pod: None,
        ..VolumeWorkloads::default()
    })
    .await?;
    let options = VmiOptions {
        volumes: Some(serde_json::json!({"migrate": true, "mode": "Copy"})),
        ..VmiOptions::default()
    };
    rig.create_vmi(&options).await?;
    rig.start_orchestrator()?;
    Ok(rig)
}

/// What the baseline run measured.
struct Baseline {
    footprint: Footprint,
    durations: BTreeMap<String, Duration>,
    rollouts: usize,
    replacements: u64,
}

/// One run's outcome.
struct Outcome {
    plan: Option<FaultPlan>,
    injection: String,
    hit: Vec<String>,
    supervision: Supervision,
    pod_retries: BTreeMap<String, usize>,
    problems: Vec<String>,
    elapsed: Duration,
}

impl Outcome {
    fn reached(&self) -> bool {
        self.supervision.succeeded && self.problems.is_empty()
    }
}

/// Every check of the end state; one line per problem.
async fn check(rig: &MigrationRig, baseline: Option<&Baseline>) -> (Vec<String>, Footprint) {
    let mut problems = Vec::new();
    match rig.end_state().await {
        Ok(state) => problems.extend(state.problems(TARGET_FAILURE_DOMAIN)),
        Err(e) => problems.push(format!("end state: {e}")),
    }
    problems.extend(faults::volume_problems(rig, SETTLE).await);
    let footprint = match Footprint::read(rig).await {
        Ok(footprint) => footprint,
        Err(e) => {
            problems.push(format!("footprint: {e}"));
            Footprint::default()
        }
    };
    problems.extend(footprint.duplicates());
    if let Some(baseline) = baseline {
        problems.extend(footprint.differences(&baseline.footprint));
        if rig.rollouts.count() != baseline.rollouts {
            problems.push(format!(
                "{} node rollouts, the undisturbed run had {}",
                rig.rollouts.count(),
                baseline.rollouts
            ));
        }
        if rig.control_plane_replacements() != baseline.replacements {
            problems.push(format!(
                "{} control plane replacements, the undisturbed run had {}; refused: {:?}",
                rig.control_plane_replacements(),
                baseline.replacements,
                rig.control_plane_problems()
            ));
        }
    }
    match rig.scan_secrets().await {
        Ok(scan) if scan.is_clean() => {}
        Ok(scan) => problems.push(format!("secrets scan: {scan}")),
        Err(e) => problems.push(format!("secrets scan: {e}")),
    }
    (problems, footprint)
}

/// Runs one migration, disturbed by `plan` (none for the baseline).
async fn run(
    programs: &Programs,
    plan: Option<&FaultPlan>,
    baseline: Option<&Baseline>,
) -> (Outcome, Option<Baseline>) {
    let began = Instant::now();
    let mut rig = match started_rig(programs).await {
        Ok(rig) => rig,
        // A rig that does not start (a port taken, a loaded machine) is
        // counted, not fatal: the series goes on.
        Err(e) => {
            let outcome = Outcome {
                plan: plan.cloned(),
                injection: "NOT INJECTED: the rig did not start".into(),
                hit: Vec::new(),
                supervision: Supervision {
                    status: Default::default(),
                    succeeded: false,
                    orchestrator_restarts: 0,
                    operator_retries: Vec::new(),
                    elapsed: Duration::ZERO,
                },
                pod_retries: BTreeMap::new(),
                problems: vec![format!("the rig did not start: {e}")],
                elapsed: began.elapsed(),
            };
            return (outcome, None);
        }
    };
    let (injection, hit) = match plan {
        Some(plan) => match faults::inject(&mut rig, plan).await {
            Ok(done) if done.done => (done.detail, done.running),
            Ok(not) => (format!("NOT INJECTED: {}", not.detail), not.running),
            Err(e) => (format!("INJECTION FAILED: {e}"), Vec::new()),
        },
        None => ("undisturbed".to_owned(), Vec::new()),
    };
    let supervision = faults::supervise(&mut rig, PATIENCE).await;
    let mut problems = Vec::new();
    let mut measured = None;
    if supervision.succeeded {
        let (found, footprint) = check(&rig, baseline).await;
        problems = found;
        if plan.is_none() {
            measured = Some(Baseline {
                footprint,
                durations: faults::pod_run_durations(&rig),
                rollouts: rig.rollouts.count(),
                replacements: rig.control_plane_replacements(),
            });
        }
    } else {
        let status = &supervision.status;
        problems.push(format!(
            "did not succeed within {:?}: phase {:?} at {}; {}\norchestrator log:\n{}",
            PATIENCE,
            status.phase,
            status.current_step.as_deref().unwrap_or("no step"),
            migration::failure_summary(status).unwrap_or_default(),
            rig.orchestrator_log_tail(30)
        ));
    }
    let retried: Vec<String> = supervision
        .status
        .steps
        .iter()
        .filter(|s| s.attempt != 1)
        .map(|s| format!("{} attempt {}", s.name, s.attempt))
        .collect();
    if !retried.is_empty() && supervision.operator_retries.is_empty() {
        problems.push(format!("steps re-ran without a retry: {retried:?}"));
    }
    let outcome = Outcome {
        plan: plan.cloned(),
        injection,
        hit,
        pod_retries: faults::pod_retries(&rig),
        supervision,
        problems,
        elapsed: began.elapsed(),
    };
    (outcome, measured)
}

fn report(index: usize, outcome: &Outcome) {
    let plan = outcome
        .plan
        .as_ref()
        .map_or("undisturbed".to_owned(), ToString::to_string);
    let verdict = if outcome.reached() {
        "expected state".to_owned()
    } else if !outcome.supervision.succeeded {
        "DID NOT SUCCEED".to_owned()
    } else {
        format!("{} PROBLEMS", outcome.problems.len())
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!(
        "fault run {index}: {plan}\n  {} (running: {:?})\n  {verdict} in {:.0} s ({:.0} s after the disturbance); \
         pod retries {:?}; orchestrator restarted {}; operator retries {:?}; load {}",
        outcome.injection,
        outcome.hit,
        outcome.elapsed.as_secs_f64(),
        outcome.supervision.elapsed.as_secs_f64(),
        outcome.pod_retries,
        outcome.supervision.orchestrator_restarts,
        outcome.supervision.operator_retries,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    );
    for problem in &outcome.problems {
        eprintln!("  problem: {problem}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_disturbed_migration_ends_in_the_undisturbed_state() {
    let began = Instant::now();
    let runs: usize = std::env::var("VMI_FAULT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let only: Option<usize> = std::env::var("VMI_FAULT_ONLY")
        .ok()
        .and_then(|v| v.parse().ok());
    let mut random = TestRandom::from_env_or_clock();
    let programs = programs::copied("fault-programs");

    let (outcome, baseline) = run(&programs, None, None).await;
    report(0, &outcome);
    assert!(
        outcome.reached(),
        "the undisturbed run did not reach the expected state: {:#?}",
        outcome.problems
    );
    let baseline = baseline.expect("the baseline run measured");
    eprintln!(
        "baseline: {} backup keys {:?}; {} target disks, {} CNS volumes, {} PVs, {} target VMs, \
         {} MachineSets, {} categories, {} tags, {} target folders",
        baseline.footprint.backup_keys.len(),
        baseline.footprint.backup_keys,
        baseline.footprint.target_disks.len(),
        baseline.footprint.cns_volumes.len(),
        baseline.footprint.pvs.len(),
        baseline.footprint.target_vms.len(),
        baseline.footprint.machinesets.len(),
        baseline.footprint.categories.len(),
        baseline.footprint.tags.len(),
        baseline.footprint.folders.len(),
    );
    eprintln!(
        "baseline: step processes ran (ms): {:?}",
        baseline
            .durations
            .iter()
            .map(|(job, d)| (job.as_str(), d.as_millis()))
            .collect::<Vec<_>>()
    );

    let pipeline = Pipeline::vcenter_migration().unwrap();
    let mut jobs: Vec<String> = pipeline.steps.iter().map(|s| s.job_name()).collect();
    // VMI_FAULT_STEP=13 (or migrate-volumes, or 11,12,14): every
    // disturbance in those steps.
    if let Ok(steps) = std::env::var("VMI_FAULT_STEP") {
        let wanted: Vec<String> = steps
            .split(',')
            .map(|step| {
                step.trim()
                    .parse::<u32>()
                    .map(|n| format!("vmi-step-{n:02}-"))
                    .unwrap_or_else(|_| format!("-{}", step.trim()))
            })
            .collect();
        jobs.retain(|job| {
            wanted
                .iter()
                .any(|w| job.starts_with(w.as_str()) || job.ends_with(w.as_str()))
        });
        assert!(!jobs.is_empty(), "VMI_FAULT_STEP={steps} names no step");
    }
    let plans = faults::plans(&mut random, runs, &jobs, &baseline.durations);
    let mut outcomes = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        let index = i + 1;
        if only.is_some_and(|only| only != index) {
            continue;
        }
        eprintln!("fault run {index}/{runs}: {plan} …");
        let (outcome, _) = run(&programs, Some(plan), Some(&baseline)).await;
        report(index, &outcome);
        outcomes.push((index, outcome));
    }

    let mut by_kind = BTreeMap::<&str, (usize, usize)>::new();
    for (_, outcome) in &outcomes {
        if let Some(plan) = &outcome.plan {
            let entry = by_kind.entry(plan.kind.name()).or_default();
            entry.0 += 1;
            entry.1 += usize::from(outcome.reached());
        }
    }
    let reached = outcomes.iter().filter(|(_, o)| o.reached()).count();
    let not_injected: Vec<usize> = outcomes
        .iter()
        .filter(|(_, o)| {
            o.injection.starts_with("NOT INJECTED") || o.injection.starts_with("INJECTION FAILED")
        })
        .map(|(i, _)| *i)
        .collect();
    let timed_out: Vec<usize> = outcomes
        .iter()
        .filter(|(_, o)| !o.supervision.succeeded)
        .map(|(i, _)| *i)
        .collect();
    let wrong: Vec<usize> = outcomes
        .iter()
        .filter(|(_, o)| o.supervision.succeeded && !o.problems.is_empty())
        .map(|(i, _)| *i)
        .collect();
    let operator: Vec<usize> = outcomes
        .iter()
        .filter(|(_, o)| !o.supervision.operator_retries.is_empty())
        .map(|(i, _)| *i)
        .collect();
    eprintln!(
        "fault injection: {} disturbed runs (+1 undisturbed); by kind (runs, reached): {by_kind:?}; \
         {reached} reached the expected state; did not succeed: {timed_out:?}; succeeded with \
         problems: {wrong:?}; needed an operator retry: {operator:?}; not injected: \
         {not_injected:?}; {:.1} min",
        outcomes.len(),
        began.elapsed().as_secs_f64() / 60.0
    );
    assert_eq!(
        reached,
        outcomes.len(),
        "runs that did not reach the expected state: did not succeed {timed_out:?}, \
         with problems {wrong:?} (see the lines above)"
    );
}
