//! The migration rig: a whole migration on the simulated cluster, as the
//! end-to-end tests and the demo run it.
//!
//! [`MigrationRig::start`] starts a [`SimCluster`], the OpenShift stand-ins
//! (credential operator, control plane machine set operator, machine API,
//! the disruption counters), the vmi namespace with the `vmi-step-runner`
//! and `vmi-orchestrator` service accounts bound to exactly the roles of
//! `deploy/base/rbac/step-runner.yaml` and `deploy/base/rbac/orchestrator.yaml`
//! ([`apply_rbac`]), the target credentials Secret, the kubelet stand-in
//! that runs the step pods, and a collector of the vCenter session ids. Then
//! [`MigrationRig::create_vmi`] applies `deploy/samples/vmi.yaml` pointed at
//! the simulated target, [`MigrationRig::start_orchestrator`] runs
//! `vmi-orchestrator run` with a token of its service account (it can be
//! killed with SIGKILL and started again at any moment), and
//! [`MigrationRig::wait_for_phase`],
//! [`MigrationRig::status`], [`MigrationRig::machine_progress`],
//! [`MigrationRig::end_state`] and [`MigrationRig::scan_secrets`] tell how
//! it went.

pub mod end_state;
mod evidence;
pub mod progress;
pub mod vmi_manifest;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Event, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};
use vmi_api::MigrationState;
use vmi_api::{Phase, Step, VSphereMigrationInfra, VSphereMigrationInfraStatus};

use crate::children::{self, Process};
use crate::cpms_operator::CpmsOperator;
use crate::credential_operator::CredentialOperator;
use crate::csi_driver::{CsiDriverOptions, CsiDriverStandIn};
use crate::disruption::{CloudConfigRollouts, CvoDowntime};
use crate::machine_api::MachineApi;
use crate::secrets_scan::sessions::SessionCollector;
use crate::secrets_scan::{self, ScanReport};
use crate::seed::{SeedOptions, SimCluster};
use crate::volumes::{SeededVolumes, VolumeWorkloads};
use crate::{Kubelet, SimError};

pub use end_state::EndState;
pub use progress::MachineProgress;

/// The step runner's roles and bindings, exactly as shipped.
pub const STEP_RUNNER_ROLE: &str = include_str!("../../../deploy/base/rbac/step-runner.yaml");
/// The orchestrator's role and binding, exactly as shipped.
pub const ORCHESTRATOR_ROLE: &str = include_str!("../../../deploy/base/rbac/orchestrator.yaml");
/// The sample vmi the rig's vmi is made from.
pub const SAMPLE_VMI: &str = include_str!("../../../deploy/samples/vmi.yaml");
/// The step pods' service account.
pub const SERVICE_ACCOUNT: &str = "vmi-step-runner";
/// The orchestrator's service account.
pub const ORCHESTRATOR_ACCOUNT: &str = "vmi-orchestrator";
/// How long the orchestrator's token is valid: longer than any run.
const ORCHESTRATOR_TOKEN_SECONDS: i64 = 24 * 3600;
/// The Secret holding the target vCenter's credentials.
pub const CREDENTIALS_SECRET: &str = "vcenter-b-credentials";
/// How often the vCenter session ids are read during a run.
const SESSION_POLL: Duration = Duration::from_secs(3);
/// The orchestrator's name in its Lease; restarts keep it, as a
/// StatefulSet pod would, so a restarted process leads at once.
const IDENTITY: &str = "vmi-rig";

/// Why the rig could not do something.
#[derive(Debug, thiserror::Error)]
pub enum RigError {
    /// The simulated cluster failed.
    #[error(transparent)]
    Sim(#[from] SimError),
    /// A Kubernetes API call failed.
    #[error("migration rig: {0}: {1}")]
    Kube(String, #[source] kube::Error),
    /// Something the rig builds or reads is not as expected.
    #[error("migration rig: {0}")]
    Invalid(String),
    /// The vmi did not reach a phase in time.
    #[error(
        "migration rig: vmi {vmi} did not reach {wanted} within {waited:?}; it is {phase} at {step}"
    )]
    Timeout {
        /// The vmi.
        vmi: String,
        /// The phases waited for.
        wanted: String,
        /// How long the rig waited.
        waited: Duration,
        /// The phase it is in.
        phase: String,
        /// Its current step.
        step: String,
    },
}

fn kube_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> RigError {
    let what = what.into();
    move |e| RigError::Kube(what, e)
}

/// The programs the rig runs.
#[derive(Debug, Clone)]
pub struct Programs {
    /// `vmi-orchestrator`.
    pub orchestrator: PathBuf,
    /// `vmi-step`, the step pods' command.
    pub step: PathBuf,
}

impl Programs {
    /// Both binaries from one directory (e.g. `target/debug`).
    pub fn in_dir(dir: &Path) -> Programs {
        Programs {
            orchestrator: dir.join("vmi-orchestrator"),
            step: dir.join("vmi-step"),
        }
    }
}

/// How the vmi the rig creates differs from the default run.
#[derive(Debug, Clone)]
pub struct VmiOptions {
    /// Its name.
    pub name: String,
    /// `spec.state`.
    pub state: MigrationState,
    /// `spec.pauseBefore`.
    pub pause_before: Vec<Step>,
    /// The monitor window of steps 10 and 15 in seconds (annotation
    /// `vmi.config.openshift.io/monitor-window-seconds`); the steps'
    /// default (120 s) when `None`.
    pub monitor_window_seconds: Option<u32>,
    /// Worker replicas in the target failure domain; as many as the source
    /// has when `None`.
    pub workers: Option<u32>,
    /// `spec.volumes`; the sample's when `None`.
    pub volumes: Option<Value>,
}

impl Default for VmiOptions {
    /// `move`, Running, no pause, a 2-second monitor window.
    fn default() -> Self {
        VmiOptions {
            name: "move".into(),
            state: MigrationState::Running,
            pause_before: Vec::new(),
            monitor_window_seconds: Some(2),
            workers: None,
            volumes: None,
        }
    }
}

/// A simulated cluster ready to be migrated, and the orchestrator that
/// migrates it.
pub struct MigrationRig {
    /// The admin client.
    pub client: Client,
    /// The vmi's namespace (also the step Jobs' and the orchestrator's Lease).
    pub namespace: String,
    /// The kubelet stand-in running the step pods: their runs and logs.
    pub kubelet: Kubelet,
    /// The node rollouts the cloud-provider-config edits would cause.
    pub rollouts: CloudConfigRollouts,
    /// The time the cluster-version operator was down.
    pub cvo_downtime: CvoDowntime,
    /// The vCenter session ids seen so far.
    pub sessions: SessionCollector,
    programs: Programs,
    dir: PathBuf,
    orchestrator_kubeconfig: PathBuf,
    vmi_name: String,
    orchestrators: Vec<Process>,
    cpms: CpmsOperator,
    machine_api: MachineApi,
    _credentials: CredentialOperator,
    /// The volumes [`MigrationRig::seed_volumes`] made, with their
    /// workloads' pods.
    pub volumes: Option<SeededVolumes>,
    /// The CSI driver stand-in, once volumes are seeded.
    pub csi: Option<CsiDriverStandIn>,
    /// The simulated cluster (dropped last: the stand-ins above use it).
    pub cluster: SimCluster,
}

impl MigrationRig {
    /// Starts the simulated cluster seeded with `seed`, its stand-ins and
    /// the vmi namespace; nothing migrates until [`MigrationRig::create_vmi`]
    /// and [`MigrationRig::start_orchestrator`].
    pub async fn start(seed: SeedOptions, programs: Programs) -> Result<MigrationRig, RigError> {
        MigrationRig::start_with_roles(seed, programs, STEP_RUNNER_ROLE, ORCHESTRATOR_ROLE).await
    }

    /// [`MigrationRig::start`] with other role files than the shipped ones
    /// bound to the two service accounts (same form as [`STEP_RUNNER_ROLE`]
    /// and [`ORCHESTRATOR_ROLE`], see [`apply_rbac`]): for tests that take
    /// a rule away (`orchestrator/tests/rbac_rules.rs`).
    pub async fn start_with_roles(
        seed: SeedOptions,
        programs: Programs,
        step_runner_role: &str,
        orchestrator_role: &str,
    ) -> Result<MigrationRig, RigError> {
        for program in [&programs.orchestrator, &programs.step] {
            if !program.is_file() {
                return Err(RigError::Invalid(format!(
                    "{} does not exist; build it first (cargo build -p vmi-orchestrator -p vmi-step-runner)",
                    program.display()
                )));
            }
        }
        let cluster = SimCluster::start(seed).await?;
        let client = cluster.client().await?;
        let credentials = CredentialOperator::start(client.clone());
        let cpms = CpmsOperator::start(client.clone());
        let machine_api = MachineApi::start(
            client.clone(),
            cluster.plane.kubelet_api(),
            &[&cluster.source, &cluster.target],
        );
        let rollouts = CloudConfigRollouts::start(client.clone());
        let cvo_downtime = CvoDowntime::start(client.clone());
        let namespace = cluster.plane.namespace(&client, "vmi").await?;
        bind_service_account(&client, &namespace, SERVICE_ACCOUNT, step_runner_role).await?;
        bind_service_account(&client, &namespace, ORCHESTRATOR_ACCOUNT, orchestrator_role).await?;
        let target = &cluster.target;
        let secret: Secret = from_json(json!({
            "metadata": {"name": CREDENTIALS_SECRET},
            "stringData": {format!("{}.username", target.server): target.username,
                format!("{}.password", target.server): target.password},
        }))?;
        Api::<Secret>::namespaced(client.clone(), &namespace)
            .create(&PostParams::default(), &secret)
            .await
            .map_err(kube_error(format!("create Secret {CREDENTIALS_SECRET}")))?;
        let kubelet =
            Kubelet::start(&cluster.plane, client.clone(), &namespace, Vec::new()).await?;
        let sessions = SessionCollector::start(&[&cluster.source, &cluster.target], SESSION_POLL)?;
        let dir = children::temp_dir("migration")?;
        let token = service_account_token(&client, &namespace, ORCHESTRATOR_ACCOUNT).await?;
        let orchestrator_kubeconfig = dir.join("orchestrator.kubeconfig");
        cluster
            .plane
            .write_token_kubeconfig(&token, &orchestrator_kubeconfig)?;
        Ok(MigrationRig {
            client,
            namespace,
            kubelet,
            rollouts,
            cvo_downtime,
            sessions,
            programs,
            dir,
            orchestrator_kubeconfig,
            vmi_name: VmiOptions::default().name,
            orchestrators: Vec::new(),
            cpms,
            machine_api,
            _credentials: credentials,
            volumes: None,
            csi: None,
            cluster,
        })
    }

    /// Seeds vSphere CSI volumes and the workloads using them on the
    /// source, and starts the CSI driver stand-in, which logs in with the
    /// driver's own credentials Secret as the real driver does.
    pub async fn seed_volumes(&mut self, workloads: &VolumeWorkloads) -> Result<(), RigError> {
        self.csi = Some(
            CsiDriverStandIn::start(
                &self.cluster.plane,
                &[&self.cluster.source, &self.cluster.target],
                CsiDriverOptions::default(),
            )
            .await?,
        );
        self.volumes = Some(crate::volumes::seed_volumes(&self.cluster, workloads).await?);
        Ok(())
    }

    /// The vmi manifest [`MigrationRig::create_vmi`] applies.
    pub fn vmi_manifest(&self, options: &VmiOptions) -> Result<Value, RigError> {
        let cluster = &self.cluster;
        vmi_manifest::build(
            SAMPLE_VMI,
            &self.namespace,
            options,
            &vmi_manifest::Endpoints {
                source: &cluster.source,
                target: &cluster.target,
                target_inventory: &cluster.target_inventory,
                source_workers: cluster.options.workers,
            },
        )
    }

    /// Creates the vmi: the sample pointed at the simulated target.
    pub async fn create_vmi(&mut self, options: &VmiOptions) -> Result<(), RigError> {
        let vmi: VSphereMigrationInfra = from_json(self.vmi_manifest(options)?)?;
        self.vmis()
            .create(&PostParams::default(), &vmi)
            .await
            .map_err(kube_error(format!("create vmi {}", options.name)))?;
        self.vmi_name = options.name.clone();
        Ok(())
    }

    /// The vmis of the rig's namespace.
    pub fn vmis(&self) -> Api<VSphereMigrationInfra> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The name of the vmi [`MigrationRig::create_vmi`] made.
    pub fn vmi_name(&self) -> &str {
        &self.vmi_name
    }

    /// The vmi as it is now.
    pub async fn vmi(&self) -> Result<VSphereMigrationInfra, RigError> {
        self.vmis()
            .get(&self.vmi_name)
            .await
            .map_err(kube_error(format!("read vmi {}", self.vmi_name)))
    }

    /// The vmi's status as it is now (empty before the orchestrator wrote one).
    pub async fn status(&self) -> Result<VSphereMigrationInfraStatus, RigError> {
        Ok(self.vmi().await?.status.unwrap_or_default())
    }

    /// Waits until the vmi's phase is one of `phases`; returns its status.
    pub async fn wait_for_phase(
        &self,
        phases: &[Phase],
        timeout: Duration,
    ) -> Result<VSphereMigrationInfraStatus, RigError> {
        let started = Instant::now();
        loop {
            // A read can fail while the API server is busy; only the
            // deadline ends the wait.
            let status = self.status().await;
            if let Ok(status) = &status
                && status.phase.is_some_and(|p| phases.contains(&p))
            {
                return Ok(status.clone());
            }
            if started.elapsed() >= timeout {
                let status = status?;
                return Err(RigError::Timeout {
                    vmi: format!("{}/{}", self.namespace, self.vmi_name),
                    wanted: format!("{phases:?}"),
                    waited: started.elapsed(),
                    phase: format!("{:?}", status.phase),
                    step: status.current_step.unwrap_or_else(|| "no step".into()),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Starts `vmi-orchestrator run` for the rig's namespace, as its
    /// service account (a token bound to exactly the shipped role); its
    /// output goes to a log file of its own (see
    /// [`MigrationRig::orchestrator_logs`]).
    pub fn start_orchestrator(&mut self) -> Result<&Process, RigError> {
        let mut command = Command::new(&self.programs.orchestrator);
        command
            .arg("run")
            .arg("--kubeconfig")
            .arg(&self.orchestrator_kubeconfig)
            .args(["--namespace", &self.namespace, "--image", "vmi:sim"])
            .arg("--step-command")
            .arg(&self.programs.step)
            .args(["--lease-namespace", &self.namespace])
            .args(["--lease-seconds", "3", "--identity", IDENTITY])
            .args(["--metrics-address", "127.0.0.1:0"]);
        let log = self
            .dir
            .join(format!("orchestrator.{}.log", self.orchestrators.len()));
        let process = children::spawn("vmi-orchestrator", command, &log)?;
        self.orchestrators.push(process);
        self.orchestrators
            .last()
            .ok_or_else(|| RigError::Invalid("no orchestrator after starting one".into()))
    }

    /// Kills the running orchestrator at once (SIGKILL), as a crash would;
    /// `false` when none was running.
    pub fn kill_orchestrator(&mut self) -> bool {
        let running: Vec<u32> = self.running_orchestrators();
        for pid in &running {
            if let Ok(pid) = i32::try_from(*pid) {
                // SAFETY: kill(2) on a child this process started and has
                // not reaped yet (children::stop reaps it below).
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        children::stop(&running, Duration::from_secs(5));
        !running.is_empty()
    }

    /// Whether an orchestrator process started by the rig is running (one
    /// that lost its API server for two thirds of its lease exits, and
    /// its Deployment would start it again: [`crate::faults`] does).
    pub fn orchestrator_running(&self) -> bool {
        !self.running_orchestrators().is_empty()
    }

    /// Stops the running orchestrator gracefully (SIGTERM).
    pub fn stop_orchestrator(&mut self) {
        children::stop(&self.running_orchestrators(), Duration::from_secs(5));
    }

    fn running_orchestrators(&self) -> Vec<u32> {
        self.orchestrators
            .iter()
            .filter(|p| p.is_running())
            .map(|p| p.pid)
            .collect()
    }

    /// The log file of every orchestrator process started, oldest first.
    pub fn orchestrator_logs(&self) -> Vec<PathBuf> {
        self.orchestrators.iter().map(|p| p.log.clone()).collect()
    }

    /// The last `lines` lines of the newest orchestrator's log.
    pub fn orchestrator_log_tail(&self, lines: usize) -> String {
        self.orchestrators
            .last()
            .map(|p| p.log_tail(lines))
            .unwrap_or_default()
    }

    /// Machines and Nodes on the target vCenter so far.
    pub async fn machine_progress(&self) -> Result<MachineProgress, RigError> {
        progress::read(&self.client, &self.cluster.target.server).await
    }

    /// What the cluster looks like now, for the end-state checks.
    pub async fn end_state(&self) -> Result<EndState, RigError> {
        EndState::read(&self.client, &self.cluster).await
    }

    /// Control plane Machines the control plane machine set operator
    /// created to replace others.
    pub fn control_plane_replacements(&self) -> u64 {
        self.cpms.replacements()
    }

    /// What the control plane machine set operator refused to act on.
    pub fn control_plane_problems(&self) -> Vec<String> {
        self.cpms.problems()
    }

    /// VMs the machine API cloned and destroyed.
    pub fn machine_vms(&self) -> (u64, u64) {
        (self.machine_api.created(), self.machine_api.destroyed())
    }

    /// Every Event of every namespace.
    pub async fn events(&self) -> Result<Vec<Event>, RigError> {
        Ok(Api::<Event>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(kube_error("list Events"))?
            .items)
    }

    /// Searches everything the run produced for the secrets in play (see
    /// [`crate::secrets_scan`]): the step pods' logs, the orchestrator's
    /// logs, all Events, the vmis, the ConfigMaps of the vmi namespace and
    /// `openshift-config`, and the Jobs and Pods of the vmi namespace.
    pub async fn scan_secrets(&self) -> Result<ScanReport, RigError> {
        self.sessions.collect_now()?;
        let texts = evidence::texts(self).await?;
        let mut report = secrets_scan::scan(&texts, &evidence::known_secrets(self));
        report.gaps.extend(self.sessions.gaps());
        report
            .gaps
            .push("vAPI (REST) session ids: vcsim cannot list them; only found by pattern".into());
        Ok(report)
    }
}

impl Drop for MigrationRig {
    fn drop(&mut self) {
        self.stop_orchestrator();
    }
}

/// What failed, where, and how to see more, when the vmi failed.
pub fn failure_summary(status: &VSphereMigrationInfraStatus) -> Option<String> {
    let step = status
        .steps
        .iter()
        .rev()
        .find(|s| s.failure.is_some() || s.state == vmi_api::StepState::Failed)?;
    let failure = step.failure.as_ref();
    let mut text = format!(
        "step {:02} {} failed (Job {}, attempt {}): {}",
        step.index,
        step.name,
        step.job_name,
        step.attempt,
        failure
            .map(|f| f.cause.as_str())
            .unwrap_or("no cause recorded")
    );
    if let Some(failure) = failure {
        if !failure.last_log_lines.is_empty() {
            text.push_str("\n  last log lines:");
            for line in &failure.last_log_lines {
                text.push_str("\n    ");
                text.push_str(line);
            }
        }
        text.push_str("\n  whole log: ");
        text.push_str(&failure.logs_command);
    }
    Some(text)
}

/// Creates service account `account` in `namespace` and applies `rbac`
/// (its roles and bindings, e.g. [`STEP_RUNNER_ROLE`]) with
/// [`apply_rbac`].
pub async fn bind_service_account(
    client: &Client,
    namespace: &str,
    account: &str,
    rbac: &str,
) -> Result<(), RigError> {
    let object: ServiceAccount = from_json(json!({"metadata": {"name": account}}))?;
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &object)
        .await
        .map_err(kube_error(format!("create ServiceAccount {account}")))?;
    apply_rbac(client, namespace, rbac).await
}

/// Creates every document of a role file of `deploy/base/rbac/` (ClusterRoles,
/// Roles and their bindings, nothing else) as the overlay's namespace
/// transformer renders it for `namespace`: an object or a ServiceAccount
/// subject without a namespace gets `namespace`, one with a namespace keeps
/// it. So a run uses exactly the shipped rules and bindings.
pub async fn apply_rbac(client: &Client, namespace: &str, rbac: &str) -> Result<(), RigError> {
    let objects = rbac_documents(rbac, namespace)?;
    for object in objects {
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let at = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let what = format!("create {kind} {at}/{name}");
        let params = PostParams::default();
        let created = match kind.as_str() {
            "ClusterRole" => Api::<ClusterRole>::all(client.clone())
                .create(&params, &from_json(object)?)
                .await
                .map(drop),
            "ClusterRoleBinding" => Api::<ClusterRoleBinding>::all(client.clone())
                .create(&params, &from_json(object)?)
                .await
                .map(drop),
            "Role" => Api::<Role>::namespaced(client.clone(), &at)
                .create(&params, &from_json(object)?)
                .await
                .map(drop),
            _ => Api::<RoleBinding>::namespaced(client.clone(), &at)
                .create(&params, &from_json(object)?)
                .await
                .map(drop),
        };
        created.map_err(kube_error(what))?;
    }
    Ok(())
}

/// The documents of a role file with the namespaces `namespace` fills in
/// (see [`apply_rbac`]); refused when one is not RBAC or none is a role.
pub fn rbac_documents(rbac: &str, namespace: &str) -> Result<Vec<Value>, RigError> {
    const KINDS: [&str; 4] = ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"];
    let mut objects = Vec::new();
    for document in rbac.split("\n---") {
        let mut object: Value = serde_saphyr::from_str(document)
            .map_err(|e| RigError::Invalid(format!("a role file is not YAML: {e}")))?;
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        if !KINDS.contains(&kind.as_str()) {
            return Err(RigError::Invalid(format!(
                "a role file holds a {kind:?}; only {KINDS:?} belong there"
            )));
        }
        if kind.starts_with("Role") && object["metadata"]["namespace"].is_null() {
            object["metadata"]["namespace"] = json!(namespace);
        }
        if let Some(subjects) = object["subjects"].as_array_mut() {
            for subject in subjects {
                if subject["kind"] == "ServiceAccount" && subject["namespace"].is_null() {
                    subject["namespace"] = json!(namespace);
                }
            }
        }
        objects.push(object);
    }
    if !objects
        .iter()
        .any(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
    {
        return Err(RigError::Invalid(
            "a role file holds no ClusterRole or Role".into(),
        ));
    }
    Ok(objects)
}

/// A token of service account `account` (TokenRequest), valid longer than
/// any run: what a pod of that account would present.
pub async fn service_account_token(
    client: &Client,
    namespace: &str,
    account: &str,
) -> Result<String, RigError> {
    let request: TokenRequest = from_json(json!({
        "spec": {"audiences": [], "expirationSeconds": ORCHESTRATOR_TOKEN_SECONDS}
    }))?;
    let answer: TokenRequest = Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create_subresource("token", account, &PostParams::default(), &request)
        .await
        .map_err(kube_error(format!(
            "request a token for ServiceAccount {account}"
        )))?;
    answer
        .status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| RigError::Invalid(format!("no token for ServiceAccount {account}")))
}

/// A typed object from JSON, with the kind in the error.
fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, RigError> {
    serde_json::from_value(value).map_err(|e| {
        RigError::Invalid(format!(
            "not a {}: {e}",
            std::any::type_name::<T>()
                .rsplit("::")
                .next()
                .unwrap_or("object")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmi_api::StepStatus;
    use vmi_api::migration::StepFailure;

    #[test]
    fn the_shipped_roles_parse_and_bind_to_the_namespace() {
        for (file, account) in [
            (STEP_RUNNER_ROLE, SERVICE_ACCOUNT),
            (ORCHESTRATOR_ROLE, ORCHESTRATOR_ACCOUNT),
        ] {
            let docs = rbac_documents(file, "ns").unwrap();
            for doc in &docs {
                if doc["kind"] == "Role" || doc["kind"] == "RoleBinding" {
                    assert!(doc["metadata"]["namespace"].is_string(), "{doc}");
                }
                for subject in doc["subjects"].as_array().into_iter().flatten() {
                    assert_eq!(
                        subject,
                        &json!({"kind": "ServiceAccount", "name": account, "namespace": "ns"})
                    );
                }
            }
            let roles: Vec<&Value> = docs
                .iter()
                .filter(|d| d["kind"] == "Role" || d["kind"] == "ClusterRole")
                .collect();
            assert!(!roles.is_empty());
            for role in roles {
                let bound = docs.iter().any(|d| {
                    d["roleRef"]["kind"] == role["kind"]
                        && d["roleRef"]["name"] == role["metadata"]["name"]
                        && d["metadata"]["namespace"] == role["metadata"]["namespace"]
                });
                assert!(bound, "{role} has a binding");
            }
        }
        assert!(rbac_documents("kind: ConfigMap\nmetadata: {name: x}", "ns").is_err());
    }

    #[test]
    fn a_failed_step_is_summarised_with_its_job_cause_and_log() {
        let mut done = StepStatus::started(10, "monitor-pods", "vmi-step-10-monitor-pods", 1);
        done.state = vmi_api::StepState::Succeeded;
        let mut failed = StepStatus::started(
            11,
            "create-machinesets",
            "vmi-step-11-create-machinesets",
            2,
        );
        failed.state = vmi_api::StepState::Failed;
        failed.failure = Some(StepFailure {
            cause: "step create-machinesets is not implemented yet".into(),
            last_log_lines: vec!["ERROR step create-machinesets is not implemented yet".into()],
            logs_command: "oc logs -n vmi job/vmi-step-11-create-machinesets".into(),
        });
        let status = VSphereMigrationInfraStatus {
            phase: Some(Phase::Failed),
            steps: vec![done.clone(), failed],
            ..Default::default()
        };
        let text = failure_summary(&status).unwrap();
        assert_eq!(
            text,
            "step 11 create-machinesets failed (Job vmi-step-11-create-machinesets, attempt 2): \
             step create-machinesets is not implemented yet\n  last log lines:\n    ERROR step \
             create-machinesets is not implemented yet\n  whole log: oc logs -n vmi \
             job/vmi-step-11-create-machinesets"
        );
        let fine = VSphereMigrationInfraStatus {
            steps: vec![done],
            ..Default::default()
        };
        assert_eq!(failure_summary(&fine), None);
    }
}
