//! Backups taken before a step changes anything, in a ConfigMap
//! `vmi-backup-<vmi>` next to the vmi (secret data never goes here).
//!
//! A backup is written once: a second run of a step, which finds its change
//! already made, must not replace the original state with the changed one.
//! The ConfigMap has no owner: deleting the vmi keeps the backups.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, PostParams};
use vmi_api::labels;

use crate::context::{StepContext, StepError};

/// The backups of one vmi.
#[derive(Clone)]
pub struct Backups {
    api: Api<ConfigMap>,
    namespace: String,
    name: String,
    vmi_name: String,
}

impl Backups {
    /// The backups of the context's vmi.
    pub fn of(context: &StepContext) -> Backups {
        Backups {
            api: Api::namespaced(context.client.clone(), &context.vmi_ref.namespace),
            namespace: context.vmi_ref.namespace.clone(),
            name: format!("vmi-backup-{}", context.vmi_ref.name),
            vmi_name: context.vmi_ref.name.clone(),
        }
    }

    /// Where backup `key` lives, for status and docs.
    pub fn describe(&self, key: &str) -> String {
        format!("ConfigMap {}/{}: {key}", self.namespace, self.name)
    }

    /// Backup `key`, if taken.
    pub async fn load(&self, key: &str) -> Result<Option<String>, StepError> {
        let map = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(StepError::kube(format!("read backups {}", self.name)))?;
        Ok(map.and_then(|m| m.data).and_then(|d| d.get(key).cloned()))
    }

    /// Stores `value` under `key` unless a backup is already there; returns
    /// whether this call took it. Verified by reading it back.
    pub async fn save_once(&self, key: &str, value: &str) -> Result<bool, StepError> {
        self.save(key, value, false).await
    }

    /// Stores `value` under `key`, replacing what is there: for records that
    /// grow as a step goes (what it created), not for prior state.
    pub async fn save_replacing(&self, key: &str, value: &str) -> Result<(), StepError> {
        self.save(key, value, true).await.map(|_| ())
    }

    async fn save(&self, key: &str, value: &str, replace: bool) -> Result<bool, StepError> {
        for _ in 0..5 {
            let current = self
                .api
                .get_opt(&self.name)
                .await
                .map_err(StepError::kube(format!("read backups {}", self.name)))?;
            let result = match current {
                Some(map)
                    if map
                        .data
                        .as_ref()
                        .and_then(|d| d.get(key))
                        .is_some_and(|v| !replace || v == value) =>
                {
                    return Ok(false);
                }
                Some(mut map) => {
                    map.data
                        .get_or_insert_with(BTreeMap::new)
                        .insert(key.to_owned(), value.to_owned());
                    // The resourceVersion read guards against a concurrent writer.
                    self.api
                        .replace(&self.name, &PostParams::default(), &map)
                        .await
                }
                None => {
                    let map = ConfigMap {
                        metadata: ObjectMeta {
                            name: Some(self.name.clone()),
                            labels: Some(BTreeMap::from([(
                                labels::MIGRATION.to_owned(),
                                self.vmi_name.clone(),
                            )])),
                            ..ObjectMeta::default()
                        },
                        data: Some(BTreeMap::from([(key.to_owned(), value.to_owned())])),
                        ..ConfigMap::default()
                    };
                    self.api.create(&PostParams::default(), &map).await
                }
            };
            match result {
                Ok(_) => {
                    return match self.load(key).await? {
                        Some(stored) if stored == value => Ok(true),
                        _ => Err(StepError::Unverified(format!(
                            "the backup {} does not read back as written",
                            self.describe(key)
                        ))),
                    };
                }
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => {
                    return Err(StepError::Kube {
                        action: format!("write backup {}", self.describe(key)),
                        source: e,
                    });
                }
            }
        }
        Err(StepError::Unverified(format!(
            "could not write backup {}: the ConfigMap kept changing",
            self.describe(key)
        )))
    }
}
