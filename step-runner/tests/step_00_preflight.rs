//! Step 00 preflight on the seeded cluster: it chooses the legacy path on
//! OpenShift 4.22's Infrastructure CRD and the native path on the day-2 one,
//! records its findings, reports every problem at once, and changes nothing
//! in the cluster or in either vCenter.

mod support;

use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::json;
use support::{run_step, step_status, step_vmi, step_vmi_with};
use vmi_api::Step;
use vmi_api::migration::{MigrationPath, StepState};
use vmi_sim::crds::InfrastructureCrd;
use vmi_sim::seed::{SeedOptions, SimCluster};
use vmi_step_runner::Action;

/// resourceVersions of what a migration changes, and both vCenters' tags
/// and folders: equal before and after means nothing changed.
async fn fingerprint(cluster: &SimCluster, client: &kube::Client) -> Vec<String> {
    let mut out = Vec::new();
    for (group, version, kind, namespace, name) in [
        (
            "config.openshift.io",
            "v1",
            "Infrastructure",
            None,
            "cluster",
        ),
        (
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            None,
            "infrastructures.config.openshift.io",
        ),
        (
            "apps",
            "v1",
            "Deployment",
            Some("openshift-cluster-version"),
            "cluster-version-operator",
        ),
        (
            "",
            "v1",
            "ConfigMap",
            Some("openshift-config"),
            "cloud-provider-config",
        ),
        ("", "v1", "Secret", Some("kube-system"), "vsphere-creds"),
        (
            "machine.openshift.io",
            "v1",
            "ControlPlaneMachineSet",
            Some("openshift-machine-api"),
            "cluster",
        ),
    ] {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let object = api.get(name).await.unwrap();
        out.push(format!(
            "{kind}/{name}@{}",
            object.metadata.resource_version.unwrap()
        ));
    }
    for sim in [&cluster.source, &cluster.target] {
        out.push(sim.govc(&["tags.category.ls"]).unwrap());
        out.push(sim.govc(&["ls", "/*/vm"]).unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_path_on_422_and_every_problem_reported_at_once() {
    let cluster = SimCluster::start(SeedOptions::default()).await.unwrap();
    let client = cluster.client().await.unwrap();
    let before = fingerprint(&cluster, &client).await;

    let vmi = step_vmi(&cluster, &client, None, &[Step::Preflight]).await;
    run_step(&cluster, &vmi, Action::Step(Step::Preflight))
        .await
        .unwrap();
    let entry = step_status(&client, &vmi, Step::Preflight).await;
    assert!(
        entry
            .result
            .as_deref()
            .unwrap()
            .starts_with("every check passed; migration path Legacy"),
        "{entry:?}"
    );
    let findings = entry.findings.join("\n");
    for expected in [
        "ok: source vCenter",
        "ok: target vCenter",
        "ok: migration path Legacy: a server-side dry run adding",
        "vcenters cannot be added or removed once set",
        "ClusterOperators Available and not Degraded",
        "folder: failure domain target-1: machines go to /datacenter-b/vm/ocp-x7k2p, which step 06 creates when missing",
        "privileges vmi needs on /datacenter-b",
    ] {
        assert!(
            findings.contains(expected),
            "missing {expected:?} in:\n{findings}"
        );
    }
    let api: Api<vmi_api::VSphereMigrationInfra> = Api::namespaced(client.clone(), &vmi.namespace);
    let decision = api
        .get_status(&vmi.name)
        .await
        .unwrap()
        .status
        .unwrap()
        .migration_path
        .unwrap();
    assert_eq!(decision.path, MigrationPath::Legacy);
    assert_eq!(
        fingerprint(&cluster, &client).await,
        before,
        "preflight changed nothing"
    );

    // A degraded operator, a CSI volume not asked to move, a wrong datastore
    // and a missing template: all four in one refusal.
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "config.openshift.io",
        "v1",
        "ClusterOperator",
    ));
    Api::<DynamicObject>::all_with(client.clone(), &resource)
        .patch_status(
            "storage",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [
                {"type": "Available", "status": "True", "lastTransitionTime": "2026-11-21T00:00:00Z"},
                {"type": "Degraded", "status": "True", "lastTransitionTime": "2026-11-21T00:00:00Z", "reason": "VSphereProblem"}]}})),
        )
        .await
        .unwrap();
    let pv: k8s_openapi::api::core::v1::PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": "pvc-0001"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "claimRef": {"namespace": "db", "name": "data"},
            "csi": {"driver": "csi.vsphere.vmware.com", "volumeHandle": "fcd-0001"}},
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::PersistentVolume>::all(client.clone())
        .create(&PostParams::default(), &pv)
        .await
        .unwrap();
    let before = fingerprint(&cluster, &client).await;
    let bad = step_vmi_with(&cluster, &client, None, &[Step::Preflight], |vmi| {
        vmi["spec"]["volumes"]["migrate"] = json!(false);
        vmi["spec"]["failureDomains"][0]["topology"]["datastore"] =
            json!("/datacenter-b/datastore/nope");
        vmi["spec"]["failureDomains"][0]["topology"]["template"] =
            json!("/datacenter-b/vm/missing-template");
    })
    .await;
    let err = run_step(&cluster, &bad, Action::Step(Step::Preflight))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("preflight found 4 problem(s)"), "{err}");
    for expected in [
        "ClusterOperators unhealthy: storage Degraded",
        "PV pvc-0001 (db/data) is a vSphere CSI volume and spec.volumes.migrate is not true",
        "topology.datastore /datacenter-b/datastore/nope does not exist on vCenter",
        "topology.template /datacenter-b/vm/missing-template does not exist on vCenter",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in {err}");
    }
    let entry = step_status(&client, &bad, Step::Preflight).await;
    assert_eq!(
        entry
            .findings
            .iter()
            .filter(|f| f.starts_with("problem: "))
            .count(),
        4
    );
    assert_ne!(entry.state, StepState::Skipped);
    assert_eq!(
        fingerprint(&cluster, &client).await,
        before,
        "a failed preflight changed nothing"
    );

    // The target is the source. The CRD refuses it when spec.source is set;
    // without spec.source preflight must see it.
    let same = step_vmi_with(&cluster, &client, None, &[Step::Preflight], |vmi| {
        vmi["spec"].as_object_mut().unwrap().remove("source");
        let source = json!(cluster.source.server);
        vmi["spec"]["vcenters"][0]["server"] = source.clone();
        vmi["spec"]["failureDomains"][0]["server"] = source;
    })
    .await;
    let err = run_step(&cluster, &same, Action::Step(Step::Preflight))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a migration moves from exactly one source vCenter")
            || err.contains("is the source vCenter"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_path_on_the_day2_crd() {
    let cluster = SimCluster::start(SeedOptions {
        infrastructure_crd: InfrastructureCrd::MultiVCenterDay2,
        ..SeedOptions::default()
    })
    .await
    .unwrap();
    let client = cluster.client().await.unwrap();
    let before = fingerprint(&cluster, &client).await;
    let vmi = step_vmi(&cluster, &client, None, &[Step::Preflight]).await;
    run_step(&cluster, &vmi, Action::Step(Step::Preflight))
        .await
        .unwrap();
    let api: Api<vmi_api::VSphereMigrationInfra> = Api::namespaced(client.clone(), &vmi.namespace);
    let decision = api
        .get_status(&vmi.name)
        .await
        .unwrap()
        .status
        .unwrap()
        .migration_path
        .unwrap();
    assert_eq!(decision.path, MigrationPath::Native, "{decision:?}");
    assert!(decision.reason.contains("was accepted"), "{decision:?}");
    assert_eq!(fingerprint(&cluster, &client).await, before);
}
