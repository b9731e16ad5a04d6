//! `weir group`: ListGroups on every broker; DescribeGroups / ConsumerGroupDescribe /
//! ShareGroupDescribe with committed offsets and lag; seek (OffsetCommit or
//! AlterShareGroupOffsets); DeleteGroups; OffsetDelete.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Buf;
use clap::Subcommand;
use kafka_protocol::messages::alter_share_group_offsets_request::{
    AlterShareGroupOffsetsRequestPartition, AlterShareGroupOffsetsRequestTopic,
};
use kafka_protocol::messages::describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    AlterShareGroupOffsetsRequest, ApiKey, ConsumerGroupDescribeRequest, ConsumerProtocolAssignment,
    DeleteGroupsRequest, DescribeGroupsRequest, DescribeShareGroupOffsetsRequest, GroupId, ListGroupsRequest,
    OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest, ShareGroupDescribeRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::ResponseError;
use serde_json::{json, Value};

use super::output::{or_dash, Outcome, Table};
use super::position::Position;
use crate::client::offsets::LATEST;
use crate::client::{partitions_named, Client, ClientError, Tp, GROUP};

pub const EXAMPLES: &str = "Examples:
  weir group list
  weir group describe billing
  weir group seek billing --to earliest --topic orders             # prints the plan
  weir group seek billing --to -1h --topic orders:0,1 --execute
  weir group delete-offsets billing --topic orders
  weir group delete billing";

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// List groups (classic, consumer and share) on every broker.
    #[command(after_help = "Examples:\n  weir group list\n  weir group list --type share --format json")]
    List {
        /// Only groups in this state (Stable, Empty, …; case-insensitive).
        #[arg(long)]
        state: Option<String>,
        /// Only groups of this type: classic, consumer or share.
        #[arg(long = "type")]
        group_type: Option<String>,
    },
    /// Members, assignments, committed offsets, log end offsets and lag.
    #[command(
        after_help = "Examples:\n  weir group describe billing\n  weir group describe billing --format json | jq .total_lag"
    )]
    Describe { group: String },
    /// Move a group's committed offsets (the group must have no active members).
    #[command(after_help = "Examples:\n  weir group seek billing --to earliest --topic orders\n  \
                            weir group seek billing --to 1500 --topic orders:3 --execute\n  \
                            weir group seek billing --to 2026-12-01T08:00:00Z --all-topics --execute\n  \
                            weir group seek billing --to -30m --topic orders --execute\n\
                            Without --execute the plan is printed and nothing changes.")]
    Seek {
        group: String,
        /// earliest, latest, an OFFSET, a time (2026-12-01T09:30:00Z, @EPOCH_MILLIS) or -DURATION.
        #[arg(long, allow_hyphen_values = true)]
        to: String,
        /// TOPIC or TOPIC:PARTITION[,PARTITION…] (repeatable).
        #[arg(long = "topic", value_name = "TOPIC[:PARTITIONS]", required_unless_present = "all_topics")]
        topics: Vec<String>,
        /// Every topic the group has committed offsets for.
        #[arg(long, conflicts_with = "topics")]
        all_topics: bool,
        /// Commit the new offsets (otherwise only print the plan).
        #[arg(long)]
        execute: bool,
    },
    /// Delete groups (they must have no active members).
    #[command(after_help = "Examples:\n  weir group delete billing\n  weir group delete a b")]
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Delete a group's committed offsets for topics (OffsetDelete).
    #[command(after_help = "Examples:\n  weir group delete-offsets billing --topic orders\n  \
                            weir group delete-offsets billing --topic orders:0,1")]
    DeleteOffsets {
        group: String,
        /// TOPIC or TOPIC:PARTITION[,PARTITION…] (repeatable).
        #[arg(long = "topic", value_name = "TOPIC[:PARTITIONS]", required = true)]
        topics: Vec<String>,
    },
}

pub async fn run(client: &mut Client, cmd: GroupCommand) -> Result<Outcome, ClientError> {
    match cmd {
        GroupCommand::List { state, group_type } => list(client, state, group_type).await,
        GroupCommand::Describe { group } => describe(client, &group).await,
        GroupCommand::Seek { group, to, topics, all_topics, execute } => {
            seek(client, &group, &to, &topics, all_topics, execute).await
        }
        GroupCommand::Delete { groups } => delete(client, &groups).await,
        GroupCommand::DeleteOffsets { group, topics } => delete_offsets(client, &group, &topics).await,
    }
}

fn group_id(g: &str) -> GroupId {
    GroupId(StrBytes::from_string(g.to_string()))
}

fn topic_name(t: &str) -> TopicName {
    TopicName(StrBytes::from_string(t.to_string()))
}

/// `TOPIC` or `TOPIC:1,2`: the topic and its partitions (all of them when none are named).
async fn partitions_of(client: &mut Client, specs: &[String]) -> Result<Vec<Tp>, ClientError> {
    let mut out = BTreeSet::new();
    for spec in specs {
        let (topic, parts) = match spec.split_once(':') {
            None => (spec.as_str(), None),
            Some((t, p)) => {
                let parts: Result<Vec<i32>, _> = p.split(',').map(|x| x.trim().parse::<i32>()).collect();
                let parts = parts
                    .map_err(|_| ClientError::Config(format!("'{spec}': expected TOPIC:PARTITION[,PARTITION…]")))?;
                (t, Some(parts))
            }
        };
        let all = client.partitions(topic).await?;
        for p in partitions_named(topic, all, parts.as_deref().unwrap_or_default())? {
            out.insert((topic.to_string(), p));
        }
    }
    Ok(out.into_iter().collect())
}

async fn list(client: &mut Client, state: Option<String>, group_type: Option<String>) -> Result<Outcome, ClientError> {
    client.metadata(Some(Vec::new())).await?;
    let ids: Vec<i32> = client.brokers.keys().copied().collect();
    let mut groups: BTreeMap<String, (String, String, String)> = BTreeMap::new();
    for id in ids {
        let resp = client.send_to(id, &ListGroupsRequest::default()).await?;
        ClientError::check(|| format!("listing groups on broker {id}"), resp.error_code, None)?;
        for g in resp.groups {
            let kind =
                if g.group_type.is_empty() { "classic".to_string() } else { g.group_type.to_string().to_lowercase() };
            groups.insert(g.group_id.0.to_string(), (kind, g.group_state.to_string(), g.protocol_type.to_string()));
        }
    }
    groups.retain(|_, (kind, st, _)| {
        state.as_ref().is_none_or(|s| s.eq_ignore_ascii_case(st))
            && group_type.as_ref().is_none_or(|t| t.eq_ignore_ascii_case(kind))
    });
    let mut table = Table::new(&["GROUP", "TYPE", "STATE", "PROTOCOL-TYPE"]);
    let mut json = Vec::new();
    for (g, (kind, st, proto)) in groups {
        table.row(vec![g.clone(), kind.clone(), st.clone(), proto.clone()]);
        json.push(json!({"group": g, "type": kind, "state": st, "protocol_type": proto}));
    }
    Ok(Outcome::new(Value::Array(json), table.render()))
}

struct Member {
    member_id: String,
    instance_id: Option<String>,
    client_id: String,
    host: String,
    assignment: Vec<Tp>,
}

/// What DescribeGroups, ConsumerGroupDescribe or ShareGroupDescribe said of a group.
struct GroupView {
    kind: &'static str,
    state: String,
    /// The classic protocol type / assignor, or the KIP-848 assignor.
    protocol: String,
    members: Vec<Member>,
}

fn is_not_found(code: i16) -> bool {
    code == ResponseError::GroupIdNotFound.code()
}

/// Whether a describe found the group: yes, no (GROUP_ID_NOT_FOUND: try another kind), or an
/// error.
fn found(group: &str, code: i16, message: Option<&StrBytes>) -> Result<bool, ClientError> {
    match code {
        0 => Ok(true),
        c if is_not_found(c) => Ok(false),
        c => Err(ClientError::kafka(format!("group '{group}'"), c, message.map(|m| m.to_string()))),
    }
}

fn member(
    id: &StrBytes,
    instance: Option<&StrBytes>,
    client: &StrBytes,
    host: &StrBytes,
    assignment: Vec<Tp>,
) -> Member {
    Member {
        member_id: id.to_string(),
        instance_id: instance.map(|i| i.to_string()),
        client_id: client.to_string(),
        host: host.to_string(),
        assignment,
    }
}

/// Describes a group of whichever kind it is. KIP-848 first: Kafka (and Weir) may describe an
/// empty consumer group through DescribeGroups too, as an Empty classic one.
async fn view(client: &mut Client, group: &str) -> Result<Option<GroupView>, ClientError> {
    if let Some(v) = describe_consumer(client, group).await? {
        return Ok(Some(v));
    }
    if let Some(v) = describe_classic(client, group).await? {
        return Ok(Some(v));
    }
    describe_share(client, group).await
}

async fn describe_consumer(client: &mut Client, group: &str) -> Result<Option<GroupView>, ClientError> {
    if client.version(ApiKey::ConsumerGroupDescribe, (0, 1)).await?.is_none() {
        return Ok(None);
    }
    let req = ConsumerGroupDescribeRequest::default().with_group_ids(vec![group_id(group)]);
    let resp = client.coordinator_call(group, GROUP, &req, |r| r.groups.first().map_or(0, |g| g.error_code)).await?;
    let Some(g) = resp.groups.into_iter().next() else { return Ok(None) };
    if !found(group, g.error_code, g.error_message.as_ref())? {
        return Ok(None);
    }
    let members = g
        .members
        .iter()
        .map(|m| {
            let assigned = flatten(m.assignment.topic_partitions.iter().map(|t| (&t.topic_name, &t.partitions)));
            member(&m.member_id, m.instance_id.as_ref(), &m.client_id, &m.client_host, assigned)
        })
        .collect();
    let (state, protocol) = (g.group_state.to_string(), g.assignor_name.to_string());
    Ok(Some(GroupView { kind: "consumer", state, protocol, members }))
}

async fn describe_classic(client: &mut Client, group: &str) -> Result<Option<GroupView>, ClientError> {
    let req = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
    let resp = client.coordinator_call(group, GROUP, &req, |r| r.groups.first().map_or(0, |g| g.error_code)).await?;
    let Some(g) = resp.groups.into_iter().next() else { return Ok(None) };
    // before v6 an unknown group is a Dead one without an error
    if !found(group, g.error_code, g.error_message.as_ref())? || g.group_state.as_str() == "Dead" {
        return Ok(None);
    }
    let consumer = g.protocol_type.as_str() == "consumer";
    let members = g
        .members
        .iter()
        .map(|m| {
            let assigned = if consumer { decode_assignment(m.member_assignment.clone()) } else { Vec::new() };
            member(&m.member_id, m.group_instance_id.as_ref(), &m.client_id, &m.client_host, assigned)
        })
        .collect();
    let protocol = if g.protocol_data.is_empty() { g.protocol_type.to_string() } else { g.protocol_data.to_string() };
    Ok(Some(GroupView { kind: "classic", state: g.group_state.to_string(), protocol, members }))
}

async fn describe_share(client: &mut Client, group: &str) -> Result<Option<GroupView>, ClientError> {
    if client.version(ApiKey::ShareGroupDescribe, (0, 1)).await?.is_none() {
        return Ok(None);
    }
    let req = ShareGroupDescribeRequest::default().with_group_ids(vec![group_id(group)]);
    let resp = client.coordinator_call(group, GROUP, &req, |r| r.groups.first().map_or(0, |g| g.error_code)).await?;
    let Some(g) = resp.groups.into_iter().next() else { return Ok(None) };
    if !found(group, g.error_code, g.error_message.as_ref())? {
        return Ok(None);
    }
    let members = g
        .members
        .iter()
        .map(|m| {
            let assigned = flatten(m.assignment.topic_partitions.iter().map(|t| (&t.topic_name, &t.partitions)));
            member(&m.member_id, None, &m.client_id, &m.client_host, assigned)
        })
        .collect();
    let (state, protocol) = (g.group_state.to_string(), g.assignor_name.to_string());
    Ok(Some(GroupView { kind: "share", state, protocol, members }))
}

fn flatten<'a>(topics: impl Iterator<Item = (&'a TopicName, &'a Vec<i32>)>) -> Vec<Tp> {
    let mut out: Vec<Tp> = topics.flat_map(|(t, ps)| ps.iter().map(move |p| (t.0.to_string(), *p))).collect();
    out.sort();
    out
}

/// A classic consumer's assignment: ConsumerProtocolAssignment after its version.
fn decode_assignment(mut bytes: bytes::Bytes) -> Vec<Tp> {
    if bytes.remaining() < 2 {
        return Vec::new();
    }
    let version = bytes.get_i16().clamp(0, 3);
    match ConsumerProtocolAssignment::decode(&mut bytes, version) {
        Ok(a) => flatten(a.assigned_partitions.iter().map(|t| (&t.topic, &t.partitions))),
        Err(_) => Vec::new(),
    }
}

/// Committed offsets (share groups: start offsets) by partition.
pub(super) async fn committed(client: &mut Client, group: &str, kind: &str) -> Result<BTreeMap<Tp, i64>, ClientError> {
    let mut out = BTreeMap::new();
    if kind == "share" {
        let g = DescribeShareGroupOffsetsRequestGroup::default().with_group_id(group_id(group)).with_topics(None);
        let req = DescribeShareGroupOffsetsRequest::default().with_groups(vec![g]);
        let resp =
            client.coordinator_call(group, GROUP, &req, |r| r.groups.first().map_or(0, |g| g.error_code)).await?;
        for g in resp.groups {
            ClientError::check(|| format!("group '{group}'"), g.error_code, g.error_message.as_deref())?;
            for t in g.topics {
                for p in t.partitions.into_iter().filter(|p| p.error_code == 0 && p.start_offset >= 0) {
                    out.insert((t.topic_name.0.to_string(), p.partition_index), p.start_offset);
                }
            }
        }
        return Ok(out);
    }
    let g = OffsetFetchRequestGroup::default().with_group_id(group_id(group)).with_member_epoch(-1).with_topics(None);
    let req = OffsetFetchRequest::default().with_groups(vec![g]);
    let resp = client
        .coordinator_call(group, GROUP, &req, |r| r.groups.first().map_or(r.error_code, |g| g.error_code))
        .await?;
    for g in resp.groups {
        ClientError::check(|| format!("offsets of group '{group}'"), g.error_code, None)?;
        for t in g.topics {
            for p in t.partitions.into_iter().filter(|p| p.error_code == 0 && p.committed_offset >= 0) {
                out.insert((t.name.0.to_string(), p.partition_index), p.committed_offset);
            }
        }
    }
    Ok(out)
}

async fn describe(client: &mut Client, group: &str) -> Result<Outcome, ClientError> {
    let view = view(client, group).await?;
    let kind = view.as_ref().map_or("classic", |v| v.kind);
    let committed = committed(client, group, kind).await?;
    let Some(view) = view.or_else(|| {
        // a group with only committed offsets (no members ever joined through a coordinator that kept it)
        (!committed.is_empty()).then(|| GroupView {
            kind: "classic",
            state: "Empty".into(),
            protocol: String::new(),
            members: Vec::new(),
        })
    }) else {
        return Err(ClientError::kafka(format!("group '{group}'"), ResponseError::GroupIdNotFound.code(), None));
    };
    let coordinator = client.coordinator(group, GROUP).await?;
    let mut owner: BTreeMap<Tp, usize> = BTreeMap::new();
    for (i, m) in view.members.iter().enumerate() {
        for tp in &m.assignment {
            owner.insert(tp.clone(), i);
        }
    }
    let partitions: BTreeSet<Tp> = committed.keys().chain(owner.keys()).cloned().collect();
    let ends: BTreeMap<Tp, Option<i64>> = client
        .list_offsets(partitions.iter().map(|tp| (tp.clone(), LATEST)).collect())
        .await?
        .into_iter()
        .map(|(tp, r)| (tp, r.ok()))
        .collect();

    let mut total_lag: i64 = 0;
    let mut table = Table::new(&["TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG", "MEMBER", "CLIENT-ID", "HOST"]);
    let mut offsets_json = Vec::new();
    for tp in &partitions {
        let c = committed.get(tp).copied();
        let end = ends.get(tp).copied().flatten();
        let lag = match (c, end) {
            (Some(c), Some(e)) => Some((e - c).max(0)),
            _ => None,
        };
        total_lag += lag.unwrap_or(0);
        let m = owner.get(tp).map(|i| &view.members[*i]);
        table.row(vec![
            tp.0.clone(),
            tp.1.to_string(),
            or_dash(c),
            or_dash(end),
            or_dash(lag),
            or_dash(m.map(|m| m.member_id.clone())),
            or_dash(m.map(|m| m.client_id.clone())),
            or_dash(m.map(|m| m.host.clone())),
        ]);
        offsets_json.push(json!({
            "topic": tp.0, "partition": tp.1, "committed_offset": c, "log_end_offset": end, "lag": lag,
            "member_id": m.map(|m| m.member_id.clone()),
        }));
    }
    let members_json: Vec<Value> = view
        .members
        .iter()
        .map(|m| {
            json!({
                "member_id": m.member_id, "instance_id": m.instance_id, "client_id": m.client_id, "host": m.host,
                "assignment": m.assignment.iter().map(|(t, p)| json!({"topic": t, "partition": p})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let offset_word = if view.kind == "share" { "start offsets" } else { "committed offsets" };
    let text = format!(
        "GROUP        {group}\nTYPE         {}\nSTATE        {}\nPROTOCOL     {}\nCOORDINATOR  {coordinator}\nMEMBERS      {}\nTOTAL LAG    {total_lag}\n\n{}",
        view.kind,
        view.state,
        or_dash((!view.protocol.is_empty()).then_some(&view.protocol)),
        view.members.len(),
        if partitions.is_empty() { format!("(no {offset_word} and no assignments)\n") } else { table.render() }
    );
    let json = json!({
        "group": group, "type": view.kind, "state": view.state, "protocol": view.protocol,
        "coordinator": coordinator, "members": members_json, "offsets": offsets_json, "total_lag": total_lag,
    });
    Ok(Outcome::new(json, text))
}

/// States in which a group has nobody consuming, so its offsets may be moved.
fn inactive(state: &str) -> bool {
    state.eq_ignore_ascii_case("Empty") || state.eq_ignore_ascii_case("Dead")
}

async fn seek(
    client: &mut Client,
    group: &str,
    to: &str,
    specs: &[String],
    all_topics: bool,
    execute: bool,
) -> Result<Outcome, ClientError> {
    let position = Position::parse(to).map_err(ClientError::Config)?;
    let view = view(client, group).await?;
    if let Some(v) = &view {
        if !inactive(&v.state) || !v.members.is_empty() {
            return Err(ClientError::kafka(
                format!("group '{group}'"),
                ResponseError::NonEmptyGroup.code(),
                Some(format!(
                    "offsets can only be moved while the group is inactive; it is {} with {} members",
                    v.state,
                    v.members.len()
                )),
            ));
        }
    }
    let kind = view.as_ref().map_or("classic", |v| v.kind);
    let current = committed(client, group, kind).await?;
    let tps: Vec<Tp> =
        if all_topics { current.keys().cloned().collect() } else { partitions_of(client, specs).await? };
    if tps.is_empty() {
        return Err(ClientError::NotFound(format!("group '{group}' has no committed offsets to move")));
    }
    let marks: BTreeMap<Tp, (i64, i64)> =
        client.watermarks(&tps).await?.into_iter().map(|(tp, r)| r.map(|m| (tp, m))).collect::<Result<_, _>>()?;
    let by_time: BTreeMap<Tp, i64> = match position {
        Position::Timestamp(ts) => client
            .list_offsets(tps.iter().map(|tp| (tp.clone(), ts)).collect())
            .await?
            .into_iter()
            .map(|(tp, r)| r.map(|o| (tp, o)))
            .collect::<Result<_, _>>()?,
        _ => BTreeMap::new(),
    };
    let mut plan = Vec::new();
    for tp in &tps {
        let (start, end) = marks.get(tp).copied().unwrap_or((0, 0));
        let new = match position {
            Position::Earliest => start,
            Position::Latest => end,
            // as kafka-consumer-groups.sh: an offset outside the log is moved to its nearer end
            Position::Offset(o) => o.clamp(start, end),
            Position::Timestamp(_) => by_time.get(tp).copied().filter(|o| *o >= 0).unwrap_or(end),
        };
        plan.push((tp.clone(), current.get(tp).copied(), new));
    }
    if execute {
        commit(client, group, kind, &plan, None).await?;
    }
    let mut table = Table::new(&["TOPIC", "PARTITION", "CURRENT", "NEW"]);
    let mut json = Vec::new();
    for ((t, p), cur, new) in &plan {
        table.row(vec![t.clone(), p.to_string(), or_dash(*cur), new.to_string()]);
        json.push(json!({"topic": t, "partition": p, "current_offset": cur, "new_offset": new}));
    }
    let footer = if execute {
        format!("moved the offsets of group '{group}'\n")
    } else {
        "plan only: nothing changed; add --execute to move the offsets\n".to_string()
    };
    let text = format!("{}{footer}", table.render());
    Ok(Outcome::new(json!({"group": group, "executed": execute, "partitions": json}), text))
}

/// Writes new offsets: OffsetCommit — as a member (its id and epoch) or as an admin
/// (generation -1, no member) — or, for a share group, AlterShareGroupOffsets.
pub(super) async fn commit(
    client: &mut Client,
    group: &str,
    kind: &str,
    plan: &[(Tp, Option<i64>, i64)],
    member: Option<(&str, i32)>,
) -> Result<(), ClientError> {
    let mut by_topic: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    for ((t, p), _, new) in plan {
        by_topic.entry(t.as_str()).or_default().push((*p, *new));
    }
    if kind == "share" {
        let topics = by_topic
            .iter()
            .map(|(t, ps)| {
                let parts = ps
                    .iter()
                    .map(|(p, o)| {
                        AlterShareGroupOffsetsRequestPartition::default().with_partition_index(*p).with_start_offset(*o)
                    })
                    .collect();
                AlterShareGroupOffsetsRequestTopic::default().with_topic_name(topic_name(t)).with_partitions(parts)
            })
            .collect();
        let req = AlterShareGroupOffsetsRequest::default().with_group_id(group_id(group)).with_topics(topics);
        let resp = client.coordinator_call(group, GROUP, &req, |r| r.error_code).await?;
        ClientError::check(
            || format!("moving offsets of group '{group}'"),
            resp.error_code,
            resp.error_message.as_deref(),
        )?;
        for t in resp.responses {
            for p in t.partitions {
                let what = || format!("moving offsets of group '{group}' on {}-{}", t.topic_name.0, p.partition_index);
                ClientError::check(what, p.error_code, p.error_message.as_deref())?;
            }
        }
        return Ok(());
    }
    let topics = by_topic
        .iter()
        .map(|(t, ps)| {
            let parts = ps
                .iter()
                .map(|(p, o)| {
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(*p)
                        .with_committed_offset(*o)
                        .with_committed_leader_epoch(-1)
                })
                .collect();
            OffsetCommitRequestTopic::default().with_name(topic_name(t)).with_partitions(parts)
        })
        .collect();
    let req = OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(member.map_or(-1, |m| m.1))
        .with_member_id(StrBytes::from_string(member.map_or_else(String::new, |m| m.0.to_string())))
        .with_retention_time_ms(-1)
        .with_topics(topics);
    let first_error = |r: &kafka_protocol::messages::OffsetCommitResponse| {
        r.topics.iter().flat_map(|t| t.partitions.iter()).map(|p| p.error_code).find(|c| *c != 0).unwrap_or(0)
    };
    let resp = client.coordinator_call(group, GROUP, &req, first_error).await?;
    for t in resp.topics {
        for p in t.partitions {
            ClientError::check(
                || format!("committing offsets of group '{group}' on {}-{}", t.name.0, p.partition_index),
                p.error_code,
                None,
            )?;
        }
    }
    Ok(())
}

async fn delete(client: &mut Client, groups: &[String]) -> Result<Outcome, ClientError> {
    for g in groups {
        let req = DeleteGroupsRequest::default().with_groups_names(vec![group_id(g)]);
        let resp = client.coordinator_call(g, GROUP, &req, |r| r.results.first().map_or(0, |x| x.error_code)).await?;
        for r in resp.results {
            ClientError::check(|| format!("deleting group '{g}'"), r.error_code, None)?;
        }
    }
    let text: String = groups.iter().map(|g| format!("deleted group '{g}'\n")).collect();
    Ok(Outcome::new(json!({"deleted": groups}), text))
}

async fn delete_offsets(client: &mut Client, group: &str, specs: &[String]) -> Result<Outcome, ClientError> {
    let tps = partitions_of(client, specs).await?;
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in &tps {
        by_topic.entry(t.as_str()).or_default().push(*p);
    }
    let topics = by_topic
        .iter()
        .map(|(t, ps)| {
            let parts = ps.iter().map(|p| OffsetDeleteRequestPartition::default().with_partition_index(*p)).collect();
            OffsetDeleteRequestTopic::default().with_name(topic_name(t)).with_partitions(parts)
        })
        .collect();
    let req = OffsetDeleteRequest::default().with_group_id(group_id(group)).with_topics(topics);
    let resp = client.coordinator_call(group, GROUP, &req, |r| r.error_code).await?;
    ClientError::check(|| format!("deleting offsets of group '{group}'"), resp.error_code, None)?;
    let mut json = Vec::new();
    for t in resp.topics {
        for p in t.partitions {
            let what = || format!("deleting offsets of group '{group}' on {}-{}", t.name.0, p.partition_index);
            ClientError::check(what, p.error_code, None)?;
            json.push(json!({"topic": t.name.0.to_string(), "partition": p.partition_index}));
        }
    }
    let text = format!("deleted {} committed offsets of group '{group}'\n", json.len());
    Ok(Outcome::new(json!({"group": group, "deleted": json}), text))
}
