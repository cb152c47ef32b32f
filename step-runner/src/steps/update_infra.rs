//! Step 07 update-infra: add the target vCenters and failure domains to
//! `infrastructure/cluster` in one update, keeping every field the
//! migration does not own. The source stays until step 15 removes it in a
//! separate update (the API refuses adding and removing vCenters at once).
//! The vSphere spec as it was is backed up first; the undo puts the two
//! lists back when nobody else changed them since.

use serde_json::Value;

use crate::backup::Backups;
use crate::context::{Outcome, StepContext, StepError};
use crate::infrastructure::{self, AddTargets, Answer, BLOCKING_RULE_MESSAGE, OBJECT};

/// The backup key of `spec.platformSpec.vsphere` before the step.
pub const VSPHERE_BACKUP: &str = "07-update-infra.vsphere";

fn plan(context: &StepContext, vsphere: &Value) -> Result<AddTargets, StepError> {
    AddTargets::plan(
        vsphere,
        &context.vmi.spec.vcenters,
        &context.vmi.spec.failure_domains,
    )
}

/// The vSphere spec without the two lists the step owns.
fn unowned(vsphere: &Value) -> Value {
    let mut rest = vsphere.clone();
    if let Some(map) = rest.as_object_mut() {
        map.remove("vcenters");
        map.remove("failureDomains");
    }
    rest
}

/// How often a write that raced another writer is tried again.
const ATTEMPTS: usize = 5;

/// Runs the step.
pub async fn run(context: &StepContext) -> Result<Outcome, StepError> {
    let (path, _) = context.migration_path()?;
    let backups = Backups::of(context);
    let mut outcome = Outcome::default();
    for _ in 0..ATTEMPTS {
        let before = infrastructure::read_vsphere(context).await?;
        let change = plan(context, &before.vsphere)?;
        if backups
            .save_once(VSPHERE_BACKUP, &before.vsphere.to_string())
            .await?
        {
            outcome.backups.push(backups.describe(VSPHERE_BACKUP));
        }
        if change.is_noop() {
            outcome.result = format!(
                "{OBJECT} already holds every target vCenter and failure domain; nothing changed"
            );
            return Ok(outcome);
        }
        match infrastructure::send(context, &change.patch(&before.resource_version), false).await? {
            Answer::Accepted => {}
            Answer::Conflict => continue,
            Answer::Refused(message) if message.contains(BLOCKING_RULE_MESSAGE) => {
                return Err(StepError::Refused(format!(
                    "the Infrastructure CRD refused the second vCenter (\"{BLOCKING_RULE_MESSAGE}\") on the {path:?} path: step 02 allow-multi-vcenter relaxes that rule, and the cluster-version operator puts it back if it runs; check `oc -n openshift-cluster-version get deploy cluster-version-operator` (0 replicas) and step 02's result, then retry; nothing was changed"
                )));
            }
            Answer::Refused(message) => {
                return Err(StepError::Refused(format!(
                    "the API server refused the update of {OBJECT}: {message}; fix what it names (spec.vcenters / spec.failureDomains of the vmi), then retry; nothing was changed"
                )));
            }
        }
        let after = infrastructure::read_vsphere(context).await?;
        if !plan(context, &after.vsphere)?.is_noop()
            || unowned(&after.vsphere) != unowned(&before.vsphere)
        {
            return Err(StepError::Unverified(format!(
                "{OBJECT} was updated but does not read back as expected (targets missing or other fields changed); compare it with the backup {}",
                backups.describe(VSPHERE_BACKUP)
            )));
        }
        outcome.result = format!("added {} to {OBJECT}", change.added.join(", "));
        outcome.changes = change
            .added
            .iter()
            .map(|a| format!("{OBJECT}: added {a}"))
            .collect();
        return Ok(outcome);
    }
    Err(conflicted())
}

fn conflicted() -> StepError {
    StepError::Refused(format!(
        "{OBJECT} kept changing while the step wrote it ({ATTEMPTS} tries); find the other writer, then retry the step (delete its Job); nothing was changed"
    ))
}

/// Undoes the step: the two lists as backed up, when the Infrastructure
/// holds exactly them plus what the step added.
pub async fn undo(context: &StepContext) -> Result<Outcome, StepError> {
    let backups = Backups::of(context);
    let Some(saved) = backups.load(VSPHERE_BACKUP).await? else {
        return Ok(Outcome::unchanged(
            "nothing to undo: step 07 took no backup (it never ran)",
        ));
    };
    let saved: Value = serde_json::from_str(&saved).map_err(|e| {
        StepError::Refused(format!(
            "the backup {} is not readable ({e}); restore {OBJECT} by hand",
            backups.describe(VSPHERE_BACKUP)
        ))
    })?;
    let lists = |v: &Value| {
        (
            infrastructure::list(v, "vcenters").to_vec(),
            infrastructure::list(v, "failureDomains").to_vec(),
        )
    };
    let (old_vcenters, old_domains) = lists(&saved);
    let expected = plan(context, &saved)?;
    for _ in 0..ATTEMPTS {
        let current = infrastructure::read_vsphere(context).await?;
        let (now_vcenters, now_domains) = lists(&current.vsphere);
        if (&now_vcenters, &now_domains) == (&old_vcenters, &old_domains) {
            return Ok(Outcome::unchanged(format!(
                "{OBJECT} already holds the vCenters and failure domains it had before step 07; nothing changed"
            )));
        }
        if (now_vcenters.as_slice(), now_domains.as_slice())
            != (
                expected.vcenters_after.as_slice(),
                expected.failure_domains_after.as_slice(),
            )
        {
            return Err(StepError::Refused(format!(
                "{OBJECT} changed after step 07 (its vcenters or failureDomains are neither the backup nor the backup plus the migration's targets); restore them by hand from {}; nothing was changed",
                backups.describe(VSPHERE_BACKUP)
            )));
        }
        let patch =
            infrastructure::lists_patch(&current.resource_version, &old_vcenters, &old_domains);
        match infrastructure::send(context, &patch, false).await? {
            Answer::Accepted => {}
            Answer::Conflict => continue,
            Answer::Refused(message) => {
                return Err(StepError::Refused(format!(
                    "the API server refused restoring {OBJECT}: {message}; nothing was changed"
                )));
            }
        }
        let after = infrastructure::read_vsphere(context).await?;
        if lists(&after.vsphere) != (old_vcenters, old_domains) {
            return Err(StepError::Unverified(format!(
                "{OBJECT} was restored but does not read back as the backup {}",
                backups.describe(VSPHERE_BACKUP)
            )));
        }
        return Ok(Outcome {
            result: format!("removed {} from {OBJECT}", expected.added.join(", ")),
            changes: expected
                .added
                .iter()
                .map(|a| format!("{OBJECT}: removed {a}"))
                .collect(),
            ..Outcome::default()
        });
    }
    Err(conflicted())
}
