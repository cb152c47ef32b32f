//! The `VSphereMigrationInfra` (`vmi`) API, the names of the migration steps
//! and the pipeline that orders them.
//!
//! This is the one crate both binaries depend on: `vmi-orchestrator` (which
//! never talks to vCenter) and `vmi-step` (which does). Keeping the API here,
//! apart from the step-runner's vSphere client, keeps the orchestrator small
//! and lets the CRD be generated without building any client code.

#![warn(missing_docs)]

pub mod crd;
pub mod labels;
pub mod migration;
pub mod pipeline;
pub mod step;
pub mod topology;

pub use migration::{
    MigrationState, Phase, StepState, StepStatus, UndoStatus, VSphereMigrationInfra,
    VSphereMigrationInfraSpec, VSphereMigrationInfraStatus,
};
pub use pipeline::{Pipeline, PipelineError, StepDefinition};
pub use step::Step;
