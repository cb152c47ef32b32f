//! How vmi trusts a vCenter's TLS certificate: the system trust store, a CA
//! bundle, a pinned SHA-1/SHA-256 thumbprint, or (only when asked for, and
//! then loudly) not at all.
//!
//! Pinning and `insecure` still verify the handshake signature against the
//! certificate's key, so a pinned connection cannot be taken over by someone
//! who merely copies the certificate.

use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// How a vCenter's certificate is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The system trust store.
    SystemRoots,
    /// The CAs of a PEM bundle.
    CaBundle(String),
    /// Exactly the certificate with this SHA-1 or SHA-256 thumbprint
    /// (`AA:BB:…`, case and separators ignored).
    Thumbprint(String),
    /// No verification (labs only).
    Insecure,
}

/// Why a TLS configuration could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The CA bundle has no usable certificate.
    #[error("the CA bundle for vCenter {vcenter} holds no usable PEM certificate: {reason}")]
    BadCaBundle {
        /// The vCenter.
        vcenter: String,
        /// What is wrong.
        reason: String,
    },
    /// The thumbprint is not 20 or 32 hex bytes.
    #[error(
        "the thumbprint for vCenter {vcenter} is not a SHA-1 or SHA-256 thumbprint (20 or 32 hex pairs)"
    )]
    BadThumbprint {
        /// The vCenter.
        vcenter: String,
    },
}

/// The SHA-1 and SHA-256 thumbprints of a DER certificate, as vCenter and
/// `govc about.cert -thumbprint` print them (`AA:BB:…`).
pub fn thumbprints(cert_der: &[u8]) -> (String, String) {
    let hex = |digest: ring::digest::Digest| {
        digest
            .as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    (
        hex(ring::digest::digest(
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            cert_der,
        )),
        hex(ring::digest::digest(&ring::digest::SHA256, cert_der)),
    )
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate a connection's server presented and `trust` accepted,
/// filled by the first handshake.
pub type SeenCertificate = Arc<Mutex<Option<Vec<u8>>>>;

/// A rustls configuration for talking to `vcenter` with `trust`.
pub fn client_config(vcenter: &str, trust: &Trust) -> Result<ClientConfig, TlsError> {
    recording_client_config(vcenter, trust).map(|(config, _)| config)
}

/// [`client_config`], also keeping the certificate that was accepted, so
/// that its thumbprint can be handed to another vCenter (a ServiceLocator)
/// without trusting it a second time on first use.
pub fn recording_client_config(
    vcenter: &str,
    trust: &Trust,
) -> Result<(ClientConfig, SeenCertificate), TlsError> {
    let bad_bundle = |reason: String| TlsError::BadCaBundle {
        vcenter: vcenter.to_owned(),
        reason,
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad_bundle(e.to_string()))?;
    let webpki = |roots: RootCertStore| -> Result<Arc<dyn ServerCertVerifier>, TlsError> {
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| bad_bundle(e.to_string()))?;
        Ok(verifier)
    };
    let inner: Arc<dyn ServerCertVerifier> = match trust {
        Trust::SystemRoots => {
            let mut roots = RootCertStore::empty();
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            webpki(roots)?
        }
        Trust::CaBundle(pem) => {
            let mut roots = RootCertStore::empty();
            let certs: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .map_err(|e| bad_bundle(e.to_string()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(bad_bundle("no certificate in it".into()));
            }
            webpki(roots)?
        }
        Trust::Thumbprint(expected) => {
            let expected = normalize(expected)
                .filter(|hex| hex.len() == 40 || hex.len() == 64)
                .ok_or_else(|| TlsError::BadThumbprint {
                    vcenter: vcenter.to_owned(),
                })?;
            Arc::new(AcceptIf {
                check: Check::Thumbprint(expected),
                provider: provider(),
            })
        }
        Trust::Insecure => {
            tracing::warn!(
                vcenter,
                "TLS certificate verification is OFF for this vCenter (insecure: true): anyone on the network path can impersonate it; pin its thumbprint or give its CA bundle instead"
            );
            Arc::new(AcceptIf {
                check: Check::Anything,
                provider: provider(),
            })
        }
    };
    let seen = SeenCertificate::default();
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Recording {
            inner,
            seen: Arc::clone(&seen),
        }))
        .with_no_client_auth();
    Ok((config, seen))
}

/// Keeps the end-entity certificate that `inner` accepted.
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn ServerCertVerifier>,
    seen: SeenCertificate,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(end_entity.as_ref().to_vec());
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Upper-case hex without separators, or `None` if not hex.
fn normalize(thumbprint: &str) -> Option<String> {
    let hex: String = thumbprint
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_uppercase();
    hex.chars().all(|c| c.is_ascii_hexdigit()).then_some(hex)
}

#[derive(Debug)]
enum Check {
    Thumbprint(String),
    Anything,
}

/// Accepts the server certificate when `check` holds; the handshake
/// signature is always verified with the certificate's key.
#[derive(Debug)]
struct AcceptIf {
    check: Check,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptIf {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.check {
            Check::Anything => Ok(ServerCertVerified::assertion()),
            Check::Thumbprint(expected) => {
                let (sha1, sha256) = thumbprints(end_entity.as_ref());
                let presented = if expected.len() == 40 { sha1 } else { sha256 };
                if normalize(&presented).as_deref() == Some(expected.as_str()) {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(rustls::Error::General(format!(
                        "the certificate's thumbprint {presented} does not match the pinned thumbprint; if the vCenter's certificate was replaced, update tls.thumbprint"
                    )))
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprints_are_normalized_before_comparing() {
        assert_eq!(normalize("aa:Bb:01").as_deref(), Some("AABB01"));
        assert_eq!(normalize("AA:ZZ"), None);
    }

    #[test]
    fn a_thumbprint_of_the_wrong_length_is_refused() {
        let err = client_config("vc.example.com", &Trust::Thumbprint("AA:BB".into())).unwrap_err();
        assert_eq!(
            err,
            TlsError::BadThumbprint {
                vcenter: "vc.example.com".into()
            }
        );
    }

    #[test]
    fn an_empty_ca_bundle_is_refused() {
        let err =
            client_config("vc.example.com", &Trust::CaBundle("not a pem".into())).unwrap_err();
        assert!(err.to_string().contains("vc.example.com"), "{err}");
    }
}
