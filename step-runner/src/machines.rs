//! The machine API objects steps 11–16 read and change (MachineSets,
//! Machines, their Nodes), which vCenter each is on, and the watchdog that
//! stops a wait that makes no progress.
//!
//! A Machine or MachineSet is on the vCenter its provider spec's
//! `workspace.server` names: that is the vCenter the machine API clones its
//! VM in and reads credentials for (research `openshift-vsphere.md` §4.2).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use serde_json::{Value, json};
use vmi_api::VSphereMigrationInfra;

use crate::context::{StepContext, StepError};

/// The namespace of Machines, MachineSets and the control plane machine set.
pub const NAMESPACE: &str = "openshift-machine-api";
/// The label naming a machine's role (`master`, `worker`, `infra`…).
pub const ROLE_LABEL: &str = "machine.openshift.io/cluster-api-machine-role";
/// The annotation that sets how long a wait may go without progress, in
/// seconds.
pub const STALL_ANNOTATION: &str = "vmi.config.openshift.io/stall-seconds";
/// How long a wait may go without progress when the annotation is absent:
/// a vSphere clone and first boot take 5–15 minutes.
pub const DEFAULT_STALL: Duration = Duration::from_secs(1800);

fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "machine.openshift.io",
        "v1beta1",
        kind,
    ))
}

/// The MachineSet API.
pub fn machine_sets(context: &StepContext) -> Api<DynamicObject> {
    Api::namespaced_with(context.client.clone(), NAMESPACE, &resource("MachineSet"))
}

/// The Machine API.
pub fn machines(context: &StepContext) -> Api<DynamicObject> {
    Api::namespaced_with(context.client.clone(), NAMESPACE, &resource("Machine"))
}

/// Every object of `api`, sorted by name.
async fn sorted(api: Api<DynamicObject>, kind: &str) -> Result<Vec<DynamicObject>, StepError> {
    let mut items = api
        .list(&ListParams::default())
        .await
        .map_err(StepError::kube(format!("list {kind}s in {NAMESPACE}")))?
        .items;
    items.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    Ok(items)
}

/// Every MachineSet, sorted by name.
pub async fn list_machine_sets(context: &StepContext) -> Result<Vec<DynamicObject>, StepError> {
    sorted(machine_sets(context), "MachineSet").await
}

/// Every Machine, sorted by name.
pub async fn list_machines(context: &StepContext) -> Result<Vec<DynamicObject>, StepError> {
    sorted(machines(context), "Machine").await
}

/// The object's name.
pub fn name(object: &DynamicObject) -> &str {
    object.metadata.name.as_deref().unwrap_or_default()
}

/// The provider spec of a Machine, or of a MachineSet's template.
pub fn provider_spec(object: &DynamicObject) -> &Value {
    let machine = &object.data["spec"]["providerSpec"]["value"];
    if machine.is_null() {
        &object.data["spec"]["template"]["spec"]["providerSpec"]["value"]
    } else {
        machine
    }
}

/// The vCenter a Machine or MachineSet is on.
pub fn server(object: &DynamicObject) -> Option<&str> {
    provider_spec(object)["workspace"]["server"].as_str()
}

/// The role of a Machine, or of the Machines of a MachineSet.
pub fn role(object: &DynamicObject) -> Option<&str> {
    let own = object
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(ROLE_LABEL))
        .map(String::as_str);
    own.or_else(|| object.data["spec"]["template"]["metadata"]["labels"][ROLE_LABEL].as_str())
}

/// Whether the object is being deleted.
pub fn deleting(object: &DynamicObject) -> bool {
    object.metadata.deletion_timestamp.is_some()
}

/// A Machine's phase (`Provisioning`, `Running`, `Failed`…), or `Pending`
/// before the machine controller has set one.
pub fn phase(machine: &DynamicObject) -> &str {
    machine.data["status"]["phase"]
        .as_str()
        .unwrap_or("Pending")
}

/// A Machine's Node, once it has one.
pub fn node_name(machine: &DynamicObject) -> Option<&str> {
    machine.data["status"]["nodeRef"]["name"].as_str()
}

/// A Machine's error message, if the machine controller reported one.
pub fn error_message(machine: &DynamicObject) -> Option<&str> {
    machine.data["status"]["errorMessage"]
        .as_str()
        .filter(|m| !m.is_empty())
}

/// One line describing a Machine's state, for status and errors.
pub fn describe(machine: &DynamicObject) -> String {
    let mut line = format!(
        "Machine {NAMESPACE}/{} is {}",
        name(machine),
        phase(machine)
    );
    if deleting(machine) {
        line.push_str(" and being deleted");
    }
    if let Some(error) = error_message(machine) {
        line.push_str(&format!(" ({error})"));
    }
    line
}

/// The names of the Nodes whose Ready condition is True.
pub async fn ready_nodes(context: &StepContext) -> Result<BTreeSet<String>, StepError> {
    let nodes = Api::<Node>::all(context.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(StepError::kube("list Nodes"))?;
    Ok(nodes
        .items
        .into_iter()
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .filter_map(|n| n.metadata.name)
        .collect())
}

/// The names of every Node.
pub async fn node_names(context: &StepContext) -> Result<BTreeSet<String>, StepError> {
    let nodes = Api::<Node>::all(context.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(StepError::kube("list Nodes"))?;
    Ok(nodes
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect())
}

/// Whether a Machine runs with a Ready Node.
pub fn running_and_ready(machine: &DynamicObject, ready: &BTreeSet<String>) -> bool {
    phase(machine) == "Running" && node_name(machine).is_some_and(|n| ready.contains(n))
}

/// How long the context's waits may go without progress: the vmi's
/// [`STALL_ANNOTATION`], or [`DEFAULT_STALL`].
pub fn stall_limit(context: &StepContext) -> Duration {
    context
        .vmi
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(STALL_ANNOTATION))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_STALL)
}

/// Tells a wait that moves from one that is stuck: progress is any change
/// of what is observed (which Machines exist, their phases, readiness).
#[derive(Debug)]
pub struct Stall {
    limit: Duration,
    since: Instant,
    last: Option<String>,
}

impl Stall {
    /// A watchdog that fires after `limit` without change.
    pub fn new(limit: Duration) -> Stall {
        Stall {
            limit,
            since: Instant::now(),
            last: None,
        }
    }

    /// Records what is observed now; returns how long nothing has changed
    /// when that is longer than the limit.
    pub fn observe(&mut self, observed: String) -> Option<Duration> {
        if self.last.as_ref() != Some(&observed) {
            self.last = Some(observed);
            self.since = Instant::now();
            return None;
        }
        let still = self.since.elapsed();
        (still > self.limit).then_some(still)
    }
}

/// Writes one progress counter (`workers`, `controlPlane` or `volumes`) of
/// the vmi's `status.progress`. Progress is informative: a failure to
/// write it is logged, not fatal.
pub async fn set_progress(context: &StepContext, field: &str, done: usize, total: usize) {
    let api: Api<VSphereMigrationInfra> =
        Api::namespaced(context.client.clone(), &context.vmi_ref.namespace);
    let patch = json!({"status": {"progress": {field: {"done": done, "total": total}}}});
    if let Err(error) = api
        .patch_status(
            &context.vmi_ref.name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        tracing::warn!(%error, field, "could not write progress to the vmi status");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> DynamicObject {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn server_and_role_are_read_from_machines_and_machine_sets() {
        let machine = object(
            json!({"apiVersion": "machine.openshift.io/v1beta1", "kind": "Machine",
            "metadata": {"name": "m", "labels": {ROLE_LABEL: "master"}},
            "spec": {"providerSpec": {"value": {"workspace": {"server": "a"}}}}}),
        );
        assert_eq!(server(&machine), Some("a"));
        assert_eq!(role(&machine), Some("master"));
        let set = object(
            json!({"apiVersion": "machine.openshift.io/v1beta1", "kind": "MachineSet",
            "metadata": {"name": "s"},
            "spec": {"template": {"metadata": {"labels": {ROLE_LABEL: "worker"}},
                "spec": {"providerSpec": {"value": {"workspace": {"server": "b"}}}}}}}),
        );
        assert_eq!(server(&set), Some("b"));
        assert_eq!(role(&set), Some("worker"));
    }

    #[test]
    fn a_stall_fires_only_after_the_limit_without_change() {
        let mut stall = Stall::new(Duration::from_millis(30));
        assert_eq!(stall.observe("a".into()), None);
        std::thread::sleep(Duration::from_millis(40));
        assert!(stall.observe("a".into()).is_some());
        assert_eq!(stall.observe("b".into()), None, "a change is progress");
        assert_eq!(stall.observe("b".into()), None);
    }

    #[test]
    fn a_machine_is_described_with_its_phase_and_error() {
        let machine = object(
            json!({"apiVersion": "machine.openshift.io/v1beta1", "kind": "Machine",
            "metadata": {"name": "w-1"},
            "status": {"phase": "Failed", "errorMessage": "no key b.password"}}),
        );
        assert_eq!(
            describe(&machine),
            "Machine openshift-machine-api/w-1 is Failed (no key b.password)"
        );
    }
}
