//! `listeners`, `advertised.listeners` and `listener.security.protocol.map`, parsed as Kafka
//! parses them: `NAME://HOST:PORT` entries whose name maps to a security protocol.

use std::collections::BTreeMap;

use crate::config::BrokerConfig;

/// How a listener's connections are secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(s: &str) -> Option<SecurityProtocol> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(SecurityProtocol::Plaintext),
            "SSL" => Some(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Some(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Some(SecurityProtocol::SaslSsl),
            _ => None,
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }
}

/// One configured listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// The listener name (`PLAINTEXT`, `SSL`, or a custom name from the protocol map).
    pub name: String,
    pub protocol: SecurityProtocol,
    /// `HOST:PORT` to bind.
    pub bind: String,
    /// `HOST:PORT` returned in Metadata to clients that came in on this listener; `None`
    /// means the bound address.
    pub advertised: Option<String>,
}

/// Splits `NAME://HOST:PORT`; a bare `HOST:PORT` (the `--listen` shortcut) is `PLAINTEXT`.
fn split_entry(entry: &str) -> (String, String) {
    match entry.trim().split_once("://") {
        Some((name, addr)) => (name.trim().to_ascii_uppercase(), addr.trim().to_string()),
        None => ("PLAINTEXT".to_string(), entry.trim().to_string()),
    }
}

fn entries(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|e| !e.is_empty())
}

/// The names in `controller.listener.names`: listeners of the metadata quorum, not of clients.
fn controller_names(config: &BrokerConfig) -> Vec<String> {
    entries(&config.get("controller.listener.names")).map(|n| n.to_ascii_uppercase()).collect()
}

/// Reads the client listeners from the configuration (those clients and other brokers reach
/// with the Kafka protocol).
pub fn from_config(config: &BrokerConfig) -> Result<Vec<ListenerSpec>, String> {
    let controllers = controller_names(config);
    let listeners: Vec<_> = all_listeners(config)?.into_iter().filter(|l| !controllers.contains(&l.name)).collect();
    if listeners.is_empty() {
        return Err("listeners has no listener for clients".into());
    }
    Ok(listeners)
}

/// The listener the metadata quorum is served on (the first of `controller.listener.names`),
/// if this node has one.
pub fn controller_listener(config: &BrokerConfig) -> Result<Option<ListenerSpec>, String> {
    let Some(name) = controller_names(config).into_iter().next() else { return Ok(None) };
    Ok(all_listeners(config)?.into_iter().find(|l| l.name == name))
}

/// Every listener: the client ones and the controller's.
pub fn every_listener(config: &BrokerConfig) -> Result<Vec<ListenerSpec>, String> {
    all_listeners(config)
}

/// `listener.security.protocol.map`: listener name → security protocol.
fn protocol_map(config: &BrokerConfig) -> Result<BTreeMap<String, SecurityProtocol>, String> {
    let mut map = BTreeMap::new();
    for pair in entries(&config.get("listener.security.protocol.map")) {
        let (name, proto) = pair
            .split_once(':')
            .ok_or_else(|| format!("listener.security.protocol.map: '{pair}' is not NAME:PROTOCOL"))?;
        let proto = SecurityProtocol::parse(proto)
            .ok_or_else(|| format!("listener.security.protocol.map: unknown security protocol '{proto}'"))?;
        map.insert(name.trim().to_ascii_uppercase(), proto);
    }
    Ok(map)
}

/// The controller listener's name and protocol as every node (voter or broker) connects to
/// it: the first of `controller.listener.names`, its protocol from the map (PLAINTEXT when
/// the map leaves it out, as Kafka takes a CONTROLLER listener).
pub fn controller_protocol(config: &BrokerConfig) -> Result<Option<(String, SecurityProtocol)>, String> {
    let Some(name) = controller_names(config).into_iter().next() else { return Ok(None) };
    let protocol = protocol_map(config)?.get(&name).copied().unwrap_or(SecurityProtocol::Plaintext);
    Ok(Some((name, protocol)))
}

fn all_listeners(config: &BrokerConfig) -> Result<Vec<ListenerSpec>, String> {
    let controllers = controller_names(config);
    let map = protocol_map(config)?;
    let mut advertised = BTreeMap::new();
    for entry in entries(&config.get("advertised.listeners")) {
        let (name, addr) = split_entry(entry);
        advertised.insert(name, addr);
    }
    let mut listeners: Vec<ListenerSpec> = Vec::new();
    for entry in entries(&config.get("listeners")) {
        let (name, bind) = split_entry(entry);
        // Kafka's CONTROLLER listeners are commonly left out of the map: plaintext
        let implied = controllers.contains(&name).then_some(SecurityProtocol::Plaintext);
        let protocol =
            map.get(&name).copied().or(implied).ok_or_else(|| {
                format!("listener '{name}' has no security protocol in listener.security.protocol.map")
            })?;
        if listeners.iter().any(|l| l.name == name) {
            return Err(format!("listener name '{name}' appears twice in listeners"));
        }
        let advertised = advertised.remove(&name);
        listeners.push(ListenerSpec { name, protocol, bind, advertised });
    }
    if listeners.is_empty() {
        return Err("listeners is empty".into());
    }
    if let Some(name) = advertised.keys().next() {
        return Err(format!("advertised.listeners names '{name}', which is not in listeners"));
    }
    Ok(listeners)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> BrokerConfig {
        BrokerConfig::from_layers([pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()]).unwrap()
    }

    #[test]
    fn parses_named_listeners_with_their_protocols() {
        let c = config(&[
            ("listeners", "PLAINTEXT://127.0.0.1:9092, SASL_SSL://0.0.0.0:9094,INTERNAL://127.0.0.1:9095"),
            ("advertised.listeners", "SASL_SSL://kafka.example.com:9094"),
            ("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,INTERNAL:SSL"),
        ]);
        let l = from_config(&c).unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l[1].protocol, SecurityProtocol::SaslSsl);
        assert_eq!(l[1].advertised.as_deref(), Some("kafka.example.com:9094"));
        assert_eq!(l[2].protocol, SecurityProtocol::Ssl);
        assert_eq!(l[0].advertised, None);
    }

    #[test]
    fn bare_address_is_plaintext_and_unknown_names_are_refused() {
        let l = from_config(&config(&[("listeners", "127.0.0.1:0")])).unwrap();
        assert_eq!((l[0].name.as_str(), l[0].protocol), ("PLAINTEXT", SecurityProtocol::Plaintext));
        assert!(from_config(&config(&[("listeners", "FOO://127.0.0.1:0")])).is_err());
        assert!(from_config(&config(&[("advertised.listeners", "SSL://h:1")])).is_err());
    }
}
