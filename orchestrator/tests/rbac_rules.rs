//! Every rule of vmi's two roles is needed, and its absence is told
//! plainly: for each rule of `deploy/base/rbac/step-runner.yaml` and
//! `deploy/base/rbac/orchestrator.yaml` (the texts the migration rig binds,
//! [`migration::STEP_RUNNER_ROLE`] and [`migration::ORCHESTRATOR_ROLE`]),
//! a fresh simulated cluster is started with the roles minus that one rule,
//! a migration is run in the scenario that needs the rule, and
//!
//! - for a rule of `vmi-step-runner`: the vmi ends `Failed`, and the cause
//!   recorded for the failed step (`status.steps[].failure.cause`, also in
//!   the `Degraded` condition and the `StepFailed` event) holds Kubernetes'
//!   `… is forbidden: User "…:vmi-step-runner" cannot <verb> resource
//!   "<resource>" in API group "<group>" [in the namespace "<ns>"]` with a
//!   verb, a resource and the API group of the rule taken away (and its
//!   namespace, for a Role);
//! - for a rule of `vmi-orchestrator`: the orchestrator cannot run Jobs or
//!   write the status without its rights, so no step fails; its log names
//!   the missing permission the same way (a warning, repeated while it
//!   lasts), and, unless the rule is only for events, the vmi's outcome is
//!   never recorded (it neither succeeds nor fails).
//!
//! Every rule must be in [`PLAN`]: with the scenario that needs it, or as
//! an exception with its reason (a rule the simulated cluster does not
//! enforce, or one another rule grants anyway). A rule that is in neither,
//! or a plan entry that no rule matches, fails
//! `every_rule_has_a_scenario_or_a_reason` (no cluster needed), so a new or
//! changed rule cannot slip in untested.
//!
//! Each rule takes 30 s to a minute (a simulated cluster, then the
//! migration up to the step that fails, with its retries), so by default
//! `removing_a_rule_makes_the_migration_fail_naming_it` checks a sample of
//! [`SAMPLE`] rules drawn at random (the seed is printed; `VMI_TEST_SEED=<seed>`
//! draws the same ones). All of them (about 35 minutes on 2 cores):
//!
//! ```sh
//! VMI_RBAC_RULES=all cargo test -p vmi-orchestrator --test rbac_rules -- --nocapture
//! ```
//!
//! `VMI_RBAC_RULES=<n>` checks `n` at random, any other value the rules
//! whose key (as printed, e.g. `vmi-step-runner openshift-config
//! configmaps(cloud-provider-config) get,update`) contains it.

mod programs;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};
use vmi_api::{Phase, VSphereMigrationInfraStatus};
use vmi_sim::crds::InfrastructureCrd;
use vmi_sim::migration::{self, MigrationRig, VmiOptions};
use vmi_sim::seed::{CloudConfigFormat, SeedOptions};
use vmi_sim::test_random::TestRandom;
use vmi_sim::volumes::VolumeWorkloads;

/// Rules checked when `VMI_RBAC_RULES` is not set.
const SAMPLE: usize = 3;
/// How long a migration missing a step runner's rule may take to fail
/// (a whole migration, with the failing step's retries, on a loaded
/// 2-core machine).
const STEP_PATIENCE: Duration = Duration::from_secs(12 * 60);
/// How long the orchestrator may take to log a missing permission (a
/// step must fail first for `pods list`: preflight with its two retries).
const ORCHESTRATOR_PATIENCE: Duration = Duration::from_secs(5 * 60);
/// How long a vmi is watched after the orchestrator logged the missing
/// permission, to see that its outcome is not recorded.
const STALL_WATCH: Duration = Duration::from_secs(15);
/// One whole simulated cluster at a time: each is several processes.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The namespace the seeded volumes and their workloads are in.
const APPS: &str = "apps";
/// The Job the `VolumesWithJob` scenario adds, and the unused claim it mounts.
const VOLUME_JOB: (&str, &str) = ("report", "spare-0");

/// How a migration is set up so that it needs a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// Native path (day-2 vCenters allowed), YAML cloud-provider-config, no
    /// volumes.
    Native,
    /// Legacy path (OpenShift 4.22's Infrastructure CRD): steps 01 and 02
    /// scale the CVO down and relax the CRD.
    Legacy,
    /// Native path with vSphere CSI volumes moved by step 13 in Copy mode
    /// (a Deployment's, a StatefulSet's three, an unused one), selected by
    /// `spec.volumes.namespaceSelector`.
    Volumes,
    /// `Volumes`, and a Job (no owner) whose pod mounts the unused claim:
    /// step 00 follows that pod to its Job, step 13 would suspend it.
    VolumesWithJob,
    /// Native path with the vmi's credentials Secret deleted: preflight
    /// fails (after its retries), so the orchestrator reads the failed
    /// Job's pods.
    PreflightFails,
}

/// What the orchestrator does without a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// The vmi's outcome is never recorded: it neither succeeds nor fails.
    Stalls,
    /// Only the log (and the missing events) show it; the migration goes
    /// on. The reason says why that is acceptable.
    LogOnly(&'static str),
}

/// What the test does with a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// A step of this scenario fails without the rule (a rule of
    /// `vmi-step-runner`).
    StepFails(Scenario),
    /// The orchestrator logs the missing permission in this scenario (a
    /// rule of `vmi-orchestrator`).
    OrchestratorLogs(Scenario, Effect),
    /// Not checked in the simulated cluster: why.
    NotEnforcedHere(&'static str),
    /// Not needed as long as the rule with this key (a ClusterRole rule of
    /// the same account, without resourceNames) grants all of it in every
    /// namespace; the test checks that it does.
    GrantedBy(&'static str),
}

/// Every rule of both role files, by [`Rule::key`], and how it is proven.
/// The comment after each names the step that failed first without it in
/// the full run.
const PLAN: &[(&str, Check)] = &[
    // --- vmi-step-runner, ClusterRole ---
    (
        "vmi-step-runner cluster infrastructures(cluster) get,patch",
        Check::StepFails(Scenario::Native), // 00
    ),
    (
        "vmi-step-runner cluster clusteroperators,clusterversions list",
        Check::StepFails(Scenario::Native), // 00
    ),
    (
        "vmi-step-runner cluster customresourcedefinitions(infrastructures.config.openshift.io) get,patch",
        Check::StepFails(Scenario::Legacy), // 02
    ),
    (
        "vmi-step-runner cluster clusterautoscalers list",
        Check::StepFails(Scenario::Native), // 00
    ),
    (
        "vmi-step-runner cluster nodes list",
        Check::StepFails(Scenario::Native), // 11
    ),
    (
        "vmi-step-runner cluster persistentvolumes list,get,patch,delete,create",
        Check::StepFails(Scenario::Native), // 00
    ),
    (
        "vmi-step-runner cluster persistentvolumeclaims get,patch",
        Check::StepFails(Scenario::Volumes), // 00
    ),
    (
        "vmi-step-runner cluster pods list",
        Check::StepFails(Scenario::Volumes), // 00
    ),
    (
        "vmi-step-runner cluster deployments,statefulsets,replicasets get",
        Check::StepFails(Scenario::Volumes), // 00
    ),
    (
        "vmi-step-runner cluster deployments/scale,statefulsets/scale,replicasets/scale patch",
        Check::StepFails(Scenario::Volumes), // 13
    ),
    (
        "vmi-step-runner cluster cronjobs list",
        Check::StepFails(Scenario::Volumes), // 00
    ),
    (
        "vmi-step-runner cluster jobs get,patch",
        Check::StepFails(Scenario::VolumesWithJob), // 00
    ),
    (
        "vmi-step-runner cluster namespaces list",
        Check::StepFails(Scenario::Volumes), // 00
    ),
    (
        "vmi-step-runner cluster volumeattachments list",
        Check::StepFails(Scenario::Volumes), // 13
    ),
    // --- vmi-step-runner, Role in the vmi's namespace ---
    (
        "vmi-step-runner vmi-namespace vspheremigrationinfra get",
        Check::StepFails(Scenario::Native), // 00
    ),
    (
        "vmi-step-runner vmi-namespace vspheremigrationinfra/status get,patch",
        Check::StepFails(Scenario::Native), // 00
    ),
    (
        "vmi-step-runner vmi-namespace configmaps get,create,update",
        Check::StepFails(Scenario::Native), // 03
    ),
    (
        "vmi-step-runner vmi-namespace configmaps list,delete",
        Check::StepFails(Scenario::Volumes), // 13
    ),
    (
        "vmi-step-runner vmi-namespace secrets get",
        Check::StepFails(Scenario::Native), // 00
    ),
    // --- vmi-step-runner, Roles in OpenShift's namespaces ---
    (
        "vmi-step-runner kube-system secrets(vsphere-creds) get,patch",
        Check::StepFails(Scenario::Native), // 00
    ),
    (
        "vmi-step-runner openshift-config configmaps(cloud-provider-config) get,update",
        Check::StepFails(Scenario::Native), // 08
    ),
    (
        "vmi-step-runner openshift-cluster-version deployments(cluster-version-operator) get,patch",
        Check::StepFails(Scenario::Legacy), // 01
    ),
    (
        "vmi-step-runner openshift-machine-api controlplanemachinesets(cluster) get,delete,update,patch",
        Check::StepFails(Scenario::Native), // 03 (00 lists them)
    ),
    (
        "vmi-step-runner openshift-machine-api controlplanemachinesets list,create",
        Check::StepFails(Scenario::Native), // 00
    ),
    (
        "vmi-step-runner openshift-machine-api machinesets get,list,create,patch,delete",
        Check::StepFails(Scenario::Native), // 11
    ),
    (
        "vmi-step-runner openshift-machine-api machines list",
        Check::StepFails(Scenario::Native), // 11
    ),
    (
        "vmi-step-runner openshift-machine-api machinehealthchecks list",
        Check::StepFails(Scenario::Native), // 00
    ),
    (
        "vmi-step-runner openshift-machine-api machineautoscalers list",
        Check::StepFails(Scenario::Native), // 00
    ),
    (
        "vmi-step-runner openshift-machine-api secrets(vsphere-cloud-credentials) get,patch",
        Check::StepFails(Scenario::Native), // 04
    ),
    (
        "vmi-step-runner openshift-machine-api deployments(machine-api-controllers) get",
        Check::GrantedBy("vmi-step-runner cluster deployments,statefulsets,replicasets get"),
    ),
    (
        "vmi-step-runner openshift-machine-api pods list,delete",
        Check::StepFails(Scenario::Native), // 09
    ),
    (
        "vmi-step-runner openshift-machine-api pods/log get",
        Check::StepFails(Scenario::Native), // 10
    ),
    (
        "vmi-step-runner openshift-cloud-controller-manager secrets(vsphere-cloud-credentials) get,patch",
        Check::StepFails(Scenario::Native), // 04
    ),
    (
        "vmi-step-runner openshift-cloud-controller-manager deployments(vsphere-cloud-controller-manager) get",
        Check::GrantedBy("vmi-step-runner cluster deployments,statefulsets,replicasets get"),
    ),
    (
        "vmi-step-runner openshift-cloud-controller-manager pods list,delete",
        Check::StepFails(Scenario::Native), // 09
    ),
    (
        "vmi-step-runner openshift-cloud-controller-manager pods/log get",
        Check::StepFails(Scenario::Native), // 10
    ),
    (
        "vmi-step-runner openshift-cluster-csi-drivers secrets(vmware-vsphere-cloud-credentials) get,patch",
        Check::StepFails(Scenario::Native), // 04
    ),
    (
        "vmi-step-runner openshift-cluster-csi-drivers deployments(vmware-vsphere-csi-driver-operator,vmware-vsphere-csi-driver-controller) get",
        Check::GrantedBy("vmi-step-runner cluster deployments,statefulsets,replicasets get"),
    ),
    (
        "vmi-step-runner openshift-cluster-csi-drivers cnsvolumeinfoes get,create,patch",
        Check::StepFails(Scenario::Volumes), // 13
    ),
    (
        "vmi-step-runner openshift-cluster-csi-drivers daemonsets(vmware-vsphere-csi-driver-node) get",
        Check::StepFails(Scenario::Native), // 09
    ),
    (
        "vmi-step-runner openshift-cluster-csi-drivers pods list,delete",
        Check::StepFails(Scenario::Native), // 09
    ),
    (
        "vmi-step-runner openshift-cluster-csi-drivers pods/log get",
        Check::StepFails(Scenario::Native), // 10
    ),
    (
        "vmi-step-runner openshift-cluster-storage-operator secrets(vsphere-cloud-credentials) get,patch",
        Check::StepFails(Scenario::Native), // 04
    ),
    (
        "vmi-step-runner openshift-cluster-storage-operator deployments(vsphere-problem-detector-operator) get",
        Check::GrantedBy("vmi-step-runner cluster deployments,statefulsets,replicasets get"),
    ),
    (
        "vmi-step-runner openshift-cluster-storage-operator pods list,delete",
        Check::StepFails(Scenario::Native), // 09
    ),
    (
        "vmi-step-runner openshift-cluster-storage-operator pods/log get",
        Check::StepFails(Scenario::Native), // 10
    ),
    // --- vmi-orchestrator, Role in its namespace ---
    (
        "vmi-orchestrator vmi-namespace vspheremigrationinfra get,list,watch",
        Check::OrchestratorLogs(Scenario::Native, Effect::Stalls),
    ),
    (
        "vmi-orchestrator vmi-namespace vspheremigrationinfra/status update",
        Check::OrchestratorLogs(Scenario::Native, Effect::Stalls),
    ),
    (
        "vmi-orchestrator vmi-namespace vspheremigrationinfra/finalizers update",
        Check::NotEnforcedHere(
            "only OpenShift's OwnerReferencesPermissionEnforcement admission plugin asks for it \
             (to set the Jobs' blocking owner reference); a plain kube-apiserver has no such plugin",
        ),
    ),
    (
        "vmi-orchestrator vmi-namespace jobs list,watch,create",
        Check::OrchestratorLogs(Scenario::Native, Effect::Stalls),
    ),
    (
        "vmi-orchestrator vmi-namespace pods list",
        Check::OrchestratorLogs(Scenario::PreflightFails, Effect::Stalls),
    ),
    (
        "vmi-orchestrator vmi-namespace events create,patch",
        Check::OrchestratorLogs(
            Scenario::Native,
            Effect::LogOnly(
                "events are a courtesy: every fact they tell is in the status, so a refused \
                 event is logged (`cannot publish event`) and the migration goes on",
            ),
        ),
    ),
    (
        "vmi-orchestrator vmi-namespace leases create",
        Check::OrchestratorLogs(Scenario::Native, Effect::Stalls),
    ),
    (
        "vmi-orchestrator vmi-namespace leases(vmi-orchestrator) get,update",
        Check::OrchestratorLogs(Scenario::Native, Effect::Stalls),
    ),
];

/// Which service account a role file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Account {
    StepRunner,
    Orchestrator,
}

impl Account {
    const ALL: [Account; 2] = [Account::StepRunner, Account::Orchestrator];

    fn name(self) -> &'static str {
        match self {
            Account::StepRunner => migration::SERVICE_ACCOUNT,
            Account::Orchestrator => migration::ORCHESTRATOR_ACCOUNT,
        }
    }

    fn file(self) -> &'static str {
        match self {
            Account::StepRunner => migration::STEP_RUNNER_ROLE,
            Account::Orchestrator => migration::ORCHESTRATOR_ROLE,
        }
    }
}

/// One rule of a Role or ClusterRole of a role file.
#[derive(Debug, Clone)]
struct Rule {
    account: Account,
    /// The document of the role file (split at `---`).
    document: usize,
    /// Its index in that role's `rules`.
    index: usize,
    /// `ClusterRole` or `Role`.
    kind: String,
    /// The Role's namespace; `None` for a ClusterRole or for a Role of the
    /// vmi's namespace (no namespace in the file).
    namespace: Option<String>,
    api_groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
    resource_names: Vec<String>,
}

impl Rule {
    /// `<account> <where> <resources>[(<names>)] <verbs>`, where is
    /// `cluster`, `vmi-namespace` or the Role's namespace.
    fn key(&self) -> String {
        let scope = match (&*self.kind, &self.namespace) {
            ("ClusterRole", _) => "cluster".to_owned(),
            (_, None) => "vmi-namespace".to_owned(),
            (_, Some(ns)) => ns.clone(),
        };
        let names = if self.resource_names.is_empty() {
            String::new()
        } else {
            format!("({})", self.resource_names.join(","))
        };
        format!(
            "{} {scope} {}{names} {}",
            self.account.name(),
            self.resources.join(","),
            self.verbs.join(",")
        )
    }

    fn check(&self) -> Option<Check> {
        let key = self.key();
        PLAN.iter().find(|(k, _)| *k == key).map(|(_, c)| *c)
    }
}

/// The documents of a role file as written (no namespace filled in).
fn documents(file: &str) -> Vec<Value> {
    file.split("\n---")
        .map(|d| serde_saphyr::from_str(d).expect("a role file is YAML"))
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v.as_str().expect("a list of strings").to_owned())
        .collect()
}

/// Every rule of every Role and ClusterRole of both role files, in order.
fn rules() -> Vec<Rule> {
    let mut out = Vec::new();
    for account in Account::ALL {
        for (document, object) in documents(account.file()).iter().enumerate() {
            let kind = object["kind"].as_str().unwrap_or_default();
            if kind != "Role" && kind != "ClusterRole" {
                continue;
            }
            for (index, rule) in object["rules"].as_array().into_iter().flatten().enumerate() {
                out.push(Rule {
                    account,
                    document,
                    index,
                    kind: kind.to_owned(),
                    namespace: object["metadata"]["namespace"].as_str().map(str::to_owned),
                    api_groups: strings(&rule["apiGroups"]),
                    resources: strings(&rule["resources"]),
                    verbs: strings(&rule["verbs"]),
                    resource_names: strings(&rule["resourceNames"]),
                });
            }
        }
    }
    out
}

/// The role file of `rule`'s account without that rule (JSON documents,
/// which the rig reads as YAML), and the other file as shipped: (step
/// runner, orchestrator).
fn roles_without(rule: &Rule) -> (String, String) {
    let mut objects = documents(rule.account.file());
    let removed = objects[rule.document]["rules"]
        .as_array_mut()
        .expect("a role has rules")
        .remove(rule.index);
    assert_eq!(strings(&removed["verbs"]), rule.verbs, "{}", rule.key());
    let edited = objects
        .iter()
        .map(|o| serde_json::to_string_pretty(o).expect("JSON"))
        .collect::<Vec<_>>()
        .join("\n---\n");
    match rule.account {
        Account::StepRunner => (edited, migration::ORCHESTRATOR_ROLE.to_owned()),
        Account::Orchestrator => (migration::STEP_RUNNER_ROLE.to_owned(), edited),
    }
}

/// `cannot <verb> resource "<resource>" in API group "<group>"[ in the
/// namespace "<ns>"]`, as Kubernetes' RBAC refusal reads.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refusal {
    verb: String,
    resource: String,
    group: String,
    namespace: Option<String>,
    /// The refusal as written, from `cannot`.
    text: String,
}

/// Every RBAC refusal in `text` by a service account of vmi; quotes
/// escaped by Debug formatting (`\"`) are read as quotes.
fn refusals(text: &str) -> Vec<Refusal> {
    let text = text.replace('\\', "");
    let mut out = Vec::new();
    for (at, _) in text.match_indices("cannot ") {
        let before = &text[..at];
        // Only what Kubernetes says of a user that is forbidden.
        if !before.ends_with("\" ") || !before.contains("forbidden: User \"system:serviceaccount:")
        {
            continue;
        }
        let rest = &text[at + "cannot ".len()..];
        let Some((verb, rest)) = rest.split_once(" resource \"") else {
            continue;
        };
        let Some((resource, rest)) = rest.split_once("\" in API group \"") else {
            continue;
        };
        let Some((group, rest)) = rest.split_once('"') else {
            continue;
        };
        let namespace = rest
            .strip_prefix(" in the namespace \"")
            .and_then(|r| r.split_once('"'))
            .map(|(ns, _)| ns.to_owned());
        let end = text.len() - rest.len()
            + namespace
                .as_ref()
                .map_or(0, |ns| " in the namespace \"".len() + ns.len() + 1);
        out.push(Refusal {
            verb: verb.to_owned(),
            resource: resource.to_owned(),
            group: group.to_owned(),
            namespace,
            text: text[at..end].to_owned(),
        });
    }
    out
}

/// The refusal in `text` that names `rule`: one of its verbs, resources
/// and API groups, by `rule`'s account, in its Role's namespace.
fn naming(rule: &Rule, text: &str, vmi_namespace: &str) -> Option<Refusal> {
    let user = format!(
        "forbidden: User \"system:serviceaccount:{vmi_namespace}:{}\"",
        rule.account.name()
    );
    if !text.replace('\\', "").contains(&user) {
        return None;
    }
    let namespace = match (&*rule.kind, &rule.namespace) {
        ("ClusterRole", _) => None,
        (_, None) => Some(vmi_namespace.to_owned()),
        (_, Some(ns)) => Some(ns.clone()),
    };
    refusals(text).into_iter().find(|r| {
        rule.verbs.contains(&r.verb)
            && rule.resources.contains(&r.resource)
            && rule.api_groups.contains(&r.group)
            && (namespace.is_none() || r.namespace == namespace)
    })
}

/// What happened without a rule.
#[derive(Debug)]
struct Finding {
    /// The failed step, or `orchestrator`.
    place: String,
    /// The refusal naming the rule.
    refusal: Refusal,
    /// The vmi's phase and step at the end.
    vmi: String,
    /// The whole line that names it: the failed step's recorded cause, or
    /// the orchestrator's log line.
    line: String,
}

/// Starts a rig bound to `roles`, set up for `scenario`, with the
/// orchestrator running.
async fn start(
    scenario: Scenario,
    (step_runner, orchestrator): &(String, String),
) -> Result<MigrationRig, String> {
    let seed = SeedOptions {
        infrastructure_crd: match scenario {
            Scenario::Legacy => InfrastructureCrd::Release422Default,
            _ => InfrastructureCrd::MultiVCenterDay2,
        },
        cloud_config: match scenario {
            Scenario::Legacy => CloudConfigFormat::Ini,
            _ => CloudConfigFormat::Yaml,
        },
        ..SeedOptions::default()
    };
    let mut rig =
        MigrationRig::start_with_roles(seed, programs::built(), step_runner, orchestrator)
            .await
            .map_err(|e| format!("the rig did not start: {e}"))?;
    let mut options = VmiOptions::default();
    if matches!(scenario, Scenario::Volumes | Scenario::VolumesWithJob) {
        rig.seed_volumes(&VolumeWorkloads {
            bare_pod: None,
            ..VolumeWorkloads::default()
        })
        .await
        .map_err(|e| format!("volumes: {e}"))?;
        options.volumes = Some(json!({
            "migrate": true,
            "mode": "Copy",
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": APPS}},
        }));
    }
    if scenario == Scenario::VolumesWithJob {
        let (name, claim) = VOLUME_JOB;
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "report", "image": "report:1",
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
            }}},
        }))
        .map_err(|e| e.to_string())?;
        Api::<Job>::namespaced(rig.client.clone(), APPS)
            .create(&PostParams::default(), &job)
            .await
            .map_err(|e| format!("create Job {APPS}/{name}: {e}"))?;
    }
    if scenario == Scenario::PreflightFails {
        Api::<Secret>::namespaced(rig.client.clone(), &rig.namespace)
            .delete(migration::CREDENTIALS_SECRET, &DeleteParams::default())
            .await
            .map_err(|e| format!("delete the credentials Secret: {e}"))?;
    }
    rig.create_vmi(&options)
        .await
        .map_err(|e| format!("create the vmi: {e}"))?;
    rig.start_orchestrator()
        .map_err(|e| format!("start the orchestrator: {e}"))?;
    Ok(rig)
}

fn where_it_is(status: &VSphereMigrationInfraStatus) -> String {
    format!(
        "phase {}, step {}",
        status
            .phase
            .map_or_else(|| "none".to_owned(), |p| format!("{p:?}")),
        status.current_step.as_deref().unwrap_or("none")
    )
}

/// A step runner's rule: the migration fails, naming it.
async fn step_fails(rig: &MigrationRig, rule: &Rule) -> Result<Finding, String> {
    let status = rig
        .wait_for_phase(&[Phase::Failed, Phase::Succeeded], STEP_PATIENCE)
        .await
        .map_err(|e| format!("{e}\n{}", rig.orchestrator_log_tail(20)))?;
    if status.phase == Some(Phase::Succeeded) {
        return Err("the migration SUCCEEDED without the rule: it is not needed here".into());
    }
    let summary = migration::failure_summary(&status)
        .unwrap_or_else(|| format!("no failed step in {status:#?}"));
    let step = status
        .steps
        .iter()
        .rev()
        .find(|s| s.failure.is_some())
        .ok_or_else(|| format!("failed, but no step records a failure: {summary}"))?;
    let cause = &step
        .failure
        .as_ref()
        .map(|f| f.cause.clone())
        .unwrap_or_default();
    if !cause.contains("forbidden") {
        return Err(format!("the cause does not say forbidden: {summary}"));
    }
    let refusal = naming(rule, cause, &rig.namespace).ok_or_else(|| {
        format!("the cause does not name a verb, resource and group of the rule: {summary}")
    })?;
    Ok(Finding {
        place: format!("{:02} {}", step.index, step.name),
        refusal,
        vmi: where_it_is(&status),
        line: cause.clone(),
    })
}

/// `line` without its terminal colours (the orchestrator's text log has
/// them).
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte (a letter).
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// An orchestrator's rule: its log names the permission; unless the rule
/// is for events only, the vmi's outcome is not recorded.
async fn orchestrator_logs(
    rig: &MigrationRig,
    rule: &Rule,
    effect: Effect,
) -> Result<Finding, String> {
    let started = Instant::now();
    let (refusal, line) = loop {
        let logs: String = rig
            .orchestrator_logs()
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .collect();
        if let Some(found) = logs
            .lines()
            .filter(|l| l.contains("forbidden"))
            .find_map(|l| naming(rule, l, &rig.namespace).map(|r| (r, plain(l))))
        {
            break found;
        }
        if started.elapsed() > ORCHESTRATOR_PATIENCE {
            let status = rig.status().await.unwrap_or_default();
            return Err(format!(
                "the orchestrator's log does not name the permission after {:?} ({}); its tail:\n{}",
                started.elapsed(),
                where_it_is(&status),
                rig.orchestrator_log_tail(20)
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    if effect == Effect::Stalls {
        tokio::time::sleep(STALL_WATCH).await;
    }
    let status = rig.status().await.map_err(|e| e.to_string())?;
    if effect == Effect::Stalls && matches!(status.phase, Some(Phase::Succeeded | Phase::Failed)) {
        return Err(format!(
            "the vmi's outcome was recorded without the rule ({})",
            where_it_is(&status)
        ));
    }
    Ok(Finding {
        place: "orchestrator".into(),
        refusal,
        vmi: where_it_is(&status),
        line,
    })
}

/// Runs `rule`'s scenario without it.
async fn prove(rule: &Rule) -> Result<Finding, String> {
    let (scenario, effect) = match rule.check() {
        Some(Check::StepFails(s)) => (s, None),
        Some(Check::OrchestratorLogs(s, e)) => (s, Some(e)),
        other => return Err(format!("nothing to run for {other:?}")),
    };
    let rig = start(scenario, &roles_without(rule)).await?;
    match effect {
        None => step_fails(&rig, rule).await,
        Some(effect) => orchestrator_logs(&rig, rule, effect).await,
    }
}

/// The rules `VMI_RBAC_RULES` asks for, among those a scenario proves.
fn chosen(runnable: Vec<Rule>) -> Vec<Rule> {
    let wanted = std::env::var("VMI_RBAC_RULES").unwrap_or_default();
    if wanted == "all" {
        return runnable;
    }
    let count = if wanted.is_empty() {
        Some(SAMPLE)
    } else {
        wanted.parse::<usize>().ok()
    };
    let Some(count) = count else {
        let picked: Vec<Rule> = runnable
            .into_iter()
            .filter(|r| r.key().contains(&wanted))
            .collect();
        assert!(
            !picked.is_empty(),
            "VMI_RBAC_RULES={wanted} matches no rule"
        );
        return picked;
    };
    let mut random = TestRandom::from_env_or_clock();
    let mut pool = runnable;
    let mut picked = Vec::new();
    while picked.len() < count && !pool.is_empty() {
        let at = usize::try_from(random.below(pool.len() as u64)).unwrap_or(0);
        picked.push(pool.remove(at));
    }
    picked
}

#[test]
fn every_rule_has_a_scenario_or_a_reason() {
    let rules = rules();
    let keys: Vec<String> = rules.iter().map(Rule::key).collect();
    let unique: BTreeSet<&String> = keys.iter().collect();
    assert_eq!(
        unique.len(),
        keys.len(),
        "two rules with one key: {keys:#?}"
    );
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| !PLAN.iter().any(|(p, _)| p == k))
        .collect();
    assert!(
        missing.is_empty(),
        "rules with no scenario and no exception in PLAN (add one): {missing:#?}"
    );
    let stale: Vec<&str> = PLAN
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| !keys.iter().any(|r| r == k))
        .collect();
    assert!(
        stale.is_empty(),
        "PLAN entries that match no rule (the rule changed?): {stale:#?}"
    );
    for rule in &rules {
        match rule.check() {
            Some(Check::StepFails(_)) => assert_eq!(rule.account, Account::StepRunner),
            Some(Check::OrchestratorLogs(..)) => assert_eq!(rule.account, Account::Orchestrator),
            Some(Check::GrantedBy(by)) => {
                let granting = rules
                    .iter()
                    .find(|r| r.key() == by)
                    .unwrap_or_else(|| panic!("{}: no rule {by}", rule.key()));
                assert!(
                    granting.account == rule.account
                        && granting.kind == "ClusterRole"
                        && granting.resource_names.is_empty()
                        && rule
                            .api_groups
                            .iter()
                            .all(|g| granting.api_groups.contains(g))
                        && rule
                            .resources
                            .iter()
                            .all(|r| granting.resources.contains(r))
                        && rule.verbs.iter().all(|v| granting.verbs.contains(v)),
                    "{} is not granted by {by} any more: give it a scenario",
                    rule.key()
                );
            }
            Some(Check::NotEnforcedHere(_)) | None => {}
        }
    }
    // Taking a rule away leaves everything else as it was.
    for rule in &rules {
        let (step_runner, orchestrator) = roles_without(rule);
        let (edited, shipped) = match rule.account {
            Account::StepRunner => (step_runner, migration::STEP_RUNNER_ROLE),
            Account::Orchestrator => (orchestrator, migration::ORCHESTRATOR_ROLE),
        };
        let mut expected = migration::rbac_documents(shipped, "ns").unwrap();
        expected[rule.document]["rules"]
            .as_array_mut()
            .unwrap()
            .remove(rule.index);
        assert_eq!(
            migration::rbac_documents(&edited, "ns").unwrap(),
            expected,
            "{}",
            rule.key()
        );
    }
}

#[test]
fn refusals_are_read_as_kubernetes_writes_them() {
    // As a step's failure cause reads (its last log line).
    let cause = "2026-01-01T00:00:00.000000Z ERROR read Secret kube-system/vsphere-creds: secrets \
        \"vsphere-creds\" is forbidden: User \"system:serviceaccount:vmi-1:vmi-step-runner\" \
        cannot get resource \"secrets\" in API group \"\" in the namespace \"kube-system\" \
        (Forbidden, 403) vmi=vmi-1/move";
    let found = refusals(cause);
    assert_eq!(
        found,
        vec![Refusal {
            verb: "get".into(),
            resource: "secrets".into(),
            group: String::new(),
            namespace: Some("kube-system".into()),
            text:
                "cannot get resource \"secrets\" in API group \"\" in the namespace \"kube-system\""
                    .into(),
        }]
    );
    let rule = rules()
        .into_iter()
        .find(|r| r.key() == "vmi-step-runner kube-system secrets(vsphere-creds) get,patch")
        .unwrap();
    assert!(naming(&rule, cause, "vmi-1").is_some());
    assert!(naming(&rule, cause, "vmi-2").is_none(), "another account");
    assert_eq!(
        plain("\u{1b}[2m2026\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m x"),
        "2026  WARN x"
    );
    let elsewhere = rules()
        .into_iter()
        .find(|r| {
            r.key()
                == "vmi-step-runner openshift-machine-api secrets(vsphere-cloud-credentials) get,patch"
        })
        .unwrap();
    assert!(
        naming(&elsewhere, cause, "vmi-1").is_none(),
        "another namespace"
    );
    // As the orchestrator logs a watch refused (Debug of the Status).
    let logged = r#"WARN watch list error with 403: Api(Status { message: "jobs.batch is forbidden: User \"system:serviceaccount:vmi-1:vmi-orchestrator\" cannot list resource \"jobs\" in API group \"batch\" in the namespace \"vmi-1\"", reason: "Forbidden", code: 403 })"#;
    let jobs = rules()
        .into_iter()
        .find(|r| r.key() == "vmi-orchestrator vmi-namespace jobs list,watch,create")
        .unwrap();
    assert_eq!(naming(&jobs, logged, "vmi-1").unwrap().verb, "list");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_rule_makes_the_migration_fail_naming_it() {
    let _one = ONE_AT_A_TIME.lock().await;
    let runnable: Vec<Rule> = rules()
        .into_iter()
        .filter(|r| {
            matches!(
                r.check(),
                Some(Check::StepFails(_) | Check::OrchestratorLogs(..))
            )
        })
        .collect();
    let total = runnable.len();
    let picked = chosen(runnable);
    eprintln!("checking {} of {total} rules", picked.len());
    let started = Instant::now();
    let mut results = Vec::new();
    for rule in &picked {
        let began = Instant::now();
        eprintln!("--- without {}", rule.key());
        let result = prove(rule).await;
        let took = began.elapsed();
        match &result {
            Ok(f) => eprintln!(
                "    {:.0} s: {} fails: {} ({})\n    the whole line: {}",
                took.as_secs_f64(),
                f.place,
                f.refusal.text,
                f.vmi,
                f.line
            ),
            Err(e) => eprintln!("    {:.0} s: NOT PROVEN: {e}", took.as_secs_f64()),
        }
        results.push((rule.key(), took, result));
    }
    eprintln!(
        "\n{} rule(s) in {:.0} s:",
        results.len(),
        started.elapsed().as_secs_f64()
    );
    for (key, took, result) in &results {
        match result {
            Ok(f) => eprintln!(
                "  ok   {key} → {}: {} [{:.0} s]",
                f.place,
                f.refusal.text,
                took.as_secs_f64()
            ),
            Err(e) => eprintln!(
                "  FAIL {key}: {} [{:.0} s]",
                e.lines().next().unwrap_or_default(),
                took.as_secs_f64()
            ),
        }
    }
    let failed: Vec<&String> = results
        .iter()
        .filter(|(_, _, r)| r.is_err())
        .map(|(k, _, _)| k)
        .collect();
    assert!(
        failed.is_empty(),
        "rules whose absence was not told plainly: {failed:#?}"
    );
}
