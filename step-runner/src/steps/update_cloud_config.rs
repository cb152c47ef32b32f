//! Step 08 update-cloud-config: add the target vCenters to
//! `openshift-config/cloud-provider-config` (the ConfigMap and key the
//! Infrastructure's `spec.cloudConfig` names) in **one** write, because
//! every change to it reaches every node's `/etc/kubernetes/cloud.conf` and
//! rolls every node (research §3.5).
//!
//! The format is kept: YAML stays YAML, INI stays INI, except an INI with a
//! legacy `[Workspace]` section, which is converted to the YAML form the
//! cloud controller manager operator writes: `[Workspace]` names a single
//! vCenter, and the CSI driver operator keeps using it when present, so it
//! would keep pointing at the source after step 15. With more than one
//! failure domain (source and targets) zoning is on, so the `openshift-region`
//! / `openshift-zone` labels are set in the same write. The original text is
//! backed up; the undo writes it back.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};

use crate::backup::Backups;
use crate::cloud_config::{CloudConfig, Format};
use crate::context::{Outcome, StepContext, StepError};
use crate::infrastructure;

/// The backup key of the configuration text before the step.
pub const CONFIG_BACKUP: &str = "08-update-cloud-config.config";
/// The namespace of the source ConfigMap.
pub const NAMESPACE: &str = "openshift-config";

/// Where the configuration lives: ConfigMap name and key, from
/// `infrastructure/cluster` `spec.cloudConfig`.
pub async fn location(context: &StepContext) -> Result<(String, String), StepError> {
    let infra = infrastructure::api(context)
        .get("cluster")
        .await
        .map_err(StepError::kube(format!("read {}", infrastructure::OBJECT)))?;
    let reference = &infra.data["spec"]["cloudConfig"];
    Ok((
        reference["name"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or("cloud-provider-config")
            .to_owned(),
        reference["key"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or("config")
            .to_owned(),
    ))
}

fn api(context: &StepContext) -> Api<ConfigMap> {
    Api::namespaced(context.client.clone(), NAMESPACE)
}

/// The ConfigMap `name` and its text at `key`; refused when either is missing.
pub async fn read(
    context: &StepContext,
    name: &str,
    key: &str,
) -> Result<(ConfigMap, String), StepError> {
    let map = api(context)
        .get_opt(name)
        .await
        .map_err(StepError::kube(format!("read ConfigMap {NAMESPACE}/{name}")))?
        .ok_or_else(|| {
            StepError::Refused(format!(
                "ConfigMap {NAMESPACE}/{name} (infrastructure/cluster spec.cloudConfig) does not exist; the cluster's vSphere components cannot be configured without it; nothing was changed"
            ))
        })?;
    let text = map
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .cloned()
        .ok_or_else(|| {
            StepError::Refused(format!(
                "ConfigMap {NAMESPACE}/{name} has no key {key}; nothing was changed"
            ))
        })?;
    Ok((map, text))
}

fn parse(text: &str, name: &str) -> Result<CloudConfig, StepError> {
    CloudConfig::parse(text).map_err(|e| {
        StepError::Refused(format!(
            "ConfigMap {NAMESPACE}/{name}: {e}; nothing was changed"
        ))
    })
}

/// The edited configuration and what was done to it, or `None` when it
/// already holds everything.
pub struct Edit {
    /// The new text.
    pub text: String,
    /// One line per change.
    pub changes: Vec<String>,
}

/// Works out the one edit: conversion when needed, every target vCenter,
/// and the zone labels when there is more than one failure domain.
pub fn edit(
    text: &str,
    name: &str,
    targets: &[vmi_api::topology::TargetVCenter],
    target_domains: &[vmi_api::topology::FailureDomain],
    failure_domains: usize,
) -> Result<Option<Edit>, StepError> {
    let refuse = |e: crate::cloud_config::CloudConfigError| {
        StepError::Refused(format!(
            "ConfigMap {NAMESPACE}/{name}: {e}; nothing was changed"
        ))
    };
    let mut config = parse(text, name)?;
    let mut changes = Vec::new();
    if config.format() == Format::Ini && config.has_workspace() {
        let dropped = config.to_yaml().map_err(refuse)?;
        changes.push(format!(
            "converted from INI to YAML (the legacy [Workspace] names one vCenter); not carried over: {}",
            if dropped.is_empty() { "nothing".to_owned() } else { dropped.join(", ") }
        ));
    }
    for target in targets {
        let mut datacenters = target.datacenters.clone();
        for domain in target_domains.iter().filter(|d| d.server == target.server) {
            if !datacenters.contains(&domain.topology.datacenter) {
                datacenters.push(domain.topology.datacenter.clone());
            }
        }
        let port = target.port.and_then(|p| u16::try_from(p).ok());
        if config
            .add_vcenter(&target.server, port, &datacenters)
            .map_err(refuse)?
        {
            changes.push(format!(
                "added vCenter {} (datacenters {})",
                target.server,
                datacenters.join(", ")
            ));
        }
    }
    if failure_domains > 1 && config.set_zone_labels().map_err(refuse)? {
        changes.push("set the zone labels openshift-region / openshift-zone".into());
    }
    if changes.is_empty() {
        return Ok(None);
    }
    Ok(Some(Edit {
        text: config.render(),
        changes,
    }))
}

/// How many failure domains the cluster has once the targets are added.
pub async fn failure_domain_count(context: &StepContext) -> Result<usize, StepError> {
    let stored = infrastructure::read_vsphere(context).await?;
    let mut names: Vec<String> = infrastructure::list(&stored.vsphere, "failureDomains")
        .iter()
        .filter_map(|d| d["name"].as_str().map(str::to_owned))
        .collect();
    for domain in &context.vmi.spec.failure_domains {
        if !names.contains(&domain.name) {
            names.push(domain.name.clone());
        }
    }
    Ok(names.len().max(1))
}

async fn write(
    context: &StepContext,
    mut map: ConfigMap,
    name: &str,
    key: &str,
    text: &str,
) -> Result<(), StepError> {
    map.data
        .get_or_insert_with(Default::default)
        .insert(key.to_owned(), text.to_owned());
    // The resourceVersion read guards against a concurrent writer.
    api(context)
        .replace(name, &PostParams::default(), &map)
        .await
        .map(|_| ())
        .map_err(|e| match e {
            kube::Error::Api(ref s) if s.code == 409 => StepError::Refused(format!(
                "ConfigMap {NAMESPACE}/{name} changed while the step edited it; retry the step (delete its Job); nothing was changed"
            )),
            other => StepError::Kube {
                action: format!("update ConfigMap {NAMESPACE}/{name}"),
                source: other,
            },
        })
}

/// Runs the step.
pub async fn run(context: &StepContext) -> Result<Outcome, StepError> {
    let (name, key) = location(context).await?;
    let (map, text) = read(context, &name, &key).await?;
    let count = failure_domain_count(context).await?;
    let spec = &context.vmi.spec;
    let backups = Backups::of(context);
    let mut outcome = Outcome::default();
    if backups.save_once(CONFIG_BACKUP, &text).await? {
        outcome.backups.push(backups.describe(CONFIG_BACKUP));
    }
    let Some(edit) = edit(&text, &name, &spec.vcenters, &spec.failure_domains, count)? else {
        outcome.result = format!(
            "ConfigMap {NAMESPACE}/{name} already holds every target vCenter; nothing changed"
        );
        return Ok(outcome);
    };
    write(context, map, &name, &key, &edit.text).await?;
    let (_, after) = read(context, &name, &key).await?;
    if after != edit.text || edit_after(&after, &name, context, count)?.is_some() {
        return Err(StepError::Unverified(format!(
            "ConfigMap {NAMESPACE}/{name} was written but does not read back as written; compare it with the backup {}",
            backups.describe(CONFIG_BACKUP)
        )));
    }
    outcome.result = format!(
        "edited ConfigMap {NAMESPACE}/{name} once: {} (every node rolls once for this edit)",
        edit.changes.join("; ")
    );
    outcome.changes = edit
        .changes
        .iter()
        .map(|c| format!("ConfigMap {NAMESPACE}/{name} key {key}: {c}"))
        .collect();
    Ok(outcome)
}

fn edit_after(
    text: &str,
    name: &str,
    context: &StepContext,
    count: usize,
) -> Result<Option<Edit>, StepError> {
    edit(
        text,
        name,
        &context.vmi.spec.vcenters,
        &context.vmi.spec.failure_domains,
        count,
    )
}

/// Undoes the step: the backed-up text back, in one write, when the
/// ConfigMap holds what the step wrote (or the original already).
pub async fn undo(context: &StepContext) -> Result<Outcome, StepError> {
    let backups = Backups::of(context);
    let Some(original) = backups.load(CONFIG_BACKUP).await? else {
        return Ok(Outcome::unchanged(
            "nothing to undo: step 08 took no backup",
        ));
    };
    let (name, key) = location(context).await?;
    let (map, current) = read(context, &name, &key).await?;
    if current == original {
        return Ok(Outcome::unchanged(format!(
            "ConfigMap {NAMESPACE}/{name} already holds its text from before step 08; nothing changed"
        )));
    }
    let count = failure_domain_count(context).await?;
    let expected = edit_after(&original, &name, context, count)?.map(|e| e.text);
    if expected.as_deref() != Some(current.as_str()) {
        return Err(StepError::Refused(format!(
            "ConfigMap {NAMESPACE}/{name} changed after step 08 (it is neither the backup nor what step 08 wrote); restore it by hand from {}; nothing was changed",
            backups.describe(CONFIG_BACKUP)
        )));
    }
    write(context, map, &name, &key, &original).await?;
    let (_, after) = read(context, &name, &key).await?;
    if after != original {
        return Err(StepError::Unverified(format!(
            "ConfigMap {NAMESPACE}/{name} was restored but does not read back as the backup"
        )));
    }
    Ok(Outcome {
        result: format!(
            "restored ConfigMap {NAMESPACE}/{name} from its backup (every node rolls once for this edit)"
        ),
        changes: vec![format!(
            "ConfigMap {NAMESPACE}/{name} key {key}: restored from backup"
        )],
        ..Outcome::default()
    })
}
