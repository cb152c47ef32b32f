//! Step 05 create-tags on the seeded cluster: region and zone tags on both
//! vCenters (the generated source failure domain gets its tags too),
//! existing compatible ones reused, incompatible ones refused before any
//! change, and an undo that removes exactly what the step created.

mod support;

use support::{run_step, step_status, step_vmi};
use vmi_api::Step;
use vmi_api::migration::MigrationPath;
use vmi_sim::seed::{SeedOptions, SimCluster, SourceFailureDomains};
use vmi_sim::vcsim::VCenterSim;
use vmi_step_runner::Action;

/// The names of the tags attached to `path`, sorted.
fn attached(sim: &VCenterSim, path: &str) -> Vec<String> {
    let mut names: Vec<String> = sim
        .govc(&["tags.attached.ls", "-r", path])
        .unwrap()
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect();
    names.sort();
    names
}

fn categories(sim: &VCenterSim) -> Vec<String> {
    let mut names: Vec<String> = sim
        .govc(&["tags.category.ls"])
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

/// Every category, tag and attachment of both vCenters.
fn inventory(cluster: &SimCluster) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for sim in [&cluster.source, &cluster.target] {
        out.push(categories(sim));
        // vcsim lists tags in no fixed order.
        let mut tags: Vec<String> = sim
            .govc(&["tags.ls"])
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        tags.sort();
        out.push(tags);
    }
    out.push(attached(&cluster.source, "/datacenter-a"));
    out.push(attached(&cluster.source, "/datacenter-a/host/cluster-a"));
    out.push(attached(&cluster.target, "/datacenter-b"));
    out.push(attached(&cluster.target, "/datacenter-b/host/cluster-b"));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_source_gets_tags_on_both_vcenters_and_undo_removes_them() {
    let cluster = SimCluster::start(SeedOptions::default()).await.unwrap();
    let client = cluster.client().await.unwrap();
    let vmi = step_vmi(
        &cluster,
        &client,
        Some(MigrationPath::Native),
        &[Step::CreateTags],
    )
    .await;
    let before = inventory(&cluster);

    run_step(&cluster, &vmi, Action::Step(Step::CreateTags))
        .await
        .unwrap();
    assert_eq!(
        attached(&cluster.source, "/datacenter-a"),
        ["generated-region"]
    );
    assert_eq!(
        attached(&cluster.source, "/datacenter-a/host/cluster-a"),
        ["generated-zone"]
    );
    assert_eq!(attached(&cluster.target, "/datacenter-b"), ["region-b"]);
    assert_eq!(
        attached(&cluster.target, "/datacenter-b/host/cluster-b"),
        ["zone-b"]
    );
    let entry = step_status(&client, &vmi, Step::CreateTags).await;
    // Two categories, two tags and two attachments on each vCenter, and on
    // the target the cluster's own category and tag for its VMs.
    assert_eq!(entry.changes.len(), 14, "{:?}", entry.changes);
    assert_eq!(
        cluster
            .target
            .govc(&["tags.ls", "-c", "openshift-ocp-x7k2p"])
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["ocp-x7k2p", "openshift-ocp-x7k2p"],
        "tag ocp-x7k2p in category openshift-ocp-x7k2p"
    );
    assert_eq!(entry.backups.len(), 1);
    let after = inventory(&cluster);

    run_step(&cluster, &vmi, Action::Step(Step::CreateTags))
        .await
        .unwrap();
    assert_eq!(inventory(&cluster), after);
    let entry = step_status(&client, &vmi, Step::CreateTags).await;
    assert!(entry.result.unwrap().ends_with("nothing changed"));
    assert!(entry.changes.is_empty());

    run_step(&cluster, &vmi, Action::Undo(Step::CreateTags))
        .await
        .unwrap();
    assert_eq!(inventory(&cluster), before);
    run_step(&cluster, &vmi, Action::Undo(Step::CreateTags))
        .await
        .unwrap();
    assert_eq!(inventory(&cluster), before, "a second undo changes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_tags_are_reused_and_incompatible_ones_refused() {
    let cluster = SimCluster::start(SeedOptions {
        failure_domains: SourceFailureDomains::Explicit,
        ..SeedOptions::default()
    })
    .await
    .unwrap();
    let client = cluster.client().await.unwrap();
    let vmi = step_vmi(
        &cluster,
        &client,
        Some(MigrationPath::Native),
        &[Step::CreateTags],
    )
    .await;
    let target = &cluster.target;

    // The target's zone category cannot be attached to clusters, and its
    // datacenter already carries another region: both reported, nothing created.
    target
        .govc(&["tags.category.create", "-t", "Datacenter", "openshift-zone"])
        .unwrap();
    target
        .govc(&[
            "tags.category.create",
            "-t",
            "Datacenter",
            "openshift-region",
        ])
        .unwrap();
    target
        .govc(&["tags.create", "-c", "openshift-region", "elsewhere"])
        .unwrap();
    target
        .govc(&[
            "tags.attach",
            "-c",
            "openshift-region",
            "elsewhere",
            "/datacenter-b",
        ])
        .unwrap();
    let before = inventory(&cluster);
    let err = run_step(&cluster, &vmi, Action::Step(Step::CreateTags))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("category openshift-zone may only be attached to Datacenter, not to a ClusterComputeResource"), "{err}");
    assert!(err.contains("/datacenter-b already carries openshift-region tag elsewhere but failure domain target-1 says region-b"), "{err}");
    assert!(err.ends_with("nothing was changed"), "{err}");
    assert_eq!(inventory(&cluster), before);

    // Fixed by the administrator: the source's own tags are reused.
    target
        .govc(&[
            "tags.detach",
            "-c",
            "openshift-region",
            "elsewhere",
            "/datacenter-b",
        ])
        .unwrap();
    target
        .govc(&["tags.rm", "-c", "openshift-region", "elsewhere"])
        .unwrap();
    target
        .govc(&["tags.category.rm", "openshift-zone"])
        .unwrap();
    let source_before = (
        attached(&cluster.source, "/datacenter-a"),
        attached(&cluster.source, "/datacenter-a/host/cluster-a"),
        categories(&cluster.source),
    );
    run_step(&cluster, &vmi, Action::Step(Step::CreateTags))
        .await
        .unwrap();
    assert_eq!(attached(&cluster.source, "/datacenter-a"), ["region-a"]);
    assert_eq!(attached(target, "/datacenter-b/host/cluster-b"), ["zone-b"]);
    let entry = step_status(&client, &vmi, Step::CreateTags).await;
    assert!(
        entry
            .changes
            .iter()
            .all(|c| !c.contains(&cluster.source.server)),
        "nothing created on the source: {:?}",
        entry.changes
    );
    assert!(entry.result.unwrap().contains("reused 2 attachment(s)"));

    // Undo keeps what the administrator made (the source tags, the target's
    // region category).
    run_step(&cluster, &vmi, Action::Undo(Step::CreateTags))
        .await
        .unwrap();
    assert_eq!(
        (
            attached(&cluster.source, "/datacenter-a"),
            attached(&cluster.source, "/datacenter-a/host/cluster-a"),
            categories(&cluster.source),
        ),
        source_before
    );
    assert_eq!(categories(target), ["openshift-region"]);
    assert!(attached(target, "/datacenter-b").is_empty());
}
