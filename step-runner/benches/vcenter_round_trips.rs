//! vCenter round trips and wall time of vmi's client next to `govc` (built
//! from the same pinned govmomi as the simulator) doing the same work
//! against the same simulated vCenter:
//!
//! 1. create a folder, two tag categories, two tags, and attach both tags
//!    to the folder (what steps 05 and 06 do on one vCenter);
//! 2. list 500 VMs by name.
//!
//! Both sides count from a cold start (connect and log in included). govc
//! runs one process per command, with its session cache on (its default),
//! and its round trips are counted from its `-debug` request files.
//!
//! Run: `cargo bench -p vmi-step-runner --bench vcenter_round_trips`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use vmi_sim::inventory::Inventory;
use vmi_sim::tools::Tools;
use vmi_sim::vcsim::VCenterSim;
use vmi_step_runner::vsphere::tagging::Cardinality;
use vmi_step_runner::vsphere::{Credentials, Trust, VCenter};

const RUNS: usize = 3;
const VMS: usize = 500;

/// Round trips and wall time of one run.
#[derive(Clone, Copy)]
struct Run {
    round_trips: u64,
    wall: Duration,
}

fn median(runs: &mut [Run]) -> Run {
    runs.sort_by_key(|r| r.wall);
    runs[runs.len() / 2]
}

async fn connect(sim: &VCenterSim) -> VCenter {
    VCenter::connect(
        &sim.server,
        Some(sim.port),
        &Trust::CaBundle(sim.ca_pem.clone()),
        Credentials::new(&sim.username, &sim.password),
    )
    .await
    .expect("connect")
}

async fn vmi_tags(sim: &VCenterSim, run: usize) -> Run {
    let started = Instant::now();
    let vcenter = connect(sim).await;
    let parent = vcenter
        .find_by_inventory_path("/datacenter-a/vm")
        .await
        .expect("lookup")
        .expect("vm folder");
    let folder = vcenter
        .create_folder(&parent, &format!("vmi-bench-{run}"))
        .await
        .expect("folder");
    let tagging = vcenter.tagging().await.expect("tagging");
    for kind in ["region", "zone"] {
        let category = tagging
            .create_category(
                &format!("vmi-{kind}-{run}"),
                Cardinality::Single,
                &["Folder"],
            )
            .await
            .expect("category");
        let tag = tagging
            .create_tag(&category, &format!("vmi-{kind}-tag-{run}"))
            .await
            .expect("tag");
        tagging.attach(&tag, &folder).await.expect("attach");
    }
    let round_trips = vcenter.round_trips();
    let wall = started.elapsed();
    Run { round_trips, wall }
}

async fn vmi_lookup(sim: &VCenterSim) -> Run {
    let started = Instant::now();
    let vcenter = connect(sim).await;
    let root = vcenter.root_folder().clone();
    let vms = vcenter
        .objects_below(&root, "VirtualMachine", &["name"])
        .await
        .expect("lookup");
    assert_eq!(vms.len(), VMS, "the simulator holds {VMS} VMs");
    Run {
        round_trips: vcenter.round_trips(),
        wall: started.elapsed(),
    }
}

/// Runs the govc commands one after another and counts their requests.
fn govc(sim: &VCenterSim, commands: &[Vec<String>]) -> Run {
    let home = tempfile::tempdir().expect("temp dir");
    let debug = home.path().join("debug");
    let govc = Tools::get().expect("tools").bin("govc");
    let started = Instant::now();
    for args in commands {
        let output = Command::new(&govc)
            .args(args)
            .env("GOVC_URL", sim.sdk_url())
            .env("GOVC_USERNAME", &sim.username)
            .env("GOVC_PASSWORD", &sim.password)
            .env("GOVC_TLS_CA_CERTS", &sim.ca_file)
            .env("GOVMOMI_HOME", home.path())
            .env("GOVC_DEBUG", "true")
            .env("GOVC_DEBUG_PATH", &debug)
            .output()
            .expect("run govc");
        assert!(
            output.status.success(),
            "govc {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let wall = started.elapsed();
    Run {
        round_trips: count_requests(&debug),
        wall,
    }
}

/// govc writes `<client>-<n>.req.headers` per round trip.
fn count_requests(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                count_requests(&path)
            } else {
                u64::from(path.to_string_lossy().ends_with(".req.headers"))
            }
        })
        .sum()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn govc_tags(run: usize) -> Vec<Vec<String>> {
    let folder = format!("/datacenter-a/vm/govc-bench-{run}");
    let mut commands = vec![args(&["folder.create", &folder])];
    for kind in ["region", "zone"] {
        let category = format!("govc-{kind}-{run}");
        let tag = format!("govc-{kind}-tag-{run}");
        commands.push(args(&["tags.category.create", "-t", "Folder", &category]));
        commands.push(args(&["tags.create", "-c", &category, &tag]));
        commands.push(args(&["tags.attach", "-c", &category, &tag, &folder]));
    }
    commands
}

fn print(work: &str, client: &str, run: Run) {
    println!(
        "{work:<48} {client:<6} {:>11} {:>10.1}",
        run.round_trips,
        run.wall.as_secs_f64() * 1000.0
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let tags_sim = VCenterSim::start("bench-tags", "administrator", "pw-bench").expect("vcsim");
    Inventory::source("ocp-bench")
        .create_in(&tags_sim)
        .expect("inventory");
    let vms = VMS.to_string();
    let lookup_sim = VCenterSim::start_with(
        "bench-lookup",
        "administrator",
        "pw-bench",
        &["-dc", "1", "-cluster", "1", "-host", "1", "-vm", &vms],
    )
    .expect("vcsim");

    let mut vmi_tag_runs = Vec::new();
    let mut govc_tag_runs = Vec::new();
    let mut vmi_lookup_runs = Vec::new();
    let mut govc_lookup_runs = Vec::new();
    let lookup = vec![args(&["find", "/", "-type", "m"])];
    for run in 0..RUNS {
        vmi_tag_runs.push(runtime.block_on(vmi_tags(&tags_sim, run)));
        govc_tag_runs.push(govc(&tags_sim, &govc_tags(run)));
        vmi_lookup_runs.push(runtime.block_on(vmi_lookup(&lookup_sim)));
        govc_lookup_runs.push(govc(&lookup_sim, &lookup));
    }

    println!("median of {RUNS} runs, cold start (connect and login included)");
    println!(
        "{:<48} {:<6} {:>11} {:>10}",
        "work", "client", "round trips", "wall ms"
    );
    let tags = "folder + 2 categories + 2 tags + 2 attachments";
    print(tags, "vmi", median(&mut vmi_tag_runs));
    print(tags, "govc", median(&mut govc_tag_runs));
    let lookup = format!("lookup of {VMS} VMs");
    print(&lookup, "vmi", median(&mut vmi_lookup_runs));
    print(&lookup, "govc", median(&mut govc_lookup_runs));
}
