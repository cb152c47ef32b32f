//! Step-to-step latency of the orchestrator on the simulated cluster: the
//! time from "Job of step N is seen complete" to "Job of step N+1 is seen
//! created", over a pipeline of trivial steps, as p50/p99, and the
//! orchestrator's peak resident memory.
//!
//! `cargo bench -p vmi-orchestrator --bench step_latency [-- STEPS]`
//! (100 steps by default). Both moments are taken from one watch on the
//! namespace's Jobs, so the figure is what a user of the API would see.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use support::{Rig, pipeline};
use vmi_api::Phase;

fn complete(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
        })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() {
    let steps: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(bench(steps));
}

async fn bench(steps: usize) {
    let names: Vec<String> = (0..steps).map(|i| format!("s{i:03}")).collect();
    let definitions: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "")).collect();
    let mut rig = Rig::new(&pipeline(&definitions)).await;
    let jobs: Api<Job> = Api::namespaced(rig.client.clone(), &rig.namespace);
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let watch = tokio::spawn(async move {
        let mut events = watcher::watcher(jobs, watcher::Config::default()).boxed();
        while let Some(Ok(event)) = events.next().await {
            let now = Instant::now();
            match event {
                Event::Apply(job) | Event::InitApply(job) => {
                    let _ = sender.send((now, job.name_any(), complete(&job)));
                }
                _ => {}
            }
        }
    });
    rig.start_orchestrator("bench");
    let started = Instant::now();
    rig.create_vmi("bench", "Running", &[]).await;
    rig.wait_for_phase(
        "bench",
        Phase::Succeeded,
        Duration::from_secs(30 + 5 * steps as u64),
    )
    .await;
    let total = started.elapsed();
    let peak_kib = rig
        .orchestrator_pid("bench")
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|kib| kib.parse::<u64>().ok());
    watch.abort();

    let mut created: BTreeMap<String, Instant> = BTreeMap::new();
    let mut completed: BTreeMap<String, Instant> = BTreeMap::new();
    while let Ok((at, name, done)) = receiver.try_recv() {
        created.entry(name.clone()).or_insert(at);
        if done {
            completed.entry(name).or_insert(at);
        }
    }
    let job = |i: usize| format!("vmi-step-{i:02}-{}", names[i]);
    let mut gaps: Vec<Duration> = (0..steps - 1)
        .filter_map(|i| {
            let done = completed.get(&job(i))?;
            let next = created.get(&job(i + 1))?;
            Some(next.saturating_duration_since(*done))
        })
        .collect();
    gaps.sort();
    if gaps.is_empty() {
        println!("no step-to-step gaps measured");
        return;
    }
    let mean = gaps.iter().sum::<Duration>() / gaps.len() as u32;
    println!(
        "orchestrator step-to-step latency over {} trivial steps",
        steps
    );
    println!("  gaps measured     {}", gaps.len());
    println!(
        "  p50               {:.1} ms",
        percentile(&gaps, 0.50).as_secs_f64() * 1000.0
    );
    println!(
        "  p99               {:.1} ms",
        percentile(&gaps, 0.99).as_secs_f64() * 1000.0
    );
    println!("  mean              {:.1} ms", mean.as_secs_f64() * 1000.0);
    println!(
        "  max               {:.1} ms",
        gaps[gaps.len() - 1].as_secs_f64() * 1000.0
    );
    println!(
        "  whole pipeline    {:.1} s ({:.2} s per step, pod start and Job controller included)",
        total.as_secs_f64(),
        total.as_secs_f64() / steps as f64
    );
    match peak_kib {
        Some(kib) => println!("  orchestrator peak RSS {:.1} MiB", kib as f64 / 1024.0),
        None => println!("  orchestrator peak RSS unknown"),
    }
}
