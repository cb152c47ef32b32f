//! The CRD manifest of `VSphereMigrationInfra`, generated from the Rust types
//! so that the schema the API server enforces is the one the binaries read.
//!
//! `cargo run -p vmi-api --bin crdgen` prints it; the committed copy at
//! [`CRD_PATH`] is checked against it by a test, so the two cannot drift.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::migration::VSphereMigrationInfra;

/// Where the generated CRD is committed, relative to the repository root.
pub const CRD_PATH: &str = "deploy/crds/vspheremigrationinfra.yaml";

/// The first line of the committed file, telling readers not to edit it.
pub const GENERATED_HEADER: &str =
    "# Generated from api/src by `cargo run -p vmi-api --bin crdgen`; do not edit.\n";

/// The `VSphereMigrationInfra` CustomResourceDefinition.
pub fn custom_resource_definition() -> CustomResourceDefinition {
    VSphereMigrationInfra::crd()
}

/// Why the CRD could not be written as YAML.
#[derive(Debug, thiserror::Error)]
#[error("cannot serialize the VSphereMigrationInfra CRD to YAML: {0}")]
pub struct CrdYamlError(String);

/// The CRD as the YAML document committed at [`CRD_PATH`], header included.
pub fn crd_yaml() -> Result<String, CrdYamlError> {
    let body = serde_saphyr::to_string(&custom_resource_definition())
        .map_err(|err| CrdYamlError(err.to_string()))?;
    Ok(format!("{GENERATED_HEADER}{body}"))
}
