//! The CRDs the simulated cluster serves: OpenShift's own (Infrastructure,
//! ClusterVersion, ClusterOperator, MachineSet, Machine,
//! MachineHealthCheck, ControlPlaneMachineSet) from a pinned openshift/api,
//! and vmi's.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};

use crate::SimError;
use crate::tools::Tools;

/// Which Infrastructure CRD the cluster runs; it decides whether a second
/// vCenter can be added on day 2 (the migration's native path) or not (the
/// legacy path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfrastructureCrd {
    /// OpenShift 4.22's Default feature set: "vcenters cannot be added or
    /// removed once set" refuses a second vCenter.
    Release422Default,
    /// The `VSphereMultiVCenterDay2` rules (TechPreviewNoUpgrade on master):
    /// vCenters can be added or removed, not both in one update.
    MultiVCenterDay2,
}

impl InfrastructureCrd {
    /// The openshift/api pin this variant's CRDs come from.
    pub fn pin(self) -> &'static str {
        match self {
            InfrastructureCrd::Release422Default => "release-4.22",
            InfrastructureCrd::MultiVCenterDay2 => "master",
        }
    }

    fn infrastructure_file(self) -> &'static str {
        match self {
            InfrastructureCrd::Release422Default => {
                "0000_10_config-operator_01_infrastructures-Default.crd.yaml"
            }
            InfrastructureCrd::MultiVCenterDay2 => {
                "0000_10_config-operator_01_infrastructures-TechPreviewNoUpgrade.crd.yaml"
            }
        }
    }
}

/// The manifest files of the OpenShift CRDs for `variant`.
pub fn openshift_crd_files(tools: &Tools, variant: InfrastructureCrd) -> Vec<PathBuf> {
    let root = tools.openshift_api(variant.pin());
    let config = root.join("config/v1/zz_generated.crd-manifests");
    let machine = root.join("machine/v1beta1/zz_generated.crd-manifests");
    let cpms = root.join("machine/v1/zz_generated.crd-manifests");
    vec![
        config.join(variant.infrastructure_file()),
        config.join("0000_00_cluster-version-operator_01_clusterversions-Default.crd.yaml"),
        config.join("0000_00_cluster-version-operator_01_clusteroperators.crd.yaml"),
        machine.join("0000_10_machine-api_01_machinesets-Default.crd.yaml"),
        machine.join("0000_10_machine-api_01_machines-Default.crd.yaml"),
        machine.join("0000_10_machine-api_01_machinehealthchecks.crd.yaml"),
        cpms.join("0000_10_control-plane-machine-set_01_controlplanemachinesets-Default.crd.yaml"),
    ]
}

/// Installs (or replaces) the OpenShift CRDs of `variant` and waits until
/// they are established. Replacing the Infrastructure CRD keeps the objects.
pub async fn install_openshift_crds(
    client: &Client,
    variant: InfrastructureCrd,
) -> Result<(), SimError> {
    let tools = Tools::get()?;
    let mut crds = Vec::new();
    for file in openshift_crd_files(tools, variant) {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| SimError::Setup(format!("cannot read {}: {e}", file.display())))?;
        let crd: CustomResourceDefinition = serde_saphyr::from_str(&text)
            .map_err(|e| SimError::Setup(format!("{} is not a CRD: {e}", file.display())))?;
        crds.push(crd);
    }
    apply(client, crds).await
}

/// Installs vmi's CRD, generated from the API types, and waits until it is
/// established.
pub async fn install_vmi_crd(client: &Client) -> Result<(), SimError> {
    apply(client, vec![vmi_api::crd::custom_resource_definition()]).await
}

/// Installs the vSphere CSI driver's `CNSVolumeInfo` CRD
/// (`cnsvolumeinfoes.cns.vmware.com`, namespaced, v1alpha1), which the driver
/// installs when it runs with more than one vCenter: one object per volume,
/// named by the volume id, `spec.volumeID` and `spec.vCenterServer`.
pub async fn install_cns_volume_info_crd(client: &Client) -> Result<(), SimError> {
    let crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "cnsvolumeinfoes.cns.vmware.com"},
        "spec": {
            "group": "cns.vmware.com",
            "names": {"kind": "CNSVolumeInfo", "listKind": "CNSVolumeInfoList",
                      "plural": "cnsvolumeinfoes", "singular": "cnsvolumeinfo"},
            "scope": "Namespaced",
            "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                        "properties": {"volumeID": {"type": "string"}, "vCenterServer": {"type": "string"}}}
                }}}}]
        }
    }))
    .map_err(|e| SimError::Setup(format!("the CNSVolumeInfo CRD: {e}")))?;
    apply(client, vec![crd]).await
}

async fn apply(client: &Client, crds: Vec<CustomResourceDefinition>) -> Result<(), SimError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("vmi-sim").force();
    for crd in &crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &params, &Patch::Apply(crd))
            .await
            .map_err(|e| SimError::Kube(format!("install CRD {name}"), e))?;
    }
    for crd in &crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .map_err(|_| SimError::Setup(format!("CRD {name} not established after 30 s")))?
        .map_err(|e| SimError::Setup(format!("waiting for CRD {name}: {e}")))?;
    }
    Ok(())
}
