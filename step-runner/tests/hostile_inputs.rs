//! Hostile inputs (DESIGN §9: "every malformed or hostile spec is refused
//! before anything changes"): a table of bad `vmi` specs and bad
//! environments, each refused either by the CRD when the vmi is applied
//! (the API server's message names the field) or by step 00 preflight (a
//! `Refused` error naming the problem and what to do, ending "nothing was
//! changed").
//!
//! One seeded cluster serves the whole table; each vmi gets a namespace of
//! its own. A case that changes the environment restores it afterwards. For
//! each case the resourceVersions of everything a migration changes, and for
//! each preflight case the inventory, tag categories and tags of both
//! vCenters, are read before and after the refusal and must be equal. The
//! test prints one line per case and a summary; docs/hostile-inputs.md lists
//! the cases.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolume, Secret};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use serde_json::{Value, json};
use support::{run_step, step_status};
use vmi_api::{Step, VSphereMigrationInfra};
use vmi_sim::inventory::Inventory;
use vmi_sim::seed::{SeedOptions, SimCluster};
use vmi_sim::vcsim::VCenterSim;
use vmi_step_runner::Action;
use vmi_step_runner::context::StepError;

/// Where a case must be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    /// The API server refuses the vmi (the CRD's schema or CEL rules).
    Admission,
    /// Step 00 preflight fails with `Refused`.
    Preflight,
}

/// Keys and values of a Secret.
type SecretData = Vec<(String, Vec<u8>)>;

/// What the vmi's credentials Secret holds.
#[derive(Clone, Copy)]
enum Creds {
    /// `<target>.username` / `.password` of the target vCenter.
    Target,
    /// No Secret at all.
    Missing,
    /// These keys and values.
    Custom(fn(&Facts) -> SecretData),
}

/// How the environment is changed for a case (and restored after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Env {
    /// As seeded.
    Seeded,
    /// ClusterVersion `Progressing=True`: an update is running.
    Upgrading,
    /// ClusterVersion `Failing=True`.
    VersionFailing,
    /// ClusterOperator `storage` `Degraded=True`.
    OperatorDegraded,
    /// ClusterOperator `ingress` `Available=False`.
    OperatorUnavailable,
    /// No control plane machine set.
    CpmsMissing,
    /// The control plane machine set has strategy `OnDelete`.
    CpmsOnDelete,
    /// The control plane machine set is Inactive with 2 of 3 replicas ready.
    CpmsInactiveUnready,
    /// The control plane machine set names a failure domain the
    /// Infrastructure does not have.
    CpmsUnknownDomain,
    /// `infrastructure/cluster` already lists a second vCenter.
    TwoVCenters,
    /// `infrastructure/cluster` has no `status.infrastructureName`.
    NoInfrastructureId,
    /// `kube-system/vsphere-creds` lacks the source vCenter's keys.
    SourceKeysMissing,
    /// `kube-system/vsphere-creds` does not exist.
    RootSecretMissing,
    /// An in-tree vSphere PersistentVolume exists.
    InTreeVolume,
    /// A ConfigMap `other-ca` in the vmi's namespace holds the source
    /// vCenter's CA (which did not sign the target's certificate).
    WrongCaBundle,
    /// The vmi targets a vCenter of its own that ends every session as soon
    /// as it starts (vcsim option `config.vmacore.soap.sessionTimeout`).
    ExpiringSessions,
    /// The vmi targets a vCenter of its own with the source's instance
    /// UUID: the source under another name.
    SourceTwin,
}

/// One hostile input.
struct Case {
    name: &'static str,
    at: Where,
    spec: fn(&mut Value, &Facts),
    creds: Creds,
    env: Env,
    /// Fragments the refusal must contain; `{source}`, `{target}` and
    /// `{infra}` are replaced.
    expect: &'static [&'static str],
    /// Problems preflight must report (the case's own, no other).
    problems: usize,
}

fn admission(
    name: &'static str,
    spec: fn(&mut Value, &Facts),
    expect: &'static [&'static str],
) -> Case {
    Case {
        name,
        at: Where::Admission,
        spec,
        creds: Creds::Target,
        env: Env::Seeded,
        expect,
        problems: 0,
    }
}

fn preflight(
    name: &'static str,
    spec: fn(&mut Value, &Facts),
    expect: &'static [&'static str],
) -> Case {
    Case {
        name,
        at: Where::Preflight,
        spec,
        creds: Creds::Target,
        env: Env::Seeded,
        expect,
        problems: 1,
    }
}

impl Case {
    fn env(mut self, env: Env) -> Case {
        self.env = env;
        self
    }
    fn creds(mut self, creds: Creds) -> Case {
        self.creds = creds;
        self
    }
    fn problems(mut self, problems: usize) -> Case {
        self.problems = problems;
        self
    }
}

/// A vCenter as a vmi names it.
#[derive(Debug, Clone)]
struct VCenterFacts {
    server: String,
    port: u16,
    thumbprint: String,
    thumbprint_sha1: String,
    username: String,
    password: String,
    ca_pem: String,
}

impl VCenterFacts {
    fn of(sim: &VCenterSim) -> VCenterFacts {
        VCenterFacts {
            server: sim.server.clone(),
            port: sim.port,
            thumbprint: sim.thumbprint_sha256.clone(),
            thumbprint_sha1: sim.thumbprint_sha1.clone(),
            username: sim.username.clone(),
            password: sim.password.clone(),
            ca_pem: sim.ca_pem.clone(),
        }
    }
}

/// What a case's spec and Secret are made from.
#[derive(Debug, Clone)]
struct Facts {
    source: VCenterFacts,
    /// The vCenter the vmi moves to: the seeded target, or a case's own.
    target: VCenterFacts,
    infra_id: String,
    /// A port on the target's address where nothing listens.
    closed_port: u16,
}

/// Points the vmi's failure domain and vCenter at `datacenter`, with the
/// target inventory's names below it.
fn target_in_datacenter(vmi: &mut Value, datacenter: &str) {
    let fd = &mut vmi["spec"]["failureDomains"][0];
    fd["topology"] = json!({
        "datacenter": datacenter,
        "computeCluster": format!("/{datacenter}/host/cluster-b"),
        "networks": [format!("/{datacenter}/network/ocp-network-b")],
        "datastore": format!("/{datacenter}/datastore/datastore-b"),
        "template": format!("/{datacenter}/vm/rhcos-template-b"),
    });
    vmi["spec"]["vcenters"][0]["datacenters"] = json!([datacenter]);
}

/// Sets `field` of the failure domain's topology.
fn topology(vmi: &mut Value, field: &str, value: Value) {
    vmi["spec"]["failureDomains"][0]["topology"][field] = value;
}

/// Sets `field` of the failure domain.
fn fd(vmi: &mut Value, field: &str, value: Value) {
    vmi["spec"]["failureDomains"][0][field] = value;
}

/// Renames the failure domain everywhere the spec names it.
fn rename_failure_domain(vmi: &mut Value, name: &str) {
    fd(vmi, "name", json!(name));
    vmi["spec"]["workers"]["failureDomains"][0]["name"] = json!(name);
    vmi["spec"]["controlPlane"]["failureDomains"] = json!([name]);
}

/// `<target>.username` and `<target>.password` with these values.
fn target_keys(facts: &Facts, username: &[u8], password: &[u8]) -> SecretData {
    vec![
        (
            format!("{}.username", facts.target.server),
            username.to_vec(),
        ),
        (
            format!("{}.password", facts.target.server),
            password.to_vec(),
        ),
    ]
}

/// The table.
fn cases() -> Vec<Case> {
    vec![
        // ---- refused by the CRD when the vmi is applied ----
        admission(
            "duplicate failure domain names",
            |v, _| {
                let copy = v["spec"]["failureDomains"][0].clone();
                v["spec"]["failureDomains"].as_array_mut().unwrap().push(copy);
            },
            &["spec.failureDomains[1]: Duplicate value"],
        ),
        admission(
            "duplicate vCenter servers",
            |v, _| {
                let copy = v["spec"]["vcenters"][0].clone();
                v["spec"]["vcenters"].as_array_mut().unwrap().push(copy);
            },
            &["spec.vcenters: each server may be listed only once"],
        ),
        admission(
            "target equal to source (spec.source names it)",
            |v, f| v["spec"]["source"]["server"] = json!(f.target.server),
            &["spec.vcenters[].server must differ from spec.source.server"],
        ),
        admission(
            "failure domain on a server not in spec.vcenters",
            |v, _| fd(v, "server", json!("vcenter-c.example.com")),
            &["spec.failureDomains[].server must be the server of an entry in spec.vcenters"],
        ),
        admission(
            "failure domain datacenter not listed for its vCenter",
            |v, _| v["spec"]["vcenters"][0]["datacenters"] = json!(["datacenter-c"]),
            &["spec.failureDomains[].topology.datacenter must be listed in spec.vcenters[].datacenters"],
        ),
        admission(
            "workers placed in an unknown failure domain",
            |v, _| v["spec"]["workers"]["failureDomains"][0]["name"] = json!("target-9"),
            &["spec.workers.failureDomains[].name must be the name of an entry in spec.failureDomains"],
        ),
        admission(
            "control plane failure domains unknown",
            |v, _| v["spec"]["controlPlane"]["failureDomains"] = json!(["target-9"]),
            &["spec.controlPlane.failureDomains must name entries of spec.failureDomains"],
        ),
        admission(
            "server name over 255 characters",
            |v, _| {
                let long = format!("{}.example.com", vec!["a".repeat(60); 5].join("."));
                v["spec"]["vcenters"][0]["server"] = json!(long);
                fd(v, "server", json!(long));
            },
            &["spec.vcenters[0].server", "may not be more than 255"],
        ),
        admission(
            "failure domain name over 63 characters",
            |v, _| rename_failure_domain(v, &"f".repeat(64)),
            &["spec.failureDomains[0].name", "may not be more than 63"],
        ),
        admission(
            "datacenter name over 80 characters",
            |v, _| target_in_datacenter(v, &"d".repeat(81)),
            &["spec.vcenters[0].datacenters[0]", "may not be more than 80"],
        ),
        admission(
            "zone over 63 characters (a node label value)",
            |v, _| fd(v, "zone", json!("z".repeat(70))),
            &["spec.failureDomains[0].zone", "may not be more than 63"],
        ),
        admission(
            "region with a space (not a label value)",
            |v, _| fd(v, "region", json!("region b")),
            &["spec.failureDomains[0].region", "must be a Kubernetes label value"],
        ),
        admission(
            "path over 2048 characters",
            |v, _| topology(v, "datastore", json!(format!("/datacenter-b/datastore/{}", "s".repeat(2048)))),
            &["spec.failureDomains[0].topology.datastore", "may not be more than 2048"],
        ),
        admission(
            "upper-case failure domain name (no valid MachineSet name)",
            |v, _| rename_failure_domain(v, "Target-1"),
            &["spec.failureDomains[0].name", "must be a lowercase DNS label"],
        ),
        admission(
            "homoglyph server name (Cyrillic е)",
            |v, _| {
                v["spec"]["vcenters"][0]["server"] = json!("vc\u{0435}nter-b.example.com");
                fd(v, "server", json!("vc\u{0435}nter-b.example.com"));
            },
            &["spec.vcenters[0].server", "should match"],
        ),
        admission(
            "zero-width space in the server name",
            |v, f| {
                let server = format!("{}\u{200B}", f.target.server);
                v["spec"]["vcenters"][0]["server"] = json!(server);
                fd(v, "server", json!(server));
            },
            &["spec.vcenters[0].server", "should match"],
        ),
        admission(
            "numeric alias of an address as server (2130706444 = 127.0.0.12)",
            |v, _| {
                v["spec"]["vcenters"][0]["server"] = json!("2130706444");
                fd(v, "server", json!("2130706444"));
            },
            &["spec.vcenters[0].server", "must be a dotted-quad IPv4 address"],
        ),
        admission(
            "right-to-left override in a failure domain name",
            |v, _| rename_failure_domain(v, "target-\u{202E}1"),
            &["spec.failureDomains[0].name", "must be a lowercase DNS label"],
        ),
        admission(
            "NUL in a datacenter name",
            |v, _| target_in_datacenter(v, "datacenter-b\u{0}"),
            &["spec.vcenters[0].datacenters[0]", "should match"],
        ),
        admission(
            "newline injection in the compute cluster path (cloud-provider-config lines)",
            |v, _| {
                topology(
                    v,
                    "computeCluster",
                    json!("/datacenter-b/host/cluster-b\n[Global]\ninsecure-flag = \"1\""),
                )
            },
            &["spec.failureDomains[0].topology.computeCluster", "should match"],
        ),
        admission(
            "zero-width joiner in the template path",
            |v, _| topology(v, "template", json!("/datacenter-b/vm/rhcos-\u{200D}template-b")),
            &["spec.failureDomains[0].topology.template", "should match"],
        ),
        admission(
            "thumbprint with a hidden zero-width space",
            |v, f| {
                let t = &f.target.thumbprint_sha1;
                v["spec"]["vcenters"][0]["tls"]["thumbprint"] =
                    json!(format!("{}\u{200B}{}", &t[..10], &t[10..]));
            },
            &["spec.vcenters[0].tls.thumbprint", "should match"],
        ),
        admission(
            "thumbprint with a trailing newline",
            |v, f| {
                v["spec"]["vcenters"][0]["tls"]["thumbprint"] =
                    json!(format!("{}\n", f.target.thumbprint_sha1))
            },
            &["spec.vcenters[0].tls.thumbprint", "should match"],
        ),
        admission(
            "thumbprint that is not hex",
            |v, f| {
                v["spec"]["vcenters"][0]["tls"]["thumbprint"] =
                    json!(f.target.thumbprint.replace(|c: char| c.is_ascii_hexdigit(), "Z"))
            },
            &["spec.vcenters[0].tls.thumbprint"],
        ),
        admission(
            "thumbprint written with spaces",
            |v, f| v["spec"]["source"]["tls"]["thumbprint"] = json!(f.source.thumbprint.replace(':', " ")),
            &["spec.source.tls.thumbprint"],
        ),
        admission(
            "port above the Infrastructure's 32767",
            |v, _| v["spec"]["vcenters"][0]["port"] = json!(44300),
            &["spec.vcenters[0].port", "32767"],
        ),
        admission(
            "credentials Secret named with a path (kube-system/vsphere-creds)",
            |v, _| v["spec"]["credentialsSecret"]["name"] = json!("../kube-system/vsphere-creds"),
            &["spec.credentialsSecret.name", "should match"],
        ),
        admission(
            "CA bundle ConfigMap named with a path",
            |v, _| v["spec"]["vcenters"][0]["tls"] = json!({"caBundle": {"name": "../openshift-config/ca"}}),
            &["spec.vcenters[0].tls.caBundle.name", "should match"],
        ),
        admission(
            "namespaceSelector with an unknown operator",
            |v, _| {
                v["spec"]["volumes"]["namespaceSelector"] =
                    json!({"matchExpressions": [{"key": "team", "operator": "Matches", "values": ["a"]}]})
            },
            &["spec.volumes.namespaceSelector.matchExpressions[0].operator", "Unsupported value"],
        ),
        admission(
            "namespaceSelector In without values",
            |v, _| {
                v["spec"]["volumes"]["namespaceSelector"] =
                    json!({"matchExpressions": [{"key": "team", "operator": "In", "values": []}]})
            },
            &["spec.volumes.namespaceSelector.matchExpressions[0]", "In and NotIn need at least one value"],
        ),
        // ---- refused by preflight: the spec against the cluster and the vCenters ----
        preflight(
            "wrong user name",
            |_, _| {},
            &["target vCenter {target}", "InvalidLogin", "check <server>.username and <server>.password"],
        )
        .creds(Creds::Custom(|f| target_keys(f, b"nobody", f.target.password.as_bytes()))),
        preflight(
            "expired credentials: the password changed in vCenter since the Secret was written",
            |_, _| {},
            &["target vCenter {target}", "the user name or password was refused (InvalidLogin)",
                "if the password was changed in vCenter, write the new one there"],
        )
        .creds(Creds::Custom(|f| {
            target_keys(f, f.target.username.as_bytes(), format!("{}-2025", f.target.password).as_bytes())
        })),
        preflight(
            "expired session: the vCenter ends every session right after login",
            |_, _| {},
            &["NotAuthenticated", "the vCenter ended vmi's session right after it logged in"],
        )
        .env(Env::ExpiringSessions),
        preflight(
            "password with a trailing newline (made with echo)",
            |_, _| {},
            &["key {target}.password ends with a line break", "write the value again without it"],
        )
        .creds(Creds::Custom(|f| {
            target_keys(f, f.target.username.as_bytes(), format!("{}\n", f.target.password).as_bytes())
        })),
        preflight(
            "user name with a zero-width space",
            |_, _| {},
            &["key {target}.username contains U+200B (zero width space)"],
        )
        .creds(Creds::Custom(|f| {
            target_keys(f, format!("{}\u{200B}", f.target.username).as_bytes(), f.target.password.as_bytes())
        })),
        preflight(
            "credentials Secret missing",
            |_, _| {},
            &["(spec.credentialsSecret) does not exist; create it", "{target}.username and {target}.password"],
        )
        .creds(Creds::Missing),
        preflight(
            "credentials Secret missing the password key",
            |_, _| {},
            &["has no key {target}.password; add it"],
        )
        .creds(Creds::Custom(|f| vec![(format!("{}.username", f.target.server), f.target.username.clone().into_bytes())])),
        preflight(
            "credentials Secret keyed by another server name",
            |_, _| {},
            &["has no key {target}.username (it has vcenter-b.example.com.username; keys are named after spec.vcenters[].server exactly)"],
        )
        .creds(Creds::Custom(|f| {
            vec![
                ("vcenter-b.example.com.username".into(), f.target.username.clone().into_bytes()),
                ("vcenter-b.example.com.password".into(), f.target.password.clone().into_bytes()),
            ]
        }))
        .problems(2),
        preflight(
            "unreachable vCenter (a closed port)",
            |v, f| v["spec"]["vcenters"][0]["port"] = json!(f.closed_port),
            &["cannot reach the vCenter", "check spec.vcenters[].server and port"],
        ),
        preflight(
            "wrong thumbprint (the source's certificate pinned for the target)",
            |v, f| v["spec"]["vcenters"][0]["tls"]["thumbprint"] = json!(f.source.thumbprint),
            &["target vCenter {target}", "TLS handshake failed", "check tls.caBundle or tls.thumbprint"],
        ),
        preflight(
            "CA bundle of another CA",
            |v, _| v["spec"]["vcenters"][0]["tls"] = json!({"caBundle": {"name": "other-ca"}}),
            &["target vCenter {target}", "TLS handshake failed"],
        )
        .env(Env::WrongCaBundle),
        preflight(
            "CA bundle ConfigMap missing",
            |v, _| v["spec"]["vcenters"][0]["tls"] = json!({"caBundle": {"name": "no-such-ca"}}),
            &["the CA bundle for vCenter {target} is missing", "create it with the PEM bundle"],
        ),
        preflight(
            "target equal to source (no spec.source)",
            |v, f| {
                v["spec"].as_object_mut().unwrap().remove("source");
                v["spec"]["vcenters"][0] = json!({"server": f.source.server, "port": f.source.port,
                    "datacenters": ["datacenter-a"], "tls": {"thumbprint": f.source.thumbprint}});
                fd(v, "server", json!(f.source.server));
                v["spec"]["failureDomains"][0]["topology"] = json!({
                    "datacenter": "datacenter-a", "computeCluster": "/datacenter-a/host/cluster-a",
                    "networks": ["/datacenter-a/network/ocp-network-a"],
                    "datastore": "/datacenter-a/datastore/datastore-a",
                    "template": format!("/datacenter-a/vm/{0}/{0}-rhcos-generated-region-generated-zone", f.infra_id),
                });
            },
            &["a migration moves from exactly one source vCenter", "name the vCenter to move to in spec.vcenters"],
        )
        .creds(Creds::Custom(|f| {
            vec![
                (format!("{}.username", f.source.server), f.source.username.clone().into_bytes()),
                (format!("{}.password", f.source.server), f.source.password.clone().into_bytes()),
            ]
        })),
        preflight(
            "target is the source under another name (same instance UUID)",
            |_, _| {},
            &["is the source vCenter {source} under another name (same instance", "name another vCenter"],
        )
        .env(Env::SourceTwin),
        preflight(
            "spec.source names another vCenter",
            |v, _| v["spec"]["source"]["server"] = json!("vcenter-a.example.com"),
            &["spec.source.server is vcenter-a.example.com but the cluster's vCenter is {source}; fix spec.source"],
        ),
        preflight(
            "missing datacenter",
            |v, _| target_in_datacenter(v, "datacenter-x"),
            &["topology.datacenter /datacenter-x does not exist on vCenter {target}", "`govc ls /`"],
        ),
        preflight(
            "homoglyph datacenter (Cyrillic а) passes the CRD",
            |v, _| target_in_datacenter(v, "dat\u{0430}center-b"),
            &["does not exist on vCenter {target}", "non-ASCII character(s) U+0430"],
        ),
        preflight(
            "missing compute cluster",
            |v, _| topology(v, "computeCluster", json!("/datacenter-b/host/cluster-x")),
            &["topology.computeCluster /datacenter-b/host/cluster-x does not exist", "`govc ls /datacenter-b/host`"],
        ),
        preflight(
            "missing datastore",
            |v, _| topology(v, "datastore", json!("/datacenter-b/datastore/datastore-x")),
            &["topology.datastore /datacenter-b/datastore/datastore-x does not exist", "fix topology.datastore"],
        ),
        preflight(
            "missing network",
            |v, _| topology(v, "networks", json!(["/datacenter-b/network/ocp-network-x"])),
            &["topology.networks /datacenter-b/network/ocp-network-x does not exist"],
        ),
        preflight(
            "network naming the distributed switch, not a port group",
            |v, _| topology(v, "networks", json!(["/datacenter-b/network/dvs-b"])),
            &["topology.networks /datacenter-b/network/dvs-b on vCenter {target} is a DistributedVirtualSwitch, not a Network"],
        ),
        preflight(
            "missing resource pool",
            |v, _| topology(v, "resourcePool", json!("/datacenter-b/host/cluster-b/Resources/ocp")),
            &["topology.resourcePool /datacenter-b/host/cluster-b/Resources/ocp does not exist"],
        ),
        preflight(
            "missing template",
            |v, _| topology(v, "template", json!("/datacenter-b/vm/rhcos-template-x")),
            &["topology.template /datacenter-b/vm/rhcos-template-x does not exist", "import the RHCOS template"],
        ),
        preflight(
            "template on the wrong vCenter (the source's)",
            |v, f| topology(v, "template", json!(format!("/datacenter-b/vm/{}-rhcos-generated-region-generated-zone", f.infra_id))),
            &["does not exist on vCenter {target}", "is on the source vCenter {source}: a template belongs to one vCenter"],
        ),
        preflight(
            "failure domain name taken by the source's failure domain",
            |v, _| rename_failure_domain(v, "generated-failure-domain"),
            &["already has a failure domain named generated-failure-domain", "rename the vmi's failure domain"],
        ),
        preflight(
            "failure domain name too long for its MachineSet's host names",
            |v, _| rename_failure_domain(v, &"t".repeat(50)),
            &["step 11 would name its worker MachineSet {infra}-worker-ttt", "use a failure domain name of at most 40"],
        ),
        preflight(
            "namespaceSelector with an invalid label key (passes the CRD)",
            |v, _| v["spec"]["volumes"]["namespaceSelector"] = json!({"matchLabels": {"team name": "a"}}),
            &["spec.volumes.namespaceSelector: matchLabels key \"team name\" is not a label key"],
        ),
        // ---- refused by preflight: the environment ----
        preflight(
            "Infrastructure already holding two vCenters",
            |_, _| {},
            &["lists 2 vCenter(s) besides the targets", "finish or roll back that migration"],
        )
        .env(Env::TwoVCenters),
        preflight(
            "Infrastructure without an infrastructure id",
            |_, _| {},
            &["infrastructure/cluster has no status.infrastructureName", "vmi moves only an installed OpenShift cluster"],
        )
        .env(Env::NoInfrastructureId)
        .problems(0),
        preflight(
            "cluster mid-upgrade (ClusterVersion Progressing=True)",
            |_, _| {},
            &["an update of the cluster is running (Working towards 4.22.4", "wait until `oc get clusterversion`"],
        )
        .env(Env::Upgrading),
        preflight(
            "ClusterVersion Failing",
            |_, _| {},
            &["ClusterVersion reports Failing (Could not update", "oc get clusterversion version -o yaml"],
        )
        .env(Env::VersionFailing),
        preflight(
            "degraded ClusterOperator",
            |_, _| {},
            &["ClusterOperators unhealthy: storage Degraded; fix them first"],
        )
        .env(Env::OperatorDegraded),
        preflight(
            "ClusterOperator not Available",
            |_, _| {},
            &["ClusterOperators unhealthy: ingress not Available"],
        )
        .env(Env::OperatorUnavailable),
        preflight(
            "control plane machine set missing",
            |_, _| {},
            &["there is no control plane machine set openshift-machine-api/cluster", "oc get clusteroperator control-plane-machine-set"],
        )
        .env(Env::CpmsMissing),
        preflight(
            "control plane machine set with strategy OnDelete",
            |_, _| {},
            &["has strategy OnDelete", "set spec.strategy.type to RollingUpdate"],
        )
        .env(Env::CpmsOnDelete),
        preflight(
            "control plane machine set Inactive with unready replicas",
            |_, _| {},
            &["(Inactive) reports 2 of 3 control plane machines ready (1 unavailable)", "risks etcd quorum"],
        )
        .env(Env::CpmsInactiveUnready),
        preflight(
            "control plane machine set naming a failure domain the Infrastructure lacks",
            |_, _| {},
            &["names failure domain(s) retired-domain, which infrastructure/cluster does not have"],
        )
        .env(Env::CpmsUnknownDomain),
        preflight(
            "source credentials missing from kube-system/vsphere-creds",
            |_, _| {},
            &["source vCenter {source}: Secret kube-system/vsphere-creds has no key {source}.username", "restore Secret kube-system/vsphere-creds"],
        )
        .env(Env::SourceKeysMissing),
        preflight(
            "kube-system/vsphere-creds missing",
            |_, _| {},
            &["Secret kube-system/vsphere-creds does not exist", "restore Secret kube-system/vsphere-creds with keys {source}.username"],
        )
        .env(Env::RootSecretMissing),
        preflight(
            "in-tree vSphere volume",
            |_, _| {},
            &["PV hostile-in-tree", "an in-tree vSphere volume, which vSphere CSI does not support with two vCenters; migrate it to CSI first"],
        )
        .env(Env::InTreeVolume),
    ]
}

/// The vmi every case starts from: `deploy/samples/vmi.yaml` moving the
/// seeded cluster to `facts.target`, `state: Pending`.
fn base_vmi(facts: &Facts, namespace: &str) -> Value {
    let mut vmi: Value =
        serde_saphyr::from_str(include_str!("../../deploy/samples/vmi.yaml")).unwrap();
    let target = &facts.target;
    vmi["metadata"] = json!({"name": "hostile", "namespace": namespace});
    vmi["spec"]["state"] = json!("Pending");
    vmi["spec"]["source"] = json!({
        "server": facts.source.server,
        "tls": {"thumbprint": facts.source.thumbprint},
    });
    vmi["spec"]["vcenters"] = json!([{
        "server": target.server, "port": target.port, "datacenters": ["datacenter-b"],
        "tls": {"thumbprint": target.thumbprint},
    }]);
    vmi["spec"]["failureDomains"] = json!([{
        "name": "target-1", "region": "region-b", "zone": "zone-b", "server": target.server,
        "topology": {},
    }]);
    target_in_datacenter(&mut vmi, "datacenter-b");
    vmi["spec"]["workers"]["failureDomains"] = json!([{"name": "target-1", "replicas": 2}]);
    vmi["spec"]["controlPlane"]["failureDomains"] = json!(["target-1"]);
    vmi
}

/// What happened to one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    RefusedAtAdmission,
    RefusedByPreflight,
    Failed,
}

#[derive(Default)]
struct Summary {
    run: usize,
    admission: usize,
    preflight: usize,
    changed: usize,
    failures: Vec<String>,
}

fn gvk(group: &str, version: &str, kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

fn dynamic(
    client: &kube::Client,
    resource: &ApiResource,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    }
}

/// resourceVersions of everything a migration changes, and of the vmi
/// namespace's ConfigMaps and Secrets.
async fn cluster_fingerprint(client: &kube::Client, namespace: &str) -> Vec<String> {
    let mut out = Vec::new();
    let singles = [
        (
            gvk("config.openshift.io", "v1", "Infrastructure"),
            None,
            "cluster",
        ),
        (
            gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            None,
            "infrastructures.config.openshift.io",
        ),
        (
            gvk("", "v1", "Secret"),
            Some("kube-system"),
            "vsphere-creds",
        ),
        (
            gvk("", "v1", "Secret"),
            Some("openshift-machine-api"),
            "vsphere-cloud-credentials",
        ),
        (
            gvk("", "v1", "Secret"),
            Some("openshift-cloud-controller-manager"),
            "vsphere-cloud-credentials",
        ),
        (
            gvk("", "v1", "Secret"),
            Some("openshift-cluster-csi-drivers"),
            "vmware-vsphere-cloud-credentials",
        ),
        (
            gvk("", "v1", "Secret"),
            Some("openshift-cluster-storage-operator"),
            "vsphere-cloud-credentials",
        ),
        (
            gvk("", "v1", "ConfigMap"),
            Some("openshift-config"),
            "cloud-provider-config",
        ),
        (
            gvk("machine.openshift.io", "v1", "ControlPlaneMachineSet"),
            Some("openshift-machine-api"),
            "cluster",
        ),
        (
            gvk("apps", "v1", "Deployment"),
            Some("openshift-cluster-version"),
            "cluster-version-operator",
        ),
    ];
    for (resource, ns, name) in &singles {
        let object = dynamic(client, resource, *ns).get_opt(name).await.unwrap();
        let version = object
            .and_then(|o| o.metadata.resource_version)
            .unwrap_or_else(|| "absent".into());
        out.push(format!(
            "{} {}/{name}@{version}",
            resource.kind,
            ns.unwrap_or("")
        ));
    }
    for (resource, ns) in [
        (
            gvk("machine.openshift.io", "v1beta1", "MachineSet"),
            "openshift-machine-api",
        ),
        (
            gvk("machine.openshift.io", "v1beta1", "Machine"),
            "openshift-machine-api",
        ),
        (gvk("", "v1", "ConfigMap"), namespace),
        (gvk("", "v1", "Secret"), namespace),
    ] {
        let list = dynamic(client, &resource, Some(ns))
            .list(&ListParams::default())
            .await
            .unwrap();
        for object in list.items {
            out.push(format!(
                "{} {ns}/{}@{}",
                resource.kind,
                object.metadata.name.unwrap_or_default(),
                object.metadata.resource_version.unwrap_or_default()
            ));
        }
    }
    out
}

/// Both vCenters' inventory (`govc find /`, `govc ls -l` three levels down),
/// tag categories and tags, read all at once.
fn vcenter_fingerprint(cluster: &SimCluster) -> Vec<String> {
    let commands: [&[&str]; 4] = [
        &["find", "/"],
        &["ls", "-l", "/*", "/*/*", "/*/*/*"],
        &["tags.category.ls"],
        &["tags.ls"],
    ];
    std::thread::scope(|scope| {
        let running: Vec<_> = [&cluster.source, &cluster.target]
            .into_iter()
            .flat_map(|sim| commands.iter().map(move |args| (sim, *args)))
            .map(|(sim, args)| {
                scope.spawn(move || {
                    format!(
                        "{} {}:\n{}",
                        sim.role,
                        args.join(" "),
                        sim.govc(args).unwrap()
                    )
                })
            })
            .collect();
        running.into_iter().map(|r| r.join().unwrap()).collect()
    })
}

async fn patch_status(client: &kube::Client, resource: &ApiResource, name: &str, status: Value) {
    dynamic(client, resource, None)
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .unwrap();
}

/// `object` as it can be created again: without server-set metadata.
fn recreatable(object: &DynamicObject) -> Value {
    let mut value = serde_json::to_value(object).unwrap();
    let metadata = value["metadata"].as_object_mut().unwrap();
    for field in [
        "resourceVersion",
        "uid",
        "creationTimestamp",
        "managedFields",
        "generation",
    ] {
        metadata.remove(field);
    }
    value
}

/// Deletes `name` and waits until it is gone.
async fn delete_and_wait(api: &Api<DynamicObject>, name: &str) {
    api.delete(name, &DeleteParams::default()).await.unwrap();
    for _ in 0..100 {
        if api.get_opt(name).await.unwrap().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} was not deleted");
}

/// Replaces `object` by `with` (delete, then create with its status).
async fn replace(client: &kube::Client, api: &Api<DynamicObject>, name: &str, with: &Value) {
    delete_and_wait(api, name).await;
    vmi_sim::seed::create(client, with).await.unwrap();
}

/// The conditions of `object` with `kind` set to `status` (added when
/// absent), with `reason` and `message`.
fn with_condition(
    object: &DynamicObject,
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
) -> Value {
    let mut conditions: Vec<Value> = object.data["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    conditions.retain(|c| c["type"] != kind);
    conditions.push(
        json!({"type": kind, "status": status, "reason": reason, "message": message,
        "lastTransitionTime": "2026-11-21T00:00:00Z"}),
    );
    json!(conditions)
}

/// A changed environment and how to put it back.
enum Restore {
    Nothing,
    /// Merge-patch the status of a cluster-scoped object back.
    Status(ApiResource, String, Value),
    /// Replace a (cluster-scoped or namespaced) object by its old self.
    Object(ApiResource, Option<String>, String, Value),
    /// Create the object again.
    Recreate(Value),
    /// Delete a PersistentVolume.
    DeletePv(String),
    /// Stop a vCenter of the case's own.
    Stop(u32),
}

/// Changes the environment for `env`; returns how to restore it and, for a
/// case with a vCenter of its own, that vCenter.
async fn set_up(
    cluster: &SimCluster,
    client: &kube::Client,
    env: Env,
    namespace: &str,
    facts: &Facts,
) -> (Restore, Option<VCenterFacts>) {
    let version = gvk("config.openshift.io", "v1", "ClusterVersion");
    let operator = gvk("config.openshift.io", "v1", "ClusterOperator");
    let cpms = gvk("machine.openshift.io", "v1", "ControlPlaneMachineSet");
    let infrastructure = gvk("config.openshift.io", "v1", "Infrastructure");
    let secret = gvk("", "v1", "Secret");
    let restore = match env {
        Env::Seeded => Restore::Nothing,
        Env::Upgrading | Env::VersionFailing => {
            let current = dynamic(client, &version, None)
                .get("version")
                .await
                .unwrap();
            let conditions = if env == Env::Upgrading {
                with_condition(
                    &current,
                    "Progressing",
                    "True",
                    "",
                    "Working towards 4.22.4: 512 of 903 done (56% complete)",
                )
            } else {
                with_condition(
                    &current,
                    "Failing",
                    "True",
                    "ClusterOperatorDegraded",
                    "Could not update clusteroperator \"storage\"",
                )
            };
            patch_status(
                client,
                &version,
                "version",
                json!({"conditions": conditions}),
            )
            .await;
            Restore::Status(
                version,
                "version".into(),
                json!({"conditions": current.data["status"]["conditions"]}),
            )
        }
        Env::OperatorDegraded | Env::OperatorUnavailable => {
            let name = if env == Env::OperatorDegraded {
                "storage"
            } else {
                "ingress"
            };
            let current = dynamic(client, &operator, None).get(name).await.unwrap();
            let conditions = if env == Env::OperatorDegraded {
                with_condition(
                    &current,
                    "Degraded",
                    "True",
                    "VSphereProblemDetector",
                    "vSphere problem detector failed",
                )
            } else {
                with_condition(
                    &current,
                    "Available",
                    "False",
                    "IngressUnavailable",
                    "no router pod is ready",
                )
            };
            patch_status(client, &operator, name, json!({"conditions": conditions})).await;
            Restore::Status(
                operator,
                name.into(),
                json!({"conditions": current.data["status"]["conditions"]}),
            )
        }
        Env::CpmsMissing
        | Env::CpmsOnDelete
        | Env::CpmsInactiveUnready
        | Env::CpmsUnknownDomain => {
            let api = dynamic(client, &cpms, Some("openshift-machine-api"));
            let current = api.get("cluster").await.unwrap();
            let old = recreatable(&current);
            let mut new = old.clone();
            match env {
                Env::CpmsMissing => {
                    delete_and_wait(&api, "cluster").await;
                    return (Restore::Recreate(old), None);
                }
                Env::CpmsOnDelete => new["spec"]["strategy"]["type"] = json!("OnDelete"),
                Env::CpmsInactiveUnready => {
                    new["spec"]["state"] = json!("Inactive");
                    new["status"]["readyReplicas"] = json!(2);
                    new["status"]["updatedReplicas"] = json!(2);
                    new["status"]["unavailableReplicas"] = json!(1);
                }
                _ => {
                    new["spec"]["template"]["machines_v1beta1_machine_openshift_io"]["failureDomains"]
                        ["vsphere"] =
                        json!([{"name": "generated-failure-domain"}, {"name": "retired-domain"}]);
                }
            }
            // Active cannot become Inactive in place (the CRD's rule), and a
            // whole object is simplest to put back: replace it.
            replace(client, &api, "cluster", &new).await;
            Restore::Object(
                cpms,
                Some("openshift-machine-api".into()),
                "cluster".into(),
                old,
            )
        }
        Env::TwoVCenters | Env::NoInfrastructureId => {
            let api = dynamic(client, &infrastructure, None);
            let current = api.get("cluster").await.unwrap();
            let old = recreatable(&current);
            if env == Env::NoInfrastructureId {
                patch_status(
                    client,
                    &infrastructure,
                    "cluster",
                    json!({"infrastructureName": ""}),
                )
                .await;
                return (
                    Restore::Status(
                        infrastructure,
                        "cluster".into(),
                        json!({"infrastructureName": facts.infra_id}),
                    ),
                    None,
                );
            }
            let mut new = old.clone();
            new["spec"]["platformSpec"]["vsphere"]["vcenters"]
                .as_array_mut()
                .unwrap()
                .push(json!({"server": "vcenter-old.example.com", "datacenters": ["dc-old"]}));
            // On create the 4.22 rule "vcenters cannot be added or removed
            // once set" has no old object to compare with.
            replace(client, &api, "cluster", &new).await;
            Restore::Object(infrastructure, None, "cluster".into(), old)
        }
        Env::SourceKeysMissing | Env::RootSecretMissing => {
            let api = dynamic(client, &secret, Some("kube-system"));
            let current = api.get("vsphere-creds").await.unwrap();
            let old = recreatable(&current);
            if env == Env::RootSecretMissing {
                delete_and_wait(&api, "vsphere-creds").await;
                return (Restore::Recreate(old), None);
            }
            let mut new = old.clone();
            let data = new["data"].as_object_mut().unwrap();
            data.retain(|k, _| !k.starts_with(&format!("{}.", facts.source.server)));
            data.insert("vcenter-a.example.com.username".into(), json!("YWRtaW4="));
            data.insert("vcenter-a.example.com.password".into(), json!("c2VjcmV0"));
            replace(client, &api, "vsphere-creds", &new).await;
            Restore::Object(
                secret,
                Some("kube-system".into()),
                "vsphere-creds".into(),
                old,
            )
        }
        Env::InTreeVolume => {
            let pv: PersistentVolume = serde_json::from_value(json!({
                "metadata": {"name": "hostile-in-tree"},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "vsphereVolume": {"volumePath": "[datastore-a] kubevols/hostile.vmdk", "fsType": "ext4"}},
            }))
            .unwrap();
            Api::<PersistentVolume>::all(client.clone())
                .create(&PostParams::default(), &pv)
                .await
                .unwrap();
            Restore::DeletePv("hostile-in-tree".into())
        }
        Env::WrongCaBundle => {
            let map: ConfigMap = serde_json::from_value(json!({
                "metadata": {"name": "other-ca", "namespace": namespace},
                "data": {"ca-bundle.crt": facts.source.ca_pem},
            }))
            .unwrap();
            Api::<ConfigMap>::namespaced(client.clone(), namespace)
                .create(&PostParams::default(), &map)
                .await
                .unwrap();
            Restore::Nothing
        }
        Env::ExpiringSessions | Env::SourceTwin => {
            let source_uuid = if env == Env::SourceTwin {
                let about: Value =
                    serde_json::from_str(&cluster.source.govc(&["about", "-json"]).unwrap())
                        .unwrap();
                Some(about["about"]["instanceUuid"].as_str().unwrap().to_owned())
            } else {
                None
            };
            let sim = tokio::task::spawn_blocking(move || {
                let flags: Vec<&str> = match &source_uuid {
                    Some(uuid) => vec!["-instance-uuid", uuid],
                    None => Vec::new(),
                };
                let sim =
                    VCenterSim::start_with("case", "operator", "case-password-1", &flags).unwrap();
                Inventory::target().create_in(&sim).unwrap();
                if source_uuid.is_none() {
                    // Every session from now on ends a nanosecond after its
                    // last call: the next call finds it gone.
                    sim.govc(&["option.set", "config.vmacore.soap.sessionTimeout", "1ns"])
                        .unwrap();
                }
                sim
            })
            .await
            .unwrap();
            let own = VCenterFacts::of(&sim);
            return (Restore::Stop(sim.process.pid), Some(own));
        }
    };
    (restore, None)
}

async fn tear_down(client: &kube::Client, restore: Restore) {
    match restore {
        Restore::Nothing => {}
        Restore::Status(resource, name, status) => {
            patch_status(client, &resource, &name, status).await
        }
        Restore::Object(resource, namespace, name, old) => {
            let api = dynamic(client, &resource, namespace.as_deref());
            replace(client, &api, &name, &old).await;
        }
        Restore::Recreate(old) => {
            vmi_sim::seed::create(client, &old).await.unwrap();
        }
        Restore::DeletePv(name) => {
            Api::<PersistentVolume>::all(client.clone())
                .delete(&name, &DeleteParams::default())
                .await
                .unwrap();
        }
        Restore::Stop(pid) => vmi_sim::children::stop(&[pid], Duration::from_secs(5)),
    }
}

/// `text` with `{source}`, `{target}` and `{infra}` filled in.
fn fill(text: &str, facts: &Facts) -> String {
    text.replace("{source}", &facts.source.server)
        .replace("{target}", &facts.target.server)
        .replace("{infra}", &facts.infra_id)
}

/// Creates the vmi's credentials Secret as the case wants it.
async fn create_secret(client: &kube::Client, case: &Case, facts: &Facts, namespace: &str) {
    let data: SecretData = match case.creds {
        Creds::Missing => return,
        Creds::Custom(make) => make(facts),
        Creds::Target => target_keys(
            facts,
            facts.target.username.as_bytes(),
            facts.target.password.as_bytes(),
        ),
    };
    let mut secret = Secret::default();
    secret.metadata.name = Some("vcenter-b-credentials".into());
    secret.metadata.namespace = Some(namespace.into());
    secret.data = Some(
        data.into_iter()
            .map(|(k, v)| (k, k8s_openapi::ByteString(v)))
            .collect(),
    );
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

/// Applies the case's vmi (the JSON exactly as edited) and, when the API
/// server takes it, gives it the status entry the orchestrator writes
/// before it starts the preflight Job. The API server's refusal, if any.
async fn create_vmi(
    client: &kube::Client,
    case: &Case,
    facts: &Facts,
    namespace: &str,
) -> Option<String> {
    let mut vmi = base_vmi(facts, namespace);
    (case.spec)(&mut vmi, facts);
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        namespace,
        &ApiResource::erase::<VSphereMigrationInfra>(&()),
    );
    let object: DynamicObject = serde_json::from_value(vmi).unwrap();
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) => return Some(status.message),
        Err(err) => panic!("{}: create the vmi: {err}", case.name),
    }
    let index = Step::ALL
        .iter()
        .position(|s| *s == Step::Preflight)
        .unwrap();
    api.patch_status(
        "hostile",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Pending", "steps": [{
            "index": index, "name": Step::Preflight.name(),
            "jobName": format!("vmi-step-{index:02}-{}", Step::Preflight.name()),
            "attempt": 1, "state": "Running"}]}})),
    )
    .await
    .unwrap();
    None
}

/// A namespace of its own for case `n`, once its root CA ConfigMap is
/// there (so that the namespace's ConfigMaps stay as they are).
async fn new_namespace(client: &kube::Client, n: usize) -> String {
    let name = format!("hostile-{n}");
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let maps = Api::<ConfigMap>::namespaced(client.clone(), &name);
    for _ in 0..200 {
        if maps.get_opt("kube-root-ca.crt").await.unwrap().is_some() {
            return name;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("namespace {name} got no kube-root-ca.crt");
}

/// What one case came to.
struct Run {
    outcome: Outcome,
    errors: Vec<String>,
    changed: bool,
    /// The refusal, as the API server or preflight wrote it.
    message: String,
}

/// Runs one case: sets up, applies, runs preflight when the vmi is taken,
/// compares, restores.
async fn run_case(
    cluster: &SimCluster,
    client: &kube::Client,
    case: &Case,
    n: usize,
    seeded: &Facts,
) -> Run {
    let namespace = new_namespace(client, n).await;
    let mut errors = Vec::new();
    let (restore, own) = set_up(cluster, client, case.env, &namespace, seeded).await;
    let mut facts = seeded.clone();
    if let Some(own) = own {
        facts.target = own;
    }
    create_secret(client, case, &facts, &namespace).await;
    let before = cluster_fingerprint(client, &namespace).await;
    let vcenters_before = (case.at == Where::Preflight).then(|| vcenter_fingerprint(cluster));
    let refusal = create_vmi(client, case, &facts, &namespace).await;
    let (outcome, message) = match (case.at, refusal) {
        (Where::Admission, Some(message)) => (Outcome::RefusedAtAdmission, message),
        (Where::Admission, None) => {
            errors.push("the API server accepted the vmi".into());
            (Outcome::Failed, String::new())
        }
        (Where::Preflight, Some(message)) => {
            errors.push("expected preflight to refuse it, but the API server did".into());
            (Outcome::Failed, message)
        }
        (Where::Preflight, None) => {
            let vmi = vmi_step_runner::target::VmiRef {
                namespace: namespace.clone(),
                name: "hostile".into(),
            };
            match run_step(cluster, &vmi, Action::Step(Step::Preflight)).await {
                Err(StepError::Refused(message)) => {
                    if !message.ends_with("nothing was changed") {
                        errors.push("the refusal does not end with \"nothing was changed\"".into());
                    }
                    if case.problems > 0 {
                        let entry = step_status(client, &vmi, Step::Preflight).await;
                        let count = entry
                            .findings
                            .iter()
                            .filter(|f| f.starts_with("problem: "))
                            .count();
                        if count != case.problems {
                            errors.push(format!(
                                "{count} problem(s) found, expected {}",
                                case.problems
                            ));
                        }
                        let result =
                            format!("{} problem(s) found; nothing was changed", case.problems);
                        if entry.result.as_deref() != Some(result.as_str()) {
                            errors.push(format!("status result {:?}", entry.result));
                        }
                    }
                    (Outcome::RefusedByPreflight, message)
                }
                Err(other) => {
                    errors.push(format!("preflight failed, but not with Refused: {other:?}"));
                    (Outcome::Failed, other.to_string())
                }
                Ok(()) => {
                    errors.push("preflight passed".into());
                    (Outcome::Failed, String::new())
                }
            }
        }
    };
    for fragment in case.expect {
        let fragment = fill(fragment, &facts);
        if !message.contains(&fragment) {
            errors.push(format!("the message lacks {fragment:?}"));
        }
    }
    let after = cluster_fingerprint(client, &namespace).await;
    let mut changed = false;
    if after != before {
        changed = true;
        errors.push(format!("the cluster changed: {:?}", diff(&before, &after)));
    }
    if let Some(vcenters_before) = vcenters_before {
        let vcenters_after = vcenter_fingerprint(cluster);
        if vcenters_after != vcenters_before {
            changed = true;
            errors.push(format!(
                "a vCenter changed: {:?}",
                diff(&vcenters_before, &vcenters_after)
            ));
        }
    }
    tear_down(client, restore).await;
    if !errors.is_empty() {
        errors.push(format!("message: {message}"));
    }
    println!(
        "{:<3} {:<72} {}",
        n,
        case.name,
        match (outcome, errors.is_empty()) {
            (_, false) => "FAILED".to_owned(),
            (Outcome::RefusedAtAdmission, true) => format!("admission: {}", first_line(&message)),
            (_, true) => format!("preflight: {}", first_line(&message)),
        }
    );
    Run {
        outcome,
        errors,
        changed,
        message,
    }
}

fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or_default();
    if line.chars().count() > 160 {
        format!("{}…", line.chars().take(160).collect::<String>())
    } else {
        line.to_owned()
    }
}

fn diff(before: &[String], after: &[String]) -> Vec<String> {
    let mut out: Vec<String> = before
        .iter()
        .filter(|l| !after.contains(l))
        .map(|l| format!("- {l}"))
        .collect();
    out.extend(
        after
            .iter()
            .filter(|l| !before.contains(l))
            .map(|l| format!("+ {l}")),
    );
    out
}

/// A port on `address` where nothing listens.
fn closed_port(address: &str) -> u16 {
    let listener = std::net::TcpListener::bind((address, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    // The Infrastructure and the vmi allow at most 32767.
    (20000..=32767)
        .find(|p| *p != port && std::net::TcpListener::bind((address, *p)).is_ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_input_is_refused_before_anything_changes() {
    let started = Instant::now();
    let cluster = SimCluster::start(SeedOptions::default()).await.unwrap();
    let client = cluster.client().await.unwrap();
    let seeded = Facts {
        source: VCenterFacts::of(&cluster.source),
        target: VCenterFacts::of(&cluster.target),
        infra_id: cluster.options.infra_id.clone(),
        closed_port: closed_port(&cluster.target.server),
    };
    let setup = started.elapsed();

    // The base vmi passes preflight: each case fails for its own reason.
    let control = preflight("control: the base vmi passes", |_, _| {}, &[]);
    let namespace = new_namespace(&client, 0).await;
    create_secret(&client, &control, &seeded, &namespace).await;
    assert_eq!(
        create_vmi(&client, &control, &seeded, &namespace).await,
        None
    );
    let vmi = vmi_step_runner::target::VmiRef {
        namespace,
        name: "hostile".into(),
    };
    run_step(&cluster, &vmi, Action::Step(Step::Preflight))
        .await
        .expect("the base vmi passes preflight");

    let vcenters_before = vcenter_fingerprint(&cluster);
    let cases = cases();
    // Every refusal in full, one line each, for docs/hostile-inputs.md.
    let mut report = String::new();
    let mut summary = Summary::default();
    for (n, case) in cases.iter().enumerate() {
        let case_started = Instant::now();
        let Run {
            outcome,
            errors,
            changed,
            message,
        } = run_case(&cluster, &client, case, n + 1, &seeded).await;
        report.push_str(&format!(
            "{}\t{}\t{:?}\t{}\n",
            n + 1,
            case.name,
            outcome,
            message.replace('\n', "\\n")
        ));
        summary.run += 1;
        match outcome {
            Outcome::RefusedAtAdmission => summary.admission += 1,
            Outcome::RefusedByPreflight => summary.preflight += 1,
            Outcome::Failed => {}
        }
        if changed {
            summary.changed += 1;
        }
        if !errors.is_empty() {
            summary
                .failures
                .push(format!("{}:\n  {}", case.name, errors.join("\n  ")));
        }
        if case_started.elapsed() > Duration::from_secs(20) {
            println!(
                "  ({} took {:.1} s)",
                case.name,
                case_started.elapsed().as_secs_f64()
            );
        }
    }
    let vcenters_after = vcenter_fingerprint(&cluster);
    if vcenters_after != vcenters_before {
        summary.changed += 1;
        summary.failures.push(format!(
            "the vCenters changed over the run: {:?}",
            diff(&vcenters_before, &vcenters_after)
        ));
    }
    let report_path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("hostile-inputs.tsv");
    std::fs::write(&report_path, report).unwrap();
    println!("every refusal in full: {}", report_path.display());
    println!(
        "hostile inputs: {} cases run, {} refused at admission, {} refused by preflight, {} changed state, {} failed (setup {:.1} s, total {:.1} s)",
        summary.run,
        summary.admission,
        summary.preflight,
        summary.changed,
        summary.failures.len(),
        setup.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(cases.len() >= 40, "the table must keep at least 40 cases");
    assert!(
        summary.failures.is_empty(),
        "{} case(s) failed:\n{}",
        summary.failures.len(),
        summary.failures.join("\n")
    );
}
