//! The vCenter client against the simulated vCenters: sessions, TLS trust,
//! faults, and logs that never carry a secret.

mod support;

use support::{Captured, connect, helper_placement, simulator};
use vmi_sim::inventory::Inventory;
use vmi_sim::vcsim::VCenterSim;
use vmi_step_runner::vsphere::{Credentials, ErrorKind, Trust};

#[tokio::test(flavor = "current_thread")]
async fn logs_in_with_a_ca_bundle_and_reads_about() {
    let sim = simulator("ca", "pw-ca-1");
    let vcenter = connect(&sim, Trust::CaBundle(sim.ca_pem.clone()), "pw-ca-1")
        .await
        .unwrap();
    let govc: serde_json::Value =
        serde_json::from_str(&sim.govc(&["about", "-json"]).unwrap()).unwrap();
    assert_eq!(
        vcenter.about().instance_uuid,
        govc["about"]["instanceUuid"].as_str().unwrap()
    );
    assert_eq!(vcenter.about().api_type, "VirtualCenter");
    assert_eq!(vcenter.root_folder().kind, "Folder");
}

#[tokio::test(flavor = "current_thread")]
async fn a_wrong_password_is_an_invalid_login_naming_the_vcenter() {
    let sim = simulator("wrong-pw", "pw-right");
    let err = connect(&sim, Trust::CaBundle(sim.ca_pem.clone()), "pw-wrong")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidLogin);
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("vCenter {}: Login on SessionManager:", sim.server)),
        "{message}"
    );
    assert!(
        message.contains("credentials Secret"),
        "says what to check: {message}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn certificates_are_trusted_only_as_configured() {
    let sim = simulator("tls", "pw-tls");
    let other = VCenterSim::start("other", "administrator", "pw-other").unwrap();

    for pin in [&sim.thumbprint_sha1, &sim.thumbprint_sha256] {
        connect(&sim, Trust::Thumbprint(pin.clone()), "pw-tls")
            .await
            .expect("the pinned certificate is trusted");
    }
    let lower = sim.thumbprint_sha256.to_lowercase();
    connect(&sim, Trust::Thumbprint(lower), "pw-tls")
        .await
        .expect("thumbprints compare without regard to case");

    let mismatch = connect(
        &sim,
        Trust::Thumbprint(other.thumbprint_sha256.clone()),
        "pw-tls",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&mismatch.kind, ErrorKind::Tls(reason) if reason.contains("does not match the pinned thumbprint")),
        "{mismatch}"
    );

    let wrong_ca = connect(&sim, Trust::CaBundle(other.ca_pem.clone()), "pw-tls")
        .await
        .unwrap_err();
    assert!(matches!(wrong_ca.kind, ErrorKind::Tls(_)), "{wrong_ca}");
    let system = connect(&sim, Trust::SystemRoots, "pw-tls")
        .await
        .unwrap_err();
    assert!(
        matches!(system.kind, ErrorKind::Tls(_)),
        "a private CA is not in the system store: {system}"
    );

    let logs = Captured::default();
    let _guard = logs.install();
    connect(&sim, Trust::Insecure, "pw-tls")
        .await
        .expect("insecure connects");
    assert!(
        logs.text().contains("TLS certificate verification is OFF"),
        "insecure is loud: {}",
        logs.text()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn inventory_paths_and_folders() {
    let sim = simulator("folders", "pw-folders");
    let vcenter = connect(&sim, Trust::CaBundle(sim.ca_pem.clone()), "pw-folders")
        .await
        .unwrap();
    let vm_folder = vcenter
        .find_by_inventory_path("/datacenter-a/vm")
        .await
        .unwrap()
        .expect("the VM folder exists");
    assert_eq!(vm_folder.kind, "Folder");
    assert_eq!(
        vcenter
            .find_by_inventory_path("/datacenter-a/vm/missing")
            .await
            .unwrap(),
        None
    );

    let created = vcenter.create_folder(&vm_folder, "ocp-new").await.unwrap();
    assert_eq!(
        vcenter
            .find_by_inventory_path("/datacenter-a/vm/ocp-new")
            .await
            .unwrap(),
        Some(created.clone())
    );
    let duplicate = vcenter
        .create_folder(&vm_folder, "ocp-new")
        .await
        .unwrap_err();
    assert!(
        matches!(&duplicate.kind, ErrorKind::DuplicateName { existing: Some(e) } if *e == created.to_string()),
        "{duplicate}"
    );
    assert!(
        duplicate
            .to_string()
            .contains(&format!("CreateFolder on {vm_folder}")),
        "{duplicate}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn an_ended_session_is_renewed_once_transparently() {
    let sim = simulator("relogin", "pw-relogin");
    let logs = Captured::default();
    let _guard = logs.install();
    let vcenter = connect(&sim, Trust::CaBundle(sim.ca_pem.clone()), "pw-relogin")
        .await
        .unwrap();
    vcenter.logout().await.unwrap();
    let found = vcenter
        .find_by_inventory_path("/datacenter-a")
        .await
        .unwrap();
    assert!(found.is_some());
    let text = logs.text();
    assert!(text.contains("session expired; logging in again"), "{text}");
    assert_eq!(
        text.matches("logged in").count(),
        2,
        "one login, one re-login: {text}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn no_password_or_session_cookie_reaches_the_logs() {
    let password = "Pa55<w0rd>&\"unique-7781\"";
    let sim = simulator("redaction", password);
    let logs = Captured::default();
    let _guard = logs.install();
    let vcenter = connect(&sim, Trust::CaBundle(sim.ca_pem.clone()), password)
        .await
        .unwrap();
    vcenter
        .find_by_inventory_path("/datacenter-a/vm")
        .await
        .unwrap();
    vcenter.logout().await.unwrap();
    vcenter
        .find_by_inventory_path("/datacenter-a")
        .await
        .unwrap(); // re-login: a second cookie
    let _ = connect(
        &sim,
        Trust::CaBundle(sim.ca_pem.clone()),
        "wrong-but-secret-9931",
    )
    .await;
    let text = logs.text();
    assert!(
        text.contains("vCenter call bodies"),
        "debug bodies were logged: {text}"
    );
    assert!(text.contains("<password>[redacted]</password>"), "{text}");
    for secret in [
        password,
        "Pa55&lt;w0rd&gt;",
        "unique-7781",
        "wrong-but-secret-9931",
    ] {
        assert!(!text.contains(secret), "{secret:?} leaked into the logs");
    }
    let cookie_values: Vec<&str> = text
        .match_indices("vmware_soap_session")
        .map(|(i, _)| &text[i..(i + 60).min(text.len())])
        .collect();
    assert!(
        cookie_values
            .iter()
            .all(|c| !c.contains('=') || c.contains("[redacted]")),
        "{cookie_values:?}"
    );
    assert!(
        !format!("{:?}", Credentials::new("u", password)).contains("unique-7781"),
        "Debug hides the password"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn properties_are_read_page_by_page() {
    let sim = simulator("pages", "pw-pages");
    let vcenter = connect(&sim, Trust::CaBundle(sim.ca_pem.clone()), "pw-pages")
        .await
        .unwrap();
    let datacenter = vcenter
        .find_by_inventory_path("/datacenter-a")
        .await
        .unwrap()
        .unwrap();
    let content = vcenter
        .properties(&datacenter, &["name", "vmFolder"])
        .await
        .unwrap();
    assert_eq!(content.text("name"), Some("datacenter-a"));
    let vm_folder = content.moref("vmFolder").unwrap();

    // 250 folders: more than two pages of 100.
    let parent = vcenter.create_folder(&vm_folder, "paging").await.unwrap();
    for i in 0..250 {
        vcenter
            .create_folder(&parent, &format!("f-{i:03}"))
            .await
            .unwrap();
    }
    let found = vcenter
        .objects_below(&parent, "Folder", &["name"])
        .await
        .unwrap();
    let mut names: Vec<&str> = found.iter().filter_map(|o| o.text("name")).collect();
    names.sort();
    assert_eq!(names.len(), 250, "every page was read");
    assert_eq!((names[0], names[249]), ("f-000", "f-249"));
}

#[tokio::test(flavor = "current_thread")]
async fn vm_tasks_succeed_fail_and_are_verified() {
    use vmi_step_runner::vsphere::vm::NewVm;
    let sim = simulator("tasks", "pw-tasks");
    let vcenter = connect(&sim, Trust::CaBundle(sim.ca_pem.clone()), "pw-tasks")
        .await
        .unwrap();
    let (folder, pool) = helper_placement(&vcenter).await;
    let vm = vcenter
        .create_vm(&NewVm {
            name: "vmi-helper-1",
            folder: &folder,
            pool: &pool,
            datastore: "datastore-a",
            cpus: 1,
            memory_mib: 128,
        })
        .await
        .unwrap();
    assert_eq!(vm.kind, "VirtualMachine");
    assert_eq!(
        vcenter
            .find_by_inventory_path("/datacenter-a/vm/ocp-x7k2p/vmi-helper-1")
            .await
            .unwrap(),
        Some(vm.clone())
    );

    // A task that fails reports its fault and the object, not success.
    let missing = vcenter
        .attach_existing_disk(&vm, "[datastore-a] nowhere/missing.vmdk", 1)
        .await
        .unwrap_err();
    assert!(
        matches!(&missing.kind, ErrorKind::Fault { fault, .. } if fault.contains("FileNotFound")),
        "{missing}"
    );
    assert!(missing.to_string().contains("ReconfigVM_Task"), "{missing}");
    assert!(
        vcenter.disk_files(&vm).await.unwrap().is_empty(),
        "nothing was attached"
    );

    vcenter.power_off(&vm).await.unwrap();
    vcenter
        .power_off(&vm)
        .await
        .expect("powering off a VM that is off changes nothing");
    vcenter.destroy(&vm).await.unwrap();
    assert_eq!(
        vcenter
            .find_by_inventory_path("/datacenter-a/vm/ocp-x7k2p/vmi-helper-1")
            .await
            .unwrap(),
        None
    );
    let gone = vcenter.destroy(&vm).await.unwrap_err();
    assert_eq!(gone.kind, ErrorKind::ManagedObjectNotFound, "{gone}");
}

#[tokio::test(flavor = "current_thread")]
async fn region_and_zone_tags_over_the_vapi() {
    use vmi_step_runner::vsphere::tagging::{Cardinality, Flavor};
    let sim = simulator("tags", "pw-tags-5531");
    let logs = Captured::default();
    let _guard = logs.install();
    let vcenter = connect(&sim, Trust::CaBundle(sim.ca_pem.clone()), "pw-tags-5531")
        .await
        .unwrap();
    let tagging = vcenter.tagging().await.unwrap();
    assert_eq!(
        tagging.flavor(),
        Flavor::Rest,
        "vcsim serves only /rest; /api was probed first"
    );

    assert_eq!(
        tagging.find_category("openshift-region").await.unwrap(),
        None
    );
    let region = tagging
        .create_category("openshift-region", Cardinality::Single, &["Datacenter"])
        .await
        .unwrap();
    let found = tagging
        .find_category("openshift-region")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.id.as_str(), found.cardinality.as_str()),
        (region.as_str(), "SINGLE")
    );
    assert_eq!(found.associable_types, ["Datacenter"]);
    let again = tagging
        .create_category("openshift-region", Cardinality::Single, &["Datacenter"])
        .await
        .unwrap_err();
    assert!(
        matches!(again.kind, ErrorKind::DuplicateName { .. }),
        "{again}"
    );

    let tag = tagging.create_tag(&region, "us-east").await.unwrap();
    let tags = tagging.tags_in(&region).await.unwrap();
    assert_eq!(
        tags.iter()
            .map(|t| (t.id.as_str(), t.name.as_str()))
            .collect::<Vec<_>>(),
        [(tag.as_str(), "us-east")]
    );

    let datacenter = vcenter
        .find_by_inventory_path("/datacenter-a")
        .await
        .unwrap()
        .unwrap();
    assert!(tagging.attached_tags(&datacenter).await.unwrap().is_empty());
    tagging.attach(&tag, &datacenter).await.unwrap();
    assert_eq!(tagging.attached_tags(&datacenter).await.unwrap(), vec![tag]);
    // govc, a second client, sees the same attachment.
    assert!(
        sim.govc(&["tags.attached.ls", "-r", "/datacenter-a"])
            .unwrap()
            .contains("us-east")
    );

    let text = logs.text();
    assert!(text.contains("vAPI call"), "{text}");
    assert!(!text.contains("pw-tags-5531"), "the password leaked");
}

#[tokio::test(flavor = "current_thread")]
async fn privileges_are_asked_for_the_user_on_an_entity() {
    let sim = simulator("privileges", "pw-priv");
    let vcenter = connect(&sim, Trust::CaBundle(sim.ca_pem.clone()), "pw-priv")
        .await
        .unwrap();
    let folder = vcenter
        .find_by_inventory_path("/datacenter-a/vm")
        .await
        .unwrap()
        .unwrap();
    // vcsim grants every privilege; the request must still be one it understands.
    let missing = vcenter
        .missing_privileges(
            &folder,
            &sim.username,
            &["Folder.Create", "VirtualMachine.Inventory.Create"],
        )
        .await
        .unwrap();
    assert!(missing.is_empty(), "{missing:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_slow_task_is_reported_stuck_and_unregister_keeps_nothing_in_the_inventory() {
    use std::time::Duration;
    use vmi_step_runner::vsphere::vm::NewVm;
    // vcsim finishes CreateVM_Task tasks (info.name CreateVm) after 2 s,
    // without locking the folder meanwhile.
    let sim = VCenterSim::start_with(
        "slow",
        "administrator",
        "pw-slow",
        &["-method-delay", "CreateVm:2000,LockHandoff:0"],
    )
    .unwrap();
    Inventory::source("ocp-x7k2p").create_in(&sim).unwrap();
    let mut vcenter = connect(&sim, Trust::CaBundle(sim.ca_pem.clone()), "pw-slow")
        .await
        .unwrap();
    let (folder, pool) = helper_placement(&vcenter).await;
    let new_vm = |name| NewVm {
        name,
        folder: &folder,
        pool: &pool,
        datastore: "datastore-a",
        cpus: 1,
        memory_mib: 128,
    };
    vcenter.set_task_limit(Duration::from_millis(500));
    let stuck = vcenter.create_vm(&new_vm("vmi-slow")).await.unwrap_err();
    assert!(
        matches!(stuck.kind, ErrorKind::TaskTimeout { .. }),
        "a task still running is never success: {stuck}"
    );
    let message = stuck.to_string();
    assert!(
        message.contains("CreateVM_Task") && message.contains(&sim.server),
        "{message}"
    );

    vcenter.set_task_limit(vmi_step_runner::vsphere::DEFAULT_TASK_LIMIT);
    let vm = vcenter.create_vm(&new_vm("vmi-unregister")).await.unwrap();
    vcenter.unregister(&vm).await.unwrap();
    assert_eq!(
        vcenter
            .find_by_inventory_path("/datacenter-a/vm/ocp-x7k2p/vmi-unregister")
            .await
            .unwrap(),
        None
    );
    let again = vcenter.unregister(&vm).await.unwrap_err();
    assert_eq!(again.kind, ErrorKind::ManagedObjectNotFound, "{again}");
}

/// The sessions the vCenter holds, as its SessionManager lists them.
async fn session_count(observer: &vmi_step_runner::vsphere::VCenter) -> usize {
    let manager = vmi_step_runner::vsphere::MoRef::new("SessionManager", "SessionManager");
    observer
        .properties(&manager, &["sessionList"])
        .await
        .unwrap()
        .get("sessionList")
        .map(|list| list.children.len())
        .unwrap_or(0)
}

#[tokio::test(flavor = "current_thread")]
async fn a_dropped_connection_logs_out_and_keep_alive_outlasts_the_idle_timeout() {
    let sim = simulator("sessions", "pw-sessions");
    let observer = connect(&sim, Trust::CaBundle(sim.ca_pem.clone()), "pw-sessions")
        .await
        .unwrap();
    assert_eq!(session_count(&observer).await, 1);
    let dropped = connect(&sim, Trust::CaBundle(sim.ca_pem.clone()), "pw-sessions")
        .await
        .unwrap();
    assert_eq!(session_count(&observer).await, 2);
    drop(dropped);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while session_count(&observer).await != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the dropped connection's session is still there"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Sessions idle for 1 s end (vCenter's default is 30 min).
    sim.govc(&["option.set", "config.vmacore.soap.sessionTimeout", "1s"])
        .unwrap();
    let logs = Captured::default();
    let _guard = logs.install();
    let idle = connect(&sim, Trust::CaBundle(sim.ca_pem.clone()), "pw-sessions")
        .await
        .unwrap();
    let kept = std::sync::Arc::new(
        connect(&sim, Trust::CaBundle(sim.ca_pem.clone()), "pw-sessions")
            .await
            .unwrap(),
    );
    let alive = kept.keep_alive(std::time::Duration::from_millis(300));
    tokio::time::sleep(std::time::Duration::from_millis(2600)).await;
    assert!(
        kept.find_by_inventory_path("/datacenter-a")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        idle.find_by_inventory_path("/datacenter-a")
            .await
            .unwrap()
            .is_some()
    );
    drop(alive);
    let text = logs.text();
    assert!(
        text.contains("CurrentTime"),
        "keep-alive calls were made: {text}"
    );
    assert_eq!(
        text.matches("session expired; logging in again").count(),
        1,
        "only the idle connection had to log in again: {text}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn an_ended_vapi_session_is_renewed_once_transparently() {
    let sim = simulator("vapi-relogin", "pw-vapi");
    let vcenter = connect(&sim, Trust::CaBundle(sim.ca_pem.clone()), "pw-vapi")
        .await
        .unwrap();
    let logs = Captured::default();
    let _guard = logs.install();
    let tagging = vcenter.tagging().await.unwrap();
    let before = vcenter.round_trips();
    tagging.logout().await.unwrap();
    assert!(tagging.categories().await.unwrap().is_empty());
    let text = logs.text();
    assert!(
        text.contains("vAPI session expired; logging in again"),
        "{text}"
    );
    assert_eq!(
        vcenter.round_trips() - before,
        4,
        "logout, refused call, login, call again"
    );
}
