//! The vmi orchestrator: turns one `VSphereMigrationInfra` into a sequence
//! of Kubernetes Jobs, one per step, and keeps the history in its status.
//!
//! It never talks to vCenter (DESIGN §2). [`decide`] holds every decision
//! without I/O; [`reconcile`] reads the vmi and its Jobs, applies a decision
//! and publishes its events; [`leader`] makes sure only one replica acts.

#![warn(missing_docs)]

pub mod conditions;
pub mod decide;
pub mod job;
pub mod kube_text;
pub mod leader;
pub mod metrics;
pub mod observed;
pub mod reconcile;
pub mod run;
pub mod server;
