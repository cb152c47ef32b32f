//! Step 02 allow-multi-vcenter: on the legacy path, relax the one rule of
//! the Infrastructure CRD that refuses a second vCenter after installation
//! ("vcenters cannot be added or removed once set", OpenShift 4.17–4.22).
//!
//! The rule is replaced by the two rules OpenShift itself uses once day-2
//! vCenters are allowed (`VSphereMultiVCenterDay2`): vCenters may be added
//! or removed, but not both in one update. So an in-place swap of the
//! source for the target, which would make the cloud controller manager
//! delete the source Nodes, stays refused. Nothing else in the CRD changes.
//! The CRD's spec and the exact rule lists are backed up first; the undo
//! (and step 16) put the original rules back. The cluster-version operator
//! must be down (step 01): it would restore the CRD.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use vmi_api::migration::MigrationPath;

use crate::backup::Backups;
use crate::context::{Outcome, StepContext, StepError};
use crate::infrastructure::{self, AddTargets, Answer, BLOCKING_RULE_MESSAGE};
use crate::steps::disable_cvo::{CVO_DEPLOYMENT, CVO_NAMESPACE};

/// The Infrastructure CRD.
pub const CRD: &str = "infrastructures.config.openshift.io";
/// The backup key of the rule lists the step replaced.
pub const RULES_BACKUP: &str = "02-allow-multi-vcenter.rules";
/// The backup key of the CRD's whole spec, for a restore by hand.
pub const CRD_BACKUP: &str = "02-allow-multi-vcenter.crd";
/// The message of the rules put in place, so a relaxed CRD is recognised.
pub const RELAXED_MESSAGE: &str =
    "Cannot add and remove vCenters at the same time (relaxed for a vCenter migration by vmi)";
/// How long the API server may take to validate with the new rules.
const SETTLE: Duration = Duration::from_secs(60);

/// A rule list the step replaced: where, and what it held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplacedRules {
    /// JSON pointer of the `x-kubernetes-validations` list in the CRD.
    pub pointer: String,
    /// The list before the step.
    pub original: Vec<Value>,
}

fn crd_api(context: &StepContext) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
    ));
    Api::all_with(context.client.clone(), &resource)
}

/// The Infrastructure CRD as JSON.
pub async fn read_crd(context: &StepContext) -> Result<Value, StepError> {
    let crd = crd_api(context)
        .get(CRD)
        .await
        .map_err(StepError::kube(format!(
            "read CustomResourceDefinition {CRD}"
        )))?;
    serde_json::to_value(crd).map_err(|e| StepError::Refused(format!("internal: {e}")))
}

/// Every `x-kubernetes-validations` list under `value` holding the blocking
/// rule, by JSON pointer.
pub fn blocking_rule_lists(value: &Value) -> Vec<(String, Vec<Value>)> {
    let mut found = Vec::new();
    walk(value, String::new(), &mut found);
    found
}

fn walk(value: &Value, pointer: String, found: &mut Vec<(String, Vec<Value>)>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let child_pointer = format!("{pointer}/{}", escape(key));
                if key == "x-kubernetes-validations"
                    && let Some(rules) = child.as_array()
                    && rules
                        .iter()
                        .any(|r| r["message"].as_str() == Some(BLOCKING_RULE_MESSAGE))
                {
                    found.push((child_pointer, rules.clone()));
                } else {
                    walk(child, child_pointer, found);
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                walk(child, format!("{pointer}/{i}"), found);
            }
        }
        _ => {}
    }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// `rules` with the blocking rule replaced by the two day-2 rules.
pub fn relaxed(rules: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for rule in rules {
        if rule["message"].as_str() == Some(BLOCKING_RULE_MESSAGE) {
            out.push(json!({"message": RELAXED_MESSAGE,
                "rule": "size(self) >= size(oldSelf) ? oldSelf.all(x, self.exists(y, y.server == x.server)) : true"}));
            out.push(json!({"message": RELAXED_MESSAGE,
                "rule": "size(self) < size(oldSelf) ? self.all(x, oldSelf.exists(y, y.server == x.server)) : true"}));
        } else {
            out.push(rule.clone());
        }
    }
    out
}

fn is_relaxed(value: &Value) -> bool {
    value.to_string().contains(RELAXED_MESSAGE)
}

async fn cvo_replicas(context: &StepContext) -> Result<i32, StepError> {
    let deployment = Api::<Deployment>::namespaced(context.client.clone(), CVO_NAMESPACE)
        .get_opt(CVO_DEPLOYMENT)
        .await
        .map_err(StepError::kube(format!(
            "read Deployment {CVO_NAMESPACE}/{CVO_DEPLOYMENT}"
        )))?;
    Ok(deployment
        .and_then(|d| d.spec)
        .and_then(|s| s.replicas)
        .unwrap_or(0))
}

/// Applies `ops` to the CRD as read at `crd`'s resourceVersion. The guard
/// is a `test` of the resourceVersion, not of the rule lists: the API
/// server compares a `test` value with its stored JSON byte for byte, and
/// Go escapes the `&&` and `>` of the CEL rules as `\u0026` and `\u003e`.
async fn patch_crd(context: &StepContext, crd: &Value, ops: Vec<Value>) -> Result<(), StepError> {
    let mut all = vec![json!({"op": "test", "path": "/metadata/resourceVersion",
        "value": crd["metadata"]["resourceVersion"]})];
    all.extend(ops);
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(all))
        .map_err(|e| StepError::Refused(format!("internal: bad CRD patch: {e}")))?;
    crd_api(context)
        .patch(CRD, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .map(|_| ())
        .map_err(|e| match e {
            kube::Error::Api(ref s) if s.code == 422 || s.code == 409 => StepError::Refused(format!(
                "CustomResourceDefinition {CRD} changed while the step worked ({}); retry the step (delete its Job)",
                s.message
            )),
            other => StepError::Kube {
                action: format!("update CustomResourceDefinition {CRD}"),
                source: other,
            },
        })
}

/// Waits until the API server accepts, as a dry run, the Infrastructure
/// update step 07 will make.
async fn wait_until_accepted(context: &StepContext) -> Result<(), StepError> {
    let started = Instant::now();
    loop {
        let stored = infrastructure::read_vsphere(context).await?;
        let change = AddTargets::plan(
            &stored.vsphere,
            &context.vmi.spec.vcenters,
            &context.vmi.spec.failure_domains,
        )?;
        if change.is_noop() {
            return Ok(());
        }
        let refusal =
            match infrastructure::send(context, &change.patch(&stored.resource_version), true)
                .await?
            {
                Answer::Accepted => return Ok(()),
                // Changed between the read and the dry run: read again after the pause.
                Answer::Conflict => format!("{} changed meanwhile", infrastructure::OBJECT),
                Answer::Refused(message) => message,
            };
        if started.elapsed() > SETTLE {
            return Err(StepError::Unverified(format!(
                "the Infrastructure CRD was relaxed, but after {} s the API server still refuses adding the target vCenter: {refusal}",
                SETTLE.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs the step.
pub async fn run(context: &StepContext) -> Result<Outcome, StepError> {
    let (path, reason) = context.migration_path()?;
    if path == MigrationPath::Native {
        return Ok(Outcome::skipped(format!(
            "native path, the Infrastructure CRD already allows a second vCenter ({reason})"
        )));
    }
    let replicas = cvo_replicas(context).await?;
    if replicas != 0 {
        return Err(StepError::Refused(format!(
            "the cluster-version operator runs ({replicas} replica(s)) and would put the CRD back; step 01 disable-cvo scales it to 0 first; nothing was changed"
        )));
    }
    let crd = read_crd(context).await?;
    let backups = Backups::of(context);
    let mut outcome = Outcome::default();
    let found = blocking_rule_lists(&crd);
    if found.is_empty() {
        if !is_relaxed(&crd) {
            return Err(StepError::Refused(format!(
                "CustomResourceDefinition {CRD} has no rule \"{BLOCKING_RULE_MESSAGE}\" and was not relaxed by vmi: this release needs another path; preflight chose Legacy, so re-run preflight (delete the vmi's Jobs from step 00) and report the cluster's version; nothing was changed"
            )));
        }
        wait_until_accepted(context).await?;
        outcome.result = format!(
            "CustomResourceDefinition {CRD} already allows a second vCenter; nothing changed"
        );
        return Ok(outcome);
    }
    let replaced: Vec<ReplacedRules> = found
        .iter()
        .map(|(pointer, original)| ReplacedRules {
            pointer: pointer.clone(),
            original: original.clone(),
        })
        .collect();
    let text = serde_json::to_string(&replaced)
        .map_err(|e| StepError::Refused(format!("internal: {e}")))?;
    if backups
        .save_once(CRD_BACKUP, &crd["spec"].to_string())
        .await?
    {
        outcome.backups.push(backups.describe(CRD_BACKUP));
    }
    if backups.save_once(RULES_BACKUP, &text).await? {
        outcome.backups.push(backups.describe(RULES_BACKUP));
    }
    let mut ops = Vec::new();
    for rules in &replaced {
        ops.push(
            json!({"op": "replace", "path": rules.pointer, "value": relaxed(&rules.original)}),
        );
    }
    patch_crd(context, &crd, ops).await?;
    let after = read_crd(context).await?;
    if !blocking_rule_lists(&after).is_empty() || !is_relaxed(&after) {
        return Err(StepError::Unverified(format!(
            "CustomResourceDefinition {CRD} was patched but still holds \"{BLOCKING_RULE_MESSAGE}\"; is something restoring it (the cluster-version operator)?"
        )));
    }
    wait_until_accepted(context).await?;
    outcome.result = format!(
        "relaxed \"{BLOCKING_RULE_MESSAGE}\" in {CRD} to the day-2 rule (add or remove vCenters, not both at once)"
    );
    outcome.changes = replaced
        .iter()
        .map(|r| format!("CustomResourceDefinition {CRD}: {} relaxed", r.pointer))
        .collect();
    Ok(outcome)
}

/// Undoes the step: the original rule lists back where the relaxed ones are.
pub async fn undo(context: &StepContext) -> Result<Outcome, StepError> {
    let backups = Backups::of(context);
    let Some(saved) = backups.load(RULES_BACKUP).await? else {
        return Ok(Outcome::unchanged(
            "nothing to undo: step 02 took no backup (it was skipped or never changed anything)",
        ));
    };
    let replaced: Vec<ReplacedRules> = serde_json::from_str(&saved).map_err(|e| {
        StepError::Refused(format!(
            "the backup {} is not readable ({e}); restore the CRD from {} by hand",
            backups.describe(RULES_BACKUP),
            backups.describe(CRD_BACKUP)
        ))
    })?;
    let crd = read_crd(context).await?;
    let mut ops = Vec::new();
    for rules in &replaced {
        let Some(current) = crd.pointer(&rules.pointer) else {
            continue;
        };
        let current = current.as_array().cloned().unwrap_or_default();
        if current == rules.original {
            continue;
        }
        if current != relaxed(&rules.original) {
            return Err(StepError::Refused(format!(
                "CustomResourceDefinition {CRD} at {} is neither the original nor vmi's relaxed rules (someone changed it); restore it by hand from {}; nothing was changed",
                rules.pointer,
                backups.describe(CRD_BACKUP)
            )));
        }
        ops.push(json!({"op": "replace", "path": rules.pointer, "value": rules.original}));
    }
    if ops.is_empty() {
        return Ok(Outcome::unchanged(format!(
            "CustomResourceDefinition {CRD} already has its original rules; nothing changed"
        )));
    }
    patch_crd(context, &crd, ops).await?;
    let after = read_crd(context).await?;
    if is_relaxed(&after) {
        return Err(StepError::Unverified(format!(
            "CustomResourceDefinition {CRD} was restored but still holds vmi's relaxed rules"
        )));
    }
    Ok(Outcome {
        result: format!("restored \"{BLOCKING_RULE_MESSAGE}\" in {CRD}"),
        changes: replaced
            .iter()
            .map(|r| format!("CustomResourceDefinition {CRD}: {} restored", r.pointer))
            .collect(),
        ..Outcome::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_blocking_rule_is_replaced() {
        let crd = json!({"spec": {"versions": [{"schema": {"openAPIV3Schema": {"properties": {
            "vcenters": {"maxItems": 3, "x-kubernetes-validations": [
                {"message": "other", "rule": "true"},
                {"message": BLOCKING_RULE_MESSAGE, "rule": "size(self) != size(oldSelf) ? size(oldSelf) == 0 && size(self) < 2 : true"}]},
            "ips": {"x-kubernetes-validations": [{"message": "ips", "rule": "true"}]}}}}}]}});
        let found = blocking_rule_lists(&crd);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].0,
            "/spec/versions/0/schema/openAPIV3Schema/properties/vcenters/x-kubernetes-validations"
        );
        let new = relaxed(&found[0].1);
        assert_eq!(new.len(), 3);
        assert_eq!(new[0], json!({"message": "other", "rule": "true"}));
        assert!(new[1..].iter().all(|r| r["message"] == RELAXED_MESSAGE));
        assert!(!new.iter().any(|r| r["message"] == BLOCKING_RULE_MESSAGE));
    }
}
