//! Step 04 update-secrets on the seeded cluster with the credential
//! operator stand-in: only the root secret is edited where the operator
//! keeps the copies, other component secrets directly; a conflicting key
//! stops it before any change; the undo removes exactly what it added.

mod support;

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::{run_step, step_status, step_vmi};
use vmi_api::Step;
use vmi_api::migration::MigrationPath;
use vmi_sim::credential_operator::CredentialOperator;
use vmi_sim::seed::{SeedOptions, SimCluster};
use vmi_step_runner::Action;
use vmi_step_runner::steps::update_secrets::{COMPONENTS, ROOT};

async fn data(client: &kube::Client, (ns, name): (&str, &str)) -> BTreeMap<String, ByteString> {
    Api::<Secret>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap()
        .data
        .unwrap_or_default()
}

async fn all(client: &kube::Client) -> Vec<BTreeMap<String, ByteString>> {
    let mut out = vec![data(client, ROOT).await];
    for component in COMPONENTS {
        out.push(data(client, component).await);
    }
    out
}

async fn wait_until<F: Fn(&[BTreeMap<String, ByteString>]) -> bool>(client: &kube::Client, f: F) {
    for _ in 0..100 {
        if f(&all(client).await) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("condition not reached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_secrets_through_the_credential_operator() {
    let cluster = SimCluster::start(SeedOptions::default()).await.unwrap();
    let client = cluster.client().await.unwrap();
    let _operator = CredentialOperator::start(client.clone());
    let vmi = step_vmi(
        &cluster,
        &client,
        Some(MigrationPath::Native),
        &[Step::UpdateSecrets],
    )
    .await;
    let target = &cluster.target;
    let (user_key, password_key) = (
        format!("{}.username", target.server),
        format!("{}.password", target.server),
    );
    let storage = COMPONENTS[3];
    // The problem detector's secret is not managed by the operator here.
    Api::<Secret>::namespaced(client.clone(), storage.0)
        .patch(
            storage.1,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {
                "cloudcredential.openshift.io/credentials-request": null}}})),
        )
        .await
        .unwrap();
    let original = all(&client).await;

    // A target key already in the root with another value: refused, nothing changed.
    let roots = Api::<Secret>::namespaced(client.clone(), ROOT.0);
    roots
        .patch(
            ROOT.1,
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {password_key.clone(): "not-the-same"}})),
        )
        .await
        .unwrap();
    // Once the operator has copied it, nothing else moves.
    wait_until(&client, |now| now[1] == now[0]).await;
    let conflicting = all(&client).await;
    let err = run_step(&cluster, &vmi, Action::Step(Step::UpdateSecrets))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "already has {password_key} with a different value"
        )),
        "{err}"
    );
    assert!(!err.contains("not-the-same") && !err.contains(&target.password));
    assert_eq!(all(&client).await, conflicting);
    roots
        .patch(
            ROOT.1,
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([{"op": "remove",
                    "path": format!("/data/{password_key}")}]))
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    wait_until(&client, |now| now == original.as_slice()).await;

    // The run: the root and the unmanaged secret are edited; the operator
    // copies the root into the three managed ones.
    run_step(&cluster, &vmi, Action::Step(Step::UpdateSecrets))
        .await
        .unwrap();
    let after = all(&client).await;
    for (i, secret) in after.iter().enumerate() {
        assert_eq!(
            secret.get(&user_key).map(|v| v.0.as_slice()),
            Some(target.username.as_bytes()),
            "secret {i}"
        );
        assert_eq!(
            secret.get(&password_key).map(|v| v.0.as_slice()),
            Some(target.password.as_bytes()),
            "secret {i}"
        );
        // The source's keys are still there.
        for (k, v) in &original[i] {
            assert_eq!(secret.get(k), Some(v));
        }
    }
    let entry = step_status(&client, &vmi, Step::UpdateSecrets).await;
    assert_eq!(
        entry.changes,
        [
            format!("Secret kube-system/vsphere-creds: added {password_key}, {user_key}"),
            format!(
                "Secret {}/{}: added {password_key}, {user_key}",
                storage.0, storage.1
            ),
        ]
    );
    assert!(
        entry.result.as_deref().unwrap().contains(
            "the credential operator copied them to openshift-machine-api/vsphere-cloud-credentials"
        ),
        "{entry:?}"
    );
    let status = serde_json::to_string(&entry).unwrap();
    assert!(!status.contains(&target.password), "no password in status");
    let backup =
        Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), &vmi.namespace)
            .get("vmi-backup-move")
            .await
            .unwrap();
    assert!(
        !serde_json::to_string(&backup)
            .unwrap()
            .contains(&target.password)
    );

    // Second run: nothing changes.
    let root_version = roots.get(ROOT.1).await.unwrap().metadata.resource_version;
    run_step(&cluster, &vmi, Action::Step(Step::UpdateSecrets))
        .await
        .unwrap();
    assert_eq!(
        roots.get(ROOT.1).await.unwrap().metadata.resource_version,
        root_version
    );
    let entry = step_status(&client, &vmi, Step::UpdateSecrets).await;
    assert!(entry.result.unwrap().ends_with("nothing changed"));
    assert!(entry.changes.is_empty());

    // An edit made to a managed copy by hand is reverted by the operator.
    Api::<Secret>::namespaced(client.clone(), COMPONENTS[0].0)
        .patch(
            COMPONENTS[0].1,
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"stray": "x"}})),
        )
        .await
        .unwrap();
    wait_until(&client, |now| !now[1].contains_key("stray")).await;

    // Undo: every secret back to exactly what it held.
    run_step(&cluster, &vmi, Action::Undo(Step::UpdateSecrets))
        .await
        .unwrap();
    assert_eq!(all(&client).await, original);
}
