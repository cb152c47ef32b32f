//! The `VSphereMigrationInfra` custom resource (`vmi`): what the administrator
//! asks for (spec) and what the migration has done so far (status).
//!
//! Everything the API server can check without looking at the cluster is a
//! rule of the generated CRD, so a malformed request is refused when it is
//! applied, before any step has run. Checks that need the cluster or the
//! vCenters are preflight's (step 00).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::step::Step;
use crate::topology::{
    FailureDomain, OBJECT_NAME_PATTERN, SERVER_PATTERN, TargetVCenter, VCenterTls,
};

/// Desired state of a vCenter migration.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "config.openshift.io",
    version = "v1alpha1",
    kind = "VSphereMigrationInfra",
    plural = "vspheremigrationinfra",
    singular = "vspheremigrationinfra",
    shortname = "vmi",
    shortname = "vsmi",
    category = "vsphere",
    namespaced,
    status = "VSphereMigrationInfraStatus",
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".spec.state","description":"What the administrator asked for"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase","description":"Where the migration is"}"#,
    printcolumn = r#"{"name":"Step","type":"string","jsonPath":".status.currentStep","description":"The step running or next, e.g. 7/17 update-infra"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.vcenters.all(a, self.vcenters.exists_one(b, b.server == a.server))")
    .message("spec.vcenters: each server may be listed only once"))]
#[x_kube(validation = Rule::new("self.failureDomains.all(a, self.failureDomains.exists_one(b, b.name == a.name))")
    .message("spec.failureDomains: failure domain names must be unique"))]
#[x_kube(validation = Rule::new("self.failureDomains.all(f, self.vcenters.exists(v, v.server == f.server))")
    .message("spec.failureDomains[].server must be the server of an entry in spec.vcenters (case sensitive)"))]
#[x_kube(validation = Rule::new("self.failureDomains.all(f, self.vcenters.exists(v, v.server == f.server && f.topology.datacenter in v.datacenters))")
    .message("spec.failureDomains[].topology.datacenter must be listed in spec.vcenters[].datacenters of the failure domain's server"))]
#[x_kube(validation = Rule::new("!has(self.source) || self.vcenters.all(v, v.server != self.source.server)")
    .message("spec.vcenters[].server must differ from spec.source.server: the target vCenter cannot be the source"))]
#[x_kube(validation = Rule::new("!has(self.workers) || !has(self.workers.failureDomains) || self.workers.failureDomains.all(w, self.failureDomains.exists(f, f.name == w.name))")
    .message("spec.workers.failureDomains[].name must be the name of an entry in spec.failureDomains"))]
#[x_kube(validation = Rule::new("!has(self.controlPlane) || self.controlPlane.failureDomains.all(n, self.failureDomains.exists(f, f.name == n))")
    .message("spec.controlPlane.failureDomains must name entries of spec.failureDomains"))]
pub struct VSphereMigrationInfraSpec {
    /// What the migration should do now: `Pending` (validate and plan only),
    /// `Running`, `Paused` (finish the current step, start no new one) or
    /// `Rollback` (undo the completed reversible steps, newest first).
    #[serde(default)]
    pub state: MigrationState,
    /// The source vCenter as the administrator expects it to be. When set,
    /// preflight refuses a cluster whose Infrastructure names another vCenter,
    /// and `tls` says how to trust the source's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceVCenter>,
    /// The target vCenters (`VSpherePlatformVCenterSpec` shape). At most two:
    /// the Infrastructure holds at most three vCenters and the source stays
    /// until step 15.
    #[schemars(length(min = 1, max = 2))]
    pub vcenters: Vec<TargetVCenter>,
    /// The target failure domains (`VSpherePlatformFailureDomainSpec` shape).
    #[schemars(length(min = 1, max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub failure_domains: Vec<FailureDomain>,
    /// The Secret in the vmi's namespace holding `<server>.username` and
    /// `<server>.password` for each target vCenter, as in
    /// `kube-system/vsphere-creds`.
    pub credentials_secret: SecretRef,
    /// Worker machines in the target failure domains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<Workers>,
    /// Control plane machines in the target failure domains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<ControlPlane>,
    /// vSphere CSI persistent volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Volumes>,
    /// Steps to stop before until the administrator removes them from this
    /// list (approval gates), e.g. `[recreate-cpms, remove-source]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 17))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub pause_before: Vec<Step>,
}

/// What the administrator asks the migration to do.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum MigrationState {
    /// Validate and plan only; change nothing.
    #[default]
    Pending,
    /// Run the steps in order.
    Running,
    /// Finish the current step and start no new one.
    Paused,
    /// Undo the completed reversible steps, newest first.
    Rollback,
}

/// The source vCenter as the administrator expects it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceVCenter {
    /// The source vCenter's server exactly as the Infrastructure names it.
    #[schemars(length(min = 1, max = 255), regex(pattern = SERVER_PATTERN))]
    pub server: String,
    /// How the source vCenter's TLS certificate is trusted; the system trust
    /// store when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<VCenterTls>,
}

/// A Secret in the vmi's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME_PATTERN))]
    pub name: String,
}

/// Worker machines in the target failure domains.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workers {
    /// Replicas per target failure domain; a failure domain not listed gets
    /// no worker. When omitted, the source's worker count is spread evenly
    /// over every target failure domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub failure_domains: Option<Vec<WorkerPlacement>>,
    /// Machine size for the new workers; the source MachineSet's when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_size: Option<MachineSize>,
}

/// How many workers a target failure domain gets.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerPlacement {
    /// Name of an entry in `spec.failureDomains`.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// Worker replicas in this failure domain (0 or more).
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
}

/// Size overrides for new worker machines.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.memoryMiB) || self.memoryMiB % 4 == 0")
    .message("workers.machineSize.memoryMiB must be a multiple of 4 (a vSphere requirement)"))]
#[x_kube(validation = Rule::new("!has(self.numCPUs) || !has(self.numCoresPerSocket) || self.numCPUs % self.numCoresPerSocket == 0")
    .message("workers.machineSize.numCPUs must be a multiple of numCoresPerSocket"))]
pub struct MachineSize {
    /// Virtual CPUs.
    #[serde(default, rename = "numCPUs", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2, max = 768))]
    pub num_cpus: Option<i32>,
    /// Cores per virtual socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 768))]
    pub num_cores_per_socket: Option<i32>,
    /// Memory in MiB.
    #[serde(default, rename = "memoryMiB", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 4096, max = 25165824))]
    pub memory_mib: Option<i64>,
    /// Size of the root disk in GiB.
    #[serde(default, rename = "diskGiB", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 16, max = 65536))]
    pub disk_gib: Option<i32>,
}

/// Control plane machines in the target failure domains.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlane {
    /// Names of the target failure domains the control plane machine set
    /// spreads over; all of `spec.failureDomains` when omitted.
    #[schemars(length(min = 1, max = 32), inner(length(min = 1, max = 256)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub failure_domains: Vec<String>,
}

/// vSphere CSI persistent volumes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Volumes {
    /// Move the vSphere CSI volumes to the target vCenter. When false and
    /// such volumes exist, step 13 stops the migration instead of leaving
    /// them behind.
    pub migrate: bool,
    /// How disks move: `Copy` (stream the bytes; cold, works between any two
    /// vCenters) or `Relocate` (cross-vCenter vMotion of a helper VM).
    #[serde(default)]
    pub mode: VolumeMode,
    /// Volumes moved at the same time (1-64); 4 when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub concurrency: Option<i32>,
    /// Only volumes whose PVC namespace matches; all namespaces when omitted.
    /// A label selector with at most 32 labels and 32 expressions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<NamespaceSelectorSchema>")]
    pub namespace_selector: Option<LabelSelector>,
    /// Leave behind the volumes that cannot be moved (in-tree, used by a
    /// DaemonSet, owned by a kind vmi cannot stop, not found on the source
    /// vCenter) instead of refusing to start. They stay on the source
    /// vCenter, which step 15 removes from the cluster.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_unmovable: bool,
}

/// The schema `spec.volumes.namespaceSelector` is checked against: a
/// Kubernetes `LabelSelector` with bounded lists, the four operators spelled
/// out and the label syntax enforced, so that a selector the API server
/// would refuse when vmi lists namespaces in step 13 (or that vmi would read
/// differently from Kubernetes) is refused when the vmi is applied. The
/// field's Rust type stays `LabelSelector`.
#[derive(JsonSchema)]
#[schemars(rename_all = "camelCase")]
#[allow(dead_code)] // only its schema is used
struct NamespaceSelectorSchema {
    /// Labels a namespace must have, `{key: value}`, all of them.
    #[schemars(extend("maxProperties" = 32))]
    match_labels: Option<BTreeMap<String, LabelValueSchema>>,
    /// Requirements a namespace must meet, all of them.
    #[schemars(length(max = 32))]
    match_expressions: Option<Vec<SelectorRequirementSchema>>,
}

/// A label value: at most 63 characters, letters, digits, `-`, `_` and
/// `.`, starting and ending with a letter or digit; or empty.
#[derive(JsonSchema)]
#[allow(dead_code)] // only its schema is used
struct LabelValueSchema(
    #[schemars(length(max = 63), regex(pattern = LABEL_VALUE_OR_EMPTY_PATTERN))] String,
);

/// One requirement of a label selector.
#[derive(KubeSchema)]
#[x_kube(validation = Rule::new("self.operator == 'In' || self.operator == 'NotIn' ? has(self.values) && size(self.values) > 0 : !has(self.values) || size(self.values) == 0")
    .message("spec.volumes.namespaceSelector.matchExpressions[]: operators In and NotIn need at least one value; Exists and DoesNotExist take none"))]
#[allow(dead_code)] // only its schema is used
struct SelectorRequirementSchema {
    /// The label key: `[<DNS subdomain prefix>/]<name>`.
    #[schemars(length(min = 1, max = 317), regex(pattern = LABEL_KEY_PATTERN))]
    key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist` (case sensitive).
    operator: SelectorOperator,
    /// The values, for `In` and `NotIn`.
    #[schemars(
        length(max = 64),
        inner(length(max = 63), regex(pattern = LABEL_VALUE_OR_EMPTY_PATTERN))
    )]
    values: Option<Vec<String>>,
}

/// A label selector operator.
#[derive(Serialize, JsonSchema)]
#[allow(dead_code)] // only its schema is used
enum SelectorOperator {
    /// The label's value is one of `values`.
    In,
    /// The label is absent or its value is none of `values`.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

/// A Kubernetes label key: an optional DNS subdomain prefix and `/`, then a
/// name of letters, digits, `-`, `_` and `.` starting and ending with a
/// letter or digit.
pub const LABEL_KEY_PATTERN: &str = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$";

/// A Kubernetes label value, empty allowed.
pub const LABEL_VALUE_OR_EMPTY_PATTERN: &str = r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$";

/// How a volume's disk moves to the target vCenter.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum VolumeMode {
    /// Stream the disk's bytes to the target datastore and register it there.
    #[default]
    Copy,
    /// Relocate a helper VM holding the disk with cross-vCenter vMotion.
    Relocate,
}

/// Observed state of a vCenter migration.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VSphereMigrationInfraStatus {
    /// Where the migration is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The step running or next, as `<index>/<count> <name>`, e.g.
    /// `7/17 update-infra`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step: Option<String>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`; reason and message say where to
    /// look.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The migration path preflight chose, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_path: Option<MigrationPathDecision>,
    /// How much has moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// One entry per step that has started, in pipeline order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepStatus>,
    /// Where each vSphere CSI volume is in step 13 (its journal state);
    /// the journal itself is in the ConfigMaps `vmi-volume-<vmi>-…`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeProgress>,
}

/// Where one volume's move is.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeProgress {
    /// The PersistentVolume.
    pub persistent_volume: String,
    /// Its claim as `namespace/name`, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    /// The journal state: `Pending`, `Quiesced`, `Detached`, `Moved`,
    /// `Registered`, `Rebound`, `Restored`, `Complete`, or `Skipped`.
    pub state: String,
    /// What is happening or went wrong, when there is something to say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Where the migration is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// Validated and planned; waiting for `state: Running`.
    Pending,
    /// A step is running or about to start.
    Running,
    /// Stopped between steps by `state: Paused` or `pauseBefore`.
    Paused,
    /// Every step succeeded.
    Succeeded,
    /// A step failed; nothing else starts until it is retried.
    Failed,
    /// Undoing the completed reversible steps.
    RollingBack,
    /// Every completed reversible step was undone.
    RolledBack,
}

/// How the second vCenter is added to the Infrastructure.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationPathDecision {
    /// `Native` or `Legacy`.
    pub path: MigrationPath,
    /// Why preflight chose it (e.g. which Infrastructure CRD rule it found).
    pub reason: String,
}

/// How the second vCenter is added to the Infrastructure.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum MigrationPath {
    /// The Infrastructure CRD accepts a day-2 vCenter
    /// (`VSphereMultiVCenterDay2`): steps 01 and 02 are skipped.
    Native,
    /// The Infrastructure CRD refuses a day-2 vCenter: the cluster-version
    /// operator is scaled down and the CRD rule relaxed for the migration.
    Legacy,
}

/// How much has moved so far.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Worker machines running on the target out of those planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<Count>,
    /// Control plane machines replaced out of three.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<Count>,
    /// Volumes complete out of those to move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Count>,
}

/// `done` out of `total`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct Count {
    /// How many are done.
    pub done: i32,
    /// How many there are.
    pub total: i32,
}

/// What one step did, kept for triage after the migration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepStatus {
    /// Position in the pipeline (0 for preflight).
    pub index: i32,
    /// Step name, e.g. `update-infra`.
    pub name: String,
    /// The Job that ran the latest attempt, e.g. `vmi-step-07-update-infra`.
    pub job_name: String,
    /// 1 for the first run; each deletion of the Job to retry adds one.
    pub attempt: i32,
    /// Where the step is.
    pub state: StepState,
    /// When the latest attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the latest attempt finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// One line saying what the step found or did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// The objects the step changed, e.g. `Infrastructure cluster: added vCenter vc2.example.com`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    /// The backups the step took before changing anything, e.g.
    /// `ConfigMap vmi-backup-07-update-infra`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<String>,
    /// What a read-only step found, one line per check or object, e.g.
    /// `ok: vCenter vc2.example.com reachable, TLS pinned` or
    /// `volume: PV pvc-1 (db/data) will be copied to the target in step 13`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<String>,
    /// Why the step failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<StepFailure>,
    /// The undo of this step, once a rollback has started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<UndoStatus>,
}

impl StepStatus {
    /// A fresh entry for attempt `attempt` of a step run by Job `job_name`.
    pub fn started(index: i32, name: &str, job_name: &str, attempt: i32) -> StepStatus {
        StepStatus {
            index,
            name: name.to_owned(),
            job_name: job_name.to_owned(),
            attempt,
            state: StepState::Running,
            started_at: None,
            finished_at: None,
            result: None,
            changes: Vec::new(),
            backups: Vec::new(),
            findings: Vec::new(),
            failure: None,
            undo: None,
        }
    }
}

/// One step's undo during a rollback: its own Job, attempts and outcome.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UndoStatus {
    /// The Job that ran the latest attempt, e.g. `vmi-rollback-07-update-infra`.
    pub job_name: String,
    /// 1 for the first run; each deletion of the Job to retry adds one.
    pub attempt: i32,
    /// When the latest attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the latest attempt finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// One line saying what the undo restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Why the undo failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<StepFailure>,
}

/// Where a step is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum StepState {
    /// Its Job is running.
    Running,
    /// Done and verified.
    Succeeded,
    /// Not needed on this migration path (the result says why).
    Skipped,
    /// Failed; see `failure`.
    Failed,
    /// Its undo is running.
    RollingBack,
    /// Undone from its backup.
    RolledBack,
    /// Its undo failed; see `undo.failure`.
    RollbackFailed,
}

/// Why a step failed and where to read more.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepFailure {
    /// The cause, as the step reported it.
    pub cause: String,
    /// The last lines the step logged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_log_lines: Vec<String>,
    /// The command that shows the whole log, e.g.
    /// `oc logs -n vmi-system job/vmi-step-07-update-infra`.
    pub logs_command: String,
}
