//! Step 12 recreate-cpms: the control plane machine set backed up by step
//! 03, with the target failure domains and `state: Active` in the **same**
//! write (an edit to an Inactive set is otherwise undone by the operator's
//! generator, research §5), then a wait for the rolling update that
//! replaces the control plane machines one at a time.
//!
//! The wait is done when the operator reports every replica updated and
//! ready, and every control plane Machine is Running on a target vCenter
//! with a Ready Node. It stops when nothing moves for the stall time,
//! naming the Machine it waits for. The undo puts the backed-up failure
//! domains back and waits for the rollout home.

use std::time::Duration;

use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::backup::Backups;
use crate::context::{Outcome, StepContext, StepError};
use crate::machines::{self, NAMESPACE, Stall};
use crate::steps::backup_cpms::{self, CPMS_BACKUP, NAME};

/// How often the wait looks again.
const POLL: Duration = Duration::from_secs(2);
/// How often a write that raced the operator is tried again.
const ATTEMPTS: usize = 10;

fn object() -> String {
    format!("ControlPlaneMachineSet {NAMESPACE}/{NAME}")
}

/// The failure domains the control plane goes to:
/// `spec.controlPlane.failureDomains`, or every target failure domain.
pub fn control_plane_domains(spec: &vmi_api::VSphereMigrationInfraSpec) -> Vec<String> {
    match &spec.control_plane {
        Some(c) if !c.failure_domains.is_empty() => c.failure_domains.clone(),
        _ => spec
            .failure_domains
            .iter()
            .map(|d| d.name.clone())
            .collect(),
    }
}

/// The failure domain names of a control plane machine set spec.
pub fn domains_of(spec: &Value) -> Vec<String> {
    spec["template"]["machines_v1beta1_machine_openshift_io"]["failureDomains"]["vsphere"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|d| d["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The backed-up spec with `domains` and `state: Active`. The topology
/// fields of the provider spec are cleared: with vSphere failure domains
/// the operator's webhook refuses `workspace` server, datacenter and
/// datastore and network names, and injects them from the failure domain.
pub fn activated(backup_spec: &Value, domains: &[String]) -> Value {
    let mut spec = backup_spec.clone();
    spec["state"] = json!("Active");
    let machine = &mut spec["template"]["machines_v1beta1_machine_openshift_io"];
    machine["failureDomains"] = json!({
        "platform": "VSphere",
        "vsphere": domains.iter().map(|d| json!({"name": d})).collect::<Vec<_>>(),
    });
    let provider = &mut machine["spec"]["providerSpec"]["value"];
    if let Some(map) = provider.as_object_mut() {
        map.remove("workspace");
        map.remove("template");
    }
    if let Some(devices) = provider["network"]["devices"].as_array_mut() {
        for device in devices.iter_mut() {
            if let Some(map) = device.as_object_mut() {
                map.remove("networkName");
            }
        }
    }
    spec
}

async fn load_backup(context: &StepContext) -> Result<Value, StepError> {
    let backups = Backups::of(context);
    let text = backups.load(CPMS_BACKUP).await?.ok_or_else(|| {
        StepError::Refused(format!(
            "there is no backup of the control plane machine set ({}): step 03 backup-cpms takes it; run it first; nothing was changed",
            backups.describe(CPMS_BACKUP)
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| {
        StepError::Refused(format!(
            "the backup {} is not readable ({e}); nothing was changed",
            backups.describe(CPMS_BACKUP)
        ))
    })
}

fn is_active(cpms: &DynamicObject) -> bool {
    cpms.data["spec"]["state"].as_str() == Some("Active")
}

/// Writes `wanted` (an Active spec) over the current control plane machine
/// set. Returns whether it wrote; an Active one with other failure domains
/// is refused unless `replace_active`.
async fn activate(
    context: &StepContext,
    wanted: &Value,
    replace_active: bool,
) -> Result<bool, StepError> {
    let api = backup_cpms::api(context);
    let domains = domains_of(wanted);
    let mut absent = false;
    for _ in 0..ATTEMPTS {
        let current = backup_cpms::read(context).await?;
        absent = current.as_ref().is_none_or(machines::deleting);
        let Some(current) = current.filter(|c| !machines::deleting(c)) else {
            // Deleted and not regenerated yet: the operator makes a new one.
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        if is_active(&current) {
            if domains_of(&current.data["spec"]) == domains {
                return Ok(false);
            }
            if !replace_active {
                return Err(StepError::Refused(format!(
                    "{} is already Active with failure domains {:?}, not {:?}: someone activated it after step 03; check it (`oc -n {NAMESPACE} get controlplanemachineset cluster -o yaml`); nothing was changed",
                    object(),
                    domains_of(&current.data["spec"]),
                    domains
                )));
            }
            let patch = json!({
                "metadata": {"resourceVersion": current.metadata.resource_version},
                "spec": {"template": {"machines_v1beta1_machine_openshift_io": {
                    "failureDomains": wanted["template"]["machines_v1beta1_machine_openshift_io"]["failureDomains"]}}},
            });
            match api
                .patch(NAME, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(refused_or_kube(e)),
            }
        }
        let mut object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "machine.openshift.io/v1",
            "kind": "ControlPlaneMachineSet",
            "metadata": {"name": NAME, "namespace": NAMESPACE},
            "spec": wanted,
        }))
        .map_err(|e| StepError::Refused(format!("internal: {e}")))?;
        object.metadata.labels = current.metadata.labels.clone();
        object.metadata.annotations = current.metadata.annotations.clone();
        object.metadata.resource_version = current.metadata.resource_version.clone();
        match api.replace(NAME, &PostParams::default(), &object).await {
            Ok(_) => return Ok(true),
            // The generator replaced it meanwhile: read again.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => continue,
            Err(e) => return Err(refused_or_kube(e)),
        }
    }
    Err(StepError::Refused(if absent {
        format!(
            "{} does not exist (or is being deleted) and the operator has not regenerated it; check `oc -n {NAMESPACE} logs deploy/control-plane-machine-set-operator`, then retry; nothing was changed",
            object()
        )
    } else {
        format!(
            "{} kept changing while the step wrote it ({ATTEMPTS} tries); check the control plane machine set operator, then retry; nothing was changed",
            object()
        )
    }))
}

fn refused_or_kube(e: kube::Error) -> StepError {
    match e {
        kube::Error::Api(s) if s.code == 422 || s.code == 400 || s.code == 403 => {
            StepError::Refused(format!(
                "the API server refused {}: {}; fix what it names, then retry; nothing was changed",
                object(),
                s.message
            ))
        }
        other => StepError::Kube {
            action: format!("write {}", object()),
            source: other,
        },
    }
}

/// The vCenters of the named failure domains, from the Infrastructure.
async fn servers_of(context: &StepContext, domains: &[String]) -> Result<Vec<String>, StepError> {
    let stored = crate::infrastructure::read_vsphere(context).await?;
    let all = crate::infrastructure::list(&stored.vsphere, "failureDomains");
    let mut servers = Vec::new();
    for name in domains {
        let server = all
            .iter()
            .find(|d| d["name"].as_str() == Some(name.as_str()))
            .and_then(|d| d["server"].as_str())
            .ok_or_else(|| {
                StepError::Refused(format!(
                    "failure domain {name} is not in {}: step 07 update-infra adds the target failure domains; run it first; nothing was changed",
                    crate::infrastructure::OBJECT
                ))
            })?;
        if !servers.iter().any(|s| s == server) {
            servers.push(server.to_owned());
        }
    }
    Ok(servers)
}

/// Waits until the rollout is done: the operator's status settled and
/// every control plane Machine Running with a Ready Node on `servers`.
async fn wait_for_rollout(context: &StepContext, servers: &[String]) -> Result<usize, StepError> {
    let mut stall = Stall::new(machines::stall_limit(context));
    loop {
        let cpms = backup_cpms::read(context).await?.ok_or_else(|| {
            StepError::Unverified(format!("{} disappeared during the rollout", object()))
        })?;
        let status = &cpms.data["status"];
        let count = |key: &str| status[key].as_i64().unwrap_or(0);
        let replicas = cpms.data["spec"]["replicas"].as_i64().unwrap_or(3);
        let settled = status["observedGeneration"].as_i64() == cpms.metadata.generation
            && count("updatedReplicas") == replicas
            && count("readyReplicas") == replicas
            && count("replicas") == replicas
            && count("unavailableReplicas") == 0;
        let masters: Vec<DynamicObject> = machines::list_machines(context)
            .await?
            .into_iter()
            .filter(|m| machines::role(m) == Some("master"))
            .collect();
        let ready = machines::ready_nodes(context).await?;
        let moved: Vec<&DynamicObject> = masters
            .iter()
            .filter(|m| {
                !machines::deleting(m)
                    && machines::server(m).is_some_and(|s| servers.iter().any(|t| t == s))
                    && machines::running_and_ready(m, &ready)
            })
            .collect();
        let total = usize::try_from(replicas).unwrap_or(3);
        machines::set_progress(context, "controlPlane", moved.len().min(total), total).await;
        if settled && moved.len() == total && masters.len() == total {
            return Ok(total);
        }
        let observed = format!(
            "{}/{}/{}|{}",
            count("updatedReplicas"),
            count("readyReplicas"),
            count("replicas"),
            masters
                .iter()
                .map(|m| format!(
                    "{}={}:{}",
                    machines::name(m),
                    machines::phase(m),
                    machines::deleting(m)
                ))
                .collect::<Vec<_>>()
                .join(",")
        );
        if let Some(still) = stall.observe(observed) {
            return Err(StepError::Unverified(format!(
                "the control plane rollout made no progress for {} s ({} of {total} replicas updated): {}; read `oc -n {NAMESPACE} logs deploy/control-plane-machine-set-operator` and `oc -n {NAMESPACE} describe machine <name>`, fix the cause, then retry this step (or set the annotation {} on the vmi to wait longer)",
                still.as_secs(),
                count("updatedReplicas"),
                stuck(&masters, servers, &ready),
                machines::STALL_ANNOTATION
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The Machine a stalled rollout waits for, described.
fn stuck(
    masters: &[DynamicObject],
    servers: &[String],
    ready: &std::collections::BTreeSet<String>,
) -> String {
    let on_target =
        |m: &DynamicObject| machines::server(m).is_some_and(|s| servers.iter().any(|t| t == s));
    if let Some(new) = masters
        .iter()
        .find(|m| on_target(m) && !machines::running_and_ready(m, ready))
    {
        return format!("the replacement {}", machines::describe(new));
    }
    if let Some(old) = masters.iter().find(|m| machines::deleting(m)) {
        return format!(
            "{} (its drain or the etcd operator's deletion hook holds it)",
            machines::describe(old)
        );
    }
    match masters.iter().find(|m| !on_target(m)) {
        Some(old) => format!(
            "the operator has not started replacing Machine {NAMESPACE}/{} (strategy OnDelete? operator down?)",
            machines::name(old)
        ),
        None => "the operator's status has not caught up".into(),
    }
}

/// Runs the step.
pub async fn run(context: &StepContext) -> Result<Outcome, StepError> {
    let backup = load_backup(context).await?;
    let domains = control_plane_domains(&context.vmi.spec);
    let servers = servers_of(context, &domains).await?;
    let wanted = activated(&backup["spec"], &domains);
    if wanted["strategy"]["type"].as_str() == Some("OnDelete") {
        return Err(StepError::Refused(format!(
            "{} has strategy OnDelete: the operator replaces a control plane machine only when someone deletes it; set spec.strategy.type to RollingUpdate in the backup's source or delete the masters one at a time by hand; nothing was changed",
            object()
        )));
    }
    let wrote = activate(context, &wanted, false).await?;
    let mut outcome = Outcome::default();
    if wrote {
        outcome.changes.push(format!(
            "{}: failure domains {} and state Active in one write",
            object(),
            domains.join(", ")
        ));
    }
    let replaced = wait_for_rollout(context, &servers).await?;
    outcome.result = format!(
        "the control plane runs on {} ({replaced} Machine(s) Running with Ready Nodes in failure domains {}){}",
        servers.join(", "),
        domains.join(", "),
        if wrote {
            ""
        } else {
            "; the control plane machine set was already Active with them, nothing changed"
        }
    );
    Ok(outcome)
}

/// Undoes the step: the backed-up failure domains back (the set stays
/// Active: an Active set cannot go back to Inactive) and a wait for the
/// rollout home.
pub async fn undo(context: &StepContext) -> Result<Outcome, StepError> {
    let backup = load_backup(context).await?;
    let Some(current) = backup_cpms::read(context).await? else {
        return Ok(Outcome::unchanged(format!(
            "{} does not exist; nothing to undo",
            object()
        )));
    };
    if !is_active(&current) {
        return Ok(Outcome::unchanged(format!(
            "{} is Inactive: step 12 never activated it; nothing to undo",
            object()
        )));
    }
    let domains = domains_of(&backup["spec"]);
    let servers = servers_of(context, &domains).await?;
    let wanted = activated(&backup["spec"], &domains);
    let wrote = activate(context, &wanted, true).await?;
    wait_for_rollout(context, &servers).await?;
    Ok(Outcome {
        result: format!(
            "the control plane is back on failure domains {} ({})",
            domains.join(", "),
            servers.join(", ")
        ),
        changes: if wrote {
            vec![format!(
                "{}: failure domains back to {}",
                object(),
                domains.join(", ")
            )]
        } else {
            Vec::new()
        },
        ..Outcome::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_sets_domains_and_state_and_clears_the_topology() {
        let backup = json!({"state": "Active", "replicas": 3, "strategy": {"type": "RollingUpdate"},
            "template": {"machineType": "machines_v1beta1_machine_openshift_io",
                "machines_v1beta1_machine_openshift_io": {
                    "failureDomains": {"platform": "VSphere", "vsphere": [{"name": "a"}]},
                    "metadata": {"labels": {"k": "v"}},
                    "spec": {"providerSpec": {"value": {"numCPUs": 4,
                        "workspace": {"server": "a"}, "template": "t",
                        "network": {"devices": [{"networkName": "n", "addressesFromPools": [{"name": "p"}]}]}}}}}}});
        let spec = activated(&backup, &["b-1".into(), "b-2".into()]);
        assert_eq!(spec["state"], "Active");
        assert_eq!(domains_of(&spec), ["b-1", "b-2"]);
        let provider = &spec["template"]["machines_v1beta1_machine_openshift_io"]["spec"]["providerSpec"]
            ["value"];
        assert!(provider.get("workspace").is_none() && provider.get("template").is_none());
        assert_eq!(
            provider["network"],
            json!({"devices": [{"addressesFromPools": [{"name": "p"}]}]})
        );
        assert_eq!(provider["numCPUs"], 4);
        assert_eq!(spec["replicas"], 3);
    }
}
