//! Storage on the simulated vCenters: datastore files streamed both ways,
//! First Class Disks and CNS volumes, with their failure paths.

mod support;

use support::{connect_trusted, file, lookup, pattern, sha256, simulator};
use vmi_step_runner::vsphere::ErrorKind;
use vmi_step_runner::vsphere::cns::{ContainerCluster, NewVolume};

#[tokio::test(flavor = "current_thread")]
async fn datastore_files_stream_both_ways_with_counts_and_checksums() {
    let sim = simulator("files", "pw-files");
    let vcenter = connect_trusted(&sim).await;
    let bytes = pattern(3 * 1024 * 1024 + 17, 0x2545_f491);
    let target = file("vmi/pv one/disk-1.vmdk");

    let before = vcenter.round_trips();
    let sent = vcenter
        .upload(
            &target,
            std::io::Cursor::new(bytes.clone()),
            bytes.len() as u64,
        )
        .await
        .unwrap();
    assert_eq!(sent.bytes, bytes.len() as u64);
    assert_eq!(sent.sha256, sha256(&bytes));
    assert_eq!(vcenter.round_trips(), before + 1, "one PUT");
    let on_disk = std::fs::read(sim.dir().join("datastore-a/vmi/pv one/disk-1.vmdk")).unwrap();
    assert_eq!(on_disk, bytes, "the datastore holds exactly what was sent");

    assert_eq!(
        vcenter.file_size(&target).await.unwrap(),
        Some(bytes.len() as u64)
    );
    let mut back = Vec::new();
    let received = vcenter.download(&target, &mut back).await.unwrap();
    assert_eq!(received, sent, "same count and checksum both ways");
    assert_eq!(back, bytes);

    // A missing file is an error naming it, not an empty download.
    let missing = file("vmi/none.vmdk");
    assert_eq!(vcenter.file_size(&missing).await.unwrap(), None);
    let err = vcenter
        .download(&missing, &mut Vec::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&err.kind, ErrorKind::Fault { fault, .. } if fault == "FileNotFound"),
        "{err}"
    );
    assert!(
        err.to_string().contains("[datastore-a] vmi/none.vmdk"),
        "{err}"
    );

    // A source shorter than announced fails the upload.
    let short = vcenter
        .upload(
            &file("vmi/short.vmdk"),
            std::io::Cursor::new(vec![1u8; 10]),
            20,
        )
        .await
        .unwrap_err();
    assert!(short.to_string().contains("PUT /folder"), "{short}");
}

#[tokio::test(flavor = "current_thread")]
async fn first_class_disks_are_registered_read_back_and_deleted() {
    let sim = simulator("fcd", "pw-fcd");
    let vcenter = connect_trusted(&sim).await;
    let datastore = lookup(&vcenter, "/datacenter-a/datastore/datastore-a").await;

    let created = vcenter
        .create_disk("pvc-created", &datastore, 16)
        .await
        .unwrap();
    assert_eq!(created.capacity_mb, 16);
    assert_eq!(created.datastore, datastore);
    assert!(
        created.file_path.starts_with("[datastore-a] "),
        "{created:?}"
    );
    assert_eq!(
        vcenter
            .retrieve_disk(&created.id, &datastore)
            .await
            .unwrap(),
        Some(created.clone())
    );

    // A copied disk file becomes a First Class Disk by registering it.
    let copied = file("vmi/copied.vmdk");
    support::upload_pattern(&vcenter, &copied, 64 * 1024, 0x2545_f491).await;
    let registered = vcenter.register_disk(&copied, "pvc-copied").await.unwrap();
    assert_eq!(registered.name, "pvc-copied");
    assert_eq!(registered.file_path, "[datastore-a] vmi/copied.vmdk");
    let mut listed = vcenter.list_disks(&datastore).await.unwrap();
    listed.sort();
    let mut expected = vec![created.id.clone(), registered.id.clone()];
    expected.sort();
    assert_eq!(listed, expected);

    // Registering twice, or a file that is not there, is refused.
    let twice = vcenter
        .register_disk(&copied, "pvc-copied")
        .await
        .unwrap_err();
    assert!(
        matches!(twice.kind, ErrorKind::InvalidArgument { .. }),
        "{twice}"
    );
    let absent = vcenter
        .register_disk(&file("vmi/absent.vmdk"), "x")
        .await
        .unwrap_err();
    assert!(
        matches!(absent.kind, ErrorKind::InvalidArgument { .. }),
        "{absent}"
    );
    assert!(absent.to_string().contains("vmi/absent.vmdk"), "{absent}");

    assert_eq!(
        vcenter
            .retrieve_disk("no-such-id", &datastore)
            .await
            .unwrap(),
        None
    );
    vcenter.delete_disk(&created.id, &datastore).await.unwrap();
    assert_eq!(
        vcenter
            .retrieve_disk(&created.id, &datastore)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test(flavor = "current_thread")]
async fn cns_volumes_are_created_on_an_existing_disk_queried_and_deleted() {
    let sim = simulator("cns", "pw-cns");
    let vcenter = connect_trusted(&sim).await;
    let datastore = lookup(&vcenter, "/datacenter-a/datastore/datastore-a").await;
    let disk = vcenter
        .create_disk("pvc-0a1b", &datastore, 32)
        .await
        .unwrap();
    let cluster = ContainerCluster {
        cluster_id: "ocp-x7k2p".into(),
        vsphere_user: "administrator".into(),
        distribution: "OpenShift".into(),
    };
    let volume = NewVolume {
        name: "pvc-0a1b",
        backing_disk_id: &disk.id,
        datastore: &datastore,
        capacity_mb: 32,
        cluster: &cluster,
    };
    let id = vcenter.cns_create_volume(&volume).await.unwrap();
    assert_eq!(id, disk.id, "the volume id is the disk id");

    let found = vcenter.cns_query_volumes(&[&id]).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].name, "pvc-0a1b");
    assert_eq!(found[0].volume_type, "BLOCK");
    assert_eq!(found[0].capacity_mb, 32);
    assert_eq!(found[0].cluster_id, "ocp-x7k2p");
    assert_eq!(
        found[0].backing_disk_path.as_deref(),
        Some(disk.file_path.as_str())
    );

    // A volume on a disk that does not exist is refused, and says which.
    let unknown = vcenter
        .cns_create_volume(&NewVolume {
            backing_disk_id: "no-such-disk",
            name: "pvc-missing",
            ..volume.clone()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(unknown.kind, ErrorKind::InvalidArgument { .. }),
        "{unknown}"
    );
    assert!(unknown.to_string().contains("pvc-missing"), "{unknown}");

    // Removing the volume from CNS can keep its disk.
    vcenter.cns_delete_volume(&id, false).await.unwrap();
    assert!(vcenter.cns_query_volumes(&[&id]).await.unwrap().is_empty());
    assert!(
        vcenter
            .retrieve_disk(&disk.id, &datastore)
            .await
            .unwrap()
            .is_some(),
        "the disk stays"
    );
    // The task of a delete of an unknown volume succeeds; its volume
    // result carries the fault, and that is what is reported.
    let again = vcenter.cns_delete_volume(&id, false).await.unwrap_err();
    assert!(
        matches!(&again.kind, ErrorKind::Fault { fault, .. } if fault == "NotFound"),
        "{again}"
    );
}
