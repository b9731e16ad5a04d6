//! `weir topic`: CreateTopics, Metadata, DescribeConfigs, DeleteTopics, CreatePartitions,
//! IncrementalAlterConfigs, DeleteRecords.

use clap::Subcommand;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreateTopicsRequest, DeleteRecordsRequest, DeleteTopicsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::{json, Value};

use super::configs::{self, TOPIC};
use super::key_values;
use super::output::{ids, or_dash, Outcome, Table};
use super::position::Position;
use crate::client::offsets::{EARLIEST, LATEST};
use crate::client::{by_topic, partitions_named, Client, ClientError, Tp};

pub const EXAMPLES: &str = "Examples:
  weir topic create orders -p 6 -r 3 -c retention.ms=86400000 -c cleanup.policy=compact
  weir topic list
  weir topic describe orders --format json
  weir topic alter-config orders --set retention.ms=3600000 --delete cleanup.policy
  weir topic add-partitions orders -p 12
  weir topic trim orders --to -7d
  weir topic delete orders";

const TIMEOUT_MS: i32 = 30_000;

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    #[command(after_help = "Examples:\n  weir topic create orders\n  \
                            weir topic create orders -p 6 -r 3 -c retention.ms=86400000\n  \
                            weir topic create orders --if-not-exists")]
    Create {
        name: String,
        /// Number of partitions (default: the broker's num.partitions).
        #[arg(short = 'p', long)]
        partitions: Option<i32>,
        /// Replication factor (default: the broker's default.replication.factor).
        #[arg(short = 'r', long)]
        replicas: Option<i16>,
        /// A topic config (repeatable).
        #[arg(short = 'c', long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Succeed when the topic already exists.
        #[arg(long)]
        if_not_exists: bool,
        /// Validate only: ask the broker whether it would create the topic.
        #[arg(long)]
        dry_run: bool,
    },
    /// List topics with their partition and replica counts.
    #[command(after_help = "Examples:\n  weir topic list\n  weir topic list --internal --format json")]
    List {
        /// Include internal topics (__consumer_offsets, __transaction_state, …).
        #[arg(short = 'i', long)]
        internal: bool,
    },
    /// Partitions (leader, replicas, ISR, log start, high watermark) and configs with their source.
    #[command(
        after_help = "Examples:\n  weir topic describe orders\n  weir topic describe orders --format json | jq .partitions"
    )]
    Describe { name: String },
    /// Delete topics.
    #[command(after_help = "Examples:\n  weir topic delete orders\n  weir topic delete a b c")]
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Add partitions: -p sets the new total (as kafka-topics.sh --partitions), --add adds.
    #[command(
        after_help = "Examples:\n  weir topic add-partitions orders -p 12\n  weir topic add-partitions orders --add 2"
    )]
    AddPartitions {
        name: String,
        /// The new total number of partitions.
        #[arg(short = 'p', long, conflicts_with = "add", required_unless_present = "add")]
        partitions: Option<i32>,
        /// How many partitions to add.
        #[arg(long)]
        add: Option<i32>,
    },
    /// Set or delete topic configs (IncrementalAlterConfigs).
    #[command(
        after_help = "Examples:\n  weir topic alter-config orders --set retention.ms=3600000 --set segment.bytes=104857600\n  \
                            weir topic alter-config orders --delete retention.ms"
    )]
    AlterConfig {
        name: String,
        /// A config to set (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// A config to return to its default (repeatable).
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Delete records before an offset or a time (DeleteRecords): the log start moves up.
    #[command(after_help = "Examples:\n  weir topic trim orders --to 1000 -p 0\n  \
                            weir topic trim orders --to 2026-12-01T00:00:00Z\n  \
                            weir topic trim orders --to -7d      # keep the last 7 days\n  \
                            weir topic trim orders --to latest   # empty every partition")]
    Trim {
        name: String,
        /// OFFSET, a time (2026-12-01T09:30:00Z, @EPOCH_MILLIS, -DURATION) or latest.
        #[arg(long, allow_hyphen_values = true)]
        to: String,
        /// Only these partitions (repeatable; default all).
        #[arg(short = 'p', long = "partition")]
        partitions: Vec<i32>,
    },
}

pub async fn run(client: &mut Client, cmd: TopicCommand) -> Result<Outcome, ClientError> {
    match cmd {
        TopicCommand::Create { name, partitions, replicas, configs, if_not_exists, dry_run } => {
            create(client, &name, partitions.unwrap_or(-1), replicas.unwrap_or(-1), &configs, if_not_exists, dry_run)
                .await
        }
        TopicCommand::List { internal } => list(client, internal).await,
        TopicCommand::Describe { name } => describe(client, &name).await,
        TopicCommand::Delete { names } => delete(client, &names).await,
        TopicCommand::AddPartitions { name, partitions, add } => add_partitions(client, &name, partitions, add).await,
        TopicCommand::AlterConfig { name, set, delete } => {
            let set = key_values(&set, "--set")?;
            configs::alter(client, TOPIC, &name, &set, &delete, None).await?;
            let json = json!({"name": name, "set": set.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(), "deleted": delete});
            Ok(Outcome::new(json, format!("altered configs of topic '{name}'\n")))
        }
        TopicCommand::Trim { name, to, partitions } => trim(client, &name, &to, &partitions).await,
    }
}

async fn create(
    client: &mut Client,
    name: &str,
    partitions: i32,
    replicas: i16,
    configs: &[String],
    if_not_exists: bool,
    dry_run: bool,
) -> Result<Outcome, ClientError> {
    let configs = key_values(configs, "-c")?
        .into_iter()
        .map(|(k, v)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(k))
                .with_value(Some(StrBytes::from_string(v)))
        })
        .collect();
    let topic = CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(partitions)
        .with_replication_factor(replicas)
        .with_configs(configs);
    let req =
        CreateTopicsRequest::default().with_topics(vec![topic]).with_timeout_ms(TIMEOUT_MS).with_validate_only(dry_run);
    let resp = client.controller_call(&req, |r| r.topics.iter().map(|t| t.error_code).collect()).await?;
    let t =
        resp.topics.into_iter().next().ok_or_else(|| ClientError::Protocol("empty CreateTopics response".into()))?;
    let exists = t.error_code == kafka_protocol::ResponseError::TopicAlreadyExists.code();
    if !(exists && if_not_exists) {
        ClientError::check(|| format!("creating topic '{name}'"), t.error_code, t.error_message.as_deref())?;
    }
    let json = json!({
        "name": name,
        "topic_id": (!exists).then(|| t.topic_id.to_string()),
        "partitions": (t.num_partitions > 0).then_some(t.num_partitions),
        "replication_factor": (t.replication_factor > 0).then_some(t.replication_factor),
        "created": !exists && !dry_run,
        "already_existed": exists,
        "dry_run": dry_run,
    });
    let text = if exists {
        format!("topic '{name}' already exists\n")
    } else {
        let verb = if dry_run { "would create" } else { "created" };
        format!(
            "{verb} topic '{name}' ({} partitions, replication factor {})\n",
            or_dash((t.num_partitions > 0).then_some(t.num_partitions)),
            or_dash((t.replication_factor > 0).then_some(t.replication_factor))
        )
    };
    Ok(Outcome::new(json, text))
}

async fn list(client: &mut Client, internal: bool) -> Result<Outcome, ClientError> {
    let resp = client.metadata(None).await?;
    let mut rows: Vec<(String, bool, usize, usize, String)> = resp
        .topics
        .iter()
        .filter(|t| internal || !t.is_internal)
        .filter_map(|t| {
            let name = t.name.as_ref()?.0.to_string();
            let rf = t.partitions.iter().map(|p| p.replica_nodes.len()).max().unwrap_or(0);
            Some((name, t.is_internal, t.partitions.len(), rf, t.topic_id.to_string()))
        })
        .collect();
    rows.sort();
    let mut table = Table::new(&["NAME", "PARTITIONS", "REPLICAS"]);
    let mut json = Vec::new();
    for (name, is_internal, partitions, rf, id) in rows {
        table.row(vec![name.clone(), partitions.to_string(), rf.to_string()]);
        json.push(json!({"name": name, "topic_id": id, "internal": is_internal, "partitions": partitions, "replication_factor": rf}));
    }
    Ok(Outcome::new(Value::Array(json), table.render()))
}

async fn describe(client: &mut Client, name: &str) -> Result<Outcome, ClientError> {
    let resp = client.metadata(Some(vec![name.to_string()])).await?;
    let t =
        resp.topics.into_iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == name)).ok_or_else(|| {
            ClientError::kafka(
                format!("topic '{name}'"),
                kafka_protocol::ResponseError::UnknownTopicOrPartition.code(),
                None,
            )
        })?;
    ClientError::check(|| format!("topic '{name}'"), t.error_code, None)?;
    let mut partitions = t.partitions;
    partitions.sort_by_key(|p| p.partition_index);
    let tps: Vec<Tp> = partitions.iter().map(|p| (name.to_string(), p.partition_index)).collect();
    let marks: std::collections::HashMap<Tp, Option<(i64, i64)>> =
        client.watermarks(&tps).await?.into_iter().map(|(tp, r)| (tp, r.ok())).collect();
    let configs = configs::describe(client, TOPIC, name, &[], None).await?;

    let mut table =
        Table::new(&["PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR", "OFFLINE", "LOG-START", "HIGH-WATERMARK"]);
    let mut parts_json = Vec::new();
    for p in &partitions {
        let mark = marks.get(&(name.to_string(), p.partition_index)).copied().flatten();
        let replicas: Vec<i32> = p.replica_nodes.iter().map(|b| b.0).collect();
        let isr: Vec<i32> = p.isr_nodes.iter().map(|b| b.0).collect();
        let offline: Vec<i32> = p.offline_replicas.iter().map(|b| b.0).collect();
        table.row(vec![
            p.partition_index.to_string(),
            if p.leader_id.0 >= 0 { p.leader_id.0.to_string() } else { "none".into() },
            p.leader_epoch.to_string(),
            ids(&replicas),
            ids(&isr),
            ids(&offline),
            or_dash(mark.map(|m| m.0)),
            or_dash(mark.map(|m| m.1)),
        ]);
        parts_json.push(json!({
            "partition": p.partition_index,
            "leader": (p.leader_id.0 >= 0).then_some(p.leader_id.0),
            "leader_epoch": p.leader_epoch,
            "replicas": replicas,
            "isr": isr,
            "offline_replicas": offline,
            "log_start_offset": mark.map(|m| m.0),
            "high_watermark": mark.map(|m| m.1),
            "error": (p.error_code != 0).then(|| crate::client::error::error_name(p.error_code)),
        }));
    }
    let rf = partitions.iter().map(|p| p.replica_nodes.len()).max().unwrap_or(0);
    let text = format!(
        "NAME        {name}\nTOPIC ID    {}\nINTERNAL    {}\nPARTITIONS  {}\nREPLICAS    {rf}\n\n{}\nCONFIGS\n{}",
        t.topic_id,
        t.is_internal,
        partitions.len(),
        table.render(),
        configs::entries_table(&configs)
    );
    let json = json!({
        "name": name,
        "topic_id": t.topic_id.to_string(),
        "internal": t.is_internal,
        "replication_factor": rf,
        "partitions": parts_json,
        "configs": configs::entries_json(&configs),
    });
    Ok(Outcome::new(json, text))
}

async fn delete(client: &mut Client, names: &[String]) -> Result<Outcome, ClientError> {
    let mut req = DeleteTopicsRequest::default().with_timeout_ms(TIMEOUT_MS);
    if client.version(ApiKey::DeleteTopics, (0, 6)).await?.is_some_and(|v| v >= 6) {
        req.topics = names.iter().map(|n| DeleteTopicState::default().with_name(Some(topic_name(n)))).collect();
    } else {
        req.topic_names = names.iter().map(|n| topic_name(n)).collect();
    }
    let resp = client.controller_call(&req, |r| r.responses.iter().map(|t| t.error_code).collect()).await?;
    for r in &resp.responses {
        let n = r.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
        ClientError::check(|| format!("deleting topic '{n}'"), r.error_code, r.error_message.as_deref())?;
    }
    let text: String = names.iter().map(|n| format!("deleted topic '{n}'\n")).collect();
    Ok(Outcome::new(json!({"deleted": names}), text))
}

async fn add_partitions(
    client: &mut Client,
    name: &str,
    total: Option<i32>,
    add: Option<i32>,
) -> Result<Outcome, ClientError> {
    let current = client.partitions(name).await?.len() as i32;
    let count = match (total, add) {
        (Some(t), _) => t,
        (None, Some(a)) => current + a,
        (None, None) => return Err(ClientError::Config("give -p TOTAL or --add N".into())),
    };
    let topic = CreatePartitionsTopic::default().with_name(topic_name(name)).with_count(count).with_assignments(None);
    let req = CreatePartitionsRequest::default().with_topics(vec![topic]).with_timeout_ms(TIMEOUT_MS);
    let resp = client.controller_call(&req, |r| r.results.iter().map(|t| t.error_code).collect()).await?;
    for r in &resp.results {
        ClientError::check(|| format!("adding partitions to '{name}'"), r.error_code, r.error_message.as_deref())?;
    }
    let json = json!({"name": name, "partitions_before": current, "partitions": count});
    Ok(Outcome::new(json, format!("topic '{name}' now has {count} partitions (was {current})\n")))
}

async fn trim(client: &mut Client, name: &str, to: &str, only: &[i32]) -> Result<Outcome, ClientError> {
    let position = Position::parse(to).map_err(ClientError::Config)?;
    let partitions = partitions_named(name, client.partitions(name).await?, only)?;
    let tps: Vec<Tp> = partitions.iter().map(|p| (name.to_string(), *p)).collect();
    // DeleteRecords' offset -1 means "the high watermark"
    let targets: Vec<(Tp, i64)> = match position {
        Position::Offset(o) => tps.into_iter().map(|tp| (tp, o)).collect(),
        Position::Latest => tps.into_iter().map(|tp| (tp, -1)).collect(),
        Position::Earliest => client
            .list_offsets(tps.into_iter().map(|tp| (tp, EARLIEST)).collect())
            .await?
            .into_iter()
            .map(|(tp, r)| r.map(|o| (tp, o)))
            .collect::<Result<_, _>>()?,
        Position::Timestamp(ts) => client
            .list_offsets(tps.into_iter().map(|tp| (tp, ts)).collect())
            .await?
            .into_iter()
            .map(|(tp, r)| r.map(|o| (tp, if o < 0 { LATEST } else { o })))
            .collect::<Result<_, _>>()?,
    };
    let results = client
        .per_leader(
            targets,
            |share| {
                let topics = by_topic(share)
                    .into_iter()
                    .map(|(name, parts)| {
                        let parts = parts.into_iter().map(|(p, offset)| {
                            DeleteRecordsPartition::default().with_partition_index(p).with_offset(*offset)
                        });
                        DeleteRecordsTopic::default().with_name(name).with_partitions(parts.collect())
                    })
                    .collect();
                DeleteRecordsRequest::default().with_topics(topics).with_timeout_ms(TIMEOUT_MS)
            },
            |resp| {
                let mut out = Vec::new();
                for t in resp.topics {
                    for p in t.partitions {
                        out.push(((t.name.0.to_string(), p.partition_index), p.error_code, None, p.low_watermark));
                    }
                }
                out
            },
        )
        .await?;
    let mut results: Vec<(Tp, Result<i64, ClientError>)> = results;
    results.sort_by(|a, b| a.0.cmp(&b.0));
    let mut table = Table::new(&["PARTITION", "LOG-START"]);
    let mut json = Vec::new();
    for ((_, p), r) in results {
        let low = r?;
        table.row(vec![p.to_string(), low.to_string()]);
        json.push(json!({"partition": p, "log_start_offset": low}));
    }
    Ok(Outcome::new(json!({"name": name, "partitions": json}), table.render()))
}
