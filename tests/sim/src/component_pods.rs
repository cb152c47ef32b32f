//! A stand-in for the kubelet of the nodes that run OpenShift's components,
//! so that their Deployments and DaemonSets have Ready pods with logs.
//!
//! Migration steps 09 restart-pods and 10 monitor-pods delete the pods of the
//! vSphere components, wait until their replacements are Ready and read
//! their logs through `pods/log` for failure signatures. [`ComponentPods`]
//! makes that work on the simulated cluster without running anything: it
//! watches the pods of some namespaces, binds each to a Node (a DaemonSet
//! pod to the Node of its node affinity, as the scheduler would; any other
//! pod to a control plane Node), reports it Running with every container
//! Ready, and gives every container a few benign klog-style startup lines,
//! served by the control plane's kubelet API
//! ([`crate::kubelet_api`]). A deleted pod is finalized at once, so the real
//! ReplicaSet and DaemonSet controllers create its replacement, which the
//! stand-in then marks Ready.
//!
//! Tests change what a workload's pods do, now and for pods created later:
//! [`ComponentPods::inject_log`] adds a log line,
//! [`ComponentPods::crash_loop`] makes a container crash-loop,
//! [`ComponentPods::never_ready`] keeps pods not Ready, and
//! [`ComponentPods::heal`] undoes all of that.
//!
//! It runs on the control plane's kubelet API runtime, not on the caller's:
//! seeding a cluster blocks its thread on `govc`, and tests often run on a
//! single-threaded runtime.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::SimError;
use crate::control_plane::{ControlPlane, client_from};
use crate::kubelet_api::{ContainerLogs, KUBELET_ADDRESS};

/// Node labels of a control plane Node, where pods without a node affinity go.
const CONTROL_PLANE_LABELS: [&str; 2] = [
    "node-role.kubernetes.io/master",
    "node-role.kubernetes.io/control-plane",
];

/// The restart count a crash-looping container reports.
const CRASH_RESTARTS: i32 = 5;

/// The stand-in for the pods of some namespaces; stops when dropped.
pub struct ComponentPods {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    namespaces: Vec<String>,
    logs: ContainerLogs,
    /// Bound to the kubelet API runtime: used by tasks there only.
    client: Client,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    /// Pods the stand-in runs, by uid.
    pods: HashMap<String, Started>,
    /// Known Nodes and whether each is a control plane Node.
    nodes: Vec<(String, bool)>,
    /// Pods waiting for a Node to bind to.
    waiting: Vec<Pod>,
    /// Pods whose deletion it completed, by uid: never started again.
    gone: HashSet<String>,
    next_node: usize,
    next_ip: u32,
}

struct Rule {
    namespace: String,
    workload: String,
    what: Behaviour,
}

enum Behaviour {
    Log { container: String, line: String },
    CrashLoop { container: String },
    NotReady,
}

#[derive(Clone)]
struct Started {
    namespace: String,
    name: String,
    uid: String,
    workload: String,
    /// (name, image) of each container.
    containers: Vec<(String, String)>,
    started_at: Timestamp,
    pod_ip: String,
}

/// Whether `pod` belongs to `workload` in `namespace`: its Deployment or
/// DaemonSet, or a prefix of its name.
fn belongs(pod: &Started, namespace: &str, workload: &str) -> bool {
    pod.namespace == namespace && (pod.workload == workload || pod.name.starts_with(workload))
}

impl Rule {
    fn applies_to(&self, pod: &Started) -> bool {
        belongs(pod, &self.namespace, &self.workload)
    }
}

impl ComponentPods {
    /// Starts the stand-in for the pods of `namespaces` on `plane`. Pods
    /// without a node affinity go to the control plane Nodes
    /// (`node-role.kubernetes.io/master` or `…/control-plane`), or to any
    /// Node when there is none; a pod waits until a Node exists.
    pub async fn start(
        plane: &ControlPlane,
        namespaces: &[&str],
    ) -> Result<ComponentPods, SimError> {
        let runtime = plane.kubelet_api().runtime().clone();
        let kubeconfig = plane.kubeconfig().to_owned();
        let logs = plane.logs().clone();
        let namespaces: Vec<String> = namespaces.iter().map(|n| (*n).to_owned()).collect();
        let shared = runtime
            .spawn(async move {
                let client = client_from(&kubeconfig).await?;
                Ok::<_, SimError>(Arc::new(Shared {
                    namespaces,
                    logs,
                    client,
                    state: Mutex::new(State::default()),
                }))
            })
            .await
            .map_err(|e| SimError::Setup(format!("component pods: the start failed: {e}")))??;
        let task = runtime.spawn(shared.clone().run());
        Ok(ComponentPods {
            shared,
            runtime,
            task,
        })
    }

    /// The namespaces whose pods it runs.
    pub fn namespaces(&self) -> &[String] {
        &self.shared.namespaces
    }

    /// Adds `line` to the log of container `container` of the pods of
    /// `workload` in `namespace`: written now in the pods that run, and
    /// after the startup lines in every such pod started later (a restarted
    /// one). `workload` is a Deployment or DaemonSet name, or any prefix of
    /// the pods' names.
    pub fn inject_log(&self, namespace: &str, workload: &str, container: &str, line: &str) {
        let Ok(mut state) = self.shared.state.lock() else {
            return;
        };
        let rule = Rule {
            namespace: namespace.to_owned(),
            workload: workload.to_owned(),
            what: Behaviour::Log {
                container: container.to_owned(),
                line: line.to_owned(),
            },
        };
        for pod in state.pods.values().filter(|p| rule.applies_to(p)) {
            if pod.containers.iter().any(|(c, _)| c == container) {
                self.shared
                    .logs
                    .append(namespace, &pod.name, container, line);
            }
        }
        state.rules.push(rule);
    }

    /// Makes container `container` of the pods of `workload` crash-loop, now
    /// and in pods started later: waiting with reason `CrashLoopBackOff`,
    /// restart count 5, the last state terminated with exit code 1, and the
    /// pod not Ready. Returns once the running pods report it.
    pub async fn crash_loop(
        &self,
        namespace: &str,
        workload: &str,
        container: &str,
    ) -> Result<(), SimError> {
        self.add_rule(
            namespace,
            workload,
            Behaviour::CrashLoop {
                container: container.to_owned(),
            },
        )
        .await
    }

    /// Keeps the pods of `workload` running but never Ready (a failing
    /// readiness probe), now and in pods started later. Returns once the
    /// running pods report it.
    pub async fn never_ready(&self, namespace: &str, workload: &str) -> Result<(), SimError> {
        self.add_rule(namespace, workload, Behaviour::NotReady)
            .await
    }

    /// Forgets what tests asked of `workload` (log lines, crash loops, not
    /// Ready) for pods started later, and marks its running pods Ready again.
    /// Lines already logged stay.
    pub async fn heal(&self, namespace: &str, workload: &str) -> Result<(), SimError> {
        if let Ok(mut state) = self.shared.state.lock() {
            state
                .rules
                .retain(|r| !(r.namespace == namespace && r.workload == workload));
        }
        self.refresh(namespace, workload).await
    }

    /// Waits until every Deployment in its namespaces has all its replicas
    /// Ready and up to date, and every DaemonSet has at least one pod and all
    /// of them Ready.
    pub async fn wait_ready(&self, client: &Client, limit: Duration) -> Result<(), SimError> {
        let deadline = Instant::now() + limit;
        loop {
            let pending = self.not_ready(client).await?;
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(SimError::Setup(format!(
                    "component pods not Ready after {limit:?}: {}",
                    pending.join(", ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops watching (the pods keep their last status).
    pub fn stop(&self) {
        self.task.abort();
    }

    async fn add_rule(
        &self,
        namespace: &str,
        workload: &str,
        what: Behaviour,
    ) -> Result<(), SimError> {
        if let Ok(mut state) = self.shared.state.lock() {
            state.rules.push(Rule {
                namespace: namespace.to_owned(),
                workload: workload.to_owned(),
                what,
            });
        }
        self.refresh(namespace, workload).await
    }

    /// Rewrites the status of the running pods of `workload` from the rules.
    async fn refresh(&self, namespace: &str, workload: &str) -> Result<(), SimError> {
        let (shared, namespace, workload) = (
            self.shared.clone(),
            namespace.to_owned(),
            workload.to_owned(),
        );
        self.runtime
            .spawn(async move {
                let pods: Vec<Started> = shared
                    .state
                    .lock()
                    .map(|s| {
                        s.pods
                            .values()
                            .filter(|p| belongs(p, &namespace, &workload))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                for pod in pods {
                    shared.report(&pod).await?;
                }
                Ok(())
            })
            .await
            .map_err(|e| SimError::Setup(format!("component pods: the update failed: {e}")))?
    }

    /// The Deployments and DaemonSets of its namespaces that are not Ready yet.
    async fn not_ready(&self, client: &Client) -> Result<Vec<String>, SimError> {
        let mine = |ns: Option<&String>| ns.is_some_and(|ns| self.shared.namespaces.contains(ns));
        let mut pending = Vec::new();
        let deployments = Api::<Deployment>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| SimError::Kube("list Deployments".into(), e))?;
        for d in deployments
            .items
            .iter()
            .filter(|d| mine(d.metadata.namespace.as_ref()))
        {
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let status = d.status.clone().unwrap_or_default();
            let current = status.observed_generation >= d.metadata.generation;
            if !(current
                && status.ready_replicas.unwrap_or(0) == want
                && status.updated_replicas.unwrap_or(0) == want
                && status.replicas.unwrap_or(0) == want)
            {
                pending.push(format!(
                    "deployment {}/{} ({} of {want} Ready)",
                    d.namespace().unwrap_or_default(),
                    d.name_any(),
                    status.ready_replicas.unwrap_or(0)
                ));
            }
        }
        let daemon_sets = Api::<DaemonSet>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| SimError::Kube("list DaemonSets".into(), e))?;
        for ds in daemon_sets
            .items
            .iter()
            .filter(|d| mine(d.metadata.namespace.as_ref()))
        {
            let status = ds.status.clone().unwrap_or_default();
            let current = status.observed_generation >= ds.metadata.generation;
            let want = status.desired_number_scheduled;
            if !(current
                && want > 0
                && status.number_ready == want
                && status.updated_number_scheduled.unwrap_or(0) == want)
            {
                pending.push(format!(
                    "daemonset {}/{} ({} of {want} Ready)",
                    ds.namespace().unwrap_or_default(),
                    ds.name_any(),
                    status.number_ready
                ));
            }
        }
        Ok(pending)
    }
}

impl Drop for ComponentPods {
    fn drop(&mut self) {
        self.stop();
    }
}

enum Event {
    Pod(Box<Pod>),
    Node(Box<Node>),
    NodeGone(String),
}

impl Shared {
    fn pods(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), namespace)
    }

    async fn run(self: Arc<Self>) {
        let pods = watcher(
            Api::<Pod>::all(self.client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .applied_objects()
        .filter_map(|e| async move { e.ok().map(|p| Event::Pod(Box::new(p))) });
        let nodes = watcher(
            Api::<Node>::all(self.client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .filter_map(|e| async move {
            match e.ok()? {
                watcher::Event::Apply(node) | watcher::Event::InitApply(node) => {
                    Some(Event::Node(Box::new(node)))
                }
                watcher::Event::Delete(node) => Some(Event::NodeGone(node.name_any())),
                watcher::Event::Init | watcher::Event::InitDone => None,
            }
        });
        let mut events = futures::stream::select(pods.boxed(), nodes.boxed());
        // Each pod is handled on a task of its own: a start is two API
        // calls, and a cluster starts a dozen pods at once.
        while let Some(event) = events.next().await {
            match event {
                Event::Pod(pod) => {
                    if pod
                        .namespace()
                        .is_some_and(|ns| self.namespaces.contains(&ns))
                    {
                        drop(tokio::spawn(self.clone().handle_pod(*pod)));
                    }
                }
                Event::Node(node) => self.clone().handle_node(*node),
                Event::NodeGone(name) => {
                    if let Ok(mut state) = self.state.lock() {
                        state.nodes.retain(|(n, _)| *n != name);
                    }
                }
            }
        }
    }

    fn handle_node(self: Arc<Self>, node: Node) {
        let name = node.name_any();
        let control_plane = CONTROL_PLANE_LABELS
            .iter()
            .any(|l| node.labels().contains_key(*l));
        let waiting = match self.state.lock() {
            Ok(mut state) if !state.nodes.iter().any(|(n, _)| *n == name) => {
                state.nodes.push((name, control_plane));
                std::mem::take(&mut state.waiting)
            }
            _ => return,
        };
        for pod in waiting {
            drop(tokio::spawn(self.clone().handle_pod(pod)));
        }
    }

    async fn handle_pod(self: Arc<Self>, pod: Pod) {
        let namespace = pod.namespace().unwrap_or_default();
        let (name, uid) = (pod.name_any(), pod.uid().unwrap_or_default());
        if pod.metadata.deletion_timestamp.is_some() {
            self.finish_deletion(&namespace, &name, &uid).await;
            return;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
        if matches!(phase.as_deref(), Some("Succeeded" | "Failed")) {
            return;
        }
        match pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
            None => match self.choose_node(&pod) {
                // Started right after the binding, without waiting for the
                // event that reports it.
                Some(node) => {
                    if self.bind(&namespace, &name, &node).await {
                        self.start_pod(&pod, namespace).await;
                    }
                }
                None => {
                    if let Ok(mut state) = self.state.lock()
                        && !state.waiting.iter().any(|p| p.uid() == pod.uid())
                    {
                        state.waiting.push(pod);
                    }
                }
            },
            Some(_) => self.start_pod(&pod, namespace).await,
        }
    }

    /// A DaemonSet pod's Node (its required node affinity names it, as the
    /// DaemonSet controller writes it), or the next control plane Node.
    fn choose_node(&self, pod: &Pod) -> Option<String> {
        if let Some(node) = affinity_node(pod) {
            return Some(node);
        }
        let mut state = self.state.lock().ok()?;
        let control_plane: Vec<String> = state
            .nodes
            .iter()
            .filter(|(_, cp)| *cp)
            .map(|(n, _)| n.clone())
            .collect();
        let candidates = if control_plane.is_empty() {
            state.nodes.iter().map(|(n, _)| n.clone()).collect()
        } else {
            control_plane
        };
        if candidates.is_empty() {
            return None;
        }
        let node = candidates[state.next_node % candidates.len()].clone();
        state.next_node += 1;
        Some(node)
    }

    /// Binds `pod` to `node`; false when it was not bound here.
    async fn bind(&self, namespace: &str, pod: &str, node: &str) -> bool {
        let binding = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": pod},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        let result: Result<Value, _> = self
            .pods(namespace)
            .create_subresource("binding", pod, &PostParams::default(), &binding)
            .await;
        match result {
            Ok(_) => true,
            // Already bound (an event seen twice) or gone.
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => false,
            Err(err) => {
                eprintln!("vmi-sim component pods: cannot bind pod {namespace}/{pod}: {err}");
                false
            }
        }
    }

    async fn start_pod(&self, pod: &Pod, namespace: String) {
        let containers: Vec<(String, String)> = pod
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
            .collect();
        let uid = pod.uid().unwrap_or_default();
        let started = {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            // Started once (events and the binding race), never after its
            // deletion.
            if state.pods.contains_key(&uid) || state.gone.contains(&uid) {
                return;
            }
            state.next_ip += 1;
            let started = Started {
                namespace,
                name: pod.name_any(),
                uid,
                workload: workload_of(pod),
                containers,
                started_at: Timestamp::now(),
                pod_ip: format!("10.128.{}.{}", state.next_ip / 250, 2 + state.next_ip % 250),
            };
            // Startup lines, then what tests asked for, under the lock that
            // `inject_log` takes: no line is lost or written twice.
            for (container, _) in &started.containers {
                for (i, line) in startup_lines(&started, container).iter().enumerate() {
                    let at = offset(started.started_at, i);
                    self.logs
                        .append_at(&started.namespace, &started.name, container, at, line);
                }
            }
            let mut n = 3;
            for rule in state.rules.iter().filter(|r| r.applies_to(&started)) {
                if let Behaviour::Log { container, line } = &rule.what
                    && started.containers.iter().any(|(c, _)| c == container)
                {
                    let at = offset(started.started_at, n);
                    self.logs
                        .append_at(&started.namespace, &started.name, container, at, line);
                    n += 1;
                }
            }
            state.pods.insert(started.uid.clone(), started.clone());
            started
        };
        if let Err(err) = self.report(&started).await {
            eprintln!("vmi-sim component pods: {err}");
        }
    }

    /// Writes the status the rules give `pod`.
    async fn report(&self, pod: &Started) -> Result<(), SimError> {
        let status = {
            let state = self
                .state
                .lock()
                .map_err(|_| SimError::Setup("component pods: state lock poisoned".into()))?;
            pod_status(pod, &state.rules)
        };
        for (container, _) in &pod.containers {
            let crashing = status.1.contains(container);
            self.logs
                .set_restarted(&pod.namespace, &pod.name, container, crashing);
        }
        let written = self
            .pods(&pod.namespace)
            .patch_status(
                &pod.name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status.0})),
            )
            .await;
        match written {
            Ok(_) => Ok(()),
            // Deleted meanwhile.
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(SimError::Kube(
                format!("write the status of pod {}/{}", pod.namespace, pod.name),
                e,
            )),
        }
    }

    /// Completes a deletion as the kubelet does once the containers stopped.
    async fn finish_deletion(&self, namespace: &str, pod: &str, uid: &str) {
        if let Ok(mut state) = self.state.lock() {
            state.pods.remove(uid);
            state.gone.insert(uid.to_owned());
        }
        self.logs.forget_pod(namespace, pod);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let _ = self.pods(namespace).delete(pod, &params).await;
    }
}

/// The Node a DaemonSet pod's required node affinity names
/// (`matchFields metadata.name In [node]`).
fn affinity_node(pod: &Pod) -> Option<String> {
    let terms = &pod
        .spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|f| f.key == "metadata.name" && f.operator == "In")
        .and_then(|f| f.values.as_ref()?.first().cloned())
}

/// The workload a pod belongs to: its DaemonSet (or other controller), or
/// the Deployment of its ReplicaSet (the ReplicaSet's name without its
/// `-<pod-template-hash>`); the pod's own name without a controller.
fn workload_of(pod: &Pod) -> String {
    let Some(owner) = pod
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true))
    else {
        return pod.name_any();
    };
    if owner.kind == "ReplicaSet"
        && let Some(hash) = pod.labels().get("pod-template-hash")
        && let Some(deployment) = owner.name.strip_suffix(&format!("-{hash}"))
    {
        return deployment.to_owned();
    }
    owner.name.clone()
}

fn offset(at: Timestamp, n: usize) -> Timestamp {
    let micros = i64::try_from(n).unwrap_or(0) * 1000;
    at.checked_add(SignedDuration::from_micros(micros))
        .unwrap_or(at)
}

/// A klog header line (`I1121 10:00:00.000000       1 file.go:42] message`).
pub fn klog_line(at: Timestamp, source: &str, message: &str) -> String {
    format!(
        "I{}.{:06} {:>7} {source}] {message}",
        at.strftime("%m%d %H:%M:%S"),
        at.subsec_microsecond(),
        1
    )
}

fn startup_lines(pod: &Started, container: &str) -> Vec<String> {
    let (ns, workload, at) = (&pod.namespace, &pod.workload, pod.started_at);
    vec![
        klog_line(
            offset(at, 0),
            "main.go:42",
            &format!("starting {container} (vmi-sim stand-in for {ns}/{workload})"),
        ),
        klog_line(
            offset(at, 1),
            "leaderelection.go:257",
            &format!("attempting to acquire leader lease {ns}/{workload}..."),
        ),
        klog_line(
            offset(at, 2),
            "leaderelection.go:271",
            &format!("successfully acquired lease {ns}/{workload}"),
        ),
    ]
}

fn api_time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A pod's `status` under `rules`, and the containers that crash-loop.
fn pod_status(pod: &Started, rules: &[Rule]) -> (Value, Vec<String>) {
    let rules: Vec<&Rule> = rules.iter().filter(|r| r.applies_to(pod)).collect();
    let not_ready = rules.iter().any(|r| matches!(r.what, Behaviour::NotReady));
    let started_at = api_time(pod.started_at);
    let now = api_time(Timestamp::now());
    let mut crashing = Vec::new();
    let mut unready = Vec::new();
    let mut statuses = Vec::new();
    for (name, image) in &pod.containers {
        let crash = rules
            .iter()
            .any(|r| matches!(&r.what, Behaviour::CrashLoop { container } if container == name));
        let id = container_id(&pod.uid, name);
        let mut status = json!({
            "name": name, "image": image, "imageID": image, "containerID": id,
            "ready": !(crash || not_ready), "started": !crash, "restartCount": 0,
            "state": {"running": {"startedAt": started_at}},
        });
        if crash {
            crashing.push(name.clone());
            status["restartCount"] = json!(CRASH_RESTARTS);
            status["state"] = json!({"waiting": {"reason": "CrashLoopBackOff",
                "message": format!("back-off 5m0s restarting failed container={name} pod={}_{}({})",
                    pod.name, pod.namespace, pod.uid)}});
            status["lastState"] = json!({"terminated": {"exitCode": 1, "reason": "Error",
                "startedAt": now, "finishedAt": now, "containerID": id}});
        }
        if crash || not_ready {
            unready.push(name.clone());
        }
        statuses.push(status);
    }
    let ready = if unready.is_empty() {
        json!({"status": "True", "lastTransitionTime": now})
    } else {
        json!({"status": "False", "lastTransitionTime": now, "reason": "ContainersNotReady",
               "message": format!("containers with unready status: [{}]", unready.join(" "))})
    };
    let condition = |kind: &str, base: &Value| {
        let mut c = base.clone();
        c["type"] = json!(kind);
        c
    };
    let done = json!({"status": "True", "lastTransitionTime": started_at});
    let status = json!({
        "phase": "Running",
        "hostIP": KUBELET_ADDRESS,
        "hostIPs": [{"ip": KUBELET_ADDRESS}],
        "podIP": pod.pod_ip,
        "podIPs": [{"ip": pod.pod_ip}],
        "startTime": started_at,
        "qosClass": "BestEffort",
        "conditions": [
            condition("PodReadyToStartContainers", &done),
            condition("Initialized", &done),
            condition("Ready", &ready),
            condition("ContainersReady", &ready),
            condition("PodScheduled", &done),
        ],
        "containerStatuses": statuses,
    });
    (status, crashing)
}

/// A CRI-O container id derived from the pod and container.
fn container_id(uid: &str, container: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{uid}/{container}").as_bytes(),
    );
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("cri-o://{hex}")
}
