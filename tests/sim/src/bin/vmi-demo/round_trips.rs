//! vCenter round trips counted from the step logs: the step runner logs
//! every SOAP call (`vCenter call`), every vAPI REST call (`vAPI call`)
//! and every datastore file transfer (`datastore file transfer`), each with
//! the `vcenter` it went to (`step-runner/src/vsphere/{soap,tagging,datastore}.rs`).
//! Text logs (with or without ANSI colours) and JSON logs are read.

use std::collections::BTreeMap;

/// The messages of the lines that are one round trip each.
const CALL_MESSAGES: [&str; 3] = ["vCenter call", "vAPI call", "datastore file transfer"];

/// Round trips by vCenter server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundTrips {
    /// Calls per server.
    pub by_server: BTreeMap<String, usize>,
}

impl RoundTrips {
    /// All calls.
    pub fn total(&self) -> usize {
        self.by_server.values().sum()
    }

    /// Adds `other`'s calls.
    pub fn add(&mut self, other: &RoundTrips) {
        for (server, n) in &other.by_server {
            *self.by_server.entry(server.clone()).or_default() += n;
        }
    }

    /// `34 (source 12, target 22)`, servers named by `role_of`.
    pub fn describe(&self, role_of: impl Fn(&str) -> String) -> String {
        if self.by_server.is_empty() {
            return "0".into();
        }
        let parts: Vec<String> = self
            .by_server
            .iter()
            .map(|(server, n)| format!("{} {n}", role_of(server)))
            .collect();
        format!("{} ({})", self.total(), parts.join(", "))
    }
}

/// Counts the round trips a step's log records.
pub fn count(log: &str) -> RoundTrips {
    let mut trips = RoundTrips::default();
    for line in log.lines() {
        let line = strip_ansi(line);
        if let Some(server) = call_server(&line) {
            *trips.by_server.entry(server).or_default() += 1;
        }
    }
    trips
}

/// The vCenter of a round-trip line, `None` for any other line.
fn call_server(line: &str) -> Option<String> {
    let trimmed = line.trim_start();
    if trimmed.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(trimmed).ok()?;
        let message = value["message"]
            .as_str()
            .or_else(|| value["fields"]["message"].as_str())?;
        if !CALL_MESSAGES.contains(&message) {
            return None;
        }
        let server = value["vcenter"]
            .as_str()
            .or_else(|| value["fields"]["vcenter"].as_str())
            .unwrap_or("unknown");
        return Some(server.to_owned());
    }
    CALL_MESSAGES.iter().find_map(|message| {
        let at = line.find(&format!("{message} vcenter="))?;
        let rest = &line[at + message.len() + " vcenter=".len()..];
        let server = rest.split_whitespace().next().unwrap_or("unknown");
        Some(server.trim_matches('"').to_owned())
    })
}

/// `line` without ANSI escape sequences (`ESC [ … letter`).
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.clone().next() == Some('[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT_LOG: &str = "\
2026-11-21T07:43:42.521583Z  INFO vmi-step starting vmi=ns/move action=Step(CreateTags)
2026-11-21T07:43:42.600000Z  INFO vCenter call vcenter=127.0.0.10 method=\"RetrieveServiceContent\" object=ServiceInstance:ServiceInstance duration_ms=3 outcome=\"ok\"
2026-11-21T07:43:42.610000Z  INFO vCenter call vcenter=127.0.0.10 method=\"Login\" object=SessionManager:SessionManager duration_ms=2 outcome=\"ok\"
2026-11-21T07:43:42.620000Z  INFO logged in vcenter=127.0.0.10 user=administrator
2026-11-21T07:43:42.630000Z DEBUG vCenter call bodies vcenter=127.0.0.10 method=\"Login\" request=<redacted>
2026-11-21T07:43:42.640000Z  INFO vAPI call vcenter=127.0.0.11 method=\"POST\" path=\"/api/session\" status=201 duration_ms=1
2026-11-21T07:43:42.650000Z  INFO vAPI session opened vcenter=127.0.0.11 api=Api
2026-11-21T07:43:42.660000Z  INFO datastore file transfer vcenter=127.0.0.11 method=\"PUT\" file=[datastore-b] x.vmdk status=201 bytes=10
";

    #[test]
    fn text_lines_of_calls_are_counted_per_vcenter() {
        let trips = count(TEXT_LOG);
        assert_eq!(trips.total(), 4);
        assert_eq!(trips.by_server["127.0.0.10"], 2);
        assert_eq!(trips.by_server["127.0.0.11"], 2);
        let role = |s: &str| {
            if s == "127.0.0.10" {
                "source".to_owned()
            } else {
                "target".to_owned()
            }
        };
        assert_eq!(trips.describe(role), "4 (source 2, target 2)");
    }

    #[test]
    fn coloured_lines_are_read_too() {
        let line = "\u{1b}[2m2026-11-21T07:43:42.600000Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m vCenter call \
                    \u{1b}[3mvcenter\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.10 \u{1b}[3mmethod\u{1b}[0m\u{1b}[2m=\u{1b}[0m\"Login\"";
        assert_eq!(
            strip_ansi(line),
            "2026-11-21T07:43:42.600000Z  INFO vCenter call vcenter=127.0.0.10 method=\"Login\""
        );
        assert_eq!(count(line).by_server["127.0.0.10"], 1);
    }

    #[test]
    fn json_lines_are_counted() {
        let log = r#"{"timestamp":"t","level":"INFO","message":"vCenter call","vcenter":"127.0.0.10","method":"Login"}
{"timestamp":"t","level":"INFO","message":"logged in","vcenter":"127.0.0.10"}
{"timestamp":"t","level":"INFO","fields":{"message":"vAPI call","vcenter":"127.0.0.11"}}
not json {"#;
        let trips = count(log);
        assert_eq!(trips.total(), 2);
        assert_eq!(trips.by_server["127.0.0.11"], 1);
    }

    #[test]
    fn no_calls_is_zero() {
        assert_eq!(count("").describe(|s| s.to_owned()), "0");
        let mut a = count(TEXT_LOG);
        a.add(&count(TEXT_LOG));
        assert_eq!(a.total(), 8);
    }
}
