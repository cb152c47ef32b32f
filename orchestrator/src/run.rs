//! `vmi-orchestrator run`: serve metrics, wait for the lease, then run the
//! controller until asked to stop or the lease is lost.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, Config};
use tracing::{info, warn};
use vmi_api::{Pipeline, VSphereMigrationInfra, labels};

use crate::job::JobTemplate;
use crate::leader::{self, LeaseConfig};
use crate::metrics::Metrics;
use crate::reconcile::{Context, ReconcileError, reconcile};

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// A kubeconfig file; in-cluster configuration or `$KUBECONFIG` when absent.
    pub kubeconfig: Option<PathBuf>,
    /// Only this namespace's vmis (all namespaces when absent).
    pub namespace: Option<String>,
    /// The pipeline to run.
    pub pipeline: Pipeline,
    /// How step Jobs run.
    pub template: JobTemplate,
    /// Namespace of the lease (the orchestrator's own; the client's default
    /// namespace when absent).
    pub lease_namespace: Option<String>,
    /// Name of the lease.
    pub lease_name: String,
    /// Lease duration.
    pub lease_duration: Duration,
    /// Where to serve /metrics and /healthz.
    pub metrics_address: SocketAddr,
}

/// Why `run` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No usable Kubernetes configuration.
    #[error("cannot configure the Kubernetes client: {0}")]
    Config(String),
    /// The metrics endpoint could not bind.
    #[error("cannot serve metrics on {address}: {source}")]
    Metrics {
        /// The address asked for.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Leadership ended.
    #[error(transparent)]
    Lease(#[from] leader::LeaseError),
}

async fn client(kubeconfig: Option<&PathBuf>) -> Result<Client, RunError> {
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| RunError::Config(format!("{}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| RunError::Config(format!("{}: {e}", path.display())))?
        }
        None => Config::infer()
            .await
            .map_err(|e| RunError::Config(e.to_string()))?,
    };
    Client::try_from(config).map_err(|e| RunError::Config(e.to_string()))
}

/// How long the orchestrator waits, after SIGTERM, for reconciles already
/// running before it stops anyway (well inside a pod's default 30 s grace).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Runs the orchestrator until SIGTERM/Ctrl-C (Ok) or until the lease is
/// lost (Err).
pub async fn run(options: RunOptions) -> Result<(), RunError> {
    let client = client(options.kubeconfig.as_ref()).await?;
    let metrics = Metrics::new();
    crate::server::serve(options.metrics_address, metrics.clone())
        .await
        .map_err(|source| RunError::Metrics {
            address: options.metrics_address,
            source,
        })?;
    let lease_namespace = options
        .lease_namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let mut lease_config = LeaseConfig::new(
        &lease_namespace,
        &options.lease_name,
        &options.template.identity,
    );
    lease_config.duration = options.lease_duration;
    lease_config.renew_deadline = options.lease_duration.mul_f32(2.0 / 3.0);
    lease_config.retry_period = options.lease_duration / 7;
    let acquire = leader::acquire(client.clone(), lease_config);
    let mut leadership = tokio::select! {
        held = acquire => held,
        () = shutdown_signal() => {
            info!("asked to stop before leading");
            return Ok(());
        }
    };
    metrics.set_leader(true);

    let (vmis, jobs): (Api<VSphereMigrationInfra>, Api<Job>) = match &options.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let controller = Controller::new(vmis, watcher::Config::default()).owns(
        jobs,
        watcher::Config::default().labels(&format!(
            "{}={}",
            labels::MANAGED_BY,
            labels::MANAGED_BY_VALUE
        )),
    );
    let context = Arc::new(Context {
        client: client.clone(),
        pipeline: options.pipeline.clone(),
        template: options.template.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "vmi-orchestrator".to_owned(),
                instance: Some(options.template.identity.clone()),
            },
        ),
        store: controller.store(),
        metrics: metrics.clone(),
    });
    info!(
        namespace = options.namespace.as_deref().unwrap_or("<all>"),
        pipeline = %options.pipeline.name,
        steps = options.pipeline.steps.len(),
        "running migrations"
    );
    let running = controller
        .graceful_shutdown_on(shutdown_signal())
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok(_) => {}
                Err(controller::Error::QueueError(err)) => warn!(
                    error = %crate::kube_text::watch_error(&err),
                    "cannot read the vmis or their Jobs; nothing is reconciled until the orchestrator's Role allows list and watch on both (deploy/base/rbac/orchestrator.yaml) and the API server answers; retrying"
                ),
                Err(err) => tracing::debug!(error = %err, "reconcile ended with an error"),
            }
        });
    // Stopping waits for running reconciles, but not for ever: one blocked
    // on an API server that does not answer (or a watch that cannot start)
    // must not hold a Deployment rollout or a node drain until SIGKILL. A
    // reconcile cut short is safe: every one starts from what it reads.
    let stop_deadline = async {
        shutdown_signal().await;
        tokio::time::sleep(STOP_GRACE).await;
    };
    let outcome = tokio::select! {
        () = running => Ok(()),
        () = stop_deadline => {
            warn!(grace_seconds = STOP_GRACE.as_secs(), "the running reconciles did not end in time after the stop signal; stopping without them");
            Ok(())
        }
        lost = leadership.keep() => Err(lost),
    };
    metrics.set_leader(false);
    match outcome {
        Ok(()) => {
            info!("stopping: releasing the lease");
            leadership.release().await;
            Ok(())
        }
        Err(lost) => Err(RunError::Lease(lost)),
    }
}

fn error_policy(
    vmi: Arc<VSphereMigrationInfra>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    ctx.metrics.reconcile_error();
    warn!(
        vmi = %vmi.metadata.name.as_deref().unwrap_or(""),
        error = %error,
        "reconcile failed; retrying in 5 s"
    );
    Action::requeue(Duration::from_secs(5))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
