//! A stand-in for the cloud credential operator's vSphere passthrough mode
//! (research `openshift-vsphere.md` §2): while `kube-system/vsphere-creds`
//! carries `cloudcredential.openshift.io/mode: passthrough`, every secret
//! labelled `cloudcredential.openshift.io/credentials-request: "true"` is
//! kept an exact copy of its data. A key added to a copy by hand is removed
//! again, as the real operator does (`syncTargetSecret` replaces `.data`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

/// The label the operator puts on the secrets it manages.
pub const MANAGED_LABEL: &str = "cloudcredential.openshift.io/credentials-request";
/// The root secret's annotation naming its mode.
pub const MODE_ANNOTATION: &str = "cloudcredential.openshift.io/mode";

/// The running stand-in.
pub struct CredentialOperator {
    task: tokio::task::JoinHandle<()>,
    copies: Arc<AtomicU64>,
}

impl CredentialOperator {
    /// Starts copying the root secret into the managed secrets.
    pub fn start(client: Client) -> CredentialOperator {
        let copies = Arc::new(AtomicU64::new(0));
        let counter = copies.clone();
        let task = tokio::spawn(async move {
            let root = watcher(
                Api::<Secret>::namespaced(client.clone(), "kube-system"),
                watcher::Config::default().fields("metadata.name=vsphere-creds"),
            )
            .default_backoff()
            .applied_objects()
            .map(|_| ());
            let copies = watcher(
                Api::<Secret>::all(client.clone()),
                watcher::Config::default().labels(&format!("{MANAGED_LABEL}=true")),
            )
            .default_backoff()
            .applied_objects()
            .map(|_| ());
            let mut events = futures::stream::select(root, copies).boxed();
            while events.next().await.is_some() {
                if let Ok(n) = sync(&client).await {
                    counter.fetch_add(n, Ordering::Relaxed);
                }
            }
        });
        CredentialOperator { task, copies }
    }

    /// How many managed secrets it has rewritten so far.
    pub fn copies(&self) -> u64 {
        self.copies.load(Ordering::Relaxed)
    }
}

impl Drop for CredentialOperator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One pass: every managed secret whose data differs from the root's gets
/// the root's data. Returns how many were rewritten.
async fn sync(client: &Client) -> Result<u64, kube::Error> {
    let Some(root) = Api::<Secret>::namespaced(client.clone(), "kube-system")
        .get_opt("vsphere-creds")
        .await?
    else {
        return Ok(0);
    };
    if root.annotations().get(MODE_ANNOTATION).map(String::as_str) != Some("passthrough") {
        return Ok(0);
    }
    let data = root.data.clone().unwrap_or_default();
    let managed = Api::<Secret>::all(client.clone())
        .list(&ListParams::default().labels(&format!("{MANAGED_LABEL}=true")))
        .await?;
    let mut rewritten = 0;
    for mut secret in managed {
        if secret.data.clone().unwrap_or_default() == data {
            continue;
        }
        let namespace = secret.namespace().unwrap_or_default();
        // `.data` replaced whole, as CreateOrPatch with a new map does; the
        // resourceVersion read guards against a concurrent writer (the next
        // event syncs again).
        secret.data = Some(data.clone());
        secret.string_data = None;
        Api::<Secret>::namespaced(client.clone(), &namespace)
            .replace(&secret.name_any(), &PostParams::default(), &secret)
            .await?;
        rewritten += 1;
    }
    Ok(rewritten)
}
