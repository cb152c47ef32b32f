//! Disruption accounting (DESIGN §9: node rollouts caused, minutes with
//! the CVO down).
//!
//! Node rollouts: on a real cluster every change of the text of
//! `openshift-config/cloud-provider-config` reaches every node's
//! `/etc/kubernetes/cloud.conf` through the machine config operator and so
//! is one drain-and-reboot rollout of every node (research
//! `openshift-vsphere.md` §3.5). The simulated cluster has no nodes to
//! reboot, so [`CloudConfigRollouts`] counts those changes instead.
//!
//! CVO downtime: while the cluster-version operator is scaled to zero, no
//! one reconciles the release payload (and no upgrade can run). The
//! simulated cluster runs no CVO pod, so [`CvoDowntime`] adds up the time
//! its Deployment asked for zero replicas.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
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

/// The namespace of the cluster-version operator's Deployment.
pub const CVO_NAMESPACE: &str = "openshift-cluster-version";
/// The cluster-version operator's Deployment.
pub const CVO_DEPLOYMENT: &str = "cluster-version-operator";

/// Adds up the time the cluster-version operator was down while watched:
/// its Deployment (`openshift-cluster-version/cluster-version-operator`)
/// had `spec.replicas: 0`, or did not exist. An unset `replicas` means 1,
/// as the API server defaults it.
pub struct CvoDowntime {
    clock: Arc<Mutex<DownClock>>,
    task: tokio::task::JoinHandle<()>,
}

/// Down periods, as the watch saw them.
#[derive(Debug, Default, Clone)]
pub struct DownClock {
    /// The time of the finished down periods.
    finished: Duration,
    /// When the current down period began, if the CVO is down now.
    since: Option<Instant>,
    /// How many times the CVO went down.
    periods: usize,
}

impl DownClock {
    /// Records what the watch saw at `now`: the CVO is down or up.
    pub fn observe(&mut self, down: bool, now: Instant) {
        match (down, self.since) {
            (true, None) => {
                self.since = Some(now);
                self.periods += 1;
            }
            (false, Some(since)) => {
                self.finished += now.saturating_duration_since(since);
                self.since = None;
            }
            _ => {}
        }
    }

    /// The total down time up to `now`, the current period included.
    pub fn total(&self, now: Instant) -> Duration {
        self.finished
            + self
                .since
                .map(|since| now.saturating_duration_since(since))
                .unwrap_or_default()
    }

    /// Whether the CVO is down now.
    pub fn is_down(&self) -> bool {
        self.since.is_some()
    }

    /// How many times it went down.
    pub fn periods(&self) -> usize {
        self.periods
    }
}

impl CvoDowntime {
    /// Starts watching the CVO Deployment; the clock runs from the first
    /// answer of the watch.
    pub fn start(client: Client) -> CvoDowntime {
        let clock = Arc::new(Mutex::new(DownClock::default()));
        let shared = clock.clone();
        let api = Api::<Deployment>::namespaced(client, CVO_NAMESPACE);
        let task = tokio::spawn(async move {
            let mut events = watcher(
                api,
                watcher::Config::default().fields(&format!("metadata.name={CVO_DEPLOYMENT}")),
            )
            .default_backoff()
            .boxed();
            // Between the start and the end of a relist, the objects seen;
            // a Deployment missing at its end is gone.
            let mut listed = false;
            while let Some(event) = events.next().await {
                let down = match event {
                    Ok(
                        watcher::Event::Apply(deployment) | watcher::Event::InitApply(deployment),
                    ) => {
                        listed = true;
                        Some(scaled_to_zero(&deployment))
                    }
                    Ok(watcher::Event::Delete(_)) => Some(true),
                    Ok(watcher::Event::Init) => {
                        listed = false;
                        None
                    }
                    Ok(watcher::Event::InitDone) => (!listed).then_some(true),
                    Err(_) => None,
                };
                if let (Some(down), Ok(mut clock)) = (down, shared.lock()) {
                    clock.observe(down, Instant::now());
                }
            }
        });
        CvoDowntime { clock, task }
    }

    /// The total time the CVO was down so far (the current period included).
    pub fn total(&self) -> Duration {
        self.snapshot().total(Instant::now())
    }

    /// Whether the CVO is down now.
    pub fn is_down(&self) -> bool {
        self.snapshot().is_down()
    }

    /// How many times it went down.
    pub fn periods(&self) -> usize {
        self.snapshot().periods()
    }

    fn snapshot(&self) -> DownClock {
        self.clock.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl Drop for CvoDowntime {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether a Deployment asks for no pods (`replicas` unset means 1).
fn scaled_to_zero(deployment: &Deployment) -> bool {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_adds_up_down_periods_and_the_current_one() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut clock = DownClock::default();
        clock.observe(false, at(0));
        clock.observe(true, at(10));
        clock.observe(true, at(15)); // another event while down: same period
        clock.observe(false, at(40));
        assert_eq!(clock.total(at(100)), Duration::from_secs(30));
        clock.observe(true, at(100));
        assert!(clock.is_down());
        assert_eq!(clock.total(at(107)), Duration::from_secs(37));
        assert_eq!(clock.periods(), 2);
    }
}
