//! Steps 11–16 on the seeded cluster, with the machine API and control
//! plane machine set operator stand-ins cloning and destroying VMs in the
//! two vcsim vCenters: the machines move, the source is removed only once
//! nothing runs on it, and each step's refusals and stalls name what is
//! wrong and change nothing.

mod support;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Node, PersistentVolume, Secret};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use serde_json::json;
use support::{run_step, step_status, step_vmi_with};
use vmi_api::Step;
use vmi_api::migration::MigrationPath;
use vmi_sim::cpms_operator::CpmsOperator;
use vmi_sim::crds::InfrastructureCrd;
use vmi_sim::credential_operator::CredentialOperator;
use vmi_sim::machine_api::MachineApi;
use vmi_sim::seed::{CloudConfigFormat, SeedOptions, SimCluster};
use vmi_step_runner::Action;
use vmi_step_runner::target::VmiRef;

const NS: &str = "openshift-machine-api";

fn resource(group: &str, version: &str, kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

fn machines(client: &kube::Client) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        NS,
        &resource("machine.openshift.io", "v1beta1", "Machine"),
    )
}

fn machine_sets(client: &kube::Client) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        NS,
        &resource("machine.openshift.io", "v1beta1", "MachineSet"),
    )
}

/// (name, role, server) of every Machine.
async fn machine_servers(client: &kube::Client) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = machines(client)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|m| {
            (
                m.metadata.name.clone().unwrap(),
                m.metadata.labels.clone().unwrap_or_default()
                    ["machine.openshift.io/cluster-api-machine-role"]
                    .clone(),
                m.data["spec"]["providerSpec"]["value"]["workspace"]["server"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

async fn infra(client: &kube::Client) -> DynamicObject {
    Api::<DynamicObject>::all_with(
        client.clone(),
        &resource("config.openshift.io", "v1", "Infrastructure"),
    )
    .get("cluster")
    .await
    .unwrap()
}

fn servers(infra: &DynamicObject, list: &str) -> Vec<String> {
    infra.data["spec"]["platformSpec"]["vsphere"][list]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["server"].as_str().unwrap().to_owned())
        .collect()
}

/// VM names in a vcsim folder.
fn vms_in(vcenter: &vmi_sim::vcsim::VCenterSim, folder: &str) -> Vec<String> {
    let mut names: Vec<String> = vcenter
        .govc(&["ls", "-t", "VirtualMachine", folder])
        .unwrap_or_default()
        .lines()
        .map(|l| l.rsplit('/').next().unwrap().to_owned())
        .filter(|n| !n.contains("rhcos"))
        .collect();
    names.sort();
    names
}

async fn vmi_for(cluster: &SimCluster, client: &kube::Client, path: MigrationPath) -> VmiRef {
    step_vmi_with(cluster, client, Some(path), &Step::ALL, |vmi| {
        vmi["metadata"]["annotations"] = json!({
            "vmi.config.openshift.io/monitor-window-seconds": "1",
            "vmi.config.openshift.io/stall-seconds": "60",
        });
    })
    .await
}

async fn run_all(cluster: &SimCluster, vmi: &VmiRef, steps: &[Step]) {
    for step in steps {
        if let Err(e) = run_step(cluster, vmi, Action::Step(*step)).await {
            panic!("step {} failed: {e}", step.name());
        }
    }
}

/// Steps 03–10: the cluster knows the target; nothing has moved yet.
const CONFIG_STEPS: [Step; 8] = [
    Step::BackupCpms,
    Step::UpdateSecrets,
    Step::CreateTags,
    Step::CreateFolder,
    Step::UpdateInfra,
    Step::UpdateCloudConfig,
    Step::RestartPods,
    Step::MonitorPods,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_machines_move_and_the_source_goes_only_when_empty() {
    let cluster = SimCluster::start(SeedOptions {
        infrastructure_crd: InfrastructureCrd::MultiVCenterDay2,
        cloud_config: CloudConfigFormat::Yaml,
        ..SeedOptions::default()
    })
    .await
    .unwrap();
    let client = cluster.client().await.unwrap();
    let _credentials = CredentialOperator::start(client.clone());
    let cpms = CpmsOperator::start(client.clone());
    let _machine_api = MachineApi::start(
        client.clone(),
        cluster.plane.kubelet_api(),
        &[&cluster.source, &cluster.target],
    );
    let vmi = vmi_for(&cluster, &client, MigrationPath::Native).await;
    let (source, target) = (cluster.source.server.clone(), cluster.target.server.clone());
    run_all(&cluster, &vmi, &CONFIG_STEPS).await;

    // 11: two workers on the target, in the infrastructure id's folder.
    run_all(&cluster, &vmi, &[Step::CreateMachinesets]).await;
    let set = machine_sets(&client)
        .get("ocp-x7k2p-worker-target-1")
        .await
        .unwrap();
    assert_eq!(set.data["spec"]["replicas"], 2);
    let workers_on_target = machine_servers(&client)
        .await
        .into_iter()
        .filter(|(_, role, server)| role == "worker" && *server == target)
        .count();
    assert_eq!(workers_on_target, 2);
    assert_eq!(
        vms_in(&cluster.target, "/datacenter-b/vm/ocp-x7k2p").len(),
        2
    );
    // A second run creates nothing.
    run_all(&cluster, &vmi, &[Step::CreateMachinesets]).await;
    let entry = step_status(&client, &vmi, Step::CreateMachinesets).await;
    assert!(entry.changes.is_empty(), "{entry:?}");
    assert!(entry.result.unwrap().contains("nothing changed"));
    let again = machine_sets(&client)
        .get("ocp-x7k2p-worker-target-1")
        .await
        .unwrap();
    assert_eq!(
        again.data["spec"], set.data["spec"],
        "the MachineSet's spec is untouched"
    );

    // 15 before the machines have left: refused, naming them, nothing changed.
    let before = infra(&client).await.metadata.resource_version;
    let err = run_step(&cluster, &vmi, Action::Step(Step::RemoveSource))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("is still in use"), "{err}");
    assert!(err.contains("ocp-x7k2p-master-0"), "{err}");
    assert_eq!(infra(&client).await.metadata.resource_version, before);

    // 12: the control plane rolls to the target, one machine at a time.
    run_all(&cluster, &vmi, &[Step::RecreateCpms]).await;
    let masters: Vec<_> = machine_servers(&client)
        .await
        .into_iter()
        .filter(|(_, role, _)| role == "master")
        .collect();
    assert_eq!(masters.len(), 3, "{masters:?}");
    assert!(masters.iter().all(|(_, _, s)| *s == target), "{masters:?}");
    assert_eq!(cpms.replacements(), 3);
    let status = Api::<vmi_api::VSphereMigrationInfra>::namespaced(client.clone(), &vmi.namespace)
        .get_status(&vmi.name)
        .await
        .unwrap()
        .status
        .unwrap();
    let progress = status.progress.unwrap();
    assert_eq!(
        progress.control_plane.map(|c| (c.done, c.total)),
        Some((3, 3))
    );
    assert_eq!(progress.workers.map(|c| (c.done, c.total)), Some((2, 2)));

    // 13: no volume, skipped. 14: the source workers go.
    run_all(
        &cluster,
        &vmi,
        &[Step::MigrateVolumes, Step::ScaleDownSource],
    )
    .await;
    assert_eq!(
        step_status(&client, &vmi, Step::MigrateVolumes).await.state,
        vmi_api::migration::StepState::Skipped
    );
    assert!(
        machine_sets(&client)
            .get_opt("ocp-x7k2p-worker-0")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        machine_servers(&client)
            .await
            .iter()
            .all(|(_, _, s)| *s == target)
    );
    assert_eq!(
        vms_in(&cluster.source, "/datacenter-a/vm/ocp-x7k2p"),
        Vec::<String>::new(),
        "no VM of the cluster is left on the source"
    );
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        !nodes.items.iter().any(
            |n| n.metadata.name.as_deref().unwrap().contains("worker-0-")
                || n.metadata.name.as_deref().unwrap().ends_with("master-0")
        ),
        "the source Nodes are gone"
    );

    // 15: the source leaves the Infrastructure, the configuration and the secrets.
    run_all(&cluster, &vmi, &[Step::RemoveSource]).await;
    let after = infra(&client).await;
    assert_eq!(servers(&after, "vcenters"), [target.as_str()]);
    assert_eq!(servers(&after, "failureDomains"), [target.as_str()]);
    let config = Api::<ConfigMap>::namespaced(client.clone(), "openshift-config")
        .get("cloud-provider-config")
        .await
        .unwrap()
        .data
        .unwrap()["config"]
        .clone();
    assert!(
        !config.contains(&source) && config.contains(&target),
        "{config}"
    );
    let root: BTreeMap<_, _> = Api::<Secret>::namespaced(client.clone(), "kube-system")
        .get("vsphere-creds")
        .await
        .unwrap()
        .data
        .unwrap();
    assert!(
        !root.keys().any(|k| k.starts_with(&source)),
        "{:?}",
        root.keys()
    );
    assert!(root.contains_key(&format!("{target}.password")));
    // A second run finds everything done.
    run_all(&cluster, &vmi, &[Step::RemoveSource]).await;
    assert!(
        step_status(&client, &vmi, Step::RemoveSource)
            .await
            .result
            .unwrap()
            .contains("nothing changed")
    );

    // 16: the final checks pass.
    run_all(&cluster, &vmi, &[Step::RestoreCvo]).await;
    let entry = step_status(&client, &vmi, Step::RestoreCvo).await;
    assert!(
        entry
            .findings
            .iter()
            .any(|f| f.contains("no Machine or Node left")),
        "{entry:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_stalls_name_what_is_wrong() {
    let cluster = SimCluster::start(SeedOptions::default()).await.unwrap();
    let client = cluster.client().await.unwrap();
    let _credentials = CredentialOperator::start(client.clone());
    let cpms = CpmsOperator::start(client.clone());
    let _machine_api = MachineApi::start(
        client.clone(),
        cluster.plane.kubelet_api(),
        &[&cluster.source, &cluster.target],
    );
    let vmi = step_vmi_with(
        &cluster,
        &client,
        Some(MigrationPath::Legacy),
        &Step::ALL,
        |vmi| {
            vmi["metadata"]["annotations"] = json!({"vmi.config.openshift.io/stall-seconds": "4"});
        },
    )
    .await;
    // Everything but the credentials: the target machines cannot be cloned.
    run_all(
        &cluster,
        &vmi,
        &[
            Step::DisableCvo,
            Step::AllowMultiVcenter,
            Step::BackupCpms,
            Step::CreateTags,
            Step::CreateFolder,
            Step::UpdateInfra,
        ],
    )
    .await;

    // 14 with no worker on the target: refused, nothing changed.
    let set_before = machine_sets(&client)
        .get("ocp-x7k2p-worker-0")
        .await
        .unwrap();
    let err = run_step(&cluster, &vmi, Action::Step(Step::ScaleDownSource))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no worker Machine runs on a target vCenter"),
        "{err}"
    );
    assert_eq!(
        machine_sets(&client)
            .get("ocp-x7k2p-worker-0")
            .await
            .unwrap()
            .metadata
            .resource_version,
        set_before.metadata.resource_version
    );

    // 11 without the target credentials: the Machine fails, and is named.
    let err = run_step(&cluster, &vmi, Action::Step(Step::CreateMachinesets))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Machine openshift-machine-api/ocp-x7k2p-worker-target-1-")
            && err.contains("Failed"),
        "{err}"
    );
    // Its undo removes the MachineSet and its Machines.
    run_step(&cluster, &vmi, Action::Undo(Step::CreateMachinesets))
        .await
        .unwrap();
    assert!(
        machine_sets(&client)
            .get_opt("ocp-x7k2p-worker-target-1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !machine_servers(&client)
            .await
            .iter()
            .any(|(name, _, _)| name.starts_with("ocp-x7k2p-worker-target-1")),
    );

    // A MachineSet of that name that vmi did not create is never taken over.
    let mut foreign = set_before.clone();
    foreign.metadata = kube::api::ObjectMeta {
        name: Some("ocp-x7k2p-worker-target-1".into()),
        namespace: Some(NS.into()),
        ..Default::default()
    };
    foreign.data["spec"]["replicas"] = json!(0);
    machine_sets(&client)
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    let err = run_step(&cluster, &vmi, Action::Step(Step::CreateMachinesets))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("already exists and was not created by vmi"),
        "{err}"
    );

    // 12 with the control plane machine set operator gone: the stall names
    // the machine the rollout waits for.
    drop(cpms);
    let err = run_step(&cluster, &vmi, Action::Step(Step::RecreateCpms))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("made no progress for"), "{err}");
    assert!(
        err.contains("has not started replacing Machine openshift-machine-api/ocp-x7k2p-master-0"),
        "{err}"
    );

    // 13 with a vSphere CSI volume: refused, naming it.
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": "pvc-1"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "csi": {"driver": "csi.vsphere.vmware.com", "volumeHandle": "fcd-1"}},
    }))
    .unwrap();
    Api::<PersistentVolume>::all(client.clone())
        .create(&PostParams::default(), &pv)
        .await
        .unwrap();
    let err = run_step(&cluster, &vmi, Action::Step(Step::MigrateVolumes))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("PV pvc-1 (unclaimed)"), "{err}");

    // 16 before the source is removed: refused.
    let err = run_step(&cluster, &vmi, Action::Step(Step::RestoreCvo))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("still names the source vCenter"), "{err}");
}
