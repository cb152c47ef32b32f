//! The steps of a vCenter migration, by name.
//!
//! The names are what the pipeline file, the `vmi-step` subcommands, the Job
//! names and `spec.pauseBefore` share. Their order, timeouts and retries are
//! data in `pipelines/vcenter-migration.yaml`; this enum only makes sure every
//! named step has exactly one implementation and that a typo in a name is
//! caught when the file is loaded or the CR is applied.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One step of the vCenter migration pipeline (DESIGN §4).
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// 00: read-only checks and the migration plan.
    Preflight,
    /// 01: scale the cluster-version operator down (legacy path).
    DisableCvo,
    /// 02: relax the Infrastructure CRD rule that blocks a second vCenter (legacy path).
    AllowMultiVcenter,
    /// 03: back up and delete the control plane machine set.
    BackupCpms,
    /// 04: add the target credentials to the vSphere secrets.
    UpdateSecrets,
    /// 05: region and zone tags on both vCenters.
    CreateTags,
    /// 06: the VM folder in the target vCenter.
    CreateFolder,
    /// 07: add the target vCenter and failure domains to `infrastructure/cluster`.
    UpdateInfra,
    /// 08: add the target vCenter to `cloud-provider-config`.
    UpdateCloudConfig,
    /// 09: restart the vSphere components.
    RestartPods,
    /// 10: wait for the vSphere components and watch their logs.
    MonitorPods,
    /// 11: worker MachineSets in the target failure domains.
    CreateMachinesets,
    /// 12: the control plane machine set on the target failure domains.
    RecreateCpms,
    /// 13: move vSphere CSI volumes to the target vCenter.
    MigrateVolumes,
    /// 14: scale the source MachineSets to zero and delete them.
    ScaleDownSource,
    /// 15: remove the source vCenter from the cluster's configuration.
    RemoveSource,
    /// 16: restore the cluster-version operator and run the final checks.
    RestoreCvo,
}

impl Step {
    /// Every step, in pipeline order.
    pub const ALL: [Step; 17] = [
        Step::Preflight,
        Step::DisableCvo,
        Step::AllowMultiVcenter,
        Step::BackupCpms,
        Step::UpdateSecrets,
        Step::CreateTags,
        Step::CreateFolder,
        Step::UpdateInfra,
        Step::UpdateCloudConfig,
        Step::RestartPods,
        Step::MonitorPods,
        Step::CreateMachinesets,
        Step::RecreateCpms,
        Step::MigrateVolumes,
        Step::ScaleDownSource,
        Step::RemoveSource,
        Step::RestoreCvo,
    ];

    /// The step's name as it appears in the pipeline file, Job names and
    /// `vmi-step` subcommands, e.g. `update-infra`.
    pub const fn name(self) -> &'static str {
        match self {
            Step::Preflight => "preflight",
            Step::DisableCvo => "disable-cvo",
            Step::AllowMultiVcenter => "allow-multi-vcenter",
            Step::BackupCpms => "backup-cpms",
            Step::UpdateSecrets => "update-secrets",
            Step::CreateTags => "create-tags",
            Step::CreateFolder => "create-folder",
            Step::UpdateInfra => "update-infra",
            Step::UpdateCloudConfig => "update-cloud-config",
            Step::RestartPods => "restart-pods",
            Step::MonitorPods => "monitor-pods",
            Step::CreateMachinesets => "create-machinesets",
            Step::RecreateCpms => "recreate-cpms",
            Step::MigrateVolumes => "migrate-volumes",
            Step::ScaleDownSource => "scale-down-source",
            Step::RemoveSource => "remove-source",
            Step::RestoreCvo => "restore-cvo",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of the migration's steps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown step {name:?}; the steps are: {}", Step::ALL.map(Step::name).join(", "))]
pub struct UnknownStep {
    /// The name that was given.
    pub name: String,
}

impl FromStr for Step {
    type Err = UnknownStep;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Step::ALL
            .into_iter()
            .find(|step| step.name() == name)
            .ok_or_else(|| UnknownStep {
                name: name.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_to_their_step_and_serde_agrees() {
        for step in Step::ALL {
            assert_eq!(step.name().parse::<Step>(), Ok(step));
            assert_eq!(
                serde_json::to_value(step).unwrap(),
                serde_json::json!(step.name())
            );
        }
    }

    #[test]
    fn unknown_name_lists_the_valid_ones() {
        let err = "update-infrastructure".parse::<Step>().unwrap_err();
        let message = err.to_string();
        assert!(message.contains("\"update-infrastructure\""), "{message}");
        assert!(
            message.contains("update-infra, update-cloud-config"),
            "{message}"
        );
    }
}
