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

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde_json::Value;
use vmi_api::migration::{MigrationPath, MigrationPathDecision};
use vmi_api::topology::FailureDomain;

use crate::context::{Outcome, StepContext, StepError};
use crate::infrastructure::{self, AddTargets, Answer, BLOCKING_RULE_MESSAGE, OBJECT};
use crate::report;
use crate::steps::allow_multi_vcenter;
use crate::vcenters::{connect_source, connect_target, infrastructure_id, source_server_in};
use crate::volumes::Disposition;
use crate::vsphere::VCenter;

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

/// The checks of the spec alone (no API call).
pub fn check_spec(spec: &vmi_api::VSphereMigrationInfraSpec, findings: &mut Findings) {
    if spec.vcenters.is_empty() {
        findings.problem("spec.vcenters is empty: name at least one target vCenter");
    }
    if spec.failure_domains.is_empty() {
        findings.problem("spec.failureDomains is empty: name at least one target failure domain");
    }
    let servers: Vec<&str> = spec.vcenters.iter().map(|v| v.server.as_str()).collect();
    let mut names: Vec<&str> = Vec::new();
    for domain in &spec.failure_domains {
        if names.contains(&domain.name.as_str()) {
            findings.problem(format!(
                "spec.failureDomains has two entries named {}: names must be unique",
                domain.name
            ));
        }
        names.push(&domain.name);
        if !servers.contains(&domain.server.as_str()) {
            findings.problem(format!(
                "failure domain {} names server {}, which is not in spec.vcenters",
                domain.name, domain.server
            ));
        }
    }
    if let Some(control) = &spec.control_plane {
        for name in &control.failure_domains {
            if !names.contains(&name.as_str()) {
                findings.problem(format!(
                    "spec.controlPlane.failureDomains names {name}, which is not in spec.failureDomains"
                ));
            }
        }
    }
    if let Some(workers) = &spec.workers {
        for placement in workers.failure_domains.iter().flatten() {
            if !names.contains(&placement.name.as_str()) {
                findings.problem(format!(
                    "spec.workers.failureDomains names {}, which is not in spec.failureDomains",
                    placement.name
                ));
            }
        }
    }
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
            findings.problem("ClusterVersion reports Failing; fix the cluster version first");
        } else {
            let current = version.data["status"]["desired"]["version"]
                .as_str()
                .unwrap_or("unknown");
            findings.ok(format!("no update running (version {current})"));
        }
    }
    Ok(())
}

/// Machine health checks, autoscalers, the control plane machine set.
async fn check_machines(context: &StepContext, findings: &mut Findings) -> Result<(), StepError> {
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
    match cpms.iter().find(|c| c.metadata.name.as_deref() == Some("cluster")) {
        Some(c) => findings.ok(format!(
            "control plane machine set openshift-machine-api/cluster is {}",
            c.data["spec"]["state"].as_str().unwrap_or("Inactive")
        )),
        None => findings.problem(
            "there is no control plane machine set openshift-machine-api/cluster: vmi moves only machine-managed control planes",
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
        match (&candidate.disposition, settings.migrate) {
            (_, false) => findings.problem(format!(
                "{what} is a vSphere volume and spec.volumes.migrate is not true: step 13 would stop the migration; set spec.volumes.migrate: true or remove the volume"
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

/// The object at `path` exists and is a `kind`.
async fn expect(
    vcenter: &VCenter,
    findings: &mut Findings,
    domain: &str,
    field: &str,
    path: &str,
    kinds: &[&str],
) -> Result<(), StepError> {
    match vcenter.find_by_inventory_path(path).await? {
        Some(found) if kinds.contains(&found.kind.as_str()) => {}
        Some(found) => findings.problem(format!(
            "failure domain {domain}: {field} {path} on vCenter {} is a {}, not a {}",
            vcenter.server(),
            found.kind,
            kinds.join(" or ")
        )),
        None => findings.problem(format!(
            "failure domain {domain}: {field} {path} does not exist on vCenter {}",
            vcenter.server()
        )),
    }
    Ok(())
}

/// A target failure domain's inventory on its vCenter.
async fn check_inventory(
    vcenter: &VCenter,
    domain: &FailureDomain,
    infra_id: &str,
    findings: &mut Findings,
) -> Result<(), StepError> {
    let topology = &domain.topology;
    let name = &domain.name;
    let dc = &topology.datacenter;
    expect(
        vcenter,
        findings,
        name,
        "topology.datacenter",
        &format!("/{dc}"),
        &["Datacenter"],
    )
    .await?;
    expect(
        vcenter,
        findings,
        name,
        "topology.computeCluster",
        &topology.compute_cluster,
        &["ClusterComputeResource"],
    )
    .await?;
    expect(
        vcenter,
        findings,
        name,
        "topology.datastore",
        &topology.datastore,
        &["Datastore"],
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
        )
        .await?;
    }
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
    )
    .await?;
    match &topology.folder {
        Some(folder) => expect(vcenter, findings, name, "topology.folder", folder, &["Folder"]).await?,
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
    expect(
        vcenter,
        findings,
        name,
        "topology.template",
        &template,
        &["VirtualMachine"],
    )
    .await?;
    Ok(())
}

async fn check_privileges(
    vcenter: &VCenter,
    datacenter: &str,
    privileges: &[&str],
    findings: &mut Findings,
) -> Result<(), StepError> {
    let Some(entity) = vcenter
        .find_by_inventory_path(&format!("/{datacenter}"))
        .await?
    else {
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
    what: &str,
    connection: Result<VCenter, StepError>,
) -> Option<VCenter> {
    match connection {
        Ok(vcenter) => {
            findings.ok(format!(
                "{what} vCenter {} reachable ({}, instance {})",
                vcenter.server(),
                vcenter.about().full_name,
                vcenter.about().instance_uuid
            ));
            Some(vcenter)
        }
        Err(err) => {
            findings.problem(format!("{what} vCenter: {err}"));
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
            findings.problem(err.to_string());
            return Ok(None);
        }
    };
    if change.vcenters_after.len() > 3 {
        findings.problem(format!(
            "{OBJECT} would hold {} vCenters; OpenShift allows at most 3",
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
    check_spec(&context.vmi.spec, &mut findings);
    let infra_id = infrastructure_id(context).await?;
    let stored = infrastructure::read_vsphere(context).await?;
    let source = match source_server_in(context, &stored.vsphere) {
        Ok(source) => Some(source),
        Err(err) => {
            findings.problem(err.to_string());
            None
        }
    };
    let decision = decide_path(context, &stored, &mut findings).await?;
    if let Some(source) = &source {
        for target in &context.vmi.spec.vcenters {
            if target.server.eq_ignore_ascii_case(source) {
                findings.problem(format!(
                    "target vCenter {} is the source vCenter: a migration needs another vCenter",
                    target.server
                ));
            }
        }
    }
    let source_vcenter = match &source {
        Some(_) => reach(&mut findings, "source", connect_source(context).await).await,
        None => None,
    };
    if context
        .vmi
        .spec
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
        for dc in datacenters {
            check_privileges(vcenter, &dc, SOURCE_PRIVILEGES, &mut findings).await?;
        }
    }
    for target in &context.vmi.spec.vcenters {
        let Some(vcenter) = reach(
            &mut findings,
            "target",
            connect_target(context, &target.server).await,
        )
        .await
        else {
            continue;
        };
        if let Some(source) = &source_vcenter
            && source.about().instance_uuid == vcenter.about().instance_uuid
        {
            findings.problem(format!(
                "target vCenter {} is the source vCenter {} under another name (same instance {})",
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
        for dc in &target.datacenters {
            check_privileges(&vcenter, dc, TARGET_PRIVILEGES, &mut findings).await?;
        }
        for domain in context
            .vmi
            .spec
            .failure_domains
            .iter()
            .filter(|d| d.server == target.server)
        {
            check_inventory(&vcenter, domain, &infra_id, &mut findings).await?;
        }
        close(vcenter).await;
    }
    if let Some(vcenter) = source_vcenter {
        close(vcenter).await;
    }
    check_cluster_health(context, &mut findings).await?;
    check_machines(context, &mut findings).await?;
    check_volumes(context, &mut findings).await?;
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
