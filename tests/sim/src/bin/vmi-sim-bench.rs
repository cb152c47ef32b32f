//! Prints how long the simulated cluster takes to start, warm:
//! `cargo run --release -p vmi-sim --bin vmi-sim-bench [runs]`.
//!
//! Figures, not assertions: the control plane alone (etcd, kube-apiserver,
//! kube-controller-manager until the default service account exists), one
//! vCenter simulator with its inventory, and the whole seeded cluster.

use std::time::{Duration, Instant};

use vmi_sim::ControlPlane;
use vmi_sim::inventory::Inventory;
use vmi_sim::seed::{SeedOptions, SimCluster};
use vmi_sim::vcsim::VCenterSim;

#[allow(clippy::print_stdout)]
fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what:<42} runs {:>2}  min {:>7.0} ms  median {:>7.0} ms  max {:>7.0} ms",
        samples.len(),
        ms(samples[0]),
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1])
    );
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let began = Instant::now();
    let value = f();
    (value, began.elapsed())
}

fn main() -> Result<(), vmi_sim::SimError> {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(3)
        .max(1);
    vmi_sim::Tools::get()?; // build or find the tools outside the timings

    let mut plane_times = Vec::new();
    for _ in 0..runs {
        let (plane, took) = timed(ControlPlane::start);
        plane?.stop();
        plane_times.push(took);
    }
    report("control plane (etcd, apiserver, kcm)", plane_times);

    let mut vcenter_times = Vec::new();
    for i in 0..runs {
        let (result, took) = timed(|| {
            let vcenter = VCenterSim::start(&format!("bench-{i}"), "bench", "bench-password")?;
            Inventory::source("ocp-bench").create_in(&vcenter)?;
            vmi_sim::children::stop(&[vcenter.process.pid], Duration::from_secs(5));
            Ok::<_, vmi_sim::SimError>(())
        });
        result?;
        vcenter_times.push(took);
    }
    report("vCenter simulator with IPI inventory", vcenter_times);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| vmi_sim::SimError::Setup(e.to_string()))?;
    let mut cluster_times = Vec::new();
    for _ in 0..runs {
        let (cluster, took) = timed(|| runtime.block_on(SimCluster::start(SeedOptions::default())));
        drop(cluster?);
        cluster_times.push(took);
    }
    report("whole seeded cluster (3 masters, 2 workers)", cluster_times);
    Ok(())
}
