//! The whole migration, steps 00–16, run by `vmi-orchestrator` as Jobs of
//! `vmi-step` on the simulated cluster (the migration rig of `vmi-sim`):
//! on the native path with a YAML cloud-provider-config and vSphere CSI
//! volumes (a Deployment's, a StatefulSet's three, an unused one) moved in
//! Copy mode, on the legacy path
//! with an INI one, and on the legacy path again with the orchestrator
//! killed (SIGKILL) at ten random moments and restarted each time.
//!
//! Each ends in the state the migration promises: the Infrastructure,
//! `kube-system/vsphere-creds` and `openshift-config/cloud-provider-config`
//! name only the target vCenter; every Machine and Node is on the target
//! (the Node's VM in the target vcsim, in `/datacenter-b/vm/<infra id>`);
//! no VM of the cluster is left in the source folder; the control plane
//! machine set is Active with the target failure domain; the CVO runs one
//! replica; cloud-provider-config rolled the nodes exactly twice; the
//! control plane was replaced exactly three times; and no secret reached a
//! log, an Event, the status, a ConfigMap or a Job.

mod programs;

use std::time::Duration;
use vmi_sim::test_random::TestRandom;

use vmi_api::Phase;
use vmi_sim::crds::InfrastructureCrd;
use vmi_sim::migration::vmi_manifest::TARGET_FAILURE_DOMAIN;
use vmi_sim::migration::{self, MigrationRig, VmiOptions};
use vmi_sim::seed::{CloudConfigFormat, SeedOptions};
use vmi_sim::volumes::VolumeWorkloads;

/// How long a whole migration may take on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(20 * 60);
/// One whole simulated cluster at a time: each is several processes.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Kills the orchestrator `kills` times at random moments, restarting it
/// each time, unless the migration ends first; returns the kills made.
async fn kill_at_random(rig: &mut MigrationRig, kills: usize) -> usize {
    if kills == 0 {
        return 0;
    }
    let mut random = TestRandom::from_env_or_clock();
    let mut made = 0;
    while made < kills {
        // The whole run takes about 35 s warm: ten kills fit in it.
        tokio::time::sleep(Duration::from_millis(200 + random.below(2300))).await;
        let phase = rig.status().await.ok().and_then(|s| s.phase);
        if matches!(phase, Some(Phase::Succeeded | Phase::Failed)) {
            break;
        }
        assert!(rig.kill_orchestrator(), "the orchestrator was running");
        made += 1;
        rig.start_orchestrator().unwrap();
    }
    made
}

/// After a migration with volumes: every PV points at a disk in the target
/// vcsim holding the original bytes, its claim is Bound, the source disk
/// is still there, the workloads are back at their replicas with every
/// volume attached on the target, and the vmi counted them all.
async fn assert_volumes_moved(rig: &MigrationRig) {
    let problems = vmi_sim::faults::volume_problems(rig, Duration::from_secs(60)).await;
    assert!(problems.is_empty(), "after the move: {problems:#?}");
}

async fn migrate(
    crd: InfrastructureCrd,
    format: CloudConfigFormat,
    kills: usize,
    with_volumes: bool,
) {
    let _one = ONE_AT_A_TIME.lock().await;
    let seed = SeedOptions {
        infrastructure_crd: crd,
        cloud_config: format,
        ..SeedOptions::default()
    };
    let mut rig = MigrationRig::start(seed, programs::built()).await.unwrap();
    let mut options = VmiOptions::default();
    if with_volumes {
        rig.seed_volumes(&VolumeWorkloads {
            bare_pod: None,
            ..VolumeWorkloads::default()
        })
        .await
        .unwrap();
        options.volumes =
            Some(serde_json::json!({"migrate": true, "mode": "Copy", "concurrency": 2}));
    }
    rig.create_vmi(&options).await.unwrap();
    rig.start_orchestrator().unwrap();
    let killed = kill_at_random(&mut rig, kills).await;

    let status = rig
        .wait_for_phase(&[Phase::Succeeded, Phase::Failed], PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.orchestrator_log_tail(60)));
    assert_eq!(
        status.phase,
        Some(Phase::Succeeded),
        "the migration did not succeed: {}",
        migration::failure_summary(&status).unwrap_or_else(|| format!("{status:#?}"))
    );
    if kills > 0 {
        let retried: Vec<(&str, i32)> = status
            .steps
            .iter()
            .filter(|s| s.attempt != 1)
            .map(|s| (s.name.as_str(), s.attempt))
            .collect();
        assert!(retried.is_empty(), "a restart re-ran steps: {retried:?}");
    }

    let state = rig.end_state().await.unwrap();
    assert_eq!(
        state.problems(TARGET_FAILURE_DOMAIN),
        Vec::<String>::new(),
        "{state:#?}"
    );
    assert_eq!(
        rig.rollouts.count(),
        2,
        "cloud-provider-config rollouts: one to add the target, one to remove the source"
    );
    assert_eq!(
        rig.control_plane_replacements(),
        3,
        "control plane replacements; refused: {:?}",
        rig.control_plane_problems()
    );
    if with_volumes {
        assert_volumes_moved(&rig).await;
    }
    let scan = rig.scan_secrets().await.unwrap();
    assert!(scan.is_clean(), "{scan}");
    assert_eq!(
        killed, kills,
        "the migration ended after {killed} kills of {kills}"
    );
    eprintln!(
        "{crd:?}/{format:?}, {killed} kills: {} machines on the target, CVO down {:.1} s, \
         secrets scan {}",
        state.machines.len(),
        rig.cvo_downtime.total().as_secs_f64(),
        scan.headline()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_path_with_yaml_migrates_everything() {
    migrate(
        InfrastructureCrd::MultiVCenterDay2,
        CloudConfigFormat::Yaml,
        0,
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_path_with_ini_migrates_everything() {
    migrate(
        InfrastructureCrd::Release422Default,
        CloudConfigFormat::Ini,
        0,
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_orchestrator_ten_times_ends_in_the_same_state() {
    migrate(
        InfrastructureCrd::Release422Default,
        CloudConfigFormat::Ini,
        10,
        true,
    )
    .await;
}
