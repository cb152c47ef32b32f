//! Step 13 migrate-volumes: every vSphere CSI volume on the source vCenter
//! moves to the target (DESIGN §7), each through the journal's states
//! Pending → Quiesced → Detached → Moved → Registered → Rebound → Restored
//! → Complete, each verified before the next and recorded in the journal
//! (`volumes::journal`) so that a run killed at any moment resumes.
//!
//! Volumes that share a workload form a group: the group's workloads stop
//! together, its volumes move (up to `spec.volumes.concurrency` disks at a
//! time across all groups), and the workloads start again as soon as the
//! group's volumes are rebound. The source disk is never deleted: it stays
//! until the source vCenter is removed from the cluster (step 15), and is
//! the way back (undo).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::sync::Semaphore;
use vmi_api::VSphereMigrationInfra;
use vmi_api::migration::{VolumeMode, VolumeProgress};

use crate::context::{Outcome, StepContext, StepError};
use crate::machines::{set_progress, stall_limit};
use crate::vcenters::{connect_source, connect_target, infrastructure_id};
use crate::volumes::copy::copy_disk;
use crate::volumes::detach::{holders, wait_detached};
use crate::volumes::journal::{Disk, Entry, Journal, Owner, State};
use crate::volumes::locate::{self, Datastore};
use crate::volumes::rebind::{rebind, trimmed};
use crate::volumes::register::{ensure_cns_volume, register};
use crate::volumes::workloads;
use crate::volumes::{Candidate, Disposition, discover};
use crate::volumes::{relocate_mode, volume_info};
use crate::vsphere::VCenter;
use crate::vsphere::cns::ContainerCluster;
use crate::vsphere::datastore::DatastoreFile;

/// Volumes moved at once when the spec does not say.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// Where moved disks go: the first target failure domain.
struct Destination {
    server: String,
    datacenter: String,
    datastore: Datastore,
    compute_cluster: String,
    region: String,
    zone: String,
}

/// What every volume task shares.
struct Shared<'a> {
    context: &'a StepContext,
    journal: Journal,
    source: VCenter,
    target: VCenter,
    source_datastores: Vec<Datastore>,
    destination: Destination,
    cluster: ContainerCluster,
    mode: VolumeMode,
    stall: Duration,
    disks: Semaphore,
    /// Whether the cluster keeps the CSI driver's CNSVolumeInfo records.
    volume_records: bool,
    progress: Mutex<BTreeMap<String, VolumeProgress>>,
}

impl Shared<'_> {
    /// Records `entry` in the journal, then in the in-memory progress.
    async fn save(&self, entry: &Entry) -> Result<(), StepError> {
        self.journal.save(entry).await?;
        if let Ok(mut progress) = self.progress.lock() {
            progress.insert(entry.persistent_volume.clone(), progress_of(entry));
        }
        Ok(())
    }

    fn note(&self, pv: &str, message: String) {
        if let Ok(mut progress) = self.progress.lock()
            && let Some(p) = progress.get_mut(pv)
        {
            p.message = Some(message);
        }
    }
}

fn progress_of(entry: &Entry) -> VolumeProgress {
    VolumeProgress {
        persistent_volume: entry.persistent_volume.clone(),
        claim: entry.claim.clone(),
        state: entry.state.name().into(),
        message: entry.message.clone(),
    }
}

/// Writes per-volume progress and the counter into the vmi status.
async fn write_status(context: &StepContext, progress: &BTreeMap<String, VolumeProgress>) {
    let done = progress.values().filter(|p| p.state == "Complete").count();
    let moving = progress.values().filter(|p| p.state != "Skipped").count();
    set_progress(context, "volumes", done, moving).await;
    let api: Api<VSphereMigrationInfra> =
        Api::namespaced(context.client.clone(), &context.vmi_ref.namespace);
    let list: Vec<&VolumeProgress> = progress.values().collect();
    let patch = json!({"status": {"volumes": list}});
    if let Err(error) = api
        .patch_status(
            &context.vmi_ref.name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        tracing::warn!(%error, "could not write volume progress to the vmi status");
    }
}

/// Refuses unmovable volumes unless the spec says to leave them.
/// The end of a refusal: "nothing was changed", and, when an earlier run
/// left volumes in flight, that their workloads may be stopped meanwhile.
fn nothing_changed(entries: &BTreeMap<String, Entry>) -> String {
    let in_flight: Vec<String> = entries
        .values()
        .filter(|e| e.state < State::Restored)
        .map(|e| format!("{} ({})", e.persistent_volume, e.state.name()))
        .collect();
    if in_flight.is_empty() {
        "nothing was changed".into()
    } else {
        format!(
            "this run changed nothing, but {} volume(s) of an earlier run are still in flight and their workloads may be stopped: {}; fix the above and retry to finish them",
            in_flight.len(),
            in_flight.join(", ")
        )
    }
}

fn refuse_unmovable(
    context: &StepContext,
    unmovable: &[(String, String)],
    entries: &BTreeMap<String, Entry>,
) -> Result<(), StepError> {
    let skip = context
        .vmi
        .spec
        .volumes
        .as_ref()
        .is_some_and(|v| v.skip_unmovable);
    if unmovable.is_empty() || skip {
        return Ok(());
    }
    let listed: Vec<String> = unmovable
        .iter()
        .map(|(what, why)| format!("{what}: {why}"))
        .collect();
    Err(StepError::Refused(format!(
        "{} volume(s) cannot be moved: {}; fix each as its reason says, or set spec.volumes.skipUnmovable: true to leave them on the source vCenter (step 15 then removes it from the cluster); {}",
        unmovable.len(),
        listed.join("; "),
        nothing_changed(entries)
    )))
}

fn owner_key(owner: &Owner) -> String {
    owner.describe()
}

/// Volumes that share a workload, by union of owners.
fn groups(entries: &BTreeMap<String, Entry>) -> Vec<Vec<String>> {
    let mut groups: Vec<(BTreeSet<String>, Vec<String>)> = Vec::new();
    for (pv, entry) in entries {
        let keys: BTreeSet<String> = entry.owners.iter().map(owner_key).collect();
        let mut merged = (keys.clone(), vec![pv.clone()]);
        let mut rest = Vec::new();
        for group in groups.drain(..) {
            if !keys.is_empty() && !group.0.is_disjoint(&keys) {
                merged.0.extend(group.0);
                merged.1.extend(group.1);
            } else {
                rest.push(group);
            }
        }
        rest.push(merged);
        groups = rest;
    }
    groups
        .into_iter()
        .map(|(_, mut pvs)| {
            pvs.sort();
            pvs
        })
        .collect()
}

/// A new journal entry for `candidate`, whose disk is `disk` on the source.
async fn new_entry(
    shared: &Shared<'_>,
    candidate: &Candidate,
    disk: (crate::vsphere::fcd::Fcd, &Datastore),
    recorded: &BTreeMap<String, i32>,
) -> Result<Entry, StepError> {
    let (fcd, datastore) = disk;
    let mut owners = Vec::new();
    for owner in &candidate.owners {
        let mut owner = owner.clone();
        owner.replicas = match recorded.get(&owner_key(&owner)) {
            Some(replicas) => *replicas,
            None => workloads::current_replicas(shared.context, &owner).await?,
        };
        owners.push(owner);
    }
    let relative = fcd
        .file_path
        .split_once("] ")
        .map_or(fcd.file_path.as_str(), |(_, p)| p)
        .to_owned();
    let destination = &shared.destination;
    Ok(Entry {
        persistent_volume: candidate.name().to_owned(),
        claim: candidate.bound_claim(),
        state: State::Pending,
        mode: format!("{:?}", shared.mode),
        original_pv: trimmed(&candidate.pv),
        original_pvc: candidate.claim.as_ref().map(trimmed),
        reclaim_policy: candidate
            .pv
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.clone())
            .unwrap_or_else(|| "Delete".into()),
        owners,
        source: Disk {
            server: shared.source.server().to_owned(),
            datacenter: datastore.datacenter.clone(),
            id: fcd.id.clone(),
            datastore: datastore.moref.value.clone(),
            path: fcd.file_path.clone(),
            files: Vec::new(),
        },
        target: Disk {
            server: destination.server.clone(),
            datacenter: destination.datacenter.clone(),
            id: String::new(),
            datastore: destination.datastore.moref.value.clone(),
            path: format!("[{}] {relative}", destination.datastore.name),
            files: Vec::new(),
        },
        helper_vm: None,
        message: None,
        workloads_started: false,
    })
}

/// Runs the step.
pub async fn run(context: &StepContext) -> Result<Outcome, StepError> {
    let candidates = discover(context).await?;
    let journal = Journal::of(context);
    let mut entries = journal.load_all().await?;
    let settings = context.vmi.spec.volumes.clone().unwrap_or_default_volumes();
    if candidates.is_empty() && entries.is_empty() {
        return Ok(Outcome::skipped(
            "the cluster has no vSphere CSI persistent volume",
        ));
    }
    let pending: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| !entries.contains_key(c.name()))
        .collect();
    if !settings.migrate && !pending.is_empty() {
        let listed: Vec<String> = pending.iter().map(|c| c.describe()).collect();
        return Err(StepError::Refused(format!(
            "{} vSphere volume(s) live on the source vCenter and spec.volumes.migrate is not true: {}; removing the source (step 15) would strand them; set spec.volumes.migrate: true, or move them by hand, then delete this step's Job to retry; {}",
            pending.len(),
            listed.join(", "),
            nothing_changed(&entries)
        )));
    }
    let mut unmovable: Vec<(String, String)> = pending
        .iter()
        .filter_map(|c| match &c.disposition {
            Disposition::Unmovable(why) => Some((c.describe(), why.clone())),
            _ => None,
        })
        .collect();
    refuse_unmovable(context, &unmovable, &entries)?;

    let source = connect_source(context).await?;
    let failure_domain = context.vmi.spec.failure_domains.first().ok_or_else(|| {
        StepError::Refused(
            "spec.failureDomains is empty: there is no target to move volumes to".into(),
        )
    })?;
    let target = connect_target(context, &failure_domain.server).await?;
    let source_datastores = locate::datastores(&source).await?;
    let target_datastores = locate::datastores(&target).await?;
    let datastore = locate::by_path(&target_datastores, &failure_domain.topology.datastore)
        .cloned()
        .ok_or_else(|| {
            StepError::Refused(format!(
                "target failure domain {}: datastore {} not found on vCenter {}; nothing was changed",
                failure_domain.name,
                failure_domain.topology.datastore,
                target.server()
            ))
        })?;
    if settings.mode == VolumeMode::Copy && !locate::serves_files(&datastore) {
        return Err(StepError::Refused(format!(
            "target datastore {} is {}, which does not serve disk files; Copy mode needs VMFS or NFS there; use another failure domain datastore or mode Relocate; nothing was changed",
            failure_domain.topology.datastore, datastore.kind
        )));
    }
    let infra_id = infrastructure_id(context).await?;
    let target_user = crate::vcenters::credentials(context, &failure_domain.server)
        .await?
        .username()
        .to_owned();
    let shared = Shared {
        context,
        journal: journal.clone(),
        source,
        target,
        source_datastores,
        destination: Destination {
            server: failure_domain.server.clone(),
            datacenter: failure_domain.topology.datacenter.clone(),
            datastore,
            compute_cluster: failure_domain.topology.compute_cluster.clone(),
            region: failure_domain.region.clone(),
            zone: failure_domain.zone.clone(),
        },
        cluster: ContainerCluster {
            cluster_id: infra_id,
            vsphere_user: target_user,
            distribution: "OpenShift".into(),
        },
        mode: settings.mode,
        stall: stall_limit(context),
        disks: Semaphore::new(settings.concurrency),
        volume_records: volume_info::served(context).await?,
        progress: Mutex::new(BTreeMap::new()),
    };

    // Locate each new volume's disk and record it before anything changes.
    // Only from volumes still in flight: an owner restored earlier runs at
    // whatever it runs at now (it may have been scaled since).
    let mut recorded: BTreeMap<String, i32> = BTreeMap::new();
    for entry in entries.values().filter(|e| e.state < State::Restored) {
        for owner in &entry.owners {
            recorded.insert(owner_key(owner), owner.replicas);
        }
    }
    let mut new_entries = Vec::new();
    let mut skipped = Vec::new();
    let found_before = unmovable.len();
    for candidate in pending {
        match &candidate.disposition {
            Disposition::Move => {}
            Disposition::NotSelected => {
                skipped.push(format!(
                    "{} (outside spec.volumes.namespaceSelector)",
                    candidate.describe()
                ));
                continue;
            }
            Disposition::Unmovable(why) => {
                skipped.push(format!("{}: {why}", candidate.describe()));
                continue;
            }
        }
        let Some(handle) = candidate.handle() else {
            continue;
        };
        match locate::find_disk(&shared.source, &shared.source_datastores, handle, None).await? {
            Some((disk, datastore)) => {
                if settings.mode == VolumeMode::Copy && !locate::serves_files(datastore) {
                    unmovable.push((candidate.describe(), format!("its disk is on {} datastore {}, which does not serve disk files; use mode Relocate", datastore.kind, datastore.name)));
                    continue;
                }
                if settings.mode == VolumeMode::Copy
                    && let Some(file) = DatastoreFile::parse(&datastore.datacenter, &disk.file_path)
                    && let Err(why) = crate::volumes::copy::layout(&shared.source, &file).await?
                {
                    unmovable.push((
                        candidate.describe(),
                        format!("its disk {}: {why}", disk.file_path),
                    ));
                    continue;
                }
                if settings.mode == VolumeMode::Copy
                    && locate::same_storage(datastore, &shared.destination.datastore)
                {
                    unmovable.push((candidate.describe(), format!("its datastore {} and the target datastore {} are the same storage ({}) mounted under both vCenters: a copy would overwrite the disk it reads; choose another target datastore, or register the disk on the target by hand (docs/volumes.md)", datastore.name, shared.destination.datastore.name, datastore.url)));
                    continue;
                }
                let entry = new_entry(&shared, candidate, (disk, datastore), &recorded).await?;
                for owner in &entry.owners {
                    recorded.insert(owner_key(owner), owner.replicas);
                }
                new_entries.push(entry);
            }
            None => {
                if locate::find_disk(&shared.target, &target_datastores, handle, None)
                    .await?
                    .is_some()
                {
                    skipped.push(format!(
                        "{} (its disk {handle} is already on the target vCenter)",
                        candidate.describe()
                    ));
                } else {
                    unmovable.push((
                        candidate.describe(),
                        format!(
                            "its disk {handle} is on neither vCenter {} nor {}",
                            shared.source.server(),
                            shared.target.server()
                        ),
                    ));
                }
            }
        }
    }
    refuse_unmovable(context, &unmovable, &entries)?;
    // Skipped (spec.volumes.skipUnmovable): those found unmovable in vCenter
    // are left on the source like those found so in the cluster.
    skipped.extend(
        unmovable[found_before..]
            .iter()
            .map(|(what, why)| format!("{what}: {why}")),
    );
    for entry in new_entries {
        shared.save(&entry).await?;
        entries.insert(entry.persistent_volume.clone(), entry);
    }
    if let Ok(mut progress) = shared.progress.lock() {
        for entry in entries.values() {
            progress.insert(entry.persistent_volume.clone(), progress_of(entry));
        }
    }
    write_status(context, &snapshot(&shared)).await;

    // Move the groups, reporting progress every second meanwhile.
    let total = entries.len();
    let complete_before = entries
        .values()
        .filter(|e| e.state == State::Complete)
        .count();
    let group_list = groups(&entries);
    let group_count = group_list.len();
    let entries = Arc::new(entries);
    let work = futures::stream::iter(group_list.into_iter().map(|group| {
        let entries = entries.clone();
        let shared = &shared;
        async move {
            let members: Vec<Entry> = group
                .iter()
                .filter_map(|pv| entries.get(pv).cloned())
                .collect();
            migrate_group(shared, members).await
        }
    }))
    .buffer_unordered(settings.concurrency)
    .collect::<Vec<_>>();
    tokio::pin!(work);
    let results = loop {
        tokio::select! {
            results = &mut work => break results,
            () = tokio::time::sleep(Duration::from_secs(1)) => write_status(context, &snapshot(&shared)).await,
        }
    };
    write_status(context, &snapshot(&shared)).await;
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    if !failures.is_empty() {
        return Err(StepError::Unverified(format!(
            "{} of {group_count} volume group(s) did not finish: {}; every volume's state and disks are in its journal ConfigMap ({}) and status.volumes; the source disks are untouched; fix the cause and delete this step's Job to resume",
            failures.len(),
            first_failures(&failures),
            journal.describe("<pv>")
        )));
    }
    let mut outcome = Outcome::default();
    for entry in entries.values() {
        outcome
            .backups
            .push(journal.describe(&entry.persistent_volume));
        if complete_before == total {
            continue;
        }
        outcome.changes.push(format!(
            "PersistentVolume {}: disk {} on {} → {} on {} ({})",
            entry.persistent_volume,
            entry.source.id,
            entry.source.server,
            entry.target.id,
            entry.target.server,
            entry.target.path
        ));
    }
    outcome.findings = skipped
        .iter()
        .map(|s| format!("left on the source: {s}"))
        .collect();
    outcome.result = if total == 0 {
        format!(
            "no volume moved: {} left on the source (see the findings); nothing changed",
            skipped.len()
        )
    } else if complete_before == total {
        format!(
            "{total} volume(s) were already on vCenter {} and are verified again; {} left on the source; nothing changed",
            shared.destination.server,
            skipped.len()
        )
    } else {
        format!(
            "{total} volume(s) moved to vCenter {} and verified ({:?} mode); {} left on the source; the source disks are kept until step 15",
            shared.destination.server,
            shared.mode,
            skipped.len()
        )
    };
    Ok(outcome)
}

/// The first failures, each shortened, so the cause fits the 2 KiB the
/// kubelet keeps of a pod's last words; status.volumes has every one.
fn first_failures(failures: &[String]) -> String {
    const SHOWN: usize = 2;
    const LONGEST: usize = 500;
    let mut shown: Vec<String> = failures
        .iter()
        .take(SHOWN)
        .map(|f| match f.char_indices().nth(LONGEST) {
            Some((cut, _)) => format!("{}…", &f[..cut]),
            None => f.clone(),
        })
        .collect();
    if failures.len() > SHOWN {
        shown.push(format!("and {} more", failures.len() - SHOWN));
    }
    shown.join("; ")
}

fn snapshot(shared: &Shared<'_>) -> BTreeMap<String, VolumeProgress> {
    shared
        .progress
        .lock()
        .map(|p| p.clone())
        .unwrap_or_default()
}

/// Moves one group: stops its workloads, moves its volumes, starts the
/// workloads again, verifies. Errors name the volume and its state.
async fn migrate_group(shared: &Shared<'_>, mut members: Vec<Entry>) -> Result<(), String> {
    let names: Vec<String> = members
        .iter()
        .map(|e| e.persistent_volume.clone())
        .collect();
    let fail = |shared: &Shared<'_>, entry: &Entry, error: StepError| {
        let message = error.to_string();
        shared.note(&entry.persistent_volume, message.clone());
        format!(
            "PV {} (state {}): {message}",
            entry.persistent_volume,
            entry.state.name()
        )
    };
    // Quiesce.
    if members.iter().any(|e| e.state < State::Quiesced) {
        let mut owners: Vec<Owner> = members.iter().flat_map(|e| e.owners.clone()).collect();
        owners.sort_by_key(owner_key);
        owners.dedup_by_key(|o| owner_key(o));
        const STOPPED: &str = "the owners stopped so far stay at 0 until a retry finishes this group (their replicas are in the journal)";
        for owner in &owners {
            if let Err(e) = workloads::stop(shared.context, owner).await {
                return Err(format!("{}; {STOPPED}", fail(shared, &members[0], e)));
            }
        }
        let claims: Vec<String> = members.iter().filter_map(|e| e.claim.clone()).collect();
        if let Err(e) = workloads::wait_unused(shared.context, &claims, shared.stall).await {
            return Err(format!("{}; {STOPPED}", fail(shared, &members[0], e)));
        }
        for entry in members.iter_mut().filter(|e| e.state < State::Quiesced) {
            entry.state = State::Quiesced;
            shared
                .save(entry)
                .await
                .map_err(|e| format!("{names:?}: {e}"))?;
        }
    }
    // Move each volume.
    let moved = futures::future::join_all(members.iter().cloned().map(|entry| async move {
        let mut entry = entry;
        match move_volume(shared, &mut entry).await {
            Ok(()) => Ok(entry),
            Err(e) => {
                entry.message = Some(e.to_string());
                let _ = shared.journal.save(&entry).await;
                Err(fail(shared, &entry, e))
            }
        }
    }))
    .await;
    let mut errors = Vec::new();
    members = moved
        .into_iter()
        .filter_map(|r| r.map_err(|e| errors.push(e)).ok())
        .collect();
    if !errors.is_empty() {
        return Err(format!(
            "{} (their workloads stay stopped until the group is done)",
            errors.join("; ")
        ));
    }
    // Restore the workloads; first record that they may write to the copies.
    if members.iter().any(|e| e.state < State::Restored) {
        for entry in members.iter_mut().filter(|e| !e.workloads_started) {
            entry.workloads_started = true;
            shared
                .save(entry)
                .await
                .map_err(|e| format!("{names:?}: {e}"))?;
        }
        let mut owners: Vec<Owner> = members.iter().flat_map(|e| e.owners.clone()).collect();
        owners.sort_by_key(owner_key);
        owners.dedup_by_key(|o| owner_key(o));
        for owner in &owners {
            if let Err(e) = workloads::start(shared.context, owner).await {
                return Err(fail(shared, &members[0], e));
            }
        }
        if let Err(e) = wait_back(shared, &owners).await {
            return Err(fail(shared, &members[0], e));
        }
        for entry in members.iter_mut().filter(|e| e.state < State::Restored) {
            entry.state = State::Restored;
            entry.message = None;
            shared
                .save(entry)
                .await
                .map_err(|e| format!("{names:?}: {e}"))?;
        }
    }
    // Verify end to end, again for volumes a previous run completed.
    for entry in members.iter_mut() {
        if let Err(e) = verify(shared, entry).await {
            return Err(fail(shared, entry, e));
        }
        if entry.state == State::Complete {
            continue;
        }
        entry.state = State::Complete;
        shared
            .save(entry)
            .await
            .map_err(|e| format!("{names:?}: {e}"))?;
    }
    Ok(())
}

/// Waits until every owner is back at its recorded replicas.
async fn wait_back(shared: &Shared<'_>, owners: &[Owner]) -> Result<(), StepError> {
    let mut watchdog = crate::machines::Stall::new(shared.stall);
    loop {
        let mut waiting = Vec::new();
        for owner in owners {
            if let Some(why) = workloads::not_back(shared.context, owner).await? {
                waiting.push(why);
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        let observed = waiting.join("; ");
        if let Some(waited) = watchdog.observe(observed.clone()) {
            return Err(StepError::Unverified(format!(
                "the volumes are on the target but after {} s {observed}; check those pods (events, VolumeAttachments: a pod on a node of the source cannot attach a target disk), then delete this step's Job to retry",
                waited.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One volume from Quiesced to Rebound.
async fn move_volume(shared: &Shared<'_>, entry: &mut Entry) -> Result<(), StepError> {
    if entry.state >= State::Rebound {
        return Ok(());
    }
    let _permit = shared
        .disks
        .acquire()
        .await
        .map_err(|_| StepError::Refused("internal: the disk semaphore closed".into()))?;
    if entry.state < State::Detached {
        wait_detached(shared.context, &shared.source, entry, shared.stall).await?;
        entry.state = State::Detached;
        shared.save(entry).await?;
    }
    if entry.state < State::Moved {
        // The mode the volume started in, even if the spec changed since:
        // a half-done relocate is not finished by a copy, nor the reverse.
        let mode = if entry.mode == format!("{:?}", VolumeMode::Relocate) {
            VolumeMode::Relocate
        } else {
            VolumeMode::Copy
        };
        match mode {
            VolumeMode::Copy => {
                let from = DatastoreFile::parse(&entry.source.datacenter, &entry.source.path)
                    .ok_or_else(|| {
                        StepError::Refused(format!(
                            "the journal's source path {} is not `[datastore] path`",
                            entry.source.path
                        ))
                    })?;
                let to = DatastoreFile::parse(&entry.target.datacenter, &entry.target.path)
                    .ok_or_else(|| {
                        StepError::Refused(format!(
                            "the journal's target path {} is not `[datastore] path`",
                            entry.target.path
                        ))
                    })?;
                let files = copy_disk(
                    &shared.source,
                    &from,
                    &shared.target,
                    &to,
                    &entry.target.files,
                )
                .await?;
                // Something attached the disk during the copy (a CronJob's
                // pod, a workload scaled up by hand): the copy may miss its
                // writes. Start over from Quiesced: the next run waits for
                // the disk to be free and copies every file again.
                let holding = holders(shared.context, &shared.source, entry).await?;
                if !holding.is_empty() {
                    entry.state = State::Quiesced;
                    entry.target.files.clear();
                    shared.save(entry).await?;
                    return Err(StepError::Unverified(format!(
                        "PV {} was attached while it was being copied ({}): the copy is not trusted and will be made again; stop what started a pod on claim {} (a CronJob, a workload scaled up), then delete this step's Job to retry",
                        entry.persistent_volume,
                        holding.join("; "),
                        entry.claim.as_deref().unwrap_or("(none)")
                    )));
                }
                entry.target.files = files;
            }
            VolumeMode::Relocate => relocate(shared, entry).await?,
        }
        entry.state = State::Moved;
        shared.save(entry).await?;
    }
    if entry.state < State::Registered {
        let file = DatastoreFile::parse(&entry.target.datacenter, &entry.target.path).ok_or_else(
            || {
                StepError::Refused(format!(
                    "the journal's target path {} is not `[datastore] path`",
                    entry.target.path
                ))
            },
        )?;
        let datastore = shared.destination.datastore.moref.clone();
        let disk = register(
            &shared.target,
            &datastore,
            &file,
            &entry.persistent_volume,
            &entry.target.id,
        )
        .await?;
        if entry.target.id != disk.id {
            entry.target.id = disk.id.clone();
            shared.save(entry).await?; // before anything else can be lost
        }
        ensure_cns_volume(
            &shared.target,
            &disk,
            &entry.persistent_volume,
            &shared.cluster,
        )
        .await?;
        entry.state = State::Registered;
        shared.save(entry).await?;
    }
    // The driver attaches through the vCenter its record names: right
    // before the PV points at the disk.
    if shared.volume_records
        && let Some(change) =
            volume_info::point_at(shared.context, &entry.target.id, &entry.target.server).await?
    {
        tracing::info!(pv = %entry.persistent_volume, "{change}");
    }
    rebind(
        shared.context,
        entry,
        &shared.destination.region,
        &shared.destination.zone,
        shared.stall,
    )
    .await?;
    entry.state = State::Rebound;
    shared.save(entry).await
}

/// The datastore the journal names as `entry`'s source, among `datastores`
/// of `source`.
fn source_datastore_of<'a>(
    datastores: &'a [Datastore],
    entry: &Entry,
    source: &crate::vsphere::VCenter,
) -> Result<&'a Datastore, StepError> {
    datastores
        .iter()
        .find(|d| d.moref.value == entry.source.datastore)
        .ok_or_else(|| {
            StepError::Refused(format!(
                "the journal's source datastore {} is not on vCenter {}",
                entry.source.datastore,
                source.server()
            ))
        })
}

/// Relocate mode, Detached → Moved.
async fn relocate(shared: &Shared<'_>, entry: &mut Entry) -> Result<(), StepError> {
    let source_datastore =
        source_datastore_of(&shared.source_datastores, entry, &shared.source)?.clone();
    let destination = &shared.destination;
    // Killed while the helper VM was being taken apart: the move was proven
    // and recorded (target.id is set only then); finish taking it apart.
    if !entry.target.id.is_empty()
        && shared
            .target
            .retrieve_disk(&entry.target.id, &destination.datastore.moref)
            .await?
            .is_some()
    {
        if let Some((true, vm)) =
            relocate_mode::find_helper(&shared.source, &shared.target, entry).await?
        {
            relocate_mode::take_apart(
                &shared.target,
                &vm,
                &entry.target.id,
                &entry.target.path,
                &destination.datastore,
            )
            .await?;
        }
        return Ok(());
    }
    let at_source =
        relocate_mode::placement(&shared.source, &source_datastore.datacenter, None).await?;
    let at_target = relocate_mode::placement(
        &shared.target,
        &destination.datacenter,
        Some(&destination.compute_cluster),
    )
    .await?;
    let on_target = match &entry.helper_vm {
        Some(helper) if !helper.instance_uuid.is_empty() => {
            shared
                .target
                .find_vm_by_instance_uuid(&helper.instance_uuid)
                .await?
        }
        _ => None,
    };
    let (vm, helper) = match (on_target, entry.helper_vm.clone()) {
        (Some(vm), Some(helper)) => (vm, helper),
        _ => {
            entry.helper_vm = Some(crate::volumes::journal::HelperVm {
                name: relocate_mode::helper_name(&entry.persistent_volume),
                instance_uuid: String::new(),
            });
            shared.save(entry).await?; // the name first: a kill here leaves a VM we can find
            let (vm, helper) =
                relocate_mode::prepare_helper(&shared.source, entry, &source_datastore, &at_source)
                    .await?;
            entry.helper_vm = Some(helper.clone());
            shared.save(entry).await?;
            (vm, helper)
        }
    };
    let (vm_on_target, file) = relocate_mode::relocate(
        &shared.source,
        &shared.target,
        &vm,
        &helper,
        &destination.datastore,
        &at_target,
    )
    .await?;
    entry.target.path = file.clone();
    entry.target.id = shared
        .target
        .retrieve_disk(&entry.source.id, &destination.datastore.moref)
        .await?
        .map(|d| d.id)
        .unwrap_or_default();
    shared.save(entry).await?;
    relocate_mode::dismantle(
        &shared.target,
        &vm_on_target,
        &entry.source.id,
        &file,
        &destination.datastore,
    )
    .await
}

/// The end state of one volume: the PV points at the target disk, which
/// vCenter has, and its claim is bound.
async fn verify(shared: &Shared<'_>, entry: &Entry) -> Result<(), StepError> {
    let pv = Api::<PersistentVolume>::all(shared.context.client.clone())
        .get_opt(&entry.persistent_volume)
        .await
        .map_err(StepError::kube(format!(
            "read PersistentVolume {}",
            entry.persistent_volume
        )))?;
    let handle = pv
        .as_ref()
        .and_then(|p| p.spec.as_ref())
        .and_then(|s| s.csi.as_ref())
        .map(|c| c.volume_handle.clone())
        .unwrap_or_default();
    let mark = pv.as_ref().and_then(crate::volumes::rebind::mark_of);
    let expected = crate::volumes::rebind::moved_from(entry);
    if handle != entry.target.id || mark != Some(expected.as_str()) {
        return Err(StepError::Unverified(format!(
            "PersistentVolume {} points at {handle:?} with {} {mark:?}, not at the target disk {} with {expected:?}: it was not replaced by vmi's",
            entry.persistent_volume,
            crate::volumes::rebind::MOVED_FROM,
            entry.target.id
        )));
    }
    let datastore = shared.destination.datastore.moref.clone();
    if shared
        .target
        .retrieve_disk(&entry.target.id, &datastore)
        .await?
        .is_none()
    {
        return Err(StepError::Unverified(format!(
            "vCenter {} no longer has disk {} of PV {}",
            shared.target.server(),
            entry.target.id,
            entry.persistent_volume
        )));
    }
    Ok(())
}

/// The spec's volume settings with defaults.
struct Settings {
    migrate: bool,
    mode: VolumeMode,
    concurrency: usize,
}

trait VolumesDefaults {
    fn unwrap_or_default_volumes(self) -> Settings;
}

impl VolumesDefaults for Option<vmi_api::migration::Volumes> {
    fn unwrap_or_default_volumes(self) -> Settings {
        match self {
            Some(v) => Settings {
                migrate: v.migrate,
                mode: v.mode,
                concurrency: v
                    .concurrency
                    .and_then(|c| usize::try_from(c).ok())
                    .filter(|c| *c > 0)
                    .unwrap_or(DEFAULT_CONCURRENCY),
            },
            None => Settings {
                migrate: false,
                mode: VolumeMode::Copy,
                concurrency: DEFAULT_CONCURRENCY,
            },
        }
    }
}

/// Undoes the step for every volume whose workloads have not been started
/// on the target copy (before Restored, `workloads_started` unset): the original PV back on
/// the source disk, the workloads back at their replicas, the journal entry
/// removed. The target copies are kept and listed, never deleted here. A
/// volume already in use on the target is refused: pointing it back at the
/// source would silently drop what was written since.
pub async fn undo(context: &StepContext) -> Result<Outcome, StepError> {
    let journal = Journal::of(context);
    let entries = journal.load_all().await?;
    if entries.is_empty() {
        return Ok(Outcome::unchanged("no volume was moved: nothing to undo"));
    }
    let in_use: Vec<String> = entries
        .values()
        .filter(|e| e.state >= State::Restored || e.workloads_started)
        .map(|e| {
            if e.state >= State::Restored {
                format!("PV {} ({})", e.persistent_volume, e.state.name())
            } else {
                format!(
                    "PV {} ({}, its workloads were started on the copy)",
                    e.persistent_volume,
                    e.state.name()
                )
            }
        })
        .collect();
    if !in_use.is_empty() {
        return Err(StepError::Refused(format!(
            "{} volume(s) already run on their target copies and may have been written to since: {}; rolling back would point them at the older source disks and lose those writes; move them back by hand as docs/volumes.md (Rolling back) says, then delete their journal ConfigMaps and retry the rollback; nothing was changed",
            in_use.len(),
            in_use.join(", ")
        )));
    }
    let relocated: Vec<String> = entries
        .values()
        .filter(|e| e.mode == "Relocate" && e.state >= State::Moved)
        .map(|e| format!("PV {} ({})", e.persistent_volume, e.state.name()))
        .collect();
    if !relocated.is_empty() {
        return Err(StepError::Refused(format!(
            "{} volume(s) were relocated: their disks left the source vCenter, so there is no source disk to go back to: {}; moving them back is a relocate the other way, which vmi does not do; see docs/volumes.md (Rolling back); nothing was changed",
            relocated.len(),
            relocated.join(", ")
        )));
    }
    let mut outcome = Outcome::default();
    release_helpers(context, &entries, &mut outcome).await?;
    let stall = stall_limit(context);
    let mut owners: Vec<Owner> = entries.values().flat_map(|e| e.owners.clone()).collect();
    owners.sort_by_key(owner_key);
    owners.dedup_by_key(|o| owner_key(o));
    for entry in entries.values() {
        if entry.state >= State::Registered
            || Api::<PersistentVolume>::all(context.client.clone())
                .get_opt(&entry.persistent_volume)
                .await
                .map_err(StepError::kube(format!(
                    "read PersistentVolume {}",
                    entry.persistent_volume
                )))?
                .is_none()
        {
            crate::volumes::rebind::restore_original(context, entry, stall).await?;
            outcome.changes.push(format!(
                "PersistentVolume {}: back on disk {} on {}",
                entry.persistent_volume, entry.source.id, entry.source.server
            ));
        }
        if !entry.target.id.is_empty() || !entry.target.files.is_empty() {
            outcome.findings.push(format!(
                "kept on {}: the copy of PV {} ({}, disk {:?}); delete it when no longer wanted",
                entry.target.server, entry.persistent_volume, entry.target.path, entry.target.id
            ));
        }
    }
    for owner in &owners {
        workloads::start(context, owner).await?;
        outcome.changes.push(format!(
            "{}: back to {} replica(s)",
            owner.describe(),
            owner.replicas
        ));
    }
    let mut watchdog = crate::machines::Stall::new(stall);
    loop {
        let mut waiting = Vec::new();
        for owner in &owners {
            if let Some(why) = workloads::not_back(context, owner).await? {
                waiting.push(why);
            }
        }
        if waiting.is_empty() {
            break;
        }
        let observed = waiting.join("; ");
        if let Some(waited) = watchdog.observe(observed.clone()) {
            return Err(StepError::Unverified(format!(
                "the volumes are back on the source but after {} s {observed}; check those pods, then retry the rollback",
                waited.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for entry in entries.values() {
        journal.remove(&entry.persistent_volume).await?;
    }
    outcome.result = format!(
        "{} volume(s) back on the source vCenter with their workloads; {} copy(ies) kept on the target",
        entries.len(),
        outcome.findings.len()
    );
    Ok(outcome)
}

/// Relocate mode's undo before the move: the helper VM still on the source
/// holds the disk, so no node could attach it. Detaches the disk (keeping
/// it) and destroys the helper; refuses when the helper already reached the
/// target (the relocate happened although it was not recorded).
async fn release_helpers(
    context: &StepContext,
    entries: &BTreeMap<String, Entry>,
    outcome: &mut Outcome,
) -> Result<(), StepError> {
    let with_helper: Vec<&Entry> = entries
        .values()
        .filter(|e| e.mode == "Relocate" && e.helper_vm.is_some())
        .collect();
    let Some(first) = with_helper.first() else {
        return Ok(());
    };
    let source = connect_source(context).await?;
    let target = connect_target(context, &first.target.server).await?;
    let source_datastores = locate::datastores(&source).await?;
    for entry in with_helper {
        match relocate_mode::find_helper(&source, &target, entry).await? {
            None => {}
            Some((true, vm)) => {
                return Err(StepError::Refused(format!(
                    "the helper VM {vm} of PV {} is on the target vCenter {}: its disk was relocated although the journal did not record it; run the step again (it finishes the move), or move the VM back by hand; nothing was changed",
                    entry.persistent_volume,
                    target.server()
                )));
            }
            Some((false, vm)) => {
                let datastore = source_datastore_of(&source_datastores, entry, &source)?;
                relocate_mode::take_apart(
                    &source,
                    &vm,
                    &entry.source.id,
                    &entry.source.path,
                    datastore,
                )
                .await?;
                outcome.changes.push(format!(
                    "helper VM {vm} on {}: disk {} detached (kept), VM destroyed",
                    source.server(),
                    entry.source.id
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_failure_list_fits_a_termination_message() {
        let failures: Vec<String> = (0..9)
            .map(|i| format!("PV {i}: {}", "x".repeat(900)))
            .collect();
        let text = first_failures(&failures);
        assert!(text.len() < 1200, "{} bytes", text.len());
        assert!(
            text.starts_with("PV 0: ") && text.contains("; PV 1: ") && text.ends_with("and 7 more")
        );
    }
}
