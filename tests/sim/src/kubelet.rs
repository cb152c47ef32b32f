//! A stand-in for the kubelet, so that the real Job controller of the
//! simulated cluster runs step Jobs to completion.
//!
//! There is no scheduler and no container runtime here. The stand-in binds
//! each pending pod of its namespace to its own Node, runs the pod's
//! container command as a local process (with the pod's environment and a
//! kubeconfig holding a token of the pod's service account, so RBAC applies
//! as in a real pod), and reports the pod's phase and exit code the way the
//! kubelet does, including the `FallbackToLogsOnError` termination message.
//! The Job controller then marks the Job complete or failed, deletes pods
//! past the Job's deadline, and so on. Each container's log is kept for
//! tests and served through `pods/log` by the control plane's kubelet API
//! (see [`crate::kubelet_api`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::SimError;
use crate::children;
use crate::control_plane::ControlPlane;
use crate::kubelet_api::{ContainerLogs, KubeletApi};

/// The kubelet caps a termination message taken from the log at 80 lines…
const MESSAGE_LINES: usize = 80;
/// …and 2048 bytes.
const MESSAGE_BYTES: usize = 2048;
/// How long the stand-in keeps trying to report a pod's exit while the API
/// server does not answer.
const REPORT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

/// One container run, as tests see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Namespace of the pod.
    pub namespace: String,
    /// The pod.
    pub pod: String,
    /// The Job that owns the pod (its `batch.kubernetes.io/job-name` label).
    pub job: Option<String>,
    /// The exit code, once the process ended (128 + signal when killed).
    pub exit_code: Option<i32>,
    /// Where its output is.
    pub log: PathBuf,
}

#[derive(Default)]
struct State {
    runs: HashMap<String, Run>,
    pids: HashMap<String, u32>,
}

/// A running kubelet stand-in for one namespace.
pub struct Kubelet {
    node: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

/// What the stand-in needs to run pods.
struct Runner {
    client: Client,
    namespace: String,
    node: String,
    dir: PathBuf,
    server: String,
    ca_file: PathBuf,
    extra_env: Vec<(String, String)>,
    state: Arc<Mutex<State>>,
    logs: ContainerLogs,
}

impl Kubelet {
    /// Starts a stand-in that runs the pods of `namespace` on a Node named
    /// `vmi-sim-<namespace>`, adding `extra_env` to every process (e.g.
    /// `PATH` with the test tools).
    pub async fn start(
        control_plane: &ControlPlane,
        client: Client,
        namespace: &str,
        extra_env: Vec<(String, String)>,
    ) -> Result<Kubelet, SimError> {
        let node = format!("vmi-sim-{namespace}");
        create_node(&client, &node, control_plane.kubelet_api()).await?;
        let dir = children::temp_dir("kubelet")?;
        let state = Arc::new(Mutex::new(State::default()));
        let runner = Arc::new(Runner {
            client: client.clone(),
            namespace: namespace.to_owned(),
            node: node.clone(),
            dir,
            server: control_plane.server().to_owned(),
            ca_file: control_plane.dir().join("serving-ca.crt"),
            extra_env,
            state: state.clone(),
            logs: control_plane.logs().clone(),
        });
        let pods: Api<Pod> = Api::namespaced(client, namespace);
        let task = tokio::spawn(async move {
            let mut events = watcher(pods, watcher::Config::default())
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(event) = events.next().await {
                if let Ok(pod) = event {
                    runner.clone().handle(pod).await;
                }
            }
        });
        Ok(Kubelet { node, state, task })
    }

    /// The Node the pods run on.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Every container run so far, in no particular order.
    pub fn runs(&self) -> Vec<Run> {
        self.state
            .lock()
            .map(|s| s.runs.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The runs of the pods of Job `job`.
    pub fn job_runs(&self, job: &str) -> Vec<Run> {
        self.runs()
            .into_iter()
            .filter(|r| r.job.as_deref() == Some(job))
            .collect()
    }

    /// The log of pod `pod`'s container, when it ran.
    pub fn log(&self, pod: &str) -> Option<String> {
        let run = self.runs().into_iter().find(|r| r.pod == pod)?;
        std::fs::read_to_string(run.log).ok()
    }

    /// The runs whose process is running now, each with its pid (for
    /// fault injection: [`crate::faults`]).
    pub fn running(&self) -> Vec<(Run, u32)> {
        let Ok(state) = self.state.lock() else {
            return Vec::new();
        };
        state
            .pids
            .iter()
            .filter_map(|(uid, pid)| Some((state.runs.get(uid)?.clone(), *pid)))
            .collect()
    }

    /// Kills the process of `pod` with SIGKILL, as an out-of-memory kill or
    /// a crashed node would: the pod is reported Failed with exit code 137
    /// and the Job controller retries it within the Job's `backoffLimit`.
    /// `false` when that pod has no running process.
    pub fn kill_pod_process(&self, pod: &str) -> bool {
        let pid = self.running().into_iter().find(|(r, _)| r.pod == pod);
        match pid {
            Some((_, pid)) => {
                kill(pid, libc::SIGKILL);
                true
            }
            None => false,
        }
    }

    /// Stops watching and kills every process still running.
    pub fn stop(&self) {
        self.task.abort();
        let pids: Vec<u32> = self
            .state
            .lock()
            .map(|s| s.pids.values().copied().collect())
            .unwrap_or_default();
        for pid in pids {
            kill(pid, libc::SIGKILL);
        }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop();
    }
}

fn kill(pid: u32, signal: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) with a pid this process started.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

async fn create_node(client: &Client, name: &str, api: &KubeletApi) -> Result<(), SimError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
    }))
    .map_err(|e| SimError::Setup(e.to_string()))?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => return Err(SimError::Kube(format!("create Node {name}"), e)),
    }
    let mut status = api.node_status(name);
    status["conditions"] = json!([{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                   "message": "vmi-sim kubelet stand-in"}]);
    let status = json!({ "status": status });
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map_err(|e| SimError::Kube(format!("mark Node {name} Ready"), e))?;
    Ok(())
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

impl Runner {
    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    async fn handle(self: Arc<Self>, pod: Pod) {
        let name = pod.name_any();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let started = self
            .state
            .lock()
            .map(|s| s.runs.contains_key(&uid))
            .unwrap_or(true);
        let spec = pod.spec.clone().unwrap_or_default();
        if pod.metadata.deletion_timestamp.is_some() {
            let pid = self
                .state
                .lock()
                .ok()
                .and_then(|s| s.pids.get(&uid).copied());
            match pid {
                // The waiter reports the exit and finishes the deletion.
                Some(pid) => kill(pid, libc::SIGTERM),
                None if spec.node_name.as_deref() == Some(self.node.as_str())
                    || spec.node_name.is_none() =>
                {
                    self.finish_deletion(&name, &uid).await;
                }
                None => {}
            }
            return;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
        match spec.node_name.as_deref() {
            None => self.bind(&name).await,
            Some(node)
                if node == self.node
                    && !started
                    && matches!(phase.as_deref(), None | Some("Pending")) =>
            {
                self.start(pod).await;
            }
            _ => {}
        }
    }

    async fn bind(&self, pod: &str) {
        let binding = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": pod},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node},
        });
        let result: Result<serde_json::Value, _> = self
            .pods()
            .create_subresource("binding", pod, &PostParams::default(), &binding)
            .await;
        if let Err(err) = result {
            eprintln!("vmi-sim kubelet: cannot bind pod {pod}: {err}");
        }
    }

    async fn finish_deletion(&self, pod: &str, uid: &str) {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let _ = self.pods().delete(pod, &params).await;
    }

    async fn token_kubeconfig(&self, pod: &Pod, dir: &Path) -> Result<PathBuf, String> {
        let account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".to_owned());
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: Vec::new(),
                expiration_seconds: Some(3600),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".to_owned()),
                    kind: Some("Pod".to_owned()),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                }),
            },
            ..TokenRequest::default()
        };
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &self.namespace);
        let answer: TokenRequest = accounts
            .create_subresource("token", &account, &PostParams::default(), &request)
            .await
            .map_err(|e| format!("cannot get a token for service account {account}: {e}"))?;
        let token = answer.status.map(|s| s.token).unwrap_or_default();
        let path = dir.join("kubeconfig");
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: vmi-sim\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: {account}\n  user:\n    token: {token}\ncontexts:\n- name: vmi-sim\n  context:\n    cluster: vmi-sim\n    user: {account}\n    namespace: {}\ncurrent-context: vmi-sim\n",
            self.server,
            self.ca_file.display(),
            self.namespace
        );
        crate::pki::write_file(dir, "kubeconfig", &yaml).map_err(|e| e.to_string())?;
        Ok(path)
    }

    async fn start(self: Arc<Self>, pod: Pod) {
        let name = pod.name_any();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let dir = self.dir.join(&name);
        let log = dir.join("container.log");
        let job = pod.labels().get("batch.kubernetes.io/job-name").cloned();
        self.logs
            .attach_file(&self.namespace, &name, &container_name(&pod), log.clone());
        if let Ok(mut state) = self.state.lock() {
            state.runs.insert(
                uid.clone(),
                Run {
                    namespace: self.namespace.clone(),
                    pod: name.clone(),
                    job,
                    exit_code: None,
                    log: log.clone(),
                },
            );
        }
        let started_at = now();
        let spawned = match std::fs::create_dir_all(&dir) {
            Ok(()) => self.spawn(&pod, &dir, &log).await,
            Err(e) => Err(format!("cannot create {}: {e}", dir.display())),
        };
        let child = match spawned {
            Ok(child) => child,
            Err(message) => {
                let _ = std::fs::write(&log, format!("{message}\n"));
                self.report_exit(&name, &uid, &started_at, 128, &message)
                    .await;
                return;
            }
        };
        if let Ok(mut state) = self.state.lock() {
            state.pids.insert(uid.clone(), child.id());
        }
        let image = container_image(&pod);
        let container = container_name(&pod);
        let running = json!({"status": {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "startTime": started_at,
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Initialized", "status": "True"},
                {"type": "ContainersReady", "status": "True"},
                {"type": "Ready", "status": "True"},
            ],
            "containerStatuses": [{
                "name": container, "image": image, "imageID": "", "ready": true,
                "restartCount": 0, "started": true,
                "state": {"running": {"startedAt": started_at}},
            }],
        }});
        if let Err(err) = self
            .pods()
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&running))
            .await
        {
            eprintln!("vmi-sim kubelet: cannot mark pod {name} Running: {err}");
        }
        let runner = self.clone();
        tokio::spawn(async move {
            let waited = tokio::task::spawn_blocking(move || {
                let mut child = child;
                child.wait()
            })
            .await;
            let code = match waited {
                Ok(Ok(status)) => {
                    use std::os::unix::process::ExitStatusExt;
                    status
                        .code()
                        .or_else(|| status.signal().map(|s| 128 + s))
                        .unwrap_or(1)
                }
                _ => 1,
            };
            let message = if code == 0 {
                String::new()
            } else {
                tail_message(&log)
            };
            runner
                .report_exit(&name, &uid, &started_at, code, &message)
                .await;
        });
    }

    async fn spawn(
        &self,
        pod: &Pod,
        dir: &Path,
        log: &Path,
    ) -> Result<std::process::Child, String> {
        let container = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .ok_or("the pod has no container")?;
        let mut words: Vec<String> = container.command.clone().unwrap_or_default();
        words.extend(container.args.clone().unwrap_or_default());
        let (program, args) = words
            .split_first()
            .ok_or("the container has no command (the stand-in runs commands, not images)")?;
        let kubeconfig = self.token_kubeconfig(pod, dir).await?;
        let mut command = Command::new(program);
        command.args(args).current_dir(dir).env_clear();
        command.env("PATH", std::env::var("PATH").unwrap_or_default());
        command.env("HOME", dir);
        command.env("KUBECONFIG", &kubeconfig);
        for (key, value) in &self.extra_env {
            command.env(key, value);
        }
        for var in container.env.iter().flatten() {
            let value = match (&var.value, &var.value_from) {
                (Some(value), _) => Some(value.clone()),
                (None, Some(from)) => {
                    from.field_ref
                        .as_ref()
                        .and_then(|f| match f.field_path.as_str() {
                            "metadata.name" => pod.metadata.name.clone(),
                            "metadata.namespace" => pod.metadata.namespace.clone(),
                            "spec.serviceAccountName" => pod
                                .spec
                                .as_ref()
                                .and_then(|s| s.service_account_name.clone()),
                            _ => None,
                        })
                }
                _ => None,
            };
            if let Some(value) = value {
                command.env(&var.name, value);
            }
        }
        children::spawn_waitable(&pod.name_any(), command, log).map_err(|e| e.to_string())
    }

    async fn report_exit(&self, name: &str, uid: &str, started_at: &str, code: i32, message: &str) {
        if let Ok(mut state) = self.state.lock() {
            state.pids.remove(uid);
            if let Some(run) = state.runs.get_mut(uid) {
                run.exit_code = Some(code);
            }
        }
        // Like the kubelet's status manager, keep trying while the API
        // server is away (a restart, see [`crate::faults`]): a lost exit
        // would leave the pod Running and its Job waiting for its deadline.
        let deadline = std::time::Instant::now() + REPORT_PATIENCE;
        loop {
            match self
                .try_report_exit(name, uid, started_at, code, message)
                .await
            {
                Ok(()) => return,
                Err(err) if std::time::Instant::now() >= deadline => {
                    eprintln!("vmi-sim kubelet: cannot report the exit of pod {name}: {err}");
                    return;
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
            }
        }
    }

    /// One try of [`Runner::report_exit`]: `Ok` once reported, or when the
    /// pod is gone.
    async fn try_report_exit(
        &self,
        name: &str,
        uid: &str,
        started_at: &str,
        code: i32,
        message: &str,
    ) -> Result<(), kube::Error> {
        let Some(pod) = self.pods().get_opt(name).await? else {
            return Ok(());
        };
        if pod.metadata.uid.as_deref() != Some(uid) {
            return Ok(()); // a new pod of the same name
        }
        let mut terminated = json!({
            "exitCode": code,
            "reason": if code == 0 { "Completed" } else { "Error" },
            "startedAt": started_at,
            "finishedAt": now(),
        });
        if !message.is_empty() {
            terminated["message"] = json!(message);
        }
        let image = container_image(&pod);
        let status = json!({"status": {
            "phase": if code == 0 { "Succeeded" } else { "Failed" },
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Initialized", "status": "True"},
                {"type": "ContainersReady", "status": "False", "reason": "PodCompleted"},
                {"type": "Ready", "status": "False", "reason": "PodCompleted"},
            ],
            "containerStatuses": [{
                "name": container_name(&pod), "image": image, "imageID": "", "ready": false,
                "restartCount": 0, "started": false,
                "state": {"terminated": terminated},
            }],
        }});
        match self
            .pods()
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
            Err(err) => return Err(err),
        }
        if pod.metadata.deletion_timestamp.is_some() {
            self.finish_deletion(name, uid).await;
        }
        Ok(())
    }
}

fn container_image(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

fn container_name(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| c.name.clone())
        .unwrap_or_default()
}

/// The kubelet's `FallbackToLogsOnError` message: the log's last 80 lines,
/// at most its last 2048 bytes.
fn tail_message(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let mut tail = lines[lines.len().saturating_sub(MESSAGE_LINES)..].join("\n");
    if tail.len() > MESSAGE_BYTES {
        let mut cut = tail.len() - MESSAGE_BYTES;
        while !tail.is_char_boundary(cut) {
            cut += 1;
        }
        tail = tail[cut..].to_owned();
    }
    tail
}
