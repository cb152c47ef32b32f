//! Step 14 scale-down-source: the source vCenter's worker MachineSets
//! scaled to 0, a wait until their Machines and Nodes are gone (the machine
//! API drains each Node and deletes its VM), then the empty MachineSets
//! deleted. An empty MachineSet left behind would still name the source
//! failure domain, and OpenShift refuses removing a failure domain a
//! MachineSet uses, even at 0 replicas (research §4.3).
//!
//! The MachineSets are backed up whole first; the undo creates them again
//! with their replicas and waits for their Machines.

use std::time::Duration;

use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::backup::Backups;
use crate::context::{Outcome, StepContext, StepError};
use crate::machines::{self, NAMESPACE, Stall};
use crate::steps::create_machinesets::{self, MACHINESET_LABEL};
use crate::vcenters::source_server;

/// The backup key of the source MachineSets, as they were.
pub const SETS_BACKUP: &str = "14-scale-down-source.machinesets";

/// A MachineSet as it can be created again: name, labels, annotations, spec.
fn restorable(set: &DynamicObject) -> Value {
    let mut metadata = json!({"name": machines::name(set), "namespace": NAMESPACE});
    if let Some(labels) = &set.metadata.labels {
        metadata["labels"] = json!(labels);
    }
    if let Some(annotations) = &set.metadata.annotations {
        metadata["annotations"] = json!(annotations);
    }
    json!({"apiVersion": "machine.openshift.io/v1beta1", "kind": "MachineSet",
        "metadata": metadata, "spec": set.data["spec"]})
}

async fn load_backup(backups: &Backups) -> Result<Option<Vec<Value>>, StepError> {
    match backups.load(SETS_BACKUP).await? {
        Some(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            StepError::Refused(format!(
                "the backup {} is not readable ({e}); check the MachineSets by hand",
                backups.describe(SETS_BACKUP)
            ))
        }),
        None => Ok(None),
    }
}

/// Refuses to remove the source workers while no worker runs on a target
/// vCenter: their workloads would have nowhere to go.
async fn check_targets_run(context: &StepContext, source_workers: usize) -> Result<(), StepError> {
    if source_workers == 0 {
        return Ok(());
    }
    let targets: Vec<&str> = context.target_servers();
    let ready = machines::ready_nodes(context).await?;
    let running = machines::list_machines(context)
        .await?
        .iter()
        .filter(|m| {
            machines::role(m) != Some("master")
                && machines::server(m).is_some_and(|s| targets.contains(&s))
                && machines::running_and_ready(m, &ready)
        })
        .count();
    if running == 0 {
        return Err(StepError::Refused(format!(
            "no worker Machine runs on a target vCenter ({}) yet, so the {source_workers} source worker(s) cannot go: their workloads would have nowhere to run; step 11 create-machinesets must succeed first; nothing was changed",
            targets.join(", ")
        )));
    }
    Ok(())
}

/// Runs the step.
pub async fn run(context: &StepContext) -> Result<Outcome, StepError> {
    let source = source_server(context).await?;
    let sets = create_machinesets::source_sets(context, &source).await?;
    let backups = Backups::of(context);
    let mut outcome = Outcome::default();
    if sets.is_empty() {
        outcome.result =
            format!("no worker MachineSet is left on the source vCenter {source}; nothing changed");
        return Ok(outcome);
    }
    let workers: usize = machines::list_machines(context)
        .await?
        .iter()
        .filter(|m| {
            m.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(MACHINESET_LABEL))
                .is_some_and(|s| sets.iter().any(|set| machines::name(set) == s))
        })
        .count();
    check_targets_run(context, workers).await?;
    let saved: Vec<Value> = sets.iter().map(restorable).collect();
    let text =
        serde_json::to_string(&saved).map_err(|e| StepError::Refused(format!("internal: {e}")))?;
    if backups.save_once(SETS_BACKUP, &text).await? {
        outcome.backups.push(backups.describe(SETS_BACKUP));
    }
    outcome.changes = create_machinesets::drain_and_delete(context, &sets).await?;
    outcome.result = format!(
        "removed {} source MachineSet(s) ({}) with their {workers} Machine(s) and Nodes from vCenter {source}",
        sets.len(),
        sets.iter()
            .map(machines::name)
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(outcome)
}

/// Undoes the step: each backed-up MachineSet back with its replicas, and
/// a wait until its Machines run with Ready Nodes.
pub async fn undo(context: &StepContext) -> Result<Outcome, StepError> {
    let backups = Backups::of(context);
    let Some(saved) = load_backup(&backups).await? else {
        return Ok(Outcome::unchanged(
            "nothing to undo: step 14 took no backup",
        ));
    };
    let api = machines::machine_sets(context);
    let mut outcome = Outcome::default();
    for set in &saved {
        let name = set["metadata"]["name"].as_str().unwrap_or_default();
        let replicas = set["spec"]["replicas"].as_i64().unwrap_or(0);
        match api.get_opt(name).await.map_err(StepError::kube(format!(
            "read MachineSet {NAMESPACE}/{name}"
        )))? {
            Some(current) if machines::deleting(&current) => {
                return Err(StepError::Refused(format!(
                    "MachineSet {NAMESPACE}/{name} is being deleted; wait until it is gone, then retry the undo"
                )));
            }
            Some(current) => {
                if current.data["spec"]["replicas"].as_i64() != Some(replicas) {
                    api.patch(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"spec": {"replicas": replicas}})),
                    )
                    .await
                    .map_err(StepError::kube(format!(
                        "scale MachineSet {NAMESPACE}/{name}"
                    )))?;
                    outcome.changes.push(format!(
                        "MachineSet {NAMESPACE}/{name}: replicas back to {replicas}"
                    ));
                }
            }
            None => {
                let object: DynamicObject = serde_json::from_value(set.clone())
                    .map_err(|e| StepError::Refused(format!("the backup of {name}: {e}")))?;
                match api.create(&PostParams::default(), &object).await {
                    Ok(_) => outcome.changes.push(format!(
                        "MachineSet {NAMESPACE}/{name}: created again from the backup with {replicas} replica(s)"
                    )),
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => {
                        return Err(StepError::Kube {
                            action: format!("create MachineSet {NAMESPACE}/{name}"),
                            source: e,
                        });
                    }
                }
            }
        }
    }
    wait_for_sets(context, &saved).await?;
    outcome.result = format!(
        "the {} source MachineSet(s) are back and their Machines run",
        saved.len()
    );
    Ok(outcome)
}

/// Waits until every backed-up set has its replicas Running with Ready Nodes.
async fn wait_for_sets(context: &StepContext, saved: &[Value]) -> Result<(), StepError> {
    let mut stall = Stall::new(machines::stall_limit(context));
    loop {
        let all = machines::list_machines(context).await?;
        let ready = machines::ready_nodes(context).await?;
        let mut waiting = Vec::new();
        let mut observed = Vec::new();
        for set in saved {
            let name = set["metadata"]["name"].as_str().unwrap_or_default();
            let want = usize::try_from(set["spec"]["replicas"].as_i64().unwrap_or(0)).unwrap_or(0);
            let members: Vec<&DynamicObject> = all
                .iter()
                .filter(|m| {
                    !machines::deleting(m)
                        && m.metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get(MACHINESET_LABEL))
                            .map(String::as_str)
                            == Some(name)
                })
                .collect();
            let running = members
                .iter()
                .filter(|m| machines::running_and_ready(m, &ready))
                .count();
            observed.push(format!("{name}:{}:{running}", members.len()));
            if running != want || members.len() != want {
                waiting.push(format!(
                    "MachineSet {NAMESPACE}/{name}: {running} of {want} Running"
                ));
                waiting.extend(
                    members
                        .iter()
                        .filter(|m| !machines::running_and_ready(m, &ready))
                        .map(|m| machines::describe(m)),
                );
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        if let Some(still) = stall.observe(observed.join(",")) {
            return Err(StepError::Unverified(format!(
                "no progress for {} s bringing the source workers back: {}",
                still.as_secs(),
                waiting.join("; ")
            )));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
