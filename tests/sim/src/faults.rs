//! Fault injection for whole migrations on the [`MigrationRig`]
//! (`orchestrator/tests/fault_injection.rs`, `docs/reliability.md`).
//!
//! A [`FaultPlan`] says what to disturb and when: one [`FaultKind`] at a
//! random moment of a chosen step. [`inject`] waits for that step's pod,
//! then kills the orchestrator, kills the step's process, restarts
//! kube-apiserver or freezes a vCenter for a few seconds. [`supervise`]
//! then plays what a cluster and its operator would do until the migration
//! ends: it starts the orchestrator again when its process exited (its
//! Deployment would), and deletes the Job of a failed step (the documented
//! retry, `oc delete job`). [`Footprint`] reads everything a migration
//! leaves behind that a repeated action could duplicate (MachineSets,
//! tags, categories, folders, disks, CNS volumes, PVs, VMs, backup keys) to
//! compare a disturbed run with an undisturbed one, and
//! [`volume_problems`] checks that every volume moved with its bytes.
//!
//! A vCenter is frozen (SIGSTOP, then SIGCONT) instead of restarted: vcsim
//! keeps its whole inventory in memory, so a restarted simulator would be
//! an empty vCenter, not the same one back.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use serde_json::Value;
use vmi_api::{Phase, StepState, VSphereMigrationInfraStatus};

use crate::migration::progress::{MACHINE_NAMESPACE, as_json};
use crate::migration::{MigrationRig, RigError};
use crate::test_random::TestRandom;
use crate::vcsim::VCenterSim;
use crate::volumes;

/// One kind of disturbance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// SIGKILL the orchestrator and start it again at once (a crashed pod).
    KillOrchestrator,
    /// SIGKILL the running step's process: its pod fails with exit code
    /// 137 and the Job controller starts a new pod (the Job's
    /// `backoffLimit` = the step's `retries`, at least 1).
    KillStep,
    /// Stop kube-apiserver and start it again on the same port with the
    /// same certificates; etcd keeps every object.
    RestartApiServer,
    /// Freeze the source or the target vCenter (SIGSTOP of its vcsim) for
    /// a few seconds, then let it go on (SIGCONT): connections stay open
    /// and calls hang, as with a vCenter that stops answering.
    FreezeVCenter,
}

impl FaultKind {
    /// Every kind, in a fixed order.
    pub const ALL: [FaultKind; 4] = [
        FaultKind::KillOrchestrator,
        FaultKind::KillStep,
        FaultKind::RestartApiServer,
        FaultKind::FreezeVCenter,
    ];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillOrchestrator => "kill-orchestrator",
            FaultKind::KillStep => "kill-step",
            FaultKind::RestartApiServer => "restart-apiserver",
            FaultKind::FreezeVCenter => "freeze-vcenter",
        }
    }
}

/// Which vCenter a [`FaultKind::FreezeVCenter`] freezes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The source vCenter.
    Source,
    /// The target vCenter.
    Target,
}

/// What to disturb, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultPlan {
    /// The disturbance.
    pub kind: FaultKind,
    /// The Job of the step during which it happens (`vmi-step-NN-<step>`).
    pub job: String,
    /// How long after that step's pod started running.
    pub delay: Duration,
    /// For [`FaultKind::FreezeVCenter`]: which one.
    pub side: Side,
    /// For [`FaultKind::FreezeVCenter`]: for how long.
    pub freeze: Duration,
}

impl std::fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.kind.name())?;
        if self.kind == FaultKind::FreezeVCenter {
            let side = match self.side {
                Side::Source => "source",
                Side::Target => "target",
            };
            write!(f, " ({side}, {:.1} s)", self.freeze.as_secs_f64())?;
        }
        write!(f, " {:.1} s into {}", self.delay.as_secs_f64(), self.job)
    }
}

/// `runs` plans: the kinds in shuffled rounds of all four (so a long
/// series disturbs by each kind as often), each at a random moment of a
/// random step of `jobs`: `delay` below that step's `durations` entry (how
/// long its process ran in an undisturbed run, [`pod_run_durations`];
/// 1 s when unknown), so most land while it runs. Every number comes from `random`, drawn before any run, so a
/// seed repeats the same series.
pub fn plans(
    random: &mut TestRandom,
    runs: usize,
    jobs: &[String],
    durations: &BTreeMap<String, Duration>,
) -> Vec<FaultPlan> {
    let mut kinds = Vec::new();
    while kinds.len() < runs {
        let mut round = FaultKind::ALL.to_vec();
        // Fisher–Yates.
        for i in (1..round.len()).rev() {
            let j = random.below(i as u64 + 1) as usize;
            round.swap(i, j);
        }
        kinds.extend(round);
    }
    kinds.truncate(runs);
    kinds
        .into_iter()
        .map(|kind| {
            let job = jobs[random.below(jobs.len() as u64) as usize].clone();
            let span = durations
                .get(&job)
                .copied()
                .unwrap_or(Duration::from_secs(1))
                .max(Duration::from_millis(100));
            let delay = Duration::from_millis(random.below(span.as_millis() as u64));
            let side = if random.below(2) == 0 {
                Side::Source
            } else {
                Side::Target
            };
            let freeze = Duration::from_millis(3000 + random.below(5000));
            FaultPlan {
                kind,
                job,
                delay,
                side,
                freeze,
            }
        })
        .collect()
}

/// What [`inject`] did.
#[derive(Debug, Clone, Default)]
pub struct Injection {
    /// Whether the disturbance happened (the migration can end before the
    /// planned step: then it did not).
    pub done: bool,
    /// The step Jobs whose process ran at that moment.
    pub running: Vec<String>,
    /// What was done, in words (the pod killed, the API's downtime, …).
    pub detail: String,
}

/// How long [`inject`] waits for the planned step or a step process.
const STEP_WAIT: Duration = Duration::from_secs(600);

/// Waits for the pod of `plan.job` to run, waits `plan.delay`, then
/// disturbs. An orchestrator kill happens at that moment whatever runs;
/// the other kinds happen while a step process runs: that one, or the
/// next to start when the planned step ended first. A
/// [`FaultKind::KillStep`] kills the running step's process.
pub async fn inject(rig: &mut MigrationRig, plan: &FaultPlan) -> Result<Injection, RigError> {
    let began = Instant::now();
    loop {
        if rig
            .kubelet
            .runs()
            .iter()
            .any(|r| r.job.as_deref() == Some(&plan.job))
        {
            break;
        }
        if finished(rig).await || began.elapsed() > STEP_WAIT {
            return Ok(Injection {
                detail: format!("{} never ran", plan.job),
                ..Injection::default()
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(plan.delay).await;
    // All but an orchestrator kill happen while a step process runs: when
    // the planned step ended before the moment came, the next one's.
    let waited = Instant::now();
    if plan.kind != FaultKind::KillOrchestrator {
        while rig.kubelet.running().is_empty() {
            if finished(rig).await || waited.elapsed() > STEP_WAIT {
                return Ok(Injection {
                    detail: "no step process ran any more".into(),
                    ..Injection::default()
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let late = if waited.elapsed() > Duration::from_millis(50) {
        format!(
            "; waited {:.1} s for a step process",
            waited.elapsed().as_secs_f64()
        )
    } else {
        String::new()
    };
    let running = running_jobs(rig);
    let detail = match plan.kind {
        FaultKind::KillOrchestrator => {
            if !rig.kill_orchestrator() {
                return Err(RigError::Invalid("no orchestrator was running".into()));
            }
            rig.start_orchestrator()?;
            "orchestrator killed (SIGKILL) and started again".to_owned()
        }
        FaultKind::KillStep => {
            let killed = rig
                .kubelet
                .running()
                .into_iter()
                .find(|(run, _)| rig.kubelet.kill_pod_process(&run.pod));
            match killed {
                Some((run, pid)) => format!(
                    "killed pod {} of {} (pid {pid}, SIGKILL)",
                    run.pod,
                    run.job.as_deref().unwrap_or("no Job"),
                ),
                None => {
                    return Ok(Injection {
                        running,
                        detail: "the step process ended before it could be killed".into(),
                        ..Injection::default()
                    });
                }
            }
        }
        FaultKind::RestartApiServer => {
            let plane = &rig.cluster.plane;
            let away =
                tokio::task::block_in_place(|| plane.restart_apiserver(Duration::from_secs(10)))?;
            format!(
                "kube-apiserver restarted; the API was away {:.1} s",
                away.as_secs_f64()
            )
        }
        FaultKind::FreezeVCenter => {
            let vcenter = match plan.side {
                Side::Source => &rig.cluster.source,
                Side::Target => &rig.cluster.target,
            };
            let frozen = Freeze::start(vcenter);
            tokio::time::sleep(plan.freeze).await;
            drop(frozen);
            format!(
                "{} vCenter frozen (SIGSTOP) for {:.1} s",
                vcenter.role,
                plan.freeze.as_secs_f64()
            )
        }
    };
    Ok(Injection {
        done: true,
        running,
        detail: detail + &late,
    })
}

/// The Jobs whose step process runs now.
fn running_jobs(rig: &MigrationRig) -> Vec<String> {
    let mut jobs: Vec<String> = rig
        .kubelet
        .running()
        .into_iter()
        .filter_map(|(run, _)| run.job)
        .collect();
    jobs.sort();
    jobs
}

async fn finished(rig: &MigrationRig) -> bool {
    matches!(
        rig.status().await.ok().and_then(|s| s.phase),
        Some(Phase::Succeeded)
    )
}

/// A vcsim process stopped with SIGSTOP until dropped (then SIGCONT), so a
/// failing test cannot leave a vCenter frozen.
pub struct Freeze {
    pid: i32,
}

impl Freeze {
    /// Stops `vcenter`'s process.
    pub fn start(vcenter: &VCenterSim) -> Freeze {
        let pid = i32::try_from(vcenter.process.pid).unwrap_or(0);
        if pid > 0 {
            // SAFETY: kill(2) on a child this process started.
            unsafe {
                libc::kill(pid, libc::SIGSTOP);
            }
        }
        Freeze { pid }
    }
}

impl Drop for Freeze {
    fn drop(&mut self) {
        if self.pid > 0 {
            // SAFETY: kill(2) on a child this process started.
            unsafe {
                libc::kill(self.pid, libc::SIGCONT);
            }
        }
    }
}

/// How a supervised migration ended.
#[derive(Debug, Clone)]
pub struct Supervision {
    /// The last status read.
    pub status: VSphereMigrationInfraStatus,
    /// Whether it Succeeded before the deadline.
    pub succeeded: bool,
    /// Orchestrator processes found exited and started again.
    pub orchestrator_restarts: usize,
    /// The Jobs of failed steps deleted to retry them, each with the cause
    /// the status gave.
    pub operator_retries: Vec<String>,
    /// How long it took.
    pub elapsed: Duration,
}

/// The most failed-step retries [`supervise`] makes before giving up.
pub const MAX_OPERATOR_RETRIES: usize = 3;

/// Waits until the migration Succeeded, for at most `patience`. Meanwhile
/// it starts the orchestrator again when its process exited (a leader
/// that could not renew its lease exits; its Deployment restarts it), and
/// when a step failed it deletes that step's Job as an operator would
/// (`oc delete job`, DESIGN §5: the step runs again as attempt + 1), at
/// most [`MAX_OPERATOR_RETRIES`] times.
pub async fn supervise(rig: &mut MigrationRig, patience: Duration) -> Supervision {
    let began = Instant::now();
    let mut supervision = Supervision {
        status: VSphereMigrationInfraStatus::default(),
        succeeded: false,
        orchestrator_restarts: 0,
        operator_retries: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let mut retried_at: BTreeMap<String, i32> = BTreeMap::new();
    while began.elapsed() < patience {
        if !rig.orchestrator_running() && rig.start_orchestrator().is_ok() {
            supervision.orchestrator_restarts += 1;
        }
        if let Ok(status) = rig.status().await {
            supervision.status = status.clone();
            match status.phase {
                Some(Phase::Succeeded) => {
                    supervision.succeeded = true;
                    break;
                }
                Some(Phase::Failed) => {
                    let Some(step) = status
                        .steps
                        .iter()
                        .rev()
                        .find(|s| s.state == StepState::Failed)
                    else {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    };
                    // One deletion per failed attempt.
                    if retried_at.get(&step.job_name) != Some(&step.attempt) {
                        if supervision.operator_retries.len() >= MAX_OPERATOR_RETRIES {
                            break;
                        }
                        let cause = step
                            .failure
                            .as_ref()
                            .map(|f| f.cause.clone())
                            .unwrap_or_default();
                        let jobs: Api<Job> = Api::namespaced(rig.client.clone(), &rig.namespace);
                        if jobs
                            .delete(&step.job_name, &DeleteParams::background())
                            .await
                            .is_ok()
                        {
                            retried_at.insert(step.job_name.clone(), step.attempt);
                            supervision.operator_retries.push(format!(
                                "{} attempt {}: {cause}",
                                step.job_name, step.attempt
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    supervision.elapsed = began.elapsed();
    supervision
}

/// Everything a migration leaves behind that an action repeated after a
/// disturbance could duplicate or lose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Footprint {
    /// The keys of the backup ConfigMap `vmi-backup-<vmi>`.
    pub backup_keys: BTreeSet<String>,
    /// The names of the vmi namespace's ConfigMaps starting with `vmi-`
    /// (backups and volume journals).
    pub configmaps: Vec<String>,
    /// MachineSets.
    pub machinesets: Vec<String>,
    /// Tag categories on each vCenter: `<side>/<name>`.
    pub categories: Vec<String>,
    /// Tags on each vCenter: `<side>/<category>/<name>`.
    pub tags: Vec<String>,
    /// Folders of the target vCenter (inventory paths).
    pub folders: Vec<String>,
    /// First Class Disks of the target vCenter, by name.
    pub target_disks: Vec<String>,
    /// CNS volumes of the target vCenter, by name.
    pub cns_volumes: Vec<String>,
    /// PersistentVolumes as `<pv> -> <namespace>/<claim>`.
    pub pvs: Vec<String>,
    /// VMs (and templates) of the target vCenter, by name.
    pub target_vms: Vec<String>,
}

impl Footprint {
    /// Reads the rig's cluster and both vCenters.
    pub async fn read(rig: &MigrationRig) -> Result<Footprint, RigError> {
        let mut footprint = Footprint::default();
        let configmaps = Api::<ConfigMap>::namespaced(rig.client.clone(), &rig.namespace)
            .list(&ListParams::default())
            .await
            .map_err(|e| RigError::Kube("list ConfigMaps".into(), e))?;
        let backup = format!("vmi-backup-{}", rig.vmi_name());
        for map in configmaps.items {
            let name = map.metadata.name.clone().unwrap_or_default();
            if name == backup {
                footprint.backup_keys = map.data.unwrap_or_default().into_keys().collect();
            }
            if name.starts_with("vmi-") {
                footprint.configmaps.push(name);
            }
        }
        let machinesets = Api::<DynamicObject>::namespaced_with(
            rig.client.clone(),
            MACHINE_NAMESPACE,
            &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
                "machine.openshift.io",
                "v1beta1",
                "MachineSet",
            )),
        )
        .list(&ListParams::default())
        .await
        .map_err(|e| RigError::Kube("list MachineSets".into(), e))?;
        footprint.machinesets = as_json(&machinesets.items)
            .iter()
            .filter_map(|m| m["metadata"]["name"].as_str().map(str::to_owned))
            .collect();
        let pvs = Api::<PersistentVolume>::all(rig.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| RigError::Kube("list PersistentVolumes".into(), e))?;
        footprint.pvs = pvs
            .items
            .iter()
            .map(|pv| {
                let claim = pv
                    .spec
                    .as_ref()
                    .and_then(|s| s.claim_ref.as_ref())
                    .map(|c| {
                        format!(
                            "{}/{}",
                            c.namespace.as_deref().unwrap_or_default(),
                            c.name.as_deref().unwrap_or_default()
                        )
                    })
                    .unwrap_or_default();
                format!(
                    "{} -> {claim}",
                    pv.metadata.name.as_deref().unwrap_or_default()
                )
            })
            .collect();
        let cluster = &rig.cluster;
        for (side, vcenter) in [("source", &cluster.source), ("target", &cluster.target)] {
            let (categories, tags) = tagging(vcenter)?;
            footprint
                .categories
                .extend(categories.into_iter().map(|c| format!("{side}/{c}")));
            footprint
                .tags
                .extend(tags.into_iter().map(|t| format!("{side}/{t}")));
        }
        let target = &cluster.target;
        footprint.folders = lines(&target.govc(&["find", "/", "-type", "f"])?);
        footprint.target_vms = lines(&target.govc(&["find", "/", "-type", "m"])?)
            .into_iter()
            .map(|path| path.rsplit('/').next().unwrap_or_default().to_owned())
            .collect();
        let disks: Value = json(&target.govc(&["disk.ls", "-json"])?)?;
        footprint.target_disks = disks["objects"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o["config"]["name"].as_str().map(str::to_owned))
            .collect();
        let cns: Value = json(&target.govc(&["volume.ls", "-json"])?)?;
        footprint.cns_volumes = cns["volume"]
            .as_array()
            .or_else(|| cns["Volume"].as_array())
            .into_iter()
            .flatten()
            .map(|v| {
                v["name"]
                    .as_str()
                    .or_else(|| v["Name"].as_str())
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        for list in [
            &mut footprint.configmaps,
            &mut footprint.machinesets,
            &mut footprint.categories,
            &mut footprint.tags,
            &mut footprint.folders,
            &mut footprint.target_disks,
            &mut footprint.cns_volumes,
            &mut footprint.pvs,
            &mut footprint.target_vms,
        ] {
            list.sort();
        }
        Ok(footprint)
    }

    /// Everything listed twice: a category, tag or folder of the same
    /// name, two disks or CNS volumes of one name, two PVs of one claim.
    pub fn duplicates(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let claims: Vec<String> = self
            .pvs
            .iter()
            .filter_map(|pv| pv.split_once(" -> ").map(|(_, claim)| claim.to_owned()))
            .filter(|claim| claim != "/")
            .collect();
        for (what, list) in [
            ("tag category", &self.categories),
            ("tag", &self.tags),
            ("folder", &self.folders),
            ("target disk", &self.target_disks),
            ("CNS volume", &self.cns_volumes),
            ("claim with a PV", &claims),
            ("MachineSet", &self.machinesets),
        ] {
            let mut seen = BTreeMap::<&str, usize>::new();
            for item in list {
                *seen.entry(item).or_default() += 1;
            }
            for (item, count) in seen {
                if count > 1 {
                    problems.push(format!("{what} {item} is there {count} times"));
                }
            }
        }
        problems
    }

    /// How this footprint differs from `baseline`'s (an undisturbed run on
    /// the same kind of cluster): names that are the same in every run
    /// are compared as names (backup keys, MachineSets, categories, tags,
    /// folders); names made of uids or random suffixes (PVs, disks, CNS
    /// volumes, journals, control plane VMs) by count.
    pub fn differences(&self, baseline: &Footprint) -> Vec<String> {
        let mut problems = Vec::new();
        let by_name: [(&str, &Vec<String>, &Vec<String>); 5] = [
            ("MachineSets", &self.machinesets, &baseline.machinesets),
            ("tag categories", &self.categories, &baseline.categories),
            ("tags", &self.tags, &baseline.tags),
            ("target folders", &self.folders, &baseline.folders),
            (
                "backup keys",
                &self.backup_keys.iter().cloned().collect(),
                &baseline.backup_keys.iter().cloned().collect(),
            ),
        ];
        for (what, here, there) in by_name {
            if here != there {
                let missing: Vec<&String> = there.iter().filter(|x| !here.contains(x)).collect();
                let extra: Vec<&String> = here.iter().filter(|x| !there.contains(x)).collect();
                problems.push(format!(
                    "{what} differ from the undisturbed run: missing {missing:?}, extra {extra:?} \
                     ({} here, {} there)",
                    here.len(),
                    there.len()
                ));
            }
        }
        for (what, here, there) in [
            ("vmi ConfigMaps", &self.configmaps, &baseline.configmaps),
            ("target disks", &self.target_disks, &baseline.target_disks),
            ("CNS volumes", &self.cns_volumes, &baseline.cns_volumes),
            ("PersistentVolumes", &self.pvs, &baseline.pvs),
            ("target VMs", &self.target_vms, &baseline.target_vms),
        ] {
            if here.len() != there.len() {
                problems.push(format!(
                    "{} {what}, the undisturbed run has {}: {here:?}",
                    here.len(),
                    there.len()
                ));
            }
        }
        problems
    }
}

/// The categories (`<name>`) and tags (`<category name>/<name>`) of a
/// vCenter.
fn tagging(vcenter: &VCenterSim) -> Result<(Vec<String>, Vec<String>), RigError> {
    let categories: Value = json(&vcenter.govc(&["tags.category.ls", "-json"])?)?;
    let mut names = BTreeMap::new();
    let mut category_names = Vec::new();
    for category in categories.as_array().into_iter().flatten() {
        let name = category["name"].as_str().unwrap_or_default().to_owned();
        if let Some(id) = category["id"].as_str() {
            names.insert(id.to_owned(), name.clone());
        }
        category_names.push(name);
    }
    let tags: Value = json(&vcenter.govc(&["tags.ls", "-json"])?)?;
    let tag_names = tags
        .as_array()
        .into_iter()
        .flatten()
        .map(|tag| {
            // vcsim gives category_id as its creator passed it: an id or
            // a name (docs/simulated-cluster.md, fact 21).
            let category = tag["category_id"].as_str().unwrap_or_default();
            let category = names.get(category).map_or(category, String::as_str);
            format!("{category}/{}", tag["name"].as_str().unwrap_or_default())
        })
        .collect();
    Ok((category_names, tag_names))
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn json(text: &str) -> Result<Value, RigError> {
    if text.trim().is_empty() || text.trim() == "null" {
        return Ok(Value::Null);
    }
    serde_json::from_str(text).map_err(|e| RigError::Invalid(format!("govc -json: {e}")))
}

/// After a migration with volumes: every seeded PV points at a disk in the
/// target vCenter holding the original bytes, its claim is Bound, the
/// source disk is still there, the workloads are back with every used
/// volume attached on the target, and the vmi counted every volume. One
/// line per difference.
pub async fn volume_problems(rig: &MigrationRig, patience: Duration) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(seeded) = rig.volumes.as_ref() else {
        return vec!["no volumes were seeded".into()];
    };
    let cluster = &rig.cluster;
    let pvs = Api::<PersistentVolume>::all(rig.client.clone());
    for volume in &seeded.volumes {
        let handle = match pvs.get(&volume.pv).await {
            Ok(pv) => pv
                .spec
                .and_then(|s| s.csi)
                .map(|c| c.volume_handle)
                .unwrap_or_default(),
            Err(e) => {
                problems.push(format!("PV {}: {e}", volume.pv));
                continue;
            }
        };
        if handle == volume.fcd_id {
            problems.push(format!("PV {} was not moved", volume.pv));
        } else {
            match volumes::fcd_data(&cluster.target, &handle) {
                Ok(copy) if copy.sha256 == volume.data_sha256 => {}
                Ok(_) => problems.push(format!(
                    "PV {}: the target disk {handle} holds other bytes",
                    volume.pv
                )),
                Err(e) => problems.push(format!("PV {}: {e}", volume.pv)),
            }
        }
        if !matches!(
            volumes::fcd_info(&cluster.source, &volume.fcd_id),
            Ok(Some(_))
        ) {
            problems.push(format!(
                "PV {}: the source disk {} is gone",
                volume.pv, volume.fcd_id
            ));
        }
        let claim = Api::<PersistentVolumeClaim>::namespaced(rig.client.clone(), &volume.namespace)
            .get(&volume.pvc)
            .await
            .ok()
            .and_then(|c| c.status)
            .and_then(|s| s.phase);
        if claim.as_deref() != Some("Bound") {
            problems.push(format!(
                "claim {}/{} is {claim:?}, not Bound",
                volume.namespace, volume.pvc
            ));
        }
    }
    if let Err(e) = seeded.wait_ready(&rig.client, patience).await {
        problems.push(format!("the volumes' workloads are not back: {e}"));
    }
    let Some(csi) = rig.csi.as_ref() else {
        problems.push("no CSI driver stand-in".into());
        return problems;
    };
    let deadline = Instant::now() + patience;
    loop {
        let attachments = csi.attachments();
        let on_target = attachments
            .iter()
            .filter(|a| {
                a.attached
                    && !a.deleting
                    && a.vcenter.as_deref() == Some(cluster.target.server.as_str())
            })
            .count();
        let clean = attachments
            .iter()
            .all(|a| a.attach_error.is_none() || a.deleting);
        if on_target == seeded.used().len() && clean {
            break;
        }
        if Instant::now() >= deadline {
            problems.push(format!(
                "{on_target} of {} used volumes attached on the target; attachments: {attachments:?}",
                seeded.used().len()
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    match rig
        .status()
        .await
        .map(|s| s.progress.and_then(|p| p.volumes).map(|v| v.done))
    {
        Ok(Some(done)) if done as usize == seeded.volumes.len() => {}
        other => problems.push(format!(
            "the vmi counted {other:?} volumes done, not {}",
            seeded.volumes.len()
        )),
    }
    problems
}

/// How long each step Job's first pod process ran (the kubelet stand-in
/// writes the pod's kubeconfig when it starts the process, and the step
/// logs until it exits: the two files' modification times), by Job name.
pub fn pod_run_durations(rig: &MigrationRig) -> BTreeMap<String, Duration> {
    let modified = |path: &std::path::Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let mut durations = BTreeMap::new();
    for run in rig.kubelet.runs() {
        let (Some(job), Some(dir)) = (run.job.clone(), run.log.parent()) else {
            continue;
        };
        if let (Some(start), Some(end)) = (modified(&dir.join("kubeconfig")), modified(&run.log))
            && let Ok(took) = end.duration_since(start)
        {
            durations
                .entry(job)
                .and_modify(|d: &mut Duration| *d = (*d).min(took))
                .or_insert(took);
        }
    }
    durations
}

/// Pod runs per step Job beyond the first (the Job controller's retries
/// after a pod failed), by Job name.
pub fn pod_retries(rig: &MigrationRig) -> BTreeMap<String, usize> {
    let mut runs = BTreeMap::<String, usize>::new();
    for run in rig.kubelet.runs() {
        if let Some(job) = run.job {
            *runs.entry(job).or_default() += 1;
        }
    }
    runs.into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(job, n)| (job, n - 1))
        .collect()
}
