//! What the vCenter client tests share: simulated vCenters with the seeded
//! inventory, connecting to them, and capturing every log line.
#![allow(dead_code)] // each test crate uses a different part

use std::io::Write;
use std::sync::{Arc, Mutex};

use vmi_sim::inventory::Inventory;
use vmi_sim::vcsim::VCenterSim;
use vmi_step_runner::vsphere::{Credentials, MoRef, Trust, VCenter, VSphereError};

/// Everything logged while the guard lives, at debug level.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        let sink = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A simulated source vCenter with the seeded inventory.
pub fn simulator(role: &str, password: &str) -> VCenterSim {
    let vcenter = VCenterSim::start(role, "administrator", password).unwrap();
    Inventory::source("ocp-x7k2p").create_in(&vcenter).unwrap();
    vcenter
}

/// A simulated target vCenter with the seeded inventory.
pub fn target_simulator(role: &str, password: &str) -> VCenterSim {
    let vcenter = VCenterSim::start(role, "administrator", password).unwrap();
    Inventory::target().create_in(&vcenter).unwrap();
    vcenter
}

pub async fn connect(
    sim: &VCenterSim,
    trust: Trust,
    password: &str,
) -> Result<VCenter, VSphereError> {
    VCenter::connect(
        &sim.server,
        Some(sim.port),
        &trust,
        Credentials::new(&sim.username, password),
    )
    .await
}

/// Connects to `sim` with its own CA and password.
pub async fn connect_trusted(sim: &VCenterSim) -> VCenter {
    connect(sim, Trust::CaBundle(sim.ca_pem.clone()), &sim.password)
        .await
        .unwrap()
}

/// The source inventory's cluster folder and resource pool, where helper
/// VMs go.
pub async fn helper_placement(vcenter: &VCenter) -> (MoRef, MoRef) {
    let folder = vcenter
        .find_by_inventory_path("/datacenter-a/vm/ocp-x7k2p")
        .await
        .unwrap()
        .unwrap();
    let pool = vcenter
        .find_by_inventory_path("/datacenter-a/host/cluster-a/Resources")
        .await
        .unwrap()
        .unwrap();
    (folder, pool)
}

/// The object at `path`, which must exist.
pub async fn lookup(vcenter: &VCenter, path: &str) -> MoRef {
    vcenter
        .find_by_inventory_path(path)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{path} exists"))
}

/// A vmi for steps to work on, made from `deploy/samples/vmi.yaml` in a new
/// namespace of `cluster`, with a status that has an entry for `steps` (as
/// the orchestrator writes before it starts their Jobs) and, when given,
/// the migration path preflight chose.
pub async fn step_vmi(
    cluster: &vmi_sim::seed::SimCluster,
    client: &kube::Client,
    path: Option<vmi_api::migration::MigrationPath>,
    steps: &[vmi_api::Step],
) -> vmi_step_runner::target::VmiRef {
    step_vmi_with(cluster, client, path, steps, |_| {}).await
}

/// [`step_vmi`] with `edit` applied to the vmi (as JSON) before it is
/// created, for specs with mistakes in them.
pub async fn step_vmi_with(
    cluster: &vmi_sim::seed::SimCluster,
    client: &kube::Client,
    path: Option<vmi_api::migration::MigrationPath>,
    steps: &[vmi_api::Step],
    edit: impl FnOnce(&mut serde_json::Value),
) -> vmi_step_runner::target::VmiRef {
    use kube::api::{Api, Patch, PatchParams, PostParams};
    use vmi_api::VSphereMigrationInfra;

    let namespace = cluster.plane.namespace(client, "vmi").await.unwrap();
    let mut sample: serde_json::Value =
        serde_saphyr::from_str(include_str!("../../../deploy/samples/vmi.yaml")).unwrap();
    sample["metadata"] = serde_json::json!({"name": "move", "namespace": namespace});
    sample["spec"]["state"] = serde_json::json!("Running");
    point_at_simulated_target(cluster, client, &namespace, &mut sample).await;
    edit(&mut sample);
    let vmi: VSphereMigrationInfra = serde_json::from_value(sample).unwrap();
    let api: Api<VSphereMigrationInfra> = Api::namespaced(client.clone(), &namespace);
    api.create(&PostParams::default(), &vmi).await.unwrap();
    let entries: Vec<serde_json::Value> = steps
        .iter()
        .map(|step| {
            let index = vmi_api::Step::ALL.iter().position(|s| s == step).unwrap();
            serde_json::json!({
                "index": index, "name": step.name(),
                "jobName": format!("vmi-step-{index:02}-{}", step.name()),
                "attempt": 1, "state": "Running",
            })
        })
        .collect();
    let mut status = serde_json::json!({"phase": "Running", "steps": entries});
    if let Some(path) = path {
        status["migrationPath"] = serde_json::json!({"path": path, "reason": "set by the test"});
    }
    api.patch_status(
        "move",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": status })),
    )
    .await
    .unwrap();
    vmi_step_runner::target::VmiRef {
        namespace,
        name: "move".into(),
    }
}

/// Runs `action` of the step-runner on `vmi` with `cluster`'s admin
/// kubeconfig, as `vmi-step` does.
pub async fn run_step(
    cluster: &vmi_sim::seed::SimCluster,
    vmi: &vmi_step_runner::target::VmiRef,
    action: vmi_step_runner::Action,
) -> Result<(), vmi_step_runner::RunError> {
    vmi_step_runner::run(&vmi_step_runner::cli::Invocation {
        action,
        vmi: vmi.clone(),
        kubeconfig: Some(cluster.plane.kubeconfig().to_owned()),
        log_format: vmi_step_runner::logging::LogFormat::Text,
    })
    .await
}

/// The status entry of `step` in `vmi`.
pub async fn step_status(
    client: &kube::Client,
    vmi: &vmi_step_runner::target::VmiRef,
    step: vmi_api::Step,
) -> vmi_api::migration::StepStatus {
    let api: kube::api::Api<vmi_api::VSphereMigrationInfra> =
        kube::api::Api::namespaced(client.clone(), &vmi.namespace);
    api.get_status(&vmi.name)
        .await
        .unwrap()
        .status
        .unwrap()
        .steps
        .into_iter()
        .find(|s| s.name == step.name())
        .unwrap()
}

/// Rewrites a vmi spec to move `cluster` to its simulated target vCenter,
/// and creates the credentials Secret it names.
async fn point_at_simulated_target(
    cluster: &vmi_sim::seed::SimCluster,
    client: &kube::Client,
    namespace: &str,
    vmi: &mut serde_json::Value,
) {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, PostParams};

    let (target, inventory) = (&cluster.target, &cluster.target_inventory);
    vmi["spec"]["source"] = serde_json::json!({
        "server": cluster.source.server,
        "tls": {"thumbprint": cluster.source.thumbprint_sha256},
    });
    vmi["spec"]["vcenters"] = serde_json::json!([{
        "server": target.server,
        "port": target.port,
        "datacenters": [inventory.datacenter],
        "tls": {"thumbprint": target.thumbprint_sha256},
    }]);
    vmi["spec"]["failureDomains"] = serde_json::json!([{
        "name": "target-1", "region": "region-b", "zone": "zone-b", "server": target.server,
        "topology": {
            "datacenter": inventory.datacenter,
            "computeCluster": inventory.cluster_path(),
            "networks": [inventory.network_path()],
            "datastore": inventory.datastore_path(),
            "template": format!("/{}/vm/{}", inventory.datacenter, inventory.template),
        },
    }]);
    vmi["spec"]["workers"]["failureDomains"] =
        serde_json::json!([{"name": "target-1", "replicas": 2}]);
    vmi["spec"]["controlPlane"]["failureDomains"] = serde_json::json!(["target-1"]);
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": vmi["spec"]["credentialsSecret"]["name"], "namespace": namespace},
        "stringData": {
            format!("{}.username", target.server): target.username,
            format!("{}.password", target.server): target.password,
        },
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

/// Deterministic bytes that are not all alike, from `seed`.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

/// The SHA-256 of `bytes` in lower-case hex, as vmi records it.
pub fn sha256(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `path` on the seeded source datastore `datastore-a` of `datacenter-a`.
pub fn file(path: &str) -> vmi_step_runner::vsphere::datastore::DatastoreFile {
    vmi_step_runner::vsphere::datastore::DatastoreFile {
        datacenter: "datacenter-a".into(),
        datastore: "datastore-a".into(),
        path: path.into(),
    }
}

/// Uploads `len` bytes of [`pattern`] from `seed` to `file`; returns them.
pub async fn upload_pattern(
    vcenter: &VCenter,
    file: &vmi_step_runner::vsphere::datastore::DatastoreFile,
    len: usize,
    seed: u32,
) -> Vec<u8> {
    let bytes = pattern(len, seed);
    vcenter
        .upload(
            file,
            std::io::Cursor::new(bytes.clone()),
            bytes.len() as u64,
        )
        .await
        .unwrap();
    bytes
}
