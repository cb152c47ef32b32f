//! The vCenter client against a vCenter that answers slowly or drops
//! connections: a simulated vCenter behind a proxy that delays, cuts or
//! swallows traffic (`vmi_sim::flaky_proxy`). Reads are tried again, what
//! changes something is sent once and reported as of unknown outcome when
//! its answer is lost, every wait has a limit, and a slow vCenter that keeps
//! answering is waited for.

mod support;

use std::time::{Duration, Instant};

use support::{Captured, file, pattern, sha256, simulator};
use vmi_sim::flaky_proxy::{Behaviour, Direction, FlakyProxy, ProxyStats};
use vmi_sim::vcsim::VCenterSim;
use vmi_step_runner::vsphere::{ClientOptions, Credentials, ErrorKind, Trust, VCenter};

/// Short limits, so that the tests take seconds; the retry policy is the
/// default one (3 attempts, 0.5 s doubling).
fn short_limits() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(1),
        call_timeout: Duration::from_secs(2),
        transfer_stall_timeout: Duration::from_secs(1),
        ..ClientOptions::default()
    }
}

/// Connects to `sim` through `proxy`, verifying the simulator's certificate
/// by its thumbprint.
async fn connect_via(
    proxy: &FlakyProxy,
    sim: &VCenterSim,
    options: ClientOptions,
) -> Result<VCenter, vmi_step_runner::vsphere::VSphereError> {
    VCenter::connect_with(
        &proxy.server,
        Some(proxy.port),
        &Trust::Thumbprint(sim.thumbprint_sha256.clone()),
        Credentials::new(&sim.username, &sim.password),
        options,
    )
    .await
}

/// What changed between two readings of the proxy's counters.
fn delta(before: ProxyStats, after: ProxyStats) -> ProxyStats {
    ProxyStats {
        connections: after.connections - before.connections,
        resets: after.resets - before.resets,
        requests: after.requests - before.requests,
        swallowed: after.swallowed - before.swallowed,
        bytes_to_server: after.bytes_to_server - before.bytes_to_server,
        bytes_to_client: after.bytes_to_client - before.bytes_to_client,
    }
}

/// The retry warnings logged for `method`.
fn retry_warnings<'a>(logs: &'a str, method: &str) -> Vec<&'a str> {
    logs.lines()
        .filter(|l| l.contains("WARN") && l.contains("trying again"))
        .filter(|l| l.contains(&format!("method={method} ")))
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn reads_get_through_cut_connections_and_say_so() {
    let sim = simulator("cuts", "pw-cuts");
    let proxy = FlakyProxy::in_front_of(&sim).unwrap();
    let logs = Captured::default();
    let _guard = logs.install();

    // The first two connections are reset before anything is sent: even
    // the login gets through (nothing had left).
    proxy.set(Behaviour::ResetAtAccept { count: 2 });
    let started = Instant::now();
    let vcenter = connect_via(&proxy, &sim, short_limits()).await.unwrap();
    let connect_ms = started.elapsed().as_millis();
    let at_connect = proxy.stats();
    assert_eq!(at_connect.resets, 2, "{at_connect:?}");
    let text = logs.text();
    let warnings = retry_warnings(&text, "RetrieveServiceContent");
    assert_eq!(warnings.len(), 2, "{text}");
    assert!(warnings[0].contains("attempt=1") && warnings[1].contains("attempt=2"));

    // Two answers cut on their way back: the read is sent three times.
    support::lookup(&vcenter, "/datacenter-a/vm").await;
    let before = proxy.stats();
    proxy.set(Behaviour::ResetAfter {
        direction: Direction::ToClient,
        bytes: 0,
        count: 2,
    });
    let started = Instant::now();
    let found = vcenter
        .find_by_inventory_path("/datacenter-a/host/cluster-a")
        .await
        .unwrap();
    let read_ms = started.elapsed().as_millis();
    assert_eq!(
        found.map(|m| m.kind).as_deref(),
        Some("ClusterComputeResource")
    );
    let seen = delta(before, proxy.stats());
    assert_eq!(seen.resets, 2, "{seen:?}");
    let text = logs.text();
    let warnings = retry_warnings(&text, "FindByInventoryPath");
    assert_eq!(warnings.len(), 2, "{text}");
    for (warning, attempt) in warnings.iter().zip(["attempt=1", "attempt=2"]) {
        assert!(warning.contains(attempt), "{warning}");
        assert!(
            warning.contains(&sim.server),
            "names the vCenter: {warning}"
        );
        assert!(warning.contains("cause="), "names the cause: {warning}");
    }
    println!(
        "cut connections: connect through 2 resets at accept in {connect_ms} ms; \
         a read through 2 cut answers in {read_ms} ms ({} connections, {} resets, {} client turns)",
        seen.connections, seen.resets, seen.requests
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_black_holed_vcenter_times_out_within_the_limits() {
    let sim = simulator("black-hole", "pw-black-hole");
    let proxy = FlakyProxy::in_front_of(&sim).unwrap();
    let options = short_limits();
    let vcenter = connect_via(&proxy, &sim, options.clone()).await.unwrap();
    let parent = support::lookup(&vcenter, "/datacenter-a/vm").await;

    // A read: three attempts, each within its limit, then a clear error.
    proxy.set(Behaviour::BlackHole);
    let started = Instant::now();
    let err = vcenter
        .find_by_inventory_path("/datacenter-a/host")
        .await
        .unwrap_err();
    let read_waited = started.elapsed();
    assert!(
        matches!(err.kind, ErrorKind::Timeout { attempts: 3, .. }),
        "{err}"
    );
    // At most: 3 attempts at the call limit, plus the backoff (0.5 + 1 s).
    let ceiling = options.call_timeout * 3 + Duration::from_millis(1500);
    assert!(
        read_waited >= options.call_timeout && read_waited < ceiling + Duration::from_secs(2),
        "waited {read_waited:?}"
    );
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "vCenter {}: FindByInventoryPath on SearchIndex:",
            sim.server
        )),
        "{message}"
    );
    assert!(message.contains("(3 attempts)"), "{message}");

    // A change: sent once on a connection that worked, never answered, not
    // sent again; its outcome is unknown.
    proxy.set(Behaviour::Pass);
    vcenter
        .find_by_inventory_path("/datacenter-a")
        .await
        .unwrap();
    proxy.set(Behaviour::BlackHole);
    let before = proxy.stats();
    let started = Instant::now();
    let err = vcenter
        .create_folder(&parent, "never-answered")
        .await
        .unwrap_err();
    let write_waited = started.elapsed();
    let seen = delta(before, proxy.stats());
    assert!(
        matches!(&err.kind, ErrorKind::OutcomeUnknown { cause } if cause.contains("within 2 s")),
        "{err}"
    );
    assert!(
        write_waited >= options.call_timeout
            && write_waited < options.call_timeout + Duration::from_secs(2),
        "one attempt only: waited {write_waited:?}"
    );
    assert_eq!(
        (seen.connections, seen.requests),
        (0, 1),
        "sent once: {seen:?}"
    );
    println!(
        "black hole: a read gave up after {} ms (3 attempts, limit {} ms each, ceiling {} ms); \
         a change gave up after {} ms (1 attempt): {err}",
        read_waited.as_millis(),
        options.call_timeout.as_millis(),
        ceiling.as_millis(),
        write_waited.as_millis()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_change_whose_answer_is_cut_is_reported_unknown_and_not_repeated() {
    let sim = simulator("cut-change", "pw-cut-change");
    let proxy = FlakyProxy::in_front_of(&sim).unwrap();
    let logs = Captured::default();
    let _guard = logs.install();
    let vcenter = connect_via(&proxy, &sim, short_limits()).await.unwrap();
    // Read just before, so the change goes out on a connection in use.
    let parent = support::lookup(&vcenter, "/datacenter-a/vm").await;

    let before = proxy.stats();
    proxy.set(Behaviour::ResetAfter {
        direction: Direction::ToClient,
        bytes: 0,
        count: 1,
    });
    let err = vcenter
        .create_folder(&parent, "answer-cut")
        .await
        .unwrap_err();
    let seen = delta(before, proxy.stats());
    assert!(
        matches!(err.kind, ErrorKind::OutcomeUnknown { .. }),
        "{err}"
    );
    assert_eq!(
        (seen.connections, seen.requests, seen.resets),
        (0, 1, 1),
        "the request went out once and its answer was cut: {seen:?}"
    );
    let message = err.to_string();
    for part in [
        format!("vCenter {}: CreateFolder on {parent}", sim.server),
        "outcome is unknown".to_owned(),
        "did not send it again".to_owned(),
        "Run the step again".to_owned(),
    ] {
        assert!(message.contains(&part), "{part:?} missing: {message}");
    }
    assert!(
        retry_warnings(&logs.text(), "CreateFolder").is_empty(),
        "no retry of a change"
    );

    // vCenter did it: the folder is there, once.
    let created = vcenter
        .find_by_inventory_path("/datacenter-a/vm/answer-cut")
        .await
        .unwrap();
    assert!(created.is_some(), "vcsim created the folder");
    let names: Vec<String> = vcenter
        .objects_below(&parent, "Folder", &["name"])
        .await
        .unwrap()
        .iter()
        .filter_map(|o| o.text("name").map(str::to_owned))
        .filter(|n| n == "answer-cut")
        .collect();
    assert_eq!(names.len(), 1);
    println!("cut answer of CreateFolder: {seen:?}; error: {message}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_slow_vcenter_that_keeps_answering_is_waited_for() {
    let sim = simulator("slow", "pw-slow");
    let proxy = FlakyProxy::in_front_of(&sim).unwrap();
    let logs = Captured::default();
    let _guard = logs.install();
    // Every chunk (up to 64 KiB) waits 20 ms: about 3 MB/s.
    let options = ClientOptions {
        connect_timeout: Duration::from_secs(2),
        call_timeout: Duration::from_secs(3),
        transfer_stall_timeout: Duration::from_secs(1),
        ..ClientOptions::default()
    };
    let delay = Duration::from_millis(20);
    proxy.set(Behaviour::Delay(delay));

    let started = Instant::now();
    let vcenter = connect_via(&proxy, &sim, options.clone()).await.unwrap();
    let connect_ms = started.elapsed().as_millis();

    let started = Instant::now();
    let parent = support::lookup(&vcenter, "/datacenter-a/vm").await;
    let folder = vcenter.create_folder(&parent, "slowly-made").await.unwrap();
    assert_eq!(
        vcenter
            .find_by_inventory_path("/datacenter-a/vm/slowly-made")
            .await
            .unwrap(),
        Some(folder)
    );
    let folder_ms = started.elapsed().as_millis();

    let size_mib = 16;
    let bytes = pattern(size_mib << 20, 0x9e37_79b9);
    let target = file("slow/disk-1.vmdk");
    let started = Instant::now();
    let sent = vcenter
        .upload(
            &target,
            std::io::Cursor::new(bytes.clone()),
            bytes.len() as u64,
        )
        .await
        .unwrap();
    let upload = started.elapsed();
    assert_eq!(sent.sha256, sha256(&bytes));

    let started = Instant::now();
    let mut back = Vec::new();
    let received = vcenter.download(&target, &mut back).await.unwrap();
    let download = started.elapsed();
    assert_eq!(received, sent);
    assert_eq!(back, bytes);

    // Each transfer took longer than a call may, and kept moving.
    for (what, took) in [("upload", upload), ("download", download)] {
        assert!(
            took > options.call_timeout,
            "the {what} ({took:?}) should outlast the call limit to prove anything"
        );
    }
    let text = logs.text();
    assert!(
        !text.contains("trying again"),
        "nothing had to be tried again: {text}"
    );
    let mib = |took: Duration| size_mib as f64 / took.as_secs_f64();
    println!(
        "slow vCenter ({} ms per chunk): connect {connect_ms} ms; folder created and found in {folder_ms} ms; \
         {size_mib} MiB up in {} ms ({:.2} MiB/s), down in {} ms ({:.2} MiB/s); call limit {} ms, stall limit {} ms; \
         proxy {:?}",
        delay.as_millis(),
        upload.as_millis(),
        mib(upload),
        download.as_millis(),
        mib(download),
        options.call_timeout.as_millis(),
        options.transfer_stall_timeout.as_millis(),
        proxy.stats()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_stalled_transfer_times_out() {
    let sim = simulator("stall", "pw-stall");
    let proxy = FlakyProxy::in_front_of(&sim).unwrap();
    let options = short_limits();
    let vcenter = connect_via(&proxy, &sim, options.clone()).await.unwrap();
    let target = file("stall/disk-1.vmdk");
    let bytes = support::upload_pattern(&vcenter, &target, 4 << 20, 0x9e37_79b9).await;

    // A download that stops after 1 MiB: what reached the sink cannot be
    // taken back, so it is not tried again.
    proxy.set(Behaviour::StallAfter {
        direction: Direction::ToClient,
        bytes: 1 << 20,
    });
    let started = Instant::now();
    let mut sink = Vec::new();
    let err = vcenter.download(&target, &mut sink).await.unwrap_err();
    let download_waited = started.elapsed();
    assert!(
        matches!(&err.kind, ErrorKind::Timeout { waiting_for, attempts: 1, .. } if waiting_for.starts_with("transfer progress after")),
        "{err}"
    );
    assert!(!sink.is_empty() && sink.len() < bytes.len());
    assert!(
        download_waited < options.transfer_stall_timeout + Duration::from_secs(3),
        "{download_waited:?}"
    );
    let download_message = err.to_string();
    assert!(
        download_message.contains("GET /folder"),
        "{download_message}"
    );

    // An upload that stops after 1 MiB: sent once, outcome unknown. 16 MiB,
    // more than the kernel buffers, so that it stalls half-way.
    proxy.set(Behaviour::StallAfter {
        direction: Direction::ToServer,
        bytes: 1 << 20,
    });
    let big = pattern(16 << 20, 0x9e37_79b9);
    let started = Instant::now();
    let err = vcenter
        .upload(
            &file("stall/disk-2.vmdk"),
            std::io::Cursor::new(big.clone()),
            big.len() as u64,
        )
        .await
        .unwrap_err();
    let upload_waited = started.elapsed();
    assert!(
        matches!(&err.kind, ErrorKind::OutcomeUnknown { cause } if cause.contains("no transfer progress")),
        "{err}"
    );
    assert!(
        upload_waited < options.transfer_stall_timeout + Duration::from_secs(3),
        "{upload_waited:?}"
    );
    println!(
        "stalls (limit {} ms): download gave up after {} ms with {} bytes: {download_message}; \
         upload gave up after {} ms: {err}",
        options.transfer_stall_timeout.as_millis(),
        download_waited.as_millis(),
        sink.len(),
        upload_waited.as_millis()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_task_whose_progress_cannot_be_read_has_an_unknown_outcome() {
    use vmi_sim::inventory::Inventory;
    use vmi_step_runner::vsphere::vm::NewVm;
    // vcsim finishes CreateVM_Task tasks after 3 s.
    let sim = VCenterSim::start_with(
        "task-lost",
        "administrator",
        "pw-task-lost",
        &["-method-delay", "CreateVm:3000,LockHandoff:0"],
    )
    .unwrap();
    Inventory::source("ocp-x7k2p").create_in(&sim).unwrap();
    let proxy = FlakyProxy::in_front_of(&sim).unwrap();
    let vcenter = connect_via(&proxy, &sim, short_limits()).await.unwrap();
    let (folder, pool) = support::helper_placement(&vcenter).await;

    // Once the task is started and polled, vCenter stops answering.
    let before = proxy.stats().requests;
    let black_hole_once_polled = async {
        while proxy.stats().requests < before + 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        proxy.set(Behaviour::BlackHole);
    };
    let new_vm = NewVm {
        name: "vmi-lost-task",
        folder: &folder,
        pool: &pool,
        datastore: "datastore-a",
        cpus: 1,
        memory_mib: 128,
    };
    let started = Instant::now();
    let (result, ()) = tokio::join!(vcenter.create_vm(&new_vm), black_hole_once_polled);
    let err = result.unwrap_err();
    assert_eq!(err.method, "CreateVM_Task", "{err}");
    assert!(
        matches!(&err.kind, ErrorKind::OutcomeUnknown { cause } if cause.contains("was started")),
        "{err}"
    );
    println!(
        "task progress lost: gave up after {} ms: {err}",
        started.elapsed().as_millis()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_paged_read_whose_later_page_is_cut_starts_over() {
    use vmi_sim::inventory::Inventory;
    // Every page after the first takes 2.5 s; the proxy cuts an answer
    // slower than 1 s once.
    let sim = VCenterSim::start_with(
        "pages-cut",
        "administrator",
        "pw-pages-cut",
        &["-method-delay", "ContinueRetrievePropertiesEx:2500"],
    )
    .unwrap();
    Inventory::source("ocp-x7k2p").create_in(&sim).unwrap();
    let proxy = FlakyProxy::in_front_of(&sim).unwrap();
    let options = ClientOptions {
        call_timeout: Duration::from_secs(5),
        ..short_limits()
    };
    let vcenter = connect_via(&proxy, &sim, options).await.unwrap();
    let vm_folder = support::lookup(&vcenter, "/datacenter-a/vm").await;
    let parent = vcenter.create_folder(&vm_folder, "paging").await.unwrap();
    for i in 0..120 {
        vcenter
            .create_folder(&parent, &format!("f-{i:03}"))
            .await
            .unwrap();
    }
    let logs = Captured::default();
    let _guard = logs.install();
    proxy.set(Behaviour::ResetSlowAnswers {
        after: Duration::from_secs(1),
        count: 1,
    });
    let started = Instant::now();
    let found = vcenter
        .objects_below(&parent, "Folder", &["name"])
        .await
        .unwrap();
    let mut names: Vec<&str> = found.iter().filter_map(|o| o.text("name")).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 120, "every page, each once");
    assert_eq!(proxy.stats().resets, 1);
    let text = logs.text();
    assert_eq!(
        text.matches("a paged read lost a page; reading again from the first page")
            .count(),
        1,
        "{text}"
    );
    assert!(
        retry_warnings(&text, "ContinueRetrievePropertiesEx").is_empty(),
        "a continuation is never sent twice: {text}"
    );
    println!(
        "paged read with its second page cut: 120 folders in {} ms",
        started.elapsed().as_millis()
    );
}

/// Step 06 through a load balancer that cuts answers slower than 2 s, to a
/// target vCenter whose CreateFolder takes 4 s: the first run reports the
/// outcome unknown; the second finds the folder vCenter made meanwhile and
/// creates no other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_06_run_again_after_an_unknown_outcome_finds_the_folder() {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, Patch, PatchParams};
    use vmi_api::Step;
    use vmi_api::migration::MigrationPath;
    use vmi_sim::inventory::Inventory;
    use vmi_sim::seed::{SeedOptions, SimCluster};
    use vmi_step_runner::Action;

    let cluster = SimCluster::start(SeedOptions::default()).await.unwrap();
    let client = cluster.client().await.unwrap();
    let target = VCenterSim::start_with(
        "slow-target",
        "migrator",
        "pw-slow-target-4471",
        &["-method-delay", "CreateFolder:4000"],
    )
    .unwrap();
    Inventory::target().create_in(&target).unwrap();
    let proxy = FlakyProxy::in_front_of(&target).unwrap();
    let vmi = support::step_vmi_with(
        &cluster,
        &client,
        Some(MigrationPath::Native),
        &[Step::CreateFolder],
        |vmi| {
            vmi["spec"]["vcenters"][0]["server"] = target.server.clone().into();
            vmi["spec"]["vcenters"][0]["port"] = proxy.port.into();
            vmi["spec"]["vcenters"][0]["tls"] =
                serde_json::json!({"thumbprint": target.thumbprint_sha256});
            vmi["spec"]["failureDomains"][0]["server"] = target.server.clone().into();
        },
    )
    .await;
    Api::<Secret>::namespaced(client.clone(), &vmi.namespace)
        .patch(
            "vcenter-b-credentials",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {
                format!("{}.username", target.server): target.username,
                format!("{}.password", target.server): target.password,
            }})),
        )
        .await
        .unwrap();
    let folders = || {
        target
            .govc(&[
                "find",
                "/datacenter-b/vm",
                "-type",
                "f",
                "-name",
                "ocp-x7k2p",
            ])
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };

    // Every answer slower than 2 s is cut during the first run, not just
    // the first one: CreateFolder (4 s) is always among them, and a read
    // that a loaded machine makes slow is cut too and read again.
    proxy.set(Behaviour::ResetSlowAnswers {
        after: Duration::from_secs(2),
        count: u32::MAX,
    });
    let started = Instant::now();
    let err = run_step_06(&cluster, &vmi).await.unwrap_err();
    proxy.set(Behaviour::Pass);
    let first_ms = started.elapsed().as_millis();
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "vCenter {}: CreateFolder on Folder:",
            target.server
        )) && message.contains("outcome is unknown"),
        "{message}"
    );
    assert!(proxy.stats().resets >= 1, "{:?}", proxy.stats());
    println!("first run ({first_ms} ms) failed: {message}");

    // vCenter finishes the folder after its 4 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    while folders().is_empty() {
        assert!(Instant::now() < deadline, "vcsim never made the folder");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let started = Instant::now();
    run_step_06(&cluster, &vmi).await.unwrap();
    let second_ms = started.elapsed().as_millis();
    let entry = support::step_status(&client, &vmi, Step::CreateFolder).await;
    assert!(
        entry
            .result
            .as_deref()
            .unwrap_or_default()
            .ends_with("nothing changed"),
        "{entry:?}"
    );
    assert_eq!(folders().len(), 1, "one folder: {:?}", folders());
    println!(
        "second run ({second_ms} ms): {:?}; proxy {:?}",
        entry.result,
        proxy.stats()
    );

    async fn run_step_06(
        cluster: &SimCluster,
        vmi: &vmi_step_runner::target::VmiRef,
    ) -> Result<(), vmi_step_runner::RunError> {
        support::run_step(cluster, vmi, Action::Step(Step::CreateFolder)).await
    }
}

/// Step 13 registers a copied disk file as a First Class Disk. When the
/// answer to RegisterDisk is lost, vCenter may have registered it, and a
/// second RegisterDisk is refused (vcsim: InvalidArgument, vCenter:
/// AlreadyExists): either way the disk is found by its file, instead of
/// the step failing for ever.
#[tokio::test(flavor = "current_thread")]
async fn a_registration_whose_answer_is_cut_is_found_by_its_file() {
    use vmi_step_runner::volumes::register::register;

    let sim = simulator("cut-register", "pw-cut-register");
    let proxy = FlakyProxy::in_front_of(&sim).unwrap();
    let vcenter = connect_via(&proxy, &sim, short_limits()).await.unwrap();
    let datastore = support::lookup(&vcenter, "/datacenter-a/datastore/datastore-a").await;
    let copied = file("vmi/cut-register.vmdk");
    support::upload_pattern(&vcenter, &copied, 64 * 1024, 0x9e37_79b9).await;

    proxy.set(Behaviour::ResetAfter {
        direction: Direction::ToClient,
        bytes: 0,
        count: 1,
    });
    // The answer is lost (the outcome unknown): the disk is looked for by
    // its file at once, and found.
    let found = register(&vcenter, &datastore, &copied, "pvc-cut", "")
        .await
        .unwrap();
    assert_eq!(proxy.stats().resets, 1, "the answer was cut");
    assert_eq!(found.file_path, "[datastore-a] vmi/cut-register.vmdk");
    // A run after (nothing recorded): RegisterDisk is refused, the disk found.
    let again = register(&vcenter, &datastore, &copied, "pvc-cut", "")
        .await
        .unwrap();
    assert_eq!(again.id, found.id);
    assert_eq!(
        vcenter.list_disks(&datastore).await.unwrap(),
        vec![found.id.clone()],
        "one disk for the file"
    );
}
