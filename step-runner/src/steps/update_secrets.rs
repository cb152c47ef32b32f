//! Step 04 update-secrets: add each target vCenter's `<server>.username` and
//! `<server>.password` to the vSphere credentials the cluster's components
//! read, keeping the source's keys (the source machines still need them).
//!
//! Where the cloud credential operator manages the component secrets (the
//! root `kube-system/vsphere-creds` is in passthrough mode and the copy
//! carries its label), only the root is edited and the step waits until the
//! operator has copied it: an edit to a managed copy would be reverted.
//! Any other component secret is edited directly. A key that already holds
//! another value stops the step before anything changes. Which keys were
//! added (never their values) is recorded; the undo removes exactly those.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::backup::Backups;
use crate::context::{Outcome, StepContext, StepError};
use crate::vcenters::credentials;

/// The root secret, as namespace and name.
pub const ROOT: (&str, &str) = ("kube-system", "vsphere-creds");
/// The component secrets (research §2), as namespace and name.
pub const COMPONENTS: [(&str, &str); 4] = [
    ("openshift-machine-api", "vsphere-cloud-credentials"),
    (
        "openshift-cloud-controller-manager",
        "vsphere-cloud-credentials",
    ),
    (
        "openshift-cluster-csi-drivers",
        "vmware-vsphere-cloud-credentials",
    ),
    (
        "openshift-cluster-storage-operator",
        "vsphere-cloud-credentials",
    ),
];
/// The label the credential operator puts on secrets it keeps in sync.
pub const MANAGED_LABEL: &str = "cloudcredential.openshift.io/credentials-request";
/// The root secret's mode annotation.
pub const MODE_ANNOTATION: &str = "cloudcredential.openshift.io/mode";
/// The backup key recording the keys this step added.
pub const ADDED_BACKUP: &str = "04-update-secrets.added";
/// How long the credential operator may take to copy the root secret.
const COPY_TIMEOUT: Duration = Duration::from_secs(300);

/// Keys this step added to one secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddedKeys {
    /// `namespace/name` of the secret.
    pub secret: String,
    /// The keys added.
    pub keys: Vec<String>,
}

/// Whether a component secret is kept in sync by the credential operator.
fn managed(root: Option<&Secret>, component: &Secret) -> bool {
    root.is_some_and(|r| {
        r.annotations().get(MODE_ANNOTATION).map(String::as_str) == Some("passthrough")
    }) && component.labels().get(MANAGED_LABEL).map(String::as_str) == Some("true")
}

async fn read(
    context: &StepContext,
    (namespace, name): (&str, &str),
) -> Result<Option<Secret>, StepError> {
    Api::<Secret>::namespaced(context.client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(StepError::kube(format!("read Secret {namespace}/{name}")))
}

/// The keys and values the targets need, in key order.
async fn wanted(context: &StepContext) -> Result<BTreeMap<String, ByteString>, StepError> {
    let mut out = BTreeMap::new();
    for target in &context.vmi.spec.vcenters {
        let creds = credentials(context, &target.server).await?;
        out.insert(
            format!("{}.username", target.server),
            ByteString(creds.username().as_bytes().to_vec()),
        );
        out.insert(
            format!("{}.password", target.server),
            ByteString(creds.password().as_bytes().to_vec()),
        );
    }
    Ok(out)
}

/// The keys of `wanted` that `secret` lacks; a key present with another
/// value is refused (its value is never shown).
fn missing(
    secret: &Secret,
    wanted: &BTreeMap<String, ByteString>,
) -> Result<Vec<String>, StepError> {
    let data = secret.data.clone().unwrap_or_default();
    let mut out = Vec::new();
    for (key, value) in wanted {
        match data.get(key) {
            Some(existing) if existing == value => {}
            Some(_) => {
                return Err(StepError::Refused(format!(
                    "Secret {}/{} already has {key} with a different value than the vmi's credentials Secret; make them the same (or remove the key) after checking which one is right, then retry; nothing was changed",
                    secret.namespace().unwrap_or_default(),
                    secret.name_any()
                )));
            }
            None => out.push(key.clone()),
        }
    }
    Ok(out)
}

fn pointer(key: &str) -> String {
    format!("/data/{}", key.replace('~', "~0").replace('/', "~1"))
}

/// Adds (`Some`) or removes (`None`) keys of a secret read at its
/// resourceVersion, in one JSON patch.
async fn patch_keys(
    context: &StepContext,
    secret: &Secret,
    edits: &[(String, Option<&ByteString>)],
) -> Result<(), StepError> {
    let namespace = secret.namespace().unwrap_or_default();
    let name = secret.name_any();
    let mut ops = vec![json!({"op": "test", "path": "/metadata/resourceVersion",
        "value": secret.resource_version()})];
    if secret.data.is_none() {
        ops.push(json!({"op": "add", "path": "/data", "value": {}}));
    }
    for (key, value) in edits {
        ops.push(match value {
            Some(value) => json!({"op": "add", "path": pointer(key), "value": value}),
            None => json!({"op": "remove", "path": pointer(key)}),
        });
    }
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops))
        .map_err(|e| StepError::Refused(format!("internal: bad Secret patch: {e}")))?;
    Api::<Secret>::namespaced(context.client.clone(), &namespace)
        .patch(&name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .map(|_| ())
        .map_err(|e| match e {
            kube::Error::Api(ref s) if s.code == 422 || s.code == 409 => StepError::Refused(format!(
                "Secret {namespace}/{name} changed while the step edited it; retry the step (delete its Job)"
            )),
            other => StepError::Kube {
                action: format!("update Secret {namespace}/{name}"),
                source: other,
            },
        })
}

/// The secrets to edit: the root when it exists, and each component secret
/// the operator does not keep in sync. Also returns the managed ones.
async fn plan(context: &StepContext) -> Result<(Vec<Secret>, Vec<Secret>), StepError> {
    let root = read(context, ROOT).await?;
    let mut edit = Vec::new();
    let mut copies = Vec::new();
    for component in COMPONENTS {
        match read(context, component).await? {
            Some(secret) if managed(root.as_ref(), &secret) => copies.push(secret),
            Some(secret) => edit.push(secret),
            None => {}
        }
    }
    if let Some(root) = root {
        edit.insert(0, root);
    }
    if edit.is_empty() && copies.is_empty() {
        return Err(StepError::Refused(format!(
            "neither {}/{} nor any vSphere component secret exists: this does not look like an OpenShift cluster on vSphere; nothing was changed",
            ROOT.0, ROOT.1
        )));
    }
    Ok((edit, copies))
}

fn describe(secret: &Secret) -> String {
    format!(
        "{}/{}",
        secret.namespace().unwrap_or_default(),
        secret.name_any()
    )
}

/// Waits until every managed copy holds the root's data for `keys`
/// (`present`) or no longer holds them.
async fn wait_for_copies(
    context: &StepContext,
    copies: &[Secret],
    wanted: &BTreeMap<String, ByteString>,
    present: bool,
) -> Result<(), StepError> {
    let started = Instant::now();
    loop {
        let mut lagging = Vec::new();
        for copy in copies {
            let namespace = copy.namespace().unwrap_or_default();
            let current = read(context, (&namespace, &copy.name_any())).await?;
            let data = current.and_then(|s| s.data).unwrap_or_default();
            let done = wanted.iter().all(|(k, v)| {
                if present {
                    data.get(k) == Some(v)
                } else {
                    !data.contains_key(k)
                }
            });
            if !done {
                lagging.push(describe(copy));
            }
        }
        if lagging.is_empty() {
            return Ok(());
        }
        if started.elapsed() > COPY_TIMEOUT {
            return Err(StepError::Unverified(format!(
                "{}/{} was updated but the cloud credential operator has not copied it to {} after {} s; check `oc -n openshift-cloud-credential-operator logs deploy/cloud-credential-operator`, then retry",
                ROOT.0,
                ROOT.1,
                lagging.join(", "),
                COPY_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn load_added(backups: &Backups) -> Result<Vec<AddedKeys>, StepError> {
    match backups.load(ADDED_BACKUP).await? {
        Some(text) => serde_json::from_str(&text).map_err(|e| {
            StepError::Refused(format!(
                "the backup {} is not readable ({e}); check the vSphere secrets by hand",
                backups.describe(ADDED_BACKUP)
            ))
        }),
        None => Ok(Vec::new()),
    }
}

/// Runs the step.
pub async fn run(context: &StepContext) -> Result<Outcome, StepError> {
    let wanted = wanted(context).await?;
    let (edit, copies) = plan(context).await?;
    // Every secret is checked before any is changed.
    let mut work = Vec::new();
    for secret in &edit {
        let keys = missing(secret, &wanted)?;
        if !keys.is_empty() {
            work.push((secret, keys));
        }
    }
    let backups = Backups::of(context);
    let mut added = load_added(&backups).await?;
    let mut outcome = Outcome::default();
    for (secret, keys) in &work {
        let name = describe(secret);
        match added.iter_mut().find(|a| a.secret == name) {
            Some(entry) => {
                for key in keys {
                    if !entry.keys.contains(key) {
                        entry.keys.push(key.clone());
                    }
                }
            }
            None => added.push(AddedKeys {
                secret: name.clone(),
                keys: keys.clone(),
            }),
        }
        // Recorded before the change, so an interrupted run is undone too.
        let text = serde_json::to_string(&added)
            .map_err(|e| StepError::Refused(format!("internal: {e}")))?;
        backups.save_replacing(ADDED_BACKUP, &text).await?;
        let edits: Vec<(String, Option<&ByteString>)> =
            keys.iter().map(|k| (k.clone(), wanted.get(k))).collect();
        patch_keys(context, secret, &edits).await?;
        outcome
            .changes
            .push(format!("Secret {name}: added {}", keys.join(", ")));
    }
    // Verify: every edited secret holds the keys, every managed copy too.
    let (edit_after, _) = plan(context).await?;
    for secret in &edit_after {
        if !missing(secret, &wanted)?.is_empty() {
            return Err(StepError::Unverified(format!(
                "Secret {} was updated but does not hold the target keys",
                describe(secret)
            )));
        }
    }
    wait_for_copies(context, &copies, &wanted, true).await?;
    if !outcome.changes.is_empty() {
        outcome.backups.push(backups.describe(ADDED_BACKUP));
    }
    let servers: Vec<&str> = context.target_servers();
    let copied = if copies.is_empty() {
        String::new()
    } else {
        format!(
            "; the credential operator copied them to {}",
            copies.iter().map(describe).collect::<Vec<_>>().join(", ")
        )
    };
    outcome.result = if outcome.changes.is_empty() {
        format!(
            "every vSphere secret already holds the credentials of {}{copied}; nothing changed",
            servers.join(", ")
        )
    } else {
        format!(
            "added the credentials of {} to {}{copied}",
            servers.join(", "),
            work.iter()
                .map(|(s, _)| describe(s))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Ok(outcome)
}

/// Undoes the step: removes the keys it added, where they still hold the
/// vmi's values, and waits for the managed copies to lose them.
pub async fn undo(context: &StepContext) -> Result<Outcome, StepError> {
    let backups = Backups::of(context);
    let added = load_added(&backups).await?;
    if added.is_empty() {
        return Ok(Outcome::unchanged("nothing to undo: step 04 added no key"));
    }
    let wanted = wanted(context).await?;
    // Every secret is checked before any is changed.
    let mut work = Vec::new();
    for entry in &added {
        let Some((namespace, name)) = entry.secret.split_once('/') else {
            continue;
        };
        let Some(secret) = read(context, (namespace, name)).await? else {
            continue;
        };
        let data = secret.data.clone().unwrap_or_default();
        let mut remove = Vec::new();
        for key in &entry.keys {
            match data.get(key) {
                None => {}
                Some(value) if wanted.get(key) == Some(value) => remove.push(key.clone()),
                Some(_) => {
                    return Err(StepError::Refused(format!(
                        "Secret {} holds {key} with a value other than the one step 04 added (someone changed it); remove it by hand if it is not needed; nothing was changed",
                        entry.secret
                    )));
                }
            }
        }
        if !remove.is_empty() {
            work.push((entry.secret.clone(), secret, remove));
        }
    }
    let root = format!("{}/{}", ROOT.0, ROOT.1);
    let mut outcome = Outcome::default();
    // The keys the managed copies must lose: those removed from the root.
    let mut gone = BTreeMap::new();
    for (name, secret, remove) in &work {
        let edits: Vec<(String, Option<&ByteString>)> =
            remove.iter().map(|k| (k.clone(), None)).collect();
        patch_keys(context, secret, &edits).await?;
        if *name == root {
            for key in remove {
                if let Some(value) = wanted.get(key) {
                    gone.insert(key.clone(), value.clone());
                }
            }
        }
        outcome
            .changes
            .push(format!("Secret {name}: removed {}", remove.join(", ")));
    }
    let (_, copies) = plan(context).await?;
    wait_for_copies(context, &copies, &gone, false).await?;
    outcome.result = if outcome.changes.is_empty() {
        "no key added by step 04 is left; nothing changed".into()
    } else {
        format!(
            "removed the target vCenter keys step 04 added ({} secret(s))",
            outcome.changes.len()
        )
    };
    Ok(outcome)
}

/// Removes vCenter `server`'s `<server>.username` / `<server>.password`
/// from the root secret and from each component secret the credential
/// operator does not manage, then waits until the managed copies lost them
/// too (step 15, once nothing runs on that vCenter). Returns one line per
/// secret changed; a second call changes nothing.
pub async fn remove_server(context: &StepContext, server: &str) -> Result<Vec<String>, StepError> {
    let keys = [format!("{server}.username"), format!("{server}.password")];
    let (edit, copies) = plan(context).await?;
    let mut changes = Vec::new();
    for secret in &edit {
        let data = secret.data.clone().unwrap_or_default();
        let present: Vec<(String, Option<&ByteString>)> = keys
            .iter()
            .filter(|k| data.contains_key(*k))
            .map(|k| (k.clone(), None))
            .collect();
        if present.is_empty() {
            continue;
        }
        patch_keys(context, secret, &present).await?;
        changes.push(format!(
            "Secret {}: removed {}",
            describe(secret),
            present
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let (after, _) = plan(context).await?;
    if let Some(left) = after.iter().find(|s| {
        s.data
            .as_ref()
            .is_some_and(|d| keys.iter().any(|k| d.contains_key(k)))
    }) {
        return Err(StepError::Unverified(format!(
            "Secret {} still holds the keys of {server} after they were removed",
            describe(left)
        )));
    }
    let gone: BTreeMap<String, ByteString> = keys
        .iter()
        .map(|k| (k.clone(), ByteString(Vec::new())))
        .collect();
    wait_for_copies(context, &copies, &gone, false).await?;
    Ok(changes)
}
