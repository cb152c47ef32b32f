//! A real Kubernetes control plane for tests: etcd, kube-apiserver (RBAC and
//! service-account tokens on) and kube-controller-manager (Jobs, garbage
//! collection, Deployments, namespaces and service accounts work for real).
//!
//! Each instance has its own ports, certificates and temporary directory.
//! [`ControlPlane::shared`] gives one instance per test binary; tests isolate
//! themselves with [`ControlPlane::namespace`].

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::SimError;
use crate::children::{self, Process};
use crate::kubelet_api::{ContainerLogs, KubeletApi};
use crate::pki::{self, Authority, SigningKey};
use crate::tools::Tools;

/// A running control plane.
#[derive(Debug)]
pub struct ControlPlane {
    dir: PathBuf,
    kubeconfig: PathBuf,
    server: String,
    processes: Vec<Process>,
    /// kube-apiserver processes started by [`ControlPlane::restart_apiserver`],
    /// oldest first (the last one runs).
    restarted: std::sync::Mutex<Vec<Process>>,
    kubelet_api: KubeletApi,
    /// How long the start took.
    pub startup: Duration,
}

static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();

impl ControlPlane {
    /// The control plane shared by the tests of this test binary, started on
    /// first use and stopped when the binary exits.
    pub fn shared() -> Result<&'static ControlPlane, SimError> {
        SHARED
            .get_or_init(|| ControlPlane::start().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| SimError::Setup(e.clone()))
    }

    /// Starts a new control plane and waits until it serves requests and its
    /// controllers run. Retries on a port taken between choosing and binding.
    pub fn start() -> Result<ControlPlane, SimError> {
        let tools = Tools::get()?;
        let mut last = None;
        for _ in 0..3 {
            // The start waits on a runtime of its own, so it runs on a thread
            // of its own: callers may be inside a Tokio runtime.
            let attempt = std::thread::scope(|scope| scope.spawn(|| start_once(tools)).join());
            match attempt
                .unwrap_or_else(|_| Err(SimError::Setup("the control plane start panicked".into())))
            {
                Ok(plane) => return Ok(plane),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| SimError::Setup("the control plane did not start".into())))
    }

    /// The admin kubeconfig (user `admin` in `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The API server URL, `https://127.0.0.1:<port>`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The directory holding certificates, data and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The control plane's processes (etcd, kube-apiserver, kube-controller-manager).
    pub fn processes(&self) -> &[Process] {
        &self.processes
    }

    /// The kubelet API the API server calls for `pods/log`: every Node the
    /// harness creates reports its address and port.
    pub fn kubelet_api(&self) -> &KubeletApi {
        &self.kubelet_api
    }

    /// The container logs `pods/log` answers from.
    pub fn logs(&self) -> &ContainerLogs {
        self.kubelet_api.logs()
    }

    /// A new admin client. Create one per test: a client is bound to the
    /// Tokio runtime it was first used on.
    pub async fn client(&self) -> Result<Client, SimError> {
        client_from(&self.kubeconfig).await
    }

    /// Creates a namespace named `<prefix>-<n>`, unique in this control plane,
    /// and waits for its `default` service account (made by the controller
    /// manager). Returns its name.
    pub async fn namespace(&self, client: &Client, prefix: &str) -> Result<String, SimError> {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        let namespace: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
                .map_err(|e| SimError::Setup(e.to_string()))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .map_err(|e| SimError::Kube(format!("create namespace {name}"), e))?;
        wait_for_default_service_account(client, &name, Duration::from_secs(30)).await?;
        Ok(name)
    }

    /// Writes a kubeconfig at `path` that authenticates with a bearer `token`
    /// (e.g. a service account's), so RBAC applies to whoever uses it.
    pub fn write_token_kubeconfig(&self, token: &str, path: &Path) -> Result<(), SimError> {
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: vmi-sim\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: token\n  user:\n    token: {token}\ncontexts:\n- name: vmi-sim\n  context:\n    cluster: vmi-sim\n    user: token\ncurrent-context: vmi-sim\n",
            self.server,
            self.dir.join("serving-ca.crt").display()
        );
        let (dir, name) = (
            path.parent().unwrap_or(Path::new(".")),
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("kubeconfig"),
        );
        pki::write_file(dir, name, &yaml).map(|_| ())
    }

    /// Stops the processes (used by tests that own their control plane; the
    /// shared one stops when the test binary exits).
    pub fn stop(&self) {
        self.kubelet_api.stop();
        let mut pids: Vec<u32> = self.processes.iter().map(|p| p.pid).collect();
        if let Ok(restarted) = self.restarted.lock() {
            pids.extend(restarted.iter().map(|p| p.pid));
        }
        // children::stop goes newest first: a restarted kube-apiserver
        // stops before etcd, as the first one would.
        children::stop(&pids, Duration::from_secs(10));
    }

    /// The kube-apiserver process running now.
    pub fn apiserver(&self) -> Option<Process> {
        let restarted = self.restarted.lock().ok()?.last().cloned();
        restarted.or_else(|| {
            self.processes
                .iter()
                .find(|p| p.name == "kube-apiserver")
                .cloned()
        })
    }

    /// Restarts kube-apiserver as a rollout of its static pod would: stops
    /// it (SIGTERM, SIGKILL after `grace`), starts it again with the same
    /// command line (same port, certificates, etcd: etcd keeps every
    /// object) appending to the same log, and waits until `/readyz`
    /// answers `ok`. Returns how long the API was away. Blocking: call it
    /// from a thread that may block (`tokio::task::block_in_place`).
    /// For fault injection ([`crate::faults`]).
    pub fn restart_apiserver(&self, grace: Duration) -> Result<Duration, SimError> {
        let began = Instant::now();
        let old = self
            .apiserver()
            .ok_or_else(|| SimError::Setup("no kube-apiserver to restart".into()))?;
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", old.pid)).map_err(|e| {
            SimError::Setup(format!("cannot read kube-apiserver's command line: {e}"))
        })?;
        let words: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|w| !w.is_empty())
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        let (program, args) = words
            .split_first()
            .ok_or_else(|| SimError::Setup("kube-apiserver has an empty command line".into()))?;
        children::stop(&[old.pid], grace);
        let mut command = Command::new(program);
        command.args(args);
        // The port was just released; Go listens with SO_REUSEADDR, but a
        // start that loses a race for it is tried again.
        let mut last = None;
        for _ in 0..3 {
            let apiserver = children::spawn("kube-apiserver", command, &old.log)?;
            if let Ok(mut restarted) = self.restarted.lock() {
                restarted.push(apiserver.clone());
            }
            let kubeconfig = self.kubeconfig.clone();
            let ready = std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .map_err(|e| SimError::Setup(format!("no Tokio runtime: {e}")))?
                            .block_on(wait_ready(&apiserver, &kubeconfig))
                    })
                    .join()
            })
            .unwrap_or_else(|_| Err(SimError::Setup("the readiness wait panicked".into())));
            match ready {
                Ok(()) => return Ok(began.elapsed()),
                Err(err) if apiserver.is_running() => return Err(err),
                Err(err) => last = Some(err),
            }
            command = Command::new(program);
            command.args(args);
            std::thread::sleep(Duration::from_millis(500));
        }
        Err(last.unwrap_or_else(|| SimError::Setup("kube-apiserver did not restart".into())))
    }
}

/// An admin client from a kubeconfig file.
pub async fn client_from(kubeconfig: &Path) -> Result<Client, SimError> {
    let file = Kubeconfig::read_from(kubeconfig)
        .map_err(|e| SimError::Setup(format!("cannot read {}: {e}", kubeconfig.display())))?;
    let config = Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .map_err(|e| SimError::Setup(format!("kubeconfig {}: {e}", kubeconfig.display())))?;
    Client::try_from(config).map_err(|e| SimError::Kube("build a client".into(), e))
}

fn free_port() -> Result<u16, SimError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| SimError::Setup(format!("no free port on 127.0.0.1: {e}")))
}

fn start_once(tools: &Tools) -> Result<ControlPlane, SimError> {
    let began = Instant::now();
    let dir = children::temp_dir("kube")?;
    let (etcd_port, peer_port, api_port) = (free_port()?, free_port()?, free_port()?);
    let server = format!("https://127.0.0.1:{api_port}");

    let serving_ca = Authority::new("vmi-sim serving CA")?;
    let client_ca = Authority::new("vmi-sim client CA")?;
    let serving = serving_ca.server(&["localhost", "127.0.0.1"])?;
    let admin = client_ca.client("admin", &["system:masters"])?;
    // The API server's client certificate for kubelets, and the serving
    // certificate of the harness's kubelet API (which the API server does not
    // verify: no --kubelet-certificate-authority, see kubelet_api).
    let kubelet_client = client_ca.client("kube-apiserver-kubelet-client", &[])?;
    let kubelet_serving = serving_ca.server(&[crate::kubelet_api::KUBELET_ADDRESS])?;
    let sa_key = SigningKey::new()?;
    let file = |name: &str, contents: &str| pki::write_file(&dir, name, contents);
    let serving_ca_file = file("serving-ca.crt", &serving_ca.cert_pem())?;
    let client_ca_file = file("client-ca.crt", &client_ca.cert_pem())?;
    let serving_cert = file("apiserver.crt", &serving.cert_pem)?;
    let serving_key = file("apiserver.key", &serving.key_pem)?;
    let admin_cert = file("admin.crt", &admin.cert_pem)?;
    let admin_key = file("admin.key", &admin.key_pem)?;
    let kubelet_client_cert = file("apiserver-kubelet-client.crt", &kubelet_client.cert_pem)?;
    let kubelet_client_key = file("apiserver-kubelet-client.key", &kubelet_client.key_pem)?;
    let sa_private = file("sa-signer.key", &sa_key.private_pem)?;
    let sa_public = file("sa-signer.pub", &sa_key.public_pem)?;
    let kubeconfig = file(
        "admin.kubeconfig",
        &kubeconfig_yaml(&server, &serving_ca_file, &admin_cert, &admin_key),
    )?;

    let kubelet_api = KubeletApi::start(
        &kubelet_serving.cert_pem,
        &kubelet_serving.key_pem,
        &client_ca.cert_pem(),
    )?;
    let mut processes = Vec::new();
    let result = (|| {
        let mut etcd = Command::new(tools.bin("etcd"));
        etcd.args([
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
            format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
            format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-cluster=default=http://127.0.0.1:{peer_port}"),
            "--unsafe-no-fsync=true".into(),
            "--logger=zap".into(),
            "--log-level=warn".into(),
        ]);
        let etcd = children::spawn("etcd", etcd, &dir.join("etcd.log"))?;
        processes.push(etcd.clone());
        wait_until(&etcd, Duration::from_secs(30), || {
            http_ok(etcd_port, "/health")
        })?;

        let mut apiserver = Command::new(tools.bin("kube-apiserver"));
        apiserver.args([
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            format!("--secure-port={api_port}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--tls-cert-file={}", serving_cert.display()),
            format!("--tls-private-key-file={}", serving_key.display()),
            format!("--client-ca-file={}", client_ca_file.display()),
            "--authorization-mode=RBAC".into(),
            format!("--service-account-issuer={server}"),
            format!("--service-account-key-file={}", sa_public.display()),
            format!(
                "--service-account-signing-key-file={}",
                sa_private.display()
            ),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--allow-privileged=true".into(),
            // pods/log: the API server calls the kubelet API of the pod's
            // Node at its InternalIP (the default order starts with
            // Hostname, which does not resolve here) with this certificate.
            format!(
                "--kubelet-client-certificate={}",
                kubelet_client_cert.display()
            ),
            format!("--kubelet-client-key={}", kubelet_client_key.display()),
            "--kubelet-preferred-address-types=InternalIP".into(),
            "--profiling=false".into(),
            "--v=1".into(),
        ]);
        let apiserver =
            children::spawn("kube-apiserver", apiserver, &dir.join("kube-apiserver.log"))?;
        processes.push(apiserver.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SimError::Setup(format!("cannot start a Tokio runtime: {e}")))?;
        runtime.block_on(wait_ready(&apiserver, &kubeconfig))?;

        let mut controller_manager = Command::new(tools.bin("kube-controller-manager"));
        controller_manager.args([
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--authentication-kubeconfig={}", kubeconfig.display()),
            format!("--authorization-kubeconfig={}", kubeconfig.display()),
            format!(
                "--service-account-private-key-file={}",
                sa_private.display()
            ),
            format!("--root-ca-file={}", serving_ca_file.display()),
            "--use-service-account-credentials=false".into(),
            // No kubelet heartbeats here: the harness plays the kubelet, so
            // the node lifecycle controller would wrongly mark Nodes unreachable.
            "--controllers=*,-node-lifecycle-controller".into(),
            "--leader-elect=false".into(),
            // OpenShift's values (cluster-kube-controller-manager-operator
            // defaultconfig.yaml); the defaults (20/30) throttle the
            // controllers for a second while a cluster is seeded.
            "--kube-api-qps=150".into(),
            "--kube-api-burst=300".into(),
            "--bind-address=127.0.0.1".into(),
            "--secure-port=0".into(),
            "--cluster-name=vmi-sim".into(),
            "--v=1".into(),
        ]);
        let controller_manager = children::spawn(
            "kube-controller-manager",
            controller_manager,
            &dir.join("kube-controller-manager.log"),
        )?;
        processes.push(controller_manager.clone());
        runtime.block_on(async {
            let client = client_from(&kubeconfig).await?;
            wait_for_default_service_account(&client, "default", Duration::from_secs(60))
                .await
                .map_err(|e| {
                    SimError::Setup(format!(
                        "{e}\nkube-controller-manager log:\n{}",
                        controller_manager.log_tail(20)
                    ))
                })
        })
    })();
    if let Err(err) = result {
        kubelet_api.stop();
        children::stop(
            &processes.iter().map(|p| p.pid).collect::<Vec<_>>(),
            Duration::from_secs(5),
        );
        return Err(err);
    }
    Ok(ControlPlane {
        dir,
        kubeconfig,
        server,
        processes,
        restarted: std::sync::Mutex::new(Vec::new()),
        kubelet_api,
        startup: began.elapsed(),
    })
}

fn kubeconfig_yaml(server: &str, ca: &Path, cert: &Path, key: &Path) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: vmi-sim\n  cluster:\n    server: {server}\n    certificate-authority: {}\nusers:\n- name: admin\n  user:\n    client-certificate: {}\n    client-key: {}\ncontexts:\n- name: vmi-sim\n  context:\n    cluster: vmi-sim\n    user: admin\ncurrent-context: vmi-sim\n",
        ca.display(),
        cert.display(),
        key.display()
    )
}

/// A plain HTTP GET on 127.0.0.1 that answers 200.
fn http_ok(port: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

fn wait_until(
    process: &Process,
    limit: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), SimError> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        if !process.is_running() {
            return Err(SimError::Setup(format!(
                "{} exited during start:\n{}",
                process.name,
                process.log_tail(20)
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(SimError::Setup(format!(
        "{} not ready after {limit:?}:\n{}",
        process.name,
        process.log_tail(20)
    )))
}

async fn wait_ready(apiserver: &Process, kubeconfig: &Path) -> Result<(), SimError> {
    let client = client_from(kubeconfig).await?;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let request = http::Request::get("/readyz")
            .body(Vec::new())
            .map_err(|e| SimError::Setup(e.to_string()))?;
        if client
            .request_text(request)
            .await
            .is_ok_and(|body| body.trim() == "ok")
        {
            return Ok(());
        }
        if !apiserver.is_running() {
            return Err(SimError::Setup(format!(
                "kube-apiserver exited during start:\n{}",
                apiserver.log_tail(20)
            )));
        }
        if Instant::now() > deadline {
            return Err(SimError::Setup(format!(
                "kube-apiserver not ready after 90 s:\n{}",
                apiserver.log_tail(20)
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_default_service_account(
    client: &Client,
    namespace: &str,
    limit: Duration,
) -> Result<(), SimError> {
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + limit;
    loop {
        if accounts.get_opt("default").await.ok().flatten().is_some() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(SimError::Setup(format!(
                "namespace {namespace} has no default service account after {limit:?}: is kube-controller-manager running?"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
