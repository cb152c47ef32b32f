//! The two vCenter simulators are real enough: they refuse wrong passwords,
//! answer SOAP and vAPI REST (tagging), differ by instance UUID, serve the
//! certificate whose thumbprint the harness reports, and hold IPI-shaped
//! inventories.

use vmi_sim::inventory::Inventory;
use vmi_sim::vcsim::VCenterSim;

fn about(vcenter: &VCenterSim) -> serde_json::Value {
    serde_json::from_str(&vcenter.govc(&["about", "-json"]).unwrap()).unwrap()
}

#[test]
fn two_vcenters_with_their_own_credentials_uuids_and_certificates() {
    let source = VCenterSim::start("source", "administrator", "source-secret-1").unwrap();
    let target = VCenterSim::start("target", "migrator", "target-secret-2").unwrap();
    assert_ne!(
        source.server, target.server,
        "two vCenters need two server names"
    );
    assert!(
        source.port <= 32767 && target.port <= 32767,
        "the Infrastructure CRD allows ports up to 32767"
    );

    // SOAP: login with the right credentials over verified TLS; the instance UUIDs differ.
    let (a, b) = (about(&source), about(&target));
    let uuid = |v: &serde_json::Value| v["about"]["instanceUuid"].as_str().unwrap().to_owned();
    assert_ne!(uuid(&a), uuid(&b));
    assert_eq!(a["about"]["apiType"], "VirtualCenter");

    // A wrong password is refused.
    // (`about` needs no session; `ls` logs in.)
    source.govc(&["ls", "/"]).unwrap();
    let refused = source
        .govc_as(&source.username, "not-the-password", &["ls", "/"])
        .unwrap_err()
        .to_string();
    assert!(refused.contains("Login failure"), "{refused}");

    // The other vCenter's credentials do not work either.
    assert!(
        source
            .govc_as(&target.username, &target.password, &["ls", "/"])
            .is_err()
    );

    // The served certificate is the one whose thumbprint the harness reports.
    let served = source.govc(&["about.cert", "-thumbprint"]).unwrap();
    assert!(
        served.contains(&source.thumbprint_sha1) || served.contains(&source.thumbprint_sha256),
        "{served} vs {}",
        source.thumbprint_sha1
    );

    // vAPI REST: tagging works.
    source
        .govc(&[
            "tags.category.create",
            "-t",
            "Datacenter",
            "openshift-region",
        ])
        .unwrap();
    let categories = source.govc(&["tags.category.ls"]).unwrap();
    assert!(
        categories.lines().any(|l| l == "openshift-region"),
        "{categories}"
    );
    assert!(
        !target
            .govc(&["tags.category.ls"])
            .unwrap()
            .contains("openshift-region"),
        "the simulators share nothing"
    );
}

#[test]
fn ipi_shaped_inventories() {
    let source = VCenterSim::start("source", "administrator", "s3cret-a").unwrap();
    let target = VCenterSim::start("target", "migrator", "s3cret-b").unwrap();
    let (a, b) = (Inventory::source("ocp-x7k2p"), Inventory::target());
    a.create_in(&source).unwrap();
    b.create_in(&target).unwrap();

    let listed = source.govc(&["find", "/", "-type", "m"]).unwrap();
    assert_eq!(
        listed.trim(),
        "/datacenter-a/vm/ocp-x7k2p/ocp-x7k2p-rhcos-generated-region-generated-zone"
    );
    for path in [
        a.cluster_path(),
        a.datastore_path(),
        a.network_path(),
        a.folder_path(),
        a.resource_pool_path(),
    ] {
        assert!(
            !source.govc(&["ls", "-i", &path]).unwrap().trim().is_empty(),
            "{path} exists on the source"
        );
    }
    let template: serde_json::Value = serde_json::from_str(
        &source
            .govc(&["vm.info", "-json", &a.template_path()])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(template["virtualMachines"][0]["config"]["template"], true);

    assert!(
        target
            .govc(&["ls", "/datacenter-b/vm"])
            .unwrap()
            .lines()
            .all(|l| !l.ends_with("/ocp-x7k2p")),
        "no folder yet on the target"
    );
    assert!(
        target
            .govc(&["ls", &b.template_path()])
            .unwrap()
            .contains("rhcos-template-b")
    );
    assert!(
        source
            .govc(&["ls", "/datacenter-b"])
            .unwrap()
            .trim()
            .is_empty(),
        "the target's names are not on the source"
    );
}
