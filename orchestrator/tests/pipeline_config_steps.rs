//! Steps 00–10 of the real pipeline, run by `vmi-orchestrator` as Jobs of
//! `vmi-step` on the seeded cluster, with the step pods' service account
//! bound to `deploy/base/rbac/step-runner.yaml`: on the legacy path with an INI
//! cloud-provider-config, and on the native path with a YAML one. The vmi
//! pauses before step 11; by then the cluster knows both vCenters, the tags
//! and folder are in vcsim, cloud-provider-config was edited exactly once,
//! and the cluster-version operator is down only on the legacy path.

mod programs;

use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::json;
use vmi_api::VSphereMigrationInfra;
use vmi_api::migration::{MigrationPath, Phase, StepState};
use vmi_sim::Kubelet;
use vmi_sim::children;
use vmi_sim::cpms_operator::CpmsOperator;
use vmi_sim::crds::InfrastructureCrd;
use vmi_sim::credential_operator::CredentialOperator;
use vmi_sim::seed::{CloudConfigFormat, SeedOptions, SimCluster};

const SAMPLE: &str = include_str!("../../deploy/samples/vmi.yaml");
const ROLE: &str = include_str!("../../deploy/base/rbac/step-runner.yaml");

async fn run(crd: InfrastructureCrd, format: CloudConfigFormat, expected: MigrationPath) {
    let step = programs::built().step;
    let cluster = SimCluster::start(SeedOptions {
        infrastructure_crd: crd,
        cloud_config: format,
        ..SeedOptions::default()
    })
    .await
    .unwrap();
    let client = cluster.client().await.unwrap();
    let _credentials = CredentialOperator::start(client.clone());
    let _cpms = CpmsOperator::start(client.clone());
    let edits = vmi_sim::disruption::CloudConfigRollouts::start(client.clone());
    let namespace = cluster.plane.namespace(&client, "vmi").await.unwrap();

    // The step pods' identity and exactly the roles shipped in deploy/.
    vmi_sim::migration::bind_service_account(&client, &namespace, "vmi-step-runner", ROLE)
        .await
        .unwrap();

    // The vmi, pointed at the simulated target, pausing before the machines move.
    let (target, inventory) = (&cluster.target, &cluster.target_inventory);
    let mut vmi: serde_json::Value = serde_saphyr::from_str(SAMPLE).unwrap();
    vmi["metadata"] = json!({"name": "move", "namespace": namespace,
        "annotations": {"vmi.config.openshift.io/monitor-window-seconds": "2"}});
    vmi["spec"]["state"] = json!("Running");
    vmi["spec"]["pauseBefore"] = json!(["create-machinesets"]);
    vmi["spec"]["source"] = json!({"server": cluster.source.server, "tls": {"thumbprint": cluster.source.thumbprint_sha256}});
    vmi["spec"]["vcenters"] = json!([{"server": target.server, "port": target.port,
        "datacenters": [inventory.datacenter], "tls": {"thumbprint": target.thumbprint_sha256}}]);
    vmi["spec"]["failureDomains"] = json!([{"name": "target-1", "region": "region-b", "zone": "zone-b",
        "server": target.server, "topology": {"datacenter": inventory.datacenter,
        "computeCluster": inventory.cluster_path(), "networks": [inventory.network_path()],
        "datastore": inventory.datastore_path(),
        "template": format!("/{}/vm/{}", inventory.datacenter, inventory.template)}}]);
    vmi["spec"]["workers"]["failureDomains"] = json!([{"name": "target-1", "replicas": 2}]);
    vmi["spec"]["controlPlane"]["failureDomains"] = json!(["target-1"]);
    Api::<Secret>::namespaced(client.clone(), &namespace)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "vcenter-b-credentials"},
                "stringData": {format!("{}.username", target.server): target.username,
                    format!("{}.password", target.server): target.password}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let vmis: Api<VSphereMigrationInfra> = Api::namespaced(client.clone(), &namespace);
    vmis.create(
        &PostParams::default(),
        &serde_json::from_value(vmi).unwrap(),
    )
    .await
    .unwrap();

    // The kubelet stand-in runs the step pods; the orchestrator runs the pipeline.
    let _kubelet = Kubelet::start(&cluster.plane, client.clone(), &namespace, Vec::new())
        .await
        .unwrap();
    let dir = children::temp_dir("e2e").unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_vmi-orchestrator"));
    command
        .arg("run")
        .arg("--kubeconfig")
        .arg(cluster.plane.kubeconfig())
        .args(["--namespace", &namespace, "--image", "vmi:test"])
        .arg("--step-command")
        .arg(&step)
        .args([
            "--lease-namespace",
            &namespace,
            "--lease-seconds",
            "3",
            "--identity",
            "e2e",
        ])
        .args(["--metrics-address", "127.0.0.1:0"]);
    let orchestrator =
        children::spawn("orchestrator", command, &dir.join("orchestrator.log")).unwrap();

    let started = Instant::now();
    let status = loop {
        let status = vmis
            .get_status("move")
            .await
            .unwrap()
            .status
            .unwrap_or_default();
        if matches!(status.phase, Some(Phase::Paused) | Some(Phase::Failed)) {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no pause after 10 min: {status:?}\n{}",
            orchestrator.log_tail(100)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let took = started.elapsed();
    assert_eq!(
        status.phase,
        Some(Phase::Paused),
        "{status:#?}\n{}",
        orchestrator.log_tail(100)
    );
    assert_eq!(
        status.migration_path.as_ref().map(|d| d.path),
        Some(expected)
    );
    let states: Vec<(String, StepState)> = status
        .steps
        .iter()
        .map(|s| (s.name.clone(), s.state))
        .collect();
    assert_eq!(states.len(), 11, "{states:?}");
    for (name, state) in &states {
        let skipped = expected == MigrationPath::Native
            && (name == "disable-cvo" || name == "allow-multi-vcenter");
        assert_eq!(
            *state,
            if skipped {
                StepState::Skipped
            } else {
                StepState::Succeeded
            },
            "{name}: {states:?}"
        );
    }

    // The cluster knows both vCenters.
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "config.openshift.io",
        "v1",
        "Infrastructure",
    ));
    let infra = Api::<DynamicObject>::all_with(client.clone(), &resource)
        .get("cluster")
        .await
        .unwrap();
    let servers: Vec<&str> = infra.data["spec"]["platformSpec"]["vsphere"]["vcenters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["server"].as_str().unwrap())
        .collect();
    assert_eq!(
        servers,
        [cluster.source.server.as_str(), target.server.as_str()]
    );
    let root = Api::<Secret>::namespaced(client.clone(), "kube-system")
        .get("vsphere-creds")
        .await
        .unwrap();
    assert!(
        root.data
            .unwrap()
            .contains_key(&format!("{}.password", target.server))
    );
    let config = Api::<ConfigMap>::namespaced(client.clone(), "openshift-config")
        .get("cloud-provider-config")
        .await
        .unwrap()
        .data
        .unwrap()["config"]
        .clone();
    assert!(config.contains(&target.server), "{config}");
    assert_eq!(edits.count(), 1, "exactly one cloud-provider-config edit");
    // Tags and folder in the target vcsim.
    assert_eq!(
        target
            .govc(&["tags.attached.ls", "-r", "/datacenter-b/host/cluster-b"])
            .unwrap()
            .trim(),
        "zone-b"
    );
    assert!(
        target
            .govc(&["ls", "/datacenter-b/vm"])
            .unwrap()
            .contains("/datacenter-b/vm/ocp-x7k2p")
    );
    // The CVO is down only on the legacy path.
    let cvo = Api::<Deployment>::namespaced(client.clone(), "openshift-cluster-version")
        .get("cluster-version-operator")
        .await
        .unwrap();
    let replicas = cvo.spec.unwrap().replicas;
    match expected {
        MigrationPath::Legacy => assert_eq!(replicas, Some(0)),
        MigrationPath::Native => assert_eq!(replicas, Some(1)),
    }
    println!(
        "steps 00-10 on the {expected:?} path took {:.1} s",
        took.as_secs_f64()
    );
    children::stop(&[orchestrator.pid], Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_path_with_ini() {
    run(
        InfrastructureCrd::Release422Default,
        CloudConfigFormat::Ini,
        MigrationPath::Legacy,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_path_with_yaml() {
    run(
        InfrastructureCrd::MultiVCenterDay2,
        CloudConfigFormat::Yaml,
        MigrationPath::Native,
    )
    .await;
}
