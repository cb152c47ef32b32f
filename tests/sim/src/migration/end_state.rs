//! The cluster after a migration, read back for the end-state checks: what
//! the Infrastructure, the credentials and cloud-provider-config name, where
//! every Machine and Node runs (in the API server and in the vCenters), the
//! control plane machine set and the cluster-version operator.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde_json::Value;

use crate::disruption::{CVO_DEPLOYMENT, CVO_NAMESPACE};
use crate::migration::RigError;
use crate::migration::progress::{MACHINE_NAMESPACE, as_json, machine_resource, machine_server};
use crate::seed::SimCluster;
use crate::vcsim::VCenterSim;

/// Where one Node's VM is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeVm {
    /// The Node.
    pub node: String,
    /// The VM's BIOS UUID from `spec.providerID` (`vsphere://<uuid>`).
    pub vm_uuid: Option<String>,
    /// Whether the target vCenter has a VM with that UUID.
    pub in_target: bool,
    /// Whether that VM is in the target's cluster folder
    /// (`/<datacenter>/vm/<infra id>`).
    pub in_target_folder: bool,
    /// Whether that VM carries the cluster's tag (`<infra id>` in category
    /// `openshift-<infra id>`), which the machine API attaches.
    pub tagged: bool,
}

/// The cluster as the end-state checks see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndState {
    /// The source and target vCenter servers.
    pub source_server: String,
    /// The target vCenter server.
    pub target_server: String,
    /// The target cluster folder, `/<datacenter>/vm/<infra id>`.
    pub target_folder: String,
    /// The cluster's tag, the infrastructure id.
    pub cluster_tag: String,
    /// `infrastructure/cluster` `spec.platformSpec.vsphere.vcenters[].server`.
    pub infrastructure_vcenters: Vec<String>,
    /// Its failure domains' servers.
    pub failure_domain_servers: Vec<String>,
    /// The servers `kube-system/vsphere-creds` has keys for.
    pub credential_servers: BTreeSet<String>,
    /// Which of the two servers `openshift-config/cloud-provider-config` names.
    pub cloud_config_servers: Vec<String>,
    /// Every Machine and the server its provider spec names.
    pub machines: Vec<(String, Option<String>)>,
    /// Every Node of a Machine and where its VM is.
    pub nodes: Vec<NodeVm>,
    /// VMs (not templates) still in the source's cluster folder.
    pub source_folder_vms: Vec<String>,
    /// The control plane machine set's `spec.state`.
    pub cpms_state: Option<String>,
    /// Its failure domains' names.
    pub cpms_failure_domains: Vec<String>,
    /// The cluster-version operator Deployment's `spec.replicas`.
    pub cvo_replicas: Option<i32>,
}

impl EndState {
    /// Reads the cluster and both vCenters.
    pub async fn read(client: &Client, cluster: &SimCluster) -> Result<EndState, RigError> {
        let (source, target) = (&cluster.source, &cluster.target);
        let infra_id = &cluster.options.infra_id;
        let target_folder = format!("/{}/vm/{infra_id}", cluster.target_inventory.datacenter);
        let mut state = EndState {
            source_server: source.server.clone(),
            target_server: target.server.clone(),
            target_folder: target_folder.clone(),
            cluster_tag: infra_id.clone(),
            ..EndState::default()
        };

        let infra = get_dynamic(
            client,
            "config.openshift.io",
            "v1",
            "Infrastructure",
            None,
            "cluster",
        )
        .await?;
        let vsphere = &infra["spec"]["platformSpec"]["vsphere"];
        state.infrastructure_vcenters = strings(&vsphere["vcenters"], "server");
        state.failure_domain_servers = strings(&vsphere["failureDomains"], "server");

        let creds = Api::<Secret>::namespaced(client.clone(), "kube-system")
            .get("vsphere-creds")
            .await
            .map_err(|e| RigError::Kube("read Secret kube-system/vsphere-creds".into(), e))?;
        state.credential_servers = creds
            .data
            .unwrap_or_default()
            .keys()
            .filter_map(|k| {
                k.strip_suffix(".username")
                    .or_else(|| k.strip_suffix(".password"))
                    .map(str::to_owned)
            })
            .collect();

        let config = Api::<ConfigMap>::namespaced(client.clone(), "openshift-config")
            .get("cloud-provider-config")
            .await
            .map_err(|e| {
                RigError::Kube(
                    "read ConfigMap openshift-config/cloud-provider-config".into(),
                    e,
                )
            })?
            .data
            .unwrap_or_default()
            .get("config")
            .cloned()
            .unwrap_or_default();
        state.cloud_config_servers = [&source.server, &target.server]
            .into_iter()
            .filter(|server| names_server(&config, server))
            .cloned()
            .collect();

        let machines = Api::<DynamicObject>::namespaced_with(
            client.clone(),
            MACHINE_NAMESPACE,
            &machine_resource(),
        )
        .list(&ListParams::default())
        .await
        .map_err(|e| RigError::Kube("list Machines".into(), e))?;
        state.machines = as_json(&machines.items)
            .iter()
            .map(|m| {
                (
                    m["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    machine_server(m).map(str::to_owned),
                )
            })
            .collect();

        let in_folder = vms_in_folder(target, &target_folder);
        let nodes = Api::<Node>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| RigError::Kube("list Nodes".into(), e))?;
        for node in as_json(&nodes.items) {
            let name = node["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let provider = node["spec"]["providerID"].as_str();
            if provider.is_none()
                && node["metadata"]["annotations"][crate::migration::progress::MACHINE_ANNOTATION]
                    .is_null()
            {
                continue; // the step pods' Node
            }
            let vm_uuid = provider
                .and_then(|p| p.strip_prefix("vsphere://"))
                .map(str::to_owned);
            let in_target = vm_uuid.as_deref().is_some_and(|uuid| has_vm(target, uuid));
            let vm = vm_uuid.as_deref().and_then(|uuid| {
                in_folder
                    .iter()
                    .find(|vm| vm.uuid.eq_ignore_ascii_case(uuid))
            });
            let tagged = vm.is_some_and(|vm| {
                target
                    .govc(&[
                        "tags.attached.ls",
                        "-r",
                        &format!("{target_folder}/{}", vm.name),
                    ])
                    .is_ok_and(|tags| tags.lines().any(|t| t.trim() == infra_id))
            });
            state.nodes.push(NodeVm {
                node: name,
                vm_uuid,
                in_target,
                in_target_folder: vm.is_some(),
                tagged,
            });
        }

        state.source_folder_vms = vms_in_folder(source, &cluster.source_inventory.folder_path())
            .into_iter()
            .filter(|vm| !vm.template)
            .map(|vm| vm.name)
            .collect();

        let cpms = get_dynamic(
            client,
            "machine.openshift.io",
            "v1",
            "ControlPlaneMachineSet",
            Some(MACHINE_NAMESPACE),
            "cluster",
        )
        .await?;
        state.cpms_state = cpms["spec"]["state"].as_str().map(str::to_owned);
        state.cpms_failure_domains = strings(
            &cpms["spec"]["template"]["machines_v1beta1_machine_openshift_io"]["failureDomains"]["vsphere"],
            "name",
        );

        let cvo = Api::<Deployment>::namespaced(client.clone(), CVO_NAMESPACE)
            .get(CVO_DEPLOYMENT)
            .await
            .map_err(|e| {
                RigError::Kube(
                    format!("read Deployment {CVO_NAMESPACE}/{CVO_DEPLOYMENT}"),
                    e,
                )
            })?;
        state.cvo_replicas = cvo.spec.and_then(|s| s.replicas);
        Ok(state)
    }

    /// How the cluster differs from a finished migration to the target
    /// failure domain `target_failure_domain`: one line per difference.
    pub fn problems(&self, target_failure_domain: &str) -> Vec<String> {
        let target = &self.target_server;
        let only_target =
            |servers: &[String]| !servers.is_empty() && servers.iter().all(|s| s == target);
        let mut problems = Vec::new();
        if !only_target(&self.infrastructure_vcenters) {
            problems.push(format!(
                "Infrastructure vcenters are {:?}, not only the target {target}",
                self.infrastructure_vcenters
            ));
        }
        if !only_target(&self.failure_domain_servers) {
            problems.push(format!(
                "Infrastructure failure domains are on {:?}, not only the target {target}",
                self.failure_domain_servers
            ));
        }
        let creds: Vec<String> = self.credential_servers.iter().cloned().collect();
        if !only_target(&creds) {
            problems.push(format!(
                "kube-system/vsphere-creds has keys for {creds:?}, not only the target {target}"
            ));
        }
        if self.cloud_config_servers != [target.clone()] {
            problems.push(format!(
                "openshift-config/cloud-provider-config names {:?}, not only the target {target}",
                self.cloud_config_servers
            ));
        }
        if self.machines.is_empty() {
            problems.push("there are no Machines".into());
        }
        for (machine, server) in &self.machines {
            if server.as_deref() != Some(target.as_str()) {
                problems.push(format!(
                    "Machine {machine} is on {server:?}, not the target {target}"
                ));
            }
        }
        if self.nodes.is_empty() {
            problems.push("there are no Nodes of Machines".into());
        }
        for node in &self.nodes {
            if !node.in_target {
                problems.push(format!(
                    "Node {}: the target vCenter has no VM with UUID {:?}",
                    node.node, node.vm_uuid
                ));
            } else if !node.in_target_folder {
                problems.push(format!(
                    "Node {}: its VM is not in {}",
                    node.node, self.target_folder
                ));
            } else if !node.tagged {
                problems.push(format!(
                    "Node {}: its VM does not carry the cluster's tag {}",
                    node.node, self.cluster_tag
                ));
            }
        }
        if !self.source_folder_vms.is_empty() {
            problems.push(format!(
                "VMs left in the source folder: {:?}",
                self.source_folder_vms
            ));
        }
        if self.cpms_state.as_deref() != Some("Active") {
            problems.push(format!(
                "the control plane machine set is {:?}, not Active",
                self.cpms_state
            ));
        }
        if self.cpms_failure_domains != [target_failure_domain] {
            problems.push(format!(
                "the control plane machine set's failure domains are {:?}, not [{target_failure_domain}]",
                self.cpms_failure_domains
            ));
        }
        if self.cvo_replicas != Some(1) {
            problems.push(format!(
                "the cluster-version operator has replicas {:?}, not 1",
                self.cvo_replicas
            ));
        }
        problems
    }
}

/// Whether `text` names `server` (not as part of a longer name or address).
pub fn names_server(text: &str, server: &str) -> bool {
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '-';
    text.match_indices(server).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let mut after = text[at + server.len()..].chars();
        let continues = match after.next() {
            Some('.') => after.next().is_some_and(name_char),
            Some(c) => name_char(c),
            None => false,
        };
        !before.is_some_and(|c| name_char(c) || c == '.') && !continues
    })
}

/// `field` of every element of a JSON array.
fn strings(array: &Value, field: &str) -> Vec<String> {
    array
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v[field].as_str().map(str::to_owned))
        .collect()
}

async fn get_dynamic(
    client: &Client,
    group: &str,
    version: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Value, RigError> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let object = api
        .get(name)
        .await
        .map_err(|e| RigError::Kube(format!("read {kind} {name}"), e))?;
    serde_json::to_value(object).map_err(|e| RigError::Invalid(format!("{kind} {name}: {e}")))
}

/// A VM as govc shows it.
#[derive(Debug, Clone)]
struct Vm {
    name: String,
    uuid: String,
    template: bool,
}

/// The VMs directly in `folder` (none when it does not exist).
fn vms_in_folder(vcenter: &VCenterSim, folder: &str) -> Vec<Vm> {
    let Ok(found) = vcenter.govc(&["find", folder, "-type", "m"]) else {
        return Vec::new();
    };
    let paths: Vec<&str> = found
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if paths.is_empty() {
        return Vec::new();
    }
    let mut args = vec!["vm.info", "-json"];
    args.extend(&paths);
    let Ok(info) = vcenter.govc(&args) else {
        return Vec::new();
    };
    parse_vms(&info)
}

fn parse_vms(info: &str) -> Vec<Vm> {
    let info: Value = serde_json::from_str(info).unwrap_or_default();
    info["virtualMachines"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|vm| Vm {
            name: vm["name"].as_str().unwrap_or_default().to_owned(),
            uuid: vm["config"]["uuid"].as_str().unwrap_or_default().to_owned(),
            template: vm["config"]["template"].as_bool().unwrap_or(false),
        })
        .collect()
}

/// Whether `vcenter` has a VM with BIOS UUID `uuid` (`govc vm.info -vm.uuid`).
fn has_vm(vcenter: &VCenterSim, uuid: &str) -> bool {
    vcenter
        .govc(&["vm.info", "-json", "-vm.uuid", uuid])
        .map(|info| !parse_vms(&info).is_empty())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migrated() -> EndState {
        EndState {
            source_server: "127.0.0.10".into(),
            target_server: "127.0.0.11".into(),
            target_folder: "/datacenter-b/vm/ocp".into(),
            cluster_tag: "ocp".into(),
            infrastructure_vcenters: vec!["127.0.0.11".into()],
            failure_domain_servers: vec!["127.0.0.11".into()],
            credential_servers: ["127.0.0.11".to_owned()].into(),
            cloud_config_servers: vec!["127.0.0.11".into()],
            machines: vec![("m".into(), Some("127.0.0.11".into()))],
            nodes: vec![NodeVm {
                node: "m".into(),
                vm_uuid: Some("u".into()),
                in_target: true,
                in_target_folder: true,
                tagged: true,
            }],
            source_folder_vms: vec![],
            cpms_state: Some("Active".into()),
            cpms_failure_domains: vec!["target-1".into()],
            cvo_replicas: Some(1),
        }
    }

    #[test]
    fn a_migrated_cluster_has_no_problems() {
        assert_eq!(migrated().problems("target-1"), Vec::<String>::new());
    }

    #[test]
    fn every_leftover_of_the_source_is_a_problem() {
        let mut state = migrated();
        state.infrastructure_vcenters.insert(0, "127.0.0.10".into());
        state.credential_servers.insert("127.0.0.10".into());
        state.cloud_config_servers = vec!["127.0.0.10".into(), "127.0.0.11".into()];
        state
            .machines
            .push(("old".into(), Some("127.0.0.10".into())));
        state.nodes[0].in_target_folder = false;
        state.source_folder_vms = vec!["old".into()];
        state.cpms_state = Some("Inactive".into());
        state.cvo_replicas = Some(0);
        let problems = state.problems("target-1");
        assert_eq!(problems.len(), 8, "{problems:#?}");
        assert!(problems.iter().any(|p| p.contains("Machine old is on")));
        assert!(
            problems
                .iter()
                .any(|p| p.contains("not in /datacenter-b/vm/ocp"))
        );
    }

    #[test]
    fn an_untagged_vm_is_a_problem() {
        let mut state = migrated();
        state.nodes[0].tagged = false;
        assert_eq!(
            state.problems("target-1"),
            ["Node m: its VM does not carry the cluster's tag ocp"]
        );
    }

    #[test]
    fn a_server_is_named_only_as_a_whole() {
        assert!(names_server("server = 127.0.0.10\n", "127.0.0.10"));
        assert!(names_server("[VirtualCenter \"127.0.0.10\"]", "127.0.0.10"));
        assert!(names_server("vcenter:\n  127.0.0.10:\n", "127.0.0.10"));
        assert!(!names_server("server = 127.0.0.100", "127.0.0.10"));
        assert!(!names_server(
            "server = 127.0.0.10.example.com",
            "127.0.0.10"
        ));
        assert!(!names_server("x127.0.0.10", "127.0.0.10"));
    }
}
