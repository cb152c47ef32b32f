//! Step 06 create-folder: the VM folder named after the infrastructure id in
//! each target datacenter, where the target machines go. An existing folder
//! of that name is reused; anything else of that name stops the step.
//! The folders it created are recorded, and its undo removes them when they
//! are still empty.

use serde::{Deserialize, Serialize};

use crate::backup::Backups;
use crate::context::{Outcome, StepContext, StepError};
use crate::vcenters::{connect_target, infrastructure_id};
use crate::vsphere::{MoRef, VCenter};

/// The backup key listing the folders this step created.
pub const CREATED_BACKUP: &str = "06-create-folder.created";

/// A folder this step created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedFolder {
    /// Its vCenter.
    pub server: String,
    /// Its inventory path.
    pub path: String,
}

/// Logs out now: a step's runtime ends with the step, so a logout left to
/// `Drop` might never be sent.
async fn close(vcenter: &VCenter) {
    if let Err(err) = vcenter.logout().await {
        tracing::warn!(vcenter = %vcenter.server(), "could not log out: {err}");
    }
}

/// The folder at `path`, if it exists; something else there is refused.
async fn existing_folder(vcenter: &VCenter, path: &str) -> Result<Option<MoRef>, StepError> {
    match vcenter.find_by_inventory_path(path).await? {
        Some(found) if found.kind == "Folder" => Ok(Some(found)),
        Some(other) => Err(StepError::Refused(format!(
            "vCenter {}: {path} exists but is a {} ({other}), not a folder; rename or remove it, then delete this step's Job to retry",
            vcenter.server(),
            other.kind
        ))),
        None => Ok(None),
    }
}

/// Runs the step.
pub async fn run(context: &StepContext) -> Result<Outcome, StepError> {
    let infra_id = infrastructure_id(context).await?;
    let backups = Backups::of(context);
    let mut created: Vec<CreatedFolder> = match backups.load(CREATED_BACKUP).await? {
        Some(text) => serde_json::from_str(&text).unwrap_or_default(),
        None => Vec::new(),
    };
    let mut outcome = Outcome::default();
    let mut reused = Vec::new();
    for target in &context.vmi.spec.vcenters {
        let vcenter = connect_target(context, &target.server).await?;
        for datacenter in &target.datacenters {
            let parent_path = format!("/{datacenter}/vm");
            let path = format!("{parent_path}/{infra_id}");
            if existing_folder(&vcenter, &path).await?.is_some() {
                reused.push(format!("{}:{path}", target.server));
                continue;
            }
            let parent = vcenter.find_by_inventory_path(&parent_path).await?.ok_or_else(|| {
                StepError::Refused(format!(
                    "vCenter {}: datacenter {datacenter} (spec.vcenters[].datacenters) has no VM folder {parent_path}; check the datacenter name",
                    target.server
                ))
            })?;
            // Recorded before the change, so an interrupted run's folder is undone too.
            let record = CreatedFolder {
                server: target.server.clone(),
                path: path.clone(),
            };
            if !created.contains(&record) {
                created.push(record);
            }
            let list = serde_json::to_string(&created)
                .map_err(|e| StepError::Refused(format!("internal: {e}")))?;
            backups.save_replacing(CREATED_BACKUP, &list).await?;
            let folder = vcenter.create_folder(&parent, &infra_id).await?;
            if existing_folder(&vcenter, &path).await? != Some(folder.clone()) {
                return Err(StepError::Unverified(format!(
                    "vCenter {}: created {path} ({folder}) but it is not found there",
                    target.server
                )));
            }
            outcome.changes.push(format!(
                "vCenter {}: created folder {path} ({folder})",
                target.server
            ));
        }
        close(&vcenter).await;
    }
    if !outcome.changes.is_empty() {
        outcome.backups.push(backups.describe(CREATED_BACKUP));
    }
    outcome.result = match (outcome.changes.len(), reused.len()) {
        (0, _) => {
            format!("every target datacenter already has its {infra_id} folder; nothing changed")
        }
        (made, 0) => format!("created {made} folder(s) named {infra_id}"),
        (made, kept) => format!("created {made} folder(s) named {infra_id}, reused {kept}"),
    };
    Ok(outcome)
}

/// Undoes the step: removes the folders it created that are still empty.
pub async fn undo(context: &StepContext) -> Result<Outcome, StepError> {
    let backups = Backups::of(context);
    let created: Vec<CreatedFolder> = match backups.load(CREATED_BACKUP).await? {
        Some(text) => serde_json::from_str(&text).map_err(|e| {
            StepError::Refused(format!(
                "the backup {} is not readable ({e}); remove the folders by hand",
                backups.describe(CREATED_BACKUP)
            ))
        })?,
        None => Vec::new(),
    };
    let mut outcome = Outcome::default();
    let mut kept = Vec::new();
    for folder in &created {
        let vcenter = connect_target(context, &folder.server).await?;
        let Some(found) = existing_folder(&vcenter, &folder.path).await? else {
            close(&vcenter).await;
            continue;
        };
        let children = vcenter.properties(&found, &["childEntity"]).await?;
        if children
            .get("childEntity")
            .is_some_and(|c| !c.children.is_empty())
        {
            kept.push(format!("{}:{} (not empty)", folder.server, folder.path));
            close(&vcenter).await;
            continue;
        }
        vcenter.destroy(&found).await?;
        if existing_folder(&vcenter, &folder.path).await?.is_some() {
            return Err(StepError::Unverified(format!(
                "vCenter {}: removed {} but it is still there",
                folder.server, folder.path
            )));
        }
        outcome.changes.push(format!(
            "vCenter {}: removed folder {}",
            folder.server, folder.path
        ));
        close(&vcenter).await;
    }
    outcome.result = match (outcome.changes.len(), kept.is_empty()) {
        (0, true) => "no folder created by this migration is left; nothing changed".into(),
        (removed, true) => format!("removed {removed} folder(s) this migration created"),
        (removed, false) => format!(
            "removed {removed} folder(s); kept {} because they hold objects",
            kept.join(", ")
        ),
    };
    Ok(outcome)
}
