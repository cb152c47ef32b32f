//! Preflight's checks of what the administrator wrote, without the API
//! server or a vCenter: the spec itself (names, hidden characters, the
//! namespace selector), the names steps derive from it, credential values,
//! the control plane machine set's state, and notes for paths that do not
//! exist. Each returns or records a problem that says what to do.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use super::Findings;
use crate::infrastructure::OBJECT;
use crate::machines;
use crate::steps::{backup_cpms, create_machinesets, recreate_cpms};

/// The checks of the spec alone (no API call). The CRD refuses most of
/// these when the vmi is applied; preflight repeats them for a vmi stored
/// before a rule existed, or applied with an older CRD.
pub fn check_spec(spec: &vmi_api::VSphereMigrationInfraSpec, findings: &mut Findings) {
    if spec.vcenters.is_empty() {
        findings.problem("spec.vcenters is empty: name at least one target vCenter");
    }
    if spec.failure_domains.is_empty() {
        findings.problem("spec.failureDomains is empty: name at least one target failure domain");
    }
    let mut servers: Vec<&str> = Vec::new();
    for target in &spec.vcenters {
        if servers.contains(&target.server.as_str()) {
            findings.problem(format!(
                "spec.vcenters lists {} twice: list each target vCenter once",
                target.server
            ));
        }
        servers.push(&target.server);
    }
    let mut names: Vec<&str> = Vec::new();
    for domain in &spec.failure_domains {
        if names.contains(&domain.name.as_str()) {
            findings.problem(format!(
                "spec.failureDomains has two entries named {}: names must be unique; rename one",
                domain.name
            ));
        }
        names.push(&domain.name);
        if !servers.contains(&domain.server.as_str()) {
            findings.problem(format!(
                "failure domain {} names server {}, which is not in spec.vcenters; add that vCenter to spec.vcenters or fix the failure domain's server (case sensitive)",
                domain.name, domain.server
            ));
        }
    }
    if let Some(control) = &spec.control_plane {
        for name in &control.failure_domains {
            if !names.contains(&name.as_str()) {
                findings.problem(format!(
                    "spec.controlPlane.failureDomains names {name}, which is not in spec.failureDomains; use a name from spec.failureDomains"
                ));
            }
        }
    }
    if let Some(workers) = &spec.workers {
        for placement in workers.failure_domains.iter().flatten() {
            if !names.contains(&placement.name.as_str()) {
                findings.problem(format!(
                    "spec.workers.failureDomains names {}, which is not in spec.failureDomains; use a name from spec.failureDomains",
                    placement.name
                ));
            }
        }
    }
    for (field, value) in spec_texts(spec) {
        if let Some(found) = hidden_character(&value) {
            findings.problem(format!(
                "{field} contains {found}: a name with an invisible or control character shows as something it is not, and could inject lines into cloud-provider-config; type the value again"
            ));
        }
    }
    if let Some(selector) = spec
        .volumes
        .as_ref()
        .and_then(|v| v.namespace_selector.as_ref())
    {
        for problem in selector_problems(selector) {
            findings.problem(format!(
                "spec.volumes.namespaceSelector: {problem}; fix the selector (the syntax of `oc get namespaces -l …`)"
            ));
        }
    }
}

/// Every text of the spec that vmi writes into the cluster or sends to a
/// vCenter, with its field.
fn spec_texts(spec: &vmi_api::VSphereMigrationInfraSpec) -> Vec<(String, String)> {
    let mut out = vec![(
        "spec.credentialsSecret.name".to_owned(),
        spec.credentials_secret.name.clone(),
    )];
    if let Some(source) = &spec.source {
        out.push(("spec.source.server".into(), source.server.clone()));
    }
    for (i, target) in spec.vcenters.iter().enumerate() {
        out.push((format!("spec.vcenters[{i}].server"), target.server.clone()));
        for (j, dc) in target.datacenters.iter().enumerate() {
            out.push((format!("spec.vcenters[{i}].datacenters[{j}]"), dc.clone()));
        }
    }
    for (i, domain) in spec.failure_domains.iter().enumerate() {
        let at = |field: &str| format!("spec.failureDomains[{i}].{field}");
        let topology = &domain.topology;
        out.push((at("name"), domain.name.clone()));
        out.push((at("region"), domain.region.clone()));
        out.push((at("zone"), domain.zone.clone()));
        out.push((at("server"), domain.server.clone()));
        out.push((at("topology.datacenter"), topology.datacenter.clone()));
        out.push((
            at("topology.computeCluster"),
            topology.compute_cluster.clone(),
        ));
        out.push((at("topology.datastore"), topology.datastore.clone()));
        for (j, network) in topology.networks.iter().enumerate() {
            out.push((at(&format!("topology.networks[{j}]")), network.clone()));
        }
        for (field, value) in [
            ("topology.resourcePool", &topology.resource_pool),
            ("topology.folder", &topology.folder),
            ("topology.template", &topology.template),
        ] {
            if let Some(value) = value {
                out.push((at(field), value.clone()));
            }
        }
    }
    out
}

/// Characters that do not show, or change how the text around them shows:
/// format characters (zero-width, bidirectional marks, the byte order mark,
/// soft hyphen) and line and paragraph separators.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// The name of a character for a message: `U+200B (zero width space)`.
fn describe_char(c: char) -> String {
    let name = match c {
        '\0' => "NUL",
        '\n' => "line feed",
        '\r' => "carriage return",
        '\t' => "tab",
        '\u{00A0}' => "no-break space",
        '\u{00AD}' => "soft hyphen",
        '\u{200B}' => "zero width space",
        '\u{200C}' => "zero width non-joiner",
        '\u{200D}' => "zero width joiner",
        '\u{200E}' => "left-to-right mark",
        '\u{200F}' => "right-to-left mark",
        '\u{202A}'..='\u{202E}' => "bidirectional embedding or override",
        '\u{2066}'..='\u{2069}' => "bidirectional isolate",
        '\u{FEFF}' => "byte order mark",
        c if c.is_control() => "control character",
        c if is_invisible(c) => "invisible character",
        _ => "",
    };
    if name.is_empty() {
        format!("U+{:04X} ({c:?})", u32::from(c))
    } else {
        format!("U+{:04X} ({name})", u32::from(c))
    }
}

/// The first control or invisible character of `text`, described with its
/// position (in characters), e.g. `U+200B (zero width space) at position 7`.
pub fn hidden_character(text: &str) -> Option<String> {
    text.chars()
        .enumerate()
        .find(|(_, c)| c.is_control() || is_invisible(*c))
        .map(|(at, c)| format!("{} at position {}", describe_char(c), at + 1))
}

/// What is wrong with a credential value that vCenter will compare byte for
/// byte: a line break or tab (`echo` adds a newline), a control or invisible
/// character, or (in a user name) white space around it. `None` when fine.
pub fn credential_value_problem(value: &[u8], is_username: bool) -> Option<String> {
    let Ok(text) = std::str::from_utf8(value) else {
        return Some("is not valid UTF-8".into());
    };
    if text.ends_with('\n') || text.ends_with('\r') {
        return Some("ends with a line break (`echo` adds one; `printf '%s'` does not)".into());
    }
    if let Some(found) = hidden_character(text) {
        return Some(format!("contains {found}"));
    }
    if is_username && text.trim() != text {
        return Some("starts or ends with white space".into());
    }
    None
}

/// A Kubernetes label key: `[<DNS subdomain>/]<name>`, the name 1–63
/// letters, digits, `-`, `_`, `.`, starting and ending with a letter or digit.
pub fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty() && p.len() <= 253 && p.split('.').all(|label| is_dns_label(label, 63))
    });
    prefix_ok && !name.is_empty() && is_label_value(name)
}

/// A Kubernetes label value: at most 63 letters, digits, `-`, `_` and `.`,
/// starting and ending with a letter or digit, or empty.
pub fn is_label_value(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric())
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
}

/// An RFC 1123 DNS label of at most `max` characters: lowercase letters,
/// digits and `-`, starting and ending with a letter or digit.
pub fn is_dns_label(label: &str, max: usize) -> bool {
    !label.is_empty()
        && label.len() <= max
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// What is wrong with a label selector, one line each (empty when nothing).
pub fn selector_problems(selector: &LabelSelector) -> Vec<String> {
    let mut out = Vec::new();
    for (key, value) in selector.match_labels.iter().flatten() {
        if !is_label_key(key) {
            out.push(format!("matchLabels key {key:?} is not a label key"));
        }
        if !is_label_value(value) {
            out.push(format!(
                "matchLabels value {value:?} of {key:?} is not a label value (at most 63 letters, digits, '-', '_', '.')"
            ));
        }
    }
    for (i, expression) in selector.match_expressions.iter().flatten().enumerate() {
        let at = format!("matchExpressions[{i}]");
        if !is_label_key(&expression.key) {
            out.push(format!("{at}.key {:?} is not a label key", expression.key));
        }
        let values = expression.values.as_deref().unwrap_or_default();
        match expression.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => out.push(format!(
                "{at}: operator {} needs at least one value",
                expression.operator
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => out.push(format!(
                "{at}: operator {} takes no values",
                expression.operator
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => out.push(format!(
                "{at}.operator {other:?} is not In, NotIn, Exists or DoesNotExist"
            )),
        }
        for value in values {
            if !is_label_value(value) {
                out.push(format!("{at}: value {value:?} is not a label value"));
            }
        }
    }
    out
}

/// Machine names add `-<5 random characters>` to the MachineSet's name and
/// become the Nodes' host names, which are at most 63 characters.
pub const MACHINE_SET_NAME_MAX: usize = 63 - 6;

/// The names steps derive from the spec and the infrastructure id: each
/// target failure domain's worker MachineSet `<infraID>-worker-<name>`
/// (step 11) must be a DNS label short enough for its Machines' names.
pub fn check_derived_names(
    spec: &vmi_api::VSphereMigrationInfraSpec,
    infra_id: &str,
    findings: &mut Findings,
) {
    for domain in &spec.failure_domains {
        let set = create_machinesets::machine_set_name(infra_id, "worker", &domain.name);
        if !is_dns_label(&set, MACHINE_SET_NAME_MAX) {
            let room = MACHINE_SET_NAME_MAX.saturating_sub(set.len() - domain.name.len());
            findings.problem(format!(
                "failure domain {}: step 11 would name its worker MachineSet {set} ({} characters), but a MachineSet name must be a lowercase DNS label of at most {MACHINE_SET_NAME_MAX} characters (its Machines add 6 and become host names of at most 63); use a failure domain name of at most {room} lowercase letters, digits and '-'",
                domain.name,
                set.chars().count()
            ));
        }
    }
}

/// The problems of the control plane machine set `cpms` (its JSON) before
/// a migration: a strategy step 12 cannot roll, control plane machines not
/// ready, or failure domains the Infrastructure (`known`) does not have.
pub fn cpms_problems(cpms: &Value, known: &[&str]) -> Vec<String> {
    let object = format!(
        "control plane machine set {}/{}",
        machines::NAMESPACE,
        backup_cpms::NAME
    );
    let mut out = Vec::new();
    if cpms["spec"]["strategy"]["type"].as_str() == Some("OnDelete") {
        out.push(format!(
            "{object} has strategy OnDelete: its operator replaces a control plane machine only when someone deletes it, so step 12 could not move the control plane; set spec.strategy.type to RollingUpdate (`oc -n {} patch controlplanemachineset {} --type merge -p '{{\"spec\":{{\"strategy\":{{\"type\":\"RollingUpdate\"}}}}}}'`)",
            machines::NAMESPACE,
            backup_cpms::NAME
        ));
    }
    let state = cpms["spec"]["state"].as_str().unwrap_or("Inactive");
    let replicas = cpms["spec"]["replicas"].as_i64().unwrap_or(3);
    let status = &cpms["status"];
    let ready = status["readyReplicas"].as_i64();
    let unavailable = status["unavailableReplicas"].as_i64().unwrap_or(0);
    if let Some(ready) = ready
        && (ready < replicas || unavailable > 0)
    {
        out.push(format!(
            "{object} ({state}) reports {ready} of {replicas} control plane machines ready ({unavailable} unavailable): replacing control plane machines while one is down risks etcd quorum; make every control plane Machine Running with a Ready Node first (`oc -n {} get machines -l machine.openshift.io/cluster-api-machine-role=master`)",
            machines::NAMESPACE
        ));
    }
    let unknown: Vec<String> = recreate_cpms::domains_of(&cpms["spec"])
        .into_iter()
        .filter(|d| !known.contains(&d.as_str()))
        .collect();
    if !unknown.is_empty() {
        out.push(format!(
            "{object} names failure domain(s) {}, which {OBJECT} does not have, so its operator cannot place control plane machines; make the two agree (fix spec.template.machines_v1beta1_machine_openshift_io.failureDomains of the control plane machine set, or add the failure domain to {OBJECT})",
            unknown.join(", ")
        ));
    }
    out
}

/// A note for a path that does not exist: non-ASCII characters in it may
/// be look-alikes of the ASCII letters the administrator meant.
pub fn lookalike_note(path: &str) -> Option<String> {
    let odd: Vec<String> = path
        .chars()
        .filter(|c| !c.is_ascii())
        .map(|c| format!("U+{:04X} ({c})", u32::from(c)))
        .collect();
    (!odd.is_empty()).then(|| {
        format!(
            "it contains non-ASCII character(s) {}, which may be look-alikes of ASCII letters: type the name again",
            odd.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The shipped sample's spec.
    fn sample() -> vmi_api::VSphereMigrationInfraSpec {
        let vmi: vmi_api::VSphereMigrationInfra =
            serde_saphyr::from_str(include_str!("../../../../deploy/samples/vmi.yaml")).unwrap();
        vmi.spec
    }

    fn problems(spec: &vmi_api::VSphereMigrationInfraSpec) -> Vec<String> {
        let mut findings = Findings::default();
        check_spec(spec, &mut findings);
        findings.problems
    }

    #[test]
    fn the_sample_has_no_problem() {
        assert_eq!(problems(&sample()), Vec::<String>::new());
        let mut findings = Findings::default();
        check_derived_names(&sample(), "ocp-x7k2p", &mut findings);
        assert!(findings.problems.is_empty(), "{:?}", findings.problems);
    }

    #[test]
    fn hidden_characters_are_named_with_their_field() {
        let mut spec = sample();
        spec.failure_domains[0].topology.compute_cluster =
            "/dc-east/host/cluster-1\n[Global]\ninsecure-flag = 1".into();
        spec.failure_domains[1].name = "east\u{202E}2".into();
        spec.vcenters[0].datacenters[0] = "dc-\u{200B}east".into();
        let found = problems(&spec).join("\n");
        for expected in [
            "spec.failureDomains[0].topology.computeCluster contains U+000A (line feed) at position 24",
            "spec.failureDomains[1].name contains U+202E (bidirectional embedding or override) at position 5",
            "spec.vcenters[0].datacenters[0] contains U+200B (zero width space) at position 4",
        ] {
            assert!(found.contains(expected), "missing {expected:?} in\n{found}");
        }
        assert_eq!(hidden_character("plain text é"), None);
        assert_eq!(
            hidden_character("a\0b").as_deref(),
            Some("U+0000 (NUL) at position 2")
        );
    }

    #[test]
    fn duplicates_and_unknown_names_say_what_to_do() {
        let mut spec = sample();
        spec.failure_domains[1].name = "east-1".into();
        spec.vcenters.push(spec.vcenters[0].clone());
        let found = problems(&spec).join("\n");
        assert!(found.contains("two entries named east-1: names must be unique; rename one"));
        assert!(found.contains("spec.vcenters lists vcenter-b.example.com twice"));
        assert!(found.contains(
            "spec.workers.failureDomains names east-2, which is not in spec.failureDomains; use a name from spec.failureDomains"
        ));
    }

    #[test]
    fn credential_values_with_hidden_characters_are_refused() {
        assert_eq!(credential_value_problem(b"s3cret", false), None);
        assert_eq!(credential_value_problem(b"with inner space", false), None);
        assert!(
            credential_value_problem(b"s3cret\n", false)
                .unwrap()
                .starts_with("ends with a line break")
        );
        assert!(credential_value_problem(b"s3cret\r\n", false).is_some());
        assert_eq!(
            credential_value_problem("s3\u{200B}cret".as_bytes(), false).as_deref(),
            Some("contains U+200B (zero width space) at position 3")
        );
        assert_eq!(
            credential_value_problem(b" admin", true).as_deref(),
            Some("starts or ends with white space")
        );
        assert_eq!(
            credential_value_problem(&[0xff, 0xfe], false).as_deref(),
            Some("is not valid UTF-8")
        );
    }

    #[test]
    fn label_syntax() {
        for key in ["app", "kubernetes.io/metadata.name", "a.b-c/x_y.z", "A1"] {
            assert!(is_label_key(key), "{key}");
        }
        for key in [
            "",
            "/x",
            "a b",
            "Example.com/x",
            "x/",
            "-x",
            "a/b/c",
            &"k".repeat(64),
        ] {
            assert!(!is_label_key(key), "{key}");
        }
        for value in ["", "v1", "a-b_c.d", &"v".repeat(63)] {
            assert!(is_label_value(value), "{value}");
        }
        for value in ["-v", "v-", "a b", "ü", &"v".repeat(64)] {
            assert!(!is_label_value(value), "{value}");
        }
    }

    #[test]
    fn namespace_selectors_kubernetes_would_refuse_are_problems() {
        let selector: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"team name": "a", "tier": "gold plated"},
            "matchExpressions": [
                {"key": "env", "operator": "Matches", "values": ["x"]},
                {"key": "env", "operator": "In", "values": []},
                {"key": "env", "operator": "Exists", "values": ["x"]},
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["scratch"]},
            ],
        }))
        .unwrap();
        let found = selector_problems(&selector);
        assert_eq!(
            found,
            [
                "matchLabels key \"team name\" is not a label key",
                "matchLabels value \"gold plated\" of \"tier\" is not a label value (at most 63 letters, digits, '-', '_', '.')",
                "matchExpressions[0].operator \"Matches\" is not In, NotIn, Exists or DoesNotExist",
                "matchExpressions[1]: operator In needs at least one value",
                "matchExpressions[2]: operator Exists takes no values",
            ]
        );
        let mut spec = sample();
        spec.volumes.as_mut().unwrap().namespace_selector = Some(selector);
        assert!(problems(&spec).iter().all(|p| {
            p.starts_with("spec.volumes.namespaceSelector: ")
                && p.ends_with("; fix the selector (the syntax of `oc get namespaces -l …`)")
        }));
        assert!(
            sample()
                .volumes
                .unwrap()
                .namespace_selector
                .is_some_and(|s| selector_problems(&s).is_empty())
        );
    }

    #[test]
    fn machine_set_names_must_fit_host_names() {
        let mut spec = sample();
        spec.failure_domains[0].name = "x".repeat(41);
        spec.failure_domains[1].name = "y".repeat(40);
        let mut findings = Findings::default();
        check_derived_names(&spec, "ocp-x7k2p", &mut findings);
        assert_eq!(findings.problems.len(), 1, "{:?}", findings.problems);
        assert!(
            findings.problems[0].starts_with(&format!(
                "failure domain {}: step 11 would name its worker MachineSet ocp-x7k2p-worker-{} (58 characters)",
                "x".repeat(41),
                "x".repeat(41)
            )),
            "{}",
            findings.problems[0]
        );
        assert!(findings.problems[0].ends_with(
            "use a failure domain name of at most 40 lowercase letters, digits and '-'"
        ));
        spec.failure_domains[0].name = "East-1".into();
        let mut findings = Findings::default();
        check_derived_names(&spec, "ocp-x7k2p", &mut findings);
        assert_eq!(
            findings.problems.len(),
            1,
            "upper case: {:?}",
            findings.problems
        );
    }

    fn cpms(strategy: &str, ready: i64, unavailable: i64, domains: &[&str]) -> Value {
        let domains: Vec<Value> = domains.iter().map(|d| json!({"name": d})).collect();
        json!({
            "spec": {"state": "Active", "replicas": 3, "strategy": {"type": strategy},
                "template": {"machines_v1beta1_machine_openshift_io": {
                    "failureDomains": {"platform": "VSphere", "vsphere": domains}}}},
            "status": {"replicas": 3, "readyReplicas": ready, "unavailableReplicas": unavailable},
        })
    }

    #[test]
    fn control_plane_machine_set_states_that_step_12_cannot_roll() {
        let known = ["fd-a", "fd-b"];
        assert!(cpms_problems(&cpms("RollingUpdate", 3, 0, &["fd-a"]), &known).is_empty());
        let found = cpms_problems(&cpms("OnDelete", 3, 0, &["fd-a"]), &known);
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("has strategy OnDelete"), "{found:?}");
        assert!(
            found[0].contains("set spec.strategy.type to RollingUpdate"),
            "{found:?}"
        );
        let found = cpms_problems(&cpms("RollingUpdate", 2, 1, &["fd-a"]), &known);
        assert!(
            found[0]
                .contains("(Active) reports 2 of 3 control plane machines ready (1 unavailable)"),
            "{found:?}"
        );
        let found = cpms_problems(&cpms("RollingUpdate", 3, 0, &["fd-a", "fd-c"]), &known);
        assert!(
            found[0].contains(
                "names failure domain(s) fd-c, which infrastructure/cluster does not have"
            ),
            "{found:?}"
        );
        // A set without a status yet (just regenerated) is not judged by it.
        let mut fresh = cpms("RollingUpdate", 3, 0, &["fd-a"]);
        fresh.as_object_mut().unwrap().remove("status");
        assert!(cpms_problems(&fresh, &known).is_empty());
    }

    #[test]
    fn lookalikes_are_pointed_out() {
        assert_eq!(lookalike_note("/datacenter-b/host/cluster-b"), None);
        assert_eq!(
            lookalike_note("/dat\u{0430}center-b").as_deref(),
            Some(
                "it contains non-ASCII character(s) U+0430 (\u{0430}), which may be look-alikes of ASCII letters: type the name again"
            )
        );
    }
}
