//! Keeps secrets out of logs: passwords, session cookies and ServiceLocator
//! credentials are replaced before any request or response body is written.

const REDACTED: &str = "[redacted]";

/// Element names whose text is always secret in a SOAP body: passwords
/// (Login, ServiceLocatorNamePassword), session ids
/// (SessionManager.SessionIsActive), SAML tokens
/// (ServiceLocatorSAMLCredential) and session cookies sent in a header
/// element (the vslm and pbm services).
const SECRET_ELEMENTS: [&str; 4] = ["password", "sessionID", "token", "vcSessionCookie"];

/// Replaces known secret values and the text of secret elements.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    /// Also redact every occurrence of `secret` (a password, a cookie value).
    pub fn add(&mut self, secret: &str) {
        if !secret.is_empty() && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_owned());
            // Longest first, so a secret containing another is replaced whole.
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// `text` with secrets replaced.
    pub fn redact(&self, text: &str) -> String {
        let mut out = session_refs(text);
        for element in SECRET_ELEMENTS {
            out = redact_element(&out, element);
        }
        for secret in &self.secrets {
            out = out.replace(secret.as_str(), REDACTED);
            let escaped = super::xml::escape(secret);
            if escaped != *secret {
                out = out.replace(escaped.as_str(), REDACTED);
            }
        }
        out
    }
}

/// `text` with the session key inside every session-scoped managed object
/// id replaced: vCenter names views and other per-session objects
/// `session[<session key>]<id>`, and that key identifies the login.
pub fn session_refs(text: &str) -> String {
    const OPEN: &str = "session[";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        let key = start + OPEN.len();
        let Some(end) = rest[key..].find(']').map(|i| key + i) else {
            break;
        };
        out.push_str(&rest[..key]);
        out.push_str(REDACTED);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Replaces the text of every `<name …>text</name>` (any prefix).
fn redact_element(text: &str, name: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = find_open_tag(rest, name) {
        let Some(close_of_open) = rest[open..].find('>').map(|i| open + i + 1) else {
            break;
        };
        if rest[..close_of_open].ends_with("/>") {
            out.push_str(&rest[..close_of_open]);
            rest = &rest[close_of_open..];
            continue;
        }
        let Some(end) = rest[close_of_open..].find("</").map(|i| close_of_open + i) else {
            break;
        };
        out.push_str(&rest[..close_of_open]);
        out.push_str(REDACTED);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Byte offset of the next `<name` or `<prefix:name` start tag.
fn find_open_tag(text: &str, name: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find('<').map(|i| from + i) {
        let tag = &text[i + 1..];
        let local = tag
            .split(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .next()
            .unwrap_or_default();
        let local = local.rsplit(':').next().unwrap_or_default();
        if local == name && !tag.starts_with('/') {
            return Some(i);
        }
        from = i + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_scoped_object_ids_lose_their_session_key() {
        let text = r#"<_this type="ContainerView">session[52b5a7c4-1]52e0</_this> and session[x]y"#;
        let out = session_refs(text);
        assert_eq!(
            out,
            r#"<_this type="ContainerView">session[[redacted]]52e0</_this> and session[[redacted]]y"#
        );
        assert!(!Redactor::default().redact(text).contains("52b5a7c4-1"));
    }

    #[test]
    fn passwords_in_any_prefix_are_redacted() {
        let body = r#"<Login xmlns="urn:vim25"><userName>admin</userName><password>p&lt;w</password></Login><v:password xsi:type="xsd:string">x</v:password>"#;
        let out = Redactor::default().redact(body);
        assert_eq!(
            out,
            r#"<Login xmlns="urn:vim25"><userName>admin</userName><password>[redacted]</password></Login><v:password xsi:type="xsd:string">[redacted]</v:password>"#
        );
    }

    #[test]
    fn known_values_are_redacted_raw_and_escaped() {
        let mut redactor = Redactor::default();
        redactor.add("s3<cr>t");
        redactor.add("cookie-value");
        let out =
            redactor.redact("a s3<cr>t b s3&lt;cr&gt;t c vmware_soap_session=\"cookie-value\"");
        assert_eq!(
            out,
            "a [redacted] b [redacted] c vmware_soap_session=\"[redacted]\""
        );
    }

    #[test]
    fn session_ids_are_redacted() {
        let body = "<SessionIsActive><sessionID>52b5-secret</sessionID><userName>admin</userName></SessionIsActive>";
        assert_eq!(
            Redactor::default().redact(body),
            "<SessionIsActive><sessionID>[redacted]</sessionID><userName>admin</userName></SessionIsActive>"
        );
    }

    #[test]
    fn other_elements_are_left_alone() {
        let body = "<passwordPolicy>long</passwordPolicy><userName>admin</userName>";
        assert_eq!(Redactor::default().redact(body), body);
    }
}
