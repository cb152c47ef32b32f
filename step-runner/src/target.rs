//! The `vmi` a step works on, named as `namespace/name` on the command line.

use std::fmt;
use std::str::FromStr;

/// A `VSphereMigrationInfra` object by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmiRef {
    /// Namespace of the vmi.
    pub namespace: String,
    /// Name of the vmi.
    pub name: String,
}

/// Why a `--vmi` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--vmi {given:?} is not <namespace>/<name> (for example vmi-system/move-to-vcenter-b): {reason}"
)]
pub struct BadVmiRef {
    /// What was given.
    pub given: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl FromStr for VmiRef {
    type Err = BadVmiRef;

    fn from_str(given: &str) -> Result<Self, Self::Err> {
        let bad = |reason| BadVmiRef {
            given: given.to_owned(),
            reason,
        };
        let (namespace, name) = given
            .split_once('/')
            .ok_or_else(|| bad("there is no '/'"))?;
        if !is_dns_label(namespace) {
            return Err(bad(
                "the namespace must be 1-63 characters of a-z, 0-9 and '-'",
            ));
        }
        if !is_dns_subdomain(name) {
            return Err(bad(
                "the name must be 1-253 characters of a-z, 0-9, '-' and '.'",
            ));
        }
        Ok(VmiRef {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }
}

impl fmt::Display for VmiRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

fn is_dns_label(s: &str) -> bool {
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = s.as_bytes();
    (1..=63).contains(&s.len())
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && bytes.iter().all(|b| alnum(b) || *b == b'-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_and_name_are_split() {
        let vmi: VmiRef = "vmi-system/move-to-vcenter-b".parse().unwrap();
        assert_eq!(vmi.namespace, "vmi-system");
        assert_eq!(vmi.name, "move-to-vcenter-b");
        assert_eq!(vmi.to_string(), "vmi-system/move-to-vcenter-b");
    }

    #[test]
    fn malformed_references_say_what_is_expected() {
        for (given, reason) in [
            ("move-to-vcenter-b", "there is no '/'"),
            ("/name", "the namespace must be"),
            ("Vmi-System/name", "the namespace must be"),
            ("ns/", "the name must be"),
            ("ns/a/b", "the name must be"),
            ("ns/name ", "the name must be"),
        ] {
            let err = given.parse::<VmiRef>().unwrap_err();
            assert!(err.reason.starts_with(reason), "{given}: {err}");
            assert!(err.to_string().contains("<namespace>/<name>"), "{err}");
        }
    }
}
