//! `vmi-step`: runs one step of a vmi migration, in its own Job's pod or
//! locally against any kubeconfig.
//!
//! This crate holds the command line and logging; the steps themselves arrive
//! with the issues that implement them. Until a step is implemented it fails
//! with "step <name> is not implemented yet" rather than pretending to work.

#![warn(missing_docs)]

pub mod cli;
pub mod logging;
pub mod target;
pub mod vsphere;

use vmi_api::Step;

/// Why a `vmi-step` run failed; its message is the last line the run logs.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The step exists in the pipeline but has no implementation yet.
    #[error("step {0} is not implemented yet")]
    NotImplemented(&'static str),
    /// The step's undo has no implementation yet.
    #[error("the undo of step {0} is not implemented yet")]
    UndoNotImplemented(&'static str),
}

/// What `vmi-step` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run one pipeline step.
    Step(Step),
    /// Undo one pipeline step from its backup (a rollback Job).
    Undo(Step),
    /// Print what the whole migration would change, changing nothing.
    Plan {
        /// How to print the plan.
        output: cli::PlanOutput,
    },
}

/// Carries out `invocation`. Every step is refused until it is implemented.
pub fn run(invocation: &cli::Invocation) -> Result<(), RunError> {
    match invocation.action {
        Action::Step(step) => Err(RunError::NotImplemented(step.name())),
        Action::Undo(step) => Err(RunError::UndoNotImplemented(step.name())),
        Action::Plan { .. } => Err(RunError::NotImplemented("plan")),
    }
}
