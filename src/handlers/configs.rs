//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics and the broker.
//! Everything reported comes from the config table in `config.rs`.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResult;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{str_bytes, RequestContext};
use crate::broker::links::REPLICA_FETCH_FAILURES;
use crate::broker::{AdminError, Broker};
use crate::config::{self, BrokerConfig, ConfigDef, ConfigError, ConfigSource, ConfigType, UpdateMode};
use crate::logging;
use crate::security::acl::{op, resource};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const BROKER_LOGGER: i8 = 8;
const CLIENT_METRICS: i8 = 16;
const GROUP: i8 = 32;
/// DescribeConfigs' source for a client metrics subscription's config.
const CLIENT_METRICS_CONFIG: i8 = 7;
/// DescribeConfigs' source for a logger's level.
const DYNAMIC_BROKER_LOGGER: i8 = 6;

/// One described config: its value, where it came from, and the layers beneath it.
pub struct ConfigEntry {
    pub name: &'static str,
    pub value: String,
    pub source: ConfigSource,
    pub def: &'static ConfigDef,
    pub synonyms: Vec<(&'static str, String, i8)>,
}

/// The broker layers of `key` and of Kafka's coarser synonyms of it (`log.retention.hours`
/// for `log.retention.ms`): dynamic and static where set, then the default.
fn broker_layers(cfg: &BrokerConfig, key: &'static str) -> Vec<(&'static str, String, i8)> {
    let mut out = Vec::new();
    let names = std::iter::once(key).chain(config::time_synonyms(key).iter().map(|(n, _)| *n));
    for name in names {
        let Some(def) = config::broker_def(name) else { continue };
        for (v, source) in cfg.set_layers(def.name) {
            out.push((def.name, v, source as i8));
        }
    }
    if let Some(def) = config::broker_def(key).filter(|d| !d.unset_by_default()) {
        out.push((key, def.default.to_string(), ConfigSource::Default as i8));
    }
    out
}

/// Every topic config with its effective value given the topic's overrides.
pub fn topic_config_entries(cfg: &BrokerConfig, overrides: &BTreeMap<String, String>) -> Vec<ConfigEntry> {
    config::topic_defs()
        .iter()
        .filter_map(|&def| {
            let (value, source) = config::topic_value(cfg, overrides, def.name)?;
            let mut synonyms = Vec::new();
            if let Some(v) = overrides.get(def.name) {
                synonyms.push((def.name, v.clone(), ConfigSource::DynamicTopic as i8));
            }
            if let Some(broker_key) = def.broker_synonym {
                synonyms.extend(broker_layers(cfg, broker_key));
            }
            Some(ConfigEntry { name: def.name, value, source, def, synonyms })
        })
        .collect()
}

/// Every group config with its effective value given the group's overrides.
fn group_config_entries(cfg: &BrokerConfig, overrides: &BTreeMap<String, String>) -> Vec<ConfigEntry> {
    config::GROUP_CONFIGS
        .iter()
        .map(|def| {
            let (value, own) = config::group_value(cfg, overrides, def);
            let source = if own { ConfigSource::Group } else { ConfigSource::Default };
            let synonyms = vec![(def.name, value.clone(), source as i8)];
            ConfigEntry { name: def.name, value, source, def, synonyms }
        })
        .collect()
}

/// A broker config as the cluster-default resource shows it: the value set cluster-wide, with
/// that level's synonyms only; nothing when it is not set at that level.
fn cluster_default_entry(mut e: ConfigEntry) -> Option<ConfigEntry> {
    let level = ConfigSource::DynamicDefaultBroker;
    e.synonyms.retain(|s| s.2 == level as i8);
    let (_, value, _) = e.synonyms.iter().find(|s| s.0 == e.name)?;
    e.value = value.clone();
    e.source = level;
    Some(e)
}

fn broker_config_entries(cfg: &BrokerConfig) -> Vec<ConfigEntry> {
    config::broker_defs()
        .iter()
        .filter_map(|&def| {
            let (value, source) = cfg.lookup(def.name)?;
            Some(ConfigEntry { name: def.name, value, source, def, synonyms: broker_layers(cfg, def.name) })
        })
        .collect()
}

fn describe_entry(
    e: ConfigEntry,
    read_only: bool,
    req: &DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResourceResult {
    // Sensitive values (keys, passwords) are never returned, as in Kafka; neither is a value
    // for a key Kafka leaves unset by default.
    let sensitive = e.def.sensitive();
    let shown = |v: String| (!sensitive).then(|| str_bytes(v));
    let unset = e.source == ConfigSource::Default && e.def.unset_by_default();
    let mut r = DescribeConfigsResourceResult::default()
        .with_name(str_bytes(e.name))
        .with_value(if unset { None } else { shown(e.value) })
        .with_read_only(read_only)
        .with_config_source(e.source as i8)
        .with_is_sensitive(sensitive);
    if req.include_synonyms {
        r.synonyms = e
            .synonyms
            .into_iter()
            .map(|(n, v, s)| {
                DescribeConfigsSynonym::default().with_name(str_bytes(n)).with_value(shown(v)).with_source(s)
            })
            .collect();
    }
    if version >= 3 {
        r.config_type = e.def.kind as i8;
        if req.include_documentation {
            r.documentation = Some(str_bytes(documentation(e.def)));
        }
    }
    r
}

/// Weir's doc line for a key it implements; for the rest of Kafka's catalogue, what Weir does
/// with it (Kafka's own prose is in Kafka's documentation).
fn documentation(def: &ConfigDef) -> String {
    if def.implemented {
        return def.doc.to_string();
    }
    format!(
        "Apache Kafka {} config; Weir accepts, validates and stores it, and it has no effect in Weir.",
        config::catalogue::kafka_version()
    )
}

/// Checks a broker resource name: this broker's id, or empty for the cluster default.
fn check_broker_name(broker: &Broker, name: &str) -> Result<bool, AdminError> {
    if name.is_empty() {
        return Ok(true);
    }
    if name == broker.node_id.to_string() {
        return Ok(false);
    }
    Err(AdminError::InvalidRequest(format!(
        "Unexpected broker id, expected {} or empty string, but received {name}",
        broker.node_id
    )))
}

/// Whether the client may perform `operation` (DESCRIBE_CONFIGS or ALTER_CONFIGS) on a config
/// resource: the topic, or the cluster for broker resources.
fn check_access(ctx: &RequestContext, resource_type: i8, name: &str, operation: i8) -> Result<(), AdminError> {
    match resource_type {
        TOPIC if !ctx.authorized(operation, resource::TOPIC, name) => Err(AdminError::TopicAuthorizationFailed),
        GROUP if !ctx.authorized(operation, resource::GROUP, name) => Err(AdminError::GroupAuthorizationFailed),
        BROKER | BROKER_LOGGER | CLIENT_METRICS if !ctx.cluster_authorized(operation) => {
            Err(AdminError::ClusterAuthorizationFailed)
        }
        _ => Ok(()),
    }
}

pub async fn describe(ctx: &RequestContext, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let broker = &ctx.broker;
    let cfg = broker.config();
    let mut results = Vec::with_capacity(req.resources.len());
    for res in &req.resources {
        let name = res.resource_name.to_string();
        let allowed = check_access(ctx, res.resource_type, &name, op::DESCRIBE_CONFIGS);
        if res.resource_type == BROKER_LOGGER {
            let keys = res.configuration_keys.as_deref();
            results.push(describe_loggers(broker, &name, allowed, keys, res.resource_name.clone()));
            continue;
        }
        if res.resource_type == CLIENT_METRICS {
            let keys = res.configuration_keys.as_deref();
            results.push(describe_client_metrics(broker, &name, allowed, keys, res.resource_name.clone()));
            continue;
        }
        let entries: Result<Vec<(ConfigEntry, bool)>, AdminError> = match res.resource_type {
            _ if allowed.is_err() => allowed.map(|_| Vec::new()),
            TOPIC => match broker.topic(&name) {
                Some(t) => Ok(topic_config_entries(&cfg, &t.configs).into_iter().map(|e| (e, false)).collect()),
                None => Err(AdminError::UnknownTopic),
            },
            GROUP if name.is_empty() => Err(AdminError::InvalidRequest("Group name must not be empty".into())),
            GROUP => {
                Ok(group_config_entries(&cfg, &broker.group_configs(&name)).into_iter().map(|e| (e, false)).collect())
            }
            // the cluster default (name "") lists only what is set at that level, as Kafka does
            BROKER => check_broker_name(broker, &name).map(|cluster_default| {
                broker_config_entries(&cfg)
                    .into_iter()
                    .filter_map(|e| if cluster_default { cluster_default_entry(e) } else { Some(e) })
                    .map(|e| {
                        let read_only = !e.def.dynamic();
                        (e, read_only)
                    })
                    .collect()
            }),
            other => Err(AdminError::InvalidRequest(format!("Unsupported resource type {other}"))),
        };
        let keys: Option<Vec<&str>> = res.configuration_keys.as_ref().map(|k| k.iter().map(StrBytes::as_str).collect());
        let mut result = DescribeConfigsResult::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        match entries {
            Ok(entries) => {
                result.configs = entries
                    .into_iter()
                    .filter(|(e, _)| keys.as_ref().is_none_or(|k| k.contains(&e.name)))
                    .map(|(e, ro)| describe_entry(e, ro, &req, ctx.version))
                    .collect();
                if res.resource_type == BROKER && !name.is_empty() {
                    result.configs.extend(broker_status_entries(broker, keys.as_deref()));
                }
            }
            Err(e) => {
                result.error_code = e.code();
                result.error_message = Some(str_bytes(e.to_string()));
            }
        }
        results.push(result);
    }
    DescribeConfigsResponse::default().with_results(results)
}

/// Weir's read-only status entries of a broker, returned only when asked for by name (see
/// [`REPLICA_FETCH_FAILURES`]).
fn broker_status_entries(broker: &Broker, keys: Option<&[&str]>) -> Option<DescribeConfigsResourceResult> {
    keys?.contains(&REPLICA_FETCH_FAILURES).then(|| {
        DescribeConfigsResourceResult::default()
            .with_name(str_bytes(REPLICA_FETCH_FAILURES))
            .with_value(Some(str_bytes(broker.links.fetch_errors.current_json())))
            .with_read_only(true)
            .with_config_source(ConfigSource::Default as i8)
            .with_config_type(ConfigType::String as i8)
    })
}

/// DescribeConfigs on `BROKER_LOGGER`: every logger and its level (see [`crate::logging`]).
fn describe_loggers(
    broker: &Broker,
    name: &str,
    allowed: Result<(), AdminError>,
    keys: Option<&[StrBytes]>,
    resource_name: StrBytes,
) -> DescribeConfigsResult {
    let checked = allowed.and_then(|()| match name {
        "" => Err(AdminError::InvalidRequest("Broker id must not be empty".into())),
        n if n != broker.node_id.to_string() => Err(AdminError::InvalidRequest(format!(
            "Unexpected broker id, expected {} but received {n}",
            broker.node_id
        ))),
        _ => Ok(()),
    });
    let result = DescribeConfigsResult::default().with_resource_type(BROKER_LOGGER).with_resource_name(resource_name);
    plain_entries(result, checked, keys, DYNAMIC_BROKER_LOGGER, logging::loggers)
}

/// DescribeConfigs on `CLIENT_METRICS`: a subscription's configs as set (none for an unknown
/// name), as Kafka describes them.
fn describe_client_metrics(
    broker: &Broker,
    name: &str,
    allowed: Result<(), AdminError>,
    keys: Option<&[StrBytes]>,
    resource_name: StrBytes,
) -> DescribeConfigsResult {
    let checked = allowed.and_then(|()| match name {
        "" => Err(AdminError::InvalidRequest("Client metrics subscription name must not be empty".into())),
        _ => Ok(()),
    });
    let result = DescribeConfigsResult::default().with_resource_type(CLIENT_METRICS).with_resource_name(resource_name);
    plain_entries(result, checked, keys, CLIENT_METRICS_CONFIG, || broker.telemetry.subscription_configs(name))
}

/// A result of bare name/value entries, all from one `source` (loggers, subscriptions), or the
/// error that stopped them.
fn plain_entries<E: IntoIterator<Item = (String, String)>>(
    result: DescribeConfigsResult,
    checked: Result<(), AdminError>,
    keys: Option<&[StrBytes]>,
    source: i8,
    entries: impl FnOnce() -> E,
) -> DescribeConfigsResult {
    if let Err(e) = checked {
        return result.with_error_code(e.code()).with_error_message(Some(str_bytes(e.to_string())));
    }
    let configs = entries()
        .into_iter()
        .filter(|(name, _)| keys.is_none_or(|k| k.iter().any(|k| k.as_str() == name)))
        .map(|(name, value)| {
            DescribeConfigsResourceResult::default()
                .with_name(str_bytes(name))
                .with_value(Some(str_bytes(value)))
                .with_config_source(source)
        })
        .collect();
    result.with_configs(configs)
}

/// Checks a `BROKER_LOGGER` resource name: this node's id (Kafka's `RuntimeLoggerManager`).
fn check_logger_node(broker: &Broker, name: &str) -> Result<(), AdminError> {
    let id: i32 = name
        .parse()
        .map_err(|_| AdminError::InvalidRequest(format!("Node id must be an integer, but it is: {name}")))?;
    if id != broker.node_id {
        return Err(AdminError::InvalidRequest(format!(
            "Unexpected node id. Expected {}, but received {id}",
            broker.node_id
        )));
    }
    Ok(())
}

/// IncrementalAlterConfigs on `BROKER_LOGGER`: every operation is validated (SET a known
/// logger to a log4j level, DELETE any but root; APPEND/SUBTRACT refused) before any applies.
fn alter_loggers(broker: &Broker, name: &str, ops: Vec<(String, Op)>, validate_only: bool) -> Result<(), AdminError> {
    check_logger_node(broker, name)?;
    let missing = |logger: &str| AdminError::InvalidConfig(format!("Logger {logger} does not exist!"));
    for (logger, op) in &ops {
        match op {
            Op::Set(level) if !logging::exists(logger) => return Err(missing(logger)),
            Op::Set(level) if !logging::VALID_LEVELS.contains(&level.as_str()) => {
                return Err(AdminError::InvalidConfig(format!(
                    "Cannot set the log level of {logger} to {level} as it is not a supported log level. Valid log \
                     levels are {}",
                    logging::VALID_LEVELS.join(", ")
                )))
            }
            Op::Set(_) => {}
            Op::Delete if !logging::exists(logger) => return Err(missing(logger)),
            Op::Delete if logger == logging::ROOT_LOGGER => {
                return Err(AdminError::InvalidRequest(format!(
                    "Removing the log level of the {} logger is not allowed",
                    logging::ROOT_LOGGER
                )))
            }
            Op::Delete => {}
            Op::Append(_) => {
                return Err(AdminError::InvalidRequest(
                    "APPEND operation is not allowed for the BROKER_LOGGER resource".into(),
                ))
            }
            Op::Subtract(_) => {
                return Err(AdminError::InvalidRequest(
                    "SUBTRACT operation is not allowed for the BROKER_LOGGER resource".into(),
                ))
            }
        }
    }
    if validate_only {
        return Ok(());
    }
    for (logger, op) in ops {
        match op {
            Op::Set(level) => {
                logging::set_level(&logger, &level);
                tracing::warn!("Updated the log level of {logger} to {level}");
            }
            _ => {
                logging::unset_level(&logger);
                tracing::warn!("Unset the log level of {logger}");
            }
        }
    }
    Ok(())
}

/// A requested change to one key.
enum Op {
    Set(String),
    Delete,
    Append(String),
    Subtract(String),
}

/// Refuses changes to read-only broker keys, and to per-broker keys at the cluster-default
/// level, with Kafka's messages (`DynamicBrokerConfig.validateConfigs`).
fn check_broker_modes(ops: &[(String, Op)], cluster_default: bool) -> Result<(), AdminError> {
    // Only keys being given a value count: removing an override is always allowed.
    let names = |mode: fn(&ConfigDef) -> bool| -> Vec<&str> {
        ops.iter()
            .filter(|(k, op)| !matches!(op, Op::Delete) && config::broker_def(k).is_some_and(mode))
            .map(|(k, _)| k.as_str())
            .collect()
    };
    let read_only = names(|d| d.mode == UpdateMode::ReadOnly);
    if !read_only.is_empty() {
        return Err(AdminError::InvalidRequest(format!(
            "Cannot update these configs dynamically: Set({})",
            read_only.join(", ")
        )));
    }
    let per_broker = names(|d| d.mode == UpdateMode::PerBroker);
    if cluster_default && !per_broker.is_empty() {
        return Err(AdminError::InvalidRequest(format!(
            "Cannot update these configs at default cluster level, broker id must be specified: Set({})",
            per_broker.join(", ")
        )));
    }
    Ok(())
}

/// The resource whose keys are being altered: which table names them and how Kafka words
/// its errors.
#[derive(Clone, Copy)]
enum Scope {
    Topic,
    Broker,
    ClientMetrics,
    Group,
}

impl Scope {
    fn lookup(self, key: &str) -> Option<&'static ConfigDef> {
        match self {
            Scope::Topic => config::topic_def(key),
            Scope::Broker => config::broker_def(key),
            Scope::ClientMetrics => config::client_metrics_def(key),
            Scope::Group => config::group_def(key),
        }
    }

    fn unknown(self, key: &str) -> AdminError {
        match self {
            Scope::Topic => AdminError::InvalidConfig(format!("Unknown topic config name: {key}")),
            Scope::Broker => AdminError::InvalidConfig(format!("Unknown config name: {key}")),
            Scope::ClientMetrics => AdminError::InvalidRequest(format!("Unknown client metrics configuration: {key}")),
            Scope::Group => AdminError::InvalidConfig(format!("Unknown group config name: {key}")),
        }
    }

    /// A value that fails its check: INVALID_CONFIG for topics; Kafka answers INVALID_REQUEST
    /// for broker values (KAFKA-13609) and for client metrics subscriptions.
    fn invalid(self, e: ConfigError) -> AdminError {
        match (self, AdminError::from(e)) {
            (Scope::Broker | Scope::ClientMetrics, AdminError::InvalidConfig(m)) => AdminError::InvalidRequest(m),
            (_, other) => other,
        }
    }
}

/// Applies operations to a resource's current overrides, validating the outcome.
fn apply_ops(
    current: &BTreeMap<String, String>,
    ops: Vec<(String, Op)>,
    scope: Scope,
) -> Result<BTreeMap<String, String>, AdminError> {
    let mut out = current.clone();
    let mut seen = std::collections::HashSet::new();
    for (key, op) in ops {
        if !seen.insert(key.clone()) {
            return Err(AdminError::InvalidRequest(format!("Error due to duplicate config keys: {key}")));
        }
        let def = scope.lookup(&key).ok_or_else(|| scope.unknown(&key))?;
        let validate = |v: &str| config::validate(def, v).map_err(|e| scope.invalid(e));
        let list_only =
            |what: &str| AdminError::InvalidConfig(format!("Config value {what} is not allowed for config key: {key}"));
        let current_items =
            |out: &BTreeMap<String, String>| list_items(out.get(def.name).map(String::as_str).unwrap_or(def.default));
        match op {
            Op::Set(v) => {
                out.insert(def.name.to_string(), validate(&v)?);
            }
            Op::Delete => {
                out.remove(def.name);
            }
            Op::Append(_) if def.kind != ConfigType::List => return Err(list_only("append")),
            Op::Subtract(_) if def.kind != ConfigType::List => return Err(list_only("subtract")),
            Op::Append(v) => {
                let mut items = current_items(&out);
                for item in list_items(&v) {
                    if !items.contains(&item) {
                        items.push(item);
                    }
                }
                out.insert(def.name.to_string(), validate(&items.join(","))?);
            }
            Op::Subtract(v) => {
                let remove = list_items(&v);
                let items: Vec<String> = current_items(&out).into_iter().filter(|i| !remove.contains(i)).collect();
                out.insert(def.name.to_string(), validate(&items.join(","))?);
            }
        }
    }
    Ok(out)
}

fn list_items(v: &str) -> Vec<String> {
    v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

/// Validates and (unless `validate_only`) stores a resource's new overrides.
async fn alter_resource(
    broker: &Broker,
    resource_type: i8,
    name: &str,
    replace: bool,
    ops: Vec<(String, Op)>,
    validate_only: bool,
) -> Result<(), AdminError> {
    match resource_type {
        TOPIC => {
            let topic = broker.topic(name).ok_or(AdminError::UnknownTopic)?;
            let base = if replace { BTreeMap::new() } else { topic.configs.clone() };
            let configs = apply_ops(&base, ops, Scope::Topic)?;
            if !validate_only {
                broker.set_topic_configs(name, configs).await?;
            }
            Ok(())
        }
        BROKER => {
            let cluster_default = check_broker_name(broker, name)?;
            let current: BTreeMap<String, String> = if replace {
                BTreeMap::new()
            } else {
                let cfg = broker.config();
                cfg.dynamic_values(cluster_default).iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
            };
            check_broker_modes(&ops, cluster_default)?;
            let configs = apply_ops(&current, ops, Scope::Broker)?;
            let typed = configs.into_iter().filter_map(|(k, v)| config::broker_def(&k).map(|d| (d.name, v))).collect();
            if !validate_only {
                let node = (!cluster_default).then_some(broker.node_id);
                broker.set_broker_configs(typed, node).await?;
            }
            Ok(())
        }
        GROUP if name.is_empty() => Err(AdminError::InvalidRequest("Group name must not be empty".into())),
        GROUP => {
            let base = if replace { BTreeMap::new() } else { broker.group_configs(name) };
            let configs = apply_ops(&base, ops, Scope::Group)?;
            broker.set_group_configs(name, configs, validate_only).await
        }
        CLIENT_METRICS => {
            let base = if replace { BTreeMap::new() } else { broker.telemetry.subscription_configs(name) };
            let configs = apply_ops(&base, ops, Scope::ClientMetrics)?;
            broker.set_client_metrics(name, configs, validate_only).await
        }
        // legacy AlterConfigs does not take BROKER_LOGGER either, as in Kafka
        other => Err(AdminError::InvalidRequest(format!("Unknown resource type {other}"))),
    }
}

pub async fn alter(ctx: &RequestContext, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let mut ops = Vec::new();
        let mut null_value = None;
        for c in res.configs {
            match c.value {
                Some(v) => ops.push((c.name.to_string(), Op::Set(v.to_string()))),
                None => null_value = Some(c.name.to_string()),
            }
        }
        let allowed = check_access(ctx, res.resource_type, res.resource_name.as_str(), op::ALTER_CONFIGS);
        let result = match null_value {
            _ if allowed.is_err() => allowed,
            Some(k) => Err(AdminError::InvalidRequest(format!("Null value not supported for : {k}"))),
            None => {
                alter_resource(&ctx.broker, res.resource_type, res.resource_name.as_str(), true, ops, req.validate_only)
                    .await
            }
        };
        let mut r = AlterConfigsResourceResponse::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name);
        if let Err(e) = result {
            r = r.with_error_code(e.code()).with_error_message(Some(str_bytes(e.to_string())));
        }
        responses.push(r);
    }
    AlterConfigsResponse::default().with_responses(responses)
}

pub async fn incremental_alter(
    ctx: &RequestContext,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let mut ops = Vec::new();
        let mut bad = None;
        for c in res.configs {
            let value = c.value.map(|v| v.to_string());
            let op = match (c.config_operation, value) {
                (0, Some(v)) => Op::Set(v),
                (1, _) => Op::Delete,
                (2, Some(v)) => Op::Append(v),
                (3, Some(v)) => Op::Subtract(v),
                (op, _) => {
                    bad = Some(format!("Invalid operation {op} or missing value for config {}", c.name.as_str()));
                    break;
                }
            };
            ops.push((c.name.to_string(), op));
        }
        let allowed = check_access(ctx, res.resource_type, res.resource_name.as_str(), op::ALTER_CONFIGS);
        let result = match bad {
            _ if allowed.is_err() => allowed,
            Some(msg) => Err(AdminError::InvalidRequest(msg)),
            None if res.resource_type == BROKER_LOGGER => {
                alter_loggers(&ctx.broker, res.resource_name.as_str(), ops, req.validate_only)
            }
            None => {
                alter_resource(
                    &ctx.broker,
                    res.resource_type,
                    res.resource_name.as_str(),
                    false,
                    ops,
                    req.validate_only,
                )
                .await
            }
        };
        let mut r =
            IncrementalResult::default().with_resource_type(res.resource_type).with_resource_name(res.resource_name);
        if let Err(e) = result {
            r = r.with_error_code(e.code()).with_error_message(Some(str_bytes(e.to_string())));
        }
        responses.push(r);
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
