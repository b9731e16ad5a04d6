//! Test certificates, generated per test run with rcgen (no private key is committed): a CA,
//! a broker certificate for 127.0.0.1/localhost, and client certificates signed by the CA.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair};

pub struct Pki {
    pub dir: tempfile::TempDir,
    /// The CA certificate (PEM file) that clients and the broker trust.
    pub ca_file: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
    /// The broker's certificate chain and key as PEM text.
    pub server_chain: String,
    pub server_key: String,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "Weir test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("CA");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("write CA");
        let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("params");
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &ca).expect("server certificate");
        Pki { ca_file, server_chain: cert.pem(), server_key: key.serialize_pem(), ca, dir }
    }

    /// Broker settings for TLS listeners with this PKI.
    pub fn broker_settings(&self) -> Vec<(String, String)> {
        vec![
            ("ssl.keystore.certificate.chain".into(), self.server_chain.clone()),
            ("ssl.keystore.key".into(), self.server_key.clone()),
            ("ssl.truststore.location".into(), self.ca_file.display().to_string()),
        ]
    }

    /// A certificate signed by the CA for subject `CN=<cn>,O=Weir Tests` (encoded O then CN,
    /// so the RFC 2253 subject, most specific first, is CN=..,O=..), valid for `names`: (PEM
    /// certificate, PEM key).
    fn signed(&self, cn: &str, names: Vec<String>) -> (String, String) {
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::OrganizationName, "Weir Tests");
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// A certificate for 127.0.0.1/localhost with subject `CN=<cn>,O=Weir Tests`, usable by a
    /// broker as its server and client certificate, written as one PEM file (key, then chain)
    /// as `ssl.keystore.location` takes it.
    pub fn node(&self, cn: &str) -> PathBuf {
        let (cert, key) = self.signed(cn, vec!["127.0.0.1".to_string(), "localhost".to_string()]);
        let file = self.dir.path().join(format!("{cn}-keystore.pem"));
        std::fs::write(&file, format!("{key}{cert}")).expect("write keystore");
        file
    }

    /// A client certificate for subject `CN=<cn>,O=Weir Tests`: (certificate file, key file).
    pub fn client(&self, cn: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = self.signed(cn, Vec::new());
        let cert_file = self.dir.path().join(format!("{cn}.pem"));
        let key_file = self.dir.path().join(format!("{cn}.key"));
        std::fs::write(&cert_file, cert).expect("write cert");
        std::fs::write(&key_file, key).expect("write key");
        (cert_file, key_file)
    }
}
