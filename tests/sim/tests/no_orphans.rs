//! No process or temporary directory of the simulated cluster outlives the
//! test process: not when a test panics, not when the process is killed.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vmi_sim::children::Process;

struct Started {
    pids: Vec<u32>,
    dirs: Vec<PathBuf>,
}

fn read_until_ready(lines: impl Iterator<Item = String>) -> Started {
    let mut started = Started {
        pids: Vec::new(),
        dirs: Vec::new(),
    };
    for line in lines {
        if let Some(pid) = line.strip_prefix("pid ") {
            started.pids.push(pid.parse().unwrap());
        } else if let Some(dir) = line.strip_prefix("dir ") {
            started.dirs.push(dir.into());
        } else if line == "ready" {
            break;
        }
    }
    assert_eq!(
        started.pids.len(),
        4,
        "etcd, kube-apiserver, kube-controller-manager and vcsim were started"
    );
    started
}

fn running(pid: u32) -> bool {
    Process {
        name: String::new(),
        pid,
        log: PathBuf::new(),
    }
    .is_running()
}

fn all_gone_within(pids: &[u32], limit: Duration) -> Vec<u32> {
    let deadline = Instant::now() + limit;
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|p| running(*p)).collect();
        if alive.is_empty() || Instant::now() > deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn probe() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vmi-sim-probe"));
    command.stdout(Stdio::piped()).stderr(Stdio::null());
    command
}

#[test]
fn a_panicking_test_process_stops_its_children_and_removes_its_directories() {
    let output = probe().arg("panic").output().unwrap();
    assert_eq!(output.status.code(), Some(101), "the probe panicked");
    let started = read_until_ready(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned),
    );
    assert_eq!(
        all_gone_within(&started.pids, Duration::from_secs(1)),
        Vec::<u32>::new(),
        "processes outlived the panic"
    );
    for dir in &started.dirs {
        assert!(!dir.exists(), "{} outlived the panic", dir.display());
    }
}

#[test]
fn a_killed_test_process_takes_its_children_along_and_its_directories_are_swept() {
    let mut child = probe().arg("wait").spawn().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let started = read_until_ready(stdout.lines().map_while(Result::ok));
    assert!(started.pids.iter().all(|p| running(*p)));
    child.kill().unwrap(); // SIGKILL: no exit handler runs
    child.wait().unwrap();
    assert_eq!(
        all_gone_within(&started.pids, Duration::from_secs(5)),
        Vec::<u32>::new(),
        "processes outlived a SIGKILL"
    );
    assert!(
        started.dirs.iter().all(|d| d.exists()),
        "nothing can remove directories at SIGKILL"
    );
    vmi_sim::children::sweep_stale_dirs();
    for dir in &started.dirs {
        assert!(!dir.exists(), "{} was not swept", dir.display());
    }
}
