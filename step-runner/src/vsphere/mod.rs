//! The vCenter client every vSphere step goes through: SOAP over reqwest and
//! quick-xml, TLS trust by CA bundle or pinned thumbprint, typed faults,
//! limits on every request, retries of what is safe to repeat, and one log
//! event per round trip with secrets redacted.

pub mod cns;
pub mod datastore;
pub mod error;
pub mod fcd;
pub mod properties;
pub mod redact;
pub mod relocate;
pub mod retry;
pub mod soap;
pub mod tagging;
pub mod tls;
pub mod vm;
pub mod xml;

pub use error::{ErrorKind, VSphereError};
pub use properties::ObjectContent;
pub use retry::{ClientOptions, Safety, retry_safety};
pub use soap::{About, Credentials, DEFAULT_TASK_LIMIT, MoRef, VCenter};
pub use tagging::{Cardinality, Category, Tag, Tagging};
pub use tls::Trust;
