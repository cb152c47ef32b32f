//! What a run produced, for the secrets scan, and the secrets in play.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams};
use serde::Serialize;

use crate::migration::{MigrationRig, RigError};
use crate::secrets_scan::{KnownSecret, SecretKind, Text};

/// Every text the run produced: each step pod's log, each orchestrator
/// log, every Event, the vmis, the ConfigMaps of the vmi namespace and
/// `openshift-config`, and the Jobs and Pods of the vmi namespace.
pub async fn texts(rig: &MigrationRig) -> Result<Vec<Text>, RigError> {
    let mut texts = Vec::new();
    let mut runs = rig.kubelet.runs();
    runs.sort_by(|a, b| a.pod.cmp(&b.pod));
    for run in runs {
        let body = std::fs::read_to_string(&run.log).map_err(|e| {
            RigError::Invalid(format!("cannot read the log of pod {}: {e}", run.pod))
        })?;
        texts.push(Text::new(format!("log of pod {}", run.pod), body));
    }
    for log in rig.orchestrator_logs() {
        let body = std::fs::read_to_string(&log)
            .map_err(|e| RigError::Invalid(format!("cannot read {}: {e}", log.display())))?;
        texts.push(Text::new(
            format!("orchestrator log {}", log.display()),
            body,
        ));
    }
    for event in rig.events().await? {
        let (ns, name) = (
            event.metadata.namespace.clone().unwrap_or_default(),
            event.metadata.name.clone().unwrap_or_default(),
        );
        texts.push(as_text(format!("Event {ns}/{name}"), &event)?);
    }
    let vmis = rig
        .vmis()
        .list(&ListParams::default())
        .await
        .map_err(|e| RigError::Kube("list vmis".into(), e))?;
    for vmi in vmis.items {
        let name = vmi.metadata.name.clone().unwrap_or_default();
        texts.push(as_text(format!("vmi {}/{name}", rig.namespace), &vmi)?);
    }
    for namespace in [rig.namespace.as_str(), "openshift-config"] {
        let maps = Api::<ConfigMap>::namespaced(rig.client.clone(), namespace)
            .list(&ListParams::default())
            .await
            .map_err(|e| RigError::Kube(format!("list ConfigMaps of {namespace}"), e))?;
        for map in maps.items {
            let name = map.metadata.name.clone().unwrap_or_default();
            texts.push(as_text(format!("ConfigMap {namespace}/{name}"), &map)?);
        }
    }
    let jobs = Api::<Job>::namespaced(rig.client.clone(), &rig.namespace)
        .list(&ListParams::default())
        .await
        .map_err(|e| RigError::Kube("list Jobs".into(), e))?;
    for job in jobs.items {
        let name = job.metadata.name.clone().unwrap_or_default();
        texts.push(as_text(format!("Job {}/{name}", rig.namespace), &job)?);
    }
    // Pods carry the termination message (the log's tail) in their status.
    let pods = Api::<Pod>::namespaced(rig.client.clone(), &rig.namespace)
        .list(&ListParams::default())
        .await
        .map_err(|e| RigError::Kube("list Pods".into(), e))?;
    for pod in pods.items {
        let name = pod.metadata.name.clone().unwrap_or_default();
        texts.push(as_text(format!("Pod {}/{name}", rig.namespace), &pod)?);
    }
    Ok(texts)
}

/// An object as pretty JSON (one field a line, so a hit's line says which).
fn as_text(location: String, object: &impl Serialize) -> Result<Text, RigError> {
    let body = serde_json::to_string_pretty(object)
        .map_err(|e| RigError::Invalid(format!("{location}: {e}")))?;
    Ok(Text::new(location, body))
}

/// The secrets in play: both vCenters' passwords, every vCenter session id
/// seen, and the service-account token each step pod ran with.
pub fn known_secrets(rig: &MigrationRig) -> Vec<KnownSecret> {
    let mut secrets = Vec::new();
    for vcenter in [&rig.cluster.source, &rig.cluster.target] {
        secrets.push(KnownSecret::new(
            SecretKind::VCenterPassword,
            &format!("{} vCenter {}", vcenter.role, vcenter.server),
            &vcenter.password,
        ));
    }
    secrets.extend(rig.sessions.secrets());
    if let Some(token) = std::fs::read_to_string(&rig.orchestrator_kubeconfig)
        .ok()
        .as_deref()
        .and_then(kubeconfig_token)
    {
        secrets.push(KnownSecret::new(
            SecretKind::ServiceAccountToken,
            "the orchestrator",
            &token,
        ));
    }
    for run in rig.kubelet.runs() {
        // The kubelet stand-in writes the pod's kubeconfig next to its log.
        let kubeconfig = run.log.with_file_name("kubeconfig");
        if let Some(token) = std::fs::read_to_string(kubeconfig)
            .ok()
            .as_deref()
            .and_then(kubeconfig_token)
        {
            secrets.push(KnownSecret::new(
                SecretKind::ServiceAccountToken,
                &format!("pod {}", run.pod),
                &token,
            ));
        }
    }
    secrets
}

/// The bearer token of a kubeconfig (`token: …`).
fn kubeconfig_token(kubeconfig: &str) -> Option<String> {
    kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("token:"))
        .map(|t| t.trim().trim_matches('"').to_owned())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_read_from_a_kubeconfig() {
        let kubeconfig =
            "users:\n- name: vmi-step-runner\n  user:\n    token: eyJabc.def.ghi\ncontexts: []\n";
        assert_eq!(
            kubeconfig_token(kubeconfig).as_deref(),
            Some("eyJabc.def.ghi")
        );
        assert_eq!(kubeconfig_token("users: []\n"), None);
    }
}
