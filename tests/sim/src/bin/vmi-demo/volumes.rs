//! The demo's vSphere CSI volumes: what it seeds, what the vmi asks step 13
//! to do with them, and the checks after the run (each PV points at a disk
//! of the target vCenter holding the seeded bytes, the source disk is still
//! there, the claim is Bound, the workloads are back), plus the journal
//! ConfigMaps kept among the artifacts.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use vmi_api::migration::Count;
use vmi_api::{Step, VSphereMigrationInfra, VSphereMigrationInfraStatus};
use vmi_sim::migration::MigrationRig;
use vmi_sim::secrets_scan::human_bytes;
use vmi_sim::volumes::{self, SeededVolume, SeededVolumes, VolumeWorkloads};

use crate::progress::between;

/// The label of step 13's journal ConfigMaps; its value is the vmi's name.
pub const JOURNAL_LABEL: &str = "vmi.config.openshift.io/volume-journal";
/// How long the workloads may take to be Ready again after the run.
const WORKLOADS_READY: Duration = Duration::from_secs(60);

/// What the demo seeds: Deployment `web`, StatefulSet `db` of 3 and one
/// unused claim in namespace `apps` (no bare pod: step 13 refuses those),
/// 256 KiB of data each.
pub fn workloads() -> VolumeWorkloads {
    VolumeWorkloads {
        bare_pod: None,
        ..VolumeWorkloads::default()
    }
}

/// The vmi's `spec.volumes`: move them, in Copy mode, two at a time.
pub fn spec() -> Value {
    json!({"migrate": true, "mode": "Copy", "concurrency": 2})
}

/// `5 vSphere CSI volumes in namespace apps (Deployment web, StatefulSet
/// db of 3, 1 unused claim), 1024 MiB each holding 256.0 KiB of random
/// bytes`.
pub fn seeded_text(seeded: &SeededVolumes) -> String {
    let spec = &seeded.spec;
    let mut users = Vec::new();
    if let Some(name) = &spec.deployment {
        users.push(format!("Deployment {name}"));
    }
    if let Some(set) = &spec.stateful_set {
        users.push(format!("StatefulSet {} of {}", set.name, set.replicas));
    }
    if let Some(name) = &spec.bare_pod {
        users.push(format!("Pod {name}"));
    }
    if spec.unused > 0 {
        users.push(format!(
            "{} unused claim{}",
            spec.unused,
            if spec.unused == 1 { "" } else { "s" }
        ));
    }
    format!(
        "{} vSphere CSI volumes in namespace {} ({}), {} MiB each holding {} of random bytes",
        seeded.volumes.len(),
        spec.namespace,
        users.join(", "),
        spec.capacity_mib,
        human_bytes(spec.data_bytes)
    )
}

/// One volume after the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeCheck {
    /// Its claim, `namespace/name`.
    pub claim: String,
    /// Its PV.
    pub pv: String,
    /// Its journal state in `status.volumes` (`-` when not listed).
    pub state: String,
    /// The disk its PV points at, when that is a disk of the target vCenter
    /// other than the source disk.
    pub target_disk: Option<String>,
    /// The seeded bytes: how many.
    pub bytes: u64,
    /// Their SHA-256, hex.
    pub sha256: String,
    /// What is wrong with it; empty when every check passed.
    pub problems: Vec<String>,
}

/// The volumes part of the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumesReport {
    /// `spec.volumes.mode` of the vmi (`Copy`, `Relocate`).
    pub mode: String,
    /// `spec.volumes.concurrency`.
    pub concurrency: Option<i32>,
    /// `status.progress.volumes`.
    pub counter: Option<Count>,
    /// How long step 13 took (its latest attempt), when it finished.
    pub step_took: Option<Duration>,
    /// Every seeded volume.
    pub volumes: Vec<VolumeCheck>,
    /// The workloads, e.g. `Deployment apps/web (1 replica)`.
    pub workloads: Vec<String>,
    /// Whether the workloads were Ready again, or why not.
    pub workloads_ready: Result<(), String>,
    /// Whether the checks ran: only after a migration that succeeded.
    pub checked: bool,
}

impl VolumesReport {
    /// Volumes whose PV points at a disk of the target vCenter.
    pub fn moved(&self) -> usize {
        self.volumes
            .iter()
            .filter(|v| v.target_disk.is_some())
            .count()
    }

    /// Every failed check, each naming its volume.
    pub fn problems(&self) -> Vec<String> {
        if !self.checked {
            return Vec::new();
        }
        let mut problems: Vec<String> = self
            .volumes
            .iter()
            .flat_map(|v| {
                v.problems
                    .iter()
                    .map(move |p| format!("volume {} (PV {}): {p}", v.claim, v.pv))
            })
            .collect();
        let total = i32::try_from(self.volumes.len()).unwrap_or(i32::MAX);
        match self.counter {
            Some(c) if c.done == total && c.total == total => {}
            Some(c) => problems.push(format!(
                "status.progress.volumes is {}/{}; expected {total}/{total}",
                c.done, c.total
            )),
            None => problems.push("status.progress.volumes is not set".into()),
        }
        if let Err(err) = &self.workloads_ready {
            problems.push(format!("the workloads are not back: {err}"));
        }
        problems
    }
}

/// Checks the volumes the rig seeded against the vmi's final status (and
/// its spec, when it could be read); `None` when none were seeded. The
/// checks run only when the migration succeeded.
pub async fn check(
    rig: &MigrationRig,
    status: &VSphereMigrationInfraStatus,
    vmi: Option<&VSphereMigrationInfra>,
    succeeded: bool,
) -> Option<VolumesReport> {
    let seeded = rig.volumes.as_ref()?;
    let spec = vmi.and_then(|v| v.spec.volumes.as_ref());
    let step = status
        .steps
        .iter()
        .find(|s| s.name == Step::MigrateVolumes.name());
    let step_took = step.and_then(|s| match (&s.started_at, &s.finished_at) {
        (Some(a), Some(b)) => Some(between(&a.0, &b.0)),
        _ => None,
    });
    let mut checks = Vec::new();
    for volume in &seeded.volumes {
        let state = status
            .volumes
            .iter()
            .find(|p| p.persistent_volume == volume.pv)
            .map(|p| p.state.clone())
            .unwrap_or_else(|| "-".into());
        let mut check = VolumeCheck {
            claim: format!("{}/{}", volume.namespace, volume.pvc),
            pv: volume.pv.clone(),
            state,
            target_disk: None,
            bytes: volume.data_size,
            sha256: volume.data_sha256.clone(),
            problems: Vec::new(),
        };
        if succeeded {
            check_volume(rig, volume, status, &mut check).await;
        }
        checks.push(check);
    }
    let workloads_ready = if succeeded {
        seeded
            .wait_ready(&rig.client, WORKLOADS_READY)
            .await
            .map_err(|e| e.to_string())
    } else {
        Err("not checked".into())
    };
    Some(VolumesReport {
        mode: spec
            .map(|s| format!("{:?}", s.mode))
            .unwrap_or_else(|| "-".into()),
        concurrency: spec.and_then(|s| s.concurrency),
        counter: crate::progress::volume_count(status),
        step_took,
        volumes: checks,
        workloads: workload_names(&seeded.spec),
        workloads_ready,
        checked: succeeded,
    })
}

/// The checks of one volume, as `assert_volumes_moved` of the end-to-end
/// test makes them: journal state `Complete`, the PV on another disk, that
/// disk in the target vCenter with the seeded bytes, the source disk still
/// there, the claim Bound.
async fn check_volume(
    rig: &MigrationRig,
    volume: &SeededVolume,
    status: &VSphereMigrationInfraStatus,
    check: &mut VolumeCheck,
) {
    let cluster = &rig.cluster;
    if check.state != "Complete" {
        let message = status
            .volumes
            .iter()
            .find(|p| p.persistent_volume == volume.pv)
            .and_then(|p| p.message.as_deref())
            .map(|m| format!(" ({m})"))
            .unwrap_or_default();
        check.problems.push(format!(
            "its journal state is {}, not Complete{message}",
            check.state
        ));
    }
    let pv = Api::<PersistentVolume>::all(rig.client.clone())
        .get(&volume.pv)
        .await;
    let handle = match pv {
        Ok(pv) => pv
            .spec
            .and_then(|s| s.csi)
            .map(|c| c.volume_handle)
            .unwrap_or_default(),
        Err(err) => {
            check.problems.push(format!("cannot read the PV: {err}"));
            String::new()
        }
    };
    if handle == volume.fcd_id {
        check.problems.push(format!(
            "the PV still points at the source disk {}",
            volume.fcd_id
        ));
    } else if !handle.is_empty() {
        // govc runs: blocking.
        let copy = tokio::task::block_in_place(|| volumes::fcd_data(&cluster.target, &handle));
        match copy {
            Ok(copy) if copy.sha256 == volume.data_sha256 => {
                check.target_disk = Some(handle.clone());
            }
            Ok(copy) => {
                check.target_disk = Some(handle.clone());
                check.problems.push(format!(
                    "the target disk {handle} does not hold the original bytes: {} bytes, sha256 {}; seeded {} bytes, sha256 {}",
                    copy.bytes.len(),
                    copy.sha256,
                    volume.data_size,
                    volume.data_sha256
                ));
            }
            Err(err) => check.problems.push(format!(
                "the PV points at disk {handle}, which cannot be read from the target vCenter: {err}"
            )),
        }
    }
    let source = tokio::task::block_in_place(|| volumes::fcd_info(&cluster.source, &volume.fcd_id));
    match source {
        Ok(Some(_)) => {}
        Ok(None) => check.problems.push(format!(
            "the source disk {} is gone from the source vCenter",
            volume.fcd_id
        )),
        Err(err) => check.problems.push(format!(
            "cannot look up the source disk {}: {err}",
            volume.fcd_id
        )),
    }
    let claim = Api::<PersistentVolumeClaim>::namespaced(rig.client.clone(), &volume.namespace)
        .get(&volume.pvc)
        .await;
    match claim {
        Ok(claim) => {
            let phase = claim.status.and_then(|s| s.phase);
            if phase.as_deref() != Some("Bound") {
                check.problems.push(format!(
                    "the claim is {}, not Bound",
                    phase.as_deref().unwrap_or("without a phase")
                ));
            }
        }
        Err(err) => check.problems.push(format!("cannot read the claim: {err}")),
    }
}

/// `Deployment apps/web (1 replica)`, `StatefulSet apps/db (3 replicas)`.
fn workload_names(spec: &VolumeWorkloads) -> Vec<String> {
    let ns = &spec.namespace;
    let replicas = |n: u32| format!("{n} replica{}", if n == 1 { "" } else { "s" });
    let mut names = Vec::new();
    if let Some(name) = &spec.deployment {
        names.push(format!("Deployment {ns}/{name} ({})", replicas(1)));
    }
    if let Some(set) = &spec.stateful_set {
        names.push(format!(
            "StatefulSet {ns}/{} ({})",
            set.name,
            replicas(set.replicas)
        ));
    }
    if let Some(name) = &spec.bare_pod {
        names.push(format!("Pod {ns}/{name}"));
    }
    names
}

/// The journal ConfigMaps of the rig's vmi (`oc get cm -n <namespace> -l
/// vmi.config.openshift.io/volume-journal=<vmi> -o json`, without
/// `managedFields`), as pretty JSON.
pub async fn journal(rig: &MigrationRig) -> Result<String, String> {
    let selector = format!("{JOURNAL_LABEL}={}", rig.vmi_name());
    let list = Api::<ConfigMap>::namespaced(rig.client.clone(), &rig.namespace)
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| format!("could not list the ConfigMaps labelled {selector}: {e}"))?;
    let items: Vec<Value> = list
        .items
        .into_iter()
        .map(|mut cm| {
            cm.metadata.managed_fields = None;
            let mut value = serde_json::to_value(&cm).unwrap_or(Value::Null);
            value["apiVersion"] = json!("v1");
            value["kind"] = json!("ConfigMap");
            value
        })
        .collect();
    serde_json::to_string_pretty(&json!({"apiVersion": "v1", "kind": "List", "items": items}))
        .map(|text| text + "\n")
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(problems: Vec<String>, counter: Option<Count>) -> VolumesReport {
        VolumesReport {
            mode: "Copy".into(),
            concurrency: Some(2),
            counter,
            step_took: Some(Duration::from_secs(9)),
            volumes: vec![
                VolumeCheck {
                    claim: "apps/web-data".into(),
                    pv: "pvc-1".into(),
                    state: "Complete".into(),
                    target_disk: Some("d1".into()),
                    bytes: 262_144,
                    sha256: "ab".into(),
                    problems,
                },
                VolumeCheck {
                    claim: "apps/spare-0".into(),
                    pv: "pvc-2".into(),
                    state: "Complete".into(),
                    target_disk: Some("d2".into()),
                    bytes: 262_144,
                    sha256: "cd".into(),
                    problems: vec![],
                },
            ],
            workloads: vec!["Deployment apps/web (1 replica)".into()],
            workloads_ready: Ok(()),
            checked: true,
        }
    }

    #[test]
    fn problems_name_their_volume() {
        let done = Some(Count { done: 2, total: 2 });
        assert_eq!(report(vec![], done).problems(), Vec::<String>::new());
        let mut bad = report(vec!["the source disk s1 is gone".into()], done);
        bad.workloads_ready = Err("deployment apps/web (0 of 1 Ready)".into());
        assert_eq!(
            bad.problems(),
            [
                "volume apps/web-data (PV pvc-1): the source disk s1 is gone",
                "the workloads are not back: deployment apps/web (0 of 1 Ready)",
            ]
        );
        assert_eq!(
            report(vec![], Some(Count { done: 1, total: 2 })).problems(),
            ["status.progress.volumes is 1/2; expected 2/2"]
        );
        let mut unchecked = report(vec![], None);
        unchecked.checked = false;
        assert!(unchecked.problems().is_empty());
        assert_eq!(unchecked.moved(), 2);
    }

    #[test]
    fn the_demo_seeds_movable_workloads() {
        let workloads = workloads();
        assert_eq!(workloads.bare_pod, None);
        assert_eq!(workloads.deployment.as_deref(), Some("web"));
        assert_eq!(
            workload_names(&workloads),
            [
                "Deployment apps/web (1 replica)",
                "StatefulSet apps/db (3 replicas)"
            ]
        );
        assert_eq!(spec()["mode"], "Copy");
    }
}
