//! A rig for driving `vmi-orchestrator` on the simulated cluster: the real
//! API server and Job controller, the kubelet stand-in running the test step
//! program, a namespace per test and the orchestrator as a child process.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use vmi_api::{VSphereMigrationInfra, labels};
use vmi_sim::children::{self, Process};
use vmi_sim::{ControlPlane, Kubelet, TestSteps, Tools};

const SAMPLE: &str = include_str!("../../../deploy/samples/vmi.yaml");

/// A pipeline of `names` where every step gets `fields` (YAML flow fields).
pub fn pipeline(steps: &[(&str, &str)]) -> String {
    let mut yaml = String::from("name: test\ndescription: an orchestrator test pipeline\nsteps:\n");
    for (index, (name, fields)) in steps.iter().enumerate() {
        let fields = if fields.is_empty() {
            "timeoutSeconds: 60, retries: 0, reversible: false".to_owned()
        } else {
            (*fields).to_owned()
        };
        yaml.push_str(&format!(
            "  - {{index: {index}, name: {name}, description: test step {name}, {fields}}}\n"
        ));
    }
    yaml
}

pub struct Rig {
    pub control_plane: &'static ControlPlane,
    pub client: Client,
    pub namespace: String,
    pub steps: TestSteps,
    pub kubelet: Kubelet,
    pipeline_file: PathBuf,
    dir: PathBuf,
    orchestrators: Vec<(String, Process, u16)>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

impl Rig {
    pub async fn new(pipeline_yaml: &str) -> Rig {
        let control_plane = ControlPlane::shared().expect("the simulated control plane starts");
        let client = control_plane.client().await.unwrap();
        vmi_sim::crds::install_vmi_crd(&client).await.unwrap();
        let namespace = control_plane.namespace(&client, "orch").await.unwrap();
        // The step pods' service account may read ConfigMaps, nothing else.
        bind_account(
            &client,
            &namespace,
            "vmi-step-runner",
            "test-steps",
            json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]),
        )
        .await;
        let steps = TestSteps::new().unwrap();
        let tools = Tools::get().unwrap();
        let kubelet_env = steps.env(tools.bin("kubectl").parent().unwrap());
        let kubelet = Kubelet::start(control_plane, client.clone(), &namespace, kubelet_env)
            .await
            .unwrap();
        let dir = children::temp_dir("orchestrator").unwrap();
        let pipeline_file = dir.join("pipeline.yaml");
        std::fs::write(&pipeline_file, pipeline_yaml).unwrap();
        Rig {
            control_plane,
            client,
            namespace,
            steps,
            kubelet,
            pipeline_file,
            dir,
            orchestrators: Vec::new(),
        }
    }

    /// Starts an orchestrator replica named `identity`; returns its metrics port.
    pub fn start_orchestrator(&mut self, identity: &str) -> u16 {
        let kubeconfig = self.control_plane.kubeconfig().to_owned();
        self.start_orchestrator_as(identity, &kubeconfig)
    }

    /// Starts an orchestrator replica named `identity` that talks to the API
    /// server as `kubeconfig` says; returns its metrics port.
    pub fn start_orchestrator_as(&mut self, identity: &str, kubeconfig: &std::path::Path) -> u16 {
        let port = free_port();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_vmi-orchestrator"));
        command
            .arg("run")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--namespace", &self.namespace])
            .args(["--image", "vmi-test:latest"])
            .args(["--step-command", &self.steps.command()])
            .arg("--pipeline")
            .arg(&self.pipeline_file)
            .args(["--lease-namespace", &self.namespace])
            .args(["--lease-seconds", "3"])
            .args(["--identity", identity])
            .args(["--metrics-address", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "info,vmi_orchestrator::reconcile=debug");
        let log = self
            .dir
            .join(format!("{identity}.{}.log", self.orchestrators.len()));
        let process = children::spawn(identity, command, &log).expect("the orchestrator starts");
        self.orchestrators
            .push((identity.to_owned(), process, port));
        port
    }

    /// Kills replica `identity` at once (SIGKILL), as a crash would.
    pub fn kill_orchestrator(&mut self, identity: &str) {
        let found: Vec<u32> = self
            .orchestrators
            .iter()
            .filter(|(id, p, _)| id == identity && p.is_running())
            .map(|(_, p, _)| p.pid)
            .collect();
        children::stop(&found, Duration::ZERO);
    }

    /// The log of every orchestrator process so far.
    pub fn orchestrator_logs(&self) -> String {
        self.orchestrators
            .iter()
            .map(|(id, p, _)| format!("----- {id} ({})\n{}", p.log.display(), p.log_tail(200)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn vmis(&self) -> Api<VSphereMigrationInfra> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Creates the sample vmi named `name` with `state` and `pauseBefore`.
    pub async fn create_vmi(&self, name: &str, state: &str, pause_before: &[&str]) {
        let mut sample: serde_json::Value = serde_saphyr::from_str(SAMPLE).unwrap();
        sample["metadata"] = json!({"name": name, "namespace": self.namespace});
        sample["spec"]["state"] = json!(state);
        sample["spec"]["pauseBefore"] = json!(pause_before);
        let vmi: VSphereMigrationInfra = serde_json::from_value(sample).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.vmis().create(&PostParams::default(), &vmi).await {
                Ok(_) => return,
                // The CRD may not be served yet right after installing it.
                Err(err) if Instant::now() < deadline => {
                    eprintln!("create vmi {name}: {err}; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => panic!("cannot create vmi {name}: {err}"),
            }
        }
    }

    pub async fn patch_spec(&self, name: &str, spec: serde_json::Value) {
        self.vmis()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": spec})),
            )
            .await
            .unwrap();
    }

    /// Waits until `check` holds for vmi `name`, showing what it saw on timeout.
    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(&VSphereMigrationInfra) -> bool,
    ) -> VSphereMigrationInfra {
        let deadline = Instant::now() + timeout;
        loop {
            let vmi = self.vmis().get(name).await.unwrap();
            if check(&vmi) {
                return vmi;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for vmi {name}: {what}\nstatus: {}\nruns: {:?}\n{}",
                    serde_json::to_string_pretty(&vmi.status).unwrap(),
                    self.steps.runs(),
                    self.orchestrator_logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_for_phase(
        &self,
        name: &str,
        phase: vmi_api::Phase,
        timeout: Duration,
    ) -> VSphereMigrationInfra {
        self.wait_for(name, &format!("phase {phase:?}"), timeout, |v| {
            v.status.as_ref().and_then(|s| s.phase) == Some(phase)
        })
        .await
    }

    pub async fn jobs(&self) -> Vec<Job> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), &self.namespace);
        api.list(&ListParams::default().labels(&format!(
            "{}={}",
            labels::MANAGED_BY,
            labels::MANAGED_BY_VALUE
        )))
        .await
        .unwrap()
        .items
    }

    pub async fn delete_job(&self, name: &str) {
        let api: Api<Job> = Api::namespaced(self.client.clone(), &self.namespace);
        api.delete(name, &DeleteParams::background()).await.unwrap();
    }

    /// Events about vmi `name` once `done` holds for them (events are
    /// recorded just after the status they announce), or after 10 s.
    pub async fn events_until(
        &self,
        name: &str,
        done: impl Fn(&[(String, String, String)]) -> bool,
    ) -> Vec<(String, String, String)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let events = self.events(name).await;
            if done(&events) || Instant::now() > deadline {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Events about vmi `name`: (type, reason, message).
    pub async fn events(&self, name: &str) -> Vec<(String, String, String)> {
        let api: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), &self.namespace);
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                )
            })
            .collect()
    }
}

/// Creates service account `account` in `namespace` and a Role `role` with
/// `rules` bound to it.
pub async fn bind_account(
    client: &Client,
    namespace: &str,
    account: &str,
    role: &str,
    rules: serde_json::Value,
) {
    let post = PostParams::default();
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create(
            &post,
            &serde_json::from_value(json!({"metadata": {"name": account}})).unwrap(),
        )
        .await
        .unwrap();
    Api::<Role>::namespaced(client.clone(), namespace)
        .create(
            &post,
            &serde_json::from_value(json!({"metadata": {"name": role}, "rules": rules})).unwrap(),
        )
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), namespace)
        .create(
            &post,
            &serde_json::from_value(json!({
                "metadata": {"name": role},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
                "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]
            }))
            .unwrap(),
        )
        .await
        .unwrap();
}

impl Rig {
    /// A kubeconfig that acts as a new service account `account` of the
    /// rig's namespace, allowed only `rules` there.
    pub async fn account_kubeconfig(&self, account: &str, rules: serde_json::Value) -> PathBuf {
        bind_account(&self.client, &self.namespace, account, account, rules).await;
        let token =
            vmi_sim::migration::service_account_token(&self.client, &self.namespace, account)
                .await
                .unwrap();
        let kubeconfig = self.dir.join(format!("{account}.kubeconfig"));
        self.control_plane
            .write_token_kubeconfig(&token, &kubeconfig)
            .unwrap();
        kubeconfig
    }
}

/// GETs `path` from 127.0.0.1:`port` and returns the body.
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

pub fn job_names(jobs: &[Job]) -> Vec<String> {
    let mut names: Vec<String> = jobs.iter().map(|j| j.name_any()).collect();
    names.sort();
    names
}

impl Rig {
    /// The pid of the newest process of replica `identity`.
    pub fn orchestrator_pid(&self, identity: &str) -> Option<u32> {
        self.orchestrators
            .iter()
            .rev()
            .find(|(id, p, _)| id == identity && p.is_running())
            .map(|(_, p, _)| p.pid)
    }
}
