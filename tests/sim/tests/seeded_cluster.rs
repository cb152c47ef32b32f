//! The seeded source cluster reads back as a real installer-provisioned
//! cluster would, in the API server and in the source vCenter, for each
//! variant (Infrastructure CRD, failure domains, cloud-config format).

use std::collections::BTreeSet;
use std::time::Instant;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret};
use kube::Client;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use serde_json::{Value, json};
use vmi_sim::crds::InfrastructureCrd;
use vmi_sim::seed::{CloudConfigFormat, SeedOptions, SimCluster, SourceFailureDomains};

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

async fn get(client: &Client, r: &ApiResource, namespace: Option<&str>, name: &str) -> Value {
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, r),
        None => Api::all_with(client.clone(), r),
    };
    serde_json::to_value(
        api.get(name)
            .await
            .unwrap_or_else(|e| panic!("{} {name}: {e}", r.kind)),
    )
    .unwrap()
}

async fn list(client: &Client, r: &ApiResource, namespace: &str) -> Vec<Value> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, r);
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|o| serde_json::to_value(o).unwrap())
        .collect()
}

fn infrastructure() -> ApiResource {
    resource(
        "config.openshift.io",
        "v1",
        "Infrastructure",
        "infrastructures",
    )
}

async fn start(options: SeedOptions) -> (SimCluster, Client) {
    let began = Instant::now();
    let cluster = SimCluster::start(options)
        .await
        .expect("the simulated cluster starts");
    eprintln!(
        "simulated cluster seeded in {:?} (control plane {:?})",
        began.elapsed(),
        cluster.plane.startup
    );
    let client = cluster.client().await.unwrap();
    (cluster, client)
}

#[tokio::test]
async fn the_default_cluster_reads_back_as_an_installed_one() {
    let (cluster, client) = start(SeedOptions::default()).await;
    let server = cluster.source.server.clone();
    let infra_id = cluster.options.infra_id.clone();

    let infra = get(&client, &infrastructure(), None, "cluster").await;
    assert_eq!(infra["status"]["infrastructureName"], infra_id);
    assert_eq!(infra["status"]["platformStatus"]["type"], "VSphere");
    let vsphere = &infra["spec"]["platformSpec"]["vsphere"];
    assert_eq!(
        vsphere["vcenters"],
        json!([{"server": server, "port": cluster.source.port, "datacenters": ["datacenter-a"]}])
    );
    assert_eq!(
        vsphere["failureDomains"][0]["name"],
        "generated-failure-domain"
    );
    assert_eq!(
        vsphere["failureDomains"][0]["topology"]["template"],
        cluster.source_inventory.template_path()
    );

    let version = get(
        &client,
        &resource(
            "config.openshift.io",
            "v1",
            "ClusterVersion",
            "clusterversions",
        ),
        None,
        "version",
    )
    .await;
    assert_eq!(version["status"]["desired"]["version"], "4.22.3");
    let cvo = Api::<Deployment>::namespaced(client.clone(), "openshift-cluster-version")
        .get("cluster-version-operator")
        .await
        .unwrap();
    assert_eq!(cvo.spec.unwrap().replicas, Some(1));

    // Credentials: the root secret and four identical component copies.
    let root = Api::<Secret>::namespaced(client.clone(), "kube-system")
        .get("vsphere-creds")
        .await
        .unwrap();
    let data = root.data.clone().unwrap();
    assert_eq!(
        data[&format!("{server}.username")].0,
        cluster.source.username.as_bytes()
    );
    assert_eq!(
        data[&format!("{server}.password")].0,
        cluster.source.password.as_bytes()
    );
    for (ns, name) in [
        ("openshift-machine-api", "vsphere-cloud-credentials"),
        (
            "openshift-cloud-controller-manager",
            "vsphere-cloud-credentials",
        ),
        (
            "openshift-cluster-csi-drivers",
            "vmware-vsphere-cloud-credentials",
        ),
        (
            "openshift-cluster-storage-operator",
            "vsphere-cloud-credentials",
        ),
    ] {
        let copy = Api::<Secret>::namespaced(client.clone(), ns)
            .get(name)
            .await
            .unwrap();
        assert_eq!(
            copy.data.as_ref(),
            Some(&data),
            "{ns}/{name} is a copy of the root secret"
        );
    }

    let config = Api::<ConfigMap>::namespaced(client.clone(), "openshift-config")
        .get("cloud-provider-config")
        .await
        .unwrap();
    let ini = &config.data.unwrap()["config"];
    assert!(
        ini.contains(&format!("[VirtualCenter \"{server}\"]")) && ini.contains("[Workspace]"),
        "{ini}"
    );

    // Machines, their VMs in the source vCenter, and their Nodes.
    let machines = list(
        &client,
        &resource("machine.openshift.io", "v1beta1", "Machine", "machines"),
        "openshift-machine-api",
    )
    .await;
    assert_eq!(machines.len(), 3 + 2);
    let vms: BTreeSet<String> = cluster
        .source
        .govc(&[
            "find",
            "/",
            "-type",
            "m",
            "-runtime.powerState",
            "poweredOn",
        ])
        .unwrap()
        .lines()
        .map(|l| l.rsplit('/').next().unwrap().to_owned())
        .collect();
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    for machine in &machines {
        let name = machine["metadata"]["name"].as_str().unwrap();
        assert_eq!(machine["status"]["phase"], "Running", "{name}");
        assert!(
            vms.contains(name),
            "{name} has a powered-on VM in the source vCenter"
        );
        let node = nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(name))
            .expect("a Node per Machine");
        assert_eq!(
            node.spec.as_ref().unwrap().provider_id.as_deref(),
            machine["spec"]["providerID"].as_str()
        );
        assert_eq!(
            machine["spec"]["providerSpec"]["value"]["workspace"]["server"],
            server
        );
    }
    assert_eq!(vms.len(), 5, "no other VM is powered on");
    // The installer's cluster-id tag, on every VM (the machine API attaches
    // it to the VMs it makes, the installer's destroy finds them by it).
    let category: Value = serde_json::from_str(
        &cluster
            .source
            .govc(&[
                "tags.category.info",
                "-json",
                &format!("openshift-{infra_id}"),
            ])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(category[0]["cardinality"], "SINGLE");
    assert_eq!(category[0]["associable_types"], json!(["VirtualMachine"]));
    let tagged: BTreeSet<String> = cluster
        .source
        .govc(&["tags.attached.ls", &infra_id])
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        tagged.len(),
        5,
        "every seeded VM has the cluster-id tag: {tagged:?}"
    );
    assert!(
        cluster
            .target
            .govc(&["find", "/", "-type", "m", "-name", "ocp-*"])
            .unwrap()
            .trim()
            .is_empty(),
        "nothing on the target yet"
    );

    let workers = &machines
        .iter()
        .filter(|m| {
            m["metadata"]["labels"]["machine.openshift.io/cluster-api-machine-role"] == "worker"
        })
        .collect::<Vec<_>>();
    assert!(
        workers
            .iter()
            .all(|m| m["metadata"]["ownerReferences"][0]["name"] == format!("{infra_id}-worker-0"))
    );
    let set = get(
        &client,
        &resource(
            "machine.openshift.io",
            "v1beta1",
            "MachineSet",
            "machinesets",
        ),
        Some("openshift-machine-api"),
        &format!("{infra_id}-worker-0"),
    )
    .await;
    assert_eq!(
        (
            set["spec"]["replicas"].as_i64(),
            set["status"]["readyReplicas"].as_i64()
        ),
        (Some(2), Some(2))
    );
    let cpms = get(
        &client,
        &resource(
            "machine.openshift.io",
            "v1",
            "ControlPlaneMachineSet",
            "controlplanemachinesets",
        ),
        Some("openshift-machine-api"),
        "cluster",
    )
    .await;
    assert_eq!(cpms["spec"]["state"], "Active");
    assert_eq!(
        cpms["spec"]["template"]["machines_v1beta1_machine_openshift_io"]["failureDomains"]["vsphere"],
        json!([{"name": "generated-failure-domain"}])
    );
    assert_eq!(cpms["status"]["readyReplicas"], 3);

    let operators = Api::<DynamicObject>::all_with(
        client.clone(),
        &resource(
            "config.openshift.io",
            "v1",
            "ClusterOperator",
            "clusteroperators",
        ),
    )
    .list(&ListParams::default())
    .await
    .unwrap()
    .items;
    assert!(operators.len() >= 10);
    for operator in operators {
        let conditions = &operator.data["status"]["conditions"];
        let status = |t: &str| {
            conditions
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == t)
                .map(|c| c["status"].clone())
        };
        assert_eq!(
            (status("Available"), status("Degraded")),
            (Some(json!("True")), Some(json!("False"))),
            "{:?}",
            operator.metadata.name
        );
    }

    // The vSphere components, found by the selectors vmi will use.
    for (ns, selector) in [
        ("openshift-machine-api", "k8s-app=machine-api-operator"),
        ("openshift-machine-api", "api=clusterapi,k8s-app=controller"),
        (
            "openshift-cloud-controller-manager",
            "k8s-app=vsphere-cloud-controller-manager",
        ),
        (
            "openshift-cluster-csi-drivers",
            "name=vmware-vsphere-csi-driver-operator",
        ),
        (
            "openshift-cluster-csi-drivers",
            "app=vmware-vsphere-csi-driver-controller",
        ),
        (
            "openshift-cluster-storage-operator",
            "name=vsphere-problem-detector-operator",
        ),
    ] {
        let found = Api::<Deployment>::namespaced(client.clone(), ns)
            .list(&ListParams::default().labels(selector))
            .await
            .unwrap();
        assert_eq!(found.items.len(), 1, "{ns} {selector}");
    }
    let node_driver = Api::<DaemonSet>::namespaced(client.clone(), "openshift-cluster-csi-drivers")
        .list(&ListParams::default().labels("app=vmware-vsphere-csi-driver-node"))
        .await
        .unwrap();
    assert_eq!(node_driver.items.len(), 1);

    // The legacy (4.22 Default) Infrastructure CRD refuses a second vCenter.
    let mut two = vsphere["vcenters"].clone();
    two.as_array_mut()
        .unwrap()
        .push(json!({"server": cluster.target.server, "datacenters": ["datacenter-b"]}));
    let refused = Api::<DynamicObject>::all_with(client.clone(), &infrastructure())
        .patch(
            "cluster",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"platformSpec": {"vsphere": {"vcenters": two}}}})),
        )
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("vcenters cannot be added or removed once set"),
        "{refused}"
    );
}

#[tokio::test]
async fn explicit_failure_domains_yaml_config_and_the_day2_crd() {
    let (cluster, client) = start(SeedOptions {
        failure_domains: SourceFailureDomains::Explicit,
        cloud_config: CloudConfigFormat::Yaml,
        infrastructure_crd: InfrastructureCrd::MultiVCenterDay2,
        workers: 1,
        ..SeedOptions::default()
    })
    .await;
    let server = cluster.source.server.clone();

    let config = Api::<ConfigMap>::namespaced(client.clone(), "openshift-config")
        .get("cloud-provider-config")
        .await
        .unwrap();
    let yaml: Value = serde_saphyr::from_str(&config.data.unwrap()["config"]).unwrap();
    assert_eq!(
        yaml["vcenter"][&server]["datacenters"],
        json!(["datacenter-a"])
    );
    assert_eq!(yaml["global"]["secretName"], "vsphere-creds");

    let infra = get(&client, &infrastructure(), None, "cluster").await;
    assert_eq!(
        infra["spec"]["platformSpec"]["vsphere"]["failureDomains"][0]["region"],
        "region-a"
    );
    let region_tags = cluster
        .source
        .govc(&["tags.attached.ls", "-r", "/datacenter-a"])
        .unwrap();
    assert!(region_tags.contains("region-a"), "{region_tags}");
    let zone_tags = cluster
        .source
        .govc(&["tags.attached.ls", "-r", "/datacenter-a/host/cluster-a"])
        .unwrap();
    assert!(zone_tags.contains("zone-a"), "{zone_tags}");

    // With VSphereMultiVCenterDay2, adding a vCenter is allowed, swapping one for another in one update is not.
    let infrastructures = Api::<DynamicObject>::all_with(client.clone(), &infrastructure());
    let swap = json!({"spec": {"platformSpec": {"vsphere": {"vcenters": [{"server": cluster.target.server, "datacenters": ["datacenter-b"]}]}}}});
    let refused = infrastructures
        .patch("cluster", &PatchParams::default(), &Patch::Merge(swap))
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("Cannot add and remove vCenters at the same time"),
        "{refused}"
    );
    let add = json!({"spec": {"platformSpec": {"vsphere": {"vcenters": [
        {"server": server, "port": cluster.source.port, "datacenters": ["datacenter-a"]},
        {"server": cluster.target.server, "datacenters": ["datacenter-b"]}]}}}});
    infrastructures
        .patch("cluster", &PatchParams::default(), &Patch::Merge(add))
        .await
        .expect("adding a vCenter is allowed");
}
