//! The secrets scan on a real simulated cluster: secrets planted where a
//! careless step would leak them (a session id in a ConfigMap, a password
//! base64-encoded in a backup, a pod printing its service-account token)
//! are each found, named by kind and place, and never printed. The session
//! id is one a real client got from vcsim (its cookie value), so the scan's
//! collection of session ids is tested too.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, PostParams};
use serde_json::json;
use vmi_sim::migration::{MigrationRig, Programs};
use vmi_sim::seed::SeedOptions;

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    input
        .chunks(3)
        .flat_map(|chunk| {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            (0..4).map(move |i| {
                if i <= chunk.len() {
                    ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char
                } else {
                    '='
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_secrets_are_found_where_they_leaked() {
    // No orchestrator runs here: any existing program will do.
    let programs = Programs {
        orchestrator: PathBuf::from("/bin/true"),
        step: PathBuf::from("/bin/true"),
    };
    let rig = MigrationRig::start(SeedOptions::default(), programs)
        .await
        .unwrap();
    let (source, target) = (&rig.cluster.source, &rig.cluster.target);

    // A session a client really had: govc's session key is its
    // vmware_soap_session cookie. govc logs out when it ends, so only the
    // login event keeps it.
    let sessions: serde_json::Value =
        serde_json::from_str(&source.govc(&["session.ls", "-json"]).unwrap()).unwrap();
    let session = sessions["currentSession"]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let maps = |ns: &str| Api::<ConfigMap>::namespaced(rig.client.clone(), ns);
    maps(&rig.namespace)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "planted"},
                "data": {"note": format!("first line\nsession {session} kept for later\n")}}))
            .unwrap(),
        )
        .await
        .unwrap();
    maps("openshift-config")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "planted-backup"},
                "data": {"password": base64(target.password.as_bytes())}}))
            .unwrap(),
        )
        .await
        .unwrap();
    // A pod that prints its own token.
    Api::<Pod>::namespaced(rig.client.clone(), &rig.namespace)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "leaky"},
                "spec": {"serviceAccountName": "vmi-step-runner", "restartPolicy": "Never",
                    "containers": [{"name": "leak", "image": "leak:test",
                        "command": ["/bin/sh", "-c", "echo starting; grep token: \"$KUBECONFIG\""]}]}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    while !rig
        .kubelet
        .runs()
        .iter()
        .any(|r| r.pod == "leaky" && r.exit_code.is_some())
    {
        assert!(started.elapsed() < Duration::from_secs(60), "the pod ran");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let report = rig.scan_secrets().await.unwrap();
    let found: BTreeSet<(String, String)> = report
        .hits
        .iter()
        .map(|h| {
            let kind = h.secret.split(" (").next().unwrap_or_default().to_owned();
            (kind, h.location.clone())
        })
        .collect();
    let ns = &rig.namespace;
    assert_eq!(
        found,
        BTreeSet::from([
            (
                "vCenter session id".to_owned(),
                format!("ConfigMap {ns}/planted")
            ),
            (
                "vCenter password".to_owned(),
                "ConfigMap openshift-config/planted-backup".to_owned()
            ),
            (
                "service-account token".to_owned(),
                "log of pod leaky".to_owned()
            ),
        ]),
        "{report}"
    );
    // The pod's log: `starting`, then the token line.
    assert!(
        report
            .hits
            .iter()
            .any(|h| h.location == "log of pod leaky" && h.line == 2),
        "{report}"
    );
    assert!(
        report
            .hits
            .iter()
            .any(|h| h.secret == format!("vCenter session id (source vCenter {})", source.server))
    );
    assert!(report.hits.iter().any(|h| h.secret
        == format!("vCenter password (target vCenter {})", target.server)
        && h.encoding == vmi_sim::secrets_scan::Encoding::Base64));
    assert!(report.secrets["vCenter session id"] >= 1, "{report}");
    assert!(report.texts > 10 && report.bytes > 10_000, "{report}");
    let printed = format!("{report}\n{report:?}");
    for secret in [
        session.as_str(),
        target.password.as_str(),
        source.password.as_str(),
    ] {
        assert!(!printed.contains(secret), "the report shows a secret");
    }
    let token_file = rig
        .kubelet
        .runs()
        .into_iter()
        .find(|r| r.pod == "leaky")
        .unwrap()
        .log
        .with_file_name("kubeconfig");
    let kubeconfig = std::fs::read_to_string(token_file).unwrap();
    let token = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .unwrap();
    assert!(!printed.contains(token), "the report shows the token");
}
