//! Starts a control plane and a vCenter simulator, prints their pids and
//! directories, then panics (`panic`) or waits to be killed (`wait`). The
//! tests use it to prove that no process or directory outlives its test.

use vmi_sim::ControlPlane;
use vmi_sim::vcsim::VCenterSim;

#[allow(clippy::print_stdout)]
fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let plane = ControlPlane::start().unwrap_or_else(|e| panic!("{e}"));
    let vcenter =
        VCenterSim::start("probe", "probe", "probe-password").unwrap_or_else(|e| panic!("{e}"));
    for process in plane.processes().iter().chain([&vcenter.process]) {
        println!("pid {}", process.pid);
    }
    println!("dir {}", plane.dir().display());
    println!("dir {}", vcenter.dir().display());
    println!("ready");
    match mode.as_str() {
        "panic" => panic!("vmi-sim-probe: panicking on purpose with children running"),
        "wait" => loop {
            std::thread::sleep(std::time::Duration::from_secs(60));
        },
        other => panic!("usage: vmi-sim-probe panic|wait (got {other:?})"),
    }
}
