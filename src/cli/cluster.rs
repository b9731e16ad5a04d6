//! `weir cluster`: DescribeCluster / Metadata for brokers and the controller, partition
//! health from Metadata, broker configs through Describe/IncrementalAlterConfigs.

use clap::Subcommand;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{ApiKey, DescribeClusterRequest, DescribeConfigsRequest};
use kafka_protocol::protocol::StrBytes;
use serde_json::{json, Value};

use super::configs::{self, BROKER};
use super::output::{ids, or_dash, Outcome, Table};
use super::{key_values, UNHEALTHY};
use crate::broker::links::REPLICA_FETCH_FAILURES;
use crate::client::{Client, ClientError};

pub const EXAMPLES: &str = "Examples:
  weir cluster info
  weir cluster health && echo healthy
  weir cluster config get log.retention.ms
  weir cluster config set log.retention.ms=604800000
  weir cluster config set --broker 2 log.cleaner.threads=2";

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Cluster id, controller and brokers.
    #[command(after_help = "Examples:\n  weir cluster info\n  weir cluster info --format json | jq '.brokers[].id'")]
    Info,
    /// Offline and under-replicated partitions, and replica fetches failing on any broker
    /// (with the cause: authentication, tls, authorization…); exits 6 when there are any.
    #[command(after_help = "Examples:\n  weir cluster health\n  \
                            HEALTHCHECK CMD weir cluster health -b 127.0.0.1:9092   # in a Dockerfile")]
    Health,
    /// Broker configs.
    #[command(
        subcommand,
        after_help = "Examples:\n  weir cluster config get\n  weir cluster config set log.retention.ms=604800000"
    )]
    Config(ConfigCommand),
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Show a broker's configs with their source (all, or the named ones).
    #[command(
        after_help = "Examples:\n  weir cluster config get\n  weir cluster config get num.partitions log.retention.ms --broker 2\n  \
                            weir cluster config get --dynamic"
    )]
    Get {
        /// Config names (default: all).
        names: Vec<String>,
        /// The broker to describe (default: the controller, or any broker).
        #[arg(long)]
        broker: Option<i32>,
        /// Only configs set dynamically (cluster-wide or per broker).
        #[arg(long)]
        dynamic: bool,
    },
    /// Set broker configs dynamically: cluster-wide, or for one broker with --broker.
    #[command(after_help = "Examples:\n  weir cluster config set log.retention.ms=604800000 num.partitions=3\n  \
                            weir cluster config set --broker 1 log.cleaner.threads=2\n  \
                            weir cluster config set --delete log.retention.ms")]
    Set {
        /// KEY=VALUE pairs to set.
        #[arg(value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Configs to return to their default (repeatable).
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
        /// Only this broker (default: every broker, the cluster-wide default).
        #[arg(long)]
        broker: Option<i32>,
    },
}

pub async fn run(client: &mut Client, cmd: ClusterCommand) -> Result<Outcome, ClientError> {
    match cmd {
        ClusterCommand::Info => info(client).await,
        ClusterCommand::Health => health(client).await,
        ClusterCommand::Config(ConfigCommand::Get { names, broker, dynamic }) => {
            config_get(client, &names, broker, dynamic).await
        }
        ClusterCommand::Config(ConfigCommand::Set { set, delete, broker }) => {
            let set = key_values(&set, "set")?;
            let name = broker.map_or_else(String::new, |b| b.to_string());
            configs::alter(client, BROKER, &name, &set, &delete, broker).await?;
            let scope =
                broker.map_or_else(|| "every broker (cluster-wide default)".to_string(), |b| format!("broker {b}"));
            let json = json!({"broker": broker, "set": set.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(), "deleted": delete});
            Ok(Outcome::new(json, format!("altered configs of {scope}\n")))
        }
    }
}

struct BrokerRow {
    id: i32,
    host: String,
    port: i32,
    rack: Option<String>,
    fenced: bool,
}

async fn info(client: &mut Client) -> Result<Outcome, ClientError> {
    let (cluster_id, controller, brokers) = if client.version(ApiKey::DescribeCluster, (0, 2)).await?.is_some() {
        let resp = client.send(&DescribeClusterRequest::default().with_endpoint_type(1)).await?;
        ClientError::check(|| "DescribeCluster".into(), resp.error_code, resp.error_message.as_deref())?;
        let brokers = resp
            .brokers
            .into_iter()
            .map(|b| BrokerRow {
                id: b.broker_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.map(|r| r.to_string()),
                fenced: b.is_fenced,
            })
            .collect::<Vec<_>>();
        (Some(resp.cluster_id.to_string()), resp.controller_id.0, brokers)
    } else {
        client.metadata(Some(Vec::new())).await?;
        let brokers = client
            .brokers
            .values()
            .map(|b| BrokerRow { id: b.id, host: b.host.clone(), port: b.port, rack: b.rack.clone(), fenced: false })
            .collect();
        (client.cluster_id.clone(), client.controller_id, brokers)
    };
    let mut table = Table::new(&["ID", "HOST", "PORT", "RACK", "ROLE"]);
    let mut json = Vec::new();
    for b in &brokers {
        let role = match (b.id == controller, b.fenced) {
            (_, true) => "fenced",
            (true, _) => "controller",
            _ => "",
        };
        table.row(vec![
            b.id.to_string(),
            b.host.clone(),
            b.port.to_string(),
            or_dash(b.rack.clone()),
            role.to_string(),
        ]);
        json.push(json!({"id": b.id, "host": b.host, "port": b.port, "rack": b.rack, "fenced": b.fenced}));
    }
    let text = format!(
        "CLUSTER ID  {}\nCONTROLLER  {}\nBROKERS     {}\n\n{}",
        or_dash(cluster_id.clone()),
        if controller >= 0 { controller.to_string() } else { "none".into() },
        brokers.len(),
        table.render()
    );
    let json =
        json!({"cluster_id": cluster_id, "controller_id": (controller >= 0).then_some(controller), "brokers": json});
    Ok(Outcome::new(json, text))
}

async fn health(client: &mut Client) -> Result<Outcome, ClientError> {
    let resp = client.metadata(None).await?;
    let live: Vec<i32> = resp.brokers.iter().map(|b| b.node_id.0).collect();
    let (mut offline, mut under) = (Vec::new(), Vec::new());
    let mut table = Table::new(&["TOPIC", "PARTITION", "PROBLEM", "LEADER", "REPLICAS", "ISR"]);
    let mut partitions = 0;
    for t in &resp.topics {
        let Some(name) = &t.name else { continue };
        for p in &t.partitions {
            partitions += 1;
            let replicas: Vec<i32> = p.replica_nodes.iter().map(|b| b.0).collect();
            let isr: Vec<i32> = p.isr_nodes.iter().map(|b| b.0).collect();
            let leader = p.leader_id.0;
            let problem = if leader < 0 || !live.contains(&leader) {
                "offline"
            } else if isr.len() < replicas.len() {
                "under-replicated"
            } else {
                continue;
            };
            let entry = json!({"topic": name.0.to_string(), "partition": p.partition_index, "leader": (leader >= 0).then_some(leader), "replicas": replicas, "isr": isr});
            table.row(vec![
                name.0.to_string(),
                p.partition_index.to_string(),
                problem.to_string(),
                if leader >= 0 { leader.to_string() } else { "none".into() },
                ids(&replicas),
                ids(&isr),
            ]);
            if problem == "offline" {
                offline.push(entry)
            } else {
                under.push(entry)
            }
        }
    }
    let fetch_failures = replica_fetch_failures(client, &live).await;
    let healthy = offline.is_empty() && under.is_empty() && fetch_failures.is_empty();
    let controller = resp.controller_id.0;
    let summary = format!(
        "{}: {} brokers, controller {}, {partitions} partitions, {} offline, {} under-replicated, {} failing replica fetches\n",
        if healthy { "healthy" } else { "UNHEALTHY" },
        live.len(),
        if controller >= 0 { controller.to_string() } else { "none".into() },
        offline.len(),
        under.len(),
        fetch_failures.len(),
    );
    let mut text = summary;
    if !offline.is_empty() || !under.is_empty() {
        text = format!("{text}\n{}", table.render());
    }
    if !fetch_failures.is_empty() {
        text = format!("{text}\n{}", fetch_failure_table(&fetch_failures).render());
    }
    let json = json!({
        "healthy": healthy,
        "brokers": live,
        "controller_id": (controller >= 0).then_some(controller),
        "partitions": partitions,
        "offline_partitions": offline,
        "under_replicated_partitions": under,
        "replica_fetch_failures": fetch_failures,
    });
    let mut outcome = Outcome::new(json, text);
    if !healthy {
        outcome.exit = UNHEALTHY;
    }
    Ok(outcome)
}

/// Every broker's current replica fetch failures (`weir.replica.fetch.failures`, which each
/// broker answers for itself), each tagged with the `broker` that fails to fetch. A broker
/// that does not answer (not Weir, not authorized, gone) reports none.
async fn replica_fetch_failures(client: &mut Client, brokers: &[i32]) -> Vec<Value> {
    let mut failures = Vec::new();
    for &id in brokers {
        let resource = DescribeConfigsResource::default()
            .with_resource_type(BROKER)
            .with_resource_name(StrBytes::from_string(id.to_string()))
            .with_configuration_keys(Some(vec![StrBytes::from_static_str(REPLICA_FETCH_FAILURES)]));
        let req = DescribeConfigsRequest::default().with_resources(vec![resource]);
        let Ok(resp) = client.send_to(id, &req).await else { continue };
        let values = resp.results.iter().flat_map(|r| &r.configs).filter_map(|c| c.value.as_ref());
        for value in values {
            let Ok(Value::Array(list)) = serde_json::from_str::<Value>(value.as_str()) else { continue };
            for mut f in list {
                f["broker"] = json!(id);
                failures.push(f);
            }
        }
    }
    failures
}

fn fetch_failure_table(failures: &[Value]) -> Table {
    let mut table = Table::new(&["BROKER", "FETCHING FROM", "CAUSE", "FAILURES", "SINCE", "ERROR"]);
    for f in failures {
        let since = f["since_ms"].as_i64().map_or_else(|| "-".to_string(), super::position::format_ms);
        table.row(vec![
            f["broker"].to_string(),
            f["leader"].to_string(),
            f["cause"].as_str().unwrap_or("-").to_string(),
            f["failures"].to_string(),
            since,
            f["error"].as_str().unwrap_or("-").to_string(),
        ]);
    }
    table
}

async fn config_get(
    client: &mut Client,
    names: &[String],
    broker: Option<i32>,
    dynamic: bool,
) -> Result<Outcome, ClientError> {
    let id = match broker {
        Some(b) => b,
        None => {
            client.metadata(Some(Vec::new())).await?;
            let controller = client.controller_id;
            if client.brokers.contains_key(&controller) {
                controller
            } else {
                *client.brokers.keys().next().ok_or_else(|| ClientError::Protocol("no brokers in metadata".into()))?
            }
        }
    };
    let mut entries = configs::describe(client, BROKER, &id.to_string(), names, Some(id)).await?;
    if dynamic {
        entries.retain(|e| matches!(e.source, 2 | 3 | 6));
    }
    let json: Value = json!({"broker": id, "configs": configs::entries_json(&entries)});
    Ok(Outcome::new(json, format!("BROKER  {id}\n\n{}", configs::entries_table(&entries))))
}
