//! Step 03 backup-cpms: back up the whole control plane machine set, delete
//! it, and wait for the operator to regenerate it `Inactive`.
//!
//! An Active control plane machine set would start replacing control plane
//! machines as soon as the Infrastructure's failure domains change; an
//! Inactive one does nothing. It cannot simply be edited to Inactive
//! ("state cannot be changed once Active"), hence the delete: the operator
//! then generates an Inactive one from the current machines (research §5).
//! Step 12 activates it again with the target failure domains. The undo
//! puts the backed-up spec back, Active, in one write.

use std::time::{Duration, Instant};

use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams, Preconditions,
};
use serde_json::Value;

use crate::backup::Backups;
use crate::context::{Outcome, StepContext, StepError};

/// Namespace of the control plane machine set.
pub const NAMESPACE: &str = "openshift-machine-api";
/// Its name.
pub const NAME: &str = "cluster";
/// The backup key of the whole object.
pub const CPMS_BACKUP: &str = "03-backup-cpms.controlplanemachineset";
/// How long the operator may take to regenerate it.
const REGENERATE: Duration = Duration::from_secs(600);

fn object() -> String {
    format!("ControlPlaneMachineSet {NAMESPACE}/{NAME}")
}

/// The control plane machine set API.
pub fn api(context: &StepContext) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "machine.openshift.io",
        "v1",
        "ControlPlaneMachineSet",
    ));
    Api::namespaced_with(context.client.clone(), NAMESPACE, &resource)
}

/// The control plane machine set, if any.
pub async fn read(context: &StepContext) -> Result<Option<DynamicObject>, StepError> {
    api(context)
        .get_opt(NAME)
        .await
        .map_err(StepError::kube(format!("read {}", object())))
}

fn state(cpms: &DynamicObject) -> &str {
    cpms.data["spec"]["state"].as_str().unwrap_or("Inactive")
}

/// The object as it can be created again: its spec, labels and annotations,
/// without what the API server sets.
pub fn restorable(cpms: &DynamicObject) -> Value {
    let mut metadata = serde_json::json!({"name": NAME, "namespace": NAMESPACE});
    if let Some(labels) = &cpms.metadata.labels {
        metadata["labels"] = serde_json::json!(labels);
    }
    if let Some(annotations) = &cpms.metadata.annotations {
        metadata["annotations"] = serde_json::json!(annotations);
    }
    serde_json::json!({
        "apiVersion": "machine.openshift.io/v1",
        "kind": "ControlPlaneMachineSet",
        "metadata": metadata,
        "spec": cpms.data["spec"],
    })
}

/// Waits for an Inactive control plane machine set other than `gone_uid`.
async fn wait_for_inactive(
    context: &StepContext,
    gone_uid: Option<&str>,
) -> Result<DynamicObject, StepError> {
    let started = Instant::now();
    loop {
        if let Some(cpms) = read(context).await?
            && cpms.metadata.uid.as_deref() != gone_uid
            && cpms.metadata.deletion_timestamp.is_none()
            && state(&cpms) == "Inactive"
        {
            return Ok(cpms);
        }
        if started.elapsed() > REGENERATE {
            return Err(StepError::Unverified(format!(
                "{} was deleted but the control plane machine set operator has not regenerated it after {} s; check `oc -n {NAMESPACE} logs deploy/control-plane-machine-set-operator`; the original is in the backup",
                object(),
                REGENERATE.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs the step.
pub async fn run(context: &StepContext) -> Result<Outcome, StepError> {
    let backups = Backups::of(context);
    let saved = backups.load(CPMS_BACKUP).await?;
    let mut outcome = Outcome::default();
    let Some(current) = read(context).await? else {
        if saved.is_none() {
            return Err(StepError::Refused(format!(
                "there is no {}: the control plane is not managed by a control plane machine set (a user-provisioned control plane?); vmi moves only machine-managed control planes; nothing was changed",
                object()
            )));
        }
        // An interrupted run: deleted, not regenerated yet.
        let regenerated = wait_for_inactive(context, None).await?;
        outcome.result = format!(
            "{} was already deleted; the operator regenerated it Inactive ({})",
            object(),
            regenerated.metadata.uid.unwrap_or_default()
        );
        return Ok(outcome);
    };
    if saved.is_none() {
        backups
            .save_once(CPMS_BACKUP, &restorable(&current).to_string())
            .await?;
        outcome.backups.push(backups.describe(CPMS_BACKUP));
    }
    if state(&current) == "Inactive" {
        outcome.result = format!("{} is already Inactive; nothing changed", object());
        return Ok(outcome);
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: current.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api(context).delete(NAME, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => {
            return Err(StepError::Kube {
                action: format!("delete {}", object()),
                source: e,
            });
        }
    }
    let regenerated = wait_for_inactive(context, current.metadata.uid.as_deref()).await?;
    outcome.result = format!(
        "backed up and deleted the Active {}; the operator regenerated it Inactive",
        object()
    );
    outcome.changes.push(format!(
        "{}: deleted (uid {}), regenerated Inactive (uid {})",
        object(),
        current.metadata.uid.unwrap_or_default(),
        regenerated.metadata.uid.unwrap_or_default()
    ));
    Ok(outcome)
}

/// Undoes the step: the backed-up spec back in one write (so the operator
/// does not replace it again), or nothing when it is already there.
pub async fn undo(context: &StepContext) -> Result<Outcome, StepError> {
    let backups = Backups::of(context);
    let Some(saved) = backups.load(CPMS_BACKUP).await? else {
        return Ok(Outcome::unchanged(
            "nothing to undo: step 03 took no backup",
        ));
    };
    let saved: Value = serde_json::from_str(&saved).map_err(|e| {
        StepError::Refused(format!(
            "the backup {} is not readable ({e}); recreate the control plane machine set by hand",
            backups.describe(CPMS_BACKUP)
        ))
    })?;
    let mut wanted: DynamicObject = serde_json::from_value(saved.clone()).map_err(|e| {
        StepError::Refused(format!(
            "the backup is not a control plane machine set: {e}"
        ))
    })?;
    let current = read(context).await?;
    match &current {
        Some(c) if c.data["spec"] == saved["spec"] => {
            return Ok(Outcome::unchanged(format!(
                "{} already has the backed-up spec; nothing changed",
                object()
            )));
        }
        Some(c)
            if state(c) == "Active"
                && crate::steps::recreate_cpms::domains_of(&c.data["spec"])
                    == crate::steps::recreate_cpms::domains_of(&saved["spec"]) =>
        {
            return Ok(Outcome::unchanged(format!(
                "{} is Active on the backed-up failure domains (step 12's undo put them back); nothing changed",
                object()
            )));
        }
        Some(c) if state(c) == "Active" => {
            return Err(StepError::Refused(format!(
                "{} is Active with a spec other than the backup (step 12 activated it?); an Active control plane machine set cannot be replaced without rolling the control plane; undo step 12 first; nothing was changed",
                object()
            )));
        }
        _ => {}
    }
    let result = match current {
        Some(c) => {
            wanted.metadata.resource_version = c.metadata.resource_version.clone();
            api(context)
                .replace(NAME, &PostParams::default(), &wanted)
                .await
        }
        None => api(context).create(&PostParams::default(), &wanted).await,
    };
    result.map_err(|e| match e {
        kube::Error::Api(ref s) if s.code == 409 => StepError::Refused(format!(
            "{} changed while the undo wrote it; retry the undo",
            object()
        )),
        other => StepError::Kube {
            action: format!("restore {}", object()),
            source: other,
        },
    })?;
    let after = read(context).await?;
    if after.as_ref().map(|c| &c.data["spec"]) != Some(&saved["spec"]) {
        return Err(StepError::Unverified(format!(
            "{} was restored but does not read back as the backup {}",
            object(),
            backups.describe(CPMS_BACKUP)
        )));
    }
    Ok(Outcome {
        result: format!(
            "restored {} from its backup ({})",
            object(),
            state_of(&saved)
        ),
        changes: vec![format!("{}: restored from backup", object())],
        ..Outcome::default()
    })
}

fn state_of(saved: &Value) -> &str {
    saved["spec"]["state"].as_str().unwrap_or("Inactive")
}
