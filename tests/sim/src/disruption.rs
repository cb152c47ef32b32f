//! Node disruption accounting: on a real cluster every change of the text
//! of `openshift-config/cloud-provider-config` reaches every node's
//! `/etc/kubernetes/cloud.conf` through the machine config operator and so
//! is one drain-and-reboot rollout of every node (research
//! `openshift-vsphere.md` §3.5). The simulated cluster has no nodes to
//! reboot, so it counts those changes instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};

/// Counts the node rollouts the cloud-provider-config changes would cause.
pub struct CloudConfigRollouts {
    count: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CloudConfigRollouts {
    /// Starts counting from the text as it is now.
    pub fn start(client: Client) -> CloudConfigRollouts {
        let count = Arc::new(AtomicUsize::new(0));
        let counter = count.clone();
        let api = Api::<ConfigMap>::namespaced(client, "openshift-config");
        let task = tokio::spawn(async move {
            let mut last: Option<String> = None;
            let mut events = watcher(
                api,
                watcher::Config::default().fields("metadata.name=cloud-provider-config"),
            )
            .applied_objects()
            .boxed();
            while let Some(event) = events.next().await {
                let Ok(map) = event else { continue };
                let text = map.data.unwrap_or_default().get("config").cloned();
                if last.is_some() && last != text {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                last = text;
            }
        });
        CloudConfigRollouts { count, task }
    }

    /// The rollouts counted so far.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

impl Drop for CloudConfigRollouts {
    fn drop(&mut self) {
        self.task.abort();
    }
}
