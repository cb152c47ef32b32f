//! Step 11 create-machinesets: new worker MachineSets in the target failure
//! domains, built from a worker MachineSet of the source, and a wait until
//! their Machines run and their Nodes are Ready.
//!
//! Each new MachineSet is the source one with the provider spec's
//! `workspace`, template and networks rewritten for its failure domain (as
//! the control plane machine set injects a failure domain, research §5),
//! the source-only `tagIDs` dropped, and labels and names as the installer
//! makes them (`<infraID>-<role>-<failure domain>`, research §4.4). Which
//! MachineSets the step created is recorded before each is created; one it
//! did not create is never changed. The wait stops when nothing moves for
//! the stall time, naming the Machine and its phase. The undo scales the
//! created MachineSets to 0 and deletes them.

use std::collections::BTreeSet;
use std::time::Duration;

use kube::api::{DynamicObject, PostParams};
use serde_json::{Value, json};
use vmi_api::VSphereMigrationInfraSpec;
use vmi_api::topology::FailureDomain;

use crate::backup::Backups;
use crate::context::{Outcome, StepContext, StepError};
use crate::machines::{self, NAMESPACE, ROLE_LABEL, Stall};
use crate::vcenters::{infrastructure_id, source_server};

/// The backup key listing the MachineSets the step created.
pub const CREATED_BACKUP: &str = "11-create-machinesets.created";
/// The annotation naming the vmi (`namespace/name`) that created a MachineSet.
pub const CREATED_BY: &str = "vmi.config.openshift.io/created-by";
/// The MachineSet label every Machine of a set carries.
pub const MACHINESET_LABEL: &str = "machine.openshift.io/cluster-api-machineset";
/// The label naming the cluster (the infrastructure id).
pub const CLUSTER_LABEL: &str = "machine.openshift.io/cluster-api-cluster";
/// Labels of the source's region and zone, which a target Machine must not carry.
const TOPOLOGY_LABELS: [&str; 2] = ["machine.openshift.io/region", "machine.openshift.io/zone"];
/// How often the wait looks again.
const POLL: Duration = Duration::from_secs(2);

/// Worker replicas per target failure domain: those of
/// `spec.workers.failureDomains` when given (failure domains not listed get
/// none), else the source's `source_workers` spread evenly, the first
/// failure domains taking the remainder.
pub fn placements(spec: &VSphereMigrationInfraSpec, source_workers: i32) -> Vec<(String, i32)> {
    let domains = &spec.failure_domains;
    match spec
        .workers
        .as_ref()
        .and_then(|w| w.failure_domains.as_ref())
    {
        Some(list) => domains
            .iter()
            .map(|d| {
                let replicas = list
                    .iter()
                    .find(|p| p.name == d.name)
                    .map_or(0, |p| p.replicas);
                (d.name.clone(), replicas)
            })
            .collect(),
        None => {
            let count = i32::try_from(domains.len().max(1)).unwrap_or(i32::MAX);
            domains
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let extra =
                        i32::from(i32::try_from(i).unwrap_or(i32::MAX) < source_workers % count);
                    (d.name.clone(), source_workers / count + extra)
                })
                .collect()
        }
    }
}

/// The name of the MachineSet of `role` in `domain`, following the
/// installer (`<infraID>-<role>-<index>` there; the failure domain name
/// here, which is unique and says where the set is).
pub fn machine_set_name(infra_id: &str, role: &str, domain: &str) -> String {
    format!("{infra_id}-{role}-{domain}")
}

/// The template a failure domain's machines clone: `topology.template`, or
/// the name the installer gives it (`<infraID>-rhcos-<region>-<zone>`).
pub fn template(infra_id: &str, domain: &FailureDomain) -> String {
    domain
        .topology
        .template
        .clone()
        .unwrap_or_else(|| format!("{infra_id}-rhcos-{}-{}", domain.region, domain.zone))
}

/// The base provider spec with the failure domain injected.
fn provider_spec(
    base: &Value,
    infra_id: &str,
    domain: &FailureDomain,
    size: Option<&vmi_api::migration::MachineSize>,
) -> Value {
    let topology = &domain.topology;
    let mut spec = base.clone();
    spec["workspace"] = json!({
        "server": domain.server,
        "datacenter": topology.datacenter,
        "datastore": topology.datastore,
        "folder": topology.folder.clone()
            .unwrap_or_else(|| format!("/{}/vm/{infra_id}", topology.datacenter)),
        "resourcePool": topology.resource_pool.clone()
            .unwrap_or_else(|| format!("{}/Resources", topology.compute_cluster.trim_end_matches('/'))),
    });
    spec["template"] = json!(template(infra_id, domain));
    let old_devices = base["network"]["devices"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let devices: Vec<Value> = topology
        .networks
        .iter()
        .enumerate()
        .map(|(i, network)| {
            let mut device = json!({"networkName": network});
            // Pools and name servers carry over; static addresses and
            // gateways belong to the source network.
            for key in ["addressesFromPools", "nameservers"] {
                if let Some(value) = old_devices.get(i).and_then(|d| d.get(key)) {
                    device[key] = value.clone();
                }
            }
            device
        })
        .collect();
    spec["network"] = json!({"devices": devices});
    if let Some(map) = spec.as_object_mut() {
        // Tag ids name tags of the source vCenter.
        map.remove("tagIDs");
    }
    if let Some(size) = size {
        if let Some(cpus) = size.num_cpus {
            spec["numCPUs"] = json!(cpus);
        }
        if let Some(cores) = size.num_cores_per_socket {
            spec["numCoresPerSocket"] = json!(cores);
        }
        if let Some(memory) = size.memory_mib {
            spec["memoryMiB"] = json!(memory);
        }
        if let Some(disk) = size.disk_gib {
            spec["diskGiB"] = json!(disk);
        }
    }
    spec
}

/// Everything a new MachineSet needs.
pub struct Design<'a> {
    /// The source MachineSet it is built from.
    pub base: &'a DynamicObject,
    /// The cluster's infrastructure id.
    pub infra_id: &'a str,
    /// The target failure domain.
    pub domain: &'a FailureDomain,
    /// Its replicas.
    pub replicas: i32,
    /// Size overrides.
    pub size: Option<&'a vmi_api::migration::MachineSize>,
    /// `namespace/name` of the vmi, recorded on the object.
    pub created_by: &'a str,
}

/// The MachineSet for one target failure domain.
pub fn build(design: &Design) -> Result<Value, StepError> {
    let base = design.base;
    let role = machines::role(base).unwrap_or("worker");
    let name = machine_set_name(design.infra_id, role, &design.domain.name);
    if name.len() > 63 {
        return Err(StepError::Refused(format!(
            "the MachineSet for failure domain {} would be named {name} ({} characters); a MachineSet name is a label value of at most 63; use a shorter failure domain name; nothing was changed",
            design.domain.name,
            name.len()
        )));
    }
    let mut set_labels = base.metadata.labels.clone().unwrap_or_default();
    set_labels.insert(CLUSTER_LABEL.into(), design.infra_id.into());
    let template = &base.data["spec"]["template"];
    let mut template_labels = template["metadata"]["labels"].clone();
    if !template_labels.is_object() {
        template_labels = json!({});
    }
    template_labels[MACHINESET_LABEL] = json!(name);
    template_labels[CLUSTER_LABEL] = json!(design.infra_id);
    template_labels[ROLE_LABEL] = json!(role);
    if let Some(map) = template_labels.as_object_mut() {
        for label in TOPOLOGY_LABELS {
            map.remove(label);
        }
    }
    let mut machine_spec = template["spec"].clone();
    machine_spec["providerSpec"] = json!({"value": provider_spec(
        machines::provider_spec(base),
        design.infra_id,
        design.domain,
        design.size,
    )});
    let mut spec = json!({
        "replicas": design.replicas,
        "selector": {"matchLabels": {CLUSTER_LABEL: design.infra_id, MACHINESET_LABEL: name}},
        "template": {"metadata": {"labels": template_labels}, "spec": machine_spec},
    });
    for key in ["deletePolicy", "minReadySeconds"] {
        if let Some(value) = base.data["spec"].get(key) {
            spec[key] = value.clone();
        }
    }
    Ok(json!({
        "apiVersion": "machine.openshift.io/v1beta1",
        "kind": "MachineSet",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": set_labels,
            "annotations": {CREATED_BY: design.created_by}},
        "spec": spec,
    }))
}

/// The worker MachineSets of the source vCenter (every role but the control
/// plane), sorted by name.
pub async fn source_sets(
    context: &StepContext,
    source: &str,
) -> Result<Vec<DynamicObject>, StepError> {
    Ok(machines::list_machine_sets(context)
        .await?
        .into_iter()
        .filter(|s| machines::server(s) == Some(source) && machines::role(s) != Some("master"))
        .collect())
}

/// The MachineSets recorded as created by this step.
pub async fn created(backups: &Backups) -> Result<Vec<String>, StepError> {
    match backups.load(CREATED_BACKUP).await? {
        Some(text) => serde_json::from_str(&text).map_err(|e| {
            StepError::Refused(format!(
                "the backup {} is not readable ({e}); check the MachineSets in {NAMESPACE} by hand",
                backups.describe(CREATED_BACKUP)
            ))
        }),
        None => Ok(Vec::new()),
    }
}

fn replicas(set: &Value) -> i64 {
    set["spec"]["replicas"].as_i64().unwrap_or(0)
}

/// The sets the step wants, as (name, object), from the source.
async fn designs(context: &StepContext) -> Result<Vec<(String, Value)>, StepError> {
    let source = source_server(context).await?;
    let infra_id = infrastructure_id(context).await?;
    let sets = source_sets(context, &source).await?;
    let base = sets
        .iter()
        .find(|s| machines::role(s) == Some("worker"))
        .or_else(|| sets.first())
        .ok_or_else(|| {
            StepError::Refused(format!(
                "there is no worker MachineSet on the source vCenter {source} to build the target MachineSets from; create the target MachineSets by hand, or create a worker MachineSet on the source first; nothing was changed"
            ))
        })?;
    let workers: i64 = sets
        .iter()
        .filter(|s| machines::role(s) == Some("worker"))
        .map(|s| replicas(&s.data))
        .sum();
    let spec = &context.vmi.spec;
    let created_by = context.vmi_ref.to_string();
    let size = spec.workers.as_ref().and_then(|w| w.machine_size.as_ref());
    let mut out = Vec::new();
    for (domain_name, count) in placements(spec, i32::try_from(workers).unwrap_or(i32::MAX)) {
        let Some(domain) = spec.failure_domains.iter().find(|d| d.name == domain_name) else {
            continue;
        };
        if count == 0 {
            continue;
        }
        let object = build(&Design {
            base,
            infra_id: &infra_id,
            domain,
            replicas: count,
            size,
            created_by: &created_by,
        })?;
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        out.push((name, object));
    }
    Ok(out)
}

/// Runs the step.
pub async fn run(context: &StepContext) -> Result<Outcome, StepError> {
    let wanted = designs(context).await?;
    if wanted.is_empty() {
        return Ok(Outcome::skipped(
            "no worker goes to the target: spec.workers gives every target failure domain 0 replicas and the source has no workers",
        ));
    }
    let api = machines::machine_sets(context);
    let owner = context.vmi_ref.to_string();
    // Every existing set is checked before any is created.
    let mut missing = Vec::new();
    for (name, object) in &wanted {
        match api.get_opt(name).await.map_err(StepError::kube(format!(
            "read MachineSet {NAMESPACE}/{name}"
        )))? {
            Some(existing) => {
                let by = existing
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(CREATED_BY));
                if by != Some(&owner) {
                    return Err(StepError::Refused(format!(
                        "MachineSet {NAMESPACE}/{name} already exists and was not created by vmi {owner}; rename the failure domain in the vmi or delete that MachineSet, then retry; nothing was changed"
                    )));
                }
                if machines::server(&existing) != object["spec"]["template"]["spec"]["providerSpec"]["value"]["workspace"]["server"].as_str() {
                    return Err(StepError::Refused(format!(
                        "MachineSet {NAMESPACE}/{name} was created by this migration but now points at another vCenter; fix or delete it, then retry"
                    )));
                }
            }
            None => missing.push((name, object)),
        }
    }
    let backups = Backups::of(context);
    let mut recorded = created(&backups).await?;
    let mut outcome = Outcome::default();
    for (name, object) in missing {
        if !recorded.contains(name) {
            recorded.push(name.clone());
            let text = serde_json::to_string(&recorded)
                .map_err(|e| StepError::Refused(format!("internal: {e}")))?;
            backups.save_replacing(CREATED_BACKUP, &text).await?;
        }
        let set: DynamicObject = serde_json::from_value(object.clone())
            .map_err(|e| StepError::Refused(format!("internal: MachineSet {name}: {e}")))?;
        match api.create(&PostParams::default(), &set).await {
            Ok(_) => {}
            // Created meanwhile (by an earlier attempt of this step): the
            // next run checks it is ours.
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(kube::Error::Api(s)) if s.code == 422 || s.code == 400 || s.code == 403 => {
                return Err(StepError::Refused(format!(
                    "the API server refused MachineSet {NAMESPACE}/{name}: {}; fix what it names, then retry",
                    s.message
                )));
            }
            Err(e) => {
                return Err(StepError::Kube {
                    action: format!("create MachineSet {NAMESPACE}/{name}"),
                    source: e,
                });
            }
        }
        outcome.changes.push(format!(
            "MachineSet {NAMESPACE}/{name}: created with {} replica(s) on vCenter {}",
            replicas(object),
            object["spec"]["template"]["spec"]["providerSpec"]["value"]["workspace"]["server"]
                .as_str()
                .unwrap_or_default()
        ));
    }
    if !recorded.is_empty() {
        outcome.backups.push(backups.describe(CREATED_BACKUP));
    }
    let sets: Vec<(String, i64, String)> = wanted
        .iter()
        .map(|(name, o)| {
            (
                name.clone(),
                replicas(o),
                o["spec"]["template"]["spec"]["providerSpec"]["value"]["workspace"]["server"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    let running = wait_for_machines(context, &sets).await?;
    outcome.result = format!(
        "{} worker Machine(s) run on the target with Ready Nodes, in {} MachineSet(s) ({}){}",
        running,
        sets.len(),
        sets.iter()
            .map(|(n, _, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        if outcome.changes.is_empty() {
            "; nothing changed"
        } else {
            ""
        }
    );
    Ok(outcome)
}

/// Waits until every set has its replicas, each Machine Running on the
/// set's vCenter with a Ready Node; returns how many run.
async fn wait_for_machines(
    context: &StepContext,
    sets: &[(String, i64, String)],
) -> Result<usize, StepError> {
    let total: i64 = sets.iter().map(|(_, r, _)| r).sum();
    let total = usize::try_from(total).unwrap_or(0);
    let mut stall = Stall::new(machines::stall_limit(context));
    loop {
        let all = machines::list_machines(context).await?;
        let ready = machines::ready_nodes(context).await?;
        let mut done = 0;
        let mut waiting = Vec::new();
        let mut observed = Vec::new();
        for (set, want, server) in sets {
            let members: Vec<&DynamicObject> = all
                .iter()
                .filter(|m| {
                    m.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(MACHINESET_LABEL))
                        == Some(set)
                        && !machines::deleting(m)
                })
                .collect();
            for machine in &members {
                if machines::phase(machine) == "Failed" {
                    return Err(StepError::Unverified(format!(
                        "{}; fix the cause (credentials, template, folder, network on vCenter {server}), delete that Machine so the MachineSet makes a new one, then retry this step",
                        machines::describe(machine)
                    )));
                }
                if machines::server(machine) != Some(server.as_str()) {
                    return Err(StepError::Unverified(format!(
                        "Machine {NAMESPACE}/{} of MachineSet {set} is on vCenter {}, not {server}; check the MachineSet's provider spec",
                        machines::name(machine),
                        machines::server(machine).unwrap_or("unknown")
                    )));
                }
                let ok = machines::running_and_ready(machine, &ready);
                observed.push(format!(
                    "{}={}:{ok}",
                    machines::name(machine),
                    machines::phase(machine)
                ));
                if ok {
                    done += 1;
                } else {
                    waiting.push(machines::describe(machine));
                }
            }
            let count = i64::try_from(members.len()).unwrap_or(i64::MAX);
            if count < *want {
                waiting.push(format!(
                    "MachineSet {NAMESPACE}/{set} has {count} of {want} Machines"
                ));
            }
        }
        machines::set_progress(context, "workers", done, total).await;
        if waiting.is_empty() && done == total {
            return Ok(done);
        }
        if let Some(still) = stall.observe(observed.join(",")) {
            return Err(StepError::Unverified(format!(
                "no progress for {} s: {}; read `oc -n {NAMESPACE} describe machine <name>` and the machine-api-controllers logs, fix the cause, then retry this step (or set the annotation {} on the vmi to wait longer)",
                still.as_secs(),
                waiting.join("; "),
                machines::STALL_ANNOTATION
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Scales MachineSets to 0, waits until their Machines and those Machines'
/// Nodes are gone, then deletes the sets (each only if it still has the
/// uid it was read with). Returns one line per change.
pub async fn drain_and_delete(
    context: &StepContext,
    sets: &[DynamicObject],
) -> Result<Vec<String>, StepError> {
    use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
    let api = machines::machine_sets(context);
    let mut changes = Vec::new();
    for set in sets {
        let name = machines::name(set);
        if replicas(&set.data) != 0 {
            api.patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 0}})),
            )
            .await
            .map_err(StepError::kube(format!(
                "scale MachineSet {NAMESPACE}/{name} to 0"
            )))?;
            changes.push(format!(
                "MachineSet {NAMESPACE}/{name}: replicas {} → 0",
                replicas(&set.data)
            ));
        }
    }
    let names: BTreeSet<&str> = sets.iter().map(machines::name).collect();
    let mut stall = Stall::new(machines::stall_limit(context));
    loop {
        let all = machines::list_machines(context).await?;
        let nodes = machines::node_names(context).await?;
        let left: Vec<&DynamicObject> = all
            .iter()
            .filter(|m| {
                m.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(MACHINESET_LABEL))
                    .is_some_and(|s| names.contains(s.as_str()))
            })
            .collect();
        // A Machine's Node goes with it; a Node left by a gone Machine is
        // recognised by its name (Node names are Machine names,
        // `<set>-<suffix>`).
        let orphans: Vec<String> = nodes
            .iter()
            .filter(|n| {
                names.iter().any(|set| n.starts_with(&format!("{set}-")))
                    && !all
                        .iter()
                        .any(|m| machines::node_name(m) == Some(n.as_str()))
            })
            .cloned()
            .collect();
        if left.is_empty() && orphans.is_empty() {
            break;
        }
        let observed: Vec<String> = left
            .iter()
            .map(|m| format!("{}={}", machines::name(m), machines::phase(m)))
            .chain(orphans.iter().cloned())
            .collect();
        if let Some(still) = stall.observe(observed.join(",")) {
            let waiting: Vec<String> = left
                .iter()
                .map(|m| machines::describe(m))
                .chain(orphans.iter().map(|n| format!("Node {n} is still there")))
                .collect();
            return Err(StepError::Unverified(format!(
                "no progress for {} s removing Machines: {}; a drain blocked by a PodDisruptionBudget or a VM the machine API cannot delete (credentials?) keeps a Machine; read `oc -n {NAMESPACE} describe machine <name>`, fix the cause, then retry this step",
                still.as_secs(),
                waiting.join("; ")
            )));
        }
        tokio::time::sleep(POLL).await;
    }
    for set in sets {
        let name = machines::name(set);
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: set.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => changes.push(format!("MachineSet {NAMESPACE}/{name}: deleted")),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {
                return Err(StepError::Refused(format!(
                    "MachineSet {NAMESPACE}/{name} was replaced while the step emptied it; check it, then retry"
                )));
            }
            Err(e) => {
                return Err(StepError::Kube {
                    action: format!("delete MachineSet {NAMESPACE}/{name}"),
                    source: e,
                });
            }
        }
    }
    for set in sets {
        let name = machines::name(set);
        let still = api.get_opt(name).await.map_err(StepError::kube(format!(
            "read MachineSet {NAMESPACE}/{name}"
        )))?;
        if still.is_some_and(|s| s.metadata.uid == set.metadata.uid && !machines::deleting(&s)) {
            return Err(StepError::Unverified(format!(
                "MachineSet {NAMESPACE}/{name} was deleted but is still there"
            )));
        }
    }
    Ok(changes)
}

/// Undoes the step: the MachineSets it created scaled to 0 (their Machines
/// and Nodes gone) and deleted.
pub async fn undo(context: &StepContext) -> Result<Outcome, StepError> {
    let backups = Backups::of(context);
    let recorded = created(&backups).await?;
    let owner = context.vmi_ref.to_string();
    let api = machines::machine_sets(context);
    let mut sets = Vec::new();
    for name in &recorded {
        if let Some(set) = api.get_opt(name).await.map_err(StepError::kube(format!(
            "read MachineSet {NAMESPACE}/{name}"
        )))? {
            let ours = set
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(CREATED_BY))
                == Some(&owner);
            if ours {
                sets.push(set);
            }
        }
    }
    if sets.is_empty() {
        return Ok(Outcome::unchanged(
            "no MachineSet created by step 11 is left; nothing changed",
        ));
    }
    let changes = drain_and_delete(context, &sets).await?;
    Ok(Outcome {
        result: format!(
            "removed the {} MachineSet(s) step 11 created, with their Machines and Nodes",
            sets.len()
        ),
        changes,
        ..Outcome::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmi_api::topology::Topology;

    fn domain(name: &str) -> FailureDomain {
        FailureDomain {
            name: name.into(),
            region: "rb".into(),
            zone: format!("z-{name}"),
            server: "b.example.com".into(),
            topology: Topology {
                datacenter: "dc-b".into(),
                compute_cluster: "/dc-b/host/c".into(),
                networks: vec!["net-b".into()],
                datastore: "/dc-b/datastore/d".into(),
                resource_pool: None,
                folder: None,
                template: Some("/dc-b/vm/rhcos".into()),
            },
            region_affinity: None,
            zone_affinity: None,
        }
    }

    fn base() -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "machine.openshift.io/v1beta1", "kind": "MachineSet",
            "metadata": {"name": "x-worker-0", "namespace": NAMESPACE,
                "labels": {CLUSTER_LABEL: "x"}, "uid": "u1", "resourceVersion": "5"},
            "spec": {"replicas": 3, "deletePolicy": "Oldest",
                "selector": {"matchLabels": {CLUSTER_LABEL: "x", MACHINESET_LABEL: "x-worker-0"}},
                "template": {"metadata": {"labels": {CLUSTER_LABEL: "x", MACHINESET_LABEL: "x-worker-0",
                        ROLE_LABEL: "worker", "machine.openshift.io/cluster-api-machine-type": "worker",
                        "machine.openshift.io/zone": "zone-a", "team": "blue"}},
                    "spec": {"metadata": {"labels": {"node-role.kubernetes.io/app": ""}},
                        "providerSpec": {"value": {
                            "credentialsSecret": {"name": "vsphere-cloud-credentials"},
                            "template": "x-rhcos-a", "numCPUs": 4, "memoryMiB": 16384, "diskGiB": 120,
                            "tagIDs": ["urn:vmomi:InventoryServiceTag:1:GLOBAL"],
                            "workspace": {"server": "a.example.com", "datacenter": "dc-a",
                                "folder": "/dc-a/vm/x", "datastore": "/dc-a/datastore/d",
                                "resourcePool": "/dc-a/host/c/Resources"},
                            "network": {"devices": [{"networkName": "net-a", "ipAddrs": ["192.0.2.5/24"],
                                "gateway": "192.0.2.1", "nameservers": ["192.0.2.53"]}]}}}}}},
        }))
        .unwrap()
    }

    #[test]
    fn the_target_set_is_the_source_one_moved_to_the_failure_domain() {
        let base = base();
        let domain = domain("b-1");
        let set = build(&Design {
            base: &base,
            infra_id: "x",
            domain: &domain,
            replicas: 2,
            size: None,
            created_by: "vmi-system/move",
        })
        .unwrap();
        assert_eq!(set["metadata"]["name"], "x-worker-b-1");
        assert_eq!(
            set["metadata"]["annotations"][CREATED_BY],
            "vmi-system/move"
        );
        assert!(
            set["metadata"].get("uid").is_none()
                && set["metadata"].get("resourceVersion").is_none()
        );
        assert_eq!(set["spec"]["replicas"], 2);
        assert_eq!(set["spec"]["deletePolicy"], "Oldest");
        assert_eq!(
            set["spec"]["selector"]["matchLabels"],
            json!({CLUSTER_LABEL: "x", MACHINESET_LABEL: "x-worker-b-1"})
        );
        let labels = &set["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels[MACHINESET_LABEL], "x-worker-b-1");
        assert_eq!(labels["team"], "blue", "other labels are kept");
        assert!(
            labels.get("machine.openshift.io/zone").is_none(),
            "the source zone is dropped"
        );
        let spec = &set["spec"]["template"]["spec"];
        assert_eq!(
            spec["metadata"],
            json!({"labels": {"node-role.kubernetes.io/app": ""}})
        );
        let provider = &spec["providerSpec"]["value"];
        assert_eq!(
            provider["workspace"],
            json!({"server": "b.example.com", "datacenter": "dc-b", "datastore": "/dc-b/datastore/d",
                "folder": "/dc-b/vm/x", "resourcePool": "/dc-b/host/c/Resources"})
        );
        assert_eq!(provider["template"], "/dc-b/vm/rhcos");
        assert_eq!(
            provider["network"],
            json!({"devices": [{"networkName": "net-b", "nameservers": ["192.0.2.53"]}]})
        );
        assert!(provider.get("tagIDs").is_none());
        assert_eq!(
            provider["credentialsSecret"]["name"],
            "vsphere-cloud-credentials"
        );
        assert_eq!(provider["numCPUs"], 4);
    }

    #[test]
    fn sizes_override_and_the_default_template_follows_the_installer() {
        let base = base();
        let mut domain = domain("b-1");
        domain.topology.template = None;
        let size = vmi_api::migration::MachineSize {
            num_cpus: Some(8),
            num_cores_per_socket: None,
            memory_mib: Some(32768),
            disk_gib: None,
        };
        let set = build(&Design {
            base: &base,
            infra_id: "x",
            domain: &domain,
            replicas: 1,
            size: Some(&size),
            created_by: "ns/v",
        })
        .unwrap();
        let provider = &set["spec"]["template"]["spec"]["providerSpec"]["value"];
        assert_eq!(provider["template"], "x-rhcos-rb-z-b-1");
        assert_eq!(provider["numCPUs"], 8);
        assert_eq!(provider["memoryMiB"], 32768);
        assert_eq!(provider["diskGiB"], 120);
    }

    #[test]
    fn a_name_longer_than_a_label_value_is_refused() {
        let base = base();
        let domain = domain(&"d".repeat(60));
        let err = build(&Design {
            base: &base,
            infra_id: "x",
            domain: &domain,
            replicas: 1,
            size: None,
            created_by: "ns/v",
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("at most 63"), "{err}");
    }

    fn spec(domains: &[&str], workers: Option<serde_json::Value>) -> VSphereMigrationInfraSpec {
        let mut spec = json!({"vcenters": [], "credentialsSecret": {"name": "c"},
            "failureDomains": domains.iter().map(|d| serde_json::to_value(domain(d)).unwrap()).collect::<Vec<_>>()});
        if let Some(w) = workers {
            spec["workers"] = w;
        }
        serde_json::from_value(spec).unwrap()
    }

    #[test]
    fn workers_are_spread_evenly_unless_placed() {
        assert_eq!(
            placements(&spec(&["a", "b"], None), 3),
            [("a".to_owned(), 2), ("b".to_owned(), 1)]
        );
        assert_eq!(
            placements(
                &spec(
                    &["a", "b"],
                    Some(json!({"failureDomains": [{"name": "b", "replicas": 4}]}))
                ),
                3
            ),
            [("a".to_owned(), 0), ("b".to_owned(), 4)]
        );
    }
}
