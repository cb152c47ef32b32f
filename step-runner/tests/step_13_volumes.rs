//! Step 13 migrate-volumes on the seeded cluster, with the CSI driver
//! stand-in attaching disks in the two vcsim vCenters: in Copy mode every
//! volume (a Deployment's, a StatefulSet's three, a bare pod's, an unused
//! one) moves with its bytes, the workloads come back, and the source disks
//! stay; a run killed at random moments resumes from the journal; Relocate
//! mode never detaches or deletes anything on a relocate it cannot verify;
//! volumes it cannot move are refused before any change.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{run_step, step_status, step_vmi_with};
use vmi_api::Step;
use vmi_api::migration::MigrationPath;
use vmi_sim::csi_driver::{CsiDriverOptions, CsiDriverStandIn};
use vmi_sim::seed::{SeedOptions, SimCluster};
use vmi_sim::test_random::TestRandom;
use vmi_sim::volumes::{self, SeededVolumes, VolumeWorkloads};
use vmi_step_runner::Action;
use vmi_step_runner::target::VmiRef;
use vmi_step_runner::volumes::journal::{Entry, JOURNAL_LABEL, State};

const LIMIT: Duration = Duration::from_secs(60);

impl Rig {
    /// Every seeded volume.
    fn volumes(&self) -> impl Iterator<Item = &volumes::SeededVolume> {
        self.seeded.volumes.iter().chain(&self.extra)
    }
}

struct Rig {
    cluster: SimCluster,
    client: Client,
    seeded: SeededVolumes,
    /// Volumes without workloads, seeded after the others.
    extra: Vec<volumes::SeededVolume>,
    _csi: CsiDriverStandIn,
}

/// One Deployment `web` with one volume, nothing else.
fn web_only() -> VolumeWorkloads {
    VolumeWorkloads {
        deployment: Some("web".into()),
        stateful_set: None,
        unused: 0,
        bare_pod: None,
        ..VolumeWorkloads::default()
    }
}

async fn rig(workloads: VolumeWorkloads) -> Rig {
    let cluster = SimCluster::start(SeedOptions::default()).await.unwrap();
    let client = cluster.client().await.unwrap();
    let csi = CsiDriverStandIn::start(
        &cluster.plane,
        &[&cluster.source, &cluster.target],
        CsiDriverOptions::default(),
    )
    .await
    .unwrap();
    let seeded = volumes::seed_volumes(&cluster, &workloads).await.unwrap();
    Rig {
        cluster,
        client,
        seeded,
        extra: Vec::new(),
        _csi: csi,
    }
}

/// The default workloads but the bare pod, which vmi refuses to move.
fn without_bare_pod() -> VolumeWorkloads {
    VolumeWorkloads {
        bare_pod: None,
        ..VolumeWorkloads::default()
    }
}

async fn vmi(rig: &Rig, volumes: serde_json::Value) -> VmiRef {
    step_vmi_with(
        &rig.cluster,
        &rig.client,
        Some(MigrationPath::Native),
        &[Step::MigrateVolumes],
        |vmi| vmi["spec"]["volumes"] = volumes,
    )
    .await
}

async fn pvs(client: &Client) -> BTreeMap<String, PersistentVolume> {
    Api::<PersistentVolume>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|pv| (pv.metadata.name.clone().unwrap(), pv))
        .collect()
}

fn handle(pv: &PersistentVolume) -> String {
    pv.spec
        .as_ref()
        .unwrap()
        .csi
        .as_ref()
        .unwrap()
        .volume_handle
        .clone()
}

async fn journal(client: &Client, vmi: &VmiRef) -> BTreeMap<String, Entry> {
    Api::<ConfigMap>::namespaced(client.clone(), &vmi.namespace)
        .list(&ListParams::default().labels(&format!("{JOURNAL_LABEL}={}", vmi.name)))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|cm| {
            let entry: Entry = serde_json::from_str(&cm.data.unwrap()["entry.json"]).unwrap();
            (entry.persistent_volume.clone(), entry)
        })
        .collect()
}

/// Waits until the CSI stand-in has attached every used volume (it puts its
/// finalizer on their PVs), so that a before/after comparison sees only
/// what the step did.
async fn wait_attached(rig: &Rig) {
    for volume in rig.seeded.used() {
        wait_pv_attached(&rig.client, &volume.pv).await;
    }
}

/// Waits until the CSI stand-in has attached PV `pv`.
async fn wait_pv_attached(client: &Client, pv: &str) {
    let pv_api = Api::<PersistentVolume>::all(client.clone());
    let deadline = Instant::now() + LIMIT;
    while !pv_api
        .get(pv)
        .await
        .unwrap()
        .metadata
        .finalizers
        .unwrap_or_default()
        .iter()
        .any(|f| f == vmi_sim::csi_driver::ATTACHER_FINALIZER)
    {
        assert!(Instant::now() < deadline, "{pv} was not attached");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Resource versions of everything step 13 may touch, to prove a refusal
/// changed nothing.
async fn versions(client: &Client, namespace: &str) -> Vec<String> {
    let mut out = Vec::new();
    for pv in pvs(client).await.values() {
        out.push(format!(
            "{}={}",
            pv.metadata.name.clone().unwrap(),
            pv.metadata.resource_version.clone().unwrap()
        ));
    }
    for d in Api::<Deployment>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
    {
        out.push(format!(
            "{}={:?}",
            d.metadata.name.clone().unwrap(),
            d.spec.unwrap().replicas
        ));
    }
    for s in Api::<StatefulSet>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
    {
        out.push(format!(
            "{}={:?}",
            s.metadata.name.clone().unwrap(),
            s.spec.unwrap().replicas
        ));
    }
    out
}

/// Every volume points at a target disk holding the original bytes, its
/// claim is Bound, its PV is static on the target zone with the original
/// policy, and the source disk is still there.
async fn assert_moved(rig: &Rig) {
    let pvs = pvs(&rig.client).await;
    for volume in rig.volumes() {
        let pv = &pvs[&volume.pv];
        let id = handle(pv);
        assert_ne!(
            id, volume.fcd_id,
            "PV {} still points at the source disk",
            volume.pv
        );
        let copy = volumes::fcd_data(&rig.cluster.target, &id).unwrap();
        assert_eq!(
            copy.sha256, volume.data_sha256,
            "the bytes of PV {} on the target",
            volume.pv
        );
        assert!(
            volumes::fcd_info(&rig.cluster.source, &volume.fcd_id)
                .unwrap()
                .is_some(),
            "the source disk of PV {} is kept until step 15",
            volume.pv
        );
        let spec = pv.spec.as_ref().unwrap();
        let csi = spec.csi.as_ref().unwrap();
        assert!(
            !csi.volume_attributes
                .clone()
                .unwrap_or_default()
                .contains_key("storage.kubernetes.io/csiProvisionerIdentity")
        );
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Delete")
        );
        let affinity = serde_json::to_value(&spec.node_affinity).unwrap();
        assert!(
            affinity.to_string().contains("zone-b"),
            "PV {} affinity {affinity}",
            volume.pv
        );
        assert_eq!(pv.status.as_ref().unwrap().phase.as_deref(), Some("Bound"));
        let claim = Api::<PersistentVolumeClaim>::namespaced(rig.client.clone(), &volume.namespace)
            .get(&volume.pvc)
            .await
            .unwrap();
        assert_eq!(claim.status.unwrap().phase.as_deref(), Some("Bound"));
        assert_eq!(
            claim.spec.unwrap().volume_name.as_deref(),
            Some(volume.pv.as_str())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_mode_moves_every_volume_with_its_bytes_and_brings_the_workloads_back() {
    let rig = rig(without_bare_pod()).await;
    let vmi = vmi(
        &rig,
        json!({"migrate": true, "mode": "Copy", "concurrency": 2}),
    )
    .await;
    // The plan lists every volume with what will happen to it.
    let plan = std::process::Command::new(env!("CARGO_BIN_EXE_vmi-step"))
        .args([
            "plan",
            "--vmi",
            &format!("{}/{}", vmi.namespace, vmi.name),
            "--kubeconfig",
        ])
        .arg(rig.cluster.plane.kubeconfig())
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&plan.stdout);
    for volume in rig.volumes() {
        assert!(
            plan.lines().any(|l| l.contains(&volume.pv)
                && l.contains("will be moved to the target in step 13 (Copy mode)")),
            "the plan does not list {}:\n{plan}",
            volume.pv
        );
    }
    let started = Instant::now();
    run_step(&rig.cluster, &vmi, Action::Step(Step::MigrateVolumes))
        .await
        .unwrap();
    eprintln!(
        "moved {} volumes in {:?}",
        rig.seeded.volumes.len(),
        started.elapsed()
    );
    assert_moved(&rig).await;
    rig.seeded.wait_ready(&rig.client, LIMIT).await.unwrap();
    let apps = &rig.seeded.spec.namespace;
    let db = Api::<StatefulSet>::namespaced(rig.client.clone(), apps)
        .get("db")
        .await
        .unwrap();
    assert_eq!(db.spec.unwrap().replicas, Some(3));
    let web = Api::<Deployment>::namespaced(rig.client.clone(), apps)
        .get("web")
        .await
        .unwrap();
    assert_eq!(web.spec.unwrap().replicas, Some(1));
    let entries = journal(&rig.client, &vmi).await;
    assert_eq!(entries.len(), rig.seeded.volumes.len());
    assert!(
        entries.values().all(|e| e.state == State::Complete),
        "{entries:?}"
    );
    let status = step_status(&rig.client, &vmi, Step::MigrateVolumes).await;
    assert!(
        status.result.clone().unwrap().contains("5 volume(s) moved"),
        "{status:?}"
    );
    let vmi_status =
        Api::<vmi_api::VSphereMigrationInfra>::namespaced(rig.client.clone(), &vmi.namespace)
            .get(&vmi.name)
            .await
            .unwrap()
            .status
            .unwrap();
    let counter = vmi_status.progress.unwrap().volumes.unwrap();
    assert_eq!((counter.done, counter.total), (5, 5));
    assert!(vmi_status.volumes.iter().all(|v| v.state == "Complete"));

    // The CSI driver's records: each copy through the target vCenter, each
    // source disk still through the source.
    for (name, entry) in &entries {
        assert_eq!(
            volumes::volume_info_server(&rig.client, &entry.target.id)
                .await
                .unwrap()
                .as_deref(),
            Some(rig.cluster.target.server.as_str()),
            "CNSVolumeInfo of the copy of {name}"
        );
        assert_eq!(
            volumes::volume_info_server(&rig.client, &entry.source.id)
                .await
                .unwrap()
                .as_deref(),
            Some(rig.cluster.source.server.as_str()),
            "CNSVolumeInfo of the source disk of {name}"
        );
    }

    // A second run changes nothing.
    let before = pvs(&rig.client).await;
    run_step(&rig.cluster, &vmi, Action::Step(Step::MigrateVolumes))
        .await
        .unwrap();
    let after = pvs(&rig.client).await;
    for (name, pv) in &before {
        assert_eq!(
            pv.metadata.resource_version, after[name].metadata.resource_version,
            "PV {name} changed on a second run"
        );
    }
    let again = step_status(&rig.client, &vmi, Step::MigrateVolumes).await;
    let result = again.result.clone().unwrap_or_default();
    assert!(
        result.contains("5 volume(s) were already on vCenter")
            && result.ends_with("nothing changed"),
        "{again:?}"
    );
    assert!(again.changes.is_empty(), "{again:?}");
    assert_eq!(
        again.backups.len(),
        5,
        "the journals are still listed: {again:?}"
    );

    // A kill after the workloads were told to start, before Restored was
    // recorded: the undo must not point the volumes back at the older
    // source disks (their workloads may have written to the copies).
    let configmaps = Api::<ConfigMap>::namespaced(rig.client.clone(), &vmi.namespace);
    for cm in configmaps
        .list(&ListParams::default().labels(&format!("{JOURNAL_LABEL}={}", vmi.name)))
        .await
        .unwrap()
        .items
    {
        let mut entry: serde_json::Value =
            serde_json::from_str(&cm.data.as_ref().unwrap()["entry.json"]).unwrap();
        assert_eq!(
            entry["workloadsStarted"], true,
            "recorded before the start: {entry}"
        );
        entry["state"] = "Rebound".into();
        configmaps
            .patch(
                cm.metadata.name.as_deref().unwrap(),
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"entry.json": entry.to_string()}})),
            )
            .await
            .unwrap();
    }
    let before = pvs(&rig.client).await;
    let refusal = run_step(&rig.cluster, &vmi, Action::Undo(Step::MigrateVolumes))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refusal.contains("its workloads were started on the copy")
            && refusal.contains("nothing was changed"),
        "{refusal}"
    );
    let after = pvs(&rig.client).await;
    for (name, pv) in &before {
        assert_eq!(
            pv.metadata.resource_version, after[name].metadata.resource_version,
            "the refused undo changed PV {name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_it_cannot_move_are_refused_before_any_change() {
    let rig = rig(VolumeWorkloads::default()).await;
    let apps = rig.seeded.spec.namespace.clone();
    wait_attached(&rig).await;
    // migrate: false names every volume.
    let off = vmi(&rig, json!({"migrate": false})).await;
    let before = versions(&rig.client, &apps).await;
    let error = run_step(&rig.cluster, &off, Action::Step(Step::MigrateVolumes))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("spec.volumes.migrate is not true"),
        "{error}"
    );
    for volume in rig.volumes() {
        assert!(error.contains(&volume.pv), "{error} names {}", volume.pv);
    }
    assert_eq!(
        versions(&rig.client, &apps).await,
        before,
        "a refusal changed something"
    );
    // A DaemonSet using a claim makes that volume unmovable.
    let spare = rig
        .seeded
        .volumes
        .iter()
        .find(|v| v.user == volumes::VolumeUser::Nobody)
        .unwrap();
    let daemon: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "agent", "namespace": apps},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {
            "metadata": {"labels": {"app": "agent"}},
            "spec": {"tolerations": [{"operator": "Exists"}],
                     "containers": [{"name": "a", "image": volumes::WORKLOAD_IMAGE}],
                     "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": spare.pvc}}]}}}
    })).unwrap();
    Api::<DaemonSet>::namespaced(rig.client.clone(), &apps)
        .create(&PostParams::default(), &daemon)
        .await
        .unwrap();
    let pods = Api::<Pod>::namespaced(rig.client.clone(), &apps);
    let deadline = Instant::now() + LIMIT;
    while pods
        .list(&ListParams::default().labels("app=agent"))
        .await
        .unwrap()
        .items
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the DaemonSet made no pod");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // …and once its pod's volume is attached, nothing else moves.
    wait_pv_attached(&rig.client, &spare.pv).await;
    // A CronJob that is not suspended, mounting web's claim, makes that
    // volume unmovable too, though no Job of it runs now.
    let web = rig
        .seeded
        .volumes
        .iter()
        .find(|v| matches!(v.user, volumes::VolumeUser::Deployment(_)))
        .unwrap();
    let nightly: k8s_openapi::api::batch::v1::CronJob = serde_json::from_value(json!({
        "metadata": {"name": "nightly", "namespace": apps},
        "spec": {"schedule": "0 3 1 1 *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "backup", "image": volumes::WORKLOAD_IMAGE}],
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": web.pvc}}]}}}}}
    }))
    .unwrap();
    Api::<k8s_openapi::api::batch::v1::CronJob>::namespaced(rig.client.clone(), &apps)
        .create(&PostParams::default(), &nightly)
        .await
        .unwrap();
    let before = versions(&rig.client, &apps).await;
    let on = vmi(&rig, json!({"migrate": true})).await;
    let error = run_step(&rig.cluster, &on, Action::Step(Step::MigrateVolumes))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!("used by DaemonSet {apps}/agent")),
        "{error}"
    );
    assert!(error.contains("skipUnmovable"), "{error}");
    assert!(
        error.contains(&format!("used by pod {apps}/toolbox, which has no owner")),
        "{error}"
    );
    assert!(
        error.contains(&web.pv)
            && error.contains(&format!("used by CronJob {apps}/nightly"))
            && error.contains("suspend the CronJob"),
        "{error}"
    );
    assert!(journal(&rig.client, &on).await.is_empty());
    assert_eq!(
        versions(&rig.client, &apps).await,
        before,
        "a refusal changed something"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverifiable_relocate_detaches_and_deletes_nothing_and_the_undo_restores() {
    let rig = rig(web_only()).await;
    let volume = rig.seeded.volumes[0].clone();
    let vmi = vmi(&rig, json!({"migrate": true, "mode": "Relocate"})).await;
    let logs = support::Captured::default();
    let guard = logs.install();
    let error = run_step(&rig.cluster, &vmi, Action::Step(Step::MigrateVolumes))
        .await
        .unwrap_err()
        .to_string();
    drop(guard);
    assert!(error.contains("nothing was detached or deleted"), "{error}");
    assert!(error.contains(&volume.pv), "{error}");
    // The request the source vCenter got: a relocate to the target vCenter,
    // named by its instance UUID, URL and the thumbprint vmi verified, with
    // the password never logged.
    let target = support::connect_trusted(&rig.cluster.target).await;
    let target_uuid = target.about().instance_uuid.clone();
    let logs = logs.text();
    let relocate = logs
        .lines()
        .find(|l| l.contains("vCenter call bodies") && l.contains("RelocateVM_Task xmlns"))
        .unwrap_or_else(|| panic!("no RelocateVM_Task request logged:\n{logs}"));
    assert!(
        relocate.contains(&format!(
            "<service><instanceUuid>{target_uuid}</instanceUuid><url>https://{}",
            rig.cluster.target.server
        )),
        "{relocate}"
    );
    assert!(relocate.contains("<sslThumbprint>"), "{relocate}");
    assert!(
        relocate.contains("<password>[redacted]</password>"),
        "{relocate}"
    );
    assert!(
        !logs.contains(&rig.cluster.target.password),
        "the target password was logged"
    );
    // The journal says where things are; the PV and the source disk are untouched.
    let entry = journal(&rig.client, &vmi).await.remove(&volume.pv).unwrap();
    assert_eq!(entry.state, State::Detached);
    let helper = entry.helper_vm.clone().unwrap();
    assert!(!helper.instance_uuid.is_empty());
    assert!(entry.message.unwrap().contains(&helper.instance_uuid));
    assert_eq!(handle(&pvs(&rig.client).await[&volume.pv]), volume.fcd_id);
    let disk = volumes::fcd_info(&rig.cluster.source, &volume.fcd_id)
        .unwrap()
        .unwrap();
    assert_eq!(
        disk.consumers.len(),
        1,
        "the disk stays attached to the helper VM"
    );
    assert_eq!(
        volumes::fcd_data(&rig.cluster.source, &volume.fcd_id)
            .unwrap()
            .sha256,
        volume.data_sha256
    );
    assert!(
        volumes::fcd_info(&rig.cluster.target, &volume.fcd_id)
            .unwrap()
            .is_none()
    );
    // Rolling back takes the helper VM apart (the disk kept) and puts the
    // workload back on its source disk.
    let helper_path = format!("/{}/vm/{}", entry.source.datacenter, helper.name);
    let found = |path: &str| {
        rig.cluster
            .source
            .govc(&[
                "find",
                "-type",
                "m",
                "-name",
                path.rsplit('/').next().unwrap(),
            ])
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(found(&helper_path), 1, "the helper VM is there before");
    run_step(&rig.cluster, &vmi, Action::Undo(Step::MigrateVolumes))
        .await
        .unwrap();
    assert_eq!(found(&helper_path), 0, "the undo destroyed the helper VM");
    rig.seeded.wait_ready(&rig.client, LIMIT).await.unwrap();
    assert_eq!(handle(&pvs(&rig.client).await[&volume.pv]), volume.fcd_id);
    assert_eq!(
        volumes::fcd_data(&rig.cluster.source, &volume.fcd_id)
            .unwrap()
            .sha256,
        volume.data_sha256,
        "the disk survived the helper VM"
    );
    assert!(journal(&rig.client, &vmi).await.is_empty());
}

/// The invariant the journal keeps at every moment: each volume's data is
/// in a disk that exists and that the PV or the journal points to.
async fn assert_never_lost(rig: &Rig, vmi: &VmiRef) {
    let pvs = pvs(&rig.client).await;
    let entries = journal(&rig.client, vmi).await;
    for volume in rig.volumes() {
        assert!(
            volumes::fcd_info(&rig.cluster.source, &volume.fcd_id)
                .unwrap()
                .is_some(),
            "the source disk of {} is gone",
            volume.pv
        );
        match pvs.get(&volume.pv) {
            Some(pv) if handle(pv) == volume.fcd_id => {}
            Some(pv) => {
                let id = handle(pv);
                assert!(
                    volumes::fcd_info(&rig.cluster.target, &id)
                        .unwrap()
                        .is_some(),
                    "PV {} points at {id}, which the target lacks",
                    volume.pv
                );
            }
            None => {
                let entry = &entries[&volume.pv];
                assert!(
                    entry.state >= State::Registered,
                    "PV {} is gone in state {:?}",
                    volume.pv,
                    entry.state
                );
                assert!(
                    volumes::fcd_info(&rig.cluster.target, &entry.target.id)
                        .unwrap()
                        .is_some()
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_killed_at_random_moments_resumes_from_the_journal() {
    let mut rig = rig(without_bare_pod()).await;
    rig.extra = volumes::seed_bare_volumes(&rig.cluster, "bulk", 12, 1 << 20)
        .await
        .unwrap();
    let vmi = vmi(
        &rig,
        json!({"migrate": true, "mode": "Copy", "concurrency": 3}),
    )
    .await;
    let mut random = TestRandom::from_env_or_clock();
    let kubeconfig = rig.cluster.plane.kubeconfig().to_owned();
    let command = || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_vmi-step"));
        command
            .args([
                "migrate-volumes",
                "--vmi",
                &format!("{}/{}", vmi.namespace, vmi.name),
                "--kubeconfig",
            ])
            .arg(&kubeconfig)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        command
    };
    let mut kills = 0;
    let mut states = BTreeMap::new();
    let mut runs = 0;
    while kills < 10 && runs < 40 {
        runs += 1;
        let mut child = command().spawn().unwrap();
        let delay = Duration::from_millis(150 + random.below(600));
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
        assert_never_lost(&rig, &vmi).await;
        for entry in journal(&rig.client, &vmi).await.values() {
            *states.entry(format!("{:?}", entry.state)).or_insert(0) += 1;
        }
    }
    eprintln!("{runs} runs, {kills} kills; journal states seen after them: {states:?}");
    assert!(
        kills >= 10,
        "only {kills} runs were still going when killed"
    );
    let status = command().status().unwrap();
    assert!(status.success(), "the last run failed");
    assert_moved(&rig).await;
    rig.seeded.wait_ready(&rig.client, LIMIT).await.unwrap();
    assert!(
        journal(&rig.client, &vmi)
            .await
            .values()
            .all(|e| e.state == State::Complete)
    );
    // Each volume has its own target disk, which exists: no two PVs share
    // a copy. (That no orphan copy is left besides is the fault-injection
    // suite's disk count against an undisturbed run.)
    let pvs_now = pvs(&rig.client).await;
    let mut handles = std::collections::BTreeSet::new();
    for volume in rig.volumes() {
        let id = handle(&pvs_now[&volume.pv]);
        assert!(
            volumes::fcd_info(&rig.cluster.target, &id)
                .unwrap()
                .is_some()
        );
        assert!(handles.insert(id.clone()), "two PVs point at disk {id}");
    }
}

/// A disk with snapshots is a chain of files vmi does not copy one by one:
/// in Copy mode it is refused, named, before any workload is stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_with_snapshots_is_refused_in_copy_mode_before_any_change() {
    let rig = rig(web_only()).await;
    let apps = rig.seeded.spec.namespace.clone();
    let volume = rig.seeded.volumes[0].clone();
    // The disk as a snapshot leaves it: a delta descriptor naming a parent.
    let info = volumes::fcd_info(&rig.cluster.source, &volume.fcd_id)
        .unwrap()
        .unwrap();
    let descriptor =
        volumes::read_datastore_file(&rig.cluster.source, &info.datastore, &info.descriptor_path)
            .unwrap();
    let text = String::from_utf8(descriptor.bytes).unwrap();
    let delta = text.replace(
        "createType=",
        "parentFileNameHint=\"base.vmdk\"\ncreateType=",
    );
    assert_ne!(delta, text, "the seeded descriptor has a createType line");
    let local = vmi_sim::children::temp_dir("delta")
        .unwrap()
        .join("delta.vmdk");
    std::fs::write(&local, delta).unwrap();
    rig.cluster
        .source
        .govc(&[
            "datastore.upload",
            "-ds",
            &info.datastore,
            &local.to_string_lossy(),
            &info.descriptor_path,
        ])
        .unwrap();

    wait_attached(&rig).await;
    let before = versions(&rig.client, &apps).await;
    let vmi = vmi(&rig, json!({"migrate": true, "mode": "Copy"})).await;
    let error = run_step(&rig.cluster, &vmi, Action::Step(Step::MigrateVolumes))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&volume.pv)
            && error.contains("delta disk of a snapshot chain")
            && error.contains("skipUnmovable")
            && error.contains("nothing was changed"),
        "{error}"
    );
    assert!(journal(&rig.client, &vmi).await.is_empty());
    assert_eq!(
        versions(&rig.client, &apps).await,
        before,
        "the refusal changed something"
    );
    // Told to skip it, the step leaves it on the source and says so.
    let skipping = self::vmi(
        &rig,
        json!({"migrate": true, "mode": "Copy", "skipUnmovable": true}),
    )
    .await;
    run_step(&rig.cluster, &skipping, Action::Step(Step::MigrateVolumes))
        .await
        .unwrap();
    let status = step_status(&rig.client, &skipping, Step::MigrateVolumes).await;
    assert!(
        status
            .result
            .as_deref()
            .unwrap_or_default()
            .starts_with("no volume moved: 1 left on the source"),
        "{status:?}"
    );
    assert!(
        status
            .findings
            .iter()
            .any(|f| f.contains(&volume.pv) && f.contains("delta disk")),
        "{status:?}"
    );
    assert_eq!(handle(&pvs(&rig.client).await[&volume.pv]), volume.fcd_id);
}
