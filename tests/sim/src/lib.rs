//! The simulated cluster vmi is tested on (DESIGN §8): real etcd,
//! kube-apiserver and kube-controller-manager built from their Go modules,
//! two vcsim vCenters, and the OpenShift CRDs from a pinned openshift/api.
//!
//! Every process is tied to the test process: none survives it, and every
//! temporary directory is removed when it exits (see [`children`]).

#![warn(missing_docs)]

pub mod children;
pub mod component_pods;
pub mod control_plane;
pub mod cpms_operator;
pub mod crds;
pub mod credential_operator;
pub mod csi_driver;
pub mod disruption;
pub mod faults;
pub mod flaky_proxy;
pub mod inventory;
pub mod kubelet;
pub mod kubelet_api;
pub mod machine_api;
pub mod migration;
pub mod pki;
pub mod secrets_scan;
pub mod seed;
pub mod test_random;
pub mod test_steps;
pub mod tools;
pub mod vcsim;
pub mod volumes;

pub use component_pods::ComponentPods;
pub use control_plane::ControlPlane;
pub use kubelet::Kubelet;
pub use test_steps::TestSteps;
pub use tools::Tools;

/// Why the simulated cluster could not do something.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A process, file or certificate could not be set up.
    #[error("simulated cluster: {0}")]
    Setup(String),
    /// A Kubernetes API call failed.
    #[error("simulated cluster: {0}: {1}")]
    Kube(String, #[source] kube::Error),
}
