//! `infrastructure/cluster` and the one change the migration makes to it
//! before the machines move: adding the target vCenters and failure domains
//! (step 07), which preflight also tries as a server-side dry run to choose
//! the migration path.
//!
//! The change is a merge patch of exactly the `vcenters` and
//! `failureDomains` lists, guarded by the resourceVersion they were read
//! at, so a field the migration does not own (node networking, IPs,
//! anything a newer release adds) is never sent, and a concurrent writer
//! makes the write fail instead of being overwritten.

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};
use vmi_api::topology::FailureDomain;

use crate::context::{StepContext, StepError};

/// The object every step names in messages.
pub const OBJECT: &str = "infrastructure/cluster";

/// The Infrastructure API.
pub fn api(context: &StepContext) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "config.openshift.io",
        "v1",
        "Infrastructure",
    ));
    Api::all_with(context.client.clone(), &resource)
}

/// `spec.platformSpec.vsphere` of `infrastructure/cluster` as stored, with
/// the resourceVersion it was read at.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The vSphere platform spec.
    pub vsphere: Value,
    /// The object's resourceVersion, which a write must still match.
    pub resource_version: String,
}

/// Reads `spec.platformSpec.vsphere` of `infrastructure/cluster`.
pub async fn read_vsphere(context: &StepContext) -> Result<Stored, StepError> {
    let infrastructure = api(context)
        .get("cluster")
        .await
        .map_err(StepError::kube(format!("read {OBJECT}")))?;
    let vsphere = infrastructure.data["spec"]["platformSpec"]["vsphere"].clone();
    if !vsphere.is_object() {
        return Err(StepError::Refused(format!(
            "{OBJECT} has no spec.platformSpec.vsphere: this is not an OpenShift cluster on vSphere (or it predates failure domains); nothing was changed"
        )));
    }
    Ok(Stored {
        vsphere,
        resource_version: infrastructure.metadata.resource_version.unwrap_or_default(),
    })
}

/// The list at `key` of the vSphere spec (empty when absent).
pub fn list<'a>(vsphere: &'a Value, key: &str) -> &'a [Value] {
    vsphere[key].as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// The Infrastructure's vCenter entry for a target vCenter: the fields of
/// `VSpherePlatformVCenterSpec` (TLS settings are vmi's own, not the
/// cluster's).
fn vcenter_entry(server: &str, port: Option<i32>, datacenters: &[String]) -> Value {
    let mut entry = json!({"server": server, "datacenters": datacenters});
    if let Some(port) = port {
        entry["port"] = json!(port);
    }
    entry
}

/// How `vsphere` must change to hold the vmi's targets.
#[derive(Debug, Clone, PartialEq)]
pub struct AddTargets {
    /// The `vcenters` list now.
    pub vcenters_before: Vec<Value>,
    /// The `failureDomains` list now.
    pub failure_domains_before: Vec<Value>,
    /// The `vcenters` list with the targets.
    pub vcenters_after: Vec<Value>,
    /// The `failureDomains` list with the targets.
    pub failure_domains_after: Vec<Value>,
    /// One line per entry added.
    pub added: Vec<String>,
}

impl AddTargets {
    /// Whether the Infrastructure already holds every target.
    pub fn is_noop(&self) -> bool {
        self.added.is_empty()
    }

    /// Works out the change from the stored vSphere spec and the vmi's
    /// targets. An entry of the same name that differs from the vmi's is
    /// refused: the migration does not edit what it did not add.
    pub fn plan(
        vsphere: &Value,
        targets: &[vmi_api::topology::TargetVCenter],
        failure_domains: &[FailureDomain],
    ) -> Result<AddTargets, StepError> {
        let vcenters_before = list(vsphere, "vcenters").to_vec();
        let failure_domains_before = list(vsphere, "failureDomains").to_vec();
        let mut vcenters_after = vcenters_before.clone();
        let mut failure_domains_after = failure_domains_before.clone();
        let mut added = Vec::new();
        for target in targets {
            let wanted = vcenter_entry(&target.server, target.port, &target.datacenters);
            match vcenters_before
                .iter()
                .find(|v| v["server"].as_str() == Some(target.server.as_str()))
            {
                Some(existing) if same_vcenter(existing, &wanted) => {}
                Some(existing) => {
                    return Err(StepError::Refused(format!(
                        "{OBJECT} already lists vCenter {} as {existing}, which differs from spec.vcenters ({wanted}); make them agree (edit the vmi or the Infrastructure), then retry; nothing was changed",
                        target.server
                    )));
                }
                None => {
                    added.push(format!("vCenter {}", target.server));
                    vcenters_after.push(wanted);
                }
            }
        }
        for domain in failure_domains {
            let wanted = serde_json::to_value(domain)
                .map_err(|e| StepError::Refused(format!("internal: {e}")))?;
            match failure_domains_before
                .iter()
                .find(|f| f["name"].as_str() == Some(domain.name.as_str()))
            {
                Some(existing) if existing == &wanted => {}
                Some(existing) => {
                    return Err(StepError::Refused(format!(
                        "{OBJECT} already has a failure domain named {} ({existing}) that differs from the vmi's ({wanted}); rename the vmi's failure domain, then retry; nothing was changed",
                        domain.name
                    )));
                }
                None => {
                    added.push(format!("failure domain {}", domain.name));
                    failure_domains_after.push(wanted);
                }
            }
        }
        let servers: Vec<&str> = vcenters_after
            .iter()
            .filter_map(|v| v["server"].as_str())
            .collect();
        if let Some(orphan) = failure_domains_after
            .iter()
            .find(|f| !servers.contains(&f["server"].as_str().unwrap_or_default()))
        {
            return Err(StepError::Refused(format!(
                "failure domain {} names server {}, which is in no vcenters entry; every failure domain's server must be a vCenter of the cluster (the cloud controller manager operator crashes otherwise); fix spec.failureDomains, then retry; nothing was changed",
                orphan["name"], orphan["server"]
            )));
        }
        Ok(AddTargets {
            vcenters_before,
            failure_domains_before,
            vcenters_after,
            failure_domains_after,
            added,
        })
    }

    /// The change as a merge patch of the two lists, valid only against
    /// `resource_version` (the object as read).
    pub fn patch(&self, resource_version: &str) -> Value {
        lists_patch(
            resource_version,
            &self.vcenters_after,
            &self.failure_domains_after,
        )
    }
}

/// Two vCenter entries are the same when server, port and the set of
/// datacenters agree.
fn same_vcenter(a: &Value, b: &Value) -> bool {
    let datacenters = |v: &Value| {
        let mut d: Vec<String> = list(v, "datacenters")
            .iter()
            .filter_map(|d| d.as_str().map(str::to_owned))
            .collect();
        d.sort();
        d
    };
    a["server"] == b["server"] && a["port"] == b["port"] && datacenters(a) == datacenters(b)
}

/// A merge patch setting the two lists (a merge patch replaces a list
/// whole) and nothing else, refused with a conflict unless the object is
/// still at `resource_version`.
///
/// Not a JSON patch with `test` ops on the lists: the API server compares a
/// `test` value with the stored JSON byte for byte, and Go escapes `&`, `<`
/// and `>` where serde does not, so a datacenter named `R&D` would never
/// match.
pub fn lists_patch(resource_version: &str, vcenters: &[Value], failure_domains: &[Value]) -> Value {
    json!({
        "metadata": {"resourceVersion": resource_version},
        "spec": {"platformSpec": {"vsphere": {
            "vcenters": vcenters,
            "failureDomains": failure_domains,
        }}},
    })
}

/// How the API server answered a change to the Infrastructure.
#[derive(Debug)]
pub enum Answer {
    /// Accepted (stored, or for a dry run: would be stored).
    Accepted,
    /// Refused by validation: the message says which rule.
    Refused(String),
    /// The object changed since it was read: read again and retry.
    Conflict,
}

/// Sends `patch` to `infrastructure/cluster`, as a server-side dry run when
/// `dry_run` (validation and admission run, nothing is stored).
pub async fn send(
    context: &StepContext,
    patch: &Value,
    dry_run: bool,
) -> Result<Answer, StepError> {
    let params = PatchParams {
        dry_run,
        ..PatchParams::default()
    };
    match api(context)
        .patch("cluster", &params, &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(Answer::Accepted),
        Err(kube::Error::Api(status)) if status.code == 422 || status.code == 400 => {
            Ok(Answer::Refused(status.message))
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Answer::Conflict),
        Err(e) => Err(StepError::Kube {
            action: format!("update {OBJECT}"),
            source: e,
        }),
    }
}

/// The rule of the Infrastructure CRD (OpenShift 4.17–4.22, Default feature
/// set) that refuses a second vCenter after installation.
pub const BLOCKING_RULE_MESSAGE: &str = "vcenters cannot be added or removed once set";

#[cfg(test)]
mod tests {
    use super::*;
    use vmi_api::topology::{TargetVCenter, Topology};

    fn source() -> Value {
        json!({
            "vcenters": [{"server": "a.example.com", "port": 443, "datacenters": ["dc-a"]}],
            "failureDomains": [{"name": "generated-failure-domain", "region": "generated-region",
                "zone": "generated-zone", "server": "a.example.com",
                "topology": {"datacenter": "dc-a", "computeCluster": "/dc-a/host/c",
                    "networks": ["n"], "datastore": "/dc-a/datastore/d"}}],
            "nodeNetworking": {"external": {}, "internal": {}},
            "apiServerInternalIPs": ["192.0.2.10"],
        })
    }

    fn target() -> (TargetVCenter, FailureDomain) {
        let vcenter: TargetVCenter = serde_json::from_value(json!({
            "server": "b.example.com", "port": 443, "datacenters": ["dc-b"],
            "tls": {"thumbprint": "AA:BB"}}))
        .unwrap();
        let domain = FailureDomain {
            name: "b-1".into(),
            region: "rb".into(),
            zone: "zb".into(),
            server: "b.example.com".into(),
            topology: Topology {
                datacenter: "dc-b".into(),
                compute_cluster: "/dc-b/host/c".into(),
                networks: vec!["/dc-b/network/n".into()],
                datastore: "/dc-b/datastore/d".into(),
                resource_pool: None,
                folder: None,
                template: None,
            },
            region_affinity: None,
            zone_affinity: None,
        };
        (vcenter, domain)
    }

    #[test]
    fn adds_the_target_without_its_tls_and_keeps_the_source() {
        let (vcenter, domain) = target();
        let plan = AddTargets::plan(&source(), &[vcenter], &[domain]).unwrap();
        assert_eq!(plan.added, ["vCenter b.example.com", "failure domain b-1"]);
        assert_eq!(plan.vcenters_after.len(), 2);
        assert_eq!(plan.vcenters_after[0], source()["vcenters"][0]);
        assert_eq!(
            plan.vcenters_after[1],
            json!({"server": "b.example.com", "port": 443, "datacenters": ["dc-b"]})
        );
        assert_eq!(plan.failure_domains_after.len(), 2);
        let patch = plan.patch("42");
        assert_eq!(patch["metadata"], json!({"resourceVersion": "42"}));
        assert_eq!(
            patch["spec"]["platformSpec"]["vsphere"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["failureDomains", "vcenters"],
            "only the two lists are sent"
        );
    }

    #[test]
    fn a_second_plan_on_the_result_is_a_noop() {
        let (vcenter, domain) = target();
        let plan = AddTargets::plan(
            &source(),
            std::slice::from_ref(&vcenter),
            std::slice::from_ref(&domain),
        )
        .unwrap();
        let mut after = source();
        after["vcenters"] = json!(plan.vcenters_after);
        after["failureDomains"] = json!(plan.failure_domains_after);
        assert!(
            AddTargets::plan(&after, &[vcenter], &[domain])
                .unwrap()
                .is_noop()
        );
    }

    #[test]
    fn a_different_entry_of_the_same_name_is_refused() {
        let (vcenter, mut domain) = target();
        domain.name = "generated-failure-domain".into();
        let err = AddTargets::plan(&source(), std::slice::from_ref(&vcenter), &[domain])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("already has a failure domain named generated-failure-domain"),
            "{err}"
        );
        let mut taken = source();
        taken["vcenters"][0]["server"] = json!("b.example.com");
        taken["failureDomains"] = json!([]);
        let err = AddTargets::plan(&taken, &[vcenter], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("already lists vCenter b.example.com"), "{err}");
    }

    #[test]
    fn a_failure_domain_without_its_vcenter_is_refused() {
        let (_, domain) = target();
        let err = AddTargets::plan(&source(), &[], &[domain])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("names server \"b.example.com\", which is in no vcenters entry"),
            "{err}"
        );
    }
}
