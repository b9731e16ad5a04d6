//! TLS for `SSL` and `SASL_SSL` listeners, with rustls. Keys and certificates come as PEM,
//! the way Kafka's `ssl.keystore.type=PEM` takes them: inline (`ssl.keystore.certificate.chain`,
//! `ssl.keystore.key`, `ssl.truststore.certificates`) or from files (`ssl.keystore.location`
//! holding the key and the chain, `ssl.truststore.location`).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::config::BrokerConfig;

/// `ssl.client.auth`: whether clients must (or may) present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    None,
    Requested,
    Required,
}

/// Reads PEM from the inline config `inline` or else the file named by `location`, as set for
/// `listener` (its `listener.name.<listener>.` override, else the broker-wide value).
fn pem_source(config: &BrokerConfig, listener: &str, inline: &str, location: &str) -> Result<Option<Vec<u8>>, String> {
    let text = config.listener_get(listener, inline);
    if !text.trim().is_empty() {
        return Ok(Some(text.into_bytes()));
    }
    let path = config.listener_get(listener, location);
    if path.trim().is_empty() {
        return Ok(None);
    }
    std::fs::read(path.trim()).map(Some).map_err(|e| format!("{location}: cannot read {path}: {e}"))
}

/// A certificate chain and its private key, as PEM.
pub type PemIdentity = (Vec<u8>, Vec<u8>);

/// The listener's keystore as PEM: (certificate chain, private key), if it has one.
pub fn keystore_pem(config: &BrokerConfig, listener: &str) -> Result<Option<PemIdentity>, String> {
    let chain = pem_source(config, listener, "ssl.keystore.certificate.chain", "ssl.keystore.location")?;
    let key = pem_source(config, listener, "ssl.keystore.key", "ssl.keystore.location")?;
    Ok(chain.zip(key))
}

/// The listener's truststore as PEM, if it has one.
pub fn truststore_pem(config: &BrokerConfig, listener: &str) -> Result<Option<Vec<u8>>, String> {
    pem_source(config, listener, "ssl.truststore.certificates", "ssl.truststore.location")
}

pub(crate) fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what}: cannot parse PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what}: no certificate found"));
    }
    Ok(certs)
}

/// Builds the TLS server configuration of `listener` from its `ssl.*` keys.
pub fn server_config(config: &BrokerConfig, listener: &str) -> Result<Arc<ServerConfig>, String> {
    for key in ["ssl.keystore.type", "ssl.truststore.type"] {
        if !config.listener_get(listener, key).eq_ignore_ascii_case("PEM") {
            return Err(format!("{key}: Weir reads PEM only"));
        }
    }
    if !config.listener_get(listener, "ssl.key.password").is_empty() {
        return Err("ssl.key.password: encrypted private keys are not supported; give an unencrypted PEM key".into());
    }
    let (chain_pem, key_pem) = keystore_pem(config, listener)?.ok_or_else(|| {
        format!(
            "TLS listener {listener} needs ssl.keystore.certificate.chain and ssl.keystore.key, or \
             ssl.keystore.location"
        )
    })?;
    let chain = certificates(&chain_pem, "ssl.keystore")?;
    let key =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| format!("ssl.keystore: no usable private key: {e}"))?;
    let client_auth = match config.listener_get(listener, "ssl.client.auth").as_str() {
        "required" => ClientAuth::Required,
        "requested" => ClientAuth::Requested,
        _ => ClientAuth::None,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = if client_auth == ClientAuth::None {
        builder.with_no_client_auth()
    } else {
        let trust_pem = truststore_pem(config, listener)?
            .ok_or("ssl.client.auth needs ssl.truststore.certificates or ssl.truststore.location")?;
        let mut roots = RootCertStore::empty();
        for cert in certificates(&trust_pem, "ssl.truststore")? {
            roots.add(cert).map_err(|e| format!("ssl.truststore: {e}"))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        let verifier = if client_auth == ClientAuth::Requested { verifier.allow_unauthenticated() } else { verifier };
        builder.with_client_cert_verifier(verifier.build().map_err(|e| format!("ssl.truststore: {e}"))?)
    };
    let server = builder.with_single_cert(chain, key).map_err(|e| format!("ssl.keystore: {e}"))?;
    Ok(Arc::new(server))
}

/// The subject of a verified certificate as an RFC 2253 distinguished name
/// (`CN=alice,OU=eng,O=Example`), as Kafka writes it before `ssl.principal.mapping.rules`.
pub fn certificate_subject(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let mut parts = Vec::new();
    // RFC 2253 writes the most specific RDN first: the reverse of the encoded order.
    for rdn in parsed.subject().iter().collect::<Vec<_>>().into_iter().rev() {
        let attrs: Vec<String> = rdn
            .iter()
            .map(|attr| {
                let name = short_name(attr.attr_type());
                let value = attr.as_str().map(escape_dn_value).unwrap_or_default();
                format!("{name}={value}")
            })
            .collect();
        parts.push(attrs.join("+"));
    }
    Some(parts.join(","))
}

/// RFC 2253's short names for the usual attribute types; others are written as the OID.
fn short_name(oid: &x509_parser::der_parser::Oid<'_>) -> String {
    use x509_parser::oid_registry::*;
    let known = [
        (OID_X509_COMMON_NAME, "CN"),
        (OID_X509_ORGANIZATIONAL_UNIT, "OU"),
        (OID_X509_ORGANIZATION_NAME, "O"),
        (OID_X509_LOCALITY_NAME, "L"),
        (OID_X509_STATE_OR_PROVINCE_NAME, "ST"),
        (OID_X509_COUNTRY_NAME, "C"),
        (OID_DOMAIN_COMPONENT, "DC"),
    ];
    known.iter().find(|(k, _)| k == oid).map(|(_, n)| n.to_string()).unwrap_or_else(|| oid.to_id_string())
}

/// Escapes the characters RFC 2253 reserves in attribute values.
fn escape_dn_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        let reserved = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i + 1 == v.chars().count() && c == ' ');
        if reserved {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_subject_becomes_an_rfc2253_principal() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CountryName, "DE");
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "Weir, Inc");
        params.distinguished_name.push(rcgen::DnType::CommonName, "writer");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let subject = certificate_subject(cert.der()).unwrap();
        assert_eq!(subject, "CN=writer,O=Weir\\, Inc,C=DE");
    }
}
