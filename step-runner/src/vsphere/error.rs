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
    /// No connection, or no answer, or no progress of a transfer within
    /// the limit; for a call that is safe to repeat, after every attempt.
    Timeout {
        /// What did not come: `connection`, `complete answer`, `transfer
        /// progress`.
        waiting_for: String,
        /// The limit of one attempt, in milliseconds.
        limit_ms: u64,
        /// How many attempts were made.
        attempts: u32,
    },
    /// The request may have reached vCenter, but its answer was lost
    /// (connection reset or closed, timeout, gateway error): whether the
    /// change happened is unknown. It was not repeated.
    OutcomeUnknown {
        /// What happened to the answer.
        cause: String,
    },
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
            ErrorKind::Timeout {
                waiting_for,
                limit_ms,
                attempts,
            } => write!(
                f,
                "no {waiting_for} within {} ({attempts} attempt{}); vCenter is overloaded or unreachable, or the network to it drops traffic: check both, then run the step again",
                duration(*limit_ms),
                if *attempts == 1 { "" } else { "s" }
            ),
            ErrorKind::OutcomeUnknown { cause } => write!(
                f,
                "the outcome is unknown (OutcomeUnknown): {cause}, so vCenter may or may not have done it, and vmi did not send it again. Run the step again (delete its Job): it looks for what already exists before it changes anything. If in doubt, check Recent Tasks in the vSphere client"
            ),
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

/// `ms` milliseconds as people read a limit: `2 s`, `1.5 s`, `500 ms`.
pub(crate) fn duration(ms: u64) -> String {
    match ms {
        ms if ms < 1000 => format!("{ms} ms"),
        ms if ms % 1000 == 0 => format!("{} s", ms / 1000),
        ms => format!("{:.1} s", ms as f64 / 1000.0),
    }
}
