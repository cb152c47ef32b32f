//! Volume-migration cost as the number of volumes grows (DESIGN §9): step
//! 13 in Copy mode moves 10, 50 and 200 small vSphere CSI volumes (64 KiB
//! of data each, no workloads) from the source vcsim to the target, run as
//! `vmi-step migrate-volumes` the way a Job runs it. For each size it
//! prints the total time, the time per volume, the time per volume times
//! the concurrency (the per-volume overhead one lane pays), and the vCenter
//! round trips per volume counted from the step's own logs (one line per
//! SOAP call, vAPI call and datastore file transfer).
//!
//! Cost should grow linearly with the volumes and shrink with the
//! concurrency: time per volume and round trips per volume stay flat.
//!
//! Run: `cargo bench -p vmi-step-runner --bench volume_migration` (all
//! three sizes, about 4 minutes), or name sizes and the concurrency:
//! `cargo bench -p vmi-step-runner --bench volume_migration -- 10 50 --concurrency 8`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use vmi_api::Step;
use vmi_api::migration::MigrationPath;
use vmi_sim::seed::{SeedOptions, SimCluster};
use vmi_sim::volumes;

/// Bytes written into each volume.
const DATA: usize = 64 * 1024;

/// The messages of the log lines that are one round trip each.
const ROUND_TRIP_LINES: [&str; 3] = ["vCenter call", "vAPI call", "datastore file transfer"];

struct Measure {
    volumes: usize,
    seeding: Duration,
    total: Duration,
    round_trips: usize,
}

async fn measure(volumes: usize, concurrency: usize) -> Measure {
    let cluster = SimCluster::start(SeedOptions::default())
        .await
        .expect("simulated cluster");
    let client = cluster.client().await.expect("client");
    let seeding = Instant::now();
    volumes::seed_bare_volumes(&cluster, "bulk", volumes, DATA)
        .await
        .expect("seed volumes");
    let seeding = seeding.elapsed();
    let vmi = support::step_vmi_with(
        &cluster,
        &client,
        Some(MigrationPath::Native),
        &[Step::MigrateVolumes],
        |vmi| {
            vmi["spec"]["volumes"] =
                json!({"migrate": true, "mode": "Copy", "concurrency": concurrency})
        },
    )
    .await;
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_vmi-step"))
        .args([
            "migrate-volumes",
            "--vmi",
            &format!("{}/{}", vmi.namespace, vmi.name),
            "--kubeconfig",
        ])
        .arg(cluster.plane.kubeconfig())
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info")
        .output()
        .expect("run vmi-step");
    let total = started.elapsed();
    let log = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "step 13 failed:\n{}",
        log.lines().rev().take(5).collect::<Vec<_>>().join("\n")
    );
    let round_trips = log
        .lines()
        .filter(|line| {
            ROUND_TRIP_LINES
                .iter()
                .any(|m| line.contains(&format!("\"{m}\"")))
        })
        .count();
    Measure {
        volumes,
        seeding,
        total,
        round_trips,
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut concurrency = vmi_step_runner::steps::migrate_volumes::DEFAULT_CONCURRENCY;
    let mut sizes = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--concurrency" {
            concurrency = iter
                .next()
                .and_then(|c| c.parse().ok())
                .expect("--concurrency N");
        } else if let Ok(size) = arg.parse() {
            sizes.push(size);
        }
    }
    if sizes.is_empty() {
        sizes = vec![10, 50, 200];
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "step 13 migrate-volumes, Copy mode, {} KiB per volume, concurrency {concurrency}",
        DATA / 1024
    );
    println!(
        "{:>8} {:>10} {:>12} {:>16} {:>12} {:>14} {:>10}",
        "volumes",
        "total s",
        "per vol ms",
        "per vol × conc",
        "round trips",
        "trips per vol",
        "seeding s"
    );
    for size in sizes {
        let m = runtime.block_on(measure(size, concurrency));
        let per = m.total.as_secs_f64() * 1000.0 / m.volumes as f64;
        println!(
            "{:>8} {:>10.1} {:>12.0} {:>16.0} {:>12} {:>14.1} {:>10.1}",
            m.volumes,
            m.total.as_secs_f64(),
            per,
            per * concurrency as f64,
            m.round_trips,
            m.round_trips as f64 / m.volumes as f64,
            m.seeding.as_secs_f64()
        );
    }
}
