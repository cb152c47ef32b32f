//! Step 08 update-cloud-config on the seeded cluster: the INI with
//! `[Workspace]` becomes YAML with the target vCenter and the zone labels in
//! exactly one write, a YAML config stays YAML, a second run writes
//! nothing, conflicting labels are refused unchanged, and the undo writes
//! the original text back byte for byte.

mod support;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use support::{run_step, step_status, step_vmi};
use vmi_api::Step;
use vmi_api::migration::MigrationPath;
use vmi_sim::seed::{SeedOptions, SimCluster};
use vmi_step_runner::Action;
use vmi_step_runner::cloud_config::{CloudConfig, Format};

async fn config(client: &kube::Client) -> String {
    Api::<ConfigMap>::namespaced(client.clone(), "openshift-config")
        .get("cloud-provider-config")
        .await
        .unwrap()
        .data
        .unwrap()["config"]
        .clone()
}

async fn set_config(client: &kube::Client, text: &str) {
    Api::<ConfigMap>::namespaced(client.clone(), "openshift-config")
        .patch(
            "cloud-provider-config",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {"config": text}})),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ini_becomes_yaml_in_one_edit_and_yaml_stays_yaml() {
    let cluster = SimCluster::start(SeedOptions::default()).await.unwrap();
    let client = cluster.client().await.unwrap();
    let edits = vmi_sim::disruption::CloudConfigRollouts::start(client.clone());
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let target = &cluster.target;
    let original = config(&client).await;
    assert!(original.contains("[Workspace]"));

    let vmi = step_vmi(
        &cluster,
        &client,
        Some(MigrationPath::Native),
        &[Step::UpdateCloudConfig],
    )
    .await;
    run_step(&cluster, &vmi, Action::Step(Step::UpdateCloudConfig))
        .await
        .unwrap();
    let edited = config(&client).await;
    let parsed = CloudConfig::parse(&edited).unwrap();
    assert_eq!(parsed.format(), Format::Yaml);
    let servers: Vec<String> = parsed.vcenters().into_iter().map(|v| v.server).collect();
    assert_eq!(
        servers,
        [cluster.source.server.clone(), target.server.clone()]
    );
    let added = parsed.vcenter(&target.server).unwrap();
    assert_eq!(added.port, Some(target.port));
    assert_eq!(added.datacenters, ["datacenter-b"]);
    assert!(parsed.zone_labels(), "two failure domains turn zoning on");
    assert_eq!(
        parsed.global().secret_name.as_deref(),
        Some("vsphere-creds")
    );
    let entry = step_status(&client, &vmi, Step::UpdateCloudConfig).await;
    assert_eq!(entry.changes.len(), 3, "{:?}", entry.changes);
    assert!(
        entry.changes[0].contains("converted from INI to YAML"),
        "{:?}",
        entry.changes
    );

    run_step(&cluster, &vmi, Action::Step(Step::UpdateCloudConfig))
        .await
        .unwrap();
    assert_eq!(config(&client).await, edited);
    assert!(
        step_status(&client, &vmi, Step::UpdateCloudConfig)
            .await
            .result
            .unwrap()
            .ends_with("nothing changed")
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(edits.count(), 1, "exactly one edit");

    run_step(&cluster, &vmi, Action::Undo(Step::UpdateCloudConfig))
        .await
        .unwrap();
    assert_eq!(
        config(&client).await,
        original,
        "the original text, byte for byte"
    );
    run_step(&cluster, &vmi, Action::Undo(Step::UpdateCloudConfig))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        edits.count(),
        2,
        "the undo is one more edit, its repeat none"
    );

    // A YAML config stays YAML; only the target entry and labels are added.
    let yaml = format!(
        "global:\n  secretName: vsphere-creds\n  secretNamespace: kube-system\n  insecureFlag: true\nvcenter:\n  {s}:\n    server: {s}\n    port: {p}\n    datacenters:\n    - datacenter-a\n",
        s = cluster.source.server,
        p = cluster.source.port
    );
    set_config(&client, &yaml).await;
    let vmi2 = step_vmi(
        &cluster,
        &client,
        Some(MigrationPath::Native),
        &[Step::UpdateCloudConfig],
    )
    .await;
    run_step(&cluster, &vmi2, Action::Step(Step::UpdateCloudConfig))
        .await
        .unwrap();
    let parsed = CloudConfig::parse(&config(&client).await).unwrap();
    assert_eq!(parsed.format(), Format::Yaml);
    assert_eq!(parsed.vcenters().len(), 2);
    assert!(parsed.zone_labels());
    let entry = step_status(&client, &vmi2, Step::UpdateCloudConfig).await;
    assert!(
        !entry.changes.iter().any(|c| c.contains("converted")),
        "{:?}",
        entry.changes
    );
    run_step(&cluster, &vmi2, Action::Undo(Step::UpdateCloudConfig))
        .await
        .unwrap();
    assert_eq!(config(&client).await, yaml);

    // Labels pointing at other categories: refused, nothing written.
    let conflicting = format!("{yaml}labels:\n  region: k8s-region\n  zone: k8s-zone\n");
    set_config(&client, &conflicting).await;
    let vmi3 = step_vmi(
        &cluster,
        &client,
        Some(MigrationPath::Native),
        &[Step::UpdateCloudConfig],
    )
    .await;
    let err = run_step(&cluster, &vmi3, Action::Step(Step::UpdateCloudConfig))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("k8s-region"), "{err}");
    assert!(err.ends_with("nothing was changed"), "{err}");
    assert_eq!(config(&client).await, conflicting);
}
