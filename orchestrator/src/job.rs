//! The Job that runs one step (or its undo), as DESIGN §5 describes it:
//! deterministic name, owner reference to the vmi, labels naming the vmi
//! and the step, `backoffLimit` and `activeDeadlineSeconds` from the
//! pipeline, the step-runner service account, and no TTL so finished Jobs
//! and their pods stay for triage.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, PodSecurityContext, PodSpec, PodTemplateSpec,
    ResourceRequirements, SeccompProfile, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use vmi_api::{StepDefinition, VSphereMigrationInfra, labels};

/// How the orchestrator's Jobs run their step.
#[derive(Debug, Clone)]
pub struct JobTemplate {
    /// The container image carrying `vmi-step` (the orchestrator's own).
    pub image: String,
    /// The command before the step's arguments, e.g. `["vmi-step"]`.
    pub command: Vec<String>,
    /// The service account the step pods run as.
    pub service_account: String,
    /// Who creates the Jobs (recorded in an annotation).
    pub identity: String,
}

/// Why a Job cannot be built for a vmi.
#[derive(Debug, thiserror::Error)]
#[error("vmi {0} has no name, namespace or uid yet; it cannot own a Job")]
pub struct NotOwnable(String);

/// The Job that runs `step` (or its undo when `undo`) for `vmi`, attempt
/// `attempt`.
pub fn build(
    vmi: &VSphereMigrationInfra,
    step: &StepDefinition,
    undo: bool,
    attempt: i32,
    template: &JobTemplate,
) -> Result<Job, NotOwnable> {
    let name = vmi.metadata.name.clone().unwrap_or_default();
    let namespace = vmi.metadata.namespace.clone().unwrap_or_default();
    let owner = vmi
        .controller_owner_ref(&())
        .filter(|_| !name.is_empty() && !namespace.is_empty())
        .ok_or_else(|| NotOwnable(format!("{namespace}/{name}")))?;
    let job_name = if undo {
        step.rollback_job_name()
    } else {
        step.job_name()
    };
    let labels = BTreeMap::from([
        (
            labels::MANAGED_BY.to_owned(),
            labels::MANAGED_BY_VALUE.to_owned(),
        ),
        (labels::MIGRATION.to_owned(), name.clone()),
        (labels::STEP.to_owned(), step.name.clone()),
        (labels::STEP_INDEX.to_owned(), format!("{:02}", step.index)),
        (
            labels::ACTION.to_owned(),
            if undo { "undo" } else { "run" }.to_owned(),
        ),
    ]);
    let annotations = BTreeMap::from([
        (labels::ATTEMPT.to_owned(), attempt.to_string()),
        (labels::CREATED_BY.to_owned(), template.identity.clone()),
    ]);
    let mut command = template.command.clone();
    command.extend([
        step.name.clone(),
        "--vmi".to_owned(),
        format!("{namespace}/{name}"),
    ]);
    if undo {
        command.push("--undo".to_owned());
    }
    let env = vec![
        EnvVar {
            name: labels::ATTEMPT_ENV.to_owned(),
            value: Some(attempt.to_string()),
            ..EnvVar::default()
        },
        EnvVar {
            name: labels::JOB_NAME_ENV.to_owned(),
            value: Some(job_name.clone()),
            ..EnvVar::default()
        },
    ];
    let quantity = |q: &str| Quantity(q.to_owned());
    let container = Container {
        name: "step".to_owned(),
        image: Some(template.image.clone()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        command: Some(command),
        env: Some(env),
        // The kubelet copies the log's tail into the termination message when
        // the step fails: the orchestrator reads the cause from there.
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), quantity("50m")),
                ("memory".to_owned(), quantity("64Mi")),
            ])),
            limits: Some(BTreeMap::from([("memory".to_owned(), quantity("512Mi"))])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name),
            namespace: Some(namespace),
            labels: Some(labels.clone()),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(i32::try_from(step.retries).unwrap_or(i32::MAX)),
            active_deadline_seconds: Some(i64::try_from(step.timeout_seconds).unwrap_or(i64::MAX)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_owned()),
                    service_account_name: Some(template.service_account.clone()),
                    containers: vec![container],
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmi_api::Pipeline;

    fn vmi() -> VSphereMigrationInfra {
        let mut vmi: VSphereMigrationInfra = serde_json::from_value(serde_json::json!({
            "apiVersion": "config.openshift.io/v1alpha1",
            "kind": "VSphereMigrationInfra",
            "metadata": {"name": "move", "namespace": "vmi-system", "uid": "u-1"},
            "spec": {"vcenters": [], "failureDomains": [], "credentialsSecret": {"name": "c"}}
        }))
        .unwrap();
        vmi.metadata.generation = Some(1);
        vmi
    }

    fn template() -> JobTemplate {
        JobTemplate {
            image: "quay.io/example/vmi:1".into(),
            command: vec!["vmi-step".into()],
            service_account: "vmi-step-runner".into(),
            identity: "orchestrator-0".into(),
        }
    }

    #[test]
    fn a_step_job_is_owned_labelled_bounded_and_kept() {
        let pipeline = Pipeline::vcenter_migration().unwrap();
        let step = pipeline.step("update-infra").unwrap();
        let job = build(&vmi(), step, false, 2, &template()).unwrap();
        assert_eq!(
            job.metadata.name.as_deref(),
            Some("vmi-step-07-update-infra")
        );
        let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.uid.as_str(), owner.controller), ("u-1", Some(true)));
        let labels = job.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[labels::MIGRATION], "move");
        assert_eq!(labels[labels::STEP_INDEX], "07");
        assert_eq!(
            job.metadata.annotations.as_ref().unwrap()[labels::ATTEMPT],
            "2"
        );
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(2));
        assert_eq!(spec.active_deadline_seconds, Some(600));
        assert_eq!(spec.ttl_seconds_after_finished, None, "finished Jobs stay");
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("vmi-step-runner"));
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let container = &pod.containers[0];
        assert_eq!(
            container.command.as_ref().unwrap(),
            &["vmi-step", "update-infra", "--vmi", "vmi-system/move"]
        );
        assert_eq!(
            container.termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError")
        );
    }

    #[test]
    fn an_undo_job_has_its_own_name_and_flag() {
        let pipeline = Pipeline::vcenter_migration().unwrap();
        let step = pipeline.step("create-tags").unwrap();
        let job = build(&vmi(), step, true, 1, &template()).unwrap();
        assert_eq!(
            job.metadata.name.as_deref(),
            Some("vmi-rollback-05-create-tags")
        );
        let command = job.spec.unwrap().template.spec.unwrap().containers[0]
            .command
            .clone()
            .unwrap();
        assert_eq!(command.last().map(String::as_str), Some("--undo"));
    }
}
