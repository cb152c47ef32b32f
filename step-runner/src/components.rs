//! The vSphere components of an OpenShift cluster that read the vCenter
//! configuration and credentials, and the log lines that show one of them
//! failing. Steps 09 and 10 (and 15 again) restart and watch exactly these.
//!
//! Names and selector labels are those of the release payload; they are the
//! same from OpenShift 4.14 to 4.22 (research `openshift-vsphere.md` §6.2).
//! A release that lacks one of them is reported, not guessed at.

/// How a component runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A Deployment.
    Deployment,
    /// A DaemonSet (one pod per node).
    DaemonSet,
}

/// One component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Component {
    /// Its namespace.
    pub namespace: &'static str,
    /// Its Deployment or DaemonSet.
    pub name: &'static str,
    /// Deployment or DaemonSet.
    pub kind: Kind,
    /// The label selector of its pods.
    pub selector: &'static str,
    /// Why it is restarted.
    pub why: &'static str,
}

/// The components, in the order they are restarted: the operators first,
/// so the operands they render are current when the operands restart.
pub const COMPONENTS: &[Component] = &[
    Component {
        namespace: "openshift-cloud-controller-manager",
        name: "vsphere-cloud-controller-manager",
        kind: Kind::Deployment,
        selector: "k8s-app=vsphere-cloud-controller-manager",
        why: "initialises Nodes and their zones from the vCenters it knows",
    },
    Component {
        namespace: "openshift-machine-api",
        name: "machine-api-controllers",
        kind: Kind::Deployment,
        selector: "api=clusterapi,k8s-app=controller",
        why: "creates and deletes machine VMs in the vCenter their providerSpec names",
    },
    Component {
        namespace: "openshift-cluster-csi-drivers",
        name: "vmware-vsphere-csi-driver-operator",
        kind: Kind::Deployment,
        selector: "name=vmware-vsphere-csi-driver-operator",
        why: "renders the CSI driver's configuration from cloud-provider-config",
    },
    Component {
        namespace: "openshift-cluster-csi-drivers",
        name: "vmware-vsphere-csi-driver-controller",
        kind: Kind::Deployment,
        selector: "app=vmware-vsphere-csi-driver-controller",
        why: "provisions and attaches volumes in every configured vCenter",
    },
    Component {
        namespace: "openshift-cluster-csi-drivers",
        name: "vmware-vsphere-csi-driver-node",
        kind: Kind::DaemonSet,
        selector: "app=vmware-vsphere-csi-driver-node",
        why: "mounts volumes on each node and labels its topology",
    },
    Component {
        namespace: "openshift-cluster-storage-operator",
        name: "vsphere-problem-detector-operator",
        kind: Kind::Deployment,
        selector: "name=vsphere-problem-detector-operator",
        why: "logs in to every vCenter of cloud-provider-config and reports what is wrong",
    },
];

/// A kind of failure recognisable in a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    /// A short name, e.g. `credentials`.
    pub name: &'static str,
    /// Substrings, any of which marks the line (compared case-insensitively).
    pub patterns: &'static [&'static str],
    /// What the administrator should do.
    pub remedy: &'static str,
}

/// The failure signatures, in one table (docs/steps/10-monitor-pods.md
/// shows the same).
pub const SIGNATURES: &[Signature] = &[
    Signature {
        name: "credentials",
        patterns: &[
            "incorrect user name or password",
            "cannot complete login",
            "failed to get credentials",
            "ServerFaultCode: Cannot complete login",
            ".username not found",
            ".password not found",
        ],
        remedy: "the component cannot log in: check the <server>.username/.password keys of kube-system/vsphere-creds and its copies (step 04)",
    },
    Signature {
        name: "tls",
        patterns: &[
            "x509: certificate signed by unknown authority",
            "x509: certificate is valid for",
            "tls: failed to verify certificate",
            "certificate has expired",
        ],
        remedy: "the component does not trust the vCenter's certificate: add its CA to the cluster's trust bundle or fix the vCenter certificate",
    },
    Signature {
        name: "vcenter-missing",
        patterns: &[
            "could not find vcenter",
            "vcenter not found",
            "virtualcenter not found",
            "no vsphere connection found for",
        ],
        remedy: "a vCenter of the Infrastructure is missing from cloud-provider-config (step 08) or the other way round",
    },
    Signature {
        name: "panic",
        patterns: &["panic:", "nil pointer dereference", "SIGSEGV"],
        remedy: "the component crashed; read the whole log and the container's previous log (`oc logs --previous`)",
    },
];

/// The signature `line` matches, if any.
pub fn matching(line: &str) -> Option<&'static Signature> {
    let lower = line.to_lowercase();
    SIGNATURES
        .iter()
        .find(|s| s.patterns.iter().any(|p| lower.contains(&p.to_lowercase())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_failure_lines_are_recognised() {
        for (line, name) in [
            (
                "E1121 10:00:00.1 1 connection.go:42] failed to create govmomi client: ServerFaultCode: Cannot complete login due to an incorrect user name or password.",
                "credentials",
            ),
            (
                "E1121 vsphere.go:10] Post \"https://vc2/sdk\": tls: failed to verify certificate: x509: certificate signed by unknown authority",
                "tls",
            ),
            (
                "E1121 nodemanager.go:9] Could not find vCenter for node worker-1",
                "vcenter-missing",
            ),
            (
                "panic: runtime error: invalid memory address or nil pointer dereference",
                "panic",
            ),
        ] {
            assert_eq!(matching(line).map(|s| s.name), Some(name), "{line}");
        }
        assert_eq!(matching("I1121 main.go:42] starting controller"), None);
    }

    #[test]
    fn every_component_has_a_selector_and_a_reason() {
        for c in COMPONENTS {
            assert!(c.selector.contains('='), "{c:?}");
            assert!(!c.why.is_empty());
        }
    }
}
