//! The machine API and control plane machine set stand-ins on a seeded
//! cluster, against the real API server and the vCenter simulators: a
//! MachineSet scaled up gets VMs (in the right vCenter, folder, with the
//! cluster-id tag) and Nodes, scaled down loses them, and cannot delete a
//! VM without its vCenter's credentials; Machines on a vCenter whose
//! credentials are missing fail as the real actuator makes them fail; an
//! Active control plane machine set moved to a failure domain on the
//! target vCenter replaces the masters one at a time.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Node, Secret};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use vmi_sim::cpms_operator::CpmsOperator;
use vmi_sim::crds::InfrastructureCrd;
use vmi_sim::machine_api::{self, MachineApi};
use vmi_sim::seed::{self, FailureDomainNames, SeedOptions, SimCluster};
use vmi_sim::vcsim::VCenterSim;

const NS: &str = "openshift-machine-api";
const LIMIT: Duration = Duration::from_secs(60);

fn api(client: &Client, version: &str, kind: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "machine.openshift.io",
        version,
        kind,
    ));
    Api::namespaced_with(client.clone(), NS, &resource)
}

fn machines(client: &Client) -> Api<DynamicObject> {
    api(client, "v1beta1", "Machine")
}

async fn list_machines(client: &Client) -> Vec<DynamicObject> {
    machines(client)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

async fn start(options: SeedOptions) -> (SimCluster, Client, MachineApi) {
    let cluster = SimCluster::start(options).await.unwrap();
    let client = cluster.client().await.unwrap();
    let machine_api = MachineApi::start(
        client.clone(),
        cluster.plane.kubelet_api(),
        &[&cluster.source, &cluster.target],
    );
    (cluster, client, machine_api)
}

/// Polls `probe` every 200 ms until it gives a value, at most `limit`.
async fn eventually<T>(
    what: &str,
    limit: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn machine(client: &Client, name: &str) -> Option<DynamicObject> {
    machines(client).get_opt(name).await.unwrap()
}

async fn node(client: &Client, name: &str) -> Option<Node> {
    Api::<Node>::all(client.clone())
        .get_opt(name)
        .await
        .unwrap()
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `vm.info -json` of the VMs at an inventory path (glob allowed).
fn vms(vcenter: &VCenterSim, path: &str) -> Vec<Value> {
    let info: Value =
        serde_json::from_str(&vcenter.govc(&["vm.info", "-json", path]).unwrap()).unwrap();
    info["virtualMachines"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn vm_names(vcenter: &VCenterSim, path: &str) -> BTreeSet<String> {
    vms(vcenter, path)
        .iter()
        .map(|vm| vm["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Sets (or, with `None`, removes) a server's keys in the machine API's
/// credentials secret.
async fn set_credentials(client: &Client, server: &str, login: Option<(&str, &str)>) {
    let secrets = Api::<Secret>::namespaced(client.clone(), NS);
    let mut secret = secrets.get("vsphere-cloud-credentials").await.unwrap();
    let data = secret.data.get_or_insert_default();
    let (user, password) = (format!("{server}.username"), format!("{server}.password"));
    match login {
        Some((u, p)) => {
            data.insert(user, ByteString(u.as_bytes().to_vec()));
            data.insert(password, ByteString(p.as_bytes().to_vec()));
        }
        None => {
            data.remove(&user);
            data.remove(&password);
        }
    }
    secrets
        .replace("vsphere-cloud-credentials", &Default::default(), &secret)
        .await
        .unwrap();
}

async fn scale(client: &Client, set: &str, replicas: u32) {
    api(client, "v1beta1", "MachineSet")
        .patch(
            set,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .unwrap();
}

async fn set_status(client: &Client, set: &str) -> Value {
    api(client, "v1beta1", "MachineSet")
        .get(set)
        .await
        .unwrap()
        .data["status"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_set_scales_vms_and_nodes_up_and_down_with_its_vcenters_credentials() {
    let (cluster, client, machine_api) = start(SeedOptions::default()).await;
    let infra_id = cluster.options.infra_id.clone();
    let set = format!("{infra_id}-worker-0");
    let folder = cluster.source_inventory.folder_path();
    let seeded: BTreeSet<String> = list_machines(&client)
        .await
        .iter()
        .map(|m| m.name_any())
        .collect();
    assert_eq!(seeded.len(), 5);

    // Seeded Machines are adopted: the finalizer, no new VM.
    eventually("the finalizer on every seeded Machine", LIMIT, async || {
        list_machines(&client)
            .await
            .iter()
            .all(|m| m.finalizers().iter().any(|f| f == machine_api::FINALIZER))
            .then_some(())
    })
    .await;
    assert_eq!(machine_api.created(), 0);

    // Creation times have one-second resolution: the new Machine must be
    // a second younger than the seeded ones for "newest first" to pick it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    scale(&client, &set, 3).await;
    let status = eventually("3 ready replicas", LIMIT, async || {
        let status = set_status(&client, &set).await;
        (status["readyReplicas"] == 3 && status["replicas"] == 3).then_some(status)
    })
    .await;
    assert_eq!(status["availableReplicas"], 3);
    assert_eq!(status["fullyLabeledReplicas"], 3);
    let added: Vec<DynamicObject> = list_machines(&client)
        .await
        .into_iter()
        .filter(|m| !seeded.contains(&m.name_any()))
        .collect();
    assert_eq!(added.len(), 1, "one new Machine");
    let new = added[0].name_any();
    let suffix = new.strip_prefix(&format!("{set}-")).unwrap();
    assert_eq!(suffix.len(), 5, "{new}");
    assert_eq!(added[0].data["status"]["phase"], "Running");
    assert_eq!(added[0].owner_references()[0].name, set);

    // Its VM: in the source vCenter's cluster folder, tagged, and the
    // provider ID of the Machine and its Node.
    let vm = vms(&cluster.source, &format!("{folder}/{new}"));
    assert_eq!(vm.len(), 1, "the VM is in {folder}");
    assert_eq!(vm[0]["runtime"]["powerState"], "poweredOn");
    let provider_id = format!("vsphere://{}", vm[0]["config"]["uuid"].as_str().unwrap());
    assert_eq!(added[0].data["spec"]["providerID"], provider_id.as_str());
    assert_eq!(
        added[0].data["status"]["providerStatus"]["instanceId"],
        vm[0]["config"]["uuid"]
    );
    let tags = cluster
        .source
        .govc(&["tags.attached.ls", "-r", &format!("{folder}/{new}")])
        .unwrap();
    assert_eq!(tags.trim(), infra_id, "the cluster-id tag");
    let new_node = node(&client, &new).await.unwrap();
    assert_eq!(
        new_node.spec.as_ref().unwrap().provider_id.as_deref(),
        Some(provider_id.as_str())
    );
    assert!(node_ready(&new_node));
    assert!(
        new_node
            .labels()
            .contains_key("node-role.kubernetes.io/worker")
    );
    assert!(
        vms(&cluster.target, "/datacenter-b/vm/*")
            .iter()
            .all(|v| v["name"] != new.as_str())
    );
    assert_eq!(machine_api.created(), 1);

    // Without the source credentials, the newest Machine cannot go: its VM
    // stays, and it waits in Deleting with the error.
    let source = cluster.source.server.clone();
    set_credentials(&client, &source, None).await;
    scale(&client, &set, 2).await;
    let stuck = eventually("the deletion error", LIMIT, async || {
        let m = machine(&client, &new).await?;
        m.data["status"]["errorMessage"].as_str().map(str::to_owned)
    })
    .await;
    assert!(stuck.contains(&format!("{source}.username")), "{stuck}");
    let m = machine(&client, &new).await.unwrap();
    assert_eq!(m.data["status"]["phase"], "Deleting");
    assert_eq!(vms(&cluster.source, &format!("{folder}/{new}")).len(), 1);
    assert_eq!(machine_api.destroyed(), 0);

    // With them back, it goes: VM, Node and Machine.
    set_credentials(
        &client,
        &source,
        Some((&cluster.source.username, &cluster.source.password)),
    )
    .await;
    eventually("the Machine gone", LIMIT, async || {
        machine(&client, &new).await.is_none().then_some(())
    })
    .await;
    assert!(vms(&cluster.source, &format!("{folder}/{new}")).is_empty());
    assert!(node(&client, &new).await.is_none());
    assert_eq!(machine_api.destroyed(), 1);

    // Down to one: a seeded worker goes the same way.
    scale(&client, &set, 1).await;
    eventually("1 replica", LIMIT, async || {
        let status = set_status(&client, &set).await;
        let workers = list_machines(&client)
            .await
            .iter()
            .filter(|m| m.name_any().starts_with(&set))
            .count();
        (status["replicas"] == 1 && status["readyReplicas"] == 1 && workers == 1).then_some(())
    })
    .await;
    assert_eq!(machine_api.destroyed(), 2);
    let workers_left = vm_names(&cluster.source, &format!("{folder}/{set}-*"));
    assert_eq!(workers_left.len(), 1, "{workers_left:?}");
    let nodes: Vec<String> = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|n| n.name_any())
        .filter(|n| n.starts_with(&set))
        .collect();
    assert_eq!(nodes, workers_left.into_iter().collect::<Vec<_>>());
    assert_eq!(machine_api.created(), 1, "no VM for the adopted Machines");
}

/// A worker MachineSet on the target vCenter (bare template name, VMs in
/// the datacenter's root VM folder).
fn target_machine_set(cluster: &SimCluster, name: &str, server: &str, replicas: u32) -> Value {
    let infra_id = &cluster.options.infra_id;
    let inv = &cluster.target_inventory;
    let labels = json!({
        "machine.openshift.io/cluster-api-cluster": infra_id,
        "machine.openshift.io/cluster-api-machine-role": "worker",
        "machine.openshift.io/cluster-api-machine-type": "worker",
        "machine.openshift.io/cluster-api-machineset": name,
    });
    json!({
        "apiVersion": "machine.openshift.io/v1beta1",
        "kind": "MachineSet",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"machine.openshift.io/cluster-api-cluster": infra_id,
                "machine.openshift.io/cluster-api-machineset": name}},
            "template": {"metadata": {"labels": labels}, "spec": {"providerSpec": {"value": {
                "apiVersion": "machine.openshift.io/v1beta1",
                "kind": "VSphereMachineProviderSpec",
                "credentialsSecret": {"name": "vsphere-cloud-credentials"},
                "userDataSecret": {"name": "worker-user-data"},
                "template": inv.template,
                "workspace": {"server": server, "datacenter": inv.datacenter,
                    "folder": inv.folder_path(), "datastore": inv.datastore_path(),
                    "resourcePool": inv.resource_pool_path()},
                "network": {"devices": [{"networkName": inv.port_group}]},
                "numCPUs": 2, "memoryMiB": 8192, "diskGiB": 120,
            }}}},
        },
    })
}

async fn only_machine_of(client: &Client, set: &str) -> DynamicObject {
    eventually("the MachineSet's Machine", LIMIT, async || {
        list_machines(client)
            .await
            .into_iter()
            .find(|m| m.name_any().starts_with(&format!("{set}-")))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_on_a_vcenter_without_good_credentials_fail_or_retry() {
    let (cluster, client, machine_api) = start(SeedOptions::default()).await;
    let target = cluster.target.server.clone();

    // No keys for the target in the secret: Failed, as the actuator's
    // InvalidMachineConfiguration makes it.
    seed::create(
        &client,
        &target_machine_set(&cluster, "workers-b", &target, 1),
    )
    .await
    .unwrap();
    let failed = only_machine_of(&client, "workers-b").await;
    let failed = eventually("the Failed phase", LIMIT, async || {
        let m = machine(&client, &failed.name_any()).await?;
        (m.data["status"]["phase"] == "Failed").then_some(m)
    })
    .await;
    assert_eq!(failed.data["status"]["errorReason"], "InvalidConfiguration");
    let message = failed.data["status"]["errorMessage"].as_str().unwrap();
    assert_eq!(
        message,
        format!(
            "secret {NS}/vsphere-cloud-credentials does not have \"{target}.username\" field set"
        )
    );

    // A server that is no vCenter of the cluster: Failed, naming it.
    seed::create(
        &client,
        &target_machine_set(&cluster, "workers-x", "vcenter.example.com", 1),
    )
    .await
    .unwrap();
    let unknown = only_machine_of(&client, "workers-x").await;
    let unknown = eventually("the Failed phase", LIMIT, async || {
        let m = machine(&client, &unknown.name_any()).await?;
        (m.data["status"]["phase"] == "Failed").then_some(m)
    })
    .await;
    assert_eq!(
        unknown.data["status"]["errorReason"],
        "InvalidConfiguration"
    );
    assert!(
        unknown.data["status"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("\"vcenter.example.com\""),
        "{:?}",
        unknown.data["status"]
    );

    // A wrong password: the clone is refused and retried, Provisioning.
    set_credentials(&client, &target, Some((&cluster.target.username, "wrong"))).await;
    seed::create(
        &client,
        &target_machine_set(&cluster, "workers-c", &target, 1),
    )
    .await
    .unwrap();
    let retried = only_machine_of(&client, "workers-c").await.name_any();
    let refused = eventually("the login error", LIMIT, async || {
        let m = machine(&client, &retried).await?;
        m.data["status"]["errorMessage"].as_str().map(str::to_owned)
    })
    .await;
    assert!(
        refused.ends_with("on the target vCenter failed: ServerFaultCode: Login failure"),
        "{refused}"
    );
    let m = machine(&client, &retried).await.unwrap();
    assert_eq!(m.data["status"]["phase"], "Provisioning");
    assert!(m.data["status"]["errorReason"].is_null());

    // The right one: the retry clones the VM in the target vCenter.
    set_credentials(
        &client,
        &target,
        Some((&cluster.target.username, &cluster.target.password)),
    )
    .await;
    let running = eventually("Running", LIMIT, async || {
        let m = machine(&client, &retried).await?;
        (m.data["status"]["phase"] == "Running").then_some(m)
    })
    .await;
    assert!(running.data["status"]["errorMessage"].is_null());
    let vm = vms(&cluster.target, &format!("/datacenter-b/vm/{retried}"));
    assert_eq!(
        vm.len(),
        1,
        "cloned from the bare template name into /datacenter-b/vm"
    );
    assert_eq!(vm[0]["config"]["hardware"]["numCPU"], 2);
    assert_eq!(vm[0]["config"]["hardware"]["memoryMB"], 8192);
    assert!(vms(&cluster.source, &format!("/datacenter-a/vm/*/{retried}")).is_empty());
    assert_eq!(machine_api.created(), 1);
    // No cluster-id category in the target: no tag, silently.
    let tags = cluster
        .target
        .govc(&[
            "tags.attached.ls",
            "-r",
            &format!("/datacenter-b/vm/{retried}"),
        ])
        .unwrap();
    assert_eq!(tags.trim(), "");

    // A folder that does not exist yet (no step 06): Failed, as the
    // actuator's handleVSphereError makes a missing workspace object.
    let mut no_folder = target_machine_set(&cluster, "workers-d", &target, 1);
    no_folder["spec"]["template"]["spec"]["providerSpec"]["value"]["workspace"]["folder"] =
        format!("/datacenter-b/vm/{}", cluster.options.infra_id).into();
    seed::create(&client, &no_folder).await.unwrap();
    let lost = only_machine_of(&client, "workers-d").await.name_any();
    let lost = eventually("the Failed phase", LIMIT, async || {
        let m = machine(&client, &lost).await?;
        (m.data["status"]["phase"] == "Failed").then_some(m)
    })
    .await;
    assert_eq!(lost.data["status"]["errorReason"], "InvalidConfiguration");
    let message = lost.data["status"]["errorMessage"].as_str().unwrap();
    assert!(
        message.starts_with("folder not found, specify valid value ("),
        "{message}"
    );
    assert_eq!(machine_api.created(), 1);

    // The Failed one, which never had a VM, just goes when deleted.
    api(&client, "v1beta1", "MachineSet")
        .delete("workers-b", &DeleteParams::default())
        .await
        .unwrap();
    machines(&client)
        .delete(&failed.name_any(), &DeleteParams::default())
        .await
        .unwrap();
    eventually("the Failed Machine gone", LIMIT, async || {
        machine(&client, &failed.name_any())
            .await
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(machine_api.destroyed(), 0);
}

/// The target failure domain, its vCenter and its credentials, as steps
/// 06–10 of a migration leave them: folder and tags in the target vCenter,
/// both vCenters in the Infrastructure, the keys in the machine API secret.
async fn prepare_target(cluster: &SimCluster, client: &Client) -> FailureDomainNames {
    let infra_id = &cluster.options.infra_id;
    let (target, inv) = (&cluster.target, &cluster.target_inventory);
    target
        .govc(&[
            "folder.create",
            &format!("/{}/vm/{infra_id}", inv.datacenter),
        ])
        .unwrap();
    let names = FailureDomainNames {
        name: "target-b".into(),
        region: "region-b".into(),
        zone: "zone-b".into(),
    };
    seed::tag_region_and_zone(target, inv, &names).unwrap();
    let category = format!("openshift-{infra_id}");
    target
        .govc(&["tags.category.create", "-t", "VirtualMachine", &category])
        .unwrap();
    target
        .govc(&["tags.create", "-c", &category, infra_id])
        .unwrap();

    let infrastructure = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "config.openshift.io",
        "v1",
        "Infrastructure",
    ));
    let infra_api = Api::<DynamicObject>::all_with(client.clone(), &infrastructure);
    let current = infra_api.get("cluster").await.unwrap();
    let vsphere = &current.data["spec"]["platformSpec"]["vsphere"];
    let mut vcenters = vsphere["vcenters"].as_array().unwrap().clone();
    vcenters.push(json!({"server": target.server, "port": target.port,
        "datacenters": [inv.datacenter]}));
    let mut domains = vsphere["failureDomains"].as_array().unwrap().clone();
    domains.push(json!({
        "name": names.name, "region": names.region, "zone": names.zone, "server": target.server,
        "topology": {"datacenter": inv.datacenter, "computeCluster": inv.cluster_path(),
            "networks": [inv.port_group], "datastore": inv.datastore_path(),
            "resourcePool": inv.resource_pool_path(),
            "folder": format!("/{}/vm/{infra_id}", inv.datacenter),
            "template": inv.template_path()},
    }));
    infra_api
        .patch(
            "cluster",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"platformSpec": {"vsphere":
                {"vcenters": vcenters, "failureDomains": domains}}}})),
        )
        .await
        .unwrap();
    set_credentials(
        client,
        &target.server,
        Some((&target.username, &target.password)),
    )
    .await;
    names
}

async fn use_failure_domain(client: &Client, name: &str) {
    api(client, "v1", "ControlPlaneMachineSet")
        .patch(
            "cluster",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"template": {"machines_v1beta1_machine_openshift_io":
                {"failureDomains": {"platform": "VSphere", "vsphere": [{"name": name}]}}}}}),
            ),
        )
        .await
        .unwrap();
}

async fn cpms(client: &Client) -> DynamicObject {
    api(client, "v1", "ControlPlaneMachineSet")
        .get("cluster")
        .await
        .unwrap()
}

fn masters(all: &[DynamicObject]) -> Vec<&DynamicObject> {
    all.iter()
        .filter(|m| m.labels().get(machine_api::ROLE_LABEL).map(String::as_str) == Some("master"))
        .collect()
}

/// The most master Machines and the fewest Ready master Nodes seen, every
/// 100 ms, while it runs.
fn watch_masters(client: &Client) -> (Arc<Mutex<(usize, usize)>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new((0, usize::MAX)));
    let (client, record) = (client.clone(), seen.clone());
    let task = tokio::spawn(async move {
        loop {
            let count = masters(&list_machines(&client).await).len();
            let ready = Api::<Node>::all(client.clone())
                .list(&ListParams::default().labels("node-role.kubernetes.io/master"))
                .await
                .unwrap()
                .items
                .iter()
                .filter(|n| node_ready(n))
                .count();
            {
                let mut seen = record.lock().unwrap();
                *seen = (seen.0.max(count), seen.1.min(ready));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (seen, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_moves_to_the_target_one_master_at_a_time() {
    let (cluster, client, machine_api) = start(SeedOptions {
        infrastructure_crd: InfrastructureCrd::MultiVCenterDay2,
        ..SeedOptions::default()
    })
    .await;
    let infra_id = cluster.options.infra_id.clone();
    let operator = CpmsOperator::start(client.clone());
    let names = prepare_target(&cluster, &client).await;
    let source_folder = cluster.source_inventory.folder_path();
    let target_folder = format!("/datacenter-b/vm/{infra_id}");
    let old: BTreeSet<String> = (0..3).map(|i| format!("{infra_id}-master-{i}")).collect();
    assert_eq!(
        vm_names(
            &cluster.source,
            &format!("{source_folder}/{infra_id}-master-*")
        ),
        old
    );

    let (seen, monitor) = watch_masters(&client);
    use_failure_domain(&client, &names.name).await;
    let status = eventually("the rollout", Duration::from_secs(180), async || {
        let cpms = cpms(&client).await;
        let status = &cpms.data["status"];
        let done = status["observedGeneration"] == json!(cpms.metadata.generation)
            && status["replicas"] == 3
            && status["updatedReplicas"] == 3
            && status["readyReplicas"] == 3
            && status["unavailableReplicas"] == 0;
        done.then(|| status.clone())
    })
    .await;
    monitor.abort();
    let (most, fewest_ready) = *seen.lock().unwrap();
    assert_eq!(most, 4, "one surplus master at a time, never more");
    assert!(
        fewest_ready >= 3,
        "never fewer than 3 Ready masters, saw {fewest_ready}"
    );
    let condition = |kind: &str| {
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == kind)
            .map(|c| (c["status"].clone(), c["reason"].clone()))
            .unwrap()
    };
    assert_eq!(
        condition("Progressing"),
        (json!("False"), json!("AllReplicasUpdated"))
    );
    assert_eq!(
        condition("Available"),
        (json!("True"), json!("AllReplicasAvailable"))
    );

    // Every master is new, indexed 0–2, Running on the target.
    let all = list_machines(&client).await;
    let now: Vec<&DynamicObject> = masters(&all);
    let mut indexes: Vec<String> = now
        .iter()
        .map(|m| m.name_any().rsplit('-').next().unwrap().to_owned())
        .collect();
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2"]);
    let new: BTreeSet<String> = now.iter().map(|m| m.name_any()).collect();
    for m in &now {
        let name = m.name_any();
        assert!(
            name.starts_with(&format!("{infra_id}-master-"))
                && name.len() == format!("{infra_id}-master-xxxxx-0").len(),
            "{name}"
        );
        let spec = &m.data["spec"]["providerSpec"]["value"];
        assert_eq!(spec["workspace"]["server"], cluster.target.server.as_str());
        assert_eq!(spec["template"], "rhcos-template-b");
        assert_eq!(spec["workspace"]["folder"], target_folder.as_str());
        assert_eq!(m.labels()[machine_api::REGION_LABEL], "region-b");
        assert_eq!(m.labels()[machine_api::ZONE_LABEL], "zone-b");
        assert_eq!(
            m.data["spec"]["lifecycleHooks"]["preDrain"][0]["name"],
            "EtcdQuorumOperator"
        );
        let node = node(&client, &name).await.unwrap();
        assert!(node_ready(&node));
        assert_eq!(node.labels()["topology.kubernetes.io/zone"], "zone-b");
    }
    assert_eq!(
        vm_names(&cluster.target, &format!("{target_folder}/*")),
        new
    );
    assert!(
        vm_names(
            &cluster.source,
            &format!("{source_folder}/{infra_id}-master-*")
        )
        .is_empty()
    );
    for name in &old {
        assert!(node(&client, name).await.is_none(), "{name}'s Node is gone");
    }
    let tags = cluster
        .target
        .govc(&[
            "tags.attached.ls",
            "-r",
            &format!("{target_folder}/{}", now[0].name_any()),
        ])
        .unwrap();
    assert_eq!(tags.trim(), infra_id);
    assert_eq!(operator.replacements(), 3);
    assert_eq!((machine_api.created(), machine_api.destroyed()), (3, 3));

    // OnDelete: moving back replaces nothing until a master is deleted,
    // and updatedReplicas drops at once.
    api(&client, "v1", "ControlPlaneMachineSet")
        .patch(
            "cluster",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"strategy": {"type": "OnDelete"}}})),
        )
        .await
        .unwrap();
    use_failure_domain(&client, &cluster.source_failure_domain.name).await;
    eventually("updatedReplicas 0", LIMIT, async || {
        let cpms = cpms(&client).await;
        let status = &cpms.data["status"];
        (status["observedGeneration"] == json!(cpms.metadata.generation)
            && status["updatedReplicas"] == 0
            && status["readyReplicas"] == 3)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        operator.replacements(),
        3,
        "OnDelete replaces nothing by itself"
    );
    let victim = now
        .iter()
        .find(|m| m.name_any().ends_with("-1"))
        .unwrap()
        .name_any();
    machines(&client)
        .delete(&victim, &DeleteParams::default())
        .await
        .unwrap();
    let replacement = eventually("the replacement of index 1", LIMIT, async || {
        let all = list_machines(&client).await;
        let gone = all.iter().all(|m| m.name_any() != victim);
        let replacement = masters(&all)
            .into_iter()
            .find(|m| m.name_any().ends_with("-1") && m.data["status"]["phase"] == "Running")
            .cloned();
        replacement.filter(|_| gone)
    })
    .await;
    assert_eq!(
        replacement.data["spec"]["providerSpec"]["value"]["workspace"]["server"],
        cluster.source.server.as_str()
    );
    assert_eq!(
        vm_names(
            &cluster.source,
            &format!("{source_folder}/{}", replacement.name_any())
        )
        .len(),
        1
    );
    assert_eq!(operator.replacements(), 4);
    // The operator writes its status after the replacement runs: wait for
    // it rather than read it at once (on a loaded machine it lags).
    eventually("updatedReplicas 1 in the CPMS status", LIMIT, async || {
        (cpms(&client).await.data["status"]["updatedReplicas"] == 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_failure_domain_changes_nothing() {
    let cluster = SimCluster::start(SeedOptions::default()).await.unwrap();
    let client = cluster.client().await.unwrap();
    let operator = CpmsOperator::start(client.clone());
    let before: Vec<(String, String)> = list_machines(&client)
        .await
        .iter()
        .map(|m| (m.name_any(), m.resource_version().unwrap()))
        .collect();
    use_failure_domain(&client, "nowhere").await;
    let problem = eventually("the recorded problem", LIMIT, async || {
        operator.problems().into_iter().next()
    })
    .await;
    assert!(problem.contains("\"nowhere\""), "{problem}");
    let after: Vec<(String, String)> = list_machines(&client)
        .await
        .iter()
        .map(|m| (m.name_any(), m.resource_version().unwrap()))
        .collect();
    assert_eq!(after, before, "no Machine was touched");
    assert_eq!(operator.replacements(), 0);
}
