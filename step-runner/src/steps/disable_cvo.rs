//! Step 01 disable-cvo: on the legacy path, scale the cluster-version
//! operator to 0 so that it does not put back the Infrastructure CRD that
//! step 02 relaxes. The replicas it had are backed up first; the undo (and
//! step 16) scales it back to exactly that.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use vmi_api::migration::MigrationPath;

use crate::backup::Backups;
use crate::context::{Outcome, StepContext, StepError};

/// Namespace of the cluster-version operator.
pub const CVO_NAMESPACE: &str = "openshift-cluster-version";
/// Its Deployment.
pub const CVO_DEPLOYMENT: &str = "cluster-version-operator";
/// The backup key of its replicas.
pub const REPLICAS_BACKUP: &str = "01-disable-cvo.replicas";
/// How long the operator's pods may take to go (or come back).
const SETTLE: Duration = Duration::from_secs(300);

fn object() -> String {
    format!("Deployment {CVO_NAMESPACE}/{CVO_DEPLOYMENT}")
}

fn api(context: &StepContext) -> Api<Deployment> {
    Api::namespaced(context.client.clone(), CVO_NAMESPACE)
}

async fn read(context: &StepContext) -> Result<Deployment, StepError> {
    api(context).get(CVO_DEPLOYMENT).await.map_err(|e| match e {
        kube::Error::Api(ref a) if a.code == 404 => StepError::Refused(format!(
            "{} does not exist: this does not look like an OpenShift cluster; check the kubeconfig",
            object()
        )),
        other => StepError::Kube {
            action: format!("read {}", object()),
            source: other,
        },
    })
}

fn replicas(deployment: &Deployment) -> (i32, i32) {
    let spec = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let running = deployment
        .status
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(0);
    (spec, running)
}

/// Sets the replicas and waits until that many pods exist.
pub async fn scale_and_wait(context: &StepContext, to: i32) -> Result<(), StepError> {
    api(context)
        .patch(
            CVO_DEPLOYMENT,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": to}})),
        )
        .await
        .map_err(StepError::kube(format!("scale {} to {to}", object())))?;
    let started = Instant::now();
    loop {
        let deployment = read(context).await?;
        let observed = deployment
            .status
            .as_ref()
            .and_then(|s| s.observed_generation)
            .unwrap_or(0);
        let generation = deployment.metadata.generation.unwrap_or(0);
        let (spec, running) = replicas(&deployment);
        if spec == to && observed >= generation && running == to {
            return Ok(());
        }
        if started.elapsed() > SETTLE {
            return Err(StepError::Unverified(format!(
                "{} was scaled to {to} but still has {running} pod(s) after {} s; check `oc -n {CVO_NAMESPACE} get pods`",
                object(),
                SETTLE.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs the step.
pub async fn run(context: &StepContext) -> Result<Outcome, StepError> {
    let (path, reason) = context.migration_path()?;
    if path == MigrationPath::Native {
        return Ok(Outcome::skipped(format!(
            "native path, the cluster-version operator keeps running ({reason})"
        )));
    }
    let deployment = read(context).await?;
    let (spec, _) = replicas(&deployment);
    let backups = Backups::of(context);
    let took = backups
        .save_once(REPLICAS_BACKUP, &spec.to_string())
        .await?;
    let mut outcome = Outcome::default();
    if took {
        outcome.backups.push(backups.describe(REPLICAS_BACKUP));
    }
    if spec == 0 {
        // Already scaled down (a second run); still make sure no pod runs.
        scale_and_wait(context, 0).await?;
        outcome.result =
            "the cluster-version operator was already scaled to 0; nothing changed".into();
        return Ok(outcome);
    }
    scale_and_wait(context, 0).await?;
    outcome.result = format!("scaled the cluster-version operator from {spec} to 0");
    outcome
        .changes
        .push(format!("{}: replicas {spec} → 0", object()));
    Ok(outcome)
}

/// Undoes the step: back to the replicas recorded in the backup.
pub async fn undo(context: &StepContext) -> Result<Outcome, StepError> {
    let backups = Backups::of(context);
    let Some(saved) = backups.load(REPLICAS_BACKUP).await? else {
        return Ok(Outcome::unchanged(
            "nothing to undo: step 01 took no backup (it was skipped or never changed anything)",
        ));
    };
    let to: i32 = saved.trim().parse().map_err(|_| {
        StepError::Refused(format!(
            "the backup {} holds {saved:?}, not a replica count; set the replicas by hand with `oc -n {CVO_NAMESPACE} scale deployment/{CVO_DEPLOYMENT} --replicas=1`",
            backups.describe(REPLICAS_BACKUP)
        ))
    })?;
    let (spec, running) = replicas(&read(context).await?);
    if spec == to && running == to {
        return Ok(Outcome::unchanged(format!(
            "the cluster-version operator already runs {to} replica(s); nothing changed"
        )));
    }
    scale_and_wait(context, to).await?;
    Ok(Outcome {
        result: format!("scaled the cluster-version operator back to {to}"),
        changes: vec![format!("{}: replicas {spec} → {to}", object())],
        ..Outcome::default()
    })
}
