//! Step 00 preflight: read-only checks of everything the migration needs,
//! and the choice of the migration path. Every problem is reported, not only
//! the first, and nothing is changed.
//!
//! The path is decided by asking the API server itself: a server-side dry
//! run of the exact Infrastructure update step 07 will make. Accepted means
//! the Infrastructure CRD allows a day-2 vCenter (`VSphereMultiVCenterDay2`,
//! the native path); refused by the rule "vcenters cannot be added or
//! removed once set" means the legacy path (CVO down, rule relaxed). Any
//! other refusal is a problem to fix. This needs no table of releases and
//! follows backports as they ship.
//!
//! The checks that need neither the API server nor a vCenter (the spec's
//! text, derived names, credential values, the control plane machine set's
//! state) are in [`input`], each with its unit tests.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde_json::Value;
use vmi_api::migration::{MigrationPath, MigrationPathDecision};
use vmi_api::topology::{FailureDomain, TargetVCenter};

use crate::context::{Outcome, StepContext, StepError};
use crate::infrastructure::{self, AddTargets, Answer, BLOCKING_RULE_MESSAGE, OBJECT};
use crate::report;
use crate::steps::{allow_multi_vcenter, backup_cpms};
use crate::vcenters::{connect_source, connect_target, infrastructure_id, source_server_in};
use crate::volumes::{Disposition, discover};
use crate::vsphere::{ErrorKind, VCenter};

pub mod input;

use input::{
    check_derived_names, check_spec, cpms_problems, credential_value_problem, lookalike_note,
    selector_problems,
};

/// The driver of vSphere CSI volumes.
pub use crate::volumes::CSI_DRIVER;

/// Privileges the target vCenter's user needs on each target datacenter.
pub const TARGET_PRIVILEGES: &[&str] = &[
    "System.Read",
    "Folder.Create",
    "InventoryService.Tagging.CreateCategory",
    "InventoryService.Tagging.CreateTag",
    "InventoryService.Tagging.AttachTag",
    "InventoryService.Tagging.DeleteTag",
    "InventoryService.Tagging.DeleteCategory",
    "Folder.Delete",
    "VirtualMachine.Inventory.Create",
    "VirtualMachine.Inventory.Delete",
    "VirtualMachine.Provisioning.Clone",
    "Datastore.AllocateSpace",
    "Resource.AssignVMToPool",
    "Network.Assign",
];
/// Privileges the source vCenter's user needs on the source datacenter:
/// tags for zoning (created, and removed by an undo), and deleting the
/// source machines' VMs.
pub const SOURCE_PRIVILEGES: &[&str] = &[
    "System.Read",
    "InventoryService.Tagging.CreateCategory",
    "InventoryService.Tagging.CreateTag",
    "InventoryService.Tagging.AttachTag",
    "InventoryService.Tagging.DeleteTag",
    "InventoryService.Tagging.DeleteCategory",
    "VirtualMachine.Inventory.Delete",
];

/// What preflight found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Findings {
    /// Every check's outcome and every object listed, in order.
    pub lines: Vec<String>,
    /// The problems among them: each stops the migration.
    pub problems: Vec<String>,
}

impl Findings {
    fn ok(&mut self, line: impl Into<String>) {
        self.lines.push(format!("ok: {}", line.into()));
    }
    fn info(&mut self, kind: &str, line: impl Into<String>) {
        self.lines.push(format!("{kind}: {}", line.into()));
    }
    fn problem(&mut self, line: impl Into<String>) {
        let line = line.into();
        self.lines.push(format!("problem: {line}"));
        self.problems.push(line);
    }
}

/// What to do about a vCenter error, for the message preflight records.
fn vsphere_hint(kind: &ErrorKind, side: Side) -> &'static str {
    match (kind, side) {
        (ErrorKind::InvalidLogin, Side::Source) => {
            " (the source vCenter's are keys <server>.username and <server>.password of Secret kube-system/vsphere-creds)"
        }
        (ErrorKind::InvalidLogin, Side::Target) => {
            " (spec.credentialsSecret); if the password was changed in vCenter, write the new one there"
        }
        (ErrorKind::NotAuthenticated, _) => {
            "; the vCenter ended vmi's session right after it logged in, twice: check the vCenter's session timeout and that the clocks of the cluster and the vCenter agree, then retry"
        }
        (ErrorKind::Transport(_), Side::Target) => {
            "; check spec.vcenters[].server and port, and that this cluster reaches the vCenter (DNS, firewall, proxy)"
        }
        (ErrorKind::Transport(_), Side::Source) => {
            "; check the source vCenter's server and port in infrastructure/cluster, and that this cluster reaches it (DNS, firewall, proxy)"
        }
        (ErrorKind::Http { .. } | ErrorKind::Xml(_) | ErrorKind::Unexpected(_), _) => {
            "; this does not answer like a vCenter's SOAP API (/sdk): check the server and port"
        }
        _ => "",
    }
}

/// Which vCenter a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Target,
}

/// A step error as a problem line about vCenter `server`, with what to do.
fn vcenter_problem(side: Side, server: &str, err: &StepError) -> String {
    let what = match side {
        Side::Source => "source",
        Side::Target => "target",
    };
    let hint = match err {
        StepError::VSphere(e) => vsphere_hint(&e.kind, side).to_owned(),
        StepError::Refused(message)
            if side == Side::Source && message.contains("kube-system/vsphere-creds") =>
        {
            format!(
                "; restore Secret kube-system/vsphere-creds with keys {server}.username and {server}.password: the cluster's own vSphere credentials, which the cloud credential operator copies to the vSphere components"
            )
        }
        _ => String::new(),
    };
    let text = err.to_string();
    let text = text.strip_suffix("; nothing was changed").unwrap_or(&text);
    format!("{what} vCenter {server}: {text}{hint}")
}

fn gvk(group: &str, version: &str, kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

/// Lists `kind` (an empty list when its CRD is not installed).
async fn list(
    context: &StepContext,
    resource: &ApiResource,
    namespace: Option<&str>,
) -> Result<Vec<DynamicObject>, StepError> {
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(context.client.clone(), ns, resource),
        None => Api::all_with(context.client.clone(), resource),
    };
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(list.items),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Vec::new()),
        Err(e) => Err(StepError::Kube {
            action: format!("list {}", resource.plural),
            source: e,
        }),
    }
}

fn condition<'a>(object: &'a DynamicObject, kind: &str) -> Option<&'a Value> {
    object.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"].as_str() == Some(kind))
}

fn is(object: &DynamicObject, kind: &str, status: &str) -> bool {
    condition(object, kind).is_some_and(|c| c["status"].as_str() == Some(status))
}

/// ClusterOperators healthy and no upgrade running.
async fn check_cluster_health(
    context: &StepContext,
    findings: &mut Findings,
) -> Result<(), StepError> {
    let operators = list(
        context,
        &gvk("config.openshift.io", "v1", "ClusterOperator"),
        None,
    )
    .await?;
    let mut unhealthy = Vec::new();
    for operator in &operators {
        let name = operator.metadata.name.clone().unwrap_or_default();
        if !is(operator, "Available", "True") {
            unhealthy.push(format!("{name} not Available"));
        }
        if is(operator, "Degraded", "True") {
            unhealthy.push(format!("{name} Degraded"));
        }
    }
    if unhealthy.is_empty() {
        findings.ok(format!(
            "{} ClusterOperators Available and not Degraded",
            operators.len()
        ));
    } else {
        findings.problem(format!(
            "ClusterOperators unhealthy: {}; fix them first (`oc get clusteroperators`)",
            unhealthy.join(", ")
        ));
    }
    let versions = list(
        context,
        &gvk("config.openshift.io", "v1", "ClusterVersion"),
        None,
    )
    .await?;
    for version in &versions {
        if is(version, "Progressing", "True") {
            let message = condition(version, "Progressing")
                .and_then(|c| c["message"].as_str())
                .unwrap_or_default();
            findings.problem(format!(
                "an update of the cluster is running ({message}); wait until `oc get clusterversion` shows it finished"
            ));
        } else if is(version, "Failing", "True") {
            let message = condition(version, "Failing")
                .and_then(|c| c["message"].as_str())
                .unwrap_or_default();
            findings.problem(format!(
                "ClusterVersion reports Failing ({message}); fix what it names first (`oc get clusterversion version -o yaml`)"
            ));
        } else {
            let current = version.data["status"]["desired"]["version"]
                .as_str()
                .unwrap_or("unknown");
            findings.ok(format!("no update running (version {current})"));
        }
    }
    Ok(())
}

/// Machine health checks, autoscalers, the control plane machine set
/// (checked against the Infrastructure's failure domains, `known_domains`).
async fn check_machines(
    context: &StepContext,
    known_domains: &[&str],
    findings: &mut Findings,
) -> Result<(), StepError> {
    let namespace = Some("openshift-machine-api");
    for check in list(
        context,
        &gvk("machine.openshift.io", "v1beta1", "MachineHealthCheck"),
        namespace,
    )
    .await?
    {
        findings.info(
            "machinehealthcheck",
            format!(
                "{} remediates the machines it selects, the new target machines included: a target machine that does not become a Node within its timeout is replaced",
                check.metadata.name.unwrap_or_default()
            ),
        );
    }
    for scaler in list(
        context,
        &gvk("autoscaling.openshift.io", "v1beta1", "MachineAutoscaler"),
        namespace,
    )
    .await?
    {
        findings.info(
            "autoscaler",
            format!(
                "MachineAutoscaler {} scales MachineSet {}; it is not moved: create one for the target MachineSets after step 14",
                scaler.metadata.name.unwrap_or_default(),
                scaler.data["spec"]["scaleTargetRef"]["name"].as_str().unwrap_or_default()
            ),
        );
    }
    for scaler in list(
        context,
        &gvk("autoscaling.openshift.io", "v1", "ClusterAutoscaler"),
        None,
    )
    .await?
    {
        findings.info(
            "autoscaler",
            format!(
                "ClusterAutoscaler {} stays; it may scale the source MachineSets until step 14 removes them",
                scaler.metadata.name.unwrap_or_default()
            ),
        );
    }
    let cpms = list(
        context,
        &gvk("machine.openshift.io", "v1", "ControlPlaneMachineSet"),
        namespace,
    )
    .await?;
    match cpms
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(backup_cpms::NAME))
    {
        Some(c) => {
            let problems = cpms_problems(&c.data, known_domains);
            if problems.is_empty() {
                findings.ok(format!(
                    "control plane machine set openshift-machine-api/cluster is {}",
                    c.data["spec"]["state"].as_str().unwrap_or("Inactive")
                ));
            }
            for problem in problems {
                findings.problem(problem);
            }
        }
        None => findings.problem(
            "there is no control plane machine set openshift-machine-api/cluster: vmi moves only machine-managed control planes; when the control plane machines are Machines, its operator makes one again within a minute: check that operator (`oc get clusteroperator control-plane-machine-set`)",
        ),
    }
    Ok(())
}

/// vSphere CSI and in-tree volumes, with what step 13 will do with each
/// (the same discovery the step uses).
async fn check_volumes(context: &StepContext, findings: &mut Findings) -> Result<(), StepError> {
    let candidates = crate::volumes::discover(context).await?;
    let settings = context.vmi.spec.volumes.clone().unwrap_or_default();
    let mode = format!("{:?}", settings.mode);
    for candidate in &candidates {
        let what = candidate.describe();
        let kind = if discover::is_csi(&candidate.pv) {
            "a vSphere CSI volume"
        } else {
            "an in-tree vSphere volume"
        };
        match (&candidate.disposition, settings.migrate) {
            (_, false) => findings.problem(format!(
                "{what} is {kind} and spec.volumes.migrate is not true: step 13 would stop the migration; set spec.volumes.migrate: true or remove the volume"
            )),
            (Disposition::Move, true) => findings.info(
                "volume",
                format!("{what} will be moved to the target in step 13 ({mode} mode)"),
            ),
            (Disposition::NotSelected, true) => findings.info(
                "volume-left",
                format!("{what} is outside spec.volumes.namespaceSelector and stays on the source vCenter"),
            ),
            (Disposition::Unmovable(why), true) if settings.skip_unmovable => findings.info(
                "volume-left",
                format!("{what} cannot be moved ({why}) and stays on the source vCenter (spec.volumes.skipUnmovable)"),
            ),
            (Disposition::Unmovable(why), true) => findings.problem(format!(
                "{what} cannot be moved: {why}; or set spec.volumes.skipUnmovable: true to leave it on the source vCenter"
            )),
        }
    }
    if candidates.is_empty() {
        findings.ok("no vSphere CSI volume to move");
    }
    Ok(())
}

/// What to run to see what exists next to `path`: `govc ls <parent>`.
fn listing(path: &str) -> String {
    let parent = path.rsplit_once('/').map_or("/", |(p, _)| p);
    format!("`govc ls {}`", if parent.is_empty() { "/" } else { parent })
}

/// The object at `path` exists and is a `kind`; `remedy` says what to do
/// when it does not. Whether it exists.
async fn expect(
    vcenter: &VCenter,
    findings: &mut Findings,
    domain: &str,
    field: &str,
    path: &str,
    kinds: &[&str],
    remedy: &str,
) -> Result<bool, StepError> {
    match vcenter.find_by_inventory_path(path).await? {
        Some(found) if kinds.contains(&found.kind.as_str()) => Ok(true),
        Some(found) => {
            findings.problem(format!(
                "failure domain {domain}: {field} {path} on vCenter {} is a {}, not a {}; {remedy}",
                vcenter.server(),
                found.kind,
                kinds.join(" or ")
            ));
            Ok(true)
        }
        None => {
            let note = lookalike_note(path)
                .map(|n| format!("; {n}"))
                .unwrap_or_default();
            findings.problem(format!(
                "failure domain {domain}: {field} {path} does not exist on vCenter {}; {remedy} ({} lists what is there){note}",
                vcenter.server(),
                listing(path)
            ));
            Ok(false)
        }
    }
}

/// VMs named `name` anywhere in `vcenter`.
async fn vms_named(vcenter: &VCenter, name: &str) -> Result<usize, StepError> {
    let vms = vcenter
        .objects_below(vcenter.root_folder(), "VirtualMachine", &["name"])
        .await?;
    Ok(vms
        .iter()
        .filter(|vm| vm.text("name") == Some(name))
        .count())
}

/// A target failure domain's inventory on its vCenter. `source` is the
/// source vCenter, when connected: a missing template found there is named.
async fn check_inventory(
    vcenter: &VCenter,
    source: Option<&VCenter>,
    domain: &FailureDomain,
    infra_id: &str,
    findings: &mut Findings,
) -> Result<(), StepError> {
    let topology = &domain.topology;
    let name = &domain.name;
    let dc = &topology.datacenter;
    let fix = |field: &str| format!("fix {field} of failure domain {name} in spec.failureDomains");
    if !expect(
        vcenter,
        findings,
        name,
        "topology.datacenter",
        &format!("/{dc}"),
        &["Datacenter"],
        "fix topology.datacenter and the paths below it (and spec.vcenters[].datacenters)",
    )
    .await?
    {
        // Every other path of the failure domain is below it.
        return Ok(());
    }
    let cluster = expect(
        vcenter,
        findings,
        name,
        "topology.computeCluster",
        &topology.compute_cluster,
        &["ClusterComputeResource"],
        &fix("topology.computeCluster"),
    )
    .await?;
    expect(
        vcenter,
        findings,
        name,
        "topology.datastore",
        &topology.datastore,
        &["Datastore"],
        &fix("topology.datastore"),
    )
    .await?;
    for network in &topology.networks {
        let path = if network.starts_with('/') {
            network.clone()
        } else {
            format!("/{dc}/network/{network}")
        };
        expect(
            vcenter,
            findings,
            name,
            "topology.networks",
            &path,
            &["Network", "DistributedVirtualPortgroup", "OpaqueNetwork"],
            "name a port group in topology.networks",
        )
        .await?;
    }
    // The default pool is below the cluster: its absence says nothing new.
    if topology.resource_pool.is_some() || cluster {
        let pool = topology
            .resource_pool
            .clone()
            .unwrap_or_else(|| format!("{}/Resources", topology.compute_cluster));
        expect(
            vcenter,
            findings,
            name,
            "topology.resourcePool",
            &pool,
            &["ResourcePool"],
            &fix("topology.resourcePool"),
        )
        .await?;
    }
    match &topology.folder {
        Some(folder) => {
            expect(
                vcenter,
                findings,
                name,
                "topology.folder",
                folder,
                &["Folder"],
                "create the folder or fix topology.folder (omit it to let step 06 create one)",
            )
            .await?;
        }
        None => findings.info(
            "folder",
            format!("failure domain {name}: machines go to /{dc}/vm/{infra_id}, which step 06 creates when missing"),
        ),
    }
    let template = topology.template.clone().unwrap_or_else(|| {
        format!(
            "/{dc}/vm/{infra_id}-rhcos-{}-{}",
            domain.region, domain.zone
        )
    });
    let remedy = format!(
        "import the RHCOS template into vCenter {} at that path, or fix topology.template",
        vcenter.server()
    );
    let before = findings.problems.len();
    if !expect(
        vcenter,
        findings,
        name,
        "topology.template",
        &template,
        &["VirtualMachine"],
        &remedy,
    )
    .await?
        && let Some(source) = source
    {
        let vm = template.rsplit('/').next().unwrap_or_default();
        if vms_named(source, vm).await.unwrap_or_else(|err| {
            // Only a note: a failed lookup on the source must not become
            // a problem of the target.
            tracing::warn!(vcenter = %source.server(), "could not look for template {vm}: {err}");
            0
        }) > 0
            && let (Some(line), Some(problem)) =
                (findings.lines.last_mut(), findings.problems.get_mut(before))
        {
            let note = format!(
                "; a VM named {vm} is on the source vCenter {}: a template belongs to one vCenter, so the target needs its own copy",
                source.server()
            );
            line.push_str(&note);
            problem.push_str(&note);
        }
    }
    Ok(())
}

/// The user's privileges on `/<datacenter>`. A datacenter that does not
/// exist is a problem unless `reported_elsewhere` (a failure domain's
/// inventory check names it).
async fn check_privileges(
    vcenter: &VCenter,
    datacenter: &str,
    privileges: &[&str],
    reported_elsewhere: bool,
    findings: &mut Findings,
) -> Result<(), StepError> {
    let Some(entity) = vcenter
        .find_by_inventory_path(&format!("/{datacenter}"))
        .await?
    else {
        if !reported_elsewhere {
            let note = lookalike_note(datacenter)
                .map(|n| format!("; {n}"))
                .unwrap_or_default();
            findings.problem(format!(
                "datacenter {datacenter} (spec.vcenters[].datacenters) does not exist on vCenter {}; fix spec.vcenters[].datacenters (`govc ls /` lists the datacenters){note}",
                vcenter.server()
            ));
        }
        return Ok(());
    };
    let user = vcenter.credentials().username().to_owned();
    let missing = vcenter
        .missing_privileges(&entity, &user, privileges)
        .await?;
    if missing.is_empty() {
        findings.ok(format!(
            "user {user} has the {} privileges vmi needs on /{datacenter} of vCenter {}",
            privileges.len(),
            vcenter.server()
        ));
    } else {
        findings.problem(format!(
            "user {user} lacks {} on /{datacenter} of vCenter {}; grant them to its role",
            missing.join(", "),
            vcenter.server()
        ));
    }
    Ok(())
}

/// Connects, or records why not.
async fn reach(
    findings: &mut Findings,
    side: Side,
    server: &str,
    connection: Result<VCenter, StepError>,
) -> Option<VCenter> {
    match connection {
        Ok(vcenter) => {
            findings.ok(format!(
                "{} vCenter {} reachable ({}, instance {})",
                match side {
                    Side::Source => "source",
                    Side::Target => "target",
                },
                vcenter.server(),
                vcenter.about().full_name,
                vcenter.about().instance_uuid
            ));
            Some(vcenter)
        }
        Err(err) => {
            findings.problem(vcenter_problem(side, server, &err));
            None
        }
    }
}

/// Records a vCenter error of a check after login as a problem; any other
/// error stops preflight.
fn vcenter_failure(
    findings: &mut Findings,
    side: Side,
    server: &str,
    result: Result<(), StepError>,
) -> Result<(), StepError> {
    match result {
        Err(err @ StepError::VSphere(_)) => {
            findings.problem(vcenter_problem(side, server, &err));
            Ok(())
        }
        other => other,
    }
}

/// The vmi's credentials Secret holds usable `<server>.username` and
/// `<server>.password` for each target. The servers with a problem there
/// (preflight does not try to log in to them).
async fn check_target_credentials(
    context: &StepContext,
    findings: &mut Findings,
) -> Result<Vec<String>, StepError> {
    let namespace = &context.vmi_ref.namespace;
    let name = &context.vmi.spec.credentials_secret.name;
    let servers = context.target_servers();
    let Some(secret) = Api::<Secret>::namespaced(context.client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(StepError::kube(format!("read Secret {namespace}/{name}")))?
    else {
        let keys: Vec<String> = servers
            .iter()
            .map(|s| format!("{s}.username and {s}.password"))
            .collect();
        findings.problem(format!(
            "the credentials Secret {namespace}/{name} (spec.credentialsSecret) does not exist; create it in namespace {namespace} with keys {} (see deploy/samples/vcenter-credentials.yaml)",
            keys.join(", ")
        ));
        return Ok(servers.iter().map(|s| (*s).to_owned()).collect());
    };
    let data = secret.data.unwrap_or_default();
    let described = format!("the credentials Secret {namespace}/{name}");
    let mut failed = Vec::new();
    for server in servers {
        let mut bad = false;
        for suffix in ["username", "password"] {
            let key = format!("{server}.{suffix}");
            match data.get(&key).map(|v| v.0.as_slice()) {
                None => {
                    let others: Vec<&str> = data
                        .keys()
                        .filter(|k| k.ends_with(&format!(".{suffix}")))
                        .map(String::as_str)
                        .collect();
                    let also = if others.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (it has {}; keys are named after spec.vcenters[].server exactly)",
                            others.join(", ")
                        )
                    };
                    findings.problem(format!("{described} has no key {key}{also}; add it"));
                    bad = true;
                }
                Some([]) => {
                    findings.problem(format!("{described}: key {key} is empty; set it"));
                    bad = true;
                }
                Some(value) => {
                    if let Some(why) = credential_value_problem(value, suffix == "username") {
                        findings.problem(format!(
                            "{described}: the value of key {key} {why}; vCenter compares it exactly and would refuse the login: write the value again without it (`oc create secret generic … --from-literal`)"
                        ));
                        bad = true;
                    }
                }
            }
        }
        if bad {
            failed.push(server.to_owned());
        }
    }
    Ok(failed)
}

/// The checks of one target vCenter after login.
async fn check_target(
    context: &StepContext,
    vcenter: &VCenter,
    source: Option<&VCenter>,
    target: &TargetVCenter,
    infra_id: &str,
    findings: &mut Findings,
) -> Result<(), StepError> {
    if let Some(source) = source
        && source.about().instance_uuid == vcenter.about().instance_uuid
    {
        findings.problem(format!(
            "target vCenter {} is the source vCenter {} under another name (same instance {}); name another vCenter in spec.vcenters",
            target.server,
            source.server(),
            vcenter.about().instance_uuid
        ));
    }
    if target.tls.as_ref().and_then(|t| t.insecure) == Some(true) {
        findings.info(
            "tls",
            format!(
                "vCenter {}: certificate NOT verified (tls.insecure)",
                target.server
            ),
        );
    }
    let domains: Vec<&FailureDomain> = context
        .vmi
        .spec
        .failure_domains
        .iter()
        .filter(|d| d.server == target.server)
        .collect();
    for dc in &target.datacenters {
        let used = domains.iter().any(|d| &d.topology.datacenter == dc);
        check_privileges(vcenter, dc, TARGET_PRIVILEGES, used, findings).await?;
    }
    for domain in domains {
        check_inventory(vcenter, source, domain, infra_id, findings).await?;
    }
    Ok(())
}

/// The source vCenter: the one vCenter of the Infrastructure that is not a
/// target, or a problem saying what to do.
fn source_of(context: &StepContext, vsphere: &Value, findings: &mut Findings) -> Option<String> {
    match source_server_in(context, vsphere) {
        Ok(source) => Some(source),
        Err(err) => {
            let text = err.to_string();
            let text = text.strip_suffix("; nothing was changed").unwrap_or(&text);
            let targets = context.target_servers();
            let others = infrastructure::list(vsphere, "vcenters")
                .iter()
                .filter_map(|v| v["server"].as_str())
                .filter(|s| !targets.contains(s))
                .count();
            let remedy = match others {
                0 => {
                    "; the cluster's own vCenter is named as a target: name the vCenter to move to in spec.vcenters"
                }
                1 => "",
                _ => {
                    "; the cluster already runs on more than one vCenter (a migration not finished, or a multi-vCenter cluster): finish or roll back that migration (or remove the extra vCenter from infrastructure/cluster) before starting another"
                }
            };
            findings.problem(format!("{text}{remedy}"));
            None
        }
    }
}

async fn close(vcenter: VCenter) {
    if let Err(err) = vcenter.logout().await {
        tracing::warn!(vcenter = %vcenter.server(), "could not log out: {err}");
    }
}

/// The path decision, or a problem.
async fn decide_path(
    context: &StepContext,
    stored: &infrastructure::Stored,
    findings: &mut Findings,
) -> Result<Option<MigrationPathDecision>, StepError> {
    let change = match AddTargets::plan(
        &stored.vsphere,
        &context.vmi.spec.vcenters,
        &context.vmi.spec.failure_domains,
    ) {
        Ok(change) => change,
        Err(err) => {
            let text = err.to_string();
            findings.problem(text.strip_suffix("; nothing was changed").unwrap_or(&text));
            return Ok(None);
        }
    };
    if change.vcenters_after.len() > 3 {
        findings.problem(format!(
            "{OBJECT} would hold {} vCenters; OpenShift allows at most 3: move to fewer vCenters at once (spec.vcenters)",
            change.vcenters_after.len()
        ));
        return Ok(None);
    }
    if change.is_noop() {
        // Step 07 already ran: keep the decision made then, or read the CRD.
        if let Some(decision) = context
            .vmi
            .status
            .as_ref()
            .and_then(|s| s.migration_path.clone())
        {
            findings.ok(format!(
                "{OBJECT} already holds the targets; keeping the {:?} path",
                decision.path
            ));
            return Ok(Some(decision));
        }
        let crd = allow_multi_vcenter::read_crd(context).await?;
        let legacy = !allow_multi_vcenter::blocking_rule_lists(&crd).is_empty()
            || crd
                .to_string()
                .contains(allow_multi_vcenter::RELAXED_MESSAGE);
        return Ok(Some(MigrationPathDecision {
            path: if legacy {
                MigrationPath::Legacy
            } else {
                MigrationPath::Native
            },
            reason: format!(
                "{OBJECT} already holds the targets; the Infrastructure CRD {}",
                if legacy {
                    "carries the 4.17–4.22 rule (relaxed)"
                } else {
                    "allows day-2 vCenters"
                }
            ),
        }));
    }
    let servers: Vec<&str> = context.target_servers();
    let decision = match infrastructure::send(
        context,
        &change.patch(&stored.resource_version),
        true,
    )
    .await?
    {
        Answer::Accepted => MigrationPathDecision {
            path: MigrationPath::Native,
            reason: format!(
                "a server-side dry run adding {} to {OBJECT} was accepted: the Infrastructure CRD allows day-2 vCenters (VSphereMultiVCenterDay2)",
                servers.join(", ")
            ),
        },
        Answer::Refused(message) if message.contains(BLOCKING_RULE_MESSAGE) => {
            MigrationPathDecision {
                path: MigrationPath::Legacy,
                reason: format!(
                    "a server-side dry run adding {} to {OBJECT} was refused by \"{BLOCKING_RULE_MESSAGE}\" (OpenShift 4.17–4.22): the cluster-version operator is scaled down and that rule relaxed for the migration",
                    servers.join(", ")
                ),
            }
        }
        Answer::Refused(message) => {
            findings.problem(format!(
                "the API server refuses adding the targets to {OBJECT}: {message}; fix spec.vcenters / spec.failureDomains"
            ));
            return Ok(None);
        }
        Answer::Conflict => {
            findings.problem(format!("{OBJECT} changed during preflight; retry"));
            return Ok(None);
        }
    };
    findings.ok(format!(
        "migration path {:?}: {}",
        decision.path, decision.reason
    ));
    Ok(Some(decision))
}

/// Runs every check; changes nothing.
pub async fn check(
    context: &StepContext,
) -> Result<(Findings, Option<MigrationPathDecision>), StepError> {
    let mut findings = Findings::default();
    let spec = &context.vmi.spec;
    check_spec(spec, &mut findings);
    let infra_id = infrastructure_id(context).await.map_err(|err| match err {
        StepError::Refused(message) => StepError::Refused(format!(
            "{message}; vmi moves only an installed OpenShift cluster on vSphere (`oc get infrastructure cluster -o jsonpath='{{.status.infrastructureName}}'` must print its id); nothing was changed"
        )),
        other => other,
    })?;
    check_derived_names(spec, &infra_id, &mut findings);
    let stored = infrastructure::read_vsphere(context).await?;
    let source = source_of(context, &stored.vsphere, &mut findings);
    let decision = decide_path(context, &stored, &mut findings).await?;
    if let Some(source) = &source {
        for target in &spec.vcenters {
            if target.server.eq_ignore_ascii_case(source) {
                findings.problem(format!(
                    "target vCenter {} is the source vCenter: a migration needs another vCenter; name it in spec.vcenters",
                    target.server
                ));
            }
        }
    }
    let source_vcenter = match &source {
        Some(server) => {
            reach(
                &mut findings,
                Side::Source,
                server,
                connect_source(context).await,
            )
            .await
        }
        None => None,
    };
    if spec
        .source
        .as_ref()
        .and_then(|s| s.tls.as_ref())
        .and_then(|t| t.insecure)
        == Some(true)
    {
        findings.info(
            "tls",
            "source vCenter: certificate NOT verified (spec.source.tls.insecure)",
        );
    }
    if let Some(vcenter) = &source_vcenter {
        let datacenters: Vec<String> = infrastructure::list(&stored.vsphere, "failureDomains")
            .iter()
            .filter(|d| d["server"].as_str() == Some(vcenter.server()))
            .filter_map(|d| d["topology"]["datacenter"].as_str().map(str::to_owned))
            .collect();
        let result = async {
            for dc in datacenters {
                check_privileges(vcenter, &dc, SOURCE_PRIVILEGES, false, &mut findings).await?;
            }
            Ok(())
        }
        .await;
        vcenter_failure(&mut findings, Side::Source, vcenter.server(), result)?;
    }
    let unusable = check_target_credentials(context, &mut findings).await?;
    for target in &spec.vcenters {
        if unusable.contains(&target.server) {
            continue;
        }
        let Some(vcenter) = reach(
            &mut findings,
            Side::Target,
            &target.server,
            connect_target(context, &target.server).await,
        )
        .await
        else {
            continue;
        };
        let result = check_target(
            context,
            &vcenter,
            source_vcenter.as_ref(),
            target,
            &infra_id,
            &mut findings,
        )
        .await;
        close(vcenter).await;
        if let Err(err) = vcenter_failure(&mut findings, Side::Target, &target.server, result) {
            if let Some(source) = source_vcenter {
                close(source).await;
            }
            return Err(err);
        }
    }
    if let Some(vcenter) = source_vcenter {
        close(vcenter).await;
    }
    check_cluster_health(context, &mut findings).await?;
    let known: Vec<&str> = infrastructure::list(&stored.vsphere, "failureDomains")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    check_machines(context, &known, &mut findings).await?;
    let selector_ok = spec
        .volumes
        .as_ref()
        .and_then(|v| v.namespace_selector.as_ref())
        .is_none_or(|s| selector_problems(s).is_empty());
    if selector_ok {
        check_volumes(context, &mut findings).await?;
    }
    Ok((findings, decision))
}

/// Runs the step: records the findings and the path, and fails listing every
/// problem when there is one.
pub async fn run(context: &StepContext) -> Result<Outcome, StepError> {
    let (findings, decision) = check(context).await?;
    let problems = findings.problems.clone();
    let mut outcome = Outcome {
        findings: findings.lines,
        ..Outcome::default()
    };
    if problems.is_empty() {
        let decision = decision.ok_or_else(|| {
            StepError::Refused("internal: no migration path and no problem".into())
        })?;
        outcome.result = format!(
            "every check passed; migration path {:?}; nothing was changed",
            decision.path
        );
        outcome.migration_path = Some(decision);
        return Ok(outcome);
    }
    outcome.result = format!("{} problem(s) found; nothing was changed", problems.len());
    report::record(context, report::Entry::Run, &outcome).await?;
    Err(StepError::Refused(format!(
        "preflight found {} problem(s): {}; fix them, then retry (delete the Job vmi-step-00-preflight); nothing was changed",
        problems.len(),
        problems.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcenter_errors_carry_what_to_do() {
        let error = |kind| {
            StepError::VSphere(crate::vsphere::VSphereError {
                vcenter: "vc.example.com".into(),
                method: "Login".into(),
                object: None,
                kind,
            })
        };
        let transport = vcenter_problem(
            Side::Target,
            "vc.example.com",
            &error(ErrorKind::Transport("connection refused".into())),
        );
        assert!(transport.starts_with("target vCenter vc.example.com: vCenter vc.example.com: Login: cannot reach the vCenter: connection refused; check spec.vcenters[].server and port"), "{transport}");
        let expired = vcenter_problem(
            Side::Target,
            "vc.example.com",
            &error(ErrorKind::NotAuthenticated),
        );
        assert!(
            expired.contains("the vCenter ended vmi's session right after it logged in"),
            "{expired}"
        );
        let login = vcenter_problem(
            Side::Source,
            "vc.example.com",
            &error(ErrorKind::InvalidLogin),
        );
        assert!(
            login.ends_with("Secret kube-system/vsphere-creds)"),
            "{login}"
        );
        let refused = vcenter_problem(
            Side::Source,
            "vc.example.com",
            &StepError::Refused("no key; nothing was changed".into()),
        );
        assert_eq!(refused, "source vCenter vc.example.com: no key");
    }
}
