//! How far the machines have moved: Machines of `openshift-machine-api`
//! whose provider spec names the target vCenter
//! (`providerSpec.value.workspace.server`), and Nodes whose Machine does.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde_json::Value;

use crate::migration::RigError;

/// The namespace of the Machines.
pub const MACHINE_NAMESPACE: &str = "openshift-machine-api";
/// The annotation linking a Node to its Machine (`<namespace>/<name>`).
pub const MACHINE_ANNOTATION: &str = "machine.openshift.io/machine";

/// Machines and Nodes on the target out of all of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MachineProgress {
    /// Machines whose workspace server is the target.
    pub machines_on_target: usize,
    /// All Machines.
    pub machines: usize,
    /// Nodes whose Machine is on the target.
    pub nodes_on_target: usize,
    /// All Nodes that belong to a Machine.
    pub nodes: usize,
}

impl std::fmt::Display for MachineProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "machines {}/{}, nodes {}/{} on target",
            self.machines_on_target, self.machines, self.nodes_on_target, self.nodes
        )
    }
}

/// The Machine resource.
pub fn machine_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "machine.openshift.io",
        "v1beta1",
        "Machine",
    ))
}

/// The vCenter a Machine's provider spec names.
pub fn machine_server(machine: &Value) -> Option<&str> {
    machine["spec"]["providerSpec"]["value"]["workspace"]["server"].as_str()
}

/// Counts `machines` and `nodes` (as JSON) on `target_server`. A Node's
/// Machine is the one its `machine.openshift.io/machine` annotation names,
/// or else the one whose `status.nodeRef` names the Node; Nodes of no
/// Machine (the step pods' Node) are not counted.
pub fn count(machines: &[Value], nodes: &[Value], target_server: &str) -> MachineProgress {
    let mut server_of: BTreeMap<&str, Option<&str>> = BTreeMap::new();
    let mut machine_of_node: BTreeMap<&str, &str> = BTreeMap::new();
    for machine in machines {
        let Some(name) = machine["metadata"]["name"].as_str() else {
            continue;
        };
        server_of.insert(name, machine_server(machine));
        if let Some(node) = machine["status"]["nodeRef"]["name"].as_str() {
            machine_of_node.insert(node, name);
        }
    }
    let mut progress = MachineProgress {
        machines: server_of.len(),
        machines_on_target: server_of
            .values()
            .filter(|s| **s == Some(target_server))
            .count(),
        ..MachineProgress::default()
    };
    for node in nodes {
        let name = node["metadata"]["name"].as_str().unwrap_or_default();
        let annotated = node["metadata"]["annotations"][MACHINE_ANNOTATION]
            .as_str()
            .map(|m| m.rsplit('/').next().unwrap_or(m));
        let Some(machine) = annotated.or_else(|| machine_of_node.get(name).copied()) else {
            continue;
        };
        progress.nodes += 1;
        if server_of.get(machine).copied().flatten() == Some(target_server) {
            progress.nodes_on_target += 1;
        }
    }
    progress
}

/// Reads the Machines and Nodes and counts them.
pub async fn read(client: &Client, target_server: &str) -> Result<MachineProgress, RigError> {
    let machines = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        MACHINE_NAMESPACE,
        &machine_resource(),
    )
    .list(&ListParams::default())
    .await
    .map_err(|e| RigError::Kube("list Machines".into(), e))?;
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| RigError::Kube("list Nodes".into(), e))?;
    Ok(count(
        &as_json(&machines.items),
        &as_json(&nodes.items),
        target_server,
    ))
}

/// Objects as JSON values.
pub fn as_json<T: serde::Serialize>(items: &[T]) -> Vec<Value> {
    items
        .iter()
        .filter_map(|item| serde_json::to_value(item).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn machine(name: &str, server: &str, node: Option<&str>) -> Value {
        let mut m = json!({"metadata": {"name": name},
            "spec": {"providerSpec": {"value": {"workspace": {"server": server}}}}});
        if let Some(node) = node {
            m["status"] = json!({"nodeRef": {"kind": "Node", "name": node}});
        }
        m
    }

    #[test]
    fn machines_and_nodes_are_counted_by_the_machine_server() {
        let machines = vec![
            machine("master-0", "127.0.0.10", Some("master-0")),
            machine("worker-a", "127.0.0.10", Some("worker-a")),
            machine("worker-b-new", "127.0.0.11", Some("node-b")),
            machine("worker-c-new", "127.0.0.11", None),
        ];
        let nodes = vec![
            json!({"metadata": {"name": "master-0",
                "annotations": {MACHINE_ANNOTATION: "openshift-machine-api/master-0"}}}),
            json!({"metadata": {"name": "worker-a"}}),
            // Linked by the Machine's nodeRef only.
            json!({"metadata": {"name": "node-b"}}),
            // Its Machine is gone: counted, not on the target.
            json!({"metadata": {"name": "old",
                "annotations": {MACHINE_ANNOTATION: "openshift-machine-api/deleted"}}}),
            // The step pods' Node belongs to no Machine.
            json!({"metadata": {"name": "vmi-sim-vmi-1"}}),
        ];
        let progress = count(&machines, &nodes, "127.0.0.11");
        assert_eq!(
            progress,
            MachineProgress {
                machines_on_target: 2,
                machines: 4,
                nodes_on_target: 1,
                nodes: 4
            }
        );
        assert_eq!(progress.to_string(), "machines 2/4, nodes 1/4 on target");
    }
}
