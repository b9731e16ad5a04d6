//! How this node connects to other nodes: to brokers on the inter-broker listener
//! (`inter.broker.listener.name`, else the listener named by `security.inter.broker.protocol`)
//! and to controllers on the controller listener (`controller.listener.names`), each with its
//! listener's protocol — TLS verified against the listener's truststore, the listener's
//! keystore presented for mutual TLS, SASL with `sasl.mechanism.inter.broker.protocol` /
//! `sasl.mechanism.controller.protocol` and the credentials of its JAAS config.
//!
//! Whatever is missing is an error at start-up that names the key: a broker that cannot
//! authenticate to its peers must not start and replicate nothing.

use super::config::{ClientConfig, SaslMechanism, TlsSettings};
use crate::config::BrokerConfig;
use crate::security::jaas::JaasConfig;
use crate::security::listeners::{self, SecurityProtocol};

/// The listener of other nodes this node connects to, and how.
#[derive(Debug, Clone)]
pub struct PeerLink {
    /// The listener name (upper-case, as in `listeners`).
    pub listener: String,
    pub protocol: SecurityProtocol,
    /// Client settings for connections to it (no bootstrap servers).
    pub client: ClientConfig,
}

impl PeerLink {
    /// A plaintext link on `listener` (tests; single brokers).
    pub fn plaintext(listener: &str) -> PeerLink {
        PeerLink {
            listener: listener.to_string(),
            protocol: SecurityProtocol::Plaintext,
            client: ClientConfig::new(""),
        }
    }
}

/// The inter-broker listener's name: `inter.broker.listener.name`, else the listener named as
/// `security.inter.broker.protocol` (PLAINTEXT by default), as Kafka resolves it.
pub fn inter_broker_listener_name(config: &BrokerConfig) -> String {
    let named = config.get("inter.broker.listener.name");
    if named.trim().is_empty() {
        config.get("security.inter.broker.protocol").trim().to_ascii_uppercase()
    } else {
        named.trim().to_ascii_uppercase()
    }
}

/// How this broker reaches other brokers. The listener must be one of this broker's own
/// (every broker of a cluster has it, as in Kafka).
pub fn inter_broker(config: &BrokerConfig, node_id: i32) -> Result<PeerLink, String> {
    let name = inter_broker_listener_name(config);
    let listener = listeners::from_config(config)?.into_iter().find(|l| l.name == name).ok_or_else(|| {
        let key = if config.get("inter.broker.listener.name").trim().is_empty() {
            "security.inter.broker.protocol (inter.broker.listener.name is unset)"
        } else {
            "inter.broker.listener.name"
        };
        format!("{key} names listener {name}, which is not among this broker's listeners")
    })?;
    let client_id = format!("weir-broker-{node_id}");
    link(config, &listener.name, listener.protocol, "sasl.mechanism.inter.broker.protocol", client_id)
}

/// How this node reaches the controllers (`None` without `controller.listener.names`).
pub fn controller(config: &BrokerConfig, node_id: i32) -> Result<Option<PeerLink>, String> {
    let Some((name, protocol)) = listeners::controller_protocol(config)? else { return Ok(None) };
    let client_id = format!("weir-node-{node_id}");
    link(config, &name, protocol, "sasl.mechanism.controller.protocol", client_id).map(Some)
}

fn link(
    config: &BrokerConfig,
    listener: &str,
    protocol: SecurityProtocol,
    mechanism_key: &str,
    client_id: String,
) -> Result<PeerLink, String> {
    let mut client = ClientConfig::new("");
    client.client_id = client_id;
    if protocol.uses_tls() {
        client.tls = Some(tls_settings(config, listener)?);
    }
    if protocol.uses_sasl() {
        client.sasl = Some(sasl_credentials(config, listener, mechanism_key)?);
    }
    Ok(PeerLink { listener: listener.to_string(), protocol, client })
}

/// TLS as a client of `listener`: its truststore (the system's CAs when it has none), its
/// keystore presented when it has one (mutual TLS), and host names checked unless
/// `ssl.endpoint.identification.algorithm` is empty.
fn tls_settings(config: &BrokerConfig, listener: &str) -> Result<TlsSettings, String> {
    let algorithm = config.listener_get(listener, "ssl.endpoint.identification.algorithm");
    let verify_hostname = match algorithm.trim().to_ascii_lowercase().as_str() {
        "https" => true,
        "" => false,
        other => return Err(format!("ssl.endpoint.identification.algorithm: expected https or empty, got '{other}'")),
    };
    Ok(TlsSettings {
        ca_pem: crate::security::tls::truststore_pem(config, listener)?,
        identity_pem: crate::security::tls::keystore_pem(config, listener)?,
        verify_certificate: true,
        verify_hostname,
        ..TlsSettings::default()
    })
}

/// The SASL mechanism named by `mechanism_key` and the credentials for it on `listener`.
fn sasl_credentials(
    config: &BrokerConfig,
    listener: &str,
    mechanism_key: &str,
) -> Result<(SaslMechanism, String, String), String> {
    let name = config.get(mechanism_key).trim().to_ascii_uppercase();
    let mechanism = match name.as_str() {
        "PLAIN" => SaslMechanism::Plain,
        other => SaslMechanism::Scram(crate::security::scram::Mechanism::from_name(other).ok_or_else(|| {
            format!(
                "{mechanism_key} is {other}, which Weir does not implement; listener {listener} uses SASL: set \
                 {mechanism_key} to PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
            )
        })?),
    };
    let enabled = config.listener_get(listener, "sasl.enabled.mechanisms");
    if !enabled.split(',').any(|m| m.trim().eq_ignore_ascii_case(&name)) {
        return Err(format!(
            "{mechanism_key} {name} is not in listener {listener}'s sasl.enabled.mechanisms ({enabled})"
        ));
    }
    let key = format!("listener.name.{}.{}.sasl.jaas.config", listener.to_ascii_lowercase(), name.to_ascii_lowercase());
    let text = config.listener_jaas(listener, &name).ok_or_else(|| {
        format!(
            "listener {listener} uses SASL {name} between nodes, but {key} (or sasl.jaas.config) is not set: \
             give this node's username and password there"
        )
    })?;
    let jaas = JaasConfig::parse(&text).map_err(|e| format!("{key}: {e}"))?;
    let family = if name == "PLAIN" { "PLAIN" } else { "SCRAM" };
    if jaas.family() != family {
        return Err(format!("{key}: {name} needs a {family} login module, not {}", jaas.module));
    }
    let (user, password) =
        jaas.credentials().ok_or_else(|| format!("{key}: the login module has no username and password"))?;
    Ok((mechanism, user, password))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> BrokerConfig {
        BrokerConfig::from_layers([pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()]).unwrap()
    }

    const SCRAM: &str =
        r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="b-secret";"#;

    #[test]
    fn inter_broker_sasl_ssl_takes_the_listeners_credentials() {
        let c = config(&[
            ("listeners", "SASL_SSL://127.0.0.1:9094,CONTROLLER://127.0.0.1:9093"),
            ("controller.listener.names", "CONTROLLER"),
            ("listener.security.protocol.map", "SASL_SSL:SASL_SSL,CONTROLLER:SSL"),
            ("inter.broker.listener.name", "SASL_SSL"),
            ("sasl.mechanism.inter.broker.protocol", "SCRAM-SHA-512"),
            ("listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config", SCRAM),
            ("listener.name.controller.ssl.client.auth", "required"),
        ]);
        let link = inter_broker(&c, 1).unwrap();
        assert_eq!((link.listener.as_str(), link.protocol), ("SASL_SSL", SecurityProtocol::SaslSsl));
        let (mechanism, user, password) = link.client.sasl.clone().unwrap();
        assert_eq!(mechanism, SaslMechanism::Scram(crate::security::scram::Mechanism::Sha512));
        assert_eq!((user.as_str(), password.as_str()), ("broker", "b-secret"));
        assert!(link.client.tls.as_ref().unwrap().verify_hostname);
        let controller = controller(&c, 1).unwrap().unwrap();
        assert_eq!(controller.protocol, SecurityProtocol::Ssl);
        assert!(controller.client.sasl.is_none());
        assert_eq!(c.listener_get("CONTROLLER", "ssl.client.auth"), "required");
        assert_eq!(c.get("ssl.client.auth"), "none");
    }

    #[test]
    fn missing_credentials_name_the_key() {
        let base = [
            ("listeners", "SASL_SSL://127.0.0.1:9094"),
            ("inter.broker.listener.name", "SASL_SSL"),
            ("sasl.mechanism.inter.broker.protocol", "SCRAM-SHA-512"),
        ];
        let e = inter_broker(&config(&base), 1).unwrap_err();
        assert!(e.contains("listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"), "{e}");
        let e = inter_broker(&config(&base[..2]), 1).unwrap_err();
        assert!(e.contains("sasl.mechanism.inter.broker.protocol is GSSAPI"), "{e}");
        let e = inter_broker(&config(&[("listeners", "SSL://127.0.0.1:9094")]), 1).unwrap_err();
        assert!(e.contains("security.inter.broker.protocol"), "{e}");
        let plain = r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="b" password="p";"#;
        let mut wrong_module = base.to_vec();
        wrong_module.push(("sasl.jaas.config", plain));
        let e = inter_broker(&config(&wrong_module), 1).unwrap_err();
        assert!(e.contains("needs a SCRAM login module"), "{e}");
        let mut disabled = base.to_vec();
        disabled.push(("sasl.jaas.config", SCRAM));
        disabled.push(("sasl.enabled.mechanisms", "PLAIN"));
        let e = inter_broker(&config(&disabled), 1).unwrap_err();
        assert!(e.contains("not in listener SASL_SSL's sasl.enabled.mechanisms"), "{e}");
    }
}
