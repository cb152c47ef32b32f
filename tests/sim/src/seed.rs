//! A seeded source cluster, in the API server and in the source vCenter, as a
//! real installer-provisioned OpenShift cluster on vSphere looks: the
//! Infrastructure with one vCenter, the cluster version and its operator,
//! the vSphere credentials and cloud-provider-config, control plane and
//! worker Machines with their VMs and Nodes, a worker MachineSet, an Active
//! control plane machine set, healthy ClusterOperators, and the vSphere
//! components with their release-payload names and labels.
//!
//! The static objects are YAML templates in `tests/sim/seed/`; machines, VMs
//! and Nodes are made here because their number and VM UUIDs vary. The
//! component pods are run by [`ComponentPods`] for as long as the cluster
//! lives, so they are Ready and have logs.

use std::time::Duration;

use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Scope, pinned_kind};
use serde_json::{Value, json};

use crate::SimError;
use crate::component_pods::ComponentPods;
use crate::control_plane::ControlPlane;
use crate::crds::{self, InfrastructureCrd};
use crate::inventory::Inventory;
use crate::vcsim::VCenterSim;

/// The namespaces of the vSphere components (`seed/vsphere-components.yaml`),
/// whose pods [`ComponentPods`] runs in a [`SimCluster`].
pub const COMPONENT_NAMESPACES: [&str; 5] = [
    "openshift-cloud-controller-manager-operator",
    "openshift-cloud-controller-manager",
    "openshift-machine-api",
    "openshift-cluster-csi-drivers",
    "openshift-cluster-storage-operator",
];

/// How long [`SimCluster::start`] waits for the component pods to be Ready.
const COMPONENTS_READY: Duration = Duration::from_secs(60);

/// The failure domains the source Infrastructure starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFailureDomains {
    /// The single `generated-failure-domain` the installer writes when the
    /// install-config had none (region `generated-region`, zone
    /// `generated-zone`, no tags in vSphere).
    Generated,
    /// One explicit failure domain with `openshift-region` / `openshift-zone`
    /// tags on the source datacenter and cluster.
    Explicit,
}

/// The format of `openshift-config/cloud-provider-config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloudConfigFormat {
    /// INI with `[Global]`, `[Workspace]` and `[VirtualCenter "…"]`.
    Ini,
    /// YAML with `global` and `vcenter`.
    Yaml,
}

/// How the simulated source cluster looks.
#[derive(Debug, Clone)]
pub struct SeedOptions {
    /// The infrastructure id (`status.infrastructureName`).
    pub infra_id: String,
    /// The source failure domains.
    pub failure_domains: SourceFailureDomains,
    /// The cloud-provider-config format.
    pub cloud_config: CloudConfigFormat,
    /// Which Infrastructure CRD the cluster runs.
    pub infrastructure_crd: InfrastructureCrd,
    /// Worker machines (the control plane always has three).
    pub workers: u32,
    /// The OpenShift release, e.g. `4.22.3`.
    pub release: String,
}

impl Default for SeedOptions {
    fn default() -> Self {
        SeedOptions {
            infra_id: "ocp-x7k2p".into(),
            failure_domains: SourceFailureDomains::Generated,
            cloud_config: CloudConfigFormat::Ini,
            infrastructure_crd: InfrastructureCrd::Release422Default,
            workers: 2,
            release: "4.22.3".into(),
        }
    }
}

/// A failure domain's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureDomainNames {
    /// Failure domain name.
    pub name: String,
    /// Region (tag on the datacenter).
    pub region: String,
    /// Zone (tag on the cluster).
    pub zone: String,
}

/// The whole simulated cluster: its own control plane, both vCenters, and
/// the seeded source cluster.
pub struct SimCluster {
    /// The control plane (owned: seeded objects are cluster-wide).
    pub plane: ControlPlane,
    /// The source vCenter.
    pub source: VCenterSim,
    /// The target vCenter.
    pub target: VCenterSim,
    /// The source inventory names.
    pub source_inventory: Inventory,
    /// The target inventory names.
    pub target_inventory: Inventory,
    /// The source failure domain.
    pub source_failure_domain: FailureDomainNames,
    /// How the cluster was seeded.
    pub options: SeedOptions,
    /// The stand-in running the pods of [`COMPONENT_NAMESPACES`]: tests make
    /// them log lines, crash-loop or stay not Ready through it.
    pub components: ComponentPods,
}

impl Drop for SimCluster {
    fn drop(&mut self) {
        self.components.stop();
        self.plane.stop();
        crate::children::stop(
            &[self.source.process.pid, self.target.process.pid],
            Duration::from_secs(5),
        );
    }
}

impl SimCluster {
    /// Starts a control plane and two vCenters, seeds the source cluster,
    /// and returns once the component pods are Ready.
    pub async fn start(options: SeedOptions) -> Result<SimCluster, SimError> {
        let plane = tokio::task::spawn_blocking(ControlPlane::start)
            .await
            .map_err(|e| SimError::Setup(format!("the control plane start panicked: {e}")))??;
        // Started first: it binds the component pods as soon as their Nodes
        // exist, while the rest is seeded.
        let components = match ComponentPods::start(&plane, &COMPONENT_NAMESPACES).await {
            Ok(components) => components,
            Err(err) => {
                plane.stop();
                return Err(err);
            }
        };
        let source = VCenterSim::start("source", "administrator", &random_password()?)?;
        let target = VCenterSim::start("target", "migrator", &random_password()?)?;
        let source_inventory = Inventory::source(&options.infra_id);
        let target_inventory = Inventory::target();
        source_inventory.create_in(&source)?;
        target_inventory.create_in(&target)?;
        let source_failure_domain = match options.failure_domains {
            SourceFailureDomains::Generated => FailureDomainNames {
                name: "generated-failure-domain".into(),
                region: "generated-region".into(),
                zone: "generated-zone".into(),
            },
            SourceFailureDomains::Explicit => {
                let names = FailureDomainNames {
                    name: "source-a".into(),
                    region: "region-a".into(),
                    zone: "zone-a".into(),
                };
                tag_region_and_zone(&source, &source_inventory, &names)?;
                names
            }
        };
        let cluster = SimCluster {
            plane,
            source,
            target,
            source_inventory,
            target_inventory,
            source_failure_domain,
            options,
            components,
        };
        let client = cluster.client().await?;
        crds::install_openshift_crds(&client, cluster.options.infrastructure_crd).await?;
        crds::install_vmi_crd(&client).await?;
        cluster.seed(&client).await?;
        cluster
            .components
            .wait_ready(&client, COMPONENTS_READY)
            .await?;
        Ok(cluster)
    }

    /// A new admin client for this cluster.
    pub async fn client(&self) -> Result<Client, SimError> {
        self.plane.client().await
    }

    /// The template variables of `tests/sim/seed/*.yaml`.
    fn variables(&self) -> Vec<(&'static str, String)> {
        let (inv, fd, o) = (
            &self.source_inventory,
            &self.source_failure_domain,
            &self.options,
        );
        let release_minor = o.release.split('.').take(2).collect::<Vec<_>>().join(".");
        vec![
            ("server", self.source.server.clone()),
            ("port", self.source.port.to_string()),
            ("username", self.source.username.clone()),
            ("password", self.source.password.clone()),
            ("infra_id", o.infra_id.clone()),
            ("datacenter", inv.datacenter.clone()),
            ("datacenter_name", inv.datacenter.clone()),
            ("datastore", inv.datastore_path()),
            ("datastore_name", inv.datastore.clone()),
            ("compute_cluster", inv.cluster_path()),
            ("resource_pool", inv.resource_pool_path()),
            ("folder", inv.folder_path()),
            ("template", inv.template_path()),
            ("port_group", inv.port_group.clone()),
            ("fd_name", fd.name.clone()),
            ("fd_region", fd.region.clone()),
            ("fd_zone", fd.zone.clone()),
            ("release", o.release.clone()),
            ("release_minor", release_minor),
            ("cluster_id", "5a4c1a0e-6f0e-4a43-9d43-3f1a9a1b2c3d".into()),
        ]
    }

    async fn seed(&self, client: &Client) -> Result<(), SimError> {
        let vars = self.variables();
        let cloud_config = match self.options.cloud_config {
            CloudConfigFormat::Ini => include_str!("../seed/cloud-provider-config-ini.yaml"),
            CloudConfigFormat::Yaml => include_str!("../seed/cloud-provider-config-yaml.yaml"),
        };
        for (name, template) in [
            ("namespaces.yaml", include_str!("../seed/namespaces.yaml")),
            (
                "infrastructure.yaml",
                include_str!("../seed/infrastructure.yaml"),
            ),
            (
                "cluster-version.yaml",
                include_str!("../seed/cluster-version.yaml"),
            ),
            ("credentials.yaml", include_str!("../seed/credentials.yaml")),
            ("cloud-provider-config.yaml", cloud_config),
            (
                "cluster-operators.yaml",
                include_str!("../seed/cluster-operators.yaml"),
            ),
            (
                "vsphere-components.yaml",
                include_str!("../seed/vsphere-components.yaml"),
            ),
        ] {
            for document in documents(&render(name, template, &vars)?) {
                let object: Value = serde_saphyr::from_str(document)
                    .map_err(|e| SimError::Setup(format!("seed/{name}: not YAML: {e}")))?;
                if !object.is_null() {
                    create(client, &object)
                        .await
                        .map_err(|e| SimError::Setup(format!("seed/{name}: {e}")))?;
                }
            }
        }
        self.seed_machines(client).await
    }

    /// VMs in the source vCenter, and the Machines, Nodes, worker MachineSet
    /// and control plane machine set that describe them.
    async fn seed_machines(&self, client: &Client) -> Result<(), SimError> {
        let infra_id = &self.options.infra_id;
        let machine_set = format!("{infra_id}-worker-0");
        let mut machines: Vec<(String, &str)> = (0..3)
            .map(|i| (format!("{infra_id}-master-{i}"), "master"))
            .collect();
        machines.extend(
            (0..self.options.workers)
                .map(|i| (format!("{machine_set}-{}", worker_suffix(i)), "worker")),
        );
        let inv = &self.source_inventory;
        let clones: Vec<Vec<String>> = machines
            .iter()
            .map(|(name, _)| {
                [
                    "vm.clone",
                    "-vm",
                    &inv.template_path(),
                    "-ds",
                    &inv.datastore,
                    "-pool",
                    &inv.resource_pool_path(),
                    "-folder",
                    &inv.folder_path(),
                    "-on=true",
                    name,
                ]
                .map(str::to_owned)
                .to_vec()
            })
            .collect();
        govc_in_parallel(&self.source, &clones)?;
        let uuids = vm_uuids(&self.source, &format!("{}/*", inv.folder_path()))?;
        let vm_paths: Vec<String> = machines
            .iter()
            .map(|(name, _)| format!("{}/{name}", inv.folder_path()))
            .collect();
        tag_cluster_id(&self.source, infra_id, &vm_paths)?;

        let set = create(client, &self.machine_set(&machine_set)).await?;
        let set_uid = set.metadata.uid.clone().unwrap_or_default();
        for (i, (name, role)) in machines.iter().enumerate() {
            let uuid = uuids
                .iter()
                .find(|(vm, _)| vm == name)
                .map(|(_, uuid)| uuid.clone())
                .ok_or_else(|| SimError::Setup(format!("the source vCenter has no VM {name}")))?;
            let owner = (*role == "worker").then_some((machine_set.as_str(), set_uid.as_str()));
            create(client, &self.machine(name, role, &uuid, i, owner)).await?;
            create(client, &self.node(name, role, &uuid)).await?;
        }
        create(client, &self.control_plane_machine_set()).await?;
        Ok(())
    }

    fn provider_spec(&self, role: &str) -> Value {
        let inv = &self.source_inventory;
        json!({
            "apiVersion": "machine.openshift.io/v1beta1",
            "kind": "VSphereMachineProviderSpec",
            "credentialsSecret": {"name": "vsphere-cloud-credentials"},
            "userDataSecret": {"name": format!("{role}-user-data")},
            "template": inv.template,
            "workspace": {
                "server": self.source.server,
                "datacenter": inv.datacenter,
                "folder": inv.folder_path(),
                "datastore": inv.datastore_path(),
                "resourcePool": inv.resource_pool_path(),
            },
            "network": {"devices": [{"networkName": inv.port_group}]},
            "numCPUs": 4,
            "numCoresPerSocket": 4,
            "memoryMiB": 16384,
            "diskGiB": 120,
            "metadata": {"creationTimestamp": null},
        })
    }

    fn machine_labels(&self, role: &str) -> Value {
        json!({
            "machine.openshift.io/cluster-api-cluster": self.options.infra_id,
            "machine.openshift.io/cluster-api-machine-role": role,
            "machine.openshift.io/cluster-api-machine-type": role,
        })
    }

    fn machine_set(&self, name: &str) -> Value {
        let infra_id = &self.options.infra_id;
        let mut template_labels = self.machine_labels("worker");
        template_labels["machine.openshift.io/cluster-api-machineset"] = name.into();
        let workers = self.options.workers;
        json!({
            "apiVersion": "machine.openshift.io/v1beta1",
            "kind": "MachineSet",
            "metadata": {"name": name, "namespace": "openshift-machine-api",
                "labels": {"machine.openshift.io/cluster-api-cluster": infra_id}},
            "spec": {
                "replicas": workers,
                "selector": {"matchLabels": {"machine.openshift.io/cluster-api-cluster": infra_id,
                    "machine.openshift.io/cluster-api-machineset": name}},
                "template": {"metadata": {"labels": template_labels},
                    "spec": {"lifecycleHooks": {}, "metadata": {}, "providerSpec": {"value": self.provider_spec("worker")}}},
            },
            "status": {"replicas": workers, "readyReplicas": workers, "availableReplicas": workers,
                "fullyLabeledReplicas": workers, "observedGeneration": 1},
        })
    }

    fn machine(
        &self,
        name: &str,
        role: &str,
        uuid: &str,
        index: usize,
        owner: Option<(&str, &str)>,
    ) -> Value {
        let mut labels = self.machine_labels(role);
        let mut metadata = json!({"name": name, "namespace": "openshift-machine-api"});
        if let Some((set, uid)) = owner {
            labels["machine.openshift.io/cluster-api-machineset"] = set.into();
            metadata["ownerReferences"] = json!([{"apiVersion": "machine.openshift.io/v1beta1", "kind": "MachineSet",
                "name": set, "uid": uid, "controller": true, "blockOwnerDeletion": true}]);
        }
        metadata["labels"] = labels;
        metadata["annotations"] = json!({"machine.openshift.io/instance-state": "poweredOn"});
        let mut spec = json!({"metadata": {}, "providerID": format!("vsphere://{uuid}"),
            "providerSpec": {"value": self.provider_spec(role)}});
        if role == "master" {
            spec["lifecycleHooks"] = json!({"preDrain": [{"name": "EtcdQuorumOperator", "owner": "clusteroperator/etcd"}]});
        }
        json!({
            "apiVersion": "machine.openshift.io/v1beta1",
            "kind": "Machine",
            "metadata": metadata,
            "spec": spec,
            "status": {
                "phase": "Running",
                "nodeRef": {"kind": "Node", "name": name},
                "providerStatus": {"instanceId": uuid, "instanceState": "poweredOn"},
                "addresses": [{"type": "InternalIP", "address": machine_ip(index)}, {"type": "InternalDNS", "address": name}],
                "lastUpdated": "2026-10-01T11:00:00Z",
            },
        })
    }

    fn node(&self, name: &str, role: &str, uuid: &str) -> Value {
        machine_node(
            self.plane.kubelet_api().node_status(name),
            &MachineNode {
                name,
                role,
                provider_id: &format!("vsphere://{uuid}"),
                cpus: 4,
                memory_mib: 16384,
                topology: None,
                ready_since: "2026-10-01T11:00:00Z",
            },
        )
    }

    fn control_plane_machine_set(&self) -> Value {
        let mut provider_spec = self.provider_spec("master");
        // What the CPMS generator leaves when the Infrastructure has failure
        // domains: the topology comes from the failure domain.
        if let Some(spec) = provider_spec.as_object_mut() {
            spec.remove("workspace");
            spec.remove("template");
            spec["network"] = json!({"devices": []});
        }
        json!({
            "apiVersion": "machine.openshift.io/v1",
            "kind": "ControlPlaneMachineSet",
            "metadata": {"name": "cluster", "namespace": "openshift-machine-api"},
            "spec": {
                "state": "Active",
                "replicas": 3,
                "strategy": {"type": "RollingUpdate"},
                "selector": {"matchLabels": self.machine_labels("master")},
                "template": {
                    "machineType": "machines_v1beta1_machine_openshift_io",
                    "machines_v1beta1_machine_openshift_io": {
                        "failureDomains": {"platform": "VSphere", "vsphere": [{"name": self.source_failure_domain.name}]},
                        "metadata": {"labels": self.machine_labels("master")},
                        "spec": {"providerSpec": {"value": provider_spec}},
                    },
                },
            },
            "status": {"replicas": 3, "readyReplicas": 3, "updatedReplicas": 3, "unavailableReplicas": 0,
                "observedGeneration": 1},
        })
    }
}

/// The facts a Machine's Node is made from.
#[derive(Debug, Clone, Copy)]
pub struct MachineNode<'a> {
    /// Node (and Machine) name.
    pub name: &'a str,
    /// `master` or `worker`: the `node-role.kubernetes.io/<role>` label.
    pub role: &'a str,
    /// `vsphere://<VM BIOS UUID>`.
    pub provider_id: &'a str,
    /// The VM's CPUs, for the instance type label.
    pub cpus: u64,
    /// The VM's memory in MiB, for the instance type label.
    pub memory_mib: u64,
    /// Region and zone, when known: the `topology.kubernetes.io/*` labels.
    pub topology: Option<(&'a str, &'a str)>,
    /// When it became Ready (RFC 3339).
    pub ready_since: &'a str,
}

/// A Ready Node of a Machine as the kubelet and the vSphere cloud
/// controller manager leave it: hostname, OS, role and instance type labels
/// (topology labels when known), the machine annotation, the provider ID,
/// and `status` (the kubelet API's addresses and endpoint, see
/// [`crate::kubelet_api::node_status`]) with a Ready condition.
pub fn machine_node(mut status: Value, node: &MachineNode<'_>) -> Value {
    let name = node.name;
    status["conditions"] = json!([{"type": "Ready", "status": "True", "reason": "KubeletReady",
        "message": "kubelet is posting ready status", "lastHeartbeatTime": node.ready_since,
        "lastTransitionTime": node.ready_since}]);
    let mut labels = json!({"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
        format!("node-role.kubernetes.io/{}", node.role): "",
        "node.kubernetes.io/instance-type": format!("vsphere-vm.cpu-{}.mem-{}gb.os-unknown",
            node.cpus, node.memory_mib / 1024)});
    if let Some((region, zone)) = node.topology {
        labels["topology.kubernetes.io/region"] = region.into();
        labels["topology.kubernetes.io/zone"] = zone.into();
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels,
            "annotations": {"machine.openshift.io/machine": format!("openshift-machine-api/{name}")}},
        "spec": {"providerID": node.provider_id},
        // The kubelet API of the control plane answers for every Node:
        // its address (not the Machine's) and port, so pods/log works.
        "status": status,
    })
}

/// Creates the installer's cluster-id tag in `vcenter` (category
/// `openshift-<infra_id>`, cardinality SINGLE, for VMs; tag `<infra_id>`)
/// and attaches it to the VMs at `vm_paths`, a few at a time.
fn tag_cluster_id(
    vcenter: &VCenterSim,
    infra_id: &str,
    vm_paths: &[String],
) -> Result<(), SimError> {
    let category = format!("openshift-{infra_id}");
    vcenter.govc(&[
        "tags.category.create",
        "-d",
        "Added by openshift-install do not remove",
        "-t",
        "VirtualMachine",
        &category,
    ])?;
    vcenter.govc(&["tags.create", "-c", &category, infra_id])?;
    // tags.attach takes one object: one govc per VM, in parallel.
    let attachments: Vec<Vec<String>> = vm_paths
        .iter()
        .map(|path| {
            ["tags.attach", "-c", &category, infra_id, path]
                .map(str::to_owned)
                .to_vec()
        })
        .collect();
    govc_in_parallel(vcenter, &attachments)
}

/// Runs each of `commands` (govc arguments) against `vcenter`, all at once.
fn govc_in_parallel(vcenter: &VCenterSim, commands: &[Vec<String>]) -> Result<(), SimError> {
    std::thread::scope(|scope| {
        let running: Vec<_> = commands
            .iter()
            .map(|args| {
                scope.spawn(move || {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    vcenter.govc(&args)
                })
            })
            .collect();
        running.into_iter().try_for_each(|command| {
            command
                .join()
                .map_err(|_| SimError::Setup("a govc thread panicked".into()))?
                .map(|_| ())
        })
    })
}

/// Attaches `openshift-region` / `openshift-zone` tags to the datacenter and
/// cluster, as an administrator does for explicit failure domains (creating
/// the two categories and the two tags in `vcenter`).
pub fn tag_region_and_zone(
    vcenter: &VCenterSim,
    inv: &Inventory,
    fd: &FailureDomainNames,
) -> Result<(), SimError> {
    vcenter.govc(&[
        "tags.category.create",
        "-t",
        "Datacenter",
        "openshift-region",
    ])?;
    vcenter.govc(&[
        "tags.category.create",
        "-t",
        "ClusterComputeResource",
        "openshift-zone",
    ])?;
    vcenter.govc(&["tags.create", "-c", "openshift-region", &fd.region])?;
    vcenter.govc(&["tags.create", "-c", "openshift-zone", &fd.zone])?;
    vcenter.govc(&[
        "tags.attach",
        "-c",
        "openshift-region",
        &fd.region,
        &format!("/{}", inv.datacenter),
    ])?;
    vcenter.govc(&[
        "tags.attach",
        "-c",
        "openshift-zone",
        &fd.zone,
        &inv.cluster_path(),
    ])?;
    Ok(())
}

/// (VM name, BIOS UUID) of the VMs matching an inventory path glob.
fn vm_uuids(vcenter: &VCenterSim, glob: &str) -> Result<Vec<(String, String)>, SimError> {
    let info: Value = serde_json::from_str(&vcenter.govc(&["vm.info", "-json", glob])?)
        .map_err(|e| SimError::Setup(format!("govc vm.info: {e}")))?;
    Ok(info["virtualMachines"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|vm| {
            Some((
                vm["name"].as_str()?.to_owned(),
                vm["config"]["uuid"].as_str()?.to_owned(),
            ))
        })
        .collect())
}

/// A five-character machine name suffix like the machine API's (`x7k2p`).
fn worker_suffix(index: u32) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = index as usize * 7919 + 104_729;
    (0..5)
        .map(|_| {
            let c = ALPHABET[n % ALPHABET.len()] as char;
            n /= ALPHABET.len();
            n += 31;
            c
        })
        .collect()
}

/// A documentation-range address (TEST-NET-1) for machine `index`.
fn machine_ip(index: usize) -> String {
    format!("192.0.2.{}", 20 + index)
}

/// A random password (hex of 16 bytes).
fn random_password() -> Result<String, SimError> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| SimError::Setup("no randomness for a password".into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `template` with every `{{name}}` replaced; a name without a value is an error.
pub fn render(file: &str, template: &str, vars: &[(&str, String)]) -> Result<String, SimError> {
    let mut text = template.to_owned();
    for (name, value) in vars {
        text = text.replace(&format!("{{{{{name}}}}}"), value);
    }
    match text.find("{{") {
        Some(at) => Err(SimError::Setup(format!(
            "seed/{file}: no value for {}",
            text[at..].split("}}").next().unwrap_or_default()
        ))),
        None => Ok(text),
    }
}

/// The documents of a multi-document YAML text.
fn documents(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (offset, line) in line_offsets(text) {
        if line.trim_end() == "---" {
            out.push(&text[start..offset]);
            start = offset + line.len();
        }
    }
    out.push(&text[start..]);
    out
}

fn line_offsets(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split_inclusive('\n').scan(0, |offset, line| {
        let at = *offset;
        *offset += line.len();
        Some((at, line))
    })
}

/// Creates `object` (any kind the API server serves) and then, when it
/// carries a `status`, writes the status through its subresource.
pub async fn create(client: &Client, object: &Value) -> Result<DynamicObject, SimError> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, capabilities) = pinned_kind(client, &gvk)
        .await
        .map_err(|e| SimError::Kube(format!("discover {api_version} {kind}"), e))?;
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default"),
            &resource,
        ),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    let dynamic: DynamicObject = serde_json::from_value(object.clone())
        .map_err(|e| SimError::Setup(format!("{kind} {name}: {e}")))?;
    let created = api
        .create(&PostParams::default(), &dynamic)
        .await
        .map_err(|e| SimError::Kube(format!("create {kind} {name}"), e))?;
    if let Some(status) = object.get("status") {
        // A JSON patch, not a merge patch: in a merge patch `null` deletes, and
        // some statuses require fields whose value is null.
        let patch: json_patch::Patch =
            serde_json::from_value(json!([{"op": "add", "path": "/status", "value": status}]))
                .map_err(|e| SimError::Setup(format!("{kind} {name}: {e}")))?;
        api.patch_status(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
            .map_err(|e| SimError::Kube(format!("write the status of {kind} {name}"), e))?;
    }
    Ok(created)
}
