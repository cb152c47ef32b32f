//! The steps, one module each, and the dispatch from a step name to its
//! run and undo.

pub mod allow_multi_vcenter;
pub mod backup_cpms;
pub mod create_folder;
pub mod create_tags;
pub mod disable_cvo;
pub mod monitor_pods;
pub mod preflight;
pub mod restart_pods;
pub mod update_cloud_config;
pub mod update_infra;
pub mod update_secrets;

use vmi_api::Step;

use crate::context::{Outcome, StepContext, StepError};

/// Whether `step` (or its undo) is implemented, so that an unimplemented
/// one fails before anything is read or changed.
pub fn implemented(step: Step, undo: bool) -> bool {
    if undo && step == Step::Preflight {
        return false;
    }
    matches!(
        step,
        Step::Preflight
            | Step::DisableCvo
            | Step::AllowMultiVcenter
            | Step::BackupCpms
            | Step::UpdateSecrets
            | Step::CreateTags
            | Step::CreateFolder
            | Step::UpdateInfra
            | Step::UpdateCloudConfig
    ) || (!undo && matches!(step, Step::RestartPods | Step::MonitorPods))
}

/// Runs the context's step.
pub async fn run(context: &StepContext) -> Result<Outcome, StepError> {
    match context.step {
        Step::Preflight => preflight::run(context).await,
        Step::DisableCvo => disable_cvo::run(context).await,
        Step::AllowMultiVcenter => allow_multi_vcenter::run(context).await,
        Step::BackupCpms => backup_cpms::run(context).await,
        Step::UpdateSecrets => update_secrets::run(context).await,
        Step::CreateTags => create_tags::run(context).await,
        Step::CreateFolder => create_folder::run(context).await,
        Step::UpdateInfra => update_infra::run(context).await,
        Step::UpdateCloudConfig => update_cloud_config::run(context).await,
        Step::RestartPods => restart_pods::run(context).await,
        Step::MonitorPods => monitor_pods::run(context).await,
        other => Err(StepError::NotImplemented(other.name())),
    }
}

/// Undoes the context's step from its backup.
pub async fn undo(context: &StepContext) -> Result<Outcome, StepError> {
    match context.step {
        Step::DisableCvo => disable_cvo::undo(context).await,
        Step::AllowMultiVcenter => allow_multi_vcenter::undo(context).await,
        Step::BackupCpms => backup_cpms::undo(context).await,
        Step::UpdateSecrets => update_secrets::undo(context).await,
        Step::CreateTags => create_tags::undo(context).await,
        Step::CreateFolder => create_folder::undo(context).await,
        Step::UpdateInfra => update_infra::undo(context).await,
        Step::UpdateCloudConfig => update_cloud_config::undo(context).await,
        other => Err(StepError::UndoNotImplemented(other.name())),
    }
}
