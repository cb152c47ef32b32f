//! The volume journal (DESIGN §7): one ConfigMap per volume,
//! `vmi-volume-<vmi>-<pv>`, next to the vmi, holding everything needed to
//! finish the move or put the volume back by hand: the original PV and PVC,
//! the owners and their replicas, the source and target disks.
//!
//! An entry is written before the change its next state stands for, and
//! moved forward only after that change was verified, so a step killed at
//! any moment resumes from the journal. Like the backups, the ConfigMaps
//! have no owner: deleting the vmi must not lose the only record of where a
//! disk went.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use vmi_api::labels;

use crate::context::{StepContext, StepError};

/// The label every journal ConfigMap carries, with the vmi's name.
pub const JOURNAL_LABEL: &str = "vmi.config.openshift.io/volume-journal";
/// The ConfigMap key holding the entry.
pub const ENTRY_KEY: &str = "entry.json";

/// Where a volume's move is. Each state is reached only once what it
/// names has been verified.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    /// Recorded; nothing changed yet.
    Pending,
    /// Every owner scaled to 0 (replicas recorded) and no pod uses the claim.
    Quiesced,
    /// No VolumeAttachment for the PV, and vSphere shows the disk attached
    /// to no VM.
    Detached,
    /// The disk's files are on the target datastore, size and checksum
    /// verified (Copy), or the relocated disk was found there (Relocate).
    Moved,
    /// The copy is a First Class Disk and a CNS volume on the target.
    Registered,
    /// The PV points at the target disk and its claim is Bound to it.
    Rebound,
    /// The owners are back at their recorded replicas.
    Restored,
    /// Verified end to end.
    Complete,
}

impl State {
    /// The name status and docs use.
    pub fn name(self) -> &'static str {
        match self {
            State::Pending => "Pending",
            State::Quiesced => "Quiesced",
            State::Detached => "Detached",
            State::Moved => "Moved",
            State::Registered => "Registered",
            State::Rebound => "Rebound",
            State::Restored => "Restored",
            State::Complete => "Complete",
        }
    }
}

/// A workload that uses a volume and must be stopped while it moves.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    /// `Deployment`, `StatefulSet`, `ReplicaSet` or `Job`.
    pub kind: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Replicas before the move (for a Job: 1 when it was running, meaning
    /// "not suspended").
    pub replicas: i32,
}

impl Owner {
    /// `Kind namespace/name`.
    pub fn describe(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// A disk as the journal records it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Disk {
    /// Its vCenter.
    pub server: String,
    /// The datacenter of its datastore.
    pub datacenter: String,
    /// The First Class Disk id (the CSI volume handle), once known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The datastore's managed object id.
    pub datastore: String,
    /// The descriptor, `[datastore] path`.
    pub path: String,
    /// The size of each file of the disk (descriptor first), as copied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<DiskFile>,
}

/// One file of a disk.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DiskFile {
    /// `[datastore] path`.
    pub path: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
}

/// Everything about one volume's move.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The PersistentVolume's name (kept: the new PV has the same name).
    pub persistent_volume: String,
    /// Its claim as `namespace/name`, if bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    /// Where the move is.
    pub state: State,
    /// `Copy` or `Relocate`.
    pub mode: String,
    /// The PV as it was (metadata trimmed to what recreating it needs).
    pub original_pv: Value,
    /// The PVC as it was, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_pvc: Option<Value>,
    /// The reclaim policy to restore on the new PV.
    pub reclaim_policy: String,
    /// The workloads stopped for the move, with their replicas before.
    #[serde(default)]
    pub owners: Vec<Owner>,
    /// The disk on the source vCenter (never deleted by this step).
    pub source: Disk,
    /// Where the disk goes or went on the target.
    pub target: Disk,
    /// Relocate mode: the helper VM's name and instance UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helper_vm: Option<HelperVm>,
    /// The last thing that went wrong, for status and triage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The workloads were told to start on the target copy (recorded before
    /// they are scaled back up): from then on they may have written to it,
    /// so the undo refuses this volume even before it reaches Restored.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub workloads_started: bool,
}

/// The dummy VM carrying a disk in Relocate mode.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HelperVm {
    /// Its name, the same on both vCenters.
    pub name: String,
    /// Its instance UUID (kept across a cross-vCenter relocate).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instance_uuid: String,
}

/// The journal of one vmi.
#[derive(Clone)]
pub struct Journal {
    api: Api<ConfigMap>,
    namespace: String,
    vmi: String,
}

/// A ConfigMap name for `pv`: `vmi-volume-<vmi>-<pv>`, shortened with a
/// hash when that is longer than a name may be.
pub fn configmap_name(vmi: &str, pv: &str) -> String {
    let name = format!("vmi-volume-{vmi}-{pv}");
    if name.len() <= 253 {
        return name;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    let hash: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let keep = 253 - hash.len() - 1;
    format!("{}-{hash}", name[..keep].trim_end_matches(['-', '.']))
}

impl Journal {
    /// The journal of the context's vmi.
    pub fn of(context: &StepContext) -> Journal {
        Journal {
            api: Api::namespaced(context.client.clone(), &context.vmi_ref.namespace),
            namespace: context.vmi_ref.namespace.clone(),
            vmi: context.vmi_ref.name.clone(),
        }
    }

    /// Where `pv`'s entry lives, for messages and docs.
    pub fn describe(&self, pv: &str) -> String {
        format!(
            "ConfigMap {}/{}",
            self.namespace,
            configmap_name(&self.vmi, pv)
        )
    }

    /// Every entry, by PV name.
    pub async fn load_all(&self) -> Result<BTreeMap<String, Entry>, StepError> {
        let maps = self
            .api
            .list(&ListParams::default().labels(&format!("{JOURNAL_LABEL}={}", self.vmi)))
            .await
            .map_err(StepError::kube(format!(
                "list the volume journal of vmi {}/{}",
                self.namespace, self.vmi
            )))?;
        let mut entries = BTreeMap::new();
        for map in maps {
            let name = map.metadata.name.clone().unwrap_or_default();
            let text = map
                .data
                .as_ref()
                .and_then(|d| d.get(ENTRY_KEY))
                .ok_or_else(|| {
                    StepError::Refused(format!(
                        "volume journal ConfigMap {}/{name} has no {ENTRY_KEY}; it was edited by hand: restore it from its history or delete it after checking that volume by hand (docs/volumes.md)",
                        self.namespace
                    ))
                })?;
            let entry: Entry = serde_json::from_str(text).map_err(|e| {
                StepError::Refused(format!(
                    "volume journal ConfigMap {}/{name} is not readable ({e}); it was edited by hand: restore it or check that volume by hand (docs/volumes.md)",
                    self.namespace
                ))
            })?;
            entries.insert(entry.persistent_volume.clone(), entry);
        }
        Ok(entries)
    }

    /// Writes `entry`, creating its ConfigMap the first time, and reads it
    /// back: a state is only recorded once the API server has it.
    pub async fn save(&self, entry: &Entry) -> Result<(), StepError> {
        let name = configmap_name(&self.vmi, &entry.persistent_volume);
        let text = serde_json::to_string(entry)
            .map_err(|e| StepError::Refused(format!("internal: journal entry: {e}")))?;
        let action = || format!("write volume journal {}/{name}", self.namespace);
        for _ in 0..5 {
            let current = self
                .api
                .get_opt(&name)
                .await
                .map_err(StepError::kube(action()))?;
            let result = match current {
                Some(mut map) => {
                    map.data
                        .get_or_insert_with(BTreeMap::new)
                        .insert(ENTRY_KEY.into(), text.clone());
                    self.api
                        .replace(&name, &PostParams::default(), &map)
                        .await
                        .map(|_| ())
                }
                None => {
                    let map = ConfigMap {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            namespace: Some(self.namespace.clone()),
                            labels: Some(BTreeMap::from([
                                (JOURNAL_LABEL.to_string(), self.vmi.clone()),
                                (labels::MIGRATION.to_string(), self.vmi.clone()),
                            ])),
                            ..ObjectMeta::default()
                        },
                        data: Some(BTreeMap::from([(ENTRY_KEY.to_string(), text.clone())])),
                        ..ConfigMap::default()
                    };
                    self.api
                        .create(&PostParams::default(), &map)
                        .await
                        .map(|_| ())
                }
            };
            match result {
                Ok(()) => {
                    let stored = self
                        .api
                        .get(&name)
                        .await
                        .map_err(StepError::kube(action()))?;
                    if stored.data.as_ref().and_then(|d| d.get(ENTRY_KEY)) == Some(&text) {
                        return Ok(());
                    }
                }
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => return Err(StepError::kube(action())(e)),
            }
        }
        Err(StepError::Unverified(format!(
            "{} kept changing while vmi wrote it; delete this step's Job to retry",
            self.describe(&entry.persistent_volume)
        )))
    }
}

impl Journal {
    /// Removes `pv`'s entry (after an undo put the volume back).
    pub async fn remove(&self, pv: &str) -> Result<(), StepError> {
        let name = configmap_name(&self.vmi, pv);
        match self.api.delete(&name, &Default::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(StepError::kube(format!(
                "delete volume journal {}/{name}",
                self.namespace
            ))(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_ordered_as_the_move_goes() {
        assert!(State::Pending < State::Quiesced);
        assert!(State::Detached < State::Moved);
        assert!(State::Registered < State::Rebound);
        assert!(State::Restored < State::Complete);
    }

    #[test]
    fn long_names_are_shortened_and_stay_distinct() {
        let a = configmap_name("move", &"a".repeat(250));
        let b = configmap_name("move", &format!("{}b", "a".repeat(249)));
        assert!(a.len() <= 253 && b.len() <= 253);
        assert_ne!(a, b);
        assert_eq!(configmap_name("move", "pvc-1"), "vmi-volume-move-pvc-1");
    }
}
