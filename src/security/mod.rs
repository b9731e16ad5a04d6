//! Security: listeners and their protocols, TLS, SASL authentication, the SCRAM credential
//! store, ACL authorization and client quotas.
//!
//! Who a connection is ([`Principal`]) is settled by its listener: `PLAINTEXT` and `SSL`
//! without a client certificate are `User:ANONYMOUS`, `SSL` with a certificate is the
//! certificate's subject, and the `SASL_*` protocols are the authenticated user.

pub mod acl;
pub mod jaas;
pub mod listeners;
pub mod principal_mapping;
pub mod quota;
pub mod sasl;
pub mod scram;
pub mod tls;

use std::collections::BTreeMap;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use listeners::{ListenerSpec, SecurityProtocol};

/// Kafka's `KafkaPrincipal`: a type (always `User` here) and a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Principal {
    pub kind: String,
    pub name: String,
}

impl Principal {
    pub fn user(name: impl Into<String>) -> Principal {
        Principal { kind: "User".into(), name: name.into() }
    }

    /// The principal of connections nobody authenticated.
    pub fn anonymous() -> Principal {
        Principal::user("ANONYMOUS")
    }

    /// Parses `Type:name` as ACLs and `super.users` write principals.
    pub fn parse(s: &str) -> Option<Principal> {
        let (kind, name) = s.split_once(':')?;
        (!kind.is_empty()).then(|| Principal { kind: kind.to_string(), name: name.to_string() })
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// The security state replayed from the metadata log: SCRAM credentials, ACLs and quotas.
#[derive(Debug, Clone, Default)]
pub struct SecurityImage {
    /// `(user, mechanism)` → salted credential.
    pub scram: BTreeMap<(String, scram::Mechanism), scram::Credential>,
    pub acls: acl::AclSet,
    pub quotas: quota::QuotaConfigs,
}

impl SecurityImage {
    /// Applies one security record of the metadata log; other records are not its business.
    pub fn apply(&mut self, record: &crate::cluster::metadata_log::MetadataRecord) {
        use crate::cluster::metadata_log::MetadataRecord as R;
        match record {
            R::ScramCredential { user, mechanism, credential } => {
                self.scram.insert((user.clone(), *mechanism), credential.clone());
            }
            R::RemoveScramCredential { user, mechanism } => {
                self.scram.remove(&(user.clone(), *mechanism));
            }
            R::CreateAcl { id, binding } => {
                self.acls.by_id.insert(*id, binding.clone());
            }
            R::RemoveAcl { id } => {
                self.acls.by_id.remove(id);
            }
            R::ClientQuota { entity, key, value } => {
                self.quotas.set(entity.iter().cloned().collect(), key, *value);
            }
            _ => {}
        }
    }
}

/// The broker's security state: the replayed image and the settings that use it.
pub struct Security {
    image: parking_lot::RwLock<SecurityImage>,
    pub authorizer: acl::Authorizer,
    /// `sasl.enabled.mechanisms`, in the configured order.
    pub mechanisms: Vec<String>,
    /// `connections.max.reauth.ms`.
    pub reauth_ms: i64,
    quota_sensors: quota::QuotaManager,
    quota_window: quota::Window,
    /// `ssl.principal.mapping.rules`, and each listener's own where it has one.
    principal_mapping: principal_mapping::PrincipalMapper,
    listener_principal_mapping: BTreeMap<String, principal_mapping::PrincipalMapper>,
    /// PLAIN users each SASL listener accepts from its JAAS `user_<name>` entries, by listener.
    plain_users: BTreeMap<String, BTreeMap<String, String>>,
}

impl Security {
    pub fn new(config: &crate::config::BrokerConfig, image: SecurityImage) -> Result<Security, String> {
        let mut mechanisms = Vec::new();
        for m in config.get("sasl.enabled.mechanisms").split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if sasl::SaslMechanism::from_name(m).is_none() {
                return Err(format!("sasl.enabled.mechanisms: Weir does not implement '{m}'"));
            }
            mechanisms.push(m.to_string());
        }
        let principal_mapping = principal_mapping::PrincipalMapper::parse(&config.get("ssl.principal.mapping.rules"))?;
        let mut listener_principal_mapping = BTreeMap::new();
        let mut plain_users = BTreeMap::new();
        for listener in listeners::every_listener(config)? {
            let rules = config.listener_get(&listener.name, "ssl.principal.mapping.rules");
            if rules != config.get("ssl.principal.mapping.rules") {
                listener_principal_mapping
                    .insert(listener.name.clone(), principal_mapping::PrincipalMapper::parse(&rules)?);
            }
            if let Some(text) = config.listener_jaas(&listener.name, "PLAIN").filter(|_| listener.protocol.uses_sasl())
            {
                let jaas = jaas::JaasConfig::parse(&text)?;
                if jaas.family() == "PLAIN" {
                    plain_users.insert(listener.name.clone(), jaas.plain_users());
                }
            }
        }
        Ok(Security {
            principal_mapping,
            listener_principal_mapping,
            plain_users,
            image: parking_lot::RwLock::new(image),
            authorizer: acl::Authorizer::from_config(config)?,
            mechanisms,
            reauth_ms: config.get_i64("connections.max.reauth.ms"),
            quota_sensors: Default::default(),
            quota_window: quota::Window {
                size: std::time::Duration::from_secs(config.get_i64("quota.window.size.seconds").max(1) as u64),
                num: config.get_i64("quota.window.num").max(1) as usize,
            },
        })
    }

    /// The principal of a connection whose verified certificate is `cert`, mapped by the
    /// listener's `ssl.principal.mapping.rules`; an error when no rule applies.
    pub fn certificate_principal(
        &self,
        listener: &str,
        cert: &rustls::pki_types::CertificateDer<'_>,
    ) -> Result<Principal, String> {
        let mapper = self.listener_principal_mapping.get(listener).unwrap_or(&self.principal_mapping);
        mapper.principal(cert)
    }

    /// The PLAIN users `listener` accepts from its JAAS `user_<name>` entries.
    pub fn plain_users(&self, listener: &str) -> Option<&BTreeMap<String, String>> {
        self.plain_users.get(listener)
    }

    /// Takes in the security part of a newer metadata image.
    pub fn replace_image(&self, image: SecurityImage) {
        *self.image.write() = image;
    }

    pub fn credential(&self, user: &str, mechanism: scram::Mechanism) -> Option<scram::Credential> {
        self.image.read().scram.get(&(user.to_string(), mechanism)).cloned()
    }

    /// A read view of the image (credentials and ACLs).
    pub fn image(&self) -> parking_lot::RwLockReadGuard<'_, SecurityImage> {
        self.image.read()
    }

    /// Whether any client quota is configured (so byte counts are worth computing).
    pub fn has_quotas(&self) -> bool {
        !self.image.read().quotas.by_entity.is_empty()
    }

    /// Records `amount` against the client's `key` quota (if it has one) and returns how long
    /// the client is to be throttled for it (zero when within its quota).
    pub fn record_quota(&self, session: &sasl::Session, client_id: &str, key: &'static str, amount: f64) -> Duration {
        let image = self.image.read();
        if image.quotas.by_entity.is_empty() {
            return Duration::ZERO;
        }
        let user = session.principal().name;
        self.quota_sensors.record(&image.quotas, key, &user, client_id, amount, self.quota_window)
    }

    /// Whether the session's principal may perform `operation` on some resource of the type.
    pub fn authorize_any(&self, session: &sasl::Session, operation: i8, resource_type: i8) -> bool {
        if !self.authorizer.enabled {
            return true;
        }
        let host = session.peer.ip().to_string();
        self.authorizer.authorize_any(&self.image.read().acls, &session.principal(), &host, operation, resource_type)
    }

    /// Whether the session's principal may perform `operation` on a resource.
    pub fn authorize(&self, session: &sasl::Session, operation: i8, resource_type: i8, name: &str) -> bool {
        if !self.authorizer.enabled {
            return true;
        }
        let host = session.peer.ip().to_string();
        self.authorizer.authorize(&self.image.read().acls, &session.principal(), &host, operation, resource_type, name)
    }
}
