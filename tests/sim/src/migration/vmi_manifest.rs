//! The vmi the rig applies: `deploy/samples/vmi.yaml` pointed at the
//! simulated target (one failure domain `target-1` holding the workers and
//! the control plane), with the source pinned by thumbprint.

use serde_json::{Value, json};

use crate::inventory::Inventory;
use crate::migration::{RigError, VmiOptions};
use crate::vcsim::VCenterSim;

/// The annotation that sets the monitor window of steps 10 and 15.
pub const MONITOR_WINDOW_ANNOTATION: &str = "vmi.config.openshift.io/monitor-window-seconds";
/// The target failure domain's name.
pub const TARGET_FAILURE_DOMAIN: &str = "target-1";

/// What the manifest points at.
pub struct Endpoints<'a> {
    /// The source vCenter.
    pub source: &'a VCenterSim,
    /// The target vCenter.
    pub target: &'a VCenterSim,
    /// The target's inventory names.
    pub target_inventory: &'a Inventory,
    /// Worker machines of the source cluster.
    pub source_workers: u32,
}

/// The vmi manifest: `sample` with the rig's namespace, name, state,
/// pauses, monitor window and the simulated vCenters.
pub fn build(
    sample: &str,
    namespace: &str,
    options: &VmiOptions,
    endpoints: &Endpoints<'_>,
) -> Result<Value, RigError> {
    let (source, target, inventory) = (
        endpoints.source,
        endpoints.target,
        endpoints.target_inventory,
    );
    let mut vmi: Value = serde_saphyr::from_str(sample)
        .map_err(|e| RigError::Invalid(format!("deploy/samples/vmi.yaml is not YAML: {e}")))?;
    if !vmi["spec"].is_object() {
        return Err(RigError::Invalid(
            "deploy/samples/vmi.yaml has no spec".into(),
        ));
    }
    vmi["metadata"] = json!({"name": options.name, "namespace": namespace});
    if let Some(seconds) = options.monitor_window_seconds {
        vmi["metadata"]["annotations"] = json!({MONITOR_WINDOW_ANNOTATION: seconds.to_string()});
    }
    let spec = &mut vmi["spec"];
    spec["state"] = serde_json::to_value(options.state)
        .map_err(|e| RigError::Invalid(format!("state: {e}")))?;
    spec["pauseBefore"] = serde_json::to_value(&options.pause_before)
        .map_err(|e| RigError::Invalid(format!("pauseBefore: {e}")))?;
    spec["source"] =
        json!({"server": source.server, "tls": {"thumbprint": source.thumbprint_sha256}});
    spec["vcenters"] = json!([{"server": target.server, "port": target.port,
        "datacenters": [inventory.datacenter], "tls": {"thumbprint": target.thumbprint_sha256}}]);
    spec["failureDomains"] = json!([{"name": TARGET_FAILURE_DOMAIN, "region": "region-b", "zone": "zone-b",
        "server": target.server, "topology": {"datacenter": inventory.datacenter,
        "computeCluster": inventory.cluster_path(), "networks": [inventory.network_path()],
        "datastore": inventory.datastore_path(),
        "template": format!("/{}/vm/{}", inventory.datacenter, inventory.template)}}]);
    let workers = options.workers.unwrap_or(endpoints.source_workers);
    spec["workers"]["failureDomains"] =
        json!([{"name": TARGET_FAILURE_DOMAIN, "replicas": workers}]);
    spec["controlPlane"]["failureDomains"] = json!([TARGET_FAILURE_DOMAIN]);
    spec["credentialsSecret"] = json!({"name": crate::migration::CREDENTIALS_SECRET});
    if let Some(volumes) = &options.volumes {
        spec["volumes"] = volumes.clone();
    }
    Ok(vmi)
}
