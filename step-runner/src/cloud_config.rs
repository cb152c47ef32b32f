//! Reads and edits the vSphere cloud provider configuration: the text of
//! `openshift-config/cloud-provider-config`, key `config`.
//!
//! OpenShift's vSphere components (the cloud-controller-manager operator, the
//! CSI driver operator, the vsphere-problem-detector and, up to 4.22,
//! machine-api) read this text themselves, so a new vCenter must be added to
//! it and the old one removed from it (research §3.1, §3.4). The text comes in
//! two formats, and this module reads both as library-go's `ReadConfig` does
//! (`openshift/library-go:pkg/cloudprovider/vsphere/config.go`): the text is
//! YAML if it parses as a YAML mapping, and INI in git-config syntax (read by
//! `gopkg.in/gcfg.v1`) otherwise.
//!
//! Edits are careful about what they leave alone, because every change of the
//! ConfigMap rolls every node (research §3.5) and the text often carries
//! settings written by hand:
//!
//! - INI edits splice the text: every line an edit does not own stays byte for
//!   byte (comments, blank lines, unknown sections and keys, order, quoting).
//! - YAML keeps key order and every key, known or not. Untouched, it renders
//!   as the original text; after an edit it is written out again, which keeps
//!   every value but not comments or anchors.
//! - Every edit reports whether it changed anything, and an edit that has
//!   nothing to do leaves the text identical, so the caller can skip the write.

use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// The vSphere tag category for regions that OpenShift's zonal installs use
/// (`openshift/installer:pkg/asset/manifests/vsphere/cloudproviderconfig.go`).
pub const REGION_CATEGORY: &str = "openshift-region";

/// The vSphere tag category for zones that OpenShift's zonal installs use.
pub const ZONE_CATEGORY: &str = "openshift-zone";

/// The format of a cloud provider configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The legacy INI format (git-config syntax), as the installer writes it.
    Ini,
    /// The YAML format, as the cloud-controller-manager operator writes it.
    Yaml,
}

/// One vCenter of the configuration: an INI `[VirtualCenter "<server>"]`
/// section or a YAML `vcenter.<server>` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VCenterEntry {
    /// The name of the entry, which consumers look up by the
    /// `infrastructure.spec.platformSpec.vsphere.vcenters[].server` value
    /// (case-sensitive).
    pub server: String,
    /// The entry's own `server` setting, when it has one. If it differs from
    /// [`server`](Self::server), consumers connect to this host and the name
    /// is only a label (cloud-provider-vsphere calls it the tenant ref).
    pub address: Option<String>,
    /// The port, when set and not 0 (consumers default to 443).
    pub port: Option<u16>,
    /// The datacenters, in the order given (empty: consumers fall back to the
    /// global datacenters).
    pub datacenters: Vec<String>,
}

/// The tag categories that map vSphere tags to the Kubernetes region and
/// zone labels (INI `[Labels]`, YAML `labels`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneLabels {
    /// The region tag category, when set and not empty.
    pub region: Option<String>,
    /// The zone tag category, when set and not empty.
    pub zone: Option<String>,
}

/// The global settings vmi needs: where the credentials are and whether
/// certificates are checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GlobalSettings {
    /// The name of the credentials secret (INI `secret-name`, YAML `secretName`).
    pub secret_name: Option<String>,
    /// Its namespace (INI `secret-namespace`, YAML `secretNamespace`).
    pub secret_namespace: Option<String>,
    /// Whether vCenter certificates are not verified (INI `insecure-flag`,
    /// YAML `insecureFlag`).
    pub insecure_flag: bool,
}

/// Why a cloud provider configuration could not be read or changed. Every
/// message says what is wrong in the text and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudConfigError {
    /// The text holds no configuration at all.
    #[error(
        "cloud-provider-config is empty (no settings, only blanks or comments); restore it from \
         the vmi backup or from the installer's manifest before migrating"
    )]
    Empty,
    /// The INI text breaks the git-config syntax that the consumers' parser
    /// (gcfg) requires; the consumers cannot read it either.
    #[error("cloud-provider-config (INI) line {line}: {message}")]
    IniSyntax {
        /// The 1-based line.
        line: usize,
        /// What is wrong there and how to fix it.
        message: String,
    },
    /// A known INI setting has a value its consumers refuse.
    #[error("cloud-provider-config (INI) line {line}: [{section}] {key}: {message}")]
    InvalidIniValue {
        /// The 1-based line.
        line: usize,
        /// The section, as written.
        section: String,
        /// The key, as written.
        key: String,
        /// What is wrong with the value.
        message: String,
    },
    /// The YAML text cannot be read, or a known setting has the wrong type.
    #[error("cloud-provider-config (YAML): {message}")]
    Yaml {
        /// What is wrong, with its line or the path of the setting.
        message: String,
    },
    /// Converting INI to YAML met a key it does not know; dropping it would
    /// silently lose configuration.
    #[error(
        "cloud-provider-config (INI) line {line}: key `{key}` in [{section}] is not a vSphere \
         cloud provider setting vmi can carry over to YAML; remove it (or correct its spelling) \
         by hand, then retry"
    )]
    UnknownIniKey {
        /// The 1-based line.
        line: usize,
        /// The section, as written.
        section: String,
        /// The key, as written.
        key: String,
    },
    /// Converting INI to YAML met a section it does not know.
    #[error(
        "cloud-provider-config (INI) line {line}: section [{section}] is not a vSphere cloud \
         provider section vmi can carry over to YAML; remove it by hand, then retry"
    )]
    UnknownIniSection {
        /// The 1-based line.
        line: usize,
        /// The section header, as written between the brackets.
        section: String,
    },
    /// The vCenter to remove is still the legacy `[Workspace]` server.
    #[error(
        "cannot remove vCenter `{server}` from cloud-provider-config: [Workspace] server still \
         names it, and the CSI driver operator would keep using it; convert the configuration \
         to YAML first (which drops [Workspace]) or point [Workspace] at the new vCenter"
    )]
    WorkspaceServer {
        /// The server that was to be removed.
        server: String,
    },
    /// The vCenter to remove is still the deprecated global `server`.
    #[error(
        "cannot remove vCenter `{server}` from cloud-provider-config: the global `server` setting \
         still names it, so the vSphere components would keep connecting to it; change or remove \
         that setting first"
    )]
    GlobalServer {
        /// The server that was to be removed.
        server: String,
    },
    /// Zone labels are already set to other tag categories.
    #[error(
        "cloud-provider-config already maps zones to other vSphere tag categories ({}); vmi uses \
         `openshift-region`/`openshift-zone` (the categories OpenShift's installer and operators \
         use) and does not change a cluster that uses other categories; such a cluster cannot be \
         migrated by vmi as it is",
        describe_labels(.region.as_deref(), .zone.as_deref())
    )]
    ConflictingLabels {
        /// The region category found, if any.
        region: Option<String>,
        /// The zone category found, if any.
        zone: Option<String>,
    },
    /// A server or datacenter name given to an edit cannot be written.
    #[error("invalid {what} `{name}` for cloud-provider-config: {reason}")]
    InvalidName {
        /// "vCenter server" or "datacenter".
        what: &'static str,
        /// The name given.
        name: String,
        /// Why it cannot be used.
        reason: &'static str,
    },
    /// The edited configuration could not be written back (a bug in vmi).
    #[error("cloud-provider-config: could not write the edited configuration: {0}")]
    Render(String),
}

type Result<T, E = CloudConfigError> = std::result::Result<T, E>;

fn describe_labels(region: Option<&str>, zone: Option<&str>) -> String {
    let show = |v: Option<&str>| v.map_or_else(|| "not set".to_owned(), |v| format!("{v:?}"));
    format!("region {}, zone {}", show(region), show(zone))
}

/// A parsed cloud provider configuration, ready to be read and edited.
#[derive(Debug, Clone)]
pub struct CloudConfig {
    doc: Doc,
}

#[derive(Debug, Clone)]
enum Doc {
    Ini(IniDoc),
    Yaml(YamlDoc),
}

impl CloudConfig {
    /// Parses `text` as its consumers do: YAML when it is a YAML mapping, INI
    /// otherwise. Values the consumers would refuse (a port or boolean that
    /// does not parse, a known setting of the wrong type) are errors here too,
    /// so that vmi never edits a configuration the cluster cannot read.
    pub fn parse(text: &str) -> Result<CloudConfig> {
        if text.trim().is_empty() {
            return Err(CloudConfigError::Empty);
        }
        match parse_yaml(text) {
            Ok(Node::Map(root)) => {
                validate_yaml(&root)?;
                Ok(CloudConfig {
                    doc: Doc::Yaml(YamlDoc {
                        root,
                        text: text.to_owned(),
                    }),
                })
            }
            Ok(Node::Null) => Err(CloudConfigError::Empty),
            other => match IniDoc::parse(text) {
                Ok(ini) => Ok(CloudConfig { doc: Doc::Ini(ini) }),
                // library-go reports only the INI error, which confuses
                // whoever wrote broken YAML: report the YAML error when the
                // text was meant to be YAML.
                Err(ini_error) => match other {
                    Err(yaml_error) if looks_like_yaml(text) => Err(CloudConfigError::Yaml {
                        message: yaml_error.to_string(),
                    }),
                    _ => Err(ini_error),
                },
            },
        }
    }

    /// The format the configuration is in now.
    pub fn format(&self) -> Format {
        match self.doc {
            Doc::Ini(_) => Format::Ini,
            Doc::Yaml(_) => Format::Yaml,
        }
    }

    /// Every vCenter entry, in the order of the text.
    pub fn vcenters(&self) -> Vec<VCenterEntry> {
        match &self.doc {
            Doc::Ini(ini) => ini.vcenters(),
            Doc::Yaml(yaml) => yaml.vcenters(),
        }
    }

    /// The vCenter entry named `server` (case-sensitive), if there is one.
    pub fn vcenter(&self, server: &str) -> Option<VCenterEntry> {
        self.vcenters().into_iter().find(|v| v.server == server)
    }

    /// Whether the INI text has a legacy `[Workspace]` section (in-tree
    /// provider settings that the CSI driver operator still reads; YAML never
    /// has one).
    pub fn has_workspace(&self) -> bool {
        match &self.doc {
            Doc::Ini(ini) => ini.items.iter().any(|item| match &item.kind {
                ItemKind::Header(h) => h.name.eq_ignore_ascii_case("workspace") && h.sub.is_none(),
                _ => false,
            }),
            Doc::Yaml(_) => false,
        }
    }

    /// The `[Workspace] server` value, if the INI text sets one.
    pub fn workspace_server(&self) -> Option<String> {
        match &self.doc {
            Doc::Ini(ini) => ini
                .last_entry(is_legacy_workspace, "server")
                .and_then(|(_, e)| e.value.clone())
                .filter(|v| !v.is_empty()),
            Doc::Yaml(_) => None,
        }
    }

    /// The region and zone tag categories, as set.
    pub fn labels(&self) -> ZoneLabels {
        match &self.doc {
            Doc::Ini(ini) => {
                let field = |key: &str| {
                    ini.last_entry(|h| section_kind(h) == Some(Section::Labels), key)
                        .and_then(|(_, e)| e.value.clone())
                        .filter(|v| !v.is_empty())
                };
                ZoneLabels {
                    region: field("region"),
                    zone: field("zone"),
                }
            }
            Doc::Yaml(yaml) => {
                let labels = get(&yaml.root, "labels").and_then(Node::as_map);
                let field = |key: &str| {
                    labels
                        .and_then(|m| get(m, key))
                        .and_then(Node::as_str)
                        .filter(|v| !v.is_empty())
                        .map(str::to_owned)
                };
                ZoneLabels {
                    region: field("region"),
                    zone: field("zone"),
                }
            }
        }
    }

    /// Whether both the region and the zone tag categories are set, that is,
    /// whether the vSphere components label nodes with their zone.
    pub fn zone_labels(&self) -> bool {
        let labels = self.labels();
        labels.region.is_some() && labels.zone.is_some()
    }

    /// The global credentials location and insecure flag.
    pub fn global(&self) -> GlobalSettings {
        match &self.doc {
            Doc::Ini(ini) => {
                let field = |key: &str| {
                    ini.last_entry(|h| section_kind(h) == Some(Section::Global), key)
                        .map(|(_, e)| e.value.clone())
                };
                let string = |key: &str| field(key).flatten().filter(|v| !v.is_empty());
                GlobalSettings {
                    secret_name: string("secret-name"),
                    secret_namespace: string("secret-namespace"),
                    insecure_flag: match field("insecure-flag") {
                        // A key without a value is `true` in gcfg.
                        Some(None) => true,
                        Some(Some(v)) => parse_gcfg_bool(&v).unwrap_or(false),
                        None => false,
                    },
                }
            }
            Doc::Yaml(yaml) => {
                let global = get(&yaml.root, "global").and_then(Node::as_map);
                let string = |key: &str| {
                    global
                        .and_then(|m| get(m, key))
                        .and_then(Node::as_str)
                        .filter(|v| !v.is_empty())
                        .map(str::to_owned)
                };
                GlobalSettings {
                    secret_name: string("secretName"),
                    secret_namespace: string("secretNamespace"),
                    insecure_flag: matches!(
                        global.and_then(|m| get(m, "insecureFlag")),
                        Some(Node::Bool(true))
                    ),
                }
            }
        }
    }

    /// Adds vCenter `server` with `port` and `datacenters`, or, when an entry
    /// named `server` exists already, appends the datacenters it lacks and
    /// keeps everything else of it (its port included). Returns whether the
    /// text changed; a repeated call changes nothing and returns `false`.
    ///
    /// INI gets a `[VirtualCenter "<server>"]` section with `port = "<port>"`
    /// and `datacenters = "dc1,dc2"` after the last `[VirtualCenter …]`
    /// section (or at the end); YAML gets `vcenter.<server>` with `server`,
    /// `port` and `datacenters`. Names are case-sensitive.
    pub fn add_vcenter(
        &mut self,
        server: &str,
        port: Option<u16>,
        datacenters: &[String],
    ) -> Result<bool> {
        check_name("vCenter server", server)?;
        for dc in datacenters {
            check_name("datacenter", dc)?;
            if dc.contains(',') {
                return Err(CloudConfigError::InvalidName {
                    what: "datacenter",
                    name: dc.clone(),
                    reason: "it contains a comma, which separates datacenters in the INI form \
                             the CSI driver operator writes",
                });
            }
        }
        let mut wanted: Vec<&str> = Vec::new();
        for dc in datacenters {
            if !wanted.contains(&dc.as_str()) {
                wanted.push(dc);
            }
        }
        let port = port.filter(|p| *p != 0);
        match &mut self.doc {
            Doc::Ini(ini) => ini.add_vcenter(server, port, &wanted),
            Doc::Yaml(yaml) => yaml.add_vcenter(server, port, &wanted),
        }
    }

    /// Removes every entry of vCenter `server` (case-sensitive). Returns
    /// whether the text changed. Refuses while the legacy `[Workspace] server`
    /// or the global `server` still names it, because consumers would keep
    /// using the removed vCenter.
    pub fn remove_vcenter(&mut self, server: &str) -> Result<bool> {
        check_name("vCenter server", server)?;
        match &mut self.doc {
            Doc::Ini(ini) => ini.remove_vcenter(server),
            Doc::Yaml(yaml) => yaml.remove_vcenter(server),
        }
    }

    /// Sets the zone labels to [`REGION_CATEGORY`] and [`ZONE_CATEGORY`], as
    /// the installer and the cloud-controller-manager operator do once a
    /// cluster has more than one failure domain. Returns whether the text
    /// changed. Refuses labels already set to other categories.
    pub fn set_zone_labels(&mut self) -> Result<bool> {
        let current = self.labels();
        let conflict = current
            .region
            .as_deref()
            .is_some_and(|r| r != REGION_CATEGORY)
            || current.zone.as_deref().is_some_and(|z| z != ZONE_CATEGORY);
        if conflict {
            return Err(CloudConfigError::ConflictingLabels {
                region: current.region,
                zone: current.zone,
            });
        }
        if current.region.is_some() && current.zone.is_some() {
            return Ok(false);
        }
        match &mut self.doc {
            Doc::Ini(ini) => ini.set_zone_labels(),
            Doc::Yaml(yaml) => yaml.set_zone_labels(),
        }
        .map(|()| true)
    }

    /// Converts an INI configuration to the YAML form that the
    /// cloud-controller-manager operator emits (and the installer's
    /// `MultiZoneYamlCloudProviderConfig` writes), mapping every known key.
    /// Returns what could not be carried over (the legacy in-tree sections
    /// `[Workspace]`, `[Disk]` and `[Network]` with their keys, and comments)
    /// so the caller can report it; YAML is left as it is and returns nothing.
    /// An unknown section or key is an error, never dropped silently.
    pub fn to_yaml(&mut self) -> Result<Vec<String>> {
        let Doc::Ini(ini) = &self.doc else {
            return Ok(Vec::new());
        };
        let (root, dropped) = ini.to_yaml_root()?;
        let mut yaml = YamlDoc {
            root,
            text: String::new(),
        };
        yaml.commit()?;
        self.doc = Doc::Yaml(yaml);
        Ok(dropped)
    }

    /// The configuration text in its current format: the original text when
    /// nothing changed it.
    pub fn render(&self) -> String {
        match &self.doc {
            Doc::Ini(ini) => ini.text.clone(),
            Doc::Yaml(yaml) => yaml.text.clone(),
        }
    }
}

/// Whether a text that is neither valid YAML nor valid INI was meant to be
/// YAML: its first line with content is a document start, a flow mapping or
/// a `key:`.
fn looks_like_yaml(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .is_some_and(|l| {
            l.starts_with("---")
                || l.starts_with('{')
                || l.split_once(':')
                    .is_some_and(|(k, _)| !k.contains(['=', '[', '"']))
        })
}

fn check_name(what: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.chars().any(char::is_control) {
        "it contains a control character"
    } else if name.trim() != name {
        "it has leading or trailing whitespace, which consumers trim or keep inconsistently"
    } else {
        return Ok(());
    };
    Err(CloudConfigError::InvalidName {
        what,
        name: name.to_owned(),
        reason,
    })
}

// ---------------------------------------------------------------------------
// The settings the consumers know (library-go `ini.go`/`yaml.go`, which copy
// cloud-provider-vsphere's types).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A string.
    Str,
    /// A boolean: gcfg's true/yes/on/1, false/no/off/0 in INI.
    Bool,
    /// A port: a decimal string in INI, an unsigned integer in YAML.
    Port,
    /// An unsigned integer (gcfg: decimal or 0x hexadecimal).
    UInt,
    /// A comma-separated list in INI, a sequence of strings in YAML.
    List,
}

struct Key {
    ini: &'static str,
    yaml: &'static str,
    kind: Kind,
}

const fn key(ini: &'static str, yaml: &'static str, kind: Kind) -> Key {
    Key { ini, yaml, kind }
}

const GLOBAL_KEYS: &[Key] = &[
    key("user", "user", Kind::Str),
    key("password", "password", Kind::Str),
    key("server", "server", Kind::Str),
    key("port", "port", Kind::Port),
    key("insecure-flag", "insecureFlag", Kind::Bool),
    key("datacenters", "datacenters", Kind::List),
    key("soap-roundtrip-count", "soapRoundtripCount", Kind::UInt),
    key("ca-file", "caFile", Kind::Str),
    key("thumbprint", "thumbprint", Kind::Str),
    key("secret-name", "secretName", Kind::Str),
    key("secret-namespace", "secretNamespace", Kind::Str),
    key("secrets-directory", "secretsDirectory", Kind::Str),
    key("api-disable", "apiDisable", Kind::Bool),
    key("api-binding", "apiBinding", Kind::Str),
    key("ip-family", "ipFamily", Kind::List),
];

const VCENTER_KEYS: &[Key] = &[
    key("user", "user", Kind::Str),
    key("password", "password", Kind::Str),
    key("server", "server", Kind::Str),
    key("port", "port", Kind::Port),
    key("insecure-flag", "insecureFlag", Kind::Bool),
    key("datacenters", "datacenters", Kind::List),
    key("soap-roundtrip-count", "soapRoundtripCount", Kind::UInt),
    key("ca-file", "caFile", Kind::Str),
    key("thumbprint", "thumbprint", Kind::Str),
    key("secret-name", "secretName", Kind::Str),
    key("secret-namespace", "secretNamespace", Kind::Str),
    key("ip-family", "ipFamily", Kind::List),
];

const LABELS_KEYS: &[Key] = &[
    key("zone", "zone", Kind::Str),
    key("region", "region", Kind::Str),
];

const NODES_KEYS: &[Key] = &[
    key(
        "internal-network-subnet-cidr",
        "internalNetworkSubnetCidr",
        Kind::Str,
    ),
    key(
        "external-network-subnet-cidr",
        "externalNetworkSubnetCidr",
        Kind::Str,
    ),
    key(
        "internal-vm-network-name",
        "internalVmNetworkName",
        Kind::Str,
    ),
    key(
        "external-vm-network-name",
        "externalVmNetworkName",
        Kind::Str,
    ),
    key(
        "exclude-internal-network-subnet-cidr",
        "excludeInternalNetworkSubnetCidr",
        Kind::Str,
    ),
    key(
        "exclude-external-network-subnet-cidr",
        "excludeExternalNetworkSubnetCidr",
        Kind::Str,
    ),
];

const TOP_KEYS: &[&str] = &["global", "vcenter", "labels", "nodes"];

/// gcfg's booleans, case-insensitive (`gopkg.in/gcfg.v1/types/bool.go`).
fn parse_gcfg_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// gcfg's unsigned integers: decimal, or hexadecimal with `0x`.
fn parse_gcfg_uint(v: &str) -> Option<u64> {
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// An INI port: empty means unset (library-go `parseUIntOrZero`).
fn parse_ini_port(v: &str) -> Result<Option<u16>, String> {
    if v.is_empty() {
        return Ok(None);
    }
    let n: u64 = v
        .parse()
        .map_err(|_| format!("{v:?} is not a port number"))?;
    u16::try_from(n)
        .map(|p| Some(p).filter(|p| *p != 0))
        .map_err(|_| format!("{v} is not a port number (1-65535)"))
}

/// Splits a comma list as library-go's `splitDatacenters` does.
fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------
// INI (git-config syntax as gopkg.in/gcfg.v1 reads it).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Global,
    VirtualCenter,
    Labels,
    Nodes,
    /// `[Workspace]`, `[Disk]`, `[Network]`: read only by the removed in-tree
    /// provider (and `[Workspace]` by the CSI driver operator).
    Legacy,
}

impl Section {
    fn keys(self) -> &'static [Key] {
        match self {
            Section::Global => GLOBAL_KEYS,
            Section::VirtualCenter => VCENTER_KEYS,
            Section::Labels => LABELS_KEYS,
            Section::Nodes => NODES_KEYS,
            Section::Legacy => &[],
        }
    }
}

/// Which section a header opens. gcfg matches section names
/// case-insensitively and ignores a subsection on sections that have none
/// (`[Global "x"]` is unknown data, not `[Global]`).
fn section_kind(h: &Header) -> Option<Section> {
    let name = h.name.to_ascii_lowercase();
    match (name.as_str(), h.sub.is_some()) {
        ("global", false) => Some(Section::Global),
        ("virtualcenter", true) => Some(Section::VirtualCenter),
        ("labels", false) => Some(Section::Labels),
        ("nodes", false) => Some(Section::Nodes),
        ("workspace" | "disk" | "network", false) => Some(Section::Legacy),
        _ => None,
    }
}

fn is_legacy_workspace(h: &Header) -> bool {
    h.name.eq_ignore_ascii_case("workspace") && h.sub.is_none()
}

#[derive(Debug, Clone)]
struct IniDoc {
    text: String,
    items: Vec<Item>,
}

/// One logical line (an entry continued with `\` spans several).
#[derive(Debug, Clone)]
struct Item {
    /// Byte range in the text, including the line break.
    span: Range<usize>,
    /// 1-based line it starts on.
    line: usize,
    /// Index of the header item of the section it is in.
    section: Option<usize>,
    kind: ItemKind,
}

#[derive(Debug, Clone)]
enum ItemKind {
    Blank,
    Comment,
    Header(Header),
    Entry(Entry),
}

#[derive(Debug, Clone)]
struct Header {
    name: String,
    sub: Option<String>,
}

impl fmt::Display for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sub {
            Some(sub) => write!(f, "{} {}", self.name, quote_subsection(sub)),
            None => f.write_str(&self.name),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    key: String,
    /// The unquoted value; `None` for a key without `=` (gcfg's blank value).
    value: Option<String>,
    /// Byte range of the value as written (quotes and escapes included).
    raw: Range<usize>,
}

fn is_letter(c: char) -> bool {
    c.is_ascii_alphabetic() || (!c.is_ascii() && c.is_alphabetic())
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric())
}

struct Cursor<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\r')) {
            self.bump();
        }
    }

    fn skip_comment(&mut self) {
        while self.peek().is_some_and(|c| c != '\n') {
            self.bump();
        }
    }

    fn error(&self, line: usize, message: impl Into<String>) -> CloudConfigError {
        CloudConfigError::IniSyntax {
            line,
            message: message.into(),
        }
    }

    /// Consumes the rest of a line that may only hold a comment.
    fn end_of_line(&mut self, line: usize, after: &str) -> Result<()> {
        self.skip_ws();
        match self.peek() {
            None => Ok(()),
            Some('\n') => {
                self.bump();
                Ok(())
            }
            Some(';' | '#') => {
                self.skip_comment();
                self.bump();
                Ok(())
            }
            Some(c) => Err(self.error(
                line,
                format!(
                    "unexpected `{c}` after {after}; only a comment (`;` or `#`) may follow on \
                     the same line"
                ),
            )),
        }
    }

    fn ident(&mut self) -> String {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| is_letter(c) || is_digit(c) || c == '-')
        {
            self.bump();
        }
        self.text[start..self.pos].to_owned()
    }

    /// After `[`: `name` or `name "subsection"`, then `]`.
    fn header(&mut self, line: usize) -> Result<Header> {
        self.skip_ws();
        if !self.peek().is_some_and(is_letter) {
            return Err(self.error(
                line,
                "expected a section name after `[` (a letter, then letters, digits or `-`)",
            ));
        }
        let name = self.ident();
        self.skip_ws();
        let mut sub = None;
        if self.peek() == Some('"') {
            self.bump();
            let mut s = String::new();
            loop {
                match self.bump() {
                    None | Some('\n') => {
                        return Err(self.error(
                            line,
                            format!("unterminated section header [{name} \"…: the closing `\"` is missing"),
                        ));
                    }
                    Some('"') => break,
                    Some('\\') => match self.bump() {
                        Some(e @ ('\\' | '"')) => s.push(e),
                        _ => {
                            return Err(self.error(
                                line,
                                "unknown escape sequence in a subsection name; only `\\\\` and \
                                 `\\\"` are allowed there",
                            ));
                        }
                    },
                    Some(c) => s.push(c),
                }
            }
            if s.is_empty() {
                return Err(self.error(
                    line,
                    format!("empty subsection name: write [{name}] instead of [{name} \"\"]"),
                ));
            }
            sub = Some(s);
            self.skip_ws();
        }
        if self.peek() != Some(']') {
            return Err(self.error(
                line,
                format!("unterminated section header [{name}: expected `]`"),
            ));
        }
        self.bump();
        Ok(Header { name, sub })
    }

    /// After a `\` inside quotes: one of gcfg's value escapes.
    fn quoted_escape(&mut self, line: usize) -> Result<()> {
        match self.bump() {
            Some('\\' | '"' | 'n' | 't') => Ok(()),
            _ => Err(self.error(
                line,
                "unknown escape sequence in a quoted value; only `\\\\`, `\\\"`, `\\n` and \
                 `\\t` are allowed",
            )),
        }
    }

    /// After `=` and blanks: a value as gcfg's `scanValString` reads it.
    /// Quoted and unquoted parts may alternate, an unquoted value ends at `;`
    /// or `#`, trailing blanks are not part of it, and `\` at the end of a
    /// line continues the value on the next one.
    fn value(&mut self, line: usize) -> Result<(Range<usize>, String)> {
        let start = self.pos;
        let mut end = start;
        let mut in_quote = false;
        loop {
            let Some(c) = self.peek() else {
                if in_quote {
                    return Err(self.error(
                        line,
                        "unterminated quoted value: the closing `\"` is missing",
                    ));
                }
                break;
            };
            if !in_quote && matches!(c, '\n' | ';' | '#') {
                break;
            }
            self.bump();
            match c {
                '\\' if in_quote => self.quoted_escape(line)?,
                '\\' => {
                    if self.peek() == Some('\r') {
                        self.bump();
                    }
                    if !matches!(self.bump(), Some('\n' | '"')) {
                        return Err(self.error(
                            line,
                            "a `\\` outside quotes must end the line (to continue the value) or \
                             escape a `\"`; quote the value instead",
                        ));
                    }
                }
                '"' => in_quote = !in_quote,
                '\n' => {
                    return Err(self.error(
                        line,
                        "unterminated quoted value: the closing `\"` is missing on this line",
                    ));
                }
                _ => {}
            }
            if in_quote || !matches!(c, ' ' | '\t' | '\r') {
                end = self.pos;
            }
        }
        Ok((start..end, unquote(&self.text[start..end])))
    }
}

/// gcfg's `unquote` of a value the scanner accepted: quotes removed, escapes
/// resolved, continuations joined, carriage returns dropped.
fn unquote(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut quoted = false;
    let mut chars = raw.chars().filter(|c| *c != '\r');
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('\n') | None => {}
                Some(e) => out.push(e),
            },
            c => out.push(c),
        }
    }
    out
}

/// A value in the installer's style: `"…"` with gcfg's escapes.
fn quote_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A subsection name: `"…"` with only `\\` and `\"` escaped.
fn quote_subsection(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        if matches!(c, '\\' | '"') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Whether `v` can be written without quotes and read back unchanged.
fn plain_safe(v: &str) -> bool {
    !v.is_empty() && v.trim() == v && !v.contains(['"', '\\', ';', '#', '\n', '\r', '\t'])
}

impl IniDoc {
    fn parse(text: &str) -> Result<IniDoc> {
        if let Some(pos) = text.find('\0') {
            let line = text[..pos].matches('\n').count() + 1;
            return Err(CloudConfigError::IniSyntax {
                line,
                message: "illegal NUL character".into(),
            });
        }
        let mut c = Cursor {
            text,
            pos: 0,
            line: 1,
        };
        let mut items: Vec<Item> = Vec::new();
        let mut current: Option<usize> = None;
        while c.pos < text.len() {
            let start = c.pos;
            let line = c.line;
            c.skip_ws();
            let kind = match c.peek() {
                None | Some('\n') => {
                    c.bump();
                    ItemKind::Blank
                }
                Some(';' | '#') => {
                    c.skip_comment();
                    c.bump();
                    ItemKind::Comment
                }
                Some('[') => {
                    c.bump();
                    let header = c.header(line)?;
                    c.end_of_line(line, "the section header")?;
                    if header.name.eq_ignore_ascii_case("virtualcenter") && header.sub.is_none() {
                        return Err(c.error(
                            line,
                            format!(
                                "[{}] needs the vCenter server as subsection: \
                                 [VirtualCenter \"<server>\"]",
                                header.name
                            ),
                        ));
                    }
                    ItemKind::Header(header)
                }
                Some(ch) if is_letter(ch) => {
                    let key = c.ident();
                    if current.is_none() {
                        return Err(c.error(
                            line,
                            format!(
                                "key `{key}` is outside any section; put a section header such \
                                 as [Global] above it"
                            ),
                        ));
                    }
                    c.skip_ws();
                    match c.peek() {
                        None | Some('\n' | ';' | '#') => {
                            let at = c.pos;
                            c.end_of_line(line, "the key")?;
                            ItemKind::Entry(Entry {
                                key,
                                value: None,
                                raw: at..at,
                            })
                        }
                        Some('=') => {
                            c.bump();
                            c.skip_ws();
                            let (raw, value) = c.value(line)?;
                            c.end_of_line(line, "the value")?;
                            ItemKind::Entry(Entry {
                                key,
                                value: Some(value),
                                raw,
                            })
                        }
                        Some(other) => {
                            return Err(c.error(
                                line,
                                format!("expected `=` after key `{key}`, found `{other}`"),
                            ));
                        }
                    }
                }
                Some(other) => {
                    return Err(c.error(
                        line,
                        format!(
                            "unexpected `{other}`; a line holds a [Section] header, a \
                             `key = \"value\"` pair or a comment"
                        ),
                    ));
                }
            };
            if matches!(kind, ItemKind::Header(_)) {
                current = Some(items.len());
            }
            items.push(Item {
                span: start..c.pos,
                line,
                section: current,
                kind,
            });
        }
        let doc = IniDoc {
            text: text.to_owned(),
            items,
        };
        if !doc
            .items
            .iter()
            .any(|i| matches!(i.kind, ItemKind::Header(_) | ItemKind::Entry(_)))
        {
            return Err(CloudConfigError::Empty);
        }
        doc.validate()?;
        Ok(doc)
    }

    /// Refuses the values that make gcfg or library-go fail, so that vmi
    /// never edits a configuration its consumers cannot read.
    fn validate(&self) -> Result<()> {
        for item in &self.items {
            let ItemKind::Entry(entry) = &item.kind else {
                continue;
            };
            let Some(header) = self.header_of(item) else {
                continue;
            };
            let Some(section) = section_kind(header) else {
                continue;
            };
            let Some(def) = section
                .keys()
                .iter()
                .find(|k| k.ini.eq_ignore_ascii_case(&entry.key))
            else {
                continue;
            };
            let problem = match (def.kind, entry.value.as_deref()) {
                (Kind::Bool, None) => None,
                (_, None) => Some("has no value; write `key = \"value\"`".to_owned()),
                (Kind::Bool, Some(v)) => parse_gcfg_bool(v).is_none().then(|| {
                    format!(
                        "{v:?} is not a boolean; use \"1\" or \"0\" (or true/false, yes/no, on/off)"
                    )
                }),
                (Kind::UInt, Some(v)) => parse_gcfg_uint(v)
                    .is_none()
                    .then(|| format!("{v:?} is not an unsigned integer")),
                (Kind::Port, Some(v)) => parse_ini_port(v).err(),
                (Kind::Str | Kind::List, Some(_)) => None,
            };
            if let Some(message) = problem {
                return Err(CloudConfigError::InvalidIniValue {
                    line: item.line,
                    section: header.to_string(),
                    key: entry.key.clone(),
                    message,
                });
            }
        }
        Ok(())
    }

    fn header_of(&self, item: &Item) -> Option<&Header> {
        match &self.items.get(item.section?)?.kind {
            ItemKind::Header(h) => Some(h),
            _ => None,
        }
    }

    fn is_blank(&self, idx: usize) -> bool {
        matches!(self.items[idx].kind, ItemKind::Blank)
    }

    /// The last entry `key` (case-insensitive) in sections matching `pred`:
    /// the one whose value gcfg keeps.
    fn last_entry(&self, pred: impl Fn(&Header) -> bool, key: &str) -> Option<(usize, &Entry)> {
        self.items
            .iter()
            .enumerate()
            .rev()
            .find_map(|(idx, item)| match &item.kind {
                ItemKind::Entry(e)
                    if e.key.eq_ignore_ascii_case(key)
                        && self.header_of(item).is_some_and(&pred) =>
                {
                    Some((idx, e))
                }
                _ => None,
            })
    }

    /// The item ranges of the sections whose header matches `pred`, from the
    /// header up to the next header.
    fn blocks(&self, pred: impl Fn(&Header) -> bool) -> Vec<Range<usize>> {
        let mut blocks = Vec::new();
        for (idx, item) in self.items.iter().enumerate() {
            if let ItemKind::Header(h) = &item.kind
                && pred(h)
            {
                let end = self.items[idx + 1..]
                    .iter()
                    .position(|i| matches!(i.kind, ItemKind::Header(_)))
                    .map_or(self.items.len(), |p| idx + 1 + p);
                blocks.push(idx..end);
            }
        }
        blocks
    }

    /// The last header or entry of a block.
    fn content_end(&self, block: &Range<usize>) -> usize {
        block
            .clone()
            .rev()
            .find(|&i| matches!(self.items[i].kind, ItemKind::Header(_) | ItemKind::Entry(_)))
            .unwrap_or(block.start)
    }

    fn last_nonblank(&self) -> Option<usize> {
        (0..self.items.len()).rev().find(|&i| !self.is_blank(i))
    }

    /// The line break the text uses.
    fn newline(&self) -> &'static str {
        if self.text.contains("\r\n") {
            "\r\n"
        } else {
            "\n"
        }
    }

    /// Replaces a byte range of the text and parses the result again.
    fn splice(&mut self, range: Range<usize>, with: &str) -> Result<()> {
        let mut text = String::with_capacity(self.text.len() + with.len());
        text.push_str(&self.text[..range.start]);
        text.push_str(with);
        text.push_str(&self.text[range.end..]);
        *self = IniDoc::parse(&text).map_err(|e| {
            CloudConfigError::Render(format!("the edited INI text no longer parses: {e}"))
        })?;
        Ok(())
    }

    /// Inserts a section (its text ending in a line break) after item
    /// `after` (or at the start), separated from its neighbours by one
    /// blank line.
    fn insert_section(&mut self, after: Option<usize>, section: &str) -> Result<()> {
        let nl = self.newline();
        let at = after.map_or(0, |i| self.items[i].span.end);
        let mut text = String::new();
        if at > 0 {
            if !self.text[..at].ends_with('\n') {
                text.push_str(nl);
            }
            text.push_str(nl);
        }
        text.push_str(section);
        let next = after.map_or(0, |i| i + 1);
        if next < self.items.len() && !self.is_blank(next) {
            text.push_str(nl);
        }
        self.splice(at..at, &text)
    }

    /// Inserts `key = "value"` on a new line after item `after`, indented
    /// like it.
    fn insert_entry(&mut self, after: usize, key: &str, value: &str) -> Result<()> {
        let nl = self.newline();
        let item = &self.items[after];
        let indent: String = if matches!(item.kind, ItemKind::Entry(_)) {
            self.text[item.span.clone()]
                .chars()
                .take_while(|c| matches!(c, ' ' | '\t'))
                .collect()
        } else {
            String::new()
        };
        let at = item.span.end;
        let mut text = String::new();
        if !self.text[..at].ends_with('\n') {
            text.push_str(nl);
        }
        text.push_str(&format!("{indent}{key} = {}{nl}", quote_value(value)));
        self.splice(at..at, &text)
    }

    /// Rewrites the value of entry item `idx`, keeping the key, the spacing
    /// and any comment, and the quoting style where the value allows it.
    fn replace_value(&mut self, idx: usize, value: &str) -> Result<()> {
        let ItemKind::Entry(entry) = &self.items[idx].kind else {
            return Err(CloudConfigError::Render(
                "internal error: item to rewrite is not an entry".into(),
            ));
        };
        let raw = entry.raw.clone();
        let was_plain = !raw.is_empty() && !self.text[raw.clone()].starts_with('"');
        let written = if was_plain && plain_safe(value) {
            value.to_owned()
        } else {
            quote_value(value)
        };
        if entry.value.is_none() {
            // `key` without `=`: give it one.
            return self.splice(raw, &format!(" = {written}"));
        }
        self.splice(raw, &written)
    }

    fn vcenters(&self) -> Vec<VCenterEntry> {
        let mut names: Vec<&str> = Vec::new();
        for item in &self.items {
            if let ItemKind::Header(h) = &item.kind
                && section_kind(h) == Some(Section::VirtualCenter)
                && let Some(sub) = h.sub.as_deref()
                && !names.contains(&sub)
            {
                names.push(sub);
            }
        }
        names
            .into_iter()
            .map(|name| {
                let is_this = |h: &Header| {
                    section_kind(h) == Some(Section::VirtualCenter)
                        && h.sub.as_deref() == Some(name)
                };
                let value = |key: &str| {
                    self.last_entry(is_this, key)
                        .and_then(|(_, e)| e.value.clone())
                };
                VCenterEntry {
                    server: name.to_owned(),
                    address: value("server").filter(|s| !s.is_empty()),
                    port: value("port")
                        .and_then(|p| parse_ini_port(&p).ok())
                        .flatten(),
                    datacenters: value("datacenters")
                        .map(|d| split_list(&d))
                        .unwrap_or_default(),
                }
            })
            .collect()
    }

    fn add_vcenter(&mut self, server: &str, port: Option<u16>, wanted: &[&str]) -> Result<bool> {
        let is_this = |h: &Header| {
            section_kind(h) == Some(Section::VirtualCenter) && h.sub.as_deref() == Some(server)
        };
        let blocks = self.blocks(is_this);
        let Some(last_block) = blocks.last() else {
            let nl = self.newline();
            let mut section = format!("[VirtualCenter {}]{nl}", quote_subsection(server));
            if let Some(port) = port {
                section.push_str(&format!("port = \"{port}\"{nl}"));
            }
            if !wanted.is_empty() {
                section.push_str(&format!(
                    "datacenters = {}{nl}",
                    quote_value(&wanted.join(","))
                ));
            }
            let after = match self
                .blocks(|h| section_kind(h) == Some(Section::VirtualCenter))
                .last()
            {
                Some(block) => Some(self.content_end(block)),
                None => self.last_nonblank(),
            };
            self.insert_section(after, &section)?;
            return Ok(true);
        };
        let last_block = last_block.clone();
        let current = self
            .last_entry(is_this, "datacenters")
            .map(|(idx, e)| (idx, e.value.clone().unwrap_or_default()));
        let old = current.as_ref().map(|(_, v)| v.clone()).unwrap_or_default();
        let have = split_list(&old);
        let missing: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|dc| !have.iter().any(|h| h == dc))
            .collect();
        if missing.is_empty() {
            return Ok(false);
        }
        match current {
            Some((idx, _)) => {
                // Keep the existing list as written and append to it.
                let value = if have.is_empty() {
                    missing.join(",")
                } else {
                    format!("{},{}", old.trim_end_matches([',', ' ']), missing.join(","))
                };
                self.replace_value(idx, &value)?;
            }
            None => {
                let after = self.content_end(&last_block);
                self.insert_entry(after, "datacenters", &missing.join(","))?;
            }
        }
        Ok(true)
    }

    fn remove_vcenter(&mut self, server: &str) -> Result<bool> {
        let named = |key: &str, pred: &dyn Fn(&Header) -> bool| {
            self.last_entry(pred, key)
                .and_then(|(_, e)| e.value.as_deref())
                .is_some_and(|v| v == server)
        };
        if named("server", &is_legacy_workspace) {
            return Err(CloudConfigError::WorkspaceServer {
                server: server.to_owned(),
            });
        }
        if named("server", &|h: &Header| {
            section_kind(h) == Some(Section::Global)
        }) {
            return Err(CloudConfigError::GlobalServer {
                server: server.to_owned(),
            });
        }
        let is_this = |h: &Header| {
            section_kind(h) == Some(Section::VirtualCenter) && h.sub.as_deref() == Some(server)
        };
        let mut changed = false;
        while let Some(block) = self.blocks(is_this).pop() {
            // The header and its entries (with comments among them), then the
            // blank lines after them; comments that follow belong to what
            // comes next.
            let mut end = self.content_end(&block) + 1;
            while end < self.items.len() && self.is_blank(end) {
                end += 1;
            }
            let mut start = block.start;
            if end == self.items.len() {
                // Nothing follows: drop the blank lines that separated it.
                while start > 0 && self.is_blank(start - 1) {
                    start -= 1;
                }
            }
            let from = self.items[start].span.start;
            let to = self
                .items
                .get(end)
                .map_or(self.text.len(), |i| i.span.start);
            self.splice(from..to, "")?;
            changed = true;
        }
        Ok(changed)
    }

    fn set_zone_labels(&mut self) -> Result<()> {
        let is_labels = |h: &Header| section_kind(h) == Some(Section::Labels);
        if self.blocks(is_labels).is_empty() {
            let nl = self.newline();
            let section = format!(
                "[Labels]{nl}region = {}{nl}zone = {}{nl}",
                quote_value(REGION_CATEGORY),
                quote_value(ZONE_CATEGORY)
            );
            return self.insert_section(self.last_nonblank(), &section);
        }
        for (key, value) in [("region", REGION_CATEGORY), ("zone", ZONE_CATEGORY)] {
            let found = self
                .last_entry(is_labels, key)
                .map(|(idx, e)| (idx, e.value.as_deref().is_some_and(|v| !v.is_empty())));
            match found {
                Some((_, true)) => {}
                Some((idx, false)) => self.replace_value(idx, value)?,
                None => {
                    let blocks = self.blocks(is_labels);
                    if let Some(block) = blocks.last() {
                        let after = self.content_end(block);
                        self.insert_entry(after, key, value)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The YAML form of this configuration and what it leaves out.
    fn to_yaml_root(&self) -> Result<(Mapping, Vec<String>)> {
        let mut global: Mapping = Vec::new();
        let mut vcenters: Vec<(String, Mapping)> = Vec::new();
        let mut labels: Mapping = Vec::new();
        let mut nodes: Mapping = Vec::new();
        let mut dropped = Vec::new();
        let mut comments = 0;
        for item in &self.items {
            match &item.kind {
                ItemKind::Blank => {}
                ItemKind::Comment => comments += 1,
                ItemKind::Header(h) => match section_kind(h) {
                    None => {
                        return Err(CloudConfigError::UnknownIniSection {
                            line: item.line,
                            section: h.to_string(),
                        });
                    }
                    Some(Section::Legacy) => dropped.push(format!("[{h}]")),
                    Some(Section::VirtualCenter) => {
                        let sub = h.sub.clone().unwrap_or_default();
                        if !vcenters.iter().any(|(name, _)| *name == sub) {
                            vcenters.push((sub, Vec::new()));
                        }
                    }
                    Some(_) => {}
                },
                ItemKind::Entry(entry) => {
                    let Some(h) = self.header_of(item) else {
                        continue;
                    };
                    let Some(section) = section_kind(h) else {
                        continue;
                    };
                    if section == Section::Legacy {
                        let value = entry
                            .value
                            .as_deref()
                            .map(|v| format!(" = {}", quote_value(v)))
                            .unwrap_or_default();
                        dropped.push(format!("[{h}] {}{value}", entry.key));
                        continue;
                    }
                    let Some(def) = section
                        .keys()
                        .iter()
                        .find(|k| k.ini.eq_ignore_ascii_case(&entry.key))
                    else {
                        return Err(CloudConfigError::UnknownIniKey {
                            line: item.line,
                            section: h.to_string(),
                            key: entry.key.clone(),
                        });
                    };
                    let value = ini_to_node(def.kind, entry.value.as_deref());
                    let target = match section {
                        Section::Global => &mut global,
                        Section::Labels => &mut labels,
                        Section::Nodes => &mut nodes,
                        Section::VirtualCenter => {
                            let sub = h.sub.as_deref().unwrap_or_default();
                            match vcenters.iter_mut().find(|(name, _)| name == sub) {
                                Some((_, map)) => map,
                                None => continue,
                            }
                        }
                        Section::Legacy => continue,
                    };
                    set_or_remove(target, def.yaml, value);
                }
            }
        }
        if comments > 0 {
            dropped.push(format!("{comments} comment line(s)"));
        }
        let vcenter: Mapping = vcenters
            .into_iter()
            .map(|(name, mut map)| {
                // `server` first, as the operator writes it; the section name
                // is the server unless the section sets one.
                let server = match map
                    .iter()
                    .position(|(k, _)| k.key_text().as_deref() == Some("server"))
                {
                    Some(pos) => map.remove(pos),
                    None => (Node::str("server"), Node::str(&name)),
                };
                map.insert(0, server);
                (Node::Str(name), Node::Map(map))
            })
            .collect();
        let mut root = vec![
            (Node::str("global"), Node::Map(global)),
            (Node::str("vcenter"), Node::Map(vcenter)),
        ];
        if !labels.is_empty() {
            root.push((Node::str("labels"), Node::Map(labels)));
        }
        if !nodes.is_empty() {
            root.push((Node::str("nodes"), Node::Map(nodes)));
        }
        Ok((root, dropped))
    }
}

/// The YAML value of a validated INI value; `None` when YAML leaves it out
/// (an empty port, which means the default).
fn ini_to_node(kind: Kind, value: Option<&str>) -> Option<Node> {
    let Some(v) = value else {
        // Only booleans may be blank (validated): a blank one is true.
        return Some(Node::Bool(true));
    };
    match kind {
        Kind::Str => Some(Node::str(v)),
        Kind::Bool => Some(Node::Bool(parse_gcfg_bool(v).unwrap_or(false))),
        Kind::Port => parse_ini_port(v)
            .ok()
            .flatten()
            .map(|p| Node::UInt(u64::from(p))),
        Kind::UInt => Some(Node::UInt(parse_gcfg_uint(v).unwrap_or(0))),
        Kind::List => Some(Node::Seq(
            split_list(v).into_iter().map(Node::Str).collect(),
        )),
    }
}

/// Sets `key` (the last INI assignment wins, at the place of the first) or
/// removes it when the value is left out.
fn set_or_remove(map: &mut Mapping, key: &str, value: Option<Node>) {
    let pos = map
        .iter()
        .position(|(k, _)| k.key_text().as_deref() == Some(key));
    match (pos, value) {
        (Some(pos), Some(value)) => map[pos].1 = value,
        (Some(pos), None) => {
            map.remove(pos);
        }
        (None, Some(value)) => map.push((Node::str(key), value)),
        (None, None) => {}
    }
}

// ---------------------------------------------------------------------------
// YAML

/// A YAML mapping, in the order of the text.
type Mapping = Vec<(Node, Node)>;

/// A YAML value that keeps key order and every key.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Mapping),
}

impl Node {
    fn str(s: &str) -> Node {
        Node::Str(s.to_owned())
    }

    fn as_map(&self) -> Option<&[(Node, Node)]> {
        match self {
            Node::Map(m) => Some(m),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    fn as_uint(&self) -> Option<u64> {
        match self {
            Node::UInt(u) => Some(*u),
            Node::Int(i) => u64::try_from(*i).ok(),
            _ => None,
        }
    }

    /// The text of a mapping key as the Go readers see it (sigs.k8s.io/yaml
    /// turns `true` or `443` keys into strings).
    fn key_text(&self) -> Option<String> {
        match self {
            Node::Str(s) => Some(s.clone()),
            Node::Bool(b) => Some(b.to_string()),
            Node::Int(i) => Some(i.to_string()),
            Node::UInt(u) => Some(u.to_string()),
            _ => None,
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "boolean",
            Node::Int(_) | Node::UInt(_) => "integer",
            Node::Float(_) => "float",
            Node::Str(_) => "string",
            Node::Seq(_) => "sequence",
            Node::Map(_) => "mapping",
        }
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        // One spelling per number, so that values compare equal however
        // the reader reported them.
        Ok(u64::try_from(v).map_or(Node::Int(v), Node::UInt))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::UInt(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::str(v))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Node::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Null => s.serialize_unit(),
            Node::Bool(b) => s.serialize_bool(*b),
            Node::Int(i) => s.serialize_i64(*i),
            Node::UInt(u) => s.serialize_u64(*u),
            Node::Float(f) => s.serialize_f64(*f),
            Node::Str(v) => s.serialize_str(v),
            Node::Seq(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Node::Map(entries) => serialize_map(entries, s),
        }
    }
}

fn serialize_map<S: Serializer>(entries: &[(Node, Node)], s: S) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(entries.len()))?;
    for (k, v) in entries {
        map.serialize_entry(k, v)?;
    }
    map.end()
}

struct MapRef<'a>(&'a [(Node, Node)]);

impl Serialize for MapRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_map(self.0, s)
    }
}

fn parse_yaml(text: &str) -> Result<Node, serde_saphyr::Error> {
    let mut options = serde_saphyr::Options::default();
    // No source snippets in messages: the text may hold a password.
    options.with_snippet = false;
    // Go's yaml readers refuse duplicate keys as well.
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    serde_saphyr::from_str_with_options(text, options)
}

fn get<'a>(map: &'a [(Node, Node)], key: &str) -> Option<&'a Node> {
    map.iter()
        .find(|(k, _)| k.key_text().as_deref() == Some(key))
        .map(|(_, v)| v)
}

fn get_mut<'a>(map: &'a mut [(Node, Node)], key: &str) -> Option<&'a mut Node> {
    map.iter_mut()
        .find(|(k, _)| k.key_text().as_deref() == Some(key))
        .map(|(_, v)| v)
}

fn yaml_error(message: String) -> CloudConfigError {
    CloudConfigError::Yaml { message }
}

/// Refuses what library-go (through sigs.k8s.io/yaml) or the vSphere CCM
/// (through gopkg.in/yaml.v2) would refuse or read differently.
fn validate_yaml(root: &[(Node, Node)]) -> Result<()> {
    check_key_case(root, TOP_KEYS, "")?;
    let sections: [(&str, &[Key]); 3] = [
        ("global", GLOBAL_KEYS),
        ("labels", LABELS_KEYS),
        ("nodes", NODES_KEYS),
    ];
    for (name, keys) in sections {
        if let Some(node) = get(root, name) {
            validate_settings(node, keys, name)?;
        }
    }
    match get(root, "vcenter") {
        None | Some(Node::Null) => {}
        Some(Node::Map(entries)) => {
            for (k, v) in entries {
                let Some(name) = k.key_text() else {
                    return Err(yaml_error(format!(
                        "`vcenter` has a {} key; its keys must be server names",
                        k.type_name()
                    )));
                };
                validate_settings(v, VCENTER_KEYS, &format!("vcenter.{name}"))?;
            }
        }
        Some(other) => {
            return Err(yaml_error(format!(
                "`vcenter` must be a mapping of server name to settings, found a {}",
                other.type_name()
            )));
        }
    }
    Ok(())
}

fn validate_settings(node: &Node, keys: &[Key], path: &str) -> Result<()> {
    let map = match node {
        Node::Null => return Ok(()),
        Node::Map(map) => map,
        other => {
            return Err(yaml_error(format!(
                "`{path}` must be a mapping, found a {}",
                other.type_name()
            )));
        }
    };
    let names: Vec<&str> = keys.iter().map(|k| k.yaml).collect();
    check_key_case(map, &names, &format!("{path}."))?;
    for def in keys {
        let Some(value) = get(map, def.yaml) else {
            continue;
        };
        let ok = match (def.kind, value) {
            (_, Node::Null) => true,
            (Kind::Str, v) => v.as_str().is_some(),
            (Kind::Bool, v) => matches!(v, Node::Bool(_)),
            (Kind::UInt, v) => v.as_uint().is_some(),
            (Kind::Port, v) => v.as_uint().is_some_and(|p| p <= u64::from(u16::MAX)),
            (Kind::List, Node::Seq(items)) => items.iter().all(|i| i.as_str().is_some()),
            (Kind::List, _) => false,
        };
        if !ok {
            let expected = match def.kind {
                Kind::Str => "a string",
                Kind::Bool => "true or false",
                Kind::UInt => "an unsigned integer",
                Kind::Port => "a port number (an unquoted integer 0-65535)",
                Kind::List => "a list of strings",
            };
            return Err(yaml_error(format!(
                "`{path}.{}` must be {expected}, found a {}",
                def.yaml,
                value.type_name()
            )));
        }
    }
    Ok(())
}

/// library-go decodes through `encoding/json`, which matches keys
/// case-insensitively, while the vSphere CCM and the CSI driver operator
/// decode with gopkg.in/yaml.v2, which does not: a key such as `vCenter`
/// would be read by some consumers and ignored by others.
fn check_key_case(map: &[(Node, Node)], known: &[&str], prefix: &str) -> Result<()> {
    for (k, _) in map {
        let Some(k) = k.key_text() else {
            continue;
        };
        if let Some(canonical) = known
            .iter()
            .find(|n| n.eq_ignore_ascii_case(&k) && **n != k)
        {
            return Err(yaml_error(format!(
                "key `{prefix}{k}` must be spelled `{prefix}{canonical}`: the vSphere CCM reads \
                 keys case-sensitively and would ignore it, while library-go would not"
            )));
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
struct YamlDoc {
    /// The top-level mapping.
    root: Mapping,
    /// The text: the original until an edit, then the written form.
    text: String,
}

impl YamlDoc {
    /// Writes the text again after an edit, and proves that it reads back as
    /// the same value.
    fn commit(&mut self) -> Result<()> {
        let text = serde_saphyr::to_string(&MapRef(&self.root))
            .map_err(|e| CloudConfigError::Render(e.to_string()))?;
        match parse_yaml(&text) {
            Ok(Node::Map(back)) if back == self.root => {
                self.text = text;
                Ok(())
            }
            Ok(_) => Err(CloudConfigError::Render(
                "the written YAML does not read back as the same configuration".into(),
            )),
            Err(e) => Err(CloudConfigError::Render(format!(
                "the written YAML does not parse: {e}"
            ))),
        }
    }

    fn vcenters(&self) -> Vec<VCenterEntry> {
        let Some(entries) = get(&self.root, "vcenter").and_then(Node::as_map) else {
            return Vec::new();
        };
        entries
            .iter()
            .filter_map(|(k, v)| {
                let server = k.key_text()?;
                let settings = v.as_map().unwrap_or_default();
                Some(VCenterEntry {
                    server,
                    address: get(settings, "server")
                        .and_then(Node::as_str)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                    port: get(settings, "port")
                        .and_then(Node::as_uint)
                        .and_then(|p| u16::try_from(p).ok())
                        .filter(|p| *p != 0),
                    datacenters: match get(settings, "datacenters") {
                        Some(Node::Seq(items)) => items
                            .iter()
                            .filter_map(Node::as_str)
                            .map(str::to_owned)
                            .collect(),
                        _ => Vec::new(),
                    },
                })
            })
            .collect()
    }

    /// The `vcenter` mapping, created after `global` (or first) when absent.
    fn vcenter_map(&mut self) -> Result<&mut Mapping> {
        let pos = match self
            .root
            .iter()
            .position(|(k, _)| k.key_text().as_deref() == Some("vcenter"))
        {
            Some(pos) => pos,
            None => {
                let at = self
                    .root
                    .iter()
                    .position(|(k, _)| k.key_text().as_deref() == Some("global"))
                    .map_or(0, |g| g + 1);
                self.root
                    .insert(at, (Node::str("vcenter"), Node::Map(Vec::new())));
                at
            }
        };
        let slot = &mut self.root[pos].1;
        if *slot == Node::Null {
            *slot = Node::Map(Vec::new());
        }
        match slot {
            Node::Map(map) => Ok(map),
            other => Err(yaml_error(format!(
                "`vcenter` must be a mapping, found a {}",
                other.type_name()
            ))),
        }
    }

    fn add_vcenter(&mut self, server: &str, port: Option<u16>, wanted: &[&str]) -> Result<bool> {
        let vcenters = self.vcenter_map()?;
        let Some(pos) = vcenters
            .iter()
            .position(|(k, _)| k.key_text().as_deref() == Some(server))
        else {
            let mut settings = vec![(Node::str("server"), Node::str(server))];
            if let Some(port) = port {
                settings.push((Node::str("port"), Node::UInt(u64::from(port))));
            }
            settings.push((
                Node::str("datacenters"),
                Node::Seq(wanted.iter().map(|d| Node::str(d)).collect()),
            ));
            vcenters.push((Node::str(server), Node::Map(settings)));
            self.commit()?;
            return Ok(true);
        };
        let entry = &mut vcenters[pos].1;
        if *entry == Node::Null {
            *entry = Node::Map(Vec::new());
        }
        let Node::Map(settings) = entry else {
            return Err(yaml_error(format!(
                "`vcenter.{server}` must be a mapping, found a {}",
                entry.type_name()
            )));
        };
        let changed = match get_mut(settings, "datacenters") {
            Some(Node::Seq(items)) => {
                let missing: Vec<Node> = wanted
                    .iter()
                    .filter(|dc| !items.iter().any(|i| i.as_str() == Some(dc)))
                    .map(|dc| Node::str(dc))
                    .collect();
                let changed = !missing.is_empty();
                items.extend(missing);
                changed
            }
            Some(slot) => {
                // Null (validated): set the list.
                *slot = Node::Seq(wanted.iter().map(|d| Node::str(d)).collect());
                !wanted.is_empty()
            }
            None if wanted.is_empty() => false,
            None => {
                settings.push((
                    Node::str("datacenters"),
                    Node::Seq(wanted.iter().map(|d| Node::str(d)).collect()),
                ));
                true
            }
        };
        if changed {
            self.commit()?;
        }
        Ok(changed)
    }

    fn remove_vcenter(&mut self, server: &str) -> Result<bool> {
        let global_server = get(&self.root, "global")
            .and_then(Node::as_map)
            .and_then(|g| get(g, "server"))
            .and_then(Node::as_str);
        if global_server == Some(server) {
            return Err(CloudConfigError::GlobalServer {
                server: server.to_owned(),
            });
        }
        let Some(Node::Map(vcenters)) = get_mut(&mut self.root, "vcenter") else {
            return Ok(false);
        };
        let before = vcenters.len();
        vcenters.retain(|(k, _)| k.key_text().as_deref() != Some(server));
        if vcenters.len() == before {
            return Ok(false);
        }
        self.commit()?;
        Ok(true)
    }

    fn set_zone_labels(&mut self) -> Result<()> {
        let wanted = [("region", REGION_CATEGORY), ("zone", ZONE_CATEGORY)];
        match get_mut(&mut self.root, "labels") {
            None => self.root.push((
                Node::str("labels"),
                Node::Map(
                    wanted
                        .iter()
                        .map(|(k, v)| (Node::str(k), Node::str(v)))
                        .collect(),
                ),
            )),
            Some(slot) => {
                if *slot == Node::Null {
                    *slot = Node::Map(Vec::new());
                }
                let Node::Map(labels) = slot else {
                    return Err(yaml_error(format!(
                        "`labels` must be a mapping, found a {}",
                        slot.type_name()
                    )));
                };
                for (key, value) in wanted {
                    match get_mut(labels, key) {
                        Some(Node::Str(s)) if !s.is_empty() => {}
                        Some(v) => *v = Node::str(value),
                        None => labels.push((Node::str(key), Node::str(value))),
                    }
                }
            }
        }
        self.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // --- Real samples -----------------------------------------------------

    /// openshift/installer, pkg/asset/manifests/vsphere/cloudproviderconfig_test.go:
    /// `expectedIniConfig + expectIniLabelsSection` (legacy in-tree INI with
    /// [Workspace], a blank line inside [VirtualCenter] and [Labels]).
    const INI_INSTALLER_LEGACY: &str = "[Global]
secret-name = \"vsphere-creds\"
secret-namespace = \"kube-system\"
insecure-flag = \"1\"

[VirtualCenter \"test-vcenter\"]
port = \"443\"

datacenters = \"test-datacenter,test-datacenter2\"

[Workspace]
server = \"test-vcenter\"
datacenter = \"test-datacenter\"
default-datastore = \"test-datastore\"
folder = \"/test-datacenter/vm/test-folder\"
resourcepool-path = \"/test-datacenter/host/cluster/Resources/test-resourcepool\"

[Labels]
region = \"openshift-region\"
zone = \"openshift-zone\"
";

    /// openshift/vmware-vsphere-csi-driver-operator, pkg/operator/testlib/multiple_vc.ini
    /// (two [VirtualCenter] sections, [Workspace], global user/password/port).
    const INI_CSI_MULTI_VC: &str = "[Global]
user = \"administrator@vsphere.local\"
password = \"foobar\"
port = \"443\"
insecure-flag = \"1\"

[Workspace]
server = \"foobar.lan\"
datacenter = \"Datacenter\"
default-datastore = \"baz\"
folder = \"k8s\"

[VirtualCenter \"foobar.lan\"]
datacenters = \"Datacenter\"

[VirtualCenter \"foobaz.lan\"]
datacenters = \"Datacenterb\"
";

    /// openshift/cluster-cloud-controller-manager-operator,
    /// pkg/cloud/vsphere/vsphere_config_transformer_test.go: `iniConfigNodeNetworking`
    /// (no [Workspace], [Nodes]; starts with a line break, no final one).
    const INI_CCCMO_NODES: &str = "
[Global]
secret-name = \"vsphere-creds\"
secret-namespace = \"kube-system\"
insecure-flag = \"1\"

[VirtualCenter \"test-server\"]
datacenters = \"DC1\"

[Nodes]
exclude-external-network-subnet-cidr = \"192.1.2.0/24,fe80::2/128\"
exclude-internal-network-subnet-cidr = \"192.0.2.0/24,fe80::1/128\"
external-network-subnet-cidr = \"198.51.100.0/24,fe80::3/128\"
external-vm-network-name = \"external-network\"
internal-network-subnet-cidr = \"192.0.3.0/24,fe80::4/128\"
internal-vm-network-name = \"internal-network\"";

    /// openshift/cluster-cloud-controller-manager-operator,
    /// pkg/cloud/vsphere/vsphere_config_transformer_test.go:
    /// `yamlConfigWithMultipleVCenters` (three vCenters, labels).
    const YAML_CCCMO_MULTI_VC: &str = "
global:
  insecureFlag: true
  secretName: vsphere-creds
  secretNamespace: kube-system
vcenter:
  test-server:
    server: test-server
    port: 443
    datacenters:
    - DC1
    - DC2
    - DC3
  old-server-1:
    server: old-server-1
    datacenters:
    - OLD-DC1
  old-server-2:
    server: old-server-2
    datacenters:
    - OLD-DC2
labels:
  zone: openshift-zone
  region: openshift-region";

    /// openshift/cluster-cloud-controller-manager-operator,
    /// pkg/cloud/vsphere/vsphere_config_transformer_test.go:
    /// `yamlConfigNodeNetworkingDualStackPrimaryIPv4` (nodes, ipFamily list).
    const YAML_CCCMO_NODES: &str = "
global:
  insecureFlag: true
  secretName: vsphere-creds
  secretNamespace: kube-system
vcenter:
  test-server:
    server: test-server
    datacenters:
    - DC1
    ipFamily:
    - ipv4
    - ipv6
nodes:
  internalNetworkSubnetCidr: 192.0.3.0/24,fe80::4/128
  externalNetworkSubnetCidr: 198.51.100.0/24,fe80::3/128
  internalVmNetworkName: internal-network
  externalVmNetworkName: external-network
  excludeInternalNetworkSubnetCidr: 192.0.2.0/24,fe80::1/128,192.168.96.3/32,fd65:a1a8:60ad:271c::200/128,192.168.96.4/32,fd65:a1a8:60ad:271c::201/128,fd69::2/128
  excludeExternalNetworkSubnetCidr: 192.1.2.0/24,fe80::2/128,192.168.96.3/32,fd65:a1a8:60ad:271c::200/128,192.168.96.4/32,fd65:a1a8:60ad:271c::201/128,fd69::2/128";

    /// openshift/installer, an earlier version of
    /// pkg/asset/manifests/vsphere/cloudproviderconfig_test.go:
    /// `expectedYamlMultiZoneConfig` (every key written, empty values, and
    /// keys library-go does not know: `tenantref`, `secretref`).
    const YAML_INSTALLER_ALL_KEYS: &str = "global:
  user: \"\"
  password: \"\"
  server: \"\"
  port: 0
  insecureFlag: false
  datacenters: []
  soapRoundtripCount: 0
  caFile: \"\"
  thumbprint: \"\"
  secretName: vsphere-creds
  secretNamespace: kube-system
  secretsDirectory: \"\"
  apiDisable: false
  apiBinding: \"\"
  ipFamily: []
vcenter:
  test-vcenter:
    user: \"\"
    password: \"\"
    tenantref: \"\"
    server: test-vcenter
    port: 443
    insecureFlag: false
    datacenters:
    - test-datacenter
    soapRoundtripCount: 0
    caFile: \"\"
    thumbprint: \"\"
    secretref: \"\"
    secretName: \"\"
    secretNamespace: \"\"
    ipFamily: []
labels:
  zone: openshift-zone
  region: openshift-region
";

    const INI_SAMPLES: [&str; 3] = [INI_INSTALLER_LEGACY, INI_CSI_MULTI_VC, INI_CCCMO_NODES];
    const YAML_SAMPLES: [&str; 3] = [
        YAML_CCCMO_MULTI_VC,
        YAML_CCCMO_NODES,
        YAML_INSTALLER_ALL_KEYS,
    ];

    fn parse(text: &str) -> CloudConfig {
        match CloudConfig::parse(text) {
            Ok(config) => config,
            Err(e) => panic!("parse failed: {e}\n{text}"),
        }
    }

    fn yaml_value(text: &str) -> Node {
        parse_yaml(text).expect("valid YAML")
    }

    fn dcs(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn vc(server: &str, port: Option<u16>, datacenters: &[&str]) -> VCenterEntry {
        VCenterEntry {
            server: server.into(),
            address: None,
            port,
            datacenters: dcs(datacenters),
        }
    }

    fn syntax_error_line(text: &str) -> (usize, String) {
        match CloudConfig::parse(text) {
            Err(CloudConfigError::IniSyntax { line, message }) => (line, message),
            other => panic!("expected an INI syntax error for {text:?}, got {other:?}"),
        }
    }

    // --- Reading ----------------------------------------------------------

    #[test]
    fn formats_are_detected_like_library_go() {
        for text in INI_SAMPLES {
            assert_eq!(parse(text).format(), Format::Ini, "{text}");
        }
        for text in YAML_SAMPLES {
            assert_eq!(parse(text).format(), Format::Yaml, "{text}");
        }
    }

    #[test]
    fn ini_samples_round_trip_byte_for_byte() {
        for text in INI_SAMPLES {
            assert_eq!(parse(text).render(), text);
        }
    }

    #[test]
    fn yaml_samples_round_trip_to_the_same_value() {
        for text in YAML_SAMPLES {
            let config = parse(text);
            // Untouched, the text is given back as it was (comments and all).
            assert_eq!(config.render(), text);
            // Written out again, it reads back as the same value, unknown keys
            // included.
            let Doc::Yaml(mut yaml) = config.doc else {
                panic!("not YAML")
            };
            yaml.commit().expect("commit");
            assert_eq!(yaml_value(&yaml.text), yaml_value(text));
            assert_eq!(parse(&yaml.text).vcenters(), parse(text).vcenters());
        }
    }

    #[test]
    fn reads_vcenters_labels_and_globals_from_every_sample() {
        let legacy = parse(INI_INSTALLER_LEGACY);
        assert_eq!(
            legacy.vcenters(),
            vec![vc(
                "test-vcenter",
                Some(443),
                &["test-datacenter", "test-datacenter2"]
            )]
        );
        assert!(legacy.has_workspace());
        assert_eq!(legacy.workspace_server().as_deref(), Some("test-vcenter"));
        assert!(legacy.zone_labels());
        assert_eq!(
            legacy.global(),
            GlobalSettings {
                secret_name: Some("vsphere-creds".into()),
                secret_namespace: Some("kube-system".into()),
                insecure_flag: true,
            }
        );

        let csi = parse(INI_CSI_MULTI_VC);
        assert_eq!(
            csi.vcenters(),
            vec![
                vc("foobar.lan", None, &["Datacenter"]),
                vc("foobaz.lan", None, &["Datacenterb"]),
            ]
        );
        assert!(!csi.zone_labels());
        assert_eq!(csi.global().secret_name, None);

        let nodes = parse(INI_CCCMO_NODES);
        assert_eq!(nodes.vcenters(), vec![vc("test-server", None, &["DC1"])]);
        assert!(!nodes.has_workspace());

        let multi = parse(YAML_CCCMO_MULTI_VC);
        let mut expected = vec![
            vc("test-server", Some(443), &["DC1", "DC2", "DC3"]),
            vc("old-server-1", None, &["OLD-DC1"]),
            vc("old-server-2", None, &["OLD-DC2"]),
        ];
        for e in &mut expected {
            e.address = Some(e.server.clone());
        }
        assert_eq!(multi.vcenters(), expected);
        assert!(multi.zone_labels());
        assert!(!multi.has_workspace());
        assert!(multi.global().insecure_flag);

        let all_keys = parse(YAML_INSTALLER_ALL_KEYS);
        let mut expected = vc("test-vcenter", Some(443), &["test-datacenter"]);
        expected.address = Some("test-vcenter".into());
        assert_eq!(all_keys.vcenters(), vec![expected]);
        assert!(!all_keys.global().insecure_flag);
    }

    #[test]
    fn datacenter_lists_are_split_and_trimmed_like_library_go() {
        // openshift/vmware-vsphere-csi-driver-operator, pkg/operator/testlib/multiple_dc.ini
        // writes a space after the comma.
        let config = parse(
            "[Global]\nport = \"443\"\n\n[VirtualCenter \"foobar.lan\"]\ndatacenters = \"Datacentera, DatacenterB\"\n",
        );
        assert_eq!(
            config.vcenters()[0].datacenters,
            dcs(&["Datacentera", "DatacenterB"])
        );
    }

    #[test]
    fn gcfg_syntax_details_are_honoured() {
        let text = "; leading comment\n\
                    [ global ]  # names are case-insensitive, blanks allowed\n\
                    SECRET-NAME=creds ; inline comment ends an unquoted value\n\
                    secret-namespace = \"kube\"-system\n\
                    insecure-flag\n\
                    [virtualcenter \"vc \\\"one\\\"\\\\x\"]\n\
                    \tDatacenters = dc1,\\\n    dc2   \n\
                    server = \"10.0.0.1\" # the real address\n";
        let config = parse(text);
        assert_eq!(config.format(), Format::Ini);
        assert_eq!(config.render(), text);
        let global = config.global();
        assert_eq!(global.secret_name.as_deref(), Some("creds"));
        // Quoted parts are concatenated.
        assert_eq!(global.secret_namespace.as_deref(), Some("kube-system"));
        // A key without a value is a true boolean.
        assert!(global.insecure_flag);
        let vcenters = config.vcenters();
        assert_eq!(vcenters.len(), 1);
        // Subsection escapes, continuation lines, and the address override.
        assert_eq!(vcenters[0].server, "vc \"one\"\\x");
        assert_eq!(vcenters[0].datacenters, dcs(&["dc1", "dc2"]));
        assert_eq!(vcenters[0].address.as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn malformed_ini_reports_the_line() {
        let (line, message) =
            syntax_error_line("[Global]\nsecret-name = \"a\"\n[VirtualCenter \"x\"\n");
        assert_eq!(line, 3);
        assert!(message.contains("expected `]`"), "{message}");

        let (line, message) = syntax_error_line("; comment\n\nsecret-name = \"a\"\n[Global]\n");
        assert_eq!(line, 3);
        assert!(message.contains("outside any section"), "{message}");

        let (line, message) = syntax_error_line("[Global]\nsecret-name = \"a\n");
        assert_eq!(line, 2);
        assert!(message.contains("unterminated"), "{message}");

        let (line, message) = syntax_error_line("[Global]\n\nsecret-name: a\n");
        assert_eq!(line, 3);
        assert!(message.contains("expected `=`"), "{message}");

        let (line, message) = syntax_error_line("[Global]\n[VirtualCenter \"\"]\n");
        assert_eq!(line, 2);
        assert!(message.contains("empty subsection"), "{message}");

        let (line, message) = syntax_error_line("[Global]\n[VirtualCenter]\ndatacenters = \"a\"\n");
        assert_eq!(line, 2);
        assert!(
            message.contains("[VirtualCenter \"<server>\"]"),
            "{message}"
        );

        match CloudConfig::parse("[Global]\ninsecure-flag = \"maybe\"\n") {
            Err(e @ CloudConfigError::InvalidIniValue { line: 2, .. }) => {
                assert!(e.to_string().contains("insecure-flag"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        match CloudConfig::parse("[Global]\n\n[VirtualCenter \"a\"]\nport = \"https\"\n") {
            Err(CloudConfigError::InvalidIniValue { line: 4, key, .. }) => assert_eq!(key, "port"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_yaml_and_empty_text_are_reported_as_such() {
        assert_eq!(CloudConfig::parse("").unwrap_err(), CloudConfigError::Empty);
        assert_eq!(
            CloudConfig::parse("  \n# nothing\n").unwrap_err(),
            CloudConfigError::Empty
        );
        assert_eq!(
            CloudConfig::parse("; nothing\n").unwrap_err(),
            CloudConfigError::Empty
        );
        match CloudConfig::parse("global:\n  secretName: [x\n") {
            Err(CloudConfigError::Yaml { message }) => {
                assert!(message.contains("line 2"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        // A quoted port is a string, which library-go cannot read into a number.
        match CloudConfig::parse("vcenter:\n  a:\n    server: a\n    port: \"443\"\n") {
            Err(CloudConfigError::Yaml { message }) => {
                assert!(message.contains("vcenter.a.port"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        // Keys that only some consumers would read.
        match CloudConfig::parse("vCenter:\n  a:\n    server: a\n") {
            Err(CloudConfigError::Yaml { message }) => {
                assert!(message.contains("`vcenter`"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        // Secrets stay out of messages: no source snippet.
        match CloudConfig::parse("global:\n  password: hunter2\n   bad: indent\n") {
            Err(e) => assert!(!e.to_string().contains("hunter2"), "{e}"),
            Ok(_) => panic!("accepted broken YAML"),
        }
    }

    // --- add_vcenter --------------------------------------------------------

    #[test]
    fn ini_add_vcenter_inserts_only_the_new_section_after_the_last_vcenter() {
        let mut config = parse(INI_INSTALLER_LEGACY);
        assert!(
            config
                .add_vcenter("vcenter-b.example.com", Some(443), &dcs(&["dc-b", "dc-b"]))
                .unwrap()
        );
        let expected = INI_INSTALLER_LEGACY.replace(
            "\n[Workspace]",
            "\n[VirtualCenter \"vcenter-b.example.com\"]\nport = \"443\"\ndatacenters = \"dc-b\"\n\n[Workspace]",
        );
        assert_eq!(config.render(), expected);
        assert_eq!(
            config.vcenter("vcenter-b.example.com"),
            Some(vc("vcenter-b.example.com", Some(443), &["dc-b"]))
        );

        // Idempotent: nothing changes the second time.
        assert!(
            !config
                .add_vcenter("vcenter-b.example.com", Some(443), &dcs(&["dc-b"]))
                .unwrap()
        );
        assert_eq!(config.render(), expected);
    }

    #[test]
    fn ini_add_vcenter_to_text_without_final_line_break() {
        let mut config = parse(INI_CCCMO_NODES);
        assert!(config.add_vcenter("vc2", None, &dcs(&["DC9"])).unwrap());
        let expected = INI_CCCMO_NODES.replace(
            "datacenters = \"DC1\"\n",
            "datacenters = \"DC1\"\n\n[VirtualCenter \"vc2\"]\ndatacenters = \"DC9\"\n",
        );
        assert_eq!(config.render(), expected);

        // Appended at the end when there is no [VirtualCenter] yet.
        let mut config = parse("[Global]\nsecret-name = \"vsphere-creds\"");
        assert!(config.add_vcenter("vc", Some(443), &dcs(&["DC"])).unwrap());
        assert_eq!(
            config.render(),
            "[Global]\nsecret-name = \"vsphere-creds\"\n\n[VirtualCenter \"vc\"]\nport = \"443\"\ndatacenters = \"DC\"\n"
        );
    }

    #[test]
    fn ini_add_datacenter_to_existing_vcenter_changes_only_that_line() {
        let mut config = parse(INI_INSTALLER_LEGACY);
        assert!(
            config
                .add_vcenter(
                    "test-vcenter",
                    Some(8443),
                    &dcs(&["test-datacenter", "dc3"])
                )
                .unwrap()
        );
        let expected = INI_INSTALLER_LEGACY.replace(
            "datacenters = \"test-datacenter,test-datacenter2\"",
            "datacenters = \"test-datacenter,test-datacenter2,dc3\"",
        );
        // The port of the existing entry is kept.
        assert_eq!(config.render(), expected);
        assert!(
            !config
                .add_vcenter("test-vcenter", None, &dcs(&["dc3"]))
                .unwrap()
        );

        // The unquoted, aligned style of the oldest installers stays unquoted,
        // and the spacing of the existing list is kept.
        let text = "[Global]\nsecret-name      = vsphere-creds\n\n[VirtualCenter \"a\"]\ndatacenters = DC1, DC2 ; the list\n";
        let mut config = parse(text);
        assert!(config.add_vcenter("a", None, &dcs(&["DC3"])).unwrap());
        assert_eq!(
            config.render(),
            text.replace("DC1, DC2 ;", "DC1, DC2,DC3 ;")
        );

        // A section without datacenters gets the key after its last entry.
        let text =
            "[VirtualCenter \"a\"]\n  port = \"443\"\n\n[Labels]\nzone = \"z\"\nregion = \"r\"\n";
        let mut config = parse(text);
        assert!(config.add_vcenter("a", None, &dcs(&["DC1"])).unwrap());
        assert_eq!(
            config.render(),
            text.replace(
                "port = \"443\"\n",
                "port = \"443\"\n  datacenters = \"DC1\"\n"
            )
        );
    }

    #[test]
    fn server_names_are_case_sensitive() {
        let mut config = parse(INI_CSI_MULTI_VC);
        assert!(
            config
                .add_vcenter("FOOBAR.lan", None, &dcs(&["Datacenter"]))
                .unwrap()
        );
        assert_eq!(config.vcenters().len(), 3);
        let mut config = parse(YAML_CCCMO_MULTI_VC);
        assert!(
            config
                .add_vcenter("Test-Server", None, &dcs(&["DC1"]))
                .unwrap()
        );
        assert_eq!(config.vcenters().len(), 4);
    }

    #[test]
    fn yaml_add_vcenter_keeps_every_other_key() {
        let mut config = parse(YAML_INSTALLER_ALL_KEYS);
        assert!(
            config
                .add_vcenter("vcenter-b.example.com", Some(443), &dcs(&["dc-b"]))
                .unwrap()
        );
        let text = config.render();
        let Node::Map(after) = yaml_value(&text) else {
            panic!("not a mapping")
        };
        let Node::Map(mut before) = yaml_value(YAML_INSTALLER_ALL_KEYS) else {
            panic!("not a mapping")
        };
        // Exactly one entry more, appended to `vcenter`; everything else,
        // unknown keys included, is unchanged.
        let Some(Node::Map(vcenters)) = get_mut(&mut before, "vcenter") else {
            panic!("no vcenter")
        };
        vcenters.push((
            Node::str("vcenter-b.example.com"),
            Node::Map(vec![
                (Node::str("server"), Node::str("vcenter-b.example.com")),
                (Node::str("port"), Node::UInt(443)),
                (Node::str("datacenters"), Node::Seq(vec![Node::str("dc-b")])),
            ]),
        ));
        assert_eq!(after, before);
        assert!(text.contains("tenantref"));

        assert!(
            !config
                .add_vcenter("vcenter-b.example.com", Some(443), &dcs(&["dc-b"]))
                .unwrap()
        );
        assert_eq!(config.render(), text);
    }

    #[test]
    fn yaml_add_datacenter_to_existing_entry() {
        let mut config = parse(YAML_CCCMO_NODES);
        assert!(
            config
                .add_vcenter("test-server", Some(443), &dcs(&["DC2"]))
                .unwrap()
        );
        let entry = config.vcenter("test-server").unwrap();
        assert_eq!(entry.datacenters, dcs(&["DC1", "DC2"]));
        // The port is not added to an existing entry, and its other keys stay.
        assert_eq!(entry.port, None);
        let value = yaml_value(&config.render());
        let settings = value
            .as_map()
            .and_then(|r| get(r, "vcenter"))
            .and_then(Node::as_map)
            .and_then(|v| get(v, "test-server"))
            .and_then(Node::as_map)
            .unwrap();
        assert_eq!(
            get(settings, "ipFamily"),
            Some(&Node::Seq(vec![Node::str("ipv4"), Node::str("ipv6")]))
        );
        let text = config.render();
        assert!(
            !config
                .add_vcenter("test-server", None, &dcs(&["DC1", "DC2"]))
                .unwrap()
        );
        assert_eq!(config.render(), text);
    }

    #[test]
    fn add_vcenter_refuses_names_it_cannot_write() {
        let mut config = parse(INI_CSI_MULTI_VC);
        for (server, dc) in [("", "dc"), ("vc\n", "dc"), ("vc", "a,b"), ("vc", " dc")] {
            assert!(matches!(
                config.add_vcenter(server, None, &dcs(&[dc])),
                Err(CloudConfigError::InvalidName { .. })
            ));
        }
        assert_eq!(config.render(), INI_CSI_MULTI_VC);
    }

    // --- remove_vcenter -----------------------------------------------------

    #[test]
    fn ini_remove_vcenter_removes_only_its_section() {
        let text = "[Global]\nsecret-name = \"vsphere-creds\"\n\n[VirtualCenter \"old\"]\n; the old one\nport = \"443\"\ndatacenters = \"DC1\"\n\n# about the new one\n[VirtualCenter \"new\"]\ndatacenters = \"DC2\"\n";
        let mut config = parse(text);
        assert!(config.remove_vcenter("old").unwrap());
        assert_eq!(
            config.render(),
            "[Global]\nsecret-name = \"vsphere-creds\"\n\n# about the new one\n[VirtualCenter \"new\"]\ndatacenters = \"DC2\"\n"
        );
        assert!(!config.remove_vcenter("old").unwrap());

        // The last section: the blank line before it goes too.
        let mut config = parse(INI_CSI_MULTI_VC);
        assert!(config.remove_vcenter("foobaz.lan").unwrap());
        assert_eq!(
            config.render(),
            INI_CSI_MULTI_VC.replace(
                "\n[VirtualCenter \"foobaz.lan\"]\ndatacenters = \"Datacenterb\"\n",
                ""
            )
        );
    }

    #[test]
    fn ini_remove_vcenter_refuses_the_workspace_and_global_server() {
        let mut config = parse(INI_CSI_MULTI_VC);
        assert_eq!(
            config.remove_vcenter("foobar.lan"),
            Err(CloudConfigError::WorkspaceServer {
                server: "foobar.lan".into()
            })
        );
        assert_eq!(config.render(), INI_CSI_MULTI_VC);

        let mut config =
            parse("[Global]\nserver = \"a\"\n\n[VirtualCenter \"a\"]\ndatacenters = \"DC\"\n");
        assert!(matches!(
            config.remove_vcenter("a"),
            Err(CloudConfigError::GlobalServer { .. })
        ));
    }

    #[test]
    fn yaml_remove_vcenter() {
        let mut config = parse(YAML_CCCMO_MULTI_VC);
        assert!(config.remove_vcenter("old-server-1").unwrap());
        let servers: Vec<String> = config.vcenters().into_iter().map(|v| v.server).collect();
        assert_eq!(servers, ["test-server", "old-server-2"]);
        assert!(config.zone_labels());
        let text = config.render();
        assert!(!config.remove_vcenter("old-server-1").unwrap());
        assert_eq!(config.render(), text);

        let mut config = parse("global:\n  server: a\nvcenter:\n  a:\n    server: a\n");
        assert!(matches!(
            config.remove_vcenter("a"),
            Err(CloudConfigError::GlobalServer { .. })
        ));
    }

    // --- set_zone_labels ------------------------------------------------------

    #[test]
    fn ini_set_zone_labels_appends_a_labels_section() {
        let mut config = parse(INI_CSI_MULTI_VC);
        assert!(config.set_zone_labels().unwrap());
        let expected = format!(
            "{INI_CSI_MULTI_VC}\n[Labels]\nregion = \"openshift-region\"\nzone = \"openshift-zone\"\n"
        );
        assert_eq!(config.render(), expected);
        assert!(config.zone_labels());
        assert!(!config.set_zone_labels().unwrap());
        assert_eq!(config.render(), expected);

        // Already set: nothing to do.
        let mut config = parse(INI_INSTALLER_LEGACY);
        assert!(!config.set_zone_labels().unwrap());
        assert_eq!(config.render(), INI_INSTALLER_LEGACY);

        // A half-filled section is completed in place.
        let text = "[Labels]\nregion = \"openshift-region\"\nzone = \"\"\n\n[VirtualCenter \"a\"]\ndatacenters = \"DC\"\n";
        let mut config = parse(text);
        assert!(config.set_zone_labels().unwrap());
        assert_eq!(
            config.render(),
            text.replace("zone = \"\"", "zone = \"openshift-zone\"")
        );
    }

    #[test]
    fn set_zone_labels_refuses_other_categories() {
        let text = "[Global]\nsecret-name = \"c\"\n\n[Labels]\nregion = \"k8s-region\"\nzone = \"k8s-zone\"\n";
        let mut config = parse(text);
        let err = config.set_zone_labels().unwrap_err();
        assert_eq!(
            err,
            CloudConfigError::ConflictingLabels {
                region: Some("k8s-region".into()),
                zone: Some("k8s-zone".into()),
            }
        );
        assert!(
            err.to_string()
                .contains("(region \"k8s-region\", zone \"k8s-zone\")"),
            "{err}"
        );
        assert_eq!(config.render(), text);

        let mut config = parse("vcenter: {}\nlabels:\n  zone: my-zones\n");
        assert!(matches!(
            config.set_zone_labels(),
            Err(CloudConfigError::ConflictingLabels { .. })
        ));
    }

    #[test]
    fn yaml_set_zone_labels() {
        let mut config = parse(YAML_CCCMO_NODES);
        assert!(config.set_zone_labels().unwrap());
        assert_eq!(
            config.labels(),
            ZoneLabels {
                region: Some(REGION_CATEGORY.into()),
                zone: Some(ZONE_CATEGORY.into()),
            }
        );
        let text = config.render();
        assert!(!config.set_zone_labels().unwrap());
        assert_eq!(config.render(), text);
        assert!(!parse(YAML_CCCMO_MULTI_VC).set_zone_labels().unwrap());
    }

    // --- to_yaml --------------------------------------------------------------

    #[test]
    fn legacy_ini_converts_to_yaml_and_reports_workspace() {
        let mut config = parse(INI_INSTALLER_LEGACY);
        let before_vcenters = config.vcenters();
        let before_global = config.global();
        let dropped = config.to_yaml().unwrap();
        assert_eq!(config.format(), Format::Yaml);
        assert!(dropped.contains(&"[Workspace]".to_owned()), "{dropped:?}");
        assert!(
            dropped.contains(&"[Workspace] server = \"test-vcenter\"".to_owned()),
            "{dropped:?}"
        );
        assert_eq!(dropped.len(), 6, "{dropped:?}");

        let text = config.render();
        let reread = parse(&text);
        assert_eq!(reread.format(), Format::Yaml);
        let mut expected = before_vcenters;
        expected[0].address = Some("test-vcenter".into());
        assert_eq!(reread.vcenters(), expected);
        assert_eq!(reread.global(), before_global);
        assert!(reread.zone_labels());
        assert!(!reread.has_workspace());
        assert_eq!(
            yaml_value(&text),
            yaml_value(
                "global:\n  secretName: vsphere-creds\n  secretNamespace: kube-system\n  insecureFlag: true\n\
                 vcenter:\n  test-vcenter:\n    server: test-vcenter\n    port: 443\n    datacenters:\n    - test-datacenter\n    - test-datacenter2\n\
                 labels:\n  region: openshift-region\n  zone: openshift-zone\n"
            )
        );
        // Converting again is a no-op.
        assert_eq!(config.to_yaml().unwrap(), Vec::<String>::new());
        assert_eq!(config.render(), text);
        // Now the old vCenter can go.
        assert!(config.remove_vcenter("test-vcenter").unwrap());
    }

    #[test]
    fn to_yaml_maps_every_known_key() {
        let text = "[Global]\n\
            user = \"u\"\npassword = \"p\"\nserver = \"g\"\nport = \"8443\"\ninsecure-flag = \"true\"\n\
            datacenters = \"a, b\"\nsoap-roundtrip-count = \"0x10\"\nca-file = \"/ca.pem\"\nthumbprint = \"AA:BB\"\n\
            secret-name = \"s\"\nsecret-namespace = \"ns\"\nsecrets-directory = \"/d\"\napi-disable\n\
            api-binding = \":43001\"\nip-family = \"ipv6, ipv4\"\n\
            [VirtualCenter \"tenant\"]\nserver = \"10.0.0.1\"\ninsecure-flag = \"0\"\nip-family = \"ipv4\"\n\
            [Labels]\nzone = \"z\"\nregion = \"r\"\n\
            [Nodes]\ninternal-network-subnet-cidr = \"10.0.0.0/24\"\nexcluDe-external-network-subnet-cidr = \"10.1.0.0/24\"\n\
            internal-vm-network-name = \"i\"\nexternal-vm-network-name = \"e\"\n\
            exclude-internal-network-subnet-cidr = \"10.2.0.0/24\"\nexternal-network-subnet-cidr = \"10.3.0.0/24\"\n";
        let mut config = parse(text);
        // Every global key, and the deprecated global server, is kept.
        assert!(config.remove_vcenter("g").is_err());
        assert_eq!(config.to_yaml().unwrap(), Vec::<String>::new());
        let expected = r#"
global:
  user: u
  password: p
  server: g
  port: 8443
  insecureFlag: true
  datacenters: [a, b]
  soapRoundtripCount: 16
  caFile: /ca.pem
  thumbprint: "AA:BB"
  secretName: s
  secretNamespace: ns
  secretsDirectory: /d
  apiDisable: true
  apiBinding: ":43001"
  ipFamily: [ipv6, ipv4]
vcenter:
  tenant:
    server: 10.0.0.1
    insecureFlag: false
    ipFamily: [ipv4]
labels:
  zone: z
  region: r
nodes:
  internalNetworkSubnetCidr: 10.0.0.0/24
  excludeExternalNetworkSubnetCidr: 10.1.0.0/24
  internalVmNetworkName: i
  externalVmNetworkName: e
  excludeInternalNetworkSubnetCidr: 10.2.0.0/24
  externalNetworkSubnetCidr: 10.3.0.0/24
"#;
        assert_eq!(yaml_value(&config.render()), yaml_value(expected));
        // The tenant-ref form keeps its real address.
        assert_eq!(config.vcenters()[0].address.as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn to_yaml_refuses_unknown_keys_and_sections() {
        let text = "[Global]\nsecret-name = \"c\"\nservice-account = \"ccm\"\n";
        let mut config = parse(text);
        let err = config.to_yaml().unwrap_err();
        assert_eq!(
            err,
            CloudConfigError::UnknownIniKey {
                line: 3,
                section: "Global".into(),
                key: "service-account".into(),
            }
        );
        assert!(err.to_string().contains("service-account"), "{err}");
        // Nothing changed.
        assert_eq!(config.format(), Format::Ini);
        assert_eq!(config.render(), text);

        let mut config = parse(
            "[Global]\nsecret-name = \"c\"\n\n[Snapshot]\nglobal-max-snapshots-per-block-volume = 3\n",
        );
        assert!(matches!(
            config.to_yaml(),
            Err(CloudConfigError::UnknownIniSection { line: 4, .. })
        ));
    }

    #[test]
    fn crlf_text_keeps_its_line_breaks() {
        let text = "[Global]\r\nsecret-name = \"c\"\r\n\r\n[VirtualCenter \"a\"]\r\ndatacenters = \"DC\"\r\n";
        let mut config = parse(text);
        assert_eq!(config.render(), text);
        assert_eq!(config.global().secret_name.as_deref(), Some("c"));
        assert!(config.add_vcenter("b", Some(443), &dcs(&["DC2"])).unwrap());
        assert_eq!(
            config.render(),
            format!(
                "{text}\r\n[VirtualCenter \"b\"]\r\nport = \"443\"\r\ndatacenters = \"DC2\"\r\n"
            )
        );
    }
}
