//! Labels and annotations on the Jobs (and their pods) that run steps.
//!
//! The orchestrator sets them; `kubectl get jobs -l` selectors in the docs,
//! the tests and the step-runner read them. One place keeps them in step.

/// Marks objects created by the orchestrator (Kubernetes' recommended label).
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY`] on the orchestrator's Jobs.
pub const MANAGED_BY_VALUE: &str = "vmi-orchestrator";
/// Name of the vmi a Job belongs to.
pub const MIGRATION: &str = "vmi.config.openshift.io/migration";
/// Name of the step a Job runs, e.g. `update-infra`.
pub const STEP: &str = "vmi.config.openshift.io/step";
/// Index of the step a Job runs, two digits, e.g. `07`.
pub const STEP_INDEX: &str = "vmi.config.openshift.io/step-index";
/// `run` for a step's Job, `undo` for its rollback Job.
pub const ACTION: &str = "vmi.config.openshift.io/action";
/// Annotation: which attempt of the step the Job is (1, 2, …).
pub const ATTEMPT: &str = "vmi.config.openshift.io/attempt";
/// Annotation: the orchestrator replica that created the Job.
pub const CREATED_BY: &str = "vmi.config.openshift.io/created-by";

/// Environment variable carrying the attempt number into the step's pod.
pub const ATTEMPT_ENV: &str = "VMI_STEP_ATTEMPT";
/// Environment variable carrying the Job's name into the step's pod.
pub const JOB_NAME_ENV: &str = "VMI_JOB_NAME";
