//! `vmi-step`: runs one step of a vmi migration, in its own Job's pod or
//! locally against any kubeconfig.
//!
//! This crate holds the command line, logging, the steps (`steps/`) and
//! what they share: the vCenter client, backups, status reports, the
//! Infrastructure, cloud-provider-config and machine API helpers.

#![warn(missing_docs)]

pub mod cli;
pub mod logging;
pub mod target;
pub mod vcenters;
pub mod vsphere;

pub mod backup;
pub mod cloud_config;
pub mod components;
pub mod context;
pub mod infrastructure;
pub mod machines;
pub mod plan;
pub mod report;
pub mod steps;
pub mod volumes;

use vmi_api::{Step, labels};

use context::{StepContext, StepError};

/// Why a `vmi-step` run failed; its message is the last line the run logs.
pub type RunError = StepError;

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

/// The attempt this run is, from the Job's environment (1 outside a Job).
fn attempt() -> i32 {
    std::env::var(labels::ATTEMPT_ENV)
        .ok()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1)
}

/// Prints the plan on stdout; fails when preflight's checks found problems
/// (they are in the plan too).
async fn print_plan(invocation: &cli::Invocation, output: cli::PlanOutput) -> Result<(), RunError> {
    let client = context::client(invocation.kubeconfig.as_deref()).await?;
    let context =
        StepContext::load(client, invocation.vmi.clone(), Step::Preflight, attempt()).await?;
    let plan = plan::make(&context).await?;
    println!("{}", plan::render(&plan, output)?);
    if plan.problems.is_empty() {
        Ok(())
    } else {
        Err(StepError::Refused(format!(
            "the migration cannot start: preflight found {} problem(s), listed in the plan",
            plan.problems.len()
        )))
    }
}

/// Carries out `invocation`: runs or undoes the step, verifies it, and
/// records its outcome in the vmi's status.
pub async fn run(invocation: &cli::Invocation) -> Result<(), RunError> {
    let (step, entry) = match invocation.action {
        Action::Step(step) => (step, report::Entry::Run),
        Action::Undo(step) => (step, report::Entry::Undo),
        Action::Plan { output } => return print_plan(invocation, output).await,
    };
    let undo = entry == report::Entry::Undo;
    if undo && !steps::has_undo(step) {
        return Err(StepError::NoUndo(step.name()));
    }
    let client = context::client(invocation.kubeconfig.as_deref()).await?;
    let context = StepContext::load(client, invocation.vmi.clone(), step, attempt()).await?;
    let outcome = match entry {
        report::Entry::Run => steps::run(&context).await?,
        report::Entry::Undo => steps::undo(&context).await?,
    };
    tracing::info!(
        step = step.name(),
        changes = ?outcome.changes,
        backups = ?outcome.backups,
        "{}",
        outcome.result
    );
    report::record(&context, entry, &outcome).await
}
