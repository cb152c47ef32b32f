//! Step 16 restore-cvo: put back what steps 01–02 changed and check the
//! cluster as a whole.
//!
//! On the legacy path, the Infrastructure CRD's original rule is restored
//! first (step 02's undo), then the cluster-version operator is scaled back
//! to its recorded replicas (step 01's undo). On both paths the step then
//! waits for the ClusterVersion to settle (Available, not Progressing, not
//! Failing) and for every ClusterOperator to be Available and not Degraded,
//! and checks that no Node or Machine is left on the source vCenter and that
//! the Infrastructure names only the targets. It stops, naming what is
//! wrong, when that does not hold within the stall time.

use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde_json::Value;
use vmi_api::migration::MigrationPath;

use crate::context::{Outcome, StepContext, StepError};
use crate::infrastructure::{self, OBJECT};
use crate::machines::{self, Stall};
use crate::steps::{allow_multi_vcenter, disable_cvo, remove_source};

/// How often the checks look again.
const POLL: Duration = Duration::from_secs(2);

fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("config.openshift.io", "v1", kind))
}

async fn list(context: &StepContext, kind: &str) -> Result<Vec<DynamicObject>, StepError> {
    Api::<DynamicObject>::all_with(context.client.clone(), &resource(kind))
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(StepError::kube(format!("list {kind}s")))
}

fn condition<'a>(object: &'a DynamicObject, kind: &str) -> Option<&'a str> {
    object.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"].as_str() == Some(kind))
        .and_then(|c| c["status"].as_str())
}

/// What keeps the cluster from being settled and healthy: one line each.
async fn unsettled(context: &StepContext) -> Result<Vec<String>, StepError> {
    let mut out = Vec::new();
    for version in list(context, "ClusterVersion").await? {
        let name = machines::name(&version).to_owned();
        if condition(&version, "Available") != Some("True") {
            out.push(format!("ClusterVersion {name} is not Available"));
        }
        if condition(&version, "Progressing") == Some("True") {
            out.push(format!("ClusterVersion {name} is Progressing"));
        }
        if condition(&version, "Failing") == Some("True") {
            out.push(format!("ClusterVersion {name} is Failing"));
        }
        let observed = version.data["status"]["observedGeneration"]
            .as_i64()
            .unwrap_or(0);
        if observed < version.metadata.generation.unwrap_or(0) {
            out.push(format!(
                "ClusterVersion {name} has not observed its latest spec"
            ));
        }
    }
    for operator in list(context, "ClusterOperator").await? {
        let name = machines::name(&operator);
        if condition(&operator, "Available") != Some("True") {
            out.push(format!("ClusterOperator {name} is not Available"));
        }
        if condition(&operator, "Degraded") == Some("True") {
            out.push(format!("ClusterOperator {name} is Degraded"));
        }
    }
    Ok(out)
}

fn names_source(vsphere: &Value, source: &str) -> bool {
    ["vcenters", "failureDomains"].iter().any(|k| {
        infrastructure::list(vsphere, k)
            .iter()
            .any(|v| v["server"].as_str() == Some(source))
    })
}

/// The servers `vcenters` and `failureDomains` name that are not targets.
fn not_targets(vsphere: &Value, targets: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for key in ["vcenters", "failureDomains"] {
        for entry in infrastructure::list(vsphere, key) {
            if let Some(server) = entry["server"].as_str()
                && !targets.contains(&server)
                && !out.iter().any(|s| s == server)
            {
                out.push(server.to_owned());
            }
        }
    }
    out
}

/// Runs the step.
pub async fn run(context: &StepContext) -> Result<Outcome, StepError> {
    let (path, _) = context.migration_path()?;
    let source = remove_source::original_source(context).await?;
    let stored = infrastructure::read_vsphere(context).await?;
    if names_source(&stored.vsphere, &source) {
        return Err(StepError::Refused(format!(
            "{OBJECT} still names the source vCenter {source}: step 15 remove-source must succeed first; nothing was changed"
        )));
    }
    let mut outcome = Outcome::default();
    if path == MigrationPath::Legacy {
        for undone in [
            allow_multi_vcenter::undo(context).await?,
            disable_cvo::undo(context).await?,
        ] {
            outcome.changes.extend(undone.changes);
        }
    }
    let mut stall = Stall::new(machines::stall_limit(context));
    loop {
        let mut problems = unsettled(context).await?;
        let stored = infrastructure::read_vsphere(context).await?;
        let others = not_targets(&stored.vsphere, &context.target_servers());
        if !others.is_empty() {
            problems.push(format!(
                "{OBJECT} names vCenters other than the targets: {}",
                others.join(", ")
            ));
        }
        problems.extend(remove_source::left_on_source(context, &source, &stored.vsphere).await?);
        if problems.is_empty() {
            break;
        }
        if let Some(still) = stall.observe(problems.join("; ")) {
            return Err(StepError::Unverified(format!(
                "after {} s the cluster is not settled: {}; read `oc get clusterversion,clusteroperators` and the named objects, fix the cause, then retry this step",
                still.as_secs(),
                problems.join("; ")
            )));
        }
        tokio::time::sleep(POLL).await;
    }
    let servers: Vec<&str> = context.target_servers();
    outcome.findings = vec![
        "ok: ClusterVersion Available, not Progressing, not Failing".into(),
        "ok: every ClusterOperator Available and not Degraded".into(),
        format!("ok: no Machine or Node left on the source vCenter {source}"),
        format!("ok: {OBJECT} names only {}", servers.join(", ")),
    ];
    let unchanged = if outcome.changes.is_empty() {
        "; nothing changed"
    } else {
        ""
    };
    outcome.result = match path {
        MigrationPath::Legacy => format!(
            "the Infrastructure CRD rule and the cluster-version operator are restored; the cluster runs on {} and is healthy{unchanged}",
            servers.join(", ")
        ),
        MigrationPath::Native => format!(
            "the cluster-version operator kept running (native path); the cluster runs on {} and is healthy{unchanged}",
            servers.join(", ")
        ),
    };
    Ok(outcome)
}
