//! The demo (`tests/demo`): a whole vCenter migration on the simulated
//! cluster with live progress, a summary (per-step durations and vCenter
//! round trips, node rollouts, control-plane replacements, CVO downtime,
//! the vSphere CSI volumes step 13 moved and their checks, the secrets
//! scan) and every log kept in an artifacts directory.
//! `vmi-demo --help` lists the options; `docs/demo.md` explains the output.

mod args;
mod artifacts;
mod progress;
mod round_trips;
mod summary;
mod volumes;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use vmi_api::{Phase, Pipeline, VSphereMigrationInfraStatus};
use vmi_sim::crds::InfrastructureCrd;
use vmi_sim::migration::{self, MigrationRig, Programs, VmiOptions};
use vmi_sim::secrets_scan::ScanReport;
use vmi_sim::seed::{CloudConfigFormat, SeedOptions};

use crate::args::Args;
use crate::artifacts::Artifacts;
use crate::progress::{Tracker, clock};
use crate::round_trips::RoundTrips;
use crate::summary::Summary;

/// How often the demo looks at the vmi and the machines.
const POLL: Duration = Duration::from_millis(500);

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn main() -> ExitCode {
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("vmi-demo: {err}\n\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("vmi-demo: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(demo(&args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("vmi-demo: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a line and keeps it for `progress.txt`.
#[allow(clippy::print_stdout)]
fn say(lines: &mut Vec<String>, line: String) {
    println!("{line}");
    lines.push(line);
}

/// Runs the demo; `Ok(true)` when the migration succeeded, every volume
/// check passed and the scan is clean.
#[allow(clippy::print_stdout)]
async fn demo(args: &Args) -> Result<bool, String> {
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find this program's directory: {e}"))?
            .parent()
            .map(Path::to_owned)
            .unwrap_or_default(),
    };
    let artifacts_dir = args
        .artifacts
        .clone()
        .unwrap_or_else(|| artifacts::default_dir(&bin_dir, Timestamp::now()));
    let artifacts = Artifacts::create(&artifacts_dir)?;
    let pipeline = Pipeline::vcenter_migration().map_err(|e| e.to_string())?;
    let step_names: Vec<String> = pipeline.steps.iter().map(|s| s.name.clone()).collect();
    let (crd, format, what) = if args.legacy {
        (
            InfrastructureCrd::Release422Default,
            CloudConfigFormat::Ini,
            "legacy path expected: release-4.22 Infrastructure CRD, INI cloud-provider-config",
        )
    } else {
        (
            InfrastructureCrd::MultiVCenterDay2,
            CloudConfigFormat::Yaml,
            "native path expected: multi-vCenter day-2 Infrastructure CRD, YAML cloud-provider-config",
        )
    };
    let mut shown = Vec::new();
    say(
        &mut shown,
        format!(
            "vmi-demo: starting the simulated cluster ({what}; 3 control plane + {} workers)",
            args.workers
        ),
    );
    let started = Instant::now();
    let seed = SeedOptions {
        infrastructure_crd: crd,
        cloud_config: format,
        workers: args.workers,
        ..SeedOptions::default()
    };
    let mut rig = MigrationRig::start(seed, Programs::in_dir(&bin_dir))
        .await
        .map_err(|e| format!("the simulated cluster did not start: {e}"))?;
    let (source, target) = (&rig.cluster.source, &rig.cluster.target);
    let vcenters = vec![
        (source.server.clone(), "source".to_owned()),
        (target.server.clone(), "target".to_owned()),
    ];
    say(
        &mut shown,
        format!(
            "vmi-demo: cluster up in {}: source vCenter {}:{} ({}) -> target vCenter {}:{} ({}); namespace {}",
            clock(started.elapsed()),
            source.server,
            source.port,
            rig.cluster.source_inventory.datacenter,
            target.server,
            target.port,
            rig.cluster.target_inventory.datacenter,
            rig.namespace
        ),
    );
    say(
        &mut shown,
        format!("vmi-demo: artifacts go to {}", artifacts.dir().display()),
    );
    let mut options = VmiOptions::default();
    if args.volumes {
        let seeding = Instant::now();
        rig.seed_volumes(&volumes::workloads())
            .await
            .map_err(|e| format!("cannot seed the volumes: {e}"))?;
        if let Some(seeded) = &rig.volumes {
            say(
                &mut shown,
                format!(
                    "vmi-demo: seeded on the source in {}: {}; a CSI driver stand-in attaches them to the nodes",
                    clock(seeding.elapsed()),
                    volumes::seeded_text(seeded)
                ),
            );
        }
        options.volumes = Some(volumes::spec());
    }
    rig.create_vmi(&options)
        .await
        .map_err(|e| format!("cannot create the vmi: {e}"))?;
    rig.start_orchestrator()
        .map_err(|e| format!("cannot start the orchestrator: {e}"))?;
    let volume_spec = options
        .volumes
        .as_ref()
        .map(|v| {
            format!(
                ", volumes moved in {} mode, {} at a time",
                v["mode"].as_str().unwrap_or("Copy"),
                v["concurrency"].as_i64().unwrap_or(4)
            )
        })
        .unwrap_or_default();
    say(
        &mut shown,
        format!(
            "vmi-demo: vmi {}/{} applied with state Running (monitor window {} s{volume_spec}); vmi-orchestrator runs one Job per step:",
            rig.namespace,
            options.name,
            options.monitor_window_seconds.unwrap_or(120)
        ),
    );

    let migration_started = Instant::now();
    let (status, timed_out) = follow(&rig, &mut shown, args.timeout).await;
    let took = migration_started.elapsed();
    rig.stop_orchestrator();

    // Keep everything, then scan it.
    let mut step_logs: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut round_trips: BTreeMap<i32, RoundTrips> = BTreeMap::new();
    let mut runs = rig.kubelet.runs();
    // Oldest first, so that the newest attempt of a Job is the one kept below.
    runs.sort_by_key(|r| std::fs::metadata(&r.log).and_then(|m| m.modified()).ok());
    for run in runs {
        let kept = artifacts.step_log(&run.pod, &run.log)?;
        let log = std::fs::read_to_string(&kept).unwrap_or_default();
        if let Some(index) = run.job.as_deref().and_then(step_index) {
            round_trips
                .entry(index)
                .or_default()
                .add(&round_trips::count(&log));
        }
        if let Some(job) = run.job {
            step_logs.insert(job, kept);
        }
    }
    for (n, log) in rig.orchestrator_logs().iter().enumerate() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        artifacts.write(&format!("orchestrator.{n}.log"), &text)?;
    }
    match rig.events().await {
        Ok(events) => {
            artifacts.write("events.txt", &artifacts::event_lines(&events))?;
        }
        Err(err) => {
            artifacts.write("events.txt", &format!("could not list the Events: {err}\n"))?;
        }
    }
    let vmi = rig.vmi().await;
    match &vmi {
        Ok(vmi) => {
            let json = serde_json::to_string_pretty(vmi).map_err(|e| e.to_string())?;
            artifacts.write("vmi.json", &format!("{json}\n"))?;
        }
        Err(err) => {
            artifacts.write("vmi.json", &format!("could not read the vmi: {err}\n"))?;
        }
    }
    match volumes::journal(&rig).await {
        Ok(json) => artifacts.write("volume-journal.json", &json)?,
        Err(err) => artifacts.write("volume-journal.json", &format!("{err}\n"))?,
    };
    let succeeded = status.phase == Some(Phase::Succeeded);
    let volume_report = volumes::check(&rig, &status, vmi.as_ref().ok(), succeeded).await;
    let volume_problems = volume_report
        .as_ref()
        .map(volumes::VolumesReport::problems)
        .unwrap_or_default();
    let scan: Result<ScanReport, String> = rig.scan_secrets().await.map_err(|e| e.to_string());
    if let Ok(report) = &scan {
        artifacts.write("secrets-scan.txt", &report.to_string())?;
    }
    let machines = rig.machine_progress().await.ok();
    let summary = Summary {
        pipeline: &step_names,
        status: &status,
        took,
        round_trips: &round_trips,
        vcenters: &vcenters,
        rollouts: rig.rollouts.count(),
        replacements: rig.control_plane_replacements(),
        cpms_problems: &rig.control_plane_problems(),
        vms: rig.machine_vms(),
        cvo_down: (rig.cvo_downtime.total(), rig.cvo_downtime.periods()),
        machines,
        volumes: volume_report.as_ref(),
        scan: &scan,
        artifacts: artifacts.dir(),
    }
    .render();
    println!();
    print!("{summary}");
    artifacts.write("summary.txt", &summary)?;
    artifacts.write("progress.txt", &(shown.join("\n") + "\n"))?;

    let clean = scan.as_ref().is_ok_and(ScanReport::is_clean);
    let verdict = verdict(
        &status,
        timed_out,
        args.timeout,
        &step_logs,
        &volume_problems,
        &scan,
        artifacts.dir(),
    );
    println!();
    println!("{verdict}");
    Ok(succeeded && volume_problems.is_empty() && clean)
}

/// Follows the vmi until it succeeds or fails (or `timeout` passes),
/// printing one line per change. Returns the last status and whether the
/// time ran out.
async fn follow(
    rig: &MigrationRig,
    shown: &mut Vec<String>,
    timeout: Duration,
) -> (VSphereMigrationInfraStatus, bool) {
    let started = Instant::now();
    let mut tracker = Tracker::default();
    let mut status = VSphereMigrationInfraStatus::default();
    loop {
        if let Ok(now) = rig.status().await {
            status = now;
        }
        let machines = rig.machine_progress().await.ok();
        for line in tracker.update(started.elapsed(), &status, machines, Timestamp::now()) {
            say(shown, line);
        }
        if matches!(status.phase, Some(Phase::Succeeded | Phase::Failed)) {
            return (status, false);
        }
        if started.elapsed() > timeout {
            return (status, true);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The step index of a step Job's name (`vmi-step-07-update-infra` → 7).
fn step_index(job: &str) -> Option<i32> {
    job.strip_prefix("vmi-step-")?.get(..2)?.parse().ok()
}

/// The last words: success, or what failed, its Job and where its log is;
/// then each failed volume check, naming its volume.
fn verdict(
    status: &VSphereMigrationInfraStatus,
    timed_out: bool,
    timeout: Duration,
    step_logs: &BTreeMap<String, PathBuf>,
    volume_problems: &[String],
    scan: &Result<ScanReport, String>,
    artifacts: &Path,
) -> String {
    let mut out = Vec::new();
    let log_of = |job: &str| {
        step_logs
            .get(job)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(no pod ran)".into())
    };
    let succeeded = status.phase == Some(Phase::Succeeded);
    if succeeded {
        out.push("vmi-demo: the migration SUCCEEDED.".to_owned());
    } else if let Some(failure) = migration::failure_summary(status) {
        out.push(format!("vmi-demo: the migration FAILED: {failure}"));
        if let Some(step) = status.steps.iter().rev().find(|s| s.failure.is_some()) {
            out.push(format!("  its log, kept: {}", log_of(&step.job_name)));
            if step
                .failure
                .as_ref()
                .is_some_and(|f| f.cause.contains("not implemented yet"))
            {
                out.push(
                    "  (this step is not implemented yet: the demo stops here until it is)".into(),
                );
            }
        }
    } else {
        let step = status.steps.last();
        let why = if timed_out {
            format!("it did not finish within {}", clock(timeout))
        } else {
            "it stopped".to_owned()
        };
        out.push(format!(
            "vmi-demo: the migration did not succeed: {why}; phase {}, at {}",
            progress::name(status.phase),
            status.current_step.as_deref().unwrap_or("no step")
        ));
        if let Some(step) = step {
            out.push(format!(
                "  last step: {:02} {} (Job {}), its log, kept: {}",
                step.index,
                step.name,
                step.job_name,
                log_of(&step.job_name)
            ));
        }
    }
    if !volume_problems.is_empty() {
        out.push(format!(
            "vmi-demo: {} volume check(s) FAILED:",
            volume_problems.len()
        ));
        for problem in volume_problems {
            out.push(format!("  {problem}"));
        }
    }
    match scan {
        Ok(report) if !report.is_clean() => out.push(format!(
            "vmi-demo: the secrets scan found {} secret(s); see {}",
            report.hits.len(),
            artifacts.join("secrets-scan.txt").display()
        )),
        Err(err) => out.push(format!("vmi-demo: the secrets scan could not run: {err}")),
        Ok(_) => {}
    }
    out.push(format!(
        "vmi-demo: every step log, the Events, the orchestrator logs, the volume journal and the final vmi are in {}",
        artifacts.display()
    ));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use vmi_api::migration::StepFailure;
    use vmi_api::{StepState, StepStatus};

    use super::*;

    #[test]
    fn step_jobs_give_their_index() {
        assert_eq!(step_index("vmi-step-07-update-infra"), Some(7));
        assert_eq!(step_index("vmi-step-16-restore-cvo"), Some(16));
        assert_eq!(step_index("vmi-rollback-07-update-infra"), None);
    }

    #[test]
    fn a_failure_names_the_step_its_job_and_the_kept_log() {
        let mut step = StepStatus::started(
            11,
            "create-machinesets",
            "vmi-step-11-create-machinesets",
            1,
        );
        step.state = StepState::Failed;
        step.failure = Some(StepFailure {
            cause: "step create-machinesets is not implemented yet".into(),
            last_log_lines: vec![],
            logs_command: "oc logs -n vmi-1 job/vmi-step-11-create-machinesets".into(),
        });
        let status = VSphereMigrationInfraStatus {
            phase: Some(Phase::Failed),
            steps: vec![step],
            ..Default::default()
        };
        let logs = BTreeMap::from([(
            "vmi-step-11-create-machinesets".to_owned(),
            PathBuf::from("/a/steps/vmi-step-11-create-machinesets-x.log"),
        )]);
        let text = verdict(
            &status,
            false,
            Duration::from_secs(60),
            &logs,
            &[],
            &Ok(ScanReport::default()),
            Path::new("/a"),
        );
        assert_eq!(
            text,
            "vmi-demo: the migration FAILED: step 11 create-machinesets failed (Job \
             vmi-step-11-create-machinesets, attempt 1): step create-machinesets is not implemented yet\n  \
             whole log: oc logs -n vmi-1 job/vmi-step-11-create-machinesets\n  \
             its log, kept: /a/steps/vmi-step-11-create-machinesets-x.log\n  \
             (this step is not implemented yet: the demo stops here until it is)\n\
             vmi-demo: every step log, the Events, the orchestrator logs, the volume journal and the final vmi are in /a"
        );
    }

    #[test]
    fn a_failed_volume_check_is_named_after_the_success() {
        let status = VSphereMigrationInfraStatus {
            phase: Some(Phase::Succeeded),
            ..Default::default()
        };
        let text = verdict(
            &status,
            false,
            Duration::from_secs(60),
            &BTreeMap::new(),
            &["volume apps/web-data (PV pvc-1): the source disk s1 is gone from the source vCenter"
                .to_owned()],
            &Ok(ScanReport::default()),
            Path::new("/a"),
        );
        assert_eq!(
            text,
            "vmi-demo: the migration SUCCEEDED.\n\
             vmi-demo: 1 volume check(s) FAILED:\n  \
             volume apps/web-data (PV pvc-1): the source disk s1 is gone from the source vCenter\n\
             vmi-demo: every step log, the Events, the orchestrator logs, the volume journal and the final vmi are in /a"
        );
    }

    #[test]
    fn a_timeout_names_the_last_step() {
        let step = StepStatus::started(12, "recreate-cpms", "vmi-step-12-recreate-cpms", 1);
        let status = VSphereMigrationInfraStatus {
            phase: Some(Phase::Running),
            current_step: Some("13/17 recreate-cpms".into()),
            steps: vec![step],
            ..Default::default()
        };
        let text = verdict(
            &status,
            true,
            Duration::from_secs(600),
            &BTreeMap::new(),
            &[],
            &Err("no cluster".into()),
            Path::new("/a"),
        );
        assert!(text.starts_with(
            "vmi-demo: the migration did not succeed: it did not finish within 10m00s; phase Running, at 13/17 recreate-cpms\n  \
             last step: 12 recreate-cpms (Job vmi-step-12-recreate-cpms), its log, kept: (no pod ran)\n\
             vmi-demo: the secrets scan could not run: no cluster"
        ), "{text}");
    }
}
