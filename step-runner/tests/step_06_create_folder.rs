//! Step 06 create-folder on the seeded cluster and its target vCenter:
//! creates the infrastructure-id folder, reuses it the second time, refuses
//! a non-folder of that name, and its undo removes only what it created
//! while it is empty.

mod support;

use support::{run_step, step_status, step_vmi};
use vmi_api::Step;
use vmi_api::migration::MigrationPath;
use vmi_sim::seed::{SeedOptions, SimCluster};
use vmi_step_runner::Action;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_folder_creates_reuses_refuses_and_undoes() {
    let cluster = SimCluster::start(SeedOptions::default()).await.unwrap();
    let client = cluster.client().await.unwrap();
    let vmi = step_vmi(
        &cluster,
        &client,
        Some(MigrationPath::Native),
        &[Step::CreateFolder],
    )
    .await;
    let folder = "/datacenter-b/vm/ocp-x7k2p";
    // The folder's reference, or "" when there is no folder of that name.
    let exists = |path: &str| {
        let (parent, name) = path.rsplit_once('/').unwrap();
        cluster
            .target
            .govc(&["find", "-i", parent, "-type", "f", "-name", name])
            .map(|out| out.trim().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(exists(folder), "", "no folder before the step");

    run_step(&cluster, &vmi, Action::Step(Step::CreateFolder))
        .await
        .unwrap();
    assert!(
        exists(folder).starts_with("Folder:group-"),
        "{}",
        exists(folder)
    );
    let entry = step_status(&client, &vmi, Step::CreateFolder).await;
    assert_eq!(
        entry.result.as_deref(),
        Some("created 1 folder(s) named ocp-x7k2p")
    );
    assert_eq!(entry.changes.len(), 1);
    assert!(entry.changes[0].contains(folder), "{:?}", entry.changes);

    // Second run: reused, nothing changed, same folder.
    let first = exists(folder);
    run_step(&cluster, &vmi, Action::Step(Step::CreateFolder))
        .await
        .unwrap();
    assert_eq!(exists(folder), first);
    let entry = step_status(&client, &vmi, Step::CreateFolder).await;
    assert!(entry.result.unwrap().ends_with("nothing changed"));
    assert!(entry.changes.is_empty());

    // A VM in the folder keeps the undo from removing it.
    cluster
        .target
        .govc(&[
            "vm.create",
            "-on=false",
            "-folder",
            folder,
            "-ds",
            "datastore-b",
            "-pool",
            "/datacenter-b/host/cluster-b/Resources",
            "-net",
            "/datacenter-b/network/ocp-network-b",
            "occupant",
        ])
        .unwrap();
    run_step(&cluster, &vmi, Action::Undo(Step::CreateFolder))
        .await
        .unwrap();
    assert_eq!(exists(folder), first, "a folder holding a VM is kept");
    cluster
        .target
        .govc(&["vm.destroy", &format!("{folder}/occupant")])
        .unwrap();
    run_step(&cluster, &vmi, Action::Undo(Step::CreateFolder))
        .await
        .unwrap();
    assert_eq!(exists(folder), "", "the empty folder it created is gone");

    // Something else with the folder's name stops the step, changing nothing.
    cluster
        .target
        .govc(&[
            "vm.create",
            "-on=false",
            "-folder",
            "/datacenter-b/vm",
            "-ds",
            "datastore-b",
            "-pool",
            "/datacenter-b/host/cluster-b/Resources",
            "-net",
            "/datacenter-b/network/ocp-network-b",
            "ocp-x7k2p",
        ])
        .unwrap();
    let err = run_step(&cluster, &vmi, Action::Step(Step::CreateFolder))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("is a VirtualMachine"), "{message}");
    assert!(message.contains("rename or remove it"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_are_refused_with_the_key_to_add() {
    use k8s_openapi::api::core::v1::Secret;
    let cluster = SimCluster::start(SeedOptions::default()).await.unwrap();
    let client = cluster.client().await.unwrap();
    let vmi = step_vmi(
        &cluster,
        &client,
        Some(MigrationPath::Native),
        &[Step::CreateFolder],
    )
    .await;
    kube::api::Api::<Secret>::namespaced(client.clone(), &vmi.namespace)
        .delete("vcenter-b-credentials", &Default::default())
        .await
        .unwrap();
    let err = run_step(&cluster, &vmi, Action::Step(Step::CreateFolder))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("{}.password", cluster.target.server)),
        "{err}"
    );
    assert_eq!(
        cluster
            .target
            .govc(&["ls", "/datacenter-b/vm/ocp-x7k2p"])
            .unwrap()
            .trim(),
        "",
        "nothing was created"
    );
}
