//! Kafka-compatible ACLs and the authorizer that evaluates them (Kafka's
//! `StandardAuthorizer` rules): super users may do anything; otherwise a matching DENY wins
//! over a matching ALLOW; READ, WRITE, DELETE and ALTER imply DESCRIBE, and ALTER_CONFIGS
//! implies DESCRIBE_CONFIGS; a resource with no ACLs at all is open only when
//! `allow.everyone.if.no.acl.found` is true.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Principal;

/// Kafka's `ResourceType` codes.
pub mod resource {
    pub const ANY: i8 = 1;
    pub const TOPIC: i8 = 2;
    pub const GROUP: i8 = 3;
    pub const CLUSTER: i8 = 4;
    pub const TRANSACTIONAL_ID: i8 = 5;
    pub const DELEGATION_TOKEN: i8 = 6;
    pub const USER: i8 = 7;
}

/// Kafka's `PatternType` codes.
pub mod pattern {
    pub const ANY: i8 = 1;
    pub const MATCH: i8 = 2;
    pub const LITERAL: i8 = 3;
    pub const PREFIXED: i8 = 4;
}

/// Kafka's `AclOperation` codes.
pub mod op {
    pub const ANY: i8 = 1;
    pub const ALL: i8 = 2;
    pub const READ: i8 = 3;
    pub const WRITE: i8 = 4;
    pub const CREATE: i8 = 5;
    pub const DELETE: i8 = 6;
    pub const ALTER: i8 = 7;
    pub const DESCRIBE: i8 = 8;
    pub const CLUSTER_ACTION: i8 = 9;
    pub const DESCRIBE_CONFIGS: i8 = 10;
    pub const ALTER_CONFIGS: i8 = 11;
    pub const IDEMPOTENT_WRITE: i8 = 12;
    pub const CREATE_TOKENS: i8 = 13;
    pub const DESCRIBE_TOKENS: i8 = 14;
    pub const TWO_PHASE_COMMIT: i8 = 15;
}

/// Kafka's `AclPermissionType` codes.
pub mod permission {
    pub const ANY: i8 = 1;
    pub const DENY: i8 = 2;
    pub const ALLOW: i8 = 3;
}

/// The name of the one cluster resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The literal resource name that matches every resource of its type.
pub const WILDCARD: &str = "*";

/// One ACL: who may (or may not) do what on which resources, from which hosts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    /// `Type:name`, or `User:*` for everybody.
    pub principal: String,
    /// A client IP address, or `*`.
    pub host: String,
    pub operation: i8,
    pub permission: i8,
}

impl AclBinding {
    /// Checks a binding a client asks to create; the message is Kafka's kind of explanation.
    pub fn validate(&self) -> Result<(), String> {
        if !(resource::TOPIC..=resource::USER).contains(&self.resource_type) {
            return Err(format!("Invalid resource type {}", self.resource_type));
        }
        if !matches!(self.pattern_type, pattern::LITERAL | pattern::PREFIXED) {
            return Err(format!("Invalid pattern type {}", self.pattern_type));
        }
        if !(op::ALL..=op::TWO_PHASE_COMMIT).contains(&self.operation) {
            return Err(format!("Invalid operation {}", self.operation));
        }
        if !matches!(self.permission, permission::ALLOW | permission::DENY) {
            return Err(format!("Invalid permission type {}", self.permission));
        }
        if self.resource_name.is_empty() {
            return Err("Resource name must not be empty".into());
        }
        if self.resource_type == resource::CLUSTER && self.resource_name != CLUSTER_NAME {
            return Err(format!("The only valid name for the CLUSTER resource is {CLUSTER_NAME}"));
        }
        if Principal::parse(&self.principal).is_none() {
            return Err(format!("Could not parse principal from `{}`", self.principal));
        }
        if self.host.is_empty() {
            return Err("Host must not be empty".into());
        }
        Ok(())
    }

    /// Whether this ACL's resource pattern covers `name`.
    fn covers(&self, resource_type: i8, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern_type {
                pattern::LITERAL => self.resource_name == name || self.resource_name == WILDCARD,
                pattern::PREFIXED => name.starts_with(&self.resource_name),
                _ => false,
            }
    }

    fn applies_to(&self, principal: &str, host: &str) -> bool {
        (self.principal == principal || self.principal == "User:*") && (self.host == WILDCARD || self.host == host)
    }
}

/// A DescribeAcls / DeleteAcls filter; `None` fields match anything.
#[derive(Debug, Clone)]
pub struct AclFilter {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission: i8,
}

impl AclFilter {
    pub fn matches(&self, b: &AclBinding) -> bool {
        let type_ok = self.resource_type == resource::ANY || self.resource_type == b.resource_type;
        let pattern_ok = match (self.pattern_type, &self.resource_name) {
            (pattern::ANY, None) | (pattern::MATCH, None) => true,
            (pattern::ANY, Some(n)) => &b.resource_name == n,
            // MATCH: every ACL that would apply to the named resource.
            (pattern::MATCH, Some(n)) => match b.pattern_type {
                pattern::LITERAL => &b.resource_name == n || b.resource_name == WILDCARD,
                pattern::PREFIXED => n.starts_with(&b.resource_name),
                _ => false,
            },
            (p, name) => p == b.pattern_type && name.as_ref().is_none_or(|n| &b.resource_name == n),
        };
        type_ok
            && pattern_ok
            && self.principal.as_ref().is_none_or(|p| p == &b.principal)
            && self.host.as_ref().is_none_or(|h| h == &b.host)
            && (self.operation == op::ANY || self.operation == b.operation)
            && (self.permission == permission::ANY || self.permission == b.permission)
    }

    /// Whether the filter's own fields are usable (unknown codes are rejected as Kafka does).
    pub fn validate(&self) -> Result<(), String> {
        if !(resource::ANY..=resource::USER).contains(&self.resource_type) {
            return Err(format!("Invalid resource type {}", self.resource_type));
        }
        if !(pattern::ANY..=pattern::PREFIXED).contains(&self.pattern_type) {
            return Err(format!("Invalid pattern type {}", self.pattern_type));
        }
        if !(op::ANY..=op::TWO_PHASE_COMMIT).contains(&self.operation) {
            return Err(format!("Invalid operation {}", self.operation));
        }
        if !(permission::ANY..=permission::ALLOW).contains(&self.permission) {
            return Err(format!("Invalid permission type {}", self.permission));
        }
        Ok(())
    }
}

/// Every ACL, by its id in the metadata log.
#[derive(Debug, Clone, Default)]
pub struct AclSet {
    pub by_id: BTreeMap<Uuid, AclBinding>,
}

impl AclSet {
    pub fn id_of(&self, binding: &AclBinding) -> Option<Uuid> {
        self.by_id.iter().find(|(_, b)| *b == binding).map(|(id, _)| *id)
    }

    pub fn matching<'a>(&'a self, filter: &'a AclFilter) -> impl Iterator<Item = (&'a Uuid, &'a AclBinding)> + 'a {
        self.by_id.iter().filter(move |(_, b)| filter.matches(b))
    }
}

/// The operations an ALLOW of `granted` gives.
fn allow_implies(granted: i8, wanted: i8) -> bool {
    granted == wanted
        || granted == op::ALL
        || (wanted == op::DESCRIBE && matches!(granted, op::READ | op::WRITE | op::DELETE | op::ALTER))
        || (wanted == op::DESCRIBE_CONFIGS && granted == op::ALTER_CONFIGS)
}

/// The authorizer's settings and the question it answers.
#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    pub enabled: bool,
    pub super_users: Vec<String>,
    pub allow_if_no_acl: bool,
}

/// The names `authorizer.class.name` accepts for the ACL authorizer.
const AUTHORIZER_NAMES: &[&str] =
    &["acl", "org.apache.kafka.metadata.authorizer.StandardAuthorizer", "kafka.security.authorizer.AclAuthorizer"];

impl Authorizer {
    /// The authorizer `authorizer.class.name`, `super.users` and
    /// `allow.everyone.if.no.acl.found` configure.
    pub fn from_config(config: &crate::config::BrokerConfig) -> Result<Authorizer, String> {
        let class = config.get("authorizer.class.name");
        let enabled = match class.trim() {
            "" => false,
            name if AUTHORIZER_NAMES.contains(&name) => true,
            other => return Err(format!("authorizer.class.name: unknown authorizer '{other}' (use 'acl')")),
        };
        let super_users = config
            .get("super.users")
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                Principal::parse(s).map(|p| p.to_string()).ok_or_else(|| format!("super.users: '{s}' is not Type:name"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Authorizer { enabled, super_users, allow_if_no_acl: config.get_bool("allow.everyone.if.no.acl.found") })
    }

    /// Whether `principal` connecting from `host` may perform `operation` on the resource.
    pub fn authorize(
        &self,
        acls: &AclSet,
        principal: &Principal,
        host: &str,
        operation: i8,
        resource_type: i8,
        name: &str,
    ) -> bool {
        if !self.enabled {
            return true;
        }
        let who = principal.to_string();
        if self.super_users.contains(&who) {
            return true;
        }
        let mut any_acl = false;
        let mut allowed = false;
        for acl in acls.by_id.values().filter(|a| a.covers(resource_type, name)) {
            any_acl = true;
            if !acl.applies_to(&who, host) {
                continue;
            }
            if acl.permission == permission::DENY && (acl.operation == operation || acl.operation == op::ALL) {
                return false;
            }
            if acl.permission == permission::ALLOW && allow_implies(acl.operation, operation) {
                allowed = true;
            }
        }
        allowed || (!any_acl && self.allow_if_no_acl)
    }
}

impl Authorizer {
    /// Whether `operation` is allowed on at least one resource of the type (Kafka's
    /// `authorizeByResourceType`, KIP-679: WRITE on any topic allows idempotent producing).
    /// An ALLOW counts unless a DENY covers every name its pattern covers.
    pub fn authorize_any(&self, acls: &AclSet, principal: &Principal, host: &str, operation: i8, rt: i8) -> bool {
        if !self.enabled {
            return true;
        }
        let who = principal.to_string();
        if self.super_users.contains(&who) {
            return true;
        }
        let of_type: Vec<&AclBinding> = acls.by_id.values().filter(|a| a.resource_type == rt).collect();
        if of_type.is_empty() {
            return self.allow_if_no_acl;
        }
        let denies: Vec<&&AclBinding> = of_type
            .iter()
            .filter(|a| a.permission == permission::DENY && (a.operation == operation || a.operation == op::ALL))
            .filter(|a| a.applies_to(&who, host))
            .collect();
        of_type.iter().filter(|a| a.permission == permission::ALLOW && allow_implies(a.operation, operation)).any(
            |allow| {
                allow.applies_to(&who, host)
                    && !denies.iter().any(|d| match d.pattern_type {
                        pattern::LITERAL => {
                            d.resource_name == WILDCARD
                                || (allow.pattern_type == pattern::LITERAL && d.resource_name == allow.resource_name)
                        }
                        pattern::PREFIXED => allow.resource_name.starts_with(&d.resource_name),
                        _ => false,
                    })
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(rt: i8, name: &str, pt: i8, who: &str, operation: i8, perm: i8) -> AclBinding {
        AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pt,
            principal: who.into(),
            host: "*".into(),
            operation,
            permission: perm,
        }
    }

    fn set(acls: Vec<AclBinding>) -> AclSet {
        AclSet { by_id: acls.into_iter().map(|a| (Uuid::new_v4(), a)).collect() }
    }

    #[test]
    fn deny_wins_prefixes_match_and_read_implies_describe() {
        let a = Authorizer { enabled: true, super_users: vec!["User:root".into()], allow_if_no_acl: false };
        let acls = set(vec![
            acl(resource::TOPIC, "orders-", pattern::PREFIXED, "User:alice", op::WRITE, permission::ALLOW),
            acl(resource::TOPIC, "orders-secret", pattern::LITERAL, "User:alice", op::ALL, permission::DENY),
            acl(resource::TOPIC, "logs", pattern::LITERAL, "User:*", op::READ, permission::ALLOW),
        ]);
        let alice = Principal::user("alice");
        let check = |p: &Principal, o: i8, t: &str| a.authorize(&acls, p, "10.0.0.1", o, resource::TOPIC, t);
        assert!(check(&alice, op::WRITE, "orders-eu"));
        assert!(check(&alice, op::DESCRIBE, "orders-eu"), "WRITE implies DESCRIBE");
        assert!(!check(&alice, op::READ, "orders-eu"));
        assert!(!check(&alice, op::WRITE, "orders-secret"), "deny wins");
        assert!(check(&Principal::user("bob"), op::READ, "logs"), "User:* matches everybody");
        assert!(!check(&Principal::user("bob"), op::WRITE, "logs"));
        assert!(!check(&alice, op::READ, "unknown"), "no ACL: closed by default");
        assert!(check(&Principal::user("root"), op::DELETE, "orders-secret"), "super user");
        let open = Authorizer { allow_if_no_acl: true, ..a.clone() };
        assert!(open.authorize(&acls, &alice, "h", op::READ, resource::TOPIC, "unknown"));
        assert!(!open.authorize(&acls, &Principal::user("bob"), "h", op::WRITE, resource::TOPIC, "logs"), "has ACLs");
    }

    #[test]
    fn filters_match_like_describe_acls() {
        let b = acl(resource::TOPIC, "orders-", pattern::PREFIXED, "User:alice", op::WRITE, permission::ALLOW);
        let any = AclFilter {
            resource_type: resource::ANY,
            resource_name: None,
            pattern_type: pattern::ANY,
            principal: None,
            host: None,
            operation: op::ANY,
            permission: permission::ANY,
        };
        assert!(any.matches(&b));
        let by_match =
            AclFilter { pattern_type: pattern::MATCH, resource_name: Some("orders-eu".into()), ..any.clone() };
        assert!(by_match.matches(&b));
        let literal = AclFilter { pattern_type: pattern::LITERAL, ..any.clone() };
        assert!(!literal.matches(&b));
        let other_user = AclFilter { principal: Some("User:bob".into()), ..any };
        assert!(!other_user.matches(&b));
        assert!(b.validate().is_ok());
        assert!(AclBinding { resource_name: "x".into(), resource_type: resource::CLUSTER, ..b.clone() }
            .validate()
            .is_err());
        assert!(AclBinding { principal: "alice".into(), ..b }.validate().is_err());
    }
}
