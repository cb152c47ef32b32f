//! Target vCenters and failure domains, shaped like OpenShift's
//! `config.openshift.io/v1` `VSpherePlatformVCenterSpec` and
//! `VSpherePlatformFailureDomainSpec`, so that step 07 can copy them into
//! `infrastructure/cluster` unchanged and the API server refuses here what
//! the Infrastructure CRD would refuse later, before anything has changed.
//!
//! The constraints repeat the Infrastructure CRD's (lengths, patterns, the
//! port range) and add the checks a migration needs on top (paths must live in
//! the failure domain's own datacenter, networks must be absolute).

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A vCenter the cluster moves to: where it is, which datacenters the
/// migration uses there, and how its TLS certificate is trusted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetVCenter {
    /// Fully qualified domain name or IP address of the vCenter, exactly as it
    /// will be written into the Infrastructure and cloud-provider-config (case
    /// sensitive). No scheme, port or path.
    #[schemars(length(min = 1, max = 255), regex(pattern = SERVER_PATTERN))]
    #[x_kube(validation = Rule::new(NUMERIC_SERVER_RULE)
        .message("spec.vcenters[].server: a server whose last label is a number must be a dotted-quad IPv4 address without leading zeros (e.g. 192.0.2.10); forms like 2130706444, 0x7f000001, 127.1 or 010.0.0.1 are read as an address by some components and as a host name by others"))]
    pub server: String,
    /// Port of the vCenter API; the platform default (443) when omitted.
    /// Limited to 1-32767 like the Infrastructure CRD's field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 32767))]
    pub port: Option<i32>,
    /// Datacenters of this vCenter that the target failure domains use.
    #[schemars(
        length(min = 1, max = 16),
        inner(length(min = 1, max = 80), regex(pattern = DATACENTER_PATTERN))
    )]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub datacenters: Vec<String>,
    /// How this vCenter's TLS certificate is trusted; the system trust store
    /// when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<VCenterTls>,
}

/// A host name (RFC 1123 labels) or an IPv4/IPv6 address; rejects schemes,
/// ports, paths and whitespace.
pub const SERVER_PATTERN: &str = r"^([A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$|^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*$";

/// CEL: a server whose last dot-separated label is numeric (digits, or `0x`
/// and hex digits) must be a canonical dotted-quad IPv4 address. URL parsers
/// (WHATWG, `inet_aton`) read `2130706444`, `0x7f000001`, `127.1` and
/// `010.0.0.1` as IPv4 addresses (the last one in octal), Go's `net.ParseIP`
/// and DNS read them as names: one vCenter would be two different hosts to
/// the components of one cluster.
pub const NUMERIC_SERVER_RULE: &str = "!self.matches('^(.*[.])?([0-9]+|0[xX][0-9A-Fa-f]*)$') || self.matches('^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])[.]){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$')";

/// A datacenter name: no `/` (it would be read as a folder path), no control
/// or format characters (NUL, newline, zero-width and bidirectional marks)
/// and no line or paragraph separators.
pub const DATACENTER_PATTERN: &str = r"^[^/\p{C}\p{Zl}\p{Zp}]+$";

/// Text written into the Infrastructure, cloud-provider-config and vCenter:
/// no control or format characters (NUL, newline, zero-width and
/// bidirectional marks) and no line or paragraph separators, which would
/// let a name inject lines into cloud-provider-config or look like another.
pub const PRINTABLE_PATTERN: &str = r"^[^\p{C}\p{Zl}\p{Zp}]+$";

/// A Kubernetes object name (RFC 1123 DNS subdomain).
pub const OBJECT_NAME_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A failure domain name (RFC 1123 DNS label): it names the worker
/// MachineSet `<infraID>-worker-<name>`, which is also a label value.
pub const FAILURE_DOMAIN_NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// A Kubernetes label value (without the empty value): region and zone
/// become the `topology.kubernetes.io/region` and `/zone` labels of every
/// Node and the `machine.openshift.io/region` and `/zone` labels of every
/// Machine.
pub const LABEL_VALUE_PATTERN: &str = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$";

/// `topology.computeCluster`: `/<datacenter>/host/<cluster>`, printable.
pub const COMPUTE_CLUSTER_PATTERN: &str = r"^/[^/\p{C}\p{Zl}\p{Zp}]+/host/[^\p{C}\p{Zl}\p{Zp}]+$";
/// `topology.networks[]`: `/<datacenter>/network/<port group>`, printable.
pub const NETWORK_PATTERN: &str = r"^/[^/\p{C}\p{Zl}\p{Zp}]+/network/[^\p{C}\p{Zl}\p{Zp}]+$";
/// `topology.datastore`: `/<datacenter>/datastore/<datastore>`, printable.
pub const DATASTORE_PATTERN: &str = r"^/[^/\p{C}\p{Zl}\p{Zp}]+/datastore/[^\p{C}\p{Zl}\p{Zp}]+$";
/// `topology.resourcePool`: `/<datacenter>/host/<cluster>/Resources[/<pool>]`, printable.
pub const RESOURCE_POOL_PATTERN: &str =
    r"^/[^/\p{C}\p{Zl}\p{Zp}]+/host/[^\p{C}\p{Zl}\p{Zp}]+/Resources(/[^\p{C}\p{Zl}\p{Zp}]+)?$";
/// `topology.folder` and `topology.template`: `/<datacenter>/vm/<name>`, printable.
pub const VM_PATH_PATTERN: &str = r"^/[^/\p{C}\p{Zl}\p{Zp}]+/vm/[^\p{C}\p{Zl}\p{Zp}]+$";

/// A SHA-1 (20 bytes) or SHA-256 (32 bytes) certificate thumbprint written as
/// colon-separated hex pairs, the form vCenter and `govc about.cert` print.
pub const THUMBPRINT_PATTERN: &str =
    r"^([0-9A-Fa-f]{2}:){19}(([0-9A-Fa-f]{2}:){12})?[0-9A-Fa-f]{2}$";

/// How a vCenter's TLS certificate is trusted. At most one of `caBundle`,
/// `thumbprint` and `insecure` may be set; with none, the system trust store
/// is used.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.insecure) && self.insecure && (has(self.thumbprint) || has(self.caBundle)))")
    .message("tls.insecure: true cannot be combined with tls.thumbprint or tls.caBundle; pin the certificate or skip verification, not both"))]
#[x_kube(validation = Rule::new("!(has(self.thumbprint) && has(self.caBundle))")
    .message("tls: set either tls.thumbprint (pin one certificate) or tls.caBundle (trust a CA), not both"))]
pub struct VCenterTls {
    /// A ConfigMap in the vmi's namespace holding the PEM CA bundle that
    /// signed the vCenter's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<ConfigMapKeyRef>,
    /// The SHA-1 or SHA-256 thumbprint of the vCenter's certificate, as
    /// colon-separated hex pairs (for example the output of
    /// `govc about.cert -thumbprint`). The connection is refused when the
    /// certificate does not match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 95), regex(pattern = THUMBPRINT_PATTERN))]
    pub thumbprint: Option<String>,
    /// Skip certificate verification. Only for lab vCenters: every connection
    /// made this way is logged as a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
}

/// A key of a ConfigMap in the vmi's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    /// Name of the ConfigMap.
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME_PATTERN))]
    pub name: String,
    /// Key holding the PEM bundle; `ca-bundle.crt` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: Option<String>,
}

/// A target failure domain: a region (datacenter) and zone (cluster) with the
/// compute cluster, datastore, networks and folders machines are placed in.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureDomain {
    /// Unique name of the failure domain; it must not already exist in the
    /// source cluster's Infrastructure. A lowercase DNS label (at most 63
    /// characters): the worker MachineSet of this failure domain is named
    /// `<infrastructure id>-worker-<name>`.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
        .message("spec.failureDomains[].name must be a lowercase DNS label (a-z, 0-9 and '-', starting and ending with a letter or digit): it names the worker MachineSet <infrastructure id>-worker-<name>"))]
    pub name: String,
    /// Value of the `openshift-region` tag attached to the datacenter. A
    /// Kubernetes label value (at most 63 characters): it becomes the
    /// `topology.kubernetes.io/region` label of the Nodes.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$')")
        .message("spec.failureDomains[].region must be a Kubernetes label value (letters, digits, '-', '_' and '.', starting and ending with a letter or digit): it becomes the topology.kubernetes.io/region label of every Node in it"))]
    pub region: String,
    /// Value of the `openshift-zone` tag attached to the compute cluster. A
    /// Kubernetes label value (at most 63 characters): it becomes the
    /// `topology.kubernetes.io/zone` label of the Nodes.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$')")
        .message("spec.failureDomains[].zone must be a Kubernetes label value (letters, digits, '-', '_' and '.', starting and ending with a letter or digit): it becomes the topology.kubernetes.io/zone label of every Node in it"))]
    pub zone: String,
    /// The vCenter of this failure domain: the `server` of an entry in
    /// `spec.vcenters` (case sensitive).
    #[schemars(length(min = 1, max = 255))]
    pub server: String,
    /// Where in that vCenter machines of this failure domain are placed.
    pub topology: Topology,
    /// Region affinity, as in the Infrastructure CRD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_affinity: Option<RegionAffinity>,
    /// Zone affinity, as in the Infrastructure CRD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_affinity: Option<ZoneAffinity>,
}

/// The inventory paths of a failure domain. Every path is absolute and lives
/// in the failure domain's own datacenter.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.computeCluster.startsWith('/' + self.datacenter + '/host/')")
    .message("topology.computeCluster must be /<datacenter>/host/<cluster> in the failure domain's own datacenter (topology.datacenter)"))]
#[x_kube(validation = Rule::new("self.datastore.startsWith('/' + self.datacenter + '/datastore/')")
    .message("topology.datastore must be /<datacenter>/datastore/<datastore> in the failure domain's own datacenter (topology.datacenter)"))]
#[x_kube(validation = Rule::new("self.networks.all(n, n.startsWith('/' + self.datacenter + '/network/'))")
    .message("topology.networks must be /<datacenter>/network/<port group> paths in the failure domain's own datacenter (topology.datacenter)"))]
#[x_kube(validation = Rule::new("!has(self.resourcePool) || self.resourcePool.startsWith(self.computeCluster + '/Resources')")
    .message("topology.resourcePool must be <computeCluster>/Resources or a pool below it"))]
#[x_kube(validation = Rule::new("!has(self.folder) || self.folder.startsWith('/' + self.datacenter + '/vm/')")
    .message("topology.folder must be /<datacenter>/vm/<folder> in the failure domain's own datacenter (topology.datacenter)"))]
#[x_kube(validation = Rule::new("!has(self.template) || self.template.startsWith('/' + self.datacenter + '/vm/')")
    .message("topology.template must be /<datacenter>/vm/<template> in the failure domain's own datacenter (topology.datacenter)"))]
pub struct Topology {
    /// Name of the datacenter (the region).
    #[schemars(length(min = 1, max = 80), regex(pattern = DATACENTER_PATTERN))]
    pub datacenter: String,
    /// Absolute path of the compute cluster: `/<datacenter>/host/<cluster>`.
    #[schemars(length(min = 1, max = 2048), regex(pattern = COMPUTE_CLUSTER_PATTERN))]
    pub compute_cluster: String,
    /// Absolute paths of the port groups: `/<datacenter>/network/<port group>`.
    #[schemars(
        length(min = 1, max = 10),
        inner(length(min = 1, max = 2048), regex(pattern = NETWORK_PATTERN))
    )]
    pub networks: Vec<String>,
    /// Absolute path of the datastore: `/<datacenter>/datastore/<datastore>`.
    #[schemars(length(min = 1, max = 2048), regex(pattern = DATASTORE_PATTERN))]
    pub datastore: String,
    /// Absolute path of the resource pool:
    /// `/<datacenter>/host/<cluster>/Resources[/<pool>]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 2048),
        regex(pattern = RESOURCE_POOL_PATTERN)
    )]
    pub resource_pool: Option<String>,
    /// Absolute path of the VM folder: `/<datacenter>/vm/<folder>`. Step 06
    /// creates `/<datacenter>/vm/<infrastructure id>` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = VM_PATH_PATTERN))]
    pub folder: Option<String>,
    /// Absolute path of the RHCOS template: `/<datacenter>/vm/<template>`.
    /// The control plane machine set derives
    /// `/<datacenter>/vm/<infrastructure id>-rhcos-<region>-<zone>` when
    /// omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = VM_PATH_PATTERN))]
    pub template: Option<String>,
}

/// How the region maps to vSphere, as in the Infrastructure CRD.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionAffinity {
    /// `Datacenter` (the region tag is on a datacenter) or `ComputeCluster`.
    #[serde(rename = "type")]
    pub kind: RegionAffinityType,
}

/// What the region tag is attached to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RegionAffinityType {
    /// The region is a datacenter.
    Datacenter,
    /// The region is a compute cluster.
    ComputeCluster,
}

/// How the zone maps to vSphere, as in the Infrastructure CRD.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type == 'HostGroup' ? has(self.hostGroup) : !has(self.hostGroup)")
    .message("zoneAffinity.hostGroup is required when zoneAffinity.type is HostGroup and forbidden otherwise"))]
pub struct ZoneAffinity {
    /// `ComputeCluster` (the zone tag is on a cluster) or `HostGroup`.
    #[serde(rename = "type")]
    pub kind: ZoneAffinityType,
    /// The VM-host group rule of a `HostGroup` zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_group: Option<HostGroup>,
}

/// What the zone tag is attached to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ZoneAffinityType {
    /// The zone is a compute cluster.
    ComputeCluster,
    /// The zone is a host group inside a compute cluster.
    HostGroup,
}

/// A vSphere VM-host group rule naming the groups of a host-group zone.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostGroup {
    /// The VM group machines of the zone join.
    #[schemars(length(min = 1, max = 80), regex(pattern = PRINTABLE_PATTERN))]
    pub vm_group: String,
    /// The host group of the zone.
    #[schemars(length(min = 1, max = 80), regex(pattern = PRINTABLE_PATTERN))]
    pub host_group: String,
    /// The VM-host rule binding the two groups.
    #[schemars(length(min = 1, max = 80), regex(pattern = PRINTABLE_PATTERN))]
    pub vm_host_rule: String,
}
