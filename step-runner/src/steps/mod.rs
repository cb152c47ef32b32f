//! The steps, one module each, and the dispatch from a step name to its
//! run and undo.

pub mod allow_multi_vcenter;
pub mod backup_cpms;
pub mod create_folder;
pub mod create_machinesets;
pub mod create_tags;
pub mod disable_cvo;
pub mod migrate_volumes;
pub mod monitor_pods;
pub mod preflight;
pub mod recreate_cpms;
pub mod remove_source;
pub mod restart_pods;
pub mod restore_cvo;
pub mod scale_down_source;
pub mod update_cloud_config;
pub mod update_infra;
pub mod update_secrets;

use vmi_api::Step;

use crate::context::{Outcome, StepContext, StepError};

/// Whether `step` has an undo, so that asking for a missing one fails
/// before anything is read or changed. The steps without one are the
/// read-only check, the restarts, and the point of no return and what
/// follows it.
pub fn has_undo(step: Step) -> bool {
    !matches!(
        step,
        Step::Preflight
            | Step::RestartPods
            | Step::MonitorPods
            | Step::RemoveSource
            | Step::RestoreCvo
    )
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
        Step::CreateMachinesets => create_machinesets::run(context).await,
        Step::RecreateCpms => recreate_cpms::run(context).await,
        Step::MigrateVolumes => migrate_volumes::run(context).await,
        Step::ScaleDownSource => scale_down_source::run(context).await,
        Step::RemoveSource => remove_source::run(context).await,
        Step::RestoreCvo => restore_cvo::run(context).await,
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
        Step::CreateMachinesets => create_machinesets::undo(context).await,
        Step::RecreateCpms => recreate_cpms::undo(context).await,
        Step::MigrateVolumes => migrate_volumes::undo(context).await,
        Step::ScaleDownSource => scale_down_source::undo(context).await,
        other => Err(StepError::NoUndo(other.name())),
    }
}
