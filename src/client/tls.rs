//! The client side of TLS (`security.protocol=SSL|SASL_SSL`), with rustls as the broker uses.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::config::TlsSettings;
use super::error::{ClientError, Result};
use crate::security::tls::certificates;

/// Where Debian, Fedora and Alpine keep the system's CA bundle (librdkafka's defaults too).
const SYSTEM_BUNDLES: &[&str] =
    &["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"];

fn read(path: &std::path::Path, key: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| ClientError::Config(format!("{key}: cannot read {}: {e}", path.display())))
}

fn roots(settings: &TlsSettings) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let pem = match (&settings.ca_pem, &settings.ca_location) {
        (Some(pem), _) => pem.clone(),
        (None, Some(path)) => read(path, "ssl.ca.location")?,
        (None, None) => SYSTEM_BUNDLES.iter().find_map(|p| std::fs::read(p).ok()).unwrap_or_default(),
    };
    for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
        // a system bundle may hold certificates webpki cannot use; skip those
        let _ = roots.add(cert);
    }
    if roots.is_empty() && settings.verify_certificate {
        return Err(ClientError::Config("no trusted CA certificates: give -X ssl.ca.location=FILE".into()));
    }
    Ok(roots)
}

/// The rustls connector for these settings.
pub fn connector(settings: &TlsSettings) -> Result<tokio_rustls::TlsConnector> {
    let roots = roots(settings)?;
    let builder = rustls::ClientConfig::builder();
    let builder = if settings.verify_certificate && settings.verify_hostname {
        builder.with_root_certificates(roots)
    } else {
        let inner = WebPkiServerVerifier::builder(Arc::new(roots))
            .build()
            .map_err(|e| ClientError::Config(format!("TLS: {e}")))?;
        let verifier = Lenient { inner, verify_certificate: settings.verify_certificate };
        builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier))
    };
    let identity = match (&settings.identity_pem, &settings.certificate_location, &settings.key_location) {
        (Some((chain, key)), _, _) => Some((chain.clone(), key.clone())),
        (None, Some(cert), Some(key)) => {
            Some((read(cert, "ssl.certificate.location")?, read(key, "ssl.key.location")?))
        }
        (None, None, None) => None,
        _ => return Err(ClientError::Config("ssl.certificate.location and ssl.key.location go together".into())),
    };
    let config = match identity {
        Some((chain, key)) => {
            let chain = certificates(&chain, "ssl.certificate.location").map_err(ClientError::Config)?;
            let key = PrivateKeyDer::from_pem_slice(&key)
                .map_err(|e| ClientError::Config(format!("ssl.key.location: no usable private key: {e}")))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| ClientError::Config(format!("TLS: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

pub fn server_name(host: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(host.to_string()).map_err(|_| ClientError::Config(format!("'{host}' is not a valid TLS name")))
}

/// Verification with the checks librdkafka lets a user turn off: the host name
/// (`ssl.endpoint.identification.algorithm=none`) or the whole chain
/// (`enable.ssl.certificate.verification=false`). Handshake signatures are always checked.
#[derive(Debug)]
struct Lenient {
    inner: Arc<WebPkiServerVerifier>,
    verify_certificate: bool,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if !self.verify_certificate {
            return Ok(ServerCertVerified::assertion());
        }
        match self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
