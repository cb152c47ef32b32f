//! The secrets scan (DESIGN §6: no secret ever reaches a log, an event, the
//! status or a ConfigMap): every text a migration produced is searched for
//! the secrets that were in play, and for anything shaped like a secret.
//!
//! Two searches:
//! - **known secrets**, by value: the vCenters' passwords, the vCenter
//!   session ids the simulators handed out ([`sessions`] collects them), the
//!   service-account tokens of the step pods. Each is also searched in
//!   base64 (as a Secret's `data` holds it), since a Secret copied into a
//!   ConfigMap or a log leaks it that way;
//! - **secret-shaped text**, by pattern: a JWT (service-account tokens,
//!   known or not), a PEM private key, a `vmware_soap_session` cookie or a
//!   `vmware-api-session-id` with a value, an `Authorization` header with
//!   credentials. A vAPI session id cannot be listed from vcsim, so the
//!   pattern is the only way it is found.
//!
//! A report names each hit by the kind of secret and where it is (text and
//! line), never by its value.

pub mod sessions;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// A secret in play during a run.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SecretKind {
    /// A vCenter user's password.
    VCenterPassword,
    /// A vCenter SOAP session id (the `vmware_soap_session` cookie).
    VCenterSession,
    /// A Kubernetes service-account token.
    ServiceAccountToken,
}

impl fmt::Display for SecretKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SecretKind::VCenterPassword => "vCenter password",
            SecretKind::VCenterSession => "vCenter session id",
            SecretKind::ServiceAccountToken => "service-account token",
        })
    }
}

/// A secret value to look for, and whose it is. Its `Debug` form hides the
/// value.
#[derive(Clone, PartialEq, Eq)]
pub struct KnownSecret {
    /// What it is.
    pub kind: SecretKind,
    /// Whose it is, e.g. `source vCenter 127.0.0.10`.
    pub owner: String,
    value: String,
}

impl KnownSecret {
    /// A secret of `kind` owned by `owner`.
    pub fn new(kind: SecretKind, owner: &str, value: &str) -> KnownSecret {
        KnownSecret {
            kind,
            owner: owner.to_owned(),
            value: value.to_owned(),
        }
    }

    /// How it is named in a report: its kind and owner, never its value.
    pub fn label(&self) -> String {
        format!("{} ({})", self.kind, self.owner)
    }
}

impl fmt::Debug for KnownSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KnownSecret({}, {} bytes)",
            self.label(),
            self.value.len()
        )
    }
}

/// One text a run produced, e.g. a pod's log or a ConfigMap as JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text {
    /// Where it came from, e.g. `log of pod vmi-step-07-update-infra-x2k4p`.
    pub location: String,
    /// Its content.
    pub body: String,
}

impl Text {
    /// A text found at `location`.
    pub fn new(location: impl Into<String>, body: impl Into<String>) -> Text {
        Text {
            location: location.into(),
            body: body.into(),
        }
    }
}

/// How a secret appeared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Encoding {
    /// As it is.
    Plain,
    /// Base64-encoded, as in a Secret's `data`.
    Base64,
}

/// One secret found in one place.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hit {
    /// Which secret, e.g. `vCenter password (target vCenter 127.0.0.11)` or
    /// `JWT (a bearer token)`.
    pub secret: String,
    /// How it appeared.
    pub encoding: Encoding,
    /// The text it is in.
    pub location: String,
    /// The line of that text (from 1).
    pub line: usize,
}

impl fmt::Display for Hit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let encoding = match self.encoding {
            Encoding::Plain => "",
            Encoding::Base64 => ", base64-encoded",
        };
        write!(
            f,
            "{}{encoding}: {}, line {}",
            self.secret, self.location, self.line
        )
    }
}

/// What a scan looked at and found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Texts scanned.
    pub texts: usize,
    /// Bytes scanned.
    pub bytes: usize,
    /// Known secrets searched for, by kind.
    pub secrets: BTreeMap<String, usize>,
    /// Every hit, in the order of the texts.
    pub hits: Vec<Hit>,
    /// What the scan could not search, e.g. sessions pruned from a vCenter's
    /// event history.
    pub gaps: Vec<String>,
}

impl ScanReport {
    /// Whether no secret was found.
    pub fn is_clean(&self) -> bool {
        self.hits.is_empty()
    }

    /// One line: clean or not, what was scanned, for what.
    pub fn headline(&self) -> String {
        let searched: Vec<String> = self
            .secrets
            .iter()
            .map(|(kind, n)| format!("{n} {kind}{}", if *n == 1 { "" } else { "s" }))
            .collect();
        let verdict = if self.is_clean() {
            "clean".to_owned()
        } else {
            format!("{} HIT(S)", self.hits.len())
        };
        format!(
            "{verdict}: {} texts, {} scanned for {} and secret-shaped text",
            self.texts,
            human_bytes(self.bytes),
            if searched.is_empty() {
                "no known secrets".to_owned()
            } else {
                searched.join(", ")
            }
        )
    }
}

impl fmt::Display for ScanReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.headline())?;
        for hit in &self.hits {
            writeln!(f, "  {hit}")?;
        }
        for gap in &self.gaps {
            writeln!(f, "  not covered: {gap}")?;
        }
        Ok(())
    }
}

/// `bytes` as B, KiB or MiB.
pub fn human_bytes(bytes: usize) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{:.1} MiB", b as f64 / 1_048_576.0),
    }
}

/// Known secrets shorter than this are not searched: they would match
/// everywhere (and no secret of the simulated cluster is that short).
pub const MIN_SECRET_LEN: usize = 8;

/// One needle: a secret in one encoding.
struct Needle<'a> {
    secret: &'a KnownSecret,
    encoding: Encoding,
    bytes: Vec<u8>,
}

/// Searches `texts` for `secrets` and for secret-shaped text.
pub fn scan(texts: &[Text], secrets: &[KnownSecret]) -> ScanReport {
    let mut report = ScanReport::default();
    let mut needles = Vec::new();
    for secret in secrets {
        if secret.value.len() < MIN_SECRET_LEN {
            report.gaps.push(format!(
                "{} is shorter than {MIN_SECRET_LEN} bytes",
                secret.label()
            ));
            continue;
        }
        *report.secrets.entry(secret.kind.to_string()).or_default() += 1;
        needles.push(Needle {
            secret,
            encoding: Encoding::Plain,
            bytes: secret.value.as_bytes().to_vec(),
        });
        needles.push(Needle {
            secret,
            encoding: Encoding::Base64,
            bytes: base64(secret.value.as_bytes()).into_bytes(),
        });
    }
    // Needles by their first bytes: one hash lookup per position of a text.
    let mut by_prefix: HashMap<&[u8], Vec<&Needle>> = HashMap::new();
    for needle in &needles {
        by_prefix
            .entry(&needle.bytes[..MIN_SECRET_LEN])
            .or_default()
            .push(needle);
    }
    for text in texts {
        report.texts += 1;
        report.bytes += text.body.len();
        let lines = LineIndex::new(&text.body);
        let mut found: Vec<(usize, Hit)> = Vec::new();
        let bytes = text.body.as_bytes();
        for at in 0..bytes.len().saturating_sub(MIN_SECRET_LEN - 1) {
            let Some(candidates) = by_prefix.get(&bytes[at..at + MIN_SECRET_LEN]) else {
                continue;
            };
            for needle in candidates {
                if bytes[at..].starts_with(&needle.bytes) {
                    found.push((
                        at,
                        Hit {
                            secret: needle.secret.label(),
                            encoding: needle.encoding,
                            location: text.location.clone(),
                            line: lines.line_of(at),
                        },
                    ));
                }
            }
        }
        for shaped in secret_shaped(&text.body) {
            // A known secret found there already names it better.
            if secrets
                .iter()
                .any(|s| s.value.len() >= MIN_SECRET_LEN && shaped.value.contains(&s.value))
            {
                continue;
            }
            found.push((
                shaped.at,
                Hit {
                    secret: shaped.what.to_owned(),
                    encoding: Encoding::Plain,
                    location: text.location.clone(),
                    line: lines.line_of(shaped.at),
                },
            ));
        }
        found.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        found.dedup_by(|a, b| a.1 == b.1);
        report.hits.extend(found.into_iter().map(|(_, hit)| hit));
    }
    report
}

/// Line numbers of byte offsets.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    /// The line (from 1) holding byte `at`.
    fn line_of(&self, at: usize) -> usize {
        self.starts.partition_point(|start| *start <= at)
    }
}

/// Standard base64 with padding.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Text shaped like a secret, wherever it is.
struct Shaped<'a> {
    what: &'static str,
    at: usize,
    value: &'a str,
}

/// Names whose value is a session id, when followed by one.
const SESSION_NAMES: [(&str, &str); 2] = [
    ("vmware_soap_session", "vCenter session cookie with a value"),
    ("vmware-api-session-id", "vAPI session id with a value"),
];

/// Every secret-shaped piece of `text`.
fn secret_shaped(text: &str) -> Vec<Shaped<'_>> {
    let mut out = Vec::new();
    out.extend(jwts(text));
    for (at, _) in text.match_indices("-----BEGIN ") {
        let mut end = text.len().min(at + 64);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let header = &text[at..end];
        if let Some(close) = header[11..].find("-----")
            && header[11..11 + close].ends_with("PRIVATE KEY")
        {
            out.push(Shaped {
                what: "PEM private key",
                at,
                value: header,
            });
        }
    }
    let lower = text.to_ascii_lowercase();
    for (name, what) in SESSION_NAMES {
        for (at, _) in lower.match_indices(name) {
            let value = value_after(&text[at + name.len()..]);
            if value.len() >= 16 {
                out.push(Shaped { what, at, value });
            }
        }
    }
    for (at, _) in lower.match_indices("authorization") {
        let rest = text[at + "authorization".len()..].trim_start_matches(['"', '\'', ' ']);
        let Some(rest) = rest.strip_prefix([':', '=']) else {
            continue;
        };
        let rest = rest.trim_start_matches(['"', '\'', ' ']);
        let scheme_len = rest.find(' ').unwrap_or(0);
        let scheme = rest[..scheme_len].to_ascii_lowercase();
        if matches!(scheme.as_str(), "basic" | "bearer" | "negotiate" | "sign") {
            let value = token_prefix(rest[scheme_len..].trim_start(), |c| {
                c.is_ascii_alphanumeric() || "+/=-_.".contains(c)
            });
            if value.len() >= 8 {
                out.push(Shaped {
                    what: "Authorization header with credentials",
                    at,
                    value,
                });
            }
        }
    }
    out
}

/// The value after a name: separators (`=`, `:`, quotes, spaces) skipped,
/// then letters, digits and dashes. A redaction marker is no value.
fn value_after(rest: &str) -> &str {
    let rest = rest.trim_start_matches(['"', '\'', ' ', '=', ':']);
    token_prefix(rest, |c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The longest prefix of `text` whose characters satisfy `allowed`.
fn token_prefix(text: &str, allowed: impl Fn(char) -> bool) -> &str {
    let end = text.find(|c: char| !allowed(c)).unwrap_or(text.len());
    &text[..end]
}

/// JWTs: `eyJ…` header, payload and signature in base64url, dot-separated.
fn jwts(text: &str) -> Vec<Shaped<'_>> {
    let base64url = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut out = Vec::new();
    for (at, _) in text.match_indices("eyJ") {
        if at > 0 && text[..at].chars().next_back().is_some_and(base64url) {
            continue; // inside a longer token
        }
        let candidate = token_prefix(&text[at..], |c| base64url(c) || c == '.');
        let parts: Vec<&str> = candidate.split('.').collect();
        if parts.len() >= 3
            && parts[..3].iter().all(|p| p.len() >= 10)
            && parts[1].starts_with("eyJ")
        {
            out.push(Shaped {
                what: "JWT (a bearer token)",
                at,
                value: candidate,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "5f1c0d2e9a8b7c6d5e4f3a2b1c0d9e8f";
    const SESSION: &str = "68de9e1a-e5f9-465c-98dc-edb21d22a823";
    const TOKEN: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJhdWQiOlsiaHR0cHM6Ly9rdWJlcm5ldGVzIl19.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU";

    fn secrets() -> Vec<KnownSecret> {
        vec![
            KnownSecret::new(
                SecretKind::VCenterPassword,
                "target vCenter 127.0.0.11",
                PASSWORD,
            ),
            KnownSecret::new(
                SecretKind::VCenterSession,
                "source vCenter 127.0.0.10",
                SESSION,
            ),
            KnownSecret::new(
                SecretKind::ServiceAccountToken,
                "pod vmi-step-04-update-secrets-abcde",
                TOKEN,
            ),
        ]
    }

    #[test]
    fn base64_matches_the_standard_encoding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn clean_texts_give_a_clean_report() {
        let texts = vec![
            Text::new(
                "log of pod a",
                "INFO logged in vcenter=127.0.0.11 user=migrator\n",
            ),
            Text::new(
                "ConfigMap vmi/vmi-state",
                r#"{"data":{"tags":"urn:vmomi:InventoryServiceTag:1"}}"#,
            ),
            // Redacted values and mere mentions of the names are no leak.
            Text::new(
                "log of pod b",
                "Cookie: vmware_soap_session=[redacted]\nvmware-api-session-id header set\nAuthorization: Basic [redacted]\n",
            ),
        ];
        let report = scan(&texts, &secrets());
        assert!(report.is_clean(), "{report}");
        assert_eq!(report.texts, 3);
        assert_eq!(
            report.bytes,
            texts.iter().map(|t| t.body.len()).sum::<usize>()
        );
        assert_eq!(report.secrets.len(), 3);
        assert!(
            report.headline().starts_with("clean: 3 texts"),
            "{}",
            report.headline()
        );
    }

    #[test]
    fn planted_secrets_are_found_with_their_place_and_never_printed() {
        let texts = vec![
            Text::new(
                "log of pod vmi-step-08-update-cloud-config-x",
                format!("line one\nlogin with password={PASSWORD} failed\n"),
            ),
            Text::new(
                "Event vmi-ns/move.1",
                format!(r#"{{"message":"session {SESSION} expired"}}"#),
            ),
            Text::new(
                "ConfigMap openshift-config/backup",
                format!("a: b\nc: d\npassword: {}\n", base64(PASSWORD.as_bytes())),
            ),
            Text::new("Job vmi/vmi-step-00-preflight", format!("token {TOKEN}")),
        ];
        let report = scan(&texts, &secrets());
        let found: Vec<(String, Encoding, String, usize)> = report
            .hits
            .iter()
            .map(|h| (h.secret.clone(), h.encoding, h.location.clone(), h.line))
            .collect();
        assert_eq!(
            found,
            vec![
                (
                    "vCenter password (target vCenter 127.0.0.11)".into(),
                    Encoding::Plain,
                    "log of pod vmi-step-08-update-cloud-config-x".into(),
                    2
                ),
                (
                    "vCenter session id (source vCenter 127.0.0.10)".into(),
                    Encoding::Plain,
                    "Event vmi-ns/move.1".into(),
                    1
                ),
                (
                    "vCenter password (target vCenter 127.0.0.11)".into(),
                    Encoding::Base64,
                    "ConfigMap openshift-config/backup".into(),
                    3
                ),
                (
                    "service-account token (pod vmi-step-04-update-secrets-abcde)".into(),
                    Encoding::Plain,
                    "Job vmi/vmi-step-00-preflight".into(),
                    1
                ),
            ]
        );
        let printed = format!("{report}\n{report:?}\n{:?}", secrets());
        for secret in [PASSWORD, SESSION, TOKEN] {
            assert!(!printed.contains(secret), "the report shows a secret");
        }
        assert!(!report.is_clean());
        assert!(report.headline().starts_with("4 HIT(S)"));
    }

    #[test]
    fn secret_shaped_text_is_found_without_knowing_the_value() {
        let other_token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.ZmFrZXNpZ25hdHVyZQ";
        let body = format!(
            "a\nAuthorization: Bearer {other_token}\nSet-Cookie: vmware_soap_session=\"1b2c3d4e-5f60-4a1b-9c8d-7e6f5a4b3c2d\"; Path=/\n\
             {{\"vmware-api-session-id\": \"d74977d2-9631-4636-927c-816c56b884bc\"}}\n-----BEGIN RSA PRIVATE KEY-----\nMIIE\n\
             -----BEGIN CERTIFICATE-----\nauthorization=Basic dXNlcjpwYXNzd29yZA==\n"
        );
        let report = scan(&[Text::new("orchestrator log", body)], &[]);
        let found: Vec<(&str, usize)> = report
            .hits
            .iter()
            .map(|h| (h.secret.as_str(), h.line))
            .collect();
        assert_eq!(
            found,
            vec![
                ("Authorization header with credentials", 2),
                ("JWT (a bearer token)", 2),
                ("vCenter session cookie with a value", 3),
                ("vAPI session id with a value", 4),
                ("PEM private key", 5),
                ("Authorization header with credentials", 8),
            ],
            "{report}"
        );
    }

    #[test]
    fn a_known_token_is_named_once_as_known() {
        let report = scan(&[Text::new("log", format!("x {TOKEN} y"))], &secrets());
        assert_eq!(report.hits.len(), 1, "{report}");
        assert!(report.hits[0].secret.starts_with("service-account token"));
    }

    #[test]
    fn too_short_secrets_are_a_gap_not_a_search() {
        let report = scan(
            &[Text::new("log", "abc")],
            &[KnownSecret::new(SecretKind::VCenterPassword, "x", "abc")],
        );
        assert!(report.is_clean());
        assert_eq!(report.gaps.len(), 1);
        assert!(!format!("{report}").contains("abc is"));
    }

    #[test]
    fn human_bytes_reads_well() {
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(2048), "2.0 KiB");
        assert_eq!(human_bytes(3 * 1_048_576), "3.0 MiB");
    }
}
