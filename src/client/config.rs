//! Client settings in librdkafka's names, so a kcat command line's `-X` carries over.

use std::path::PathBuf;
use std::time::Duration;

use super::error::{ClientError, Result};
use crate::security::scram::Mechanism;

/// How to authenticate over SASL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    Scram(Mechanism),
}

/// TLS settings (`ssl.*`).
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// `ssl.ca.location`: PEM file of trusted CAs; the system's bundle when unset.
    pub ca_location: Option<PathBuf>,
    /// `ssl.certificate.location` + `ssl.key.location`: a client certificate (mutual TLS).
    pub certificate_location: Option<PathBuf>,
    pub key_location: Option<PathBuf>,
    /// `enable.ssl.certificate.verification=false` trusts any certificate (testing only).
    pub verify_certificate: bool,
    /// `ssl.endpoint.identification.algorithm=none` skips the host name check.
    pub verify_hostname: bool,
    /// Trusted CAs as PEM text (a broker's `ssl.truststore.certificates`), instead of a file.
    pub ca_pem: Option<Vec<u8>>,
    /// A certificate chain and key as PEM text (a broker's keystore), instead of files.
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
}

/// Where to connect and how.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `bootstrap.servers`: HOST:PORT entries to learn the cluster from.
    pub bootstrap: Vec<String>,
    pub client_id: String,
    pub tls: Option<TlsSettings>,
    pub sasl: Option<(SaslMechanism, String, String)>,
    /// `socket.connection.setup.timeout.ms`
    pub connect_timeout: Duration,
    /// `request.timeout.ms` (also `socket.timeout.ms`): how long one request may take.
    pub request_timeout: Duration,
}

impl ClientConfig {
    /// A plaintext client of `brokers` (comma-separated HOST:PORT).
    pub fn new(brokers: &str) -> ClientConfig {
        ClientConfig {
            bootstrap: split_brokers(brokers),
            client_id: "weir-cli".to_string(),
            tls: None,
            sasl: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }

    /// Applies `-X key=value` settings (librdkafka names). Unknown keys are refused, as
    /// librdkafka refuses them, so a typo does not silently connect in plaintext.
    pub fn with_properties<'a>(mut self, props: impl IntoIterator<Item = &'a str>) -> Result<ClientConfig> {
        let (mut protocol, mut mechanism, mut user, mut password) = (None, None, None, None);
        let mut tls = TlsSettings { verify_certificate: true, verify_hostname: true, ..TlsSettings::default() };
        for prop in props {
            let (key, value) = prop
                .split_once('=')
                .ok_or_else(|| ClientError::Config(format!("-X expects key=value, got '{prop}'")))?;
            let (key, value) = (key.trim(), value.trim());
            match key {
                "bootstrap.servers" | "metadata.broker.list" => self.bootstrap = split_brokers(value),
                "client.id" => self.client_id = value.to_string(),
                "security.protocol" => protocol = Some(value.to_ascii_uppercase()),
                "sasl.mechanism" | "sasl.mechanisms" => mechanism = Some(value.to_ascii_uppercase()),
                "sasl.username" => user = Some(value.to_string()),
                "sasl.password" => password = Some(value.to_string()),
                "ssl.ca.location" => tls.ca_location = Some(value.into()),
                "ssl.certificate.location" => tls.certificate_location = Some(value.into()),
                "ssl.key.location" => tls.key_location = Some(value.into()),
                "enable.ssl.certificate.verification" => tls.verify_certificate = parse_bool(key, value)?,
                "ssl.endpoint.identification.algorithm" => {
                    tls.verify_hostname = match value.to_ascii_lowercase().as_str() {
                        "https" => true,
                        "none" | "" => false,
                        _ => return Err(ClientError::Config(format!("{key}: expected https or none, got '{value}'"))),
                    }
                }
                "socket.connection.setup.timeout.ms" => self.connect_timeout = parse_ms(key, value)?,
                "request.timeout.ms" | "socket.timeout.ms" => self.request_timeout = parse_ms(key, value)?,
                _ => {
                    return Err(ClientError::Config(format!(
                        "-X {key}: unknown or unsupported property (see `weir --help` for the supported ones)"
                    )))
                }
            }
        }
        let protocol = protocol.unwrap_or_else(|| "PLAINTEXT".to_string());
        let (uses_tls, uses_sasl) = match protocol.as_str() {
            "PLAINTEXT" => (false, false),
            "SSL" => (true, false),
            "SASL_PLAINTEXT" => (false, true),
            "SASL_SSL" => (true, true),
            other => return Err(ClientError::Config(format!("security.protocol: unknown protocol '{other}'"))),
        };
        self.tls = uses_tls.then_some(tls);
        if uses_sasl {
            let mechanism = match mechanism.as_deref().unwrap_or("PLAIN") {
                "PLAIN" => SaslMechanism::Plain,
                name => SaslMechanism::Scram(Mechanism::from_name(name).ok_or_else(|| {
                    ClientError::Config(format!(
                        "sasl.mechanism: '{name}' is not supported (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"
                    ))
                })?),
            };
            let user = user.ok_or_else(|| ClientError::Config("SASL needs -X sasl.username".into()))?;
            let password = password.ok_or_else(|| ClientError::Config("SASL needs -X sasl.password".into()))?;
            self.sasl = Some((mechanism, user, password));
        }
        if self.bootstrap.is_empty() {
            return Err(ClientError::Config("no brokers given (-b HOST:PORT)".into()));
        }
        Ok(self)
    }
}

fn split_brokers(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            // librdkafka accepts a scheme prefix (`SSL://host:port`) and a missing port (9092)
            let s = s.split_once("://").map_or(s, |(_, rest)| rest);
            if s.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
                s.to_string()
            } else {
                format!("{s}:9092")
            }
        })
        .collect()
}

fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ClientError::Config(format!("{key}: expected true or false, got '{value}'"))),
    }
}

fn parse_ms(key: &str, value: &str) -> Result<Duration> {
    value
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| ClientError::Config(format!("{key}: expected milliseconds, got '{value}'")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kcat_style_properties() {
        let c = ClientConfig::new("a:1, b")
            .with_properties([
                "security.protocol=sasl_ssl",
                "sasl.mechanisms=SCRAM-SHA-512",
                "sasl.username=alice",
                "sasl.password=x=y",
                "ssl.ca.location=/tmp/ca.pem",
            ])
            .unwrap();
        assert_eq!(c.bootstrap, ["a:1", "b:9092"]);
        assert_eq!(c.sasl, Some((SaslMechanism::Scram(Mechanism::Sha512), "alice".into(), "x=y".into())));
        assert_eq!(c.tls.unwrap().ca_location.unwrap(), PathBuf::from("/tmp/ca.pem"));
        assert!(ClientConfig::new("a:1").with_properties(["ssl.ca.locaton=x"]).is_err());
        assert!(ClientConfig::new("a:1").with_properties(["security.protocol=SASL_PLAINTEXT"]).is_err());
    }
}
