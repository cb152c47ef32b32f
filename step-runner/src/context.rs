//! What every step starts from: the Kubernetes client, the vmi it works for
//! (read fresh), which step and attempt this is, and the ways a step fails.

use kube::api::Api;
use kube::{Client, Config};
use vmi_api::migration::MigrationPath;
use vmi_api::{Step, VSphereMigrationInfra};

use crate::target::VmiRef;
use crate::vsphere::VSphereError;

/// Why a step failed. The message is the last line the step logs, which the
/// orchestrator copies into the vmi's status: it says what is wrong and
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// A Kubernetes call failed.
    #[error("{action}: {}", kube_text(.source))]
    Kube {
        /// What the step was doing, naming the object.
        action: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// A vCenter call failed.
    #[error(transparent)]
    VSphere(#[from] VSphereError),
    /// The cluster or the vmi is not in a state this step can work from;
    /// nothing was changed.
    #[error("{0}")]
    Refused(String),
    /// The step made its change but could not confirm the result.
    #[error("{0}")]
    Unverified(String),
    /// The step has no undo by design: it changes nothing that needs
    /// undoing (a check, a restart), or it is past the point of no return.
    #[error(
        "step {0} has no undo: it changes nothing that needs undoing, or it is past the point of no return (see docs/steps/)"
    )]
    NoUndo(&'static str),
}

/// A Kubernetes error in one readable piece. For an answer of the API
/// server: its message, reason and code (`secrets "x" is forbidden: User
/// "…" cannot get resource "secrets" in API group "" in the namespace "y"
/// (Forbidden, 403)`), without kube's Debug dump of the whole Status, which
/// repeats the message and made the last log line, the cause the
/// orchestrator records, outgrow the 2048 bytes of the termination message
/// (its beginning was cut off).
fn kube_text(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            format!("{} ({}, {})", status.message, status.reason, status.code)
        }
        other => other.to_string(),
    }
}

impl StepError {
    /// A Kubernetes failure while doing `action`.
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> StepError {
        let action = action.into();
        move |source| StepError::Kube { action, source }
    }
}

/// What a step did, recorded in its status entry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// One line: what the step found and did.
    pub result: String,
    /// Each object changed, e.g. `Deployment openshift-cluster-version/cluster-version-operator: replicas 1 → 0`.
    pub changes: Vec<String>,
    /// Each backup taken, e.g. `ConfigMap vmi-system/vmi-backup-move: 01-disable-cvo.replicas`.
    pub backups: Vec<String>,
    /// The step was not needed on this migration (the result says why); its
    /// entry becomes `Skipped`, and a rollback has nothing to undo there.
    pub skipped: bool,
    /// What a read-only step found, one line each (preflight's checks).
    pub findings: Vec<String>,
    /// The migration path preflight chose, written to `status.migrationPath`.
    pub migration_path: Option<vmi_api::migration::MigrationPathDecision>,
}

impl Outcome {
    /// An outcome that changed nothing, with `result` saying why.
    pub fn unchanged(result: impl Into<String>) -> Outcome {
        Outcome {
            result: result.into(),
            ..Outcome::default()
        }
    }

    /// A step not needed on this migration, with `reason`.
    pub fn skipped(reason: impl Into<String>) -> Outcome {
        Outcome {
            result: format!("skipped: {}", reason.into()),
            skipped: true,
            ..Outcome::default()
        }
    }
}

/// Everything a step needs to start.
#[derive(Clone)]
pub struct StepContext {
    /// The Kubernetes client (the step-runner service account in a Job).
    pub client: Client,
    /// The vmi by namespace and name.
    pub vmi_ref: VmiRef,
    /// The vmi as read when the step started.
    pub vmi: VSphereMigrationInfra,
    /// The step being run.
    pub step: Step,
    /// The attempt (1 for the first Job of the step).
    pub attempt: i32,
}

impl std::fmt::Debug for StepContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "StepContext({} {} attempt {})",
            self.vmi_ref,
            self.step.name(),
            self.attempt
        )
    }
}

/// A client from `kubeconfig`, or from `$KUBECONFIG` / the pod's service
/// account when none is given.
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<Client, StepError> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                StepError::Refused(format!("cannot read kubeconfig {}: {e}", path.display()))
            })?;
            Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .map_err(|e| {
                    StepError::Refused(format!("kubeconfig {} is not usable: {e}", path.display()))
                })?
        }
        None => Config::infer().await.map_err(|e| {
            StepError::Refused(format!(
                "no Kubernetes configuration: not in a pod and no usable $KUBECONFIG ({e}); pass --kubeconfig"
            ))
        })?,
    };
    Client::try_from(config)
        .map_err(|e| StepError::Refused(format!("cannot build a Kubernetes client: {e}")))
}

impl StepContext {
    /// Reads the vmi and sets up the context for `step`.
    pub async fn load(
        client: Client,
        vmi_ref: VmiRef,
        step: Step,
        attempt: i32,
    ) -> Result<StepContext, StepError> {
        let api: Api<VSphereMigrationInfra> = Api::namespaced(client.clone(), &vmi_ref.namespace);
        let vmi = api
            .get(&vmi_ref.name)
            .await
            .map_err(StepError::kube(format!("read vmi {vmi_ref}")))?;
        Ok(StepContext {
            client,
            vmi_ref,
            vmi,
            step,
            attempt,
        })
    }

    /// The target vCenters' servers, as `spec.vcenters` lists them.
    pub fn target_servers(&self) -> Vec<&str> {
        self.vmi
            .spec
            .vcenters
            .iter()
            .map(|v| v.server.as_str())
            .collect()
    }

    /// The migration path preflight chose, with its reason; a step that
    /// depends on it refuses to run before preflight has recorded it.
    pub fn migration_path(&self) -> Result<(MigrationPath, String), StepError> {
        self.vmi
            .status
            .as_ref()
            .and_then(|s| s.migration_path.as_ref())
            .map(|d| (d.path, d.reason.clone()))
            .ok_or_else(|| {
                StepError::Refused(format!(
                    "vmi {} has no migration path in its status: step 00 preflight records it; run preflight (state: Pending or Running) first",
                    self.vmi_ref
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_reads_as_the_api_server_wrote_it_once() {
        let message = "secrets \"vsphere-creds\" is forbidden: User \
            \"system:serviceaccount:vmi-system:vmi-step-runner\" cannot get resource \"secrets\" \
            in API group \"\" in the namespace \"kube-system\"";
        let status = kube::core::Status::failure(message, "Forbidden").with_code(403);
        let error = StepError::kube("read Secret kube-system/vsphere-creds")(kube::Error::Api(
            Box::new(status),
        ));
        assert_eq!(
            error.to_string(),
            format!("read Secret kube-system/vsphere-creds: {message} (Forbidden, 403)")
        );
    }
}
