//! The control plane machine set controller for an `Active` CPMS, and the
//! etcd operator's deletion hook. The update strategies follow
//! `pkg/controllers/controlplanemachineset/updates.go` and the status
//! `status.go` of cluster-control-plane-machine-set-operator; the failure
//! domain injection `providerconfig/vsphere.go` (research §5).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::{Counters, cpms_api, resource};
use crate::machine_api::{
    self, deleting, labels, machines, now, random_suffix, ready_nodes, running_and_ready,
    selector_matches,
};

/// The etcd operator's pre-drain hook on control plane Machines.
pub const ETCD_HOOK: &str = "EtcdQuorumOperator";
/// Its owner.
pub const ETCD_HOOK_OWNER: &str = "clusteroperator/etcd";

/// What the controller knows of one Machine of the CPMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MachineInfo {
    pub name: String,
    pub index: u64,
    /// Running with a Ready Node.
    pub ready: bool,
    /// Its provider spec differs from the index's desired one.
    pub needs_update: bool,
    pub deleting: bool,
    /// Creation time (seconds), to order Machines within an index.
    pub created: i64,
}

/// What one pass decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// A new Machine for this index.
    Create(u64),
    /// Delete this Machine.
    Delete(String),
}

/// One pass over the `Active` CPMS, if there is one.
pub(crate) async fn reconcile(client: &Client, counters: &Counters) -> Result<(), String> {
    let Some(cpms) = cpms_api(client)
        .get_opt("cluster")
        .await
        .map_err(|e| format!("get the control plane machine set: {e}"))?
    else {
        return Ok(());
    };
    if deleting(&cpms) || cpms.data["spec"]["state"] != "Active" {
        return Ok(());
    }
    let infrastructure = Api::<DynamicObject>::all_with(
        client.clone(),
        &resource("config.openshift.io", "v1", "Infrastructure"),
    )
    .get("cluster")
    .await
    .map_err(|e| format!("get infrastructure/cluster: {e}"))?;
    let desired = match desired_specs(&cpms, &infrastructure) {
        Ok(desired) => desired,
        Err(problem) => {
            counters.problem(problem);
            return Ok(());
        }
    };
    let by_index = machine_infos(client, &cpms, &desired).await?;
    write_status(client, &cpms, &by_index).await?;
    if let Some(excess) = by_index.keys().find(|i| **i >= desired.len() as u64) {
        // The real controller goes Degraded (ExcessIndexes) and waits.
        counters.problem(format!(
            "a control plane Machine has index {excess}, beyond spec.replicas {}; nothing done",
            desired.len()
        ));
        return Ok(());
    }
    let actions = match cpms.data["spec"]["strategy"]["type"].as_str() {
        Some("OnDelete") => on_delete(&by_index),
        Some("RollingUpdate") | None => rolling_update(&by_index, desired.len()),
        Some(other) => {
            counters.problem(format!("unknown update strategy {other:?}"));
            Vec::new()
        }
    };
    for action in actions {
        act(client, &cpms, &desired, action, counters).await?;
    }
    Ok(())
}

/// The provider spec each index should have: the template's, with the
/// index's failure domain (the CPMS's, sorted by name, round robin)
/// injected. An unknown failure domain name is an error.
fn desired_specs(
    cpms: &DynamicObject,
    infrastructure: &DynamicObject,
) -> Result<Vec<Value>, String> {
    let replicas = cpms.data["spec"]["replicas"].as_u64().unwrap_or(3);
    let template = &cpms.data["spec"]["template"]["machines_v1beta1_machine_openshift_io"];
    let base = &template["spec"]["providerSpec"]["value"];
    let infra_id = infrastructure.data["status"]["infrastructureName"]
        .as_str()
        .unwrap_or_default();
    let known = infrastructure.data["spec"]["platformSpec"]["vsphere"]["failureDomains"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut names: Vec<&str> = template["failureDomains"]["vsphere"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["name"].as_str())
        .collect();
    names.sort_unstable();
    let mut domains = Vec::new();
    for name in names {
        let domain = known.iter().find(|d| d["name"] == name).ok_or_else(|| {
            format!(
                "unknown failure domain {name:?}: infrastructure/cluster has no such spec.platformSpec.vsphere.failureDomains entry; nothing done"
            )
        })?;
        domains.push(domain);
    }
    Ok((0..replicas as usize)
        .map(|i| match domains.get(i % domains.len().max(1)) {
            Some(domain) => inject_failure_domain(base, domain, infra_id),
            None => base.clone(),
        })
        .collect())
}

/// `InjectFailureDomain` for vSphere: workspace, networks and template
/// from the failure domain's topology.
pub(crate) fn inject_failure_domain(base: &Value, domain: &Value, infra_id: &str) -> Value {
    let mut spec = base.clone();
    let topology = &domain["topology"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let datacenter = text(&topology["datacenter"]);
    let mut workspace = spec["workspace"].as_object().cloned().unwrap_or_default();
    workspace.insert("server".into(), domain["server"].clone());
    workspace.insert("datacenter".into(), datacenter.clone().into());
    workspace.insert("datastore".into(), topology["datastore"].clone());
    let pool = text(&topology["resourcePool"]);
    let pool = if pool.is_empty() {
        clean_path(&format!("/{}/Resources", text(&topology["computeCluster"])))
    } else {
        pool
    };
    workspace.insert("resourcePool".into(), pool.into());
    let folder = text(&topology["folder"]);
    let folder = if folder.is_empty() {
        format!("/{datacenter}/vm/{infra_id}")
    } else {
        folder
    };
    workspace.insert("folder".into(), folder.into());
    if let Some(group) = domain["zoneAffinity"]["hostGroup"]["vmGroup"].as_str() {
        workspace.insert("vmGroup".into(), group.into());
    }
    spec["workspace"] = Value::Object(workspace);
    inject_networks(&mut spec, &topology["networks"]);
    let template = last_element(&text(&topology["template"])).to_owned();
    spec["template"] = if template.is_empty() {
        format!(
            "{infra_id}-rhcos-{}-{}",
            text(&domain["region"]),
            text(&domain["zone"])
        )
        .into()
    } else {
        template.into()
    };
    spec
}

/// Device `i` gets network `i` (its other fields, e.g. addressesFromPools,
/// kept).
fn inject_networks(spec: &mut Value, networks: &Value) {
    let Some(networks) = networks.as_array().filter(|n| !n.is_empty()) else {
        return;
    };
    let existing = spec["network"]["devices"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let devices: Vec<Value> = networks
        .iter()
        .enumerate()
        .map(|(i, network)| {
            let mut device = existing.get(i).cloned().unwrap_or_else(|| json!({}));
            device["networkName"] = network.clone();
            device
        })
        .collect();
    spec["network"]["devices"] = Value::Array(devices);
}

/// Whether a Machine's provider spec differs from the desired one in what
/// the failure domain sets: workspace, template (by its last path
/// element) and network names.
pub(crate) fn needs_update(actual: &Value, desired: &Value) -> bool {
    let field = |spec: &Value, key: &str| spec["workspace"][key].as_str().unwrap_or("").to_owned();
    let workspace_differs = ["server", "datacenter", "datastore", "folder", "vmGroup"]
        .iter()
        .any(|key| field(actual, key) != field(desired, key))
        || clean_path(&field(actual, "resourcePool"))
            != clean_path(&field(desired, "resourcePool"));
    let template = |spec: &Value| last_element(spec["template"].as_str().unwrap_or("")).to_owned();
    let networks = |spec: &Value| -> Vec<String> {
        spec["network"]["devices"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| d["networkName"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    workspace_differs
        || template(actual) != template(desired)
        || networks(actual) != networks(desired)
}

/// The last element of an inventory path.
fn last_element(path: &str) -> &str {
    path.trim_end_matches('/').rsplit('/').next().unwrap_or("")
}

/// `path.Clean` for absolute inventory paths.
fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    if path.is_empty() {
        String::new()
    } else {
        format!("/{}", parts.join("/"))
    }
}

/// The index of a control plane Machine: the number its name ends with.
fn index_of(name: &str) -> Option<u64> {
    name.rsplit('-').next()?.parse().ok()
}

/// The CPMS's Machines (its selector), by index, every index of
/// `0..replicas` present.
async fn machine_infos(
    client: &Client,
    cpms: &DynamicObject,
    desired: &[Value],
) -> Result<BTreeMap<u64, Vec<MachineInfo>>, String> {
    let all = machines(client)
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("list Machines: {e}"))?
        .items;
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("list Nodes: {e}"))?
        .items;
    let ready = ready_nodes(&nodes);
    let selector = &cpms.data["spec"]["selector"];
    let mut by_index: BTreeMap<u64, Vec<MachineInfo>> =
        (0..desired.len() as u64).map(|i| (i, Vec::new())).collect();
    for machine in all
        .iter()
        .filter(|m| selector_matches(selector, &labels(m)))
    {
        let name = machine.name_any();
        let Some(index) = index_of(&name) else {
            continue;
        };
        let spec = &machine.data["spec"]["providerSpec"]["value"];
        by_index.entry(index).or_default().push(MachineInfo {
            index,
            ready: running_and_ready(machine, &ready),
            needs_update: desired
                .get(index as usize)
                .is_none_or(|wanted| needs_update(spec, wanted)),
            deleting: deleting(machine),
            created: machine
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second())
                .unwrap_or_default(),
            name,
        });
    }
    for infos in by_index.values_mut() {
        infos.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    }
    Ok(by_index)
}

fn needing_replacement(infos: &[MachineInfo]) -> Vec<&MachineInfo> {
    infos
        .iter()
        .filter(|m| m.needs_update || m.deleting)
        .collect()
}

fn pending(infos: &[MachineInfo]) -> Vec<&MachineInfo> {
    infos
        .iter()
        .filter(|m| !m.ready && !m.needs_update && !m.deleting)
        .collect()
}

fn updated(infos: &[MachineInfo]) -> Vec<&MachineInfo> {
    infos
        .iter()
        .filter(|m| m.ready && !m.needs_update)
        .collect()
}

/// `RollingUpdate`: per index, lowest first, delete a replaced Machine and
/// create a replacement where none exists, never more than one Machine
/// over `replicas` (deleting ones count).
pub(crate) fn rolling_update(
    by_index: &BTreeMap<u64, Vec<MachineInfo>>,
    replicas: usize,
) -> Vec<Action> {
    let total: usize = by_index.values().map(Vec::len).sum();
    let mut surge = total as i64 - replicas as i64;
    let mut actions = Vec::new();
    for (index, infos) in by_index {
        actions.extend(delete_replaced(infos));
        let replace = infos.is_empty()
            || !needing_replacement(infos).is_empty()
                && !updated(infos).iter().any(|m| !m.deleting)
                && pending(infos).is_empty();
        if replace && surge < 1 {
            actions.push(Action::Create(*index));
            surge += 1;
        }
    }
    actions
}

/// The Machine of an index to delete, if any: the outdated one once an
/// updated replacement is Ready, an outdated one that is not Ready, or the
/// oldest of several updated ones.
fn delete_replaced(infos: &[MachineInfo]) -> Option<Action> {
    let replaced = needing_replacement(infos);
    let current = updated(infos);
    let mut victim = None;
    if !replaced.is_empty() && !current.is_empty() {
        victim = replaced.first().copied();
    }
    if let Some(broken) = replaced.iter().find(|m| !m.ready) {
        victim = Some(*broken);
    }
    if current.len() > 1 {
        victim = current.first().copied();
    }
    victim
        .filter(|m| !m.deleting)
        .map(|m| Action::Delete(m.name.clone()))
}

/// `OnDelete`: a replacement only for a Machine someone deleted (or an
/// empty index).
pub(crate) fn on_delete(by_index: &BTreeMap<u64, Vec<MachineInfo>>) -> Vec<Action> {
    by_index
        .iter()
        .filter_map(|(index, infos)| {
            let deleted_alone =
                infos.len() == 1 && needing_replacement(infos).len() == 1 && infos[0].deleting;
            (infos.is_empty() || deleted_alone).then_some(Action::Create(*index))
        })
        .collect()
}

async fn act(
    client: &Client,
    cpms: &DynamicObject,
    desired: &[Value],
    action: Action,
    counters: &Counters,
) -> Result<(), String> {
    match action {
        Action::Delete(name) => machines(client)
            .delete(&name, &DeleteParams::default())
            .await
            .map(|_| ())
            .map_err(|e| format!("delete Machine {name}: {e}")),
        Action::Create(index) => {
            let spec = desired.get(index as usize).cloned().unwrap_or_default();
            create_machine(client, cpms, index, spec).await?;
            counters.replacements.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }
}

/// A control plane Machine for `index`: `<cluster>-master-<random>-<index>`,
/// the template's labels and spec with `provider_spec`, and the etcd
/// operator's pre-drain hook (the real etcd operator adds it to every
/// control plane Machine).
async fn create_machine(
    client: &Client,
    cpms: &DynamicObject,
    index: u64,
    provider_spec: Value,
) -> Result<(), String> {
    let template = &cpms.data["spec"]["template"]["machines_v1beta1_machine_openshift_io"];
    let template_labels = template["metadata"]["labels"].clone();
    let cluster = template_labels[machine_api::CLUSTER_LABEL]
        .as_str()
        .unwrap_or("cluster")
        .to_owned();
    let name = format!("{cluster}-master-{}-{index}", random_suffix()?);
    let mut spec = template["spec"].clone();
    if !spec.is_object() {
        spec = json!({});
    }
    spec["providerSpec"] = json!({"value": provider_spec});
    spec["lifecycleHooks"]["preDrain"] = json!([{"name": ETCD_HOOK, "owner": ETCD_HOOK_OWNER}]);
    let mut metadata =
        json!({"name": name, "namespace": super::NAMESPACE, "labels": template_labels});
    if template["metadata"]["annotations"].is_object() {
        metadata["annotations"] = template["metadata"]["annotations"].clone();
    }
    let machine: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "machine.openshift.io/v1beta1",
        "kind": "Machine",
        "metadata": metadata,
        "spec": spec,
    }))
    .map_err(|e| format!("Machine {name}: {e}"))?;
    machines(client)
        .create(&PostParams::default(), &machine)
        .await
        .map(|_| ())
        .map_err(|e| format!("create Machine {name}: {e}"))
}

/// The status the real controller computes: replicas (every Machine),
/// ready, updated (ready and up to date), unavailable (indexes without a
/// ready Machine), and the three conditions.
pub(crate) fn status(
    by_index: &BTreeMap<u64, Vec<MachineInfo>>,
    replicas: u64,
    generation: i64,
    previous: &Value,
) -> Value {
    let all = || by_index.values().flatten();
    let count = all().count() as u64;
    let ready = all().filter(|m| m.ready).count() as u64;
    let updated = all().filter(|m| m.ready && !m.needs_update).count() as u64;
    let unavailable = by_index
        .values()
        .filter(|infos| !infos.iter().any(|m| m.ready))
        .count() as u64;
    let (available, degraded, progressing) = conditions(replicas, ready, updated, unavailable);
    let conditions: Vec<Value> = [available, degraded, progressing]
        .into_iter()
        .map(|(kind, state, reason, message)| {
            condition(previous, kind, state, reason, message, generation)
        })
        .collect();
    json!({
        "observedGeneration": generation,
        "replicas": count,
        "readyReplicas": ready,
        "updatedReplicas": updated,
        "unavailableReplicas": unavailable,
        "conditions": conditions,
    })
}

type Condition = (&'static str, &'static str, &'static str, String);

/// Available, Degraded, Progressing as `setConditions` sets them.
fn conditions(
    replicas: u64,
    ready: u64,
    updated: u64,
    unavailable: u64,
) -> (Condition, Condition, Condition) {
    let available = if unavailable != 0 {
        (
            "Available",
            "False",
            "UnavailableReplicas",
            format!("Missing {unavailable} available replica(s)"),
        )
    } else {
        ("Available", "True", "AllReplicasAvailable", String::new())
    };
    let degraded = if ready == 0 {
        ("Degraded", "True", "NoReadyMachines", String::new())
    } else {
        ("Degraded", "False", "AsExpected", String::new())
    };
    let progressing = if replicas > updated {
        (
            "Progressing",
            "True",
            "NeedsUpdateReplicas",
            format!(
                "Observed {} replica(s) in need of update",
                replicas - updated
            ),
        )
    } else if replicas < ready {
        (
            "Progressing",
            "True",
            "ExcessReplicas",
            format!(
                "Waiting for {} old replica(s) to be removed",
                ready - updated
            ),
        )
    } else {
        ("Progressing", "False", "AllReplicasUpdated", String::new())
    };
    (available, degraded, progressing)
}

/// One condition, keeping its last transition time while its status stays.
fn condition(
    previous: &Value,
    kind: &str,
    state: &str,
    reason: &str,
    message: String,
    generation: i64,
) -> Value {
    let before = previous["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind);
    let since = match before {
        Some(c) if c["status"] == state => c["lastTransitionTime"].clone(),
        _ => now().into(),
    };
    json!({"type": kind, "status": state, "reason": reason, "message": message,
        "observedGeneration": generation, "lastTransitionTime": since})
}

/// Writes the status when it changed.
async fn write_status(
    client: &Client,
    cpms: &DynamicObject,
    by_index: &BTreeMap<u64, Vec<MachineInfo>>,
) -> Result<(), String> {
    let previous = &cpms.data["status"];
    let replicas = cpms.data["spec"]["replicas"].as_u64().unwrap_or(3);
    let generation = cpms.metadata.generation.unwrap_or_default();
    let wanted = status(by_index, replicas, generation, previous);
    if &wanted == previous {
        return Ok(());
    }
    cpms_api(client)
        .patch_status(
            "cluster",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": wanted})),
        )
        .await
        .map(|_| ())
        .map_err(|e| format!("write the control plane machine set status: {e}"))
}

/// The etcd operator: a control plane Machine being deleted loses its
/// [`ETCD_HOOK`] once `replicas` (the CPMS's, else 3) other control plane
/// Machines run with Ready Nodes.
pub(crate) async fn release_etcd_hooks(client: &Client) -> Result<(), String> {
    let api = machines(client);
    let all = api
        .list(&ListParams::default().labels(&format!("{}=master", machine_api::ROLE_LABEL)))
        .await
        .map_err(|e| format!("list control plane Machines: {e}"))?
        .items;
    let held: Vec<&DynamicObject> = all
        .iter()
        .filter(|m| deleting(m) && has_etcd_hook(m))
        .collect();
    if held.is_empty() {
        return Ok(());
    }
    let replicas = cpms_api(client)
        .get_opt("cluster")
        .await
        .map_err(|e| format!("get the control plane machine set: {e}"))?
        .and_then(|c| c.data["spec"]["replicas"].as_u64())
        .unwrap_or(3) as usize;
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("list Nodes: {e}"))?
        .items;
    let ready = ready_nodes(&nodes);
    let healthy = all
        .iter()
        .filter(|m| !deleting(m) && running_and_ready(m, &ready))
        .count();
    if healthy < replicas {
        return Ok(());
    }
    for machine in held {
        remove_etcd_hook(&api, machine).await?;
    }
    Ok(())
}

fn has_etcd_hook(machine: &DynamicObject) -> bool {
    machine.data["spec"]["lifecycleHooks"]["preDrain"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|h| h["name"] == ETCD_HOOK)
}

async fn remove_etcd_hook(api: &Api<DynamicObject>, machine: &DynamicObject) -> Result<(), String> {
    let name = machine.name_any();
    let hooks: Vec<Value> = machine.data["spec"]["lifecycleHooks"]["preDrain"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["name"] != ETCD_HOOK)
        .cloned()
        .collect();
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({
            "metadata": {"resourceVersion": machine.metadata.resource_version},
            "spec": {"lifecycleHooks": {"preDrain": hooks}},
        })),
    )
    .await
    .map(|_| ())
    .map_err(|e| format!("remove the etcd hook from Machine {name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(
        name: &str,
        index: u64,
        ready: bool,
        needs_update: bool,
        deleting: bool,
    ) -> MachineInfo {
        MachineInfo {
            name: name.into(),
            index,
            ready,
            needs_update,
            deleting,
            created: 0,
        }
    }

    fn by_index(infos: Vec<MachineInfo>) -> BTreeMap<u64, Vec<MachineInfo>> {
        let mut map: BTreeMap<u64, Vec<MachineInfo>> = (0..3).map(|i| (i, Vec::new())).collect();
        for m in infos {
            map.entry(m.index).or_default().push(m);
        }
        map
    }

    #[test]
    fn a_rolling_update_replaces_one_index_at_a_time() {
        let outdated = by_index(
            (0..3)
                .map(|i| info(&format!("old-{i}"), i, true, true, false))
                .collect(),
        );
        assert_eq!(rolling_update(&outdated, 3), [Action::Create(0)]);

        // The replacement is not Ready yet: wait.
        let mut waiting = outdated.clone();
        waiting
            .get_mut(&0)
            .unwrap()
            .push(info("new-0", 0, false, false, false));
        assert_eq!(rolling_update(&waiting, 3), []);

        // Ready: the old one goes; nothing new while it is still there.
        let mut ready = outdated.clone();
        ready
            .get_mut(&0)
            .unwrap()
            .push(info("new-0", 0, true, false, false));
        assert_eq!(rolling_update(&ready, 3), [Action::Delete("old-0".into())]);
        let mut going = outdated.clone();
        going.get_mut(&0).unwrap()[0].deleting = true;
        going
            .get_mut(&0)
            .unwrap()
            .push(info("new-0", 0, true, false, false));
        assert_eq!(rolling_update(&going, 3), []);

        // Gone: the next index.
        let mut next = outdated;
        next.insert(0, vec![info("new-0", 0, true, false, false)]);
        assert_eq!(rolling_update(&next, 3), [Action::Create(1)]);
    }

    #[test]
    fn on_delete_replaces_only_deleted_machines() {
        let outdated = by_index(
            (0..3)
                .map(|i| info(&format!("old-{i}"), i, true, true, false))
                .collect(),
        );
        assert_eq!(on_delete(&outdated), []);
        let mut deleted = outdated;
        deleted.get_mut(&1).unwrap()[0].deleting = true;
        assert_eq!(on_delete(&deleted), [Action::Create(1)]);
    }

    #[test]
    fn the_status_counts_as_the_real_controller() {
        let mut map = by_index(
            (0..3)
                .map(|i| info(&format!("old-{i}"), i, true, true, false))
                .collect(),
        );
        map.get_mut(&0)
            .unwrap()
            .push(info("new-0", 0, true, false, false));
        let status = status(&map, 3, 2, &json!({}));
        assert_eq!(status["replicas"], 4);
        assert_eq!(status["readyReplicas"], 4);
        assert_eq!(status["updatedReplicas"], 1);
        assert_eq!(status["unavailableReplicas"], 0);
        assert_eq!(status["conditions"][2]["reason"], "NeedsUpdateReplicas");
        assert_eq!(
            status["conditions"][2]["message"],
            "Observed 2 replica(s) in need of update"
        );
    }

    #[test]
    fn a_failure_domain_is_injected_as_the_operator_does() {
        let base =
            json!({"numCPUs": 4, "network": {"devices": []}, "credentialsSecret": {"name": "c"}});
        let domain = json!({"name": "b", "region": "region-b", "zone": "zone-b", "server": "10.0.0.2",
            "topology": {"datacenter": "dc-b", "computeCluster": "/dc-b/host/cluster-b",
                "datastore": "/dc-b/datastore/ds-b", "networks": ["net-b"],
                "template": "/dc-b/vm/rhcos-b"}});
        let spec = inject_failure_domain(&base, &domain, "ocp-1");
        assert_eq!(
            spec["workspace"],
            json!({"server": "10.0.0.2", "datacenter": "dc-b",
            "datastore": "/dc-b/datastore/ds-b", "resourcePool": "/dc-b/host/cluster-b/Resources",
            "folder": "/dc-b/vm/ocp-1"})
        );
        assert_eq!(spec["template"], "rhcos-b");
        assert_eq!(
            spec["network"]["devices"],
            json!([{"networkName": "net-b"}])
        );
        assert_eq!(spec["numCPUs"], 4);

        let mut untemplated = domain.clone();
        untemplated["topology"]["template"] = "".into();
        assert_eq!(
            inject_failure_domain(&base, &untemplated, "ocp-1")["template"],
            "ocp-1-rhcos-region-b-zone-b"
        );

        let mut same = spec.clone();
        same["template"] = "/dc-b/vm/folder/rhcos-b".into();
        same["workspace"]["resourcePool"] = "/dc-b/host/cluster-b/Resources/".into();
        assert!(!needs_update(&same, &spec));
        same["workspace"]["server"] = "10.0.0.1".into();
        assert!(needs_update(&same, &spec));
    }
}
