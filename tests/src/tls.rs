//! The cluster's certificates, as k3s makes them for k3d (a cluster CA, a serving
//! certificate for the API with the SANs k3d asks for, and an admin client certificate
//! `system:admin` in `system:masters`), generated once per cluster state dir with
//! rcgen and kept in `<state>/tls/`; plus the rustls configurations the fake API server
//! and the fakes' client use.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// PEM texts of one cluster's certificates.
#[derive(Debug, Clone)]
pub struct Certs {
    pub ca: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
}

const FILES: [&str; 5] =
    ["ca.crt", "server.crt", "server.key", "client-admin.crt", "client-admin.key"];

/// Load `<state>/tls/*`, generating them first when absent. The fake k3d (for the
/// kubeconfig) and the API server may both get here first: each writes a complete set
/// into a folder of its own and renames it into place, so one set wins whole and a
/// client never trusts a CA that did not sign the server's certificate.
pub fn ensure(state_dir: &Path) -> Result<Certs> {
    let dir = state_dir.join("tls");
    if !dir.join(FILES[0]).is_file() {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        let staging = state_dir.join(format!("tls.{}", std::process::id()));
        std::fs::create_dir_all(&staging)
            .with_context(|| format!("creating {}", staging.display()))?;
        let certs = generate()?;
        let texts = [
            &certs.ca,
            &certs.server_cert,
            &certs.server_key,
            &certs.client_cert,
            &certs.client_key,
        ];
        for (f, t) in FILES.iter().zip(texts) {
            std::fs::write(staging.join(f), t)
                .with_context(|| format!("writing {}", staging.join(f).display()))?;
        }
        // Losing the race (the folder exists by now) is fine: the winner's set is read.
        if std::fs::rename(&staging, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
    }
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .with_context(|| format!("reading {}", dir.join(f).display()))
    };
    Ok(Certs {
        ca: read(FILES[0])?,
        server_cert: read(FILES[1])?,
        server_key: read(FILES[2])?,
        client_cert: read(FILES[3])?,
        client_key: read(FILES[4])?,
    })
}

fn generate() -> Result<Certs> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.distinguished_name.push(DnType::CommonName, "k3s-server-ca@testbed");
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate()?;
    let sans: Vec<String> = [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
        "127.0.0.1",
        "0.0.0.0",
        "::1",
    ]
    .map(String::from)
    .to_vec();
    let mut server = CertificateParams::new(sans)?;
    server.distinguished_name.push(DnType::CommonName, "k3s");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server.signed_by(&server_key, &issuer)?;

    let client_key = KeyPair::generate()?;
    let mut client = CertificateParams::new(Vec::<String>::new())?;
    client.distinguished_name.push(DnType::CommonName, "system:admin");
    client.distinguished_name.push(DnType::OrganizationName, "system:masters");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client.signed_by(&client_key, &issuer)?;
    Ok(Certs {
        ca: ca_cert.pem(),
        server_cert: server_cert.pem(),
        server_key: server_key.serialize_pem(),
        client_cert: client_cert.pem(),
        client_key: client_key.serialize_pem(),
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The API server's TLS configuration (HTTP/1.1; client certificates not required).
pub fn server_config(certs: &Certs) -> Result<Arc<rustls::ServerConfig>> {
    let chain = CertificateDer::pem_slice_iter(certs.server_cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("server certificate PEM")?;
    let key =
        PrivateKeyDer::from_pem_slice(certs.server_key.as_bytes()).context("server key PEM")?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client configuration trusting `ca_pem`, presenting the client certificate if given.
pub fn client_config(
    ca_pem: &[u8],
    client: Option<(&[u8], &[u8])>,
) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.context("CA PEM")?)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert).collect::<Result<Vec<_>, _>>()?;
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_slice(key)?)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_made_once_and_load_into_rustls() {
        let dir = tempfile_dir();
        let a = ensure(&dir).unwrap();
        let b = ensure(&dir).unwrap();
        assert_eq!(a.ca, b.ca);
        assert!(a.ca.starts_with("-----BEGIN CERTIFICATE-----"));
        server_config(&a).unwrap();
        client_config(a.ca.as_bytes(), Some((a.client_cert.as_bytes(), a.client_key.as_bytes())))
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("testbed-tls-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
