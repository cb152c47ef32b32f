//! `deploy/overlays/example` as an administrator installs it: rendered by
//! kustomize (and by `kubectl kustomize`, which `oc apply -k` runs), every
//! object applied to a real kube-apiserver (the Deployment and a pod of its
//! template as server-side dry runs, everything else for real, in a
//! namespace that enforces the restricted Pod Security Standard), the
//! orchestrator's Deployment checked for what running it safely needs, and
//! the RBAC it grants compared with the role files the end-to-end tests bind
//! (`vmi_sim::migration::STEP_RUNNER_ROLE`, `ORCHESTRATOR_ROLE`): the same
//! objects, and every rule really granted, no more.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, GroupVersionKind, PostParams};
use kube::discovery::{self, Scope};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use vmi_sim::migration::{ORCHESTRATOR_ROLE, STEP_RUNNER_ROLE, rbac_documents};
use vmi_sim::{ControlPlane, Tools};

/// The overlay under test, and the namespace it installs into.
const OVERLAY: &str = "deploy/overlays/example";
const NAMESPACE: &str = "vmi-system";
/// The image the overlay sets.
const IMAGE: &str = "image-registry.openshift-image-registry.svc:5000/vmi-system/vmi:0.1.0";
const RBAC_KINDS: [&str; 4] = ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"];

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The objects `program args… <overlay>` prints.
fn render(program: &Path, args: &[&str]) -> Vec<Value> {
    let output = Command::new(program)
        .args(args)
        .arg(OVERLAY)
        .current_dir(repository())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} {args:?} {OVERLAY} failed: {stderr}",
        program.display()
    );
    let text = String::from_utf8(output.stdout).unwrap();
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap()
        .into_iter()
        .filter(|o| !o.is_null())
        .collect()
}

fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or_default()
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

fn namespace(object: &Value) -> &str {
    object["metadata"]["namespace"].as_str().unwrap_or_default()
}

fn find<'a>(objects: &'a [Value], wanted_kind: &str, wanted_name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| kind(o) == wanted_kind && name(o) == wanted_name)
        .unwrap_or_else(|| panic!("the overlay renders no {wanted_kind} {wanted_name}"))
}

/// An RBAC object as far as authorization goes (no labels, no comments).
fn grant(object: &Value) -> Value {
    json!({
        "kind": object["kind"],
        "name": object["metadata"]["name"],
        "namespace": object["metadata"]["namespace"],
        "rules": object["rules"],
        "roleRef": object["roleRef"],
        "subjects": object["subjects"],
    })
}

fn sorted(mut grants: Vec<Value>) -> Vec<Value> {
    grants.sort_by_key(|g| g.to_string());
    grants
}

/// Creates `object` (a dry run when `dry_run`), finding its resource by
/// discovery; returns what the API server answered.
async fn create(client: &Client, object: &Value, dry_run: bool) -> DynamicObject {
    let (group, version) = match object["apiVersion"].as_str().unwrap().split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", object["apiVersion"].as_str().unwrap()),
    };
    let gvk = GroupVersionKind::gvk(group, version, kind(object));
    let (resource, capabilities) = discovery::pinned_kind(client, &gvk)
        .await
        .unwrap_or_else(|e| panic!("the API server serves no {gvk:?}: {e}"));
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Cluster => Api::all_with(client.clone(), &resource),
        Scope::Namespaced => {
            assert!(
                !namespace(object).is_empty(),
                "{} {} has a namespace: it must not land in the kubectl context's",
                kind(object),
                name(object)
            );
            Api::namespaced_with(client.clone(), namespace(object), &resource)
        }
    };
    let params = PostParams {
        dry_run,
        ..PostParams::default()
    };
    let typed: DynamicObject = serde_json::from_value(object.clone()).unwrap();
    api.create(&params, &typed).await.unwrap_or_else(|e| {
        panic!(
            "the API server refuses {} {}/{}: {e}",
            kind(object),
            namespace(object),
            name(object)
        )
    })
}

/// Whether `account` of the install namespace may do `verb` on `resource`
/// (`pods`, `pods/log`) of `group` in `namespace` (cluster-wide when
/// empty), named `object` when given.
async fn allowed(
    client: &Client,
    account: &str,
    (verb, group, resource): (&str, &str, &str),
    namespace: &str,
    object: Option<&str>,
) -> bool {
    let (resource, subresource) = match resource.split_once('/') {
        Some((resource, subresource)) => (resource, Some(subresource.to_owned())),
        None => (resource, None),
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!("system:serviceaccount:{NAMESPACE}:{account}")),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{NAMESPACE}"),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                subresource,
                namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
                name: object.map(str::to_owned),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap();
    answer.status.is_some_and(|s| s.allowed)
}

async fn wait_established(client: &Client, crd: &str) {
    let resource = discovery::pinned_kind(
        client,
        &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
    )
    .await
    .unwrap()
    .0;
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let started = Instant::now();
    loop {
        let object = api.get(crd).await.unwrap();
        let established = object.data["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Established" && c["status"] == "True");
        if established {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{crd} is not Established after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn kustomize_and_kubectl_render_the_overlay_alike() {
    let tools = Tools::get().unwrap();
    let kustomize = render(&tools.bin("kustomize"), &["build"]);
    let kubectl = render(&tools.bin("kubectl"), &["kustomize"]);
    assert_eq!(
        sorted(kustomize),
        sorted(kubectl),
        "`oc apply -k` (kubectl's kustomize) renders what kustomize renders"
    );
}

#[test]
fn the_overlay_grants_exactly_the_roles_the_end_to_end_tests_bind() {
    let tools = Tools::get().unwrap();
    let objects = render(&tools.bin("kustomize"), &["build"]);
    let rendered: Vec<Value> = objects
        .iter()
        .filter(|o| RBAC_KINDS.contains(&kind(o)))
        .map(grant)
        .collect();
    let mut bound = rbac_documents(STEP_RUNNER_ROLE, NAMESPACE).unwrap();
    bound.extend(rbac_documents(ORCHESTRATOR_ROLE, NAMESPACE).unwrap());
    let bound: Vec<Value> = bound.iter().map(grant).collect();
    assert_eq!(sorted(rendered), sorted(bound));

    // The Deployment runs as the account the orchestrator role is bound to,
    // and starts the steps as the one the step runner's roles are bound to
    // (the orchestrator's default --service-account).
    let deployment = find(&objects, "Deployment", "vmi-orchestrator");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "vmi-orchestrator");
    for account in ["vmi-orchestrator", "vmi-step-runner"] {
        let object = find(&objects, "ServiceAccount", account);
        assert_eq!(namespace(object), NAMESPACE);
    }
}

#[test]
fn the_orchestrator_deployment_runs_safely_and_is_observable() {
    let tools = Tools::get().unwrap();
    let objects = render(&tools.bin("kustomize"), &["build"]);
    let deployment = find(&objects, "Deployment", "vmi-orchestrator");
    assert_eq!(namespace(deployment), NAMESPACE);
    let spec = &deployment["spec"];
    assert!(
        spec["replicas"].as_i64().unwrap() >= 1,
        "replicas: {}",
        spec["replicas"]
    );
    let pod = &spec["template"]["spec"];
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let container = &containers[0];

    // The image is the overlay's, and the step Jobs get the same one.
    assert_eq!(container["image"], IMAGE);
    let env = |wanted: &str| -> &Value {
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == wanted)
            .unwrap_or_else(|| panic!("no env {wanted}"))
    };
    assert_eq!(env("VMI_IMAGE")["value"], IMAGE);
    // Only its own namespace is watched (the Role is namespaced), and the
    // Lease and the replica's identity come from the pod.
    for (variable, field) in [
        ("VMI_WATCH_NAMESPACE", "metadata.namespace"),
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_NAME", "metadata.name"),
    ] {
        assert_eq!(
            env(variable)["valueFrom"]["fieldRef"]["fieldPath"],
            field,
            "{variable}"
        );
    }
    assert_eq!(container["command"], json!(["vmi-orchestrator"]));
    assert_eq!(container["args"][0], "run");

    // The metrics port is named, and probed.
    let ports = container["ports"].as_array().unwrap();
    assert!(
        ports
            .iter()
            .any(|p| p["name"] == "metrics" && p["containerPort"] == 8080),
        "{ports:?}"
    );
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        assert_eq!(container[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(container[probe]["httpGet"]["port"], "metrics", "{probe}");
    }

    // Requests and limits.
    for side in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                container["resources"][side][resource].is_string(),
                "resources.{side}.{resource}"
            );
        }
    }

    // Non-root, read-only, no capability, the runtime's seccomp profile.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert!(
        security["runAsUser"].is_null() && pod["securityContext"]["runAsUser"].is_null(),
        "no fixed UID: OpenShift's restricted SCC assigns one"
    );

    // The metrics Service selects these pods on the named port.
    let service = find(&objects, "Service", "vmi-orchestrator-metrics");
    let labels = &spec["template"]["metadata"]["labels"];
    for (key, value) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&labels[key], value, "the Service selects the pods by {key}");
    }
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");
}

#[tokio::test]
async fn the_api_server_accepts_every_object_and_grants_exactly_the_rules() {
    let tools = Tools::get().unwrap();
    let objects = render(&tools.bin("kustomize"), &["build"]);
    let plane = ControlPlane::shared().unwrap();
    let client = plane.client().await.unwrap();

    // Every OpenShift cluster has the namespaces the step runner's Roles
    // live in; this bare control plane does not.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let own: Vec<&str> = objects
        .iter()
        .filter(|o| kind(o) == "Namespace")
        .map(name)
        .collect();
    assert_eq!(own, [NAMESPACE]);
    let mut others: Vec<&str> = objects
        .iter()
        .map(namespace)
        .filter(|n| !n.is_empty() && !own.contains(n))
        .collect();
    others.sort_unstable();
    others.dedup();
    for other in &others {
        if namespaces.get_opt(other).await.unwrap().is_none() {
            namespaces
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({"metadata": {"name": other}})).unwrap(),
                )
                .await
                .unwrap();
        }
    }

    // The CRD first (as docs/install.md says: `oc apply -k deploy/crds`),
    // then everything in the order kustomize prints it. The Deployment is a
    // dry run (no image here), and so is a pod of its template: the
    // namespace enforces the restricted Pod Security Standard on pods.
    let crds: Vec<&Value> = objects
        .iter()
        .filter(|o| kind(o) == "CustomResourceDefinition")
        .collect();
    assert_eq!(crds.len(), 1);
    create(&client, crds[0], false).await;
    wait_established(&client, name(crds[0])).await;
    let mut created = Vec::new();
    for object in objects
        .iter()
        .filter(|o| kind(o) != "CustomResourceDefinition")
    {
        let dry_run = kind(object) == "Deployment";
        let answer = create(&client, object, dry_run).await;
        created.push(format!("{} {}", kind(object), answer.name_any()));
    }
    let deployment = find(&objects, "Deployment", "vmi-orchestrator");
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "vmi-orchestrator-template", "namespace": NAMESPACE,
            "labels": deployment["spec"]["template"]["metadata"]["labels"]},
        "spec": deployment["spec"]["template"]["spec"],
    });
    create(&client, &pod, true).await;
    for expected in [
        "Namespace vmi-system",
        "VSphereMigrationInfra move-to-vcenter-b",
        "Secret vcenter-b-credentials",
        "Service vmi-orchestrator-metrics",
    ] {
        assert!(created.iter().any(|c| c == expected), "{created:?}");
    }

    // Every rule of every role is granted to the account bound to it...
    let mut checked = 0;
    for role in objects
        .iter()
        .filter(|o| kind(o) == "Role" || kind(o) == "ClusterRole")
    {
        let binding = objects
            .iter()
            .find(|b| {
                kind(b) == format!("{}Binding", kind(role))
                    && b["roleRef"]["name"] == role["metadata"]["name"]
                    && namespace(b) == namespace(role)
            })
            .unwrap_or_else(|| panic!("{} {} is bound", kind(role), name(role)));
        assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);
        let account = binding["subjects"][0]["name"].as_str().unwrap();
        for rule in role["rules"].as_array().unwrap() {
            let names: Vec<Option<&str>> = match rule["resourceNames"].as_array() {
                Some(names) => names.iter().map(|n| n.as_str()).collect(),
                None => vec![None],
            };
            for group in rule["apiGroups"].as_array().unwrap() {
                for resource in rule["resources"].as_array().unwrap() {
                    for verb in rule["verbs"].as_array().unwrap() {
                        for object in &names {
                            let what = (
                                verb.as_str().unwrap(),
                                group.as_str().unwrap(),
                                resource.as_str().unwrap(),
                            );
                            assert!(
                                allowed(&client, account, what, namespace(role), *object).await,
                                "{account} may {what:?} in {:?} ({object:?})",
                                namespace(role)
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 50, "{checked} grants checked");

    // ... and what the roles leave out is refused.
    let refused = [
        ("vmi-step-runner", ("list", "", "secrets"), NAMESPACE, None),
        (
            "vmi-step-runner",
            ("get", "", "secrets"),
            "openshift-config",
            None,
        ),
        (
            "vmi-step-runner",
            ("get", "", "secrets"),
            "kube-system",
            Some("other"),
        ),
        (
            "vmi-step-runner",
            ("patch", "", "secrets"),
            NAMESPACE,
            Some("vcenter-b-credentials"),
        ),
        (
            "vmi-step-runner",
            ("update", "", "configmaps"),
            "openshift-config",
            Some("other"),
        ),
        ("vmi-step-runner", ("delete", "", "pods"), "default", None),
        (
            "vmi-step-runner",
            // step 13 scales the workloads that use volumes through their
            // scale subresource; their pod template stays out of reach.
            ("patch", "apps", "deployments"),
            "default",
            Some("web"),
        ),
        (
            "vmi-step-runner",
            ("delete", "apps", "deployments"),
            "openshift-cluster-version",
            Some("other"),
        ),
        (
            "vmi-step-runner",
            ("delete", "apps", "deployments"),
            "openshift-machine-api",
            Some("machine-api-controllers"),
        ),
        (
            "vmi-step-runner",
            ("get", "config.openshift.io", "vspheremigrationinfra"),
            "default",
            Some("move"),
        ),
        (
            "vmi-orchestrator",
            ("get", "", "secrets"),
            NAMESPACE,
            Some("vcenter-b-credentials"),
        ),
        (
            "vmi-orchestrator",
            ("delete", "batch", "jobs"),
            NAMESPACE,
            None,
        ),
        (
            "vmi-orchestrator",
            ("create", "batch", "jobs"),
            "default",
            None,
        ),
        (
            "vmi-orchestrator",
            ("list", "config.openshift.io", "vspheremigrationinfra"),
            "",
            None,
        ),
        (
            "vmi-orchestrator",
            ("update", "coordination.k8s.io", "leases"),
            NAMESPACE,
            Some("other"),
        ),
    ];
    for (account, what, at, object) in refused {
        assert!(
            !allowed(&client, account, what, at, object).await,
            "{account} may not {what:?} in {at:?} ({object:?})"
        );
    }
}
