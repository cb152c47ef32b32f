//! Every static rule of the vmi CRD, proven on the generated schema.
//!
//! No API server exists in this crate's tests, so an offline stand-in
//! evaluates the generated `openAPIV3Schema`: its OpenAPI constraints with
//! `jsonschema` and its `x-kubernetes-validations` with `kube-cel` (the kube-rs
//! project's client-side CEL evaluator). The same table,
//! `fixtures/rejected-specs.yaml`, is meant to be replayed against the real
//! kube-apiserver of the simulated cluster, which has the final word.

use serde::Deserialize;
use serde_json::Value;

const SAMPLE: &str = include_str!("../../deploy/samples/vmi.yaml");
const REJECTED: &str = include_str!("fixtures/rejected-specs.yaml");

#[derive(Deserialize)]
struct RejectedSpec {
    name: String,
    patch: json_patch::Patch,
    field: String,
    #[serde(default)]
    message: Option<String>,
}

/// One refusal, as `field: message` in the API server's path notation.
#[derive(Debug)]
struct Refusal {
    field: String,
    message: String,
}

/// Stand-in for the API server's validation of a custom resource: applies the
/// CRD's OpenAPI schema and CEL rules to `object`. Not the real thing (the
/// simulated cluster's kube-apiserver is); good enough to catch a rule that
/// was lost or mistyped before that cluster exists.
fn offline_admission_standin(object: &Value) -> Vec<Refusal> {
    let crd = serde_json::to_value(vmi_api::crd::custom_resource_definition()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let validator = jsonschema::validator_for(schema).expect("the generated schema compiles");
    let mut refusals: Vec<Refusal> = validator
        .iter_errors(object)
        .map(|err| {
            let mut field = err.instance_path().to_string();
            // The API server reports a missing property at the property itself.
            if let jsonschema::error::ValidationErrorKind::Required { property } = err.kind() {
                field = format!("{field}/{}", property.as_str().unwrap_or_default());
            }
            Refusal {
                field: api_server_path(&field),
                message: err.to_string(),
            }
        })
        .collect();
    if let Err(errors) = kube_cel::Validator::new().validate(schema, object, None) {
        refusals.extend(errors.into_iter().map(|err| Refusal {
            field: err.field_path,
            message: err.message,
        }));
    }
    refusals
}

/// `/spec/vcenters/0/port` → `spec.vcenters[0].port`.
fn api_server_path(pointer: &str) -> String {
    let mut path = String::new();
    for segment in pointer.split('/').filter(|s| !s.is_empty()) {
        if segment.bytes().all(|b| b.is_ascii_digit()) {
            path.push_str(&format!("[{segment}]"));
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(segment);
        }
    }
    path
}

fn sample() -> Value {
    serde_saphyr::from_str(SAMPLE).expect("deploy/samples/vmi.yaml is YAML")
}

#[test]
fn the_sample_is_accepted() {
    let refusals = offline_admission_standin(&sample());
    assert!(
        refusals.is_empty(),
        "the sample must be valid: {refusals:#?}"
    );
}

#[test]
fn every_rejected_spec_is_refused_naming_its_field() {
    let cases: Vec<RejectedSpec> =
        serde_saphyr::from_str(REJECTED).expect("rejected-specs.yaml parses");
    assert!(
        cases.len() >= 40,
        "the table should keep covering every rule; it has {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let mut object = sample();
        if let Err(err) = json_patch::patch(&mut object, &case.patch) {
            failures.push(format!(
                "{}: the patch does not apply to the sample: {err}",
                case.name
            ));
            continue;
        }
        let refusals = offline_admission_standin(&object);
        let named = refusals.iter().any(|r| {
            r.field == case.field
                && case
                    .message
                    .as_ref()
                    .is_none_or(|m| r.message.contains(m.as_str()))
        });
        if !named {
            failures.push(format!(
                "{}: expected a refusal at {} {}, got {:#?}",
                case.name,
                case.field,
                case.message
                    .as_deref()
                    .map(|m| format!("saying {m:?}"))
                    .unwrap_or_default(),
                refusals
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases not refused as expected:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn every_cel_message_names_a_field() {
    // A refusal that does not say which field is wrong leaves the administrator guessing.
    let crd = serde_json::to_value(vmi_api::crd::custom_resource_definition()).unwrap();
    let mut messages = Vec::new();
    collect_cel_messages(&crd, &mut messages);
    assert!(messages.len() >= 14, "rules went missing: {messages:?}");
    for message in messages {
        let names_field = ["spec.", "tls", "topology.", "zoneAffinity.", "workers."]
            .iter()
            .any(|f| message.contains(f));
        assert!(
            names_field,
            "CEL message does not name its field: {message}"
        );
    }
}

fn collect_cel_messages(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(rules)) = map.get("x-kubernetes-validations") {
                for rule in rules {
                    out.push(
                        rule["message"]
                            .as_str()
                            .expect("every rule has a message")
                            .to_owned(),
                    );
                }
            }
            map.values().for_each(|v| collect_cel_messages(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_cel_messages(v, out)),
        _ => {}
    }
}
