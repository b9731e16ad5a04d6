//! DescribeConfigs and IncrementalAlterConfigs, shared by `topic` and `cluster config`.

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::{DescribeConfigsRequest, IncrementalAlterConfigsRequest};
use kafka_protocol::protocol::StrBytes;
use serde_json::{json, Value};

use super::output::Table;
use crate::client::{Client, ClientError};

pub const TOPIC: i8 = 2;
pub const BROKER: i8 = 4;

/// One config as described.
pub struct Entry {
    pub name: String,
    pub value: Option<String>,
    pub source: i8,
    pub read_only: bool,
    pub sensitive: bool,
}

/// Kafka's names for DescribeConfigs' `config_source`.
pub fn source_name(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

/// The short form a table shows: default, static, dynamic (and whose).
fn source_short(source: i8) -> &'static str {
    match source {
        1 => "dynamic (topic)",
        2 => "dynamic (broker)",
        3 => "dynamic (cluster default)",
        4 => "static",
        5 => "default",
        6 => "dynamic (logger)",
        _ => "other",
    }
}

/// Describes one resource's configs (all of them when `names` is empty).
pub async fn describe(
    client: &mut Client,
    resource_type: i8,
    name: &str,
    names: &[String],
    to: Option<i32>,
) -> Result<Vec<Entry>, ClientError> {
    let keys = (!names.is_empty()).then(|| names.iter().map(|n| StrBytes::from_string(n.clone())).collect());
    let resource = DescribeConfigsResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(StrBytes::from_string(name.to_string()))
        .with_configuration_keys(keys);
    let req = DescribeConfigsRequest::default().with_resources(vec![resource]);
    let resp = match to {
        Some(id) => client.send_to(id, &req).await?,
        None => client.send(&req).await?,
    };
    let result =
        resp.results.into_iter().next().ok_or_else(|| ClientError::Protocol("empty DescribeConfigs".into()))?;
    let what = if resource_type == TOPIC { format!("topic '{name}'") } else { format!("broker '{name}'") };
    ClientError::check(|| what, result.error_code, result.error_message.as_deref())?;
    let mut entries: Vec<Entry> = result
        .configs
        .into_iter()
        .map(|c| Entry {
            name: c.name.to_string(),
            value: c.value.map(|v| v.to_string()),
            source: c.config_source,
            read_only: c.read_only,
            sensitive: c.is_sensitive,
        })
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

pub fn entries_json(entries: &[Entry]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|e| {
                json!({
                    "name": e.name,
                    "value": if e.sensitive { None } else { e.value.clone() },
                    "source": source_name(e.source),
                    "read_only": e.read_only,
                    "sensitive": e.sensitive,
                })
            })
            .collect(),
    )
}

pub fn entries_table(entries: &[Entry]) -> String {
    let mut t = Table::new(&["KEY", "VALUE", "SOURCE"]);
    for e in entries {
        let value = if e.sensitive { "(sensitive)".to_string() } else { e.value.clone().unwrap_or_default() };
        t.row(vec![e.name.clone(), value, source_short(e.source).to_string()]);
    }
    t.render()
}

/// Sets and deletes configs of one resource with IncrementalAlterConfigs.
pub async fn alter(
    client: &mut Client,
    resource_type: i8,
    name: &str,
    set: &[(String, String)],
    delete: &[String],
    to: Option<i32>,
) -> Result<(), ClientError> {
    if set.is_empty() && delete.is_empty() {
        return Err(ClientError::Config("nothing to change: give --set KEY=VALUE or --delete KEY".into()));
    }
    let mut configs: Vec<AlterableConfig> = set
        .iter()
        .map(|(k, v)| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(k.clone()))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_string(v.clone())))
        })
        .collect();
    configs.extend(
        delete
            .iter()
            .map(|k| AlterableConfig::default().with_name(StrBytes::from_string(k.clone())).with_config_operation(1)),
    );
    let resource = AlterConfigsResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(StrBytes::from_string(name.to_string()))
        .with_configs(configs);
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![resource]);
    let resp = match to {
        Some(id) => client.send_to(id, &req).await?,
        None => client.controller_call(&req, |r| r.responses.iter().map(|x| x.error_code).collect()).await?,
    };
    for r in resp.responses {
        let what = if resource_type == TOPIC { format!("topic '{name}'") } else { format!("broker config '{name}'") };
        ClientError::check(|| what, r.error_code, r.error_message.as_deref())?;
    }
    Ok(())
}
