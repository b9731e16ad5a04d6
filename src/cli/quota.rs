//! `weir quota`: DescribeClientQuotas and AlterClientQuotas (kafka-configs.sh's
//! `--entity-type users|clients|ips`).

use clap::{Args, Subcommand};
use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::{AlterClientQuotasRequest, DescribeClientQuotasRequest};
use kafka_protocol::protocol::StrBytes;
use serde_json::{json, Value};

use super::key_values;
use super::output::{Outcome, Table};
use crate::client::{Client, ClientError};

pub const EXAMPLES: &str = "Examples:
  weir quota describe
  weir quota describe --user alice
  weir quota alter --user alice --set producer_byte_rate=1048576 --set consumer_byte_rate=2097152
  weir quota alter --default-client-id --set request_percentage=50
  weir quota alter --user alice --delete producer_byte_rate";

/// Which entity: a user, a client id, an IP, or their defaults (combinable as in Kafka).
#[derive(Args, Debug)]
pub struct Entity {
    #[arg(long)]
    user: Option<String>,
    /// The default for users without their own quota.
    #[arg(long, conflicts_with = "user")]
    default_user: bool,
    #[arg(long)]
    client_id: Option<String>,
    /// The default for client ids without their own quota.
    #[arg(long, conflicts_with = "client_id")]
    default_client_id: bool,
    #[arg(long)]
    ip: Option<String>,
    /// The default for IPs without their own quota.
    #[arg(long, conflicts_with = "ip")]
    default_ip: bool,
}

impl Entity {
    /// (entity type, name; None for the default).
    fn parts(&self) -> Vec<(&'static str, Option<String>)> {
        let mut out = Vec::new();
        let mut add = |kind: &'static str, name: &Option<String>, default: bool| {
            if let Some(n) = name {
                out.push((kind, Some(n.clone())));
            } else if default {
                out.push((kind, None));
            }
        };
        add("user", &self.user, self.default_user);
        add("client-id", &self.client_id, self.default_client_id);
        add("ip", &self.ip, self.default_ip);
        out
    }
}

#[derive(Subcommand, Debug)]
pub enum QuotaCommand {
    /// Quotas of the entity given, or all.
    #[command(after_help = "Examples:\n  weir quota describe\n  weir quota describe --user alice --client-id app")]
    Describe {
        #[command(flatten)]
        entity: Entity,
    },
    /// Set or remove quotas: producer_byte_rate, consumer_byte_rate, request_percentage,
    /// controller_mutation_rate, connection_creation_rate.
    #[command(after_help = "Examples:\n  weir quota alter --user alice --set producer_byte_rate=1048576\n  \
                            weir quota alter --ip 10.0.0.5 --set connection_creation_rate=10\n  \
                            weir quota alter --user alice --delete producer_byte_rate")]
    Alter {
        #[command(flatten)]
        entity: Entity,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
}

fn entity_label(parts: &[(String, Option<String>)]) -> String {
    parts
        .iter()
        .map(|(k, n)| format!("{k}={}", n.clone().unwrap_or_else(|| "<default>".into())))
        .collect::<Vec<_>>()
        .join(",")
}

pub async fn run(client: &mut Client, cmd: QuotaCommand) -> Result<Outcome, ClientError> {
    match cmd {
        QuotaCommand::Describe { entity } => {
            let components = entity
                .parts()
                .into_iter()
                .map(|(kind, name)| {
                    let c = ComponentData::default().with_entity_type(StrBytes::from_static_str(kind));
                    match name {
                        Some(n) => c.with_match_type(0).with_match(Some(StrBytes::from_string(n))),
                        None => c.with_match_type(1),
                    }
                })
                .collect();
            let resp = client.send(&DescribeClientQuotasRequest::default().with_components(components)).await?;
            ClientError::check(|| "describing quotas".into(), resp.error_code, resp.error_message.as_deref())?;
            let mut rows = Vec::new();
            for e in resp.entries.unwrap_or_default() {
                let parts: Vec<(String, Option<String>)> = e
                    .entity
                    .iter()
                    .map(|d| (d.entity_type.to_string(), d.entity_name.as_ref().map(|n| n.to_string())))
                    .collect();
                let mut values: Vec<(String, f64)> = e.values.iter().map(|v| (v.key.to_string(), v.value)).collect();
                values.sort_by(|a, b| a.0.cmp(&b.0));
                rows.push((parts, values));
            }
            rows.sort_by_key(|a| entity_label(&a.0));
            let mut table = Table::new(&["ENTITY", "QUOTA", "VALUE"]);
            let mut json = Vec::new();
            for (parts, values) in rows {
                for (k, v) in &values {
                    table.row(vec![entity_label(&parts), k.clone(), v.to_string()]);
                }
                let entity: serde_json::Map<String, Value> = parts.iter().map(|(k, n)| (k.clone(), json!(n))).collect();
                let quotas: serde_json::Map<String, Value> =
                    values.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
                json.push(json!({"entity": entity, "quotas": quotas}));
            }
            Ok(Outcome::new(Value::Array(json), table.render()))
        }
        QuotaCommand::Alter { entity, set, delete } => {
            let parts = entity.parts();
            if parts.is_empty() {
                return Err(ClientError::Config(
                    "name an entity: --user, --client-id, --ip or their --default-* forms".into(),
                ));
            }
            let set = key_values(&set, "--set")?;
            if set.is_empty() && delete.is_empty() {
                return Err(ClientError::Config("nothing to change: give --set KEY=VALUE or --delete KEY".into()));
            }
            let mut ops = Vec::new();
            for (k, v) in &set {
                let value: f64 = v.parse().map_err(|_| ClientError::Config(format!("{k}: '{v}' is not a number")))?;
                ops.push(OpData::default().with_key(StrBytes::from_string(k.clone())).with_value(value));
            }
            ops.extend(
                delete.iter().map(|k| OpData::default().with_key(StrBytes::from_string(k.clone())).with_remove(true)),
            );
            let entity_data = parts
                .iter()
                .map(|(kind, name)| {
                    EntityData::default()
                        .with_entity_type(StrBytes::from_static_str(kind))
                        .with_entity_name(name.clone().map(StrBytes::from_string))
                })
                .collect();
            let req = AlterClientQuotasRequest::default()
                .with_entries(vec![EntryData::default().with_entity(entity_data).with_ops(ops)]);
            let resp = client.controller_call(&req, |r| r.entries.iter().map(|e| e.error_code).collect()).await?;
            let label = entity_label(&parts.iter().map(|(k, n)| (k.to_string(), n.clone())).collect::<Vec<_>>());
            for e in resp.entries {
                ClientError::check(|| format!("quotas of {label}"), e.error_code, e.error_message.as_deref())?;
            }
            let json = json!({"entity": label, "set": set.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(), "deleted": delete});
            Ok(Outcome::new(json, format!("altered quotas of {label}\n")))
        }
    }
}
