//! The orchestrator survives what production does to it: two replicas
//! never run a step twice, and killing the process at random moments never
//! repeats or loses a step.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use vmi_sim::test_random::TestRandom;

use support::{Rig, http_get, pipeline};
use vmi_api::{Phase, labels};

const PATIENCE: Duration = Duration::from_secs(120);

fn ten_steps() -> String {
    let names = [
        "preflight",
        "disable-cvo",
        "allow-multi-vcenter",
        "backup-cpms",
        "update-secrets",
        "create-tags",
        "create-folder",
        "update-infra",
        "update-cloud-config",
        "restart-pods",
    ];
    let steps: Vec<(&str, &str)> = names.iter().map(|n| (*n, "")).collect();
    pipeline(&steps)
}

/// Every step ran exactly once, as attempt 1, and has exactly one Job.
async fn assert_each_step_ran_once(rig: &Rig, steps: usize) {
    let runs = rig.steps.runs();
    let mut per_step: BTreeMap<&str, usize> = BTreeMap::new();
    for run in &runs {
        *per_step.entry(run.step.as_str()).or_default() += 1;
        assert_eq!(run.attempt, 1, "{runs:?}");
    }
    assert_eq!(per_step.len(), steps, "{runs:?}");
    assert!(
        per_step.values().all(|n| *n == 1),
        "a step ran twice: {runs:?}"
    );
    assert_eq!(rig.jobs().await.len(), steps);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_orchestrator_at_random_moments_repeats_and_loses_nothing() {
    let mut rig = Rig::new(&ten_steps()).await;
    for step in ["disable-cvo", "backup-cpms", "create-tags", "update-infra"] {
        rig.steps.set(step, false, "sleep 1").unwrap();
    }
    let mut random = TestRandom::from_env_or_clock();
    rig.start_orchestrator("a");
    rig.create_vmi("move", "Running", &[]).await;
    let mut kills = 0;
    let started = Instant::now();
    while kills < 20 {
        // Restarts keep the identity (as a StatefulSet pod would), so the
        // new process renews the lease at once.
        tokio::time::sleep(Duration::from_millis(100 + random.below(600))).await;
        rig.kill_orchestrator("a");
        kills += 1;
        rig.start_orchestrator("a");
        let done = rig
            .vmis()
            .get("move")
            .await
            .unwrap()
            .status
            .and_then(|s| s.phase)
            == Some(Phase::Succeeded);
        if done {
            break;
        }
    }
    rig.wait_for_phase("move", Phase::Succeeded, PATIENCE).await;
    eprintln!(
        "restart safety: {kills} kills over {:.1} s; every step ran once",
        started.elapsed().as_secs_f64()
    );
    assert!(kills >= 10, "the pipeline ended after only {kills} kills");
    assert_each_step_ran_once(&rig, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_never_run_a_step_twice_and_the_survivor_takes_over() {
    let mut rig = Rig::new(&ten_steps()).await;
    for step in [
        "disable-cvo",
        "backup-cpms",
        "create-tags",
        "update-infra",
        "restart-pods",
    ] {
        rig.steps.set(step, false, "sleep 1").unwrap();
    }
    let port_a = rig.start_orchestrator("a");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let port_b = rig.start_orchestrator("b");
    tokio::time::sleep(Duration::from_millis(500)).await;
    rig.create_vmi("move", "Running", &[]).await;
    let leader = |port: u16| {
        http_get(port, "/metrics")
            .lines()
            .any(|l| l == "vmi_leader 1")
    };
    assert!(leader(port_a), "a started first and leads");
    assert!(!leader(port_b), "b waits");
    // Let a few steps run, then crash the leader.
    rig.wait_for("move", "three steps done", PATIENCE, |v| {
        v.status.as_ref().is_some_and(|s| s.steps.len() >= 4)
    })
    .await;
    rig.kill_orchestrator("a");
    rig.wait_for_phase("move", Phase::Succeeded, PATIENCE).await;
    assert!(leader(port_b), "b took over");
    assert_each_step_ran_once(&rig, 10).await;
    let creators: BTreeMap<String, usize> =
        rig.jobs().await.iter().fold(BTreeMap::new(), |mut m, job| {
            let by = job.metadata.annotations.as_ref().unwrap()[labels::CREATED_BY].clone();
            *m.entry(by).or_default() += 1;
            m
        });
    assert_eq!(
        creators.len(),
        2,
        "both replicas created Jobs in turn: {creators:?}"
    );
}

/// An orchestrator that leads but may not read vmis (a Role without them)
/// still stops within seconds of SIGTERM, as a Deployment's rollout or a
/// drained node asks, and says why it could not work meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_on_sigterm_even_when_it_cannot_read_vmis() {
    let mut rig = Rig::new(&ten_steps()).await;
    // It may lead and publish events, nothing else.
    let kubeconfig = rig
        .account_kubeconfig(
            "blind",
            serde_json::json!([
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
                {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}
            ]),
        )
        .await;
    let port = rig.start_orchestrator_as("blind", &kubeconfig);
    let deadline = Instant::now() + PATIENCE;
    let leads = || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && http_get(port, "/metrics")
                .lines()
                .any(|l| l == "vmi_leader 1")
    };
    while !leads() {
        assert!(Instant::now() < deadline, "{}", rig.orchestrator_logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let it try to list the vmis for a while.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let logs = rig.orchestrator_logs();
    assert!(
        logs.contains("cannot read the vmis or their Jobs")
            && logs.contains(
                r#"cannot list resource "vspheremigrationinfra" in API group "config.openshift.io""#
            ),
        "it says in plain words that it may not read the vmis: {logs}"
    );
    assert!(
        !logs.contains("Status {"),
        "no debug dump of the API's answer: {logs}"
    );
    assert!(
        logs.contains("forbidden")
            && logs.contains("cannot list resource \"vspheremigrationinfra\""),
        "it says it may not read the vmis: {logs}"
    );
    let pid = rig.orchestrator_pid("blind").unwrap();
    let started = Instant::now();
    vmi_sim::children::stop(&[pid], Duration::from_secs(25));
    let took = started.elapsed();
    println!("stopped {} ms after SIGTERM", took.as_millis());
    assert!(
        took < Duration::from_secs(15),
        "it took {took:?} to stop: {}",
        rig.orchestrator_logs()
    );
    assert!(
        rig.orchestrator_logs().contains("stopping"),
        "{}",
        rig.orchestrator_logs()
    );
}
