//! `vmi-step plan`: every object the migration will create or change, in
//! order, worked out from the cluster and both vCenters as they are now,
//! after running preflight's checks. It changes nothing.

use std::fmt::Write as _;

use serde::Serialize;
use vmi_api::Step;
use vmi_api::migration::{MigrationPath, MigrationPathDecision};

use crate::cli::PlanOutput;
use crate::context::{StepContext, StepError};
use crate::infrastructure::{self, AddTargets, OBJECT};
use crate::steps::{
    backup_cpms, create_machinesets, create_tags, preflight, update_cloud_config, update_secrets,
};
use crate::vcenters::{infrastructure_id, source_server_in};

/// One planned change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// The step's index.
    pub index: usize,
    /// The step's name.
    pub step: &'static str,
    /// What it does to which object, or why it does nothing.
    pub change: String,
}

/// The whole plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// The vmi, as `namespace/name`.
    pub vmi: String,
    /// The path preflight's checks chose, when they could.
    pub migration_path: Option<MigrationPathDecision>,
    /// The problems that stop the migration (none: it can start).
    pub problems: Vec<String>,
    /// Everything preflight found.
    pub findings: Vec<String>,
    /// The changes, in order.
    pub items: Vec<Item>,
}

fn index(step: Step) -> usize {
    Step::ALL
        .iter()
        .position(|s| *s == step)
        .unwrap_or_default()
}

/// Works out the plan.
pub async fn make(context: &StepContext) -> Result<Plan, StepError> {
    let (findings, decision) = preflight::check(context).await?;
    let mut items = Vec::new();
    let mut add = |step: Step, change: String| {
        items.push(Item {
            index: index(step),
            step: step.name(),
            change,
        })
    };
    let spec = &context.vmi.spec;
    let infra_id = infrastructure_id(context).await?;
    let legacy = decision.as_ref().map(|d| d.path) == Some(MigrationPath::Legacy);
    add(
        Step::Preflight,
        "read-only checks (this plan ran them)".into(),
    );
    if legacy {
        add(Step::DisableCvo, "Deployment openshift-cluster-version/cluster-version-operator: scaled to 0 (replicas backed up)".into());
        add(
            Step::AllowMultiVcenter,
            format!(
                "CustomResourceDefinition {}: the rule \"{}\" relaxed to the day-2 rule",
                crate::steps::allow_multi_vcenter::CRD,
                infrastructure::BLOCKING_RULE_MESSAGE
            ),
        );
    } else if decision.is_some() {
        add(Step::DisableCvo, "skipped: native path".into());
        add(Step::AllowMultiVcenter, "skipped: native path".into());
    } else {
        let undecided =
            "depends on the migration path, undecided until preflight's problems are fixed";
        add(Step::DisableCvo, undecided.into());
        add(Step::AllowMultiVcenter, undecided.into());
    }
    match backup_cpms::read(context).await? {
        Some(c) if c.data["spec"]["state"].as_str() == Some("Active") => add(Step::BackupCpms, "ControlPlaneMachineSet openshift-machine-api/cluster: backed up, deleted, regenerated Inactive by its operator".into()),
        Some(_) => add(Step::BackupCpms, "ControlPlaneMachineSet openshift-machine-api/cluster: already Inactive, backed up only".into()),
        None => add(Step::BackupCpms, "no control plane machine set: the step will refuse".into()),
    }
    let keys: Vec<String> = spec
        .vcenters
        .iter()
        .flat_map(|v| {
            [
                format!("{}.username", v.server),
                format!("{}.password", v.server),
            ]
        })
        .collect();
    add(
        Step::UpdateSecrets,
        format!(
            "Secret {}/{}: add {} (the credential operator copies them to the component secrets it manages; other component secrets get them directly)",
            update_secrets::ROOT.0,
            update_secrets::ROOT.1,
            keys.join(", ")
        ),
    );
    let stored = infrastructure::read_vsphere(context).await?;
    if let Ok(source) = source_server_in(context, &stored.vsphere) {
        for want in create_tags::wanted(
            &source,
            infrastructure::list(&stored.vsphere, "failureDomains"),
            &spec.failure_domains,
        ) {
            add(
                Step::CreateTags,
                format!(
                    "vCenter {}: {} tag {} on {} (created or reused)",
                    want.server, want.category, want.tag, want.object
                ),
            );
        }
    }
    for target in &spec.vcenters {
        for dc in &target.datacenters {
            add(
                Step::CreateFolder,
                format!(
                    "vCenter {}: folder /{dc}/vm/{infra_id} (created or reused)",
                    target.server
                ),
            );
        }
    }
    match AddTargets::plan(&stored.vsphere, &spec.vcenters, &spec.failure_domains) {
        Ok(change) if change.is_noop() => add(
            Step::UpdateInfra,
            format!("{OBJECT}: already holds the targets"),
        ),
        Ok(change) => add(
            Step::UpdateInfra,
            format!(
                "{OBJECT}: add {} (one update, every other field kept)",
                change.added.join(", ")
            ),
        ),
        Err(err) => add(Step::UpdateInfra, format!("refused: {err}")),
    }
    let (name, key) = update_cloud_config::location(context).await?;
    // A missing ConfigMap or key is the step's own refusal, shown below.
    let text = update_cloud_config::read(context, &name, &key).await;
    let domains = update_cloud_config::failure_domain_count(context).await?;
    match text.and_then(|(_, text)| {
        update_cloud_config::edit(&text, &name, &spec.vcenters, &spec.failure_domains, domains)
    }) {
        Ok(Some(edit)) => add(
            Step::UpdateCloudConfig,
            format!(
                "ConfigMap {}/{name}: one edit: {} (every node rolls once)",
                update_cloud_config::NAMESPACE,
                edit.changes.join("; ")
            ),
        ),
        Ok(None) => add(
            Step::UpdateCloudConfig,
            format!(
                "ConfigMap {}/{name}: already holds the targets",
                update_cloud_config::NAMESPACE
            ),
        ),
        Err(err) => add(Step::UpdateCloudConfig, format!("refused: {err}")),
    }
    add(Step::RestartPods, "delete the pods of the vSphere components (machine API, cloud controller manager, CSI driver and operator, problem detector) so they read the new configuration".into());
    add(
        Step::MonitorPods,
        "wait for those pods to be Ready and scan their logs for failure signatures".into(),
    );
    let source_workers: i64 = match source_server_in(context, &stored.vsphere) {
        Ok(source) => create_machinesets::source_sets(context, &source)
            .await?
            .iter()
            .filter(|s| crate::machines::role(s) == Some("worker"))
            .map(|s| s.data["spec"]["replicas"].as_i64().unwrap_or(0))
            .sum(),
        Err(_) => 0,
    };
    for (name, replicas) in
        create_machinesets::placements(spec, i32::try_from(source_workers).unwrap_or(i32::MAX))
    {
        let Some(domain) = spec.failure_domains.iter().find(|d| d.name == name) else {
            continue;
        };
        add(
            Step::CreateMachinesets,
            if replicas == 0 {
                format!("failure domain {name}: no worker (0 replicas), no MachineSet")
            } else {
                format!(
                    "MachineSet openshift-machine-api/{}: new, in failure domain {name} on vCenter {}, {replicas} replica(s)",
                    create_machinesets::machine_set_name(&infra_id, "worker", &name),
                    domain.server
                )
            },
        );
    }
    let control: Vec<&str> = match &spec.control_plane {
        Some(c) if !c.failure_domains.is_empty() => {
            c.failure_domains.iter().map(String::as_str).collect()
        }
        _ => spec
            .failure_domains
            .iter()
            .map(|d| d.name.as_str())
            .collect(),
    };
    add(
        Step::RecreateCpms,
        format!(
            "ControlPlaneMachineSet openshift-machine-api/cluster: failure domains {} and Active in one write; the control plane rolls one machine at a time",
            control.join(", ")
        ),
    );
    let volumes = findings
        .lines
        .iter()
        .filter(|l| l.starts_with("volume: "))
        .count();
    add(
        Step::MigrateVolumes,
        if volumes == 0 {
            "no vSphere CSI volume to move".into()
        } else {
            format!("{volumes} vSphere CSI volume(s) moved to the target")
        },
    );
    // Each volume with what happens to it, as preflight found it.
    for line in findings.lines.iter().filter_map(|l| {
        l.strip_prefix("volume: ")
            .or_else(|| l.strip_prefix("volume-left: "))
    }) {
        add(Step::MigrateVolumes, line.to_owned());
    }
    add(
        Step::ScaleDownSource,
        "source MachineSets scaled to 0, their Machines and Nodes gone, then deleted".into(),
    );
    add(
        Step::RemoveSource,
        format!(
            "{OBJECT}, cloud-provider-config and the credentials: the source vCenter removed (a separate update from the add)"
        ),
    );
    add(
        Step::RestoreCvo,
        if legacy {
            "the Infrastructure CRD rule restored, the cluster-version operator scaled back".into()
        } else {
            "final checks (the cluster-version operator was never scaled down)".into()
        },
    );
    Ok(Plan {
        vmi: context.vmi_ref.to_string(),
        migration_path: decision,
        problems: findings.problems.clone(),
        findings: findings.lines,
        items,
    })
}

/// The plan as text or JSON.
pub fn render(plan: &Plan, output: PlanOutput) -> Result<String, StepError> {
    match output {
        PlanOutput::Json => serde_json::to_string_pretty(plan)
            .map_err(|e| StepError::Refused(format!("internal: {e}"))),
        PlanOutput::Text => {
            let mut out = String::new();
            let _ = writeln!(out, "Plan for vmi {}", plan.vmi);
            match &plan.migration_path {
                Some(d) => {
                    let _ = writeln!(out, "Migration path: {:?} ({})", d.path, d.reason);
                }
                None => {
                    let _ = writeln!(out, "Migration path: undecided");
                }
            }
            if plan.problems.is_empty() {
                let _ = writeln!(out, "Preflight: no problem found");
            } else {
                let _ = writeln!(
                    out,
                    "Preflight: {} problem(s) stop the migration:",
                    plan.problems.len()
                );
                for problem in &plan.problems {
                    let _ = writeln!(out, "  - {problem}");
                }
            }
            let _ = writeln!(out);
            for item in &plan.items {
                let _ = writeln!(out, "{:02} {:<20} {}", item.index, item.step, item.change);
            }
            Ok(out)
        }
    }
}
