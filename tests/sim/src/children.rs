//! Child processes of the simulated cluster, and the guarantee that none of
//! them outlives the test process.
//!
//! Two mechanisms, because Rust never drops statics and a test process can
//! also be killed:
//! - every child is started with `PR_SET_PDEATHSIG = SIGKILL` from one thread
//!   that lives as long as the process (the signal follows the *thread* that
//!   forked, so forking from a short-lived test thread would kill the child
//!   when that test ends);
//! - an `atexit` handler stops the children gracefully (SIGTERM, then SIGKILL
//!   after a grace period) and removes their temporary directories when the
//!   test binary exits normally or after a failed test.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::SimError;

struct Request {
    command: Command,
    reply: mpsc::Sender<std::io::Result<Child>>,
}

#[derive(Default)]
struct Registry {
    children: Vec<(String, Child)>,
    dirs: Vec<tempfile::TempDir>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    children: Vec::new(),
    dirs: Vec::new(),
});
static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();

fn spawner() -> &'static Mutex<mpsc::Sender<Request>> {
    SPAWNER.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("vmi-sim-spawner".into())
            .spawn(move || {
                for mut request in receiver {
                    let _ = request.reply.send(request.command.spawn());
                }
            })
            .map(|_| ())
            .unwrap_or_else(|err| eprintln!("vmi-sim: cannot start the spawner thread: {err}"));
        // SAFETY: registering a plain `extern "C" fn` without captured state.
        unsafe {
            libc::atexit(stop_all_at_exit);
        }
        sweep_stale_dirs();
        Mutex::new(sender)
    })
}

/// A process of the simulated cluster, with its output in a log file.
#[derive(Debug, Clone)]
pub struct Process {
    /// What it is, e.g. `kube-apiserver`.
    pub name: String,
    /// Its process id.
    pub pid: u32,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl Process {
    /// The last `lines` lines of its log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Whether the process is still running (not exited, not a zombie).
    pub fn is_running(&self) -> bool {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return false;
        };
        // The state follows the parenthesised command name.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z")
    }
}

/// Starts `command` with its output in `log`, tied to this process's life.
pub fn spawn(name: &str, command: Command, log: &Path) -> Result<Process, SimError> {
    let child = spawn_waitable(name, command, log)?;
    let process = Process {
        name: name.to_owned(),
        pid: child.id(),
        log: log.to_owned(),
    };
    if let Ok(mut registry) = REGISTRY.lock() {
        registry.children.push((name.to_owned(), child));
    }
    Ok(process)
}

/// Starts `command` like [`spawn`] (output in `log`, killed when this
/// process dies) but hands the child to the caller, who waits for it: for
/// short-lived processes such as the step pods the kubelet stand-in runs.
pub fn spawn_waitable(name: &str, mut command: Command, log: &Path) -> Result<Child, SimError> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| SimError::Setup(format!("cannot create {}: {e}", log.display())))?;
    let err = out
        .try_clone()
        .map_err(|e| SimError::Setup(format!("cannot open {}: {e}", log.display())))?;
    command.stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (reply, answer) = mpsc::channel();
    spawner()
        .lock()
        .map_err(|_| SimError::Setup("the spawner lock is poisoned".into()))?
        .send(Request { command, reply })
        .map_err(|_| SimError::Setup("the spawner thread is gone".into()))?;
    answer
        .recv()
        .map_err(|_| SimError::Setup("the spawner thread is gone".into()))?
        .map_err(|e| SimError::Setup(format!("cannot start {name}: {e}")))
}

/// The prefix of every temporary directory of the simulated cluster; the
/// owner's pid follows it, so that [`sweep_stale_dirs`] can tell whose it is.
const DIR_PREFIX: &str = "vmi-sim.";

/// A temporary directory (`$TMPDIR/vmi-sim.<pid>.<purpose>.XXXX`) removed
/// when the test process exits.
pub fn temp_dir(purpose: &str) -> Result<PathBuf, SimError> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("{DIR_PREFIX}{}.{purpose}.", std::process::id()))
        .tempdir()
        .map_err(|e| SimError::Setup(format!("cannot create a temporary directory: {e}")))?;
    let path = dir.path().to_owned();
    spawner(); // make sure the exit handler is registered
    if let Ok(mut registry) = REGISTRY.lock() {
        registry.dirs.push(dir);
    }
    Ok(path)
}

/// Stops the processes with these pids (SIGTERM, then SIGKILL after `grace`),
/// newest first, and reaps them.
pub fn stop(pids: &[u32], grace: Duration) {
    let Ok(mut registry) = REGISTRY.lock() else {
        return;
    };
    let mut chosen: Vec<_> = registry
        .children
        .extract_if(.., |(_, child)| pids.contains(&child.id()))
        .collect();
    drop(registry);
    chosen.reverse();
    terminate(chosen, grace);
}

/// Stops `children` one at a time, in the order given: a server must go
/// before what it depends on (kube-apiserver still talks to etcd while it
/// shuts down).
fn terminate(children: Vec<(String, Child)>, grace: Duration) {
    for (name, mut child) in children {
        // SAFETY: sending a signal to a child we own.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && !matches!(child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !matches!(child.try_wait(), Ok(Some(_))) {
            eprintln!(
                "vmi-sim: {name} (pid {}) ignored SIGTERM for {grace:?}; killing it",
                child.id()
            );
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Removes the temporary directories of simulated clusters whose process is
/// gone: only a process killed outright (SIGKILL) leaves them behind, and its
/// children died with it.
pub fn sweep_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split('.').next())
        else {
            continue;
        };
        let alive = pid
            .parse::<u32>()
            .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

extern "C" fn stop_all_at_exit() {
    let Ok(mut registry) = REGISTRY.try_lock() else {
        return;
    };
    let children = std::mem::take(&mut registry.children);
    let dirs = std::mem::take(&mut registry.dirs);
    drop(registry);
    terminate(
        children.into_iter().rev().collect(),
        Duration::from_secs(10),
    );
    drop(dirs);
}
