//! What can go wrong talking to a vCenter, with the vCenter, the method and
//! the object in every message, and what to do about it where that is known.

use std::fmt;

use super::xml::XmlError;

/// A failed vCenter call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("vCenter {vcenter}: {method}{}: {kind}", object.as_ref().map(|o| format!(" on {o}")).unwrap_or_default())]
pub struct VSphereError {
    /// The vCenter's server name.
    pub vcenter: String,
    /// The SOAP method or REST path.
    pub method: String,
    /// The managed object or path the call was about.
    pub object: Option<String>,
    /// What went wrong.
    pub kind: ErrorKind,
}

/// What went wrong in a vCenter call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The user name or password was refused.
    InvalidLogin,
    /// The session is gone (expired or logged out).
    NotAuthenticated,
    /// The user lacks a privilege.
    NoPermission {
        /// The missing privilege, when vCenter names it.
        privilege: Option<String>,
    },
    /// The managed object does not exist (any more).
    ManagedObjectNotFound,
    /// An object with that name already exists there.
    DuplicateName {
        /// The existing object, when vCenter names it.
        existing: Option<String>,
    },
    /// vCenter refused an argument.
    InvalidArgument {
        /// The argument, when vCenter names it.
        property: Option<String>,
    },
    /// Any other vSphere fault.
    Fault {
        /// The fault type, e.g. `InvalidState`.
        fault: String,
        /// vCenter's message.
        message: String,
    },
    /// The TLS handshake failed (certificate not trusted, pin mismatch).
    Tls(String),
    /// The connection failed or timed out.
    Transport(String),
    /// An HTTP status other than 200 without a SOAP fault.
    Http {
        /// The status code.
        status: u16,
    },
    /// The answer was not the XML expected.
    Xml(XmlError),
    /// The answer lacked something it must have.
    Unexpected(String),
    /// vCenter reported success, but the result could not be confirmed;
    /// nothing that depends on it may go ahead.
    Unverified(String),
    /// A task did not finish in time; it may still be running in vCenter.
    TaskTimeout {
        /// The task.
        task: String,
        /// How long vmi waited.
        waited_seconds: u64,
    },
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::InvalidLogin => write!(
                f,
                "the user name or password was refused (InvalidLogin); check <server>.username and <server>.password in the credentials Secret"
            ),
            ErrorKind::NotAuthenticated => {
                write!(f, "the session is no longer valid (NotAuthenticated)")
            }
            ErrorKind::NoPermission { privilege } => match privilege {
                Some(p) => write!(
                    f,
                    "permission denied: the user lacks privilege {p} (NoPermission); grant it or use another account"
                ),
                None => write!(
                    f,
                    "permission denied (NoPermission); grant the user the privileges in docs/security.md"
                ),
            },
            ErrorKind::ManagedObjectNotFound => {
                write!(f, "the object does not exist (ManagedObjectNotFound)")
            }
            ErrorKind::DuplicateName { existing } => match existing {
                Some(e) => write!(
                    f,
                    "an object with that name already exists: {e} (DuplicateName)"
                ),
                None => write!(f, "an object with that name already exists (DuplicateName)"),
            },
            ErrorKind::InvalidArgument { property } => match property {
                Some(p) => write!(f, "invalid argument {p} (InvalidArgument)"),
                None => write!(f, "invalid argument (InvalidArgument)"),
            },
            ErrorKind::Fault { fault, message } => write!(f, "{message} ({fault})"),
            ErrorKind::Tls(reason) => write!(
                f,
                "TLS handshake failed: {reason}; check tls.caBundle or tls.thumbprint for this vCenter"
            ),
            ErrorKind::Transport(reason) => write!(f, "cannot reach the vCenter: {reason}"),
            ErrorKind::Http { status } => write!(f, "HTTP status {status}"),
            ErrorKind::Xml(err) => write!(f, "unreadable answer: {err}"),
            ErrorKind::Unexpected(what) => write!(f, "unexpected answer: {what}"),
            ErrorKind::Unverified(what) => {
                write!(f, "reported success, but the result is not there: {what}")
            }
            ErrorKind::TaskTimeout {
                task,
                waited_seconds,
            } => write!(
                f,
                "task {task} did not finish within {waited_seconds} s; it may still be running: check Recent Tasks in the vSphere client before retrying"
            ),
        }
    }
}
