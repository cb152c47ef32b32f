//! Writes a step's outcome into its own `status.steps` entry, and nothing
//! else: a JSON patch that first tests the entry is the one for this step,
//! so a concurrent write by the orchestrator can never be overwritten.

use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use vmi_api::VSphereMigrationInfra;
use vmi_api::migration::StepState;

use crate::context::{Outcome, StepContext, StepError};

/// The status fields of a step's entry the step owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// The step's own run.
    Run,
    /// Its undo (a rollback Job).
    Undo,
}

/// Records `outcome` in the context's step entry. A step run outside the
/// orchestrator (no entry for it) only logs it.
pub async fn record(
    context: &StepContext,
    entry: Entry,
    outcome: &Outcome,
) -> Result<(), StepError> {
    let api: Api<VSphereMigrationInfra> =
        Api::namespaced(context.client.clone(), &context.vmi_ref.namespace);
    let name = context.step.name();
    for _ in 0..5 {
        let vmi = api
            .get_status(&context.vmi_ref.name)
            .await
            .map_err(StepError::kube(format!("read vmi {}", context.vmi_ref)))?;
        let steps = vmi.status.map(|s| s.steps).unwrap_or_default();
        let Some(index) = steps.iter().position(|s| s.name == name) else {
            tracing::info!(step = name, result = %outcome.result, "no status entry for this step (not run by the orchestrator); outcome only logged");
            return Ok(());
        };
        let base = format!("/status/steps/{index}");
        let mut ops = vec![json!({"op": "test", "path": format!("{base}/name"), "value": name})];
        match entry {
            Entry::Run => {
                ops.push(
                    json!({"op": "add", "path": format!("{base}/result"), "value": outcome.result}),
                );
                ops.push(json!({"op": "add", "path": format!("{base}/changes"), "value": outcome.changes}));
                ops.push(json!({"op": "add", "path": format!("{base}/backups"), "value": outcome.backups}));
                if !outcome.findings.is_empty() {
                    ops.push(json!({"op": "add", "path": format!("{base}/findings"), "value": outcome.findings}));
                }
                if let Some(decision) = &outcome.migration_path {
                    ops.push(
                        json!({"op": "add", "path": "/status/migrationPath", "value": decision}),
                    );
                }
                if outcome.skipped {
                    ops.push(json!({"op": "replace", "path": format!("{base}/state"), "value": StepState::Skipped}));
                }
            }
            Entry::Undo => {
                if steps[index].undo.is_none() {
                    tracing::info!(step = name, result = %outcome.result, "no undo entry for this step; outcome only logged");
                    return Ok(());
                }
                ops.push(json!({"op": "add", "path": format!("{base}/undo/result"), "value": outcome.result}));
            }
        }
        let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))
            .map_err(|e| StepError::Refused(format!("internal: bad status patch: {e}")))?;
        match api
            .patch_status(
                &context.vmi_ref.name,
                &PatchParams::default(),
                &Patch::Json::<()>(patch),
            )
            .await
        {
            Ok(_) => return Ok(()),
            // The list moved under us (the test op failed): read again.
            Err(kube::Error::Api(e)) if e.code == 422 || e.code == 409 => continue,
            Err(e) => {
                return Err(StepError::Kube {
                    action: format!("record the outcome in vmi {} status", context.vmi_ref),
                    source: e,
                });
            }
        }
    }
    Err(StepError::Unverified(format!(
        "could not record the outcome of {name} in vmi {}: its status kept changing",
        context.vmi_ref
    )))
}
