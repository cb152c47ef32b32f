//! Cross-vCenter relocation. The simulator ignores the ServiceLocator and
//! moves the VM inside itself, so these tests prove the request that is
//! sent, that a relocate whose arrival cannot be shown is an error that
//! keeps everything, and that the arrival check accepts a VM that did
//! arrive whole.

mod support;

use std::io::Cursor;

use support::{Captured, connect_trusted, helper_placement, lookup, simulator, target_simulator};
use vmi_step_runner::vsphere::datastore::DatastoreFile;
use vmi_step_runner::vsphere::relocate::{
    RelocateSpec, ServiceLocator, relocate_across, verify_relocation,
};
use vmi_step_runner::vsphere::vm::NewVm;
use vmi_step_runner::vsphere::{ErrorKind, MoRef, VCenter};

/// A helper VM on the source with one existing disk attached, as the
/// volume move builds it.
async fn helper_with_disk(vcenter: &VCenter, name: &str) -> (MoRef, String) {
    let (folder, pool) = helper_placement(vcenter).await;
    let vm = vcenter
        .create_vm(&NewVm {
            name,
            folder: &folder,
            pool: &pool,
            datastore: "datastore-a",
            cpus: 1,
            memory_mib: 128,
        })
        .await
        .unwrap();
    let disk = DatastoreFile {
        datacenter: "datacenter-a".into(),
        datastore: "datastore-a".into(),
        path: format!("vmi/{name}.vmdk"),
    };
    vcenter
        .upload(&disk, Cursor::new(vec![7u8; 4096]), 4096)
        .await
        .unwrap();
    vcenter
        .attach_existing_disk(&vm, &disk.datastore_path(), 1)
        .await
        .unwrap();
    (vm, disk.datastore_path())
}

#[tokio::test(flavor = "current_thread")]
async fn a_relocate_whose_arrival_cannot_be_shown_keeps_everything_and_says_where() {
    let target_password = "target-secret-5521";
    let source_sim = simulator("reloc-src", "pw-reloc-src");
    let target_sim = target_simulator("reloc-dst", target_password);
    let logs = Captured::default();
    let _guard = logs.install();
    let source = connect_trusted(&source_sim).await;
    let target = connect_trusted(&target_sim).await;
    let (vm, disk) = helper_with_disk(&source, "vmi-mover-1").await;

    let locator = ServiceLocator::to(&target).unwrap();
    assert_eq!(locator.instance_uuid, target.about().instance_uuid);
    assert_eq!(locator.ssl_thumbprint, target_sim.thumbprint_sha1);
    assert_eq!(locator.url, target_sim.sdk_url());

    // The simulator resolves the spec's objects in the source (a real
    // vCenter resolves them in the target), so source objects are named.
    let (folder, pool) = helper_placement(&source).await;
    let datastore = lookup(&source, "/datacenter-a/datastore/datastore-a").await;
    let spec = RelocateSpec {
        service: Some(&locator),
        folder: &folder,
        datastore: &datastore,
        pool: &pool,
        host: None,
        disks: &[],
    };
    let err = relocate_across(&source, &target, &vm, &spec, "datastore-b")
        .await
        .unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Unverified(_)), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("still on {}", source_sim.server)),
        "{message}"
    );
    assert!(message.contains(&disk), "names the kept disk: {message}");
    assert!(
        message.contains("nothing was detached or deleted"),
        "{message}"
    );

    // Nothing moved or went away.
    assert_eq!(source.disk_files(&vm).await.unwrap(), vec![disk.clone()]);
    let uuid = source.instance_uuid(&vm).await.unwrap();
    assert_eq!(target.find_vm_by_instance_uuid(&uuid).await.unwrap(), None);

    // The request carried the locator, and its password only redacted.
    let text = logs.text();
    let sent = format!(
        "<service><instanceUuid>{}</instanceUuid><url>{}</url><credential xsi:type=\"ServiceLocatorNamePassword\"><username>administrator</username><password>[redacted]</password></credential><sslThumbprint>{}</sslThumbprint></service>",
        target.about().instance_uuid,
        target_sim.sdk_url(),
        target_sim.thumbprint_sha1
    );
    assert!(text.contains(&sent), "request sent: {text}");
    assert!(
        !text.contains(target_password),
        "the target password leaked"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn the_arrival_check_accepts_only_a_vm_that_arrived_whole() {
    let source_sim = simulator("arrive-src", "pw-arrive-src");
    let target_sim = target_simulator("arrive-dst", "pw-arrive-dst");
    let source = connect_trusted(&source_sim).await;
    let target = connect_trusted(&target_sim).await;
    let (vm, disk) = helper_with_disk(&source, "vmi-mover-2").await;
    let uuid = source.instance_uuid(&vm).await.unwrap();
    let before = vec![disk.clone()];

    // What a real relocate leaves on the target: the same VM (same
    // instance UUID) with its disk on the target datastore.
    let folder = lookup(&target, "/datacenter-b/vm").await;
    let pool = lookup(&target, "/datacenter-b/host/cluster-b/Resources").await;
    let arrived = target
        .create_vm(&NewVm {
            name: "vmi-mover-2",
            folder: &folder,
            pool: &pool,
            datastore: "datastore-b",
            cpus: 1,
            memory_mib: 128,
        })
        .await
        .unwrap();
    let task = target
        .call(
            "ReconfigVM_Task",
            &arrived,
            &format!("<spec><instanceUuid>{uuid}</instanceUuid></spec>"),
        )
        .await
        .unwrap();
    target
        .wait_for_task(
            "ReconfigVM_Task",
            &MoRef::from_element(&task).unwrap(),
            target.task_limit(),
        )
        .await
        .unwrap();

    // On both vCenters: not a finished move.
    let both = verify_relocation(&source, &target, &uuid, &before, "datastore-b")
        .await
        .unwrap_err();
    assert!(both.to_string().contains("on both vCenters"), "{both}");

    source.power_off(&vm).await.unwrap();
    source.unregister(&vm).await.unwrap();

    // Arrived without its disk: not a finished move either.
    let diskless = verify_relocation(&source, &target, &uuid, &before, "datastore-b")
        .await
        .unwrap_err();
    assert!(
        diskless.to_string().contains("its disks are []"),
        "{diskless}"
    );

    let moved = DatastoreFile {
        datacenter: "datacenter-b".into(),
        datastore: "datastore-b".into(),
        path: "vmi-mover-2/vmi-mover-2.vmdk".into(),
    };
    target
        .upload(&moved, Cursor::new(vec![7u8; 4096]), 4096)
        .await
        .unwrap();
    target
        .attach_existing_disk(&arrived, &moved.datastore_path(), 1)
        .await
        .unwrap();
    let relocated = verify_relocation(&source, &target, &uuid, &before, "datastore-b")
        .await
        .unwrap();
    assert_eq!(relocated.vm, arrived);
    assert_eq!(relocated.disks, vec![moved.datastore_path()]);

    // A disk on another datastore of the target is not where it belongs.
    let elsewhere = verify_relocation(&source, &target, &uuid, &before, "datastore-c")
        .await
        .unwrap_err();
    assert!(elsewhere.to_string().contains("datastore-c"), "{elsewhere}");
}

#[tokio::test(flavor = "current_thread")]
async fn disks_detach_and_keep_their_files() {
    let sim = simulator("detach", "pw-detach");
    let vcenter = connect_trusted(&sim).await;
    let (vm, disk) = helper_with_disk(&vcenter, "vmi-mover-3").await;
    vcenter.detach_disk(&vm, &disk).await.unwrap();
    assert!(vcenter.disk_files(&vm).await.unwrap().is_empty());
    vcenter
        .detach_disk(&vm, &disk)
        .await
        .expect("a disk already detached is left alone");
    vcenter.destroy(&vm).await.unwrap();
    let file = DatastoreFile::parse("datacenter-a", &disk).unwrap();
    assert_eq!(
        vcenter.file_size(&file).await.unwrap(),
        Some(4096),
        "the detached disk's file outlives its VM"
    );
}
