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
