//! Two vCenter simulators (govmomi's vcsim) standing in for the source and
//! target vCenters, each with its own credentials, its own TLS certificate
//! signed by its own CA (so verification by CA bundle and by thumbprint can be
//! exercised), and an inventory shaped like an installer-provisioned cluster.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use crate::SimError;
use crate::children::{self, Process};
use crate::pki::{self, Authority};
use crate::tools::Tools;

/// A running vCenter simulator.
#[derive(Debug)]
pub struct VCenterSim {
    /// `source` or `target`, for messages.
    pub role: String,
    /// The vCenter's server name: a loopback address of its own
    /// (`127.0.0.10`, `127.0.0.11`, …), so that two simulators have different
    /// server names as two vCenters would.
    pub server: String,
    /// Its port: at most 32767, the Infrastructure CRD's limit.
    pub port: u16,
    /// The user that can log in.
    pub username: String,
    /// That user's password.
    pub password: String,
    /// PEM of the CA that signed the simulator's certificate.
    pub ca_pem: String,
    /// Path of that CA in a file.
    pub ca_file: PathBuf,
    /// SHA-1 thumbprint of the simulator's certificate (`AA:BB:…`).
    pub thumbprint_sha1: String,
    /// SHA-256 thumbprint of the simulator's certificate.
    pub thumbprint_sha256: String,
    /// The simulator process.
    pub process: Process,
    dir: PathBuf,
}

impl VCenterSim {
    /// Starts an empty simulator (no datacenter) that accepts only
    /// `username` / `password`.
    pub fn start(role: &str, username: &str, password: &str) -> Result<VCenterSim, SimError> {
        VCenterSim::start_with(role, username, password, &[])
    }

    /// Like [`VCenterSim::start`], with more vcsim flags, e.g.
    /// `["-method-delay", "PowerOffVM_Task:3000"]` to make a method (and its
    /// task) slow.
    pub fn start_with(
        role: &str,
        username: &str,
        password: &str,
        extra_flags: &[&str],
    ) -> Result<VCenterSim, SimError> {
        let tools = Tools::get()?;
        let server = next_loopback_address()?;
        let port = free_port_at_most_32767(&server)?;
        let dir = children::temp_dir(&format!("vcsim-{role}"))?;
        let ca = Authority::new(&format!("vmi-sim {role} vCenter CA"))?;
        let leaf = ca.server(&[server.as_str()])?;
        let ca_file = pki::write_file(&dir, "ca.crt", &ca.cert_pem())?;
        let cert = pki::write_file(&dir, "vcsim.crt", &leaf.cert_pem)?;
        let key = pki::write_file(&dir, "vcsim.key", &leaf.key_pem)?;
        let user_file = pki::write_file(&dir, "username", username)?;
        let password_file = pki::write_file(&dir, "password", password)?;
        let (thumbprint_sha1, thumbprint_sha256) = pki::thumbprints(&leaf.cert_der);

        let mut command = Command::new(tools.bin("vcsim"));
        command
            .arg("-l")
            .arg(format!("{server}:{port}"))
            .args(["-dc", "0", "-standalone-host", "0", "-vm", "0"])
            .arg("-tlscert")
            .arg(&cert)
            .arg("-tlskey")
            .arg(&key)
            // Files, so that neither secret appears on a command line.
            .arg("-username")
            .arg(&user_file)
            .arg("-password")
            .arg(&password_file)
            .args(extra_flags)
            // vcsim keeps its datastores under $TMPDIR: inside our directory,
            // they go when it does, even if vcsim is killed.
            .env("TMPDIR", &dir);
        let log = dir.join("vcsim.log");
        let process = children::spawn(&format!("vcsim ({role})"), command, &log)?;
        wait_for_listening(&process, &log)?;
        Ok(VCenterSim {
            role: role.to_owned(),
            server,
            port,
            username: username.to_owned(),
            password: password.to_owned(),
            ca_pem: ca.cert_pem(),
            ca_file,
            thumbprint_sha1,
            thumbprint_sha256,
            process,
            dir,
        })
    }

    /// The SOAP endpoint, `https://<server>:<port>/sdk`.
    pub fn sdk_url(&self) -> String {
        format!("https://{}:{}/sdk", self.server, self.port)
    }

    /// A directory of this simulator for files tests need (e.g. datastores).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `govc` against this simulator, verifying its certificate with its
    /// CA, and returns its stdout.
    pub fn govc(&self, args: &[&str]) -> Result<String, SimError> {
        self.govc_as(&self.username, &self.password, args)
    }

    /// Runs `govc` as `username` / `password` (e.g. to prove a wrong password
    /// is refused).
    pub fn govc_as(
        &self,
        username: &str,
        password: &str,
        args: &[&str],
    ) -> Result<String, SimError> {
        self.govc_target().govc_as(username, password, args)
    }

    /// What it takes to run `govc` against this simulator, owned, for a
    /// stand-in that outlives the borrow (e.g. [`crate::machine_api`]).
    pub fn govc_target(&self) -> GovcTarget {
        GovcTarget {
            role: self.role.clone(),
            server: self.server.clone(),
            port: self.port,
            ca_file: self.ca_file.clone(),
            home: self.dir.join("govmomi-home"),
        }
    }
}

/// One simulator as `govc` reaches it: its address and CA, without its
/// credentials (the caller brings those). Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GovcTarget {
    /// `source` or `target`, for messages.
    pub role: String,
    /// The vCenter's server name (`workspace.server` of a provider spec).
    pub server: String,
    /// Its port.
    pub port: u16,
    ca_file: PathBuf,
    home: PathBuf,
}

impl GovcTarget {
    /// The SOAP endpoint, `https://<server>:<port>/sdk`.
    pub fn sdk_url(&self) -> String {
        format!("https://{}:{}/sdk", self.server, self.port)
    }

    /// Runs `govc` as `username` / `password`, verifying the simulator's
    /// certificate with its CA, and returns its stdout. Blocking.
    pub fn govc_as(
        &self,
        username: &str,
        password: &str,
        args: &[&str],
    ) -> Result<String, SimError> {
        let tools = Tools::get()?;
        let output = Command::new(tools.bin("govc"))
            .args(args)
            .env("GOVC_URL", self.sdk_url())
            .env("GOVC_USERNAME", username)
            .env("GOVC_PASSWORD", password)
            .env("GOVC_TLS_CA_CERTS", &self.ca_file)
            .env_remove("GOVC_INSECURE")
            // Every call logs in anew (a cached session would hide a wrong
            // password), and govc writes nothing to the user's home.
            .env("GOVC_PERSIST_SESSION", "false")
            .env("GOVMOMI_HOME", &self.home)
            .output()
            .map_err(|e| SimError::Setup(format!("cannot run govc: {e}")))?;
        if !output.status.success() {
            return Err(SimError::Setup(format!(
                "govc {} on the {} vCenter failed: {}",
                args.join(" "),
                self.role,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// Waits for the `export GOVC_URL=…` line vcsim prints once it listens.
fn wait_for_listening(process: &Process, log: &Path) -> Result<(), SimError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("export GOVC_URL="))
        {
            return Ok(());
        }
        if !process.is_running() || Instant::now() > deadline {
            return Err(SimError::Setup(format!(
                "{} did not start listening:\n{}",
                process.name,
                process.log_tail(20)
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A loopback address no other simulator of this process uses.
fn next_loopback_address() -> Result<String, SimError> {
    static NEXT: AtomicU8 = AtomicU8::new(10);
    let last = NEXT.fetch_add(1, Ordering::Relaxed);
    if last == u8::MAX {
        return Err(SimError::Setup(
            "out of loopback addresses for vCenter simulators".into(),
        ));
    }
    Ok(format!("127.0.0.{last}"))
}

/// A free TCP port in 20000..=32767 on `address`.
fn free_port_at_most_32767(address: &str) -> Result<u16, SimError> {
    let start = 20000 + (std::process::id() % 12000) as u16;
    (0..12768u16)
        .map(|i| 20000 + (start - 20000 + i) % 12768)
        .find(|port| TcpListener::bind((address, *port)).is_ok())
        .ok_or_else(|| SimError::Setup(format!("no free port at most 32767 on {address}")))
}
