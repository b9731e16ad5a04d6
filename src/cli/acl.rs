//! `weir acl`: CreateAcls, DescribeAcls, DeleteAcls in kafka-acls.sh's vocabulary.

use clap::{Args, Subcommand};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::StrBytes;
use serde_json::{json, Value};

use super::output::{Outcome, Table};
use crate::client::{Client, ClientError};
use crate::security::acl::{op, pattern, resource, CLUSTER_NAME};

pub const EXAMPLES: &str = "Examples:
  weir acl create --allow-principal User:alice --operation Read --operation Describe --topic orders
  weir acl create --allow-principal User:billing --operation Read --group billing- --prefixed
  weir acl create --deny-principal User:mallory --operation All --cluster
  weir acl list --topic orders
  weir acl delete --allow-principal User:alice --topic orders";

const OPERATIONS: &[(&str, i8)] = &[
    ("Any", op::ANY),
    ("All", op::ALL),
    ("Read", op::READ),
    ("Write", op::WRITE),
    ("Create", op::CREATE),
    ("Delete", op::DELETE),
    ("Alter", op::ALTER),
    ("Describe", op::DESCRIBE),
    ("ClusterAction", op::CLUSTER_ACTION),
    ("DescribeConfigs", op::DESCRIBE_CONFIGS),
    ("AlterConfigs", op::ALTER_CONFIGS),
    ("IdempotentWrite", op::IDEMPOTENT_WRITE),
    ("CreateTokens", op::CREATE_TOKENS),
    ("DescribeTokens", op::DESCRIBE_TOKENS),
    ("TwoPhaseCommit", op::TWO_PHASE_COMMIT),
];

const RESOURCES: &[(&str, i8)] = &[
    ("Any", resource::ANY),
    ("Topic", resource::TOPIC),
    ("Group", resource::GROUP),
    ("Cluster", resource::CLUSTER),
    ("TransactionalId", resource::TRANSACTIONAL_ID),
    ("DelegationToken", resource::DELEGATION_TOKEN),
    ("User", resource::USER),
];

const PATTERNS: &[(&str, i8)] =
    &[("Any", pattern::ANY), ("Match", pattern::MATCH), ("Literal", pattern::LITERAL), ("Prefixed", pattern::PREFIXED)];

fn name_of(table: &[(&'static str, i8)], code: i8) -> String {
    table.iter().find(|(_, c)| *c == code).map_or_else(|| format!("Unknown({code})"), |(n, _)| n.to_string())
}

fn code_of(table: &[(&str, i8)], name: &str, what: &str) -> Result<i8, ClientError> {
    let wanted: String = name.chars().filter(|c| *c != '_' && *c != '-').collect();
    table.iter().find(|(n, _)| n.eq_ignore_ascii_case(&wanted)).map(|(_, c)| *c).ok_or_else(|| {
        let names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
        ClientError::Config(format!("unknown {what} '{name}' (one of {})", names.join(", ")))
    })
}

/// The resource and principals an ACL command is about.
#[derive(Args, Debug)]
pub struct AclArgs {
    /// Principal to allow, e.g. User:alice (repeatable).
    #[arg(long = "allow-principal", value_name = "PRINCIPAL")]
    allow: Vec<String>,
    /// Principal to deny (repeatable).
    #[arg(long = "deny-principal", value_name = "PRINCIPAL")]
    deny: Vec<String>,
    /// Host the allow applies to (create: default `*`; list/delete: any host unless given).
    #[arg(long = "allow-host")]
    allow_host: Option<String>,
    /// Host the deny applies to.
    #[arg(long = "deny-host")]
    deny_host: Option<String>,
    /// Operation (repeatable): All, Read, Write, Create, Delete, Alter, Describe, ClusterAction,
    /// DescribeConfigs, AlterConfigs, IdempotentWrite, CreateTokens, DescribeTokens.
    #[arg(long = "operation", value_name = "OP")]
    operations: Vec<String>,
    /// A topic (`*` for all).
    #[arg(long, group = "resource")]
    topic: Option<String>,
    /// A consumer group (`*` for all).
    #[arg(long, group = "resource")]
    group: Option<String>,
    /// The cluster.
    #[arg(long, group = "resource")]
    cluster: bool,
    /// A transactional id (`*` for all).
    #[arg(long = "transactional-id", group = "resource")]
    transactional_id: Option<String>,
    /// The name is a prefix (resource pattern type PREFIXED).
    #[arg(long)]
    prefixed: bool,
    /// Resource pattern type: literal, prefixed; for list and delete also any and match.
    #[arg(long = "resource-pattern-type", conflicts_with = "prefixed")]
    pattern_type: Option<String>,
}

impl AclArgs {
    fn resource(&self) -> Option<(i8, String)> {
        if let Some(t) = &self.topic {
            Some((resource::TOPIC, t.clone()))
        } else if let Some(g) = &self.group {
            Some((resource::GROUP, g.clone()))
        } else if self.cluster {
            Some((resource::CLUSTER, CLUSTER_NAME.to_string()))
        } else {
            self.transactional_id.as_ref().map(|t| (resource::TRANSACTIONAL_ID, t.clone()))
        }
    }

    fn pattern(&self, default: i8) -> Result<i8, ClientError> {
        match (&self.pattern_type, self.prefixed) {
            (Some(p), _) => code_of(PATTERNS, p, "resource pattern type"),
            (None, true) => Ok(pattern::PREFIXED),
            (None, false) => Ok(default),
        }
    }

    fn operations(&self, default: i8) -> Result<Vec<i8>, ClientError> {
        if self.operations.is_empty() {
            return Ok(vec![default]);
        }
        self.operations.iter().map(|o| code_of(OPERATIONS, o, "operation")).collect()
    }

    /// (principal, host, permission) for each --allow/--deny principal.
    fn principals(&self) -> Vec<(Option<String>, Option<String>, i8)> {
        let allow = self.allow.iter().map(|p| (Some(p.clone()), self.allow_host.clone(), 3));
        let deny = self.deny.iter().map(|p| (Some(p.clone()), self.deny_host.clone(), 2));
        allow.chain(deny).collect()
    }

    /// Filters for list/delete: any principal and host unless given.
    fn filters(&self) -> Result<Vec<DeleteAclsFilter>, ClientError> {
        let (rtype, rname) = self.resource().map_or((resource::ANY, None), |(t, n)| (t, Some(n)));
        let pattern = self.pattern(if rname.is_some() { pattern::LITERAL } else { pattern::ANY })?;
        let mut who = self.principals();
        if who.is_empty() {
            who.push((None, None, 1));
        }
        let mut out = Vec::new();
        for o in self.operations(op::ANY)? {
            for (principal, host, permission) in &who {
                out.push(
                    DeleteAclsFilter::default()
                        .with_resource_type_filter(rtype)
                        .with_resource_name_filter(rname.clone().map(StrBytes::from_string))
                        .with_pattern_type_filter(pattern)
                        .with_principal_filter(principal.clone().map(StrBytes::from_string))
                        .with_host_filter(host.clone().map(StrBytes::from_string))
                        .with_operation(o)
                        .with_permission_type(*permission),
                );
            }
        }
        Ok(out)
    }
}

#[derive(Subcommand, Debug)]
pub enum AclCommand {
    /// Create ACLs: each principal × each operation on the resource.
    #[command(
        after_help = "Examples:\n  weir acl create --allow-principal User:alice --operation Read --topic orders\n  \
                            weir acl create --allow-principal User:app --operation Write --operation Describe --topic app- --prefixed"
    )]
    Create(AclArgs),
    /// List ACLs matching the filter (all without one).
    #[command(
        after_help = "Examples:\n  weir acl list\n  weir acl list --topic orders\n  weir acl list --allow-principal User:alice --format json"
    )]
    List(AclArgs),
    /// Delete ACLs matching the filter (a resource or a principal is required).
    #[command(after_help = "Examples:\n  weir acl delete --allow-principal User:alice --topic orders\n  \
                            weir acl delete --topic orders --operation Read")]
    Delete(AclArgs),
}

pub async fn run(client: &mut Client, cmd: AclCommand) -> Result<Outcome, ClientError> {
    match cmd {
        AclCommand::Create(args) => create(client, &args).await,
        AclCommand::List(args) => list(client, &args).await,
        AclCommand::Delete(args) => delete(client, &args).await,
    }
}

struct Binding {
    resource_type: i8,
    resource_name: String,
    pattern: i8,
    principal: String,
    host: String,
    operation: i8,
    permission: i8,
}

fn render(bindings: &[Binding]) -> (Value, String) {
    let mut table = Table::new(&["PRINCIPAL", "PERMISSION", "OPERATION", "RESOURCE", "NAME", "PATTERN", "HOST"]);
    let mut json = Vec::new();
    for b in bindings {
        let permission = if b.permission == 3 {
            "Allow"
        } else if b.permission == 2 {
            "Deny"
        } else {
            "Unknown"
        };
        table.row(vec![
            b.principal.clone(),
            permission.to_string(),
            name_of(OPERATIONS, b.operation),
            name_of(RESOURCES, b.resource_type),
            b.resource_name.clone(),
            name_of(PATTERNS, b.pattern),
            b.host.clone(),
        ]);
        json.push(json!({
            "principal": b.principal, "permission": permission, "operation": name_of(OPERATIONS, b.operation),
            "resource_type": name_of(RESOURCES, b.resource_type), "resource_name": b.resource_name,
            "pattern_type": name_of(PATTERNS, b.pattern), "host": b.host,
        }));
    }
    (Value::Array(json), table.render())
}

async fn create(client: &mut Client, args: &AclArgs) -> Result<Outcome, ClientError> {
    let (rtype, rname) = args.resource().ok_or_else(|| {
        ClientError::Config("name a resource: --topic, --group, --cluster or --transactional-id".into())
    })?;
    let who = args.principals();
    if who.is_empty() || args.operations.is_empty() {
        return Err(ClientError::Config(
            "give --allow-principal or --deny-principal and at least one --operation".into(),
        ));
    }
    let pattern = args.pattern(pattern::LITERAL)?;
    let mut bindings = Vec::new();
    for o in args.operations(op::ALL)? {
        for (principal, host, permission) in &who {
            bindings.push(Binding {
                resource_type: rtype,
                resource_name: rname.clone(),
                pattern,
                principal: principal.clone().unwrap_or_default(),
                host: host.clone().unwrap_or_else(|| "*".into()),
                operation: o,
                permission: *permission,
            });
        }
    }
    let creations = bindings
        .iter()
        .map(|b| {
            AclCreation::default()
                .with_resource_type(b.resource_type)
                .with_resource_name(StrBytes::from_string(b.resource_name.clone()))
                .with_resource_pattern_type(b.pattern)
                .with_principal(StrBytes::from_string(b.principal.clone()))
                .with_host(StrBytes::from_string(b.host.clone()))
                .with_operation(b.operation)
                .with_permission_type(b.permission)
        })
        .collect();
    let req = CreateAclsRequest::default().with_creations(creations);
    let resp = client.controller_call(&req, |r| r.results.iter().map(|x| x.error_code).collect()).await?;
    for r in &resp.results {
        ClientError::check(|| "creating ACLs".into(), r.error_code, r.error_message.as_deref())?;
    }
    let (json, table) = render(&bindings);
    Ok(Outcome::new(json!({"created": json}), format!("created {} ACLs\n{table}", bindings.len())))
}

async fn list(client: &mut Client, args: &AclArgs) -> Result<Outcome, ClientError> {
    let mut bindings = Vec::new();
    for f in args.filters()? {
        let req = DescribeAclsRequest::default()
            .with_resource_type_filter(f.resource_type_filter)
            .with_resource_name_filter(f.resource_name_filter)
            .with_pattern_type_filter(f.pattern_type_filter)
            .with_principal_filter(f.principal_filter)
            .with_host_filter(f.host_filter)
            .with_operation(f.operation)
            .with_permission_type(f.permission_type);
        let resp = client.send(&req).await?;
        ClientError::check(|| "listing ACLs".into(), resp.error_code, resp.error_message.as_deref())?;
        for r in resp.resources {
            for a in r.acls {
                bindings.push(Binding {
                    resource_type: r.resource_type,
                    resource_name: r.resource_name.to_string(),
                    pattern: r.pattern_type,
                    principal: a.principal.to_string(),
                    host: a.host.to_string(),
                    operation: a.operation,
                    permission: a.permission_type,
                });
            }
        }
    }
    let (json, table) = render(&bindings);
    Ok(Outcome::new(json, table))
}

async fn delete(client: &mut Client, args: &AclArgs) -> Result<Outcome, ClientError> {
    if args.resource().is_none() && args.principals().is_empty() {
        return Err(ClientError::Config("name a resource or a principal to delete ACLs of".into()));
    }
    let req = DeleteAclsRequest::default().with_filters(args.filters()?);
    let resp = client.controller_call(&req, |r| r.filter_results.iter().map(|x| x.error_code).collect()).await?;
    let mut bindings = Vec::new();
    for f in resp.filter_results {
        ClientError::check(|| "deleting ACLs".into(), f.error_code, f.error_message.as_deref())?;
        for m in f.matching_acls {
            ClientError::check(|| "deleting an ACL".into(), m.error_code, m.error_message.as_deref())?;
            bindings.push(Binding {
                resource_type: m.resource_type,
                resource_name: m.resource_name.to_string(),
                pattern: m.pattern_type,
                principal: m.principal.to_string(),
                host: m.host.to_string(),
                operation: m.operation,
                permission: m.permission_type,
            });
        }
    }
    let (json, table) = render(&bindings);
    Ok(Outcome::new(json!({"deleted": json}), format!("deleted {} ACLs\n{table}", bindings.len())))
}
