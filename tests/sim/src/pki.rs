//! Certificates for the simulated cluster: one CA per purpose, like a real
//! control plane (serving, client authentication, service-account signing),
//! ECDSA P-256 throughout.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::SimError;

/// A certificate authority that signs leaf certificates.
pub struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A PEM certificate and its PEM private key.
pub struct Leaf {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The certificate, DER (for thumbprints).
    pub cert_der: Vec<u8>,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
}

fn pki_error(what: &str, err: rcgen::Error) -> SimError {
    SimError::Setup(format!("cannot create {what}: {err}"))
}

impl Authority {
    /// A new self-signed CA named `common_name`.
    pub fn new(common_name: &str) -> Result<Authority, SimError> {
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(|e| pki_error(common_name, e))?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().map_err(|e| pki_error(common_name, e))?;
        let issuer =
            CertifiedIssuer::self_signed(params, key).map_err(|e| pki_error(common_name, e))?;
        Ok(Authority { issuer })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> Result<Leaf, SimError> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone())
            .map_err(|e| pki_error("a server certificate", e))?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().map(String::as_str).unwrap_or("server"),
        );
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(params, "a server certificate")
    }

    /// A client certificate for user `user` in `groups` (the API server reads
    /// CN as the user and O as the groups).
    pub fn client(&self, user: &str, groups: &[&str]) -> Result<Leaf, SimError> {
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(|e| pki_error("a client certificate", e))?;
        params.distinguished_name.push(DnType::CommonName, user);
        for group in groups {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *group);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(params, "a client certificate")
    }

    fn sign(&self, params: CertificateParams, what: &str) -> Result<Leaf, SimError> {
        let key = KeyPair::generate().map_err(|e| pki_error(what, e))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| pki_error(what, e))?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A key pair for signing service-account tokens.
pub struct SigningKey {
    /// Private key, PKCS#8 PEM.
    pub private_pem: String,
    /// Public key, PEM.
    pub public_pem: String,
}

impl SigningKey {
    /// A new ECDSA P-256 key pair.
    pub fn new() -> Result<SigningKey, SimError> {
        let key =
            KeyPair::generate().map_err(|e| pki_error("the service-account signing key", e))?;
        Ok(SigningKey {
            private_pem: key.serialize_pem(),
            public_pem: key.public_key_pem(),
        })
    }
}

/// Writes `contents` to `dir/name` (mode 0600) and returns the path.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> Result<PathBuf, SimError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| SimError::Setup(format!("cannot write {}: {e}", path.display())))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| SimError::Setup(format!("cannot write {}: {e}", path.display())))?;
    Ok(path)
}

/// The SHA-1 and SHA-256 thumbprints of a DER certificate as vCenter prints
/// them: upper-case hex pairs separated by colons.
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
