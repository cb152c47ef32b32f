//! Step 15 remove-source, the point of no return: the source vCenter
//! removed from the cluster's configuration, once nothing runs on it.
//!
//! It refuses to start while any Machine is on the source vCenter, any
//! Node belongs to such a Machine (or to no Machine at all while it is a
//! vSphere VM), or the control plane machine set still names a source
//! failure domain: with the source gone from the cloud controller manager's
//! configuration, it reports those VMs as gone and Kubernetes deletes their
//! Nodes (research §0.6, §6.3), and OpenShift refuses removing a failure
//! domain still in use (§4.3). Then, in order:
//! 1. `infrastructure/cluster`: the source failure domains removed, then in
//!    a separate update the source vCenter (the API refuses adding and
//!    removing vCenters in one update, research §0.1);
//! 2. `cloud-provider-config`: the source vCenter removed in one edit
//!    (every edit rolls every node);
//! 3. the vSphere components restarted and watched again, as in steps
//!    09–10;
//! 4. the source credentials removed from the secrets, last.
//!
//! Each part checks whether it is already done, so a retry resumes where a
//! failed run stopped. The vSphere spec and the configuration text are
//! backed up before they change; the removed secret keys are named in the
//! step's changes (their values are kept nowhere). There is no undo.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{Api, ListParams, PostParams};
use serde_json::Value;

use crate::backup::Backups;
use crate::cloud_config::CloudConfig;
use crate::context::{Outcome, StepContext, StepError};
use crate::infrastructure::{self, Answer, OBJECT};
use crate::machines::{self, NAMESPACE};
use crate::steps::{
    backup_cpms, monitor_pods, restart_pods, update_cloud_config, update_infra, update_secrets,
};

/// The backup key of the source vCenter's server name.
pub const SOURCE_BACKUP: &str = "15-remove-source.source";
/// The backup key of `spec.platformSpec.vsphere` before the removal.
pub const VSPHERE_BACKUP: &str = "15-remove-source.vsphere";
/// The backup key of the configuration text before the removal.
pub const CONFIG_BACKUP: &str = "15-remove-source.config";
/// The backup key of the second restart of the vSphere components.
pub const RESTARTED_AT: &str = "15-remove-source.restarted-at";
/// How often a write that raced another writer is tried again.
const ATTEMPTS: usize = 5;
/// The Node annotation naming its Machine.
const MACHINE_ANNOTATION: &str = "machine.openshift.io/machine";

/// The source vCenter: recorded by a first run of this step, else the one
/// vCenter step 07's backup has that is not a target, else the one the
/// Infrastructure has now.
pub async fn original_source(context: &StepContext) -> Result<String, StepError> {
    let backups = Backups::of(context);
    if let Some(server) = backups.load(SOURCE_BACKUP).await? {
        return Ok(server);
    }
    if let Some(text) = backups.load(update_infra::VSPHERE_BACKUP).await?
        && let Ok(vsphere) = serde_json::from_str::<Value>(&text)
        && let Ok(server) = crate::vcenters::source_server_in(context, &vsphere)
    {
        return Ok(server);
    }
    crate::vcenters::source_server(context).await
}

/// What still runs on (or points at) the source vCenter: one line each.
pub async fn left_on_source(
    context: &StepContext,
    source: &str,
    vsphere: &Value,
) -> Result<Vec<String>, StepError> {
    let mut left = Vec::new();
    let all = machines::list_machines(context).await?;
    for machine in &all {
        if machines::server(machine) == Some(source) {
            left.push(machines::describe(machine) + &format!(" on vCenter {source}"));
        }
    }
    let nodes = Api::<Node>::all(context.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(StepError::kube("list Nodes"))?;
    for node in nodes.items {
        let name = node.metadata.name.clone().unwrap_or_default();
        let vsphere = node
            .spec
            .as_ref()
            .and_then(|s| s.provider_id.as_deref())
            .is_some_and(|p| p.starts_with("vsphere://"));
        let machine = node
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(MACHINE_ANNOTATION))
            .and_then(|m| m.split_once('/'))
            .and_then(|(_, m)| all.iter().find(|x| machines::name(x) == m));
        match machine {
            Some(m) if machines::server(m) == Some(source) => {
                left.push(format!("Node {name} (Machine {})", machines::name(m)));
            }
            Some(_) => {}
            None if vsphere => left.push(format!(
                "Node {name} is a vSphere VM without a Machine, so which vCenter it is on is unknown; delete it if it is gone, or give it a Machine"
            )),
            None => {}
        }
    }
    if let Some(cpms) = backup_cpms::read(context).await? {
        for domain in crate::steps::recreate_cpms::domains_of(&cpms.data["spec"]) {
            let on_source = infrastructure::list(vsphere, "failureDomains")
                .iter()
                .any(|d| {
                    d["name"].as_str() == Some(domain.as_str())
                        && d["server"].as_str() == Some(source)
                });
            if on_source {
                left.push(format!(
                    "ControlPlaneMachineSet {NAMESPACE}/cluster uses failure domain {domain} on the source"
                ));
            }
        }
    }
    Ok(left)
}

/// Removes the source failure domains, then (separately) the source
/// vCenter, from the Infrastructure. Returns one line per change.
async fn remove_from_infrastructure(
    context: &StepContext,
    source: &str,
) -> Result<Vec<String>, StepError> {
    let mut changes = Vec::new();
    let stored = infrastructure::read_vsphere(context).await?;
    let missing: Vec<&str> = context
        .vmi
        .spec
        .vcenters
        .iter()
        .map(|v| v.server.as_str())
        .filter(|t| {
            !infrastructure::list(&stored.vsphere, "vcenters")
                .iter()
                .any(|v| v["server"].as_str() == Some(*t))
        })
        .collect();
    if !missing.is_empty() {
        return Err(StepError::Refused(format!(
            "{OBJECT} does not list the target vCenter(s) {}: step 07 adds them; removing the source would leave the cluster without its vCenter; nothing was changed",
            missing.join(", ")
        )));
    }
    for part in ["failureDomains", "vcenters"] {
        let mut done = false;
        for _ in 0..ATTEMPTS {
            let stored = infrastructure::read_vsphere(context).await?;
            let vcenters = infrastructure::list(&stored.vsphere, "vcenters").to_vec();
            let domains = infrastructure::list(&stored.vsphere, "failureDomains").to_vec();
            let keep = |v: &&Value| v["server"].as_str() != Some(source);
            let (vcenters_after, domains_after): (Vec<Value>, Vec<Value>) =
                if part == "failureDomains" {
                    (
                        vcenters.clone(),
                        domains.iter().filter(keep).cloned().collect(),
                    )
                } else {
                    (
                        vcenters.iter().filter(keep).cloned().collect(),
                        domains.clone(),
                    )
                };
            let removed: Vec<String> = if part == "failureDomains" {
                domains
                    .iter()
                    .filter(|d| !keep(d))
                    .filter_map(|d| d["name"].as_str())
                    .map(|n| format!("failure domain {n}"))
                    .collect()
            } else {
                vcenters
                    .iter()
                    .filter(|d| !keep(d))
                    .map(|_| format!("vCenter {source}"))
                    .collect()
            };
            if removed.is_empty() {
                done = true;
                break;
            }
            if vcenters_after.is_empty() {
                return Err(StepError::Refused(format!(
                    "{OBJECT} would have no vCenter left: the targets are not in it; step 07 adds them; nothing was changed"
                )));
            }
            let patch = infrastructure::lists_patch(
                &stored.resource_version,
                &vcenters_after,
                &domains_after,
            );
            match infrastructure::send(context, &patch, false).await? {
                Answer::Accepted => {
                    changes.extend(removed.iter().map(|r| format!("{OBJECT}: removed {r}")));
                    done = true;
                    break;
                }
                Answer::Conflict => continue,
                Answer::Refused(message) => {
                    return Err(StepError::Refused(format!(
                        "the API server refused removing the source from {OBJECT}: {message}; fix what it names (on the legacy path the cluster-version operator must still be scaled down), then retry"
                    )));
                }
            }
        }
        if !done {
            return Err(StepError::Refused(format!(
                "{OBJECT} kept changing while the step wrote it ({ATTEMPTS} tries); find the other writer, then retry"
            )));
        }
    }
    let after = infrastructure::read_vsphere(context).await?;
    let mentions = ["vcenters", "failureDomains"].iter().any(|k| {
        infrastructure::list(&after.vsphere, k)
            .iter()
            .any(|v| v["server"].as_str() == Some(source))
    });
    if mentions {
        return Err(StepError::Unverified(format!(
            "{OBJECT} was updated but still names {source}"
        )));
    }
    Ok(changes)
}

/// Removes the source vCenter from cloud-provider-config in one edit.
async fn remove_from_cloud_config(
    context: &StepContext,
    source: &str,
    backups: &Backups,
) -> Result<Vec<String>, StepError> {
    let (name, key) = update_cloud_config::location(context).await?;
    let (map, text) = update_cloud_config::read(context, &name, &key).await?;
    let mut config = CloudConfig::parse(&text).map_err(|e| {
        StepError::Refused(format!(
            "ConfigMap {}/{name}: {e}; nothing was changed",
            update_cloud_config::NAMESPACE
        ))
    })?;
    if config.vcenter(source).is_none() {
        return Ok(Vec::new());
    }
    backups.save_once(CONFIG_BACKUP, &text).await?;
    let changed = config.remove_vcenter(source).map_err(|e| {
        StepError::Refused(format!(
            "ConfigMap {}/{name}: {e}; edit it so that nothing but the vCenter entries names {source}, then retry",
            update_cloud_config::NAMESPACE
        ))
    })?;
    if !changed {
        return Ok(Vec::new());
    }
    let mut map: ConfigMap = map;
    map.data
        .get_or_insert_with(BTreeMap::new)
        .insert(key.clone(), config.render());
    Api::<ConfigMap>::namespaced(context.client.clone(), update_cloud_config::NAMESPACE)
        .replace(&name, &PostParams::default(), &map)
        .await
        .map_err(|e| match e {
            kube::Error::Api(ref s) if s.code == 409 => StepError::Refused(format!(
                "ConfigMap {}/{name} changed while the step edited it; retry the step",
                update_cloud_config::NAMESPACE
            )),
            other => StepError::Kube {
                action: format!("update ConfigMap {}/{name}", update_cloud_config::NAMESPACE),
                source: other,
            },
        })?;
    let (_, after) = update_cloud_config::read(context, &name, &key).await?;
    let parsed = CloudConfig::parse(&after).map_err(|e| {
        StepError::Unverified(format!("the edited configuration does not parse: {e}"))
    })?;
    if parsed.vcenter(source).is_some() {
        return Err(StepError::Unverified(format!(
            "ConfigMap {}/{name} was updated but still names {source}",
            update_cloud_config::NAMESPACE
        )));
    }
    Ok(vec![format!(
        "ConfigMap {}/{name}: removed vCenter {source} (one edit: every node rolls once)",
        update_cloud_config::NAMESPACE
    )])
}

/// Runs the step.
pub async fn run(context: &StepContext) -> Result<Outcome, StepError> {
    let source = original_source(context).await?;
    let targets: Vec<&str> = context.target_servers();
    if targets.contains(&source.as_str()) {
        return Err(StepError::Refused(format!(
            "the source {source} is also a target; nothing was changed"
        )));
    }
    let stored = infrastructure::read_vsphere(context).await?;
    let left = left_on_source(context, &source, &stored.vsphere).await?;
    if !left.is_empty() {
        return Err(StepError::Refused(format!(
            "the source vCenter {source} is still in use: {}; steps 12 and 14 move them; nothing was changed",
            left.join("; ")
        )));
    }
    let backups = Backups::of(context);
    let mut outcome = Outcome::default();
    if backups.save_once(SOURCE_BACKUP, &source).await? {
        outcome.backups.push(backups.describe(SOURCE_BACKUP));
    }
    if backups
        .save_once(VSPHERE_BACKUP, &stored.vsphere.to_string())
        .await?
    {
        outcome.backups.push(backups.describe(VSPHERE_BACKUP));
    }
    outcome
        .changes
        .extend(remove_from_infrastructure(context, &source).await?);
    let edited = remove_from_cloud_config(context, &source, &backups).await?;
    if !edited.is_empty() {
        outcome.backups.push(backups.describe(CONFIG_BACKUP));
    }
    outcome.changes.extend(edited);
    let restart = restart_pods::restart(context, RESTARTED_AT).await?;
    outcome.changes.extend(restart.changes);
    outcome.backups.extend(restart.backups);
    let since = restart_pods::recorded_at(context, RESTARTED_AT)
        .await?
        .ok_or_else(|| {
            StepError::Unverified(format!("the restart time {RESTARTED_AT} was not recorded"))
        })?;
    let watched = monitor_pods::monitor(context, since).await?;
    outcome.findings = watched.findings;
    outcome
        .changes
        .extend(update_secrets::remove_server(context, &source).await?);
    outcome.result = if outcome.changes.is_empty() {
        format!("the cluster no longer knows the source vCenter {source}; nothing changed")
    } else {
        format!(
            "removed the source vCenter {source} from {OBJECT}, cloud-provider-config and the credentials; the vSphere components run without it"
        )
    };
    Ok(outcome)
}
