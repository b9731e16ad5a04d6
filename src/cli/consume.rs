//! `weir consume`: Fetch from the partitions' leaders and print. With `-g GROUP` it joins the
//! group as a KIP-848 consumer (ConsumerGroupHeartbeat), starts from the committed offsets and
//! commits what it printed; without, it reads the partitions directly.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use clap::Args;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::{ApiKey, ConsumerGroupHeartbeatRequest, GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Record;
use kafka_protocol::ResponseError;
use serde_json::{json, Value};

use super::group;
use super::output::{Format, Outcome};
use super::position::Position;
use crate::client::offsets::{EARLIEST, LATEST};
use crate::client::{partitions_named, Client, ClientError, Tp, GROUP};

pub const EXAMPLES: &str = "Examples:
  weir consume orders --from beginning -e            # everything there is, then exit
  weir consume orders -p 0 --from 1500 -n 10
  weir consume orders --from -15m --format json | jq .value
  weir consume orders -g billing                     # as a member of group billing, committing
  weir consume orders --from 2026-12-01T09:00:00Z -K :
With --format json each record is one line:
{\"topic\", \"partition\", \"offset\", \"timestamp\", \"key\", \"value\", \"headers\": [{\"key\", \"value\"}]}";

const COMMIT_EVERY: Duration = Duration::from_secs(5);
const PARTITION_MAX_BYTES: i32 = 1 << 20;

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    topic: String,
    /// Only these partitions (repeatable; default all). Not with -g.
    #[arg(short = 'p', long = "partition", conflicts_with = "group")]
    partitions: Vec<i32>,
    /// Consume as a member of this consumer group, from its committed offsets, committing.
    #[arg(short = 'g', long)]
    group: Option<String>,
    /// Where to start (with -g: where a partition without a committed offset starts):
    /// beginning, end, an OFFSET, a time (2026-12-01T09:30:00Z, @EPOCH_MILLIS) or -DURATION.
    #[arg(long, default_value = "end", allow_hyphen_values = true)]
    from: String,
    /// Stop after this many records.
    #[arg(short = 'n', long)]
    count: Option<u64>,
    /// Exit once every partition is read to its end (kcat's -e).
    #[arg(short = 'e', long = "exit")]
    exit_at_end: bool,
    /// Text output: print KEY DELIM VALUE instead of the value alone.
    #[arg(short = 'K', long = "key-delimiter", value_name = "DELIM")]
    key_delimiter: Option<String>,
    /// Read only committed transactional records (read_committed).
    #[arg(long)]
    read_committed: bool,
    /// No progress line on stderr.
    #[arg(short = 'q', long)]
    quiet: bool,
}

fn text(b: &Option<bytes::Bytes>) -> Value {
    b.as_ref().map_or(Value::Null, |b| Value::String(String::from_utf8_lossy(b).into_owned()))
}

fn print_record(
    out: &mut impl Write,
    topic: &str,
    partition: i32,
    r: &Record,
    format: Format,
    delim: Option<&str>,
) -> std::io::Result<()> {
    match format {
        Format::Json => {
            let headers: Vec<Value> =
                r.headers.iter().map(|(k, v)| json!({"key": k.to_string(), "value": text(v)})).collect();
            let line = json!({
                "topic": topic, "partition": partition, "offset": r.offset, "timestamp": r.timestamp,
                "key": text(&r.key), "value": text(&r.value), "headers": headers,
            });
            writeln!(out, "{line}")
        }
        Format::Text => {
            if let Some(d) = delim {
                out.write_all(r.key.as_deref().unwrap_or_default())?;
                out.write_all(d.as_bytes())?;
            }
            out.write_all(r.value.as_deref().unwrap_or_default())?;
            out.write_all(b"\n")
        }
    }
}

/// This process as a KIP-848 group member.
struct Membership {
    group: String,
    member_id: String,
    epoch: i32,
    topic: String,
    topic_id: uuid::Uuid,
    next_heartbeat: Instant,
    interval: Duration,
}

enum Change {
    Same,
    Assigned(Vec<i32>),
    /// Fenced: the partitions are someone else's now; rejoin without committing.
    Lost,
}

impl Membership {
    fn request(&self, owned: &[i32], epoch: i32) -> ConsumerGroupHeartbeatRequest {
        let owned = vec![TopicPartitions::default().with_topic_id(self.topic_id).with_partitions(owned.to_vec())];
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.group.clone())))
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_member_epoch(epoch)
            .with_rebalance_timeout_ms(60_000)
            .with_subscribed_topic_names(Some(vec![TopicName(StrBytes::from_string(self.topic.clone()))]))
            .with_topic_partitions(Some(owned))
    }

    async fn heartbeat(&mut self, client: &mut Client, owned: &[i32]) -> Result<Change, ClientError> {
        let req = self.request(owned, self.epoch);
        let resp = client.coordinator_call(&self.group, GROUP, &req, |r| r.error_code).await?;
        let fenced = [ResponseError::FencedMemberEpoch.code(), ResponseError::UnknownMemberId.code()];
        if fenced.contains(&resp.error_code) {
            self.epoch = 0;
            self.next_heartbeat = Instant::now();
            return Ok(Change::Lost);
        }
        ClientError::check(|| format!("group '{}'", self.group), resp.error_code, resp.error_message.as_deref())?;
        if let Some(id) = resp.member_id.filter(|id| !id.is_empty()) {
            self.member_id = id.to_string();
        }
        self.epoch = resp.member_epoch;
        self.interval = Duration::from_millis(resp.heartbeat_interval_ms.clamp(100, 30_000) as u64);
        self.next_heartbeat = Instant::now() + self.interval;
        Ok(match resp.assignment {
            None => Change::Same,
            Some(a) => {
                let mut mine: Vec<i32> = a
                    .topic_partitions
                    .into_iter()
                    .filter(|t| t.topic_id == self.topic_id)
                    .flat_map(|t| t.partitions)
                    .collect();
                mine.sort_unstable();
                // acknowledge the new assignment at once
                self.next_heartbeat = Instant::now();
                Change::Assigned(mine)
            }
        })
    }

    async fn leave(&mut self, client: &mut Client) {
        let req = self.request(&[], -1);
        let _ = client.coordinator_call(&self.group, GROUP, &req, |r| r.error_code).await;
    }
}

/// Where each partition starts: `from`, resolved through ListOffsets.
async fn resolve(
    client: &mut Client,
    topic: &str,
    partitions: &[i32],
    from: Position,
) -> Result<BTreeMap<i32, i64>, ClientError> {
    let spec = |p: i32| -> (Tp, i64) {
        let ts = match from {
            Position::Earliest => EARLIEST,
            Position::Latest => LATEST,
            Position::Timestamp(t) => t,
            Position::Offset(_) => EARLIEST,
        };
        ((topic.to_string(), p), ts)
    };
    let found = client.list_offsets(partitions.iter().map(|p| spec(*p)).collect()).await?;
    let ends: BTreeMap<i32, i64> = if matches!(from, Position::Timestamp(_) | Position::Offset(_)) {
        let latest =
            client.list_offsets(partitions.iter().map(|p| ((topic.to_string(), *p), LATEST)).collect()).await?;
        latest.into_iter().map(|((_, p), r)| r.map(|o| (p, o))).collect::<Result<_, _>>()?
    } else {
        BTreeMap::new()
    };
    let mut out = BTreeMap::new();
    for ((_, p), r) in found {
        let o = r?;
        let end = ends.get(&p).copied().unwrap_or(o);
        let start = match from {
            Position::Offset(want) => want.clamp(o, end),
            Position::Timestamp(_) if o < 0 => end,
            _ => o,
        };
        out.insert(p, start);
    }
    Ok(out)
}

pub async fn run(client: &mut Client, args: ConsumeArgs, format: Format) -> Result<Outcome, ClientError> {
    let from = Position::parse(&args.from).map_err(ClientError::Config)?;
    let topic = args.topic.clone();
    let all = client.partitions(&topic).await?;
    let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
    let mut member = None;
    let mut committed_at: BTreeMap<i32, i64> = BTreeMap::new();
    let heartbeat_version = client.version(ApiKey::ConsumerGroupHeartbeat, (0, 1)).await?;
    match &args.group {
        Some(g) if heartbeat_version.is_some() => {
            // the assignment names topics by id
            let topic_id = client.topic_id(&topic).unwrap_or_default();
            let v1 = heartbeat_version.is_some_and(|v| v >= 1);
            member = Some(Membership {
                group: g.clone(),
                member_id: if v1 { uuid::Uuid::new_v4().to_string() } else { String::new() },
                epoch: 0,
                topic: topic.clone(),
                topic_id,
                next_heartbeat: Instant::now(),
                interval: Duration::from_secs(5),
            });
        }
        Some(g) => {
            // no KIP-848 on this cluster: read every partition from the group's offsets
            let committed = group::committed(client, g, "classic").await?;
            let mut start = resolve(client, &topic, &all, from).await?;
            for (p, o) in start.iter_mut() {
                if let Some(c) = committed.get(&(topic.clone(), *p)) {
                    *o = *c;
                    committed_at.insert(*p, *c);
                }
            }
            positions = start;
        }
        None => {
            let chosen = partitions_named(&topic, all, &args.partitions)?;
            positions = resolve(client, &topic, &chosen, from).await?;
        }
    }

    let progress = !args.quiet && std::io::stderr().is_terminal() && !std::io::stdout().is_terminal();
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut last_commit = Instant::now();
    let mut high_watermarks: BTreeMap<i32, i64> = BTreeMap::new();
    let mut printed: u64 = 0;
    let stdout = std::io::stdout();
    let isolation = i8::from(args.read_committed);
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    let result: Result<(), ClientError> = async {
        loop {
            if let Some(m) = member.as_mut() {
                if Instant::now() >= m.next_heartbeat {
                    let owned: Vec<i32> = positions.keys().copied().collect();
                    match m.heartbeat(client, &owned).await? {
                        Change::Same => {}
                        Change::Lost => {
                            positions.clear();
                            committed_at.clear();
                        }
                        Change::Assigned(mine) => {
                            let revoked: Vec<i32> = positions.keys().filter(|p| !mine.contains(p)).copied().collect();
                            commit_positions(
                                client,
                                m.group.as_str(),
                                &topic,
                                &positions,
                                &mut committed_at,
                                Some((m.member_id.as_str(), m.epoch)),
                                &revoked,
                            )
                            .await?;
                            for p in &revoked {
                                positions.remove(p);
                                committed_at.remove(p);
                            }
                            let added: Vec<i32> = mine.iter().filter(|p| !positions.contains_key(p)).copied().collect();
                            if !added.is_empty() {
                                let committed = group::committed(client, &m.group, "consumer").await?;
                                let mut start = resolve(client, &topic, &added, from).await?;
                                // a partition without a committed offset gets one at its reset
                                // position on the next commit, as Kafka's consumers do
                                for (p, o) in start.iter_mut() {
                                    if let Some(c) = committed.get(&(topic.clone(), *p)) {
                                        *o = *c;
                                        committed_at.insert(*p, *c);
                                    }
                                }
                                positions.extend(start);
                            }
                        }
                    }
                }
            }
            if let (Some(g), true) = (&args.group, last_commit.elapsed() >= COMMIT_EVERY) {
                let m = member.as_ref().map(|m| (m.member_id.as_str(), m.epoch));
                let owned: Vec<i32> = positions.keys().copied().collect();
                commit_positions(client, g, &topic, &positions, &mut committed_at, m, &owned).await?;
                last_commit = Instant::now();
            }
            if positions.is_empty() {
                let wait = member
                    .as_ref()
                    .map_or(Duration::from_millis(200), |m| m.next_heartbeat.saturating_duration_since(Instant::now()));
                tokio::select! {
                    _ = &mut stop => return Ok(()),
                    _ = tokio::time::sleep(wait.min(Duration::from_millis(500))) => continue,
                }
            }
            let wanted: Vec<(Tp, i64)> = positions.iter().map(|(p, o)| ((topic.clone(), *p), *o)).collect();
            let fetched = tokio::select! {
                _ = &mut stop => return Ok(()),
                f = client.fetch(wanted, 500, PARTITION_MAX_BYTES, isolation) => f?,
            };
            let mut out = std::io::BufWriter::new(stdout.lock());
            for ((_, p), r) in fetched {
                let Some(position) = positions.get(&p).copied() else { continue };
                let f = match r {
                    Ok(f) => f,
                    Err(e) if e.code() == Some(ResponseError::OffsetOutOfRange.code()) => {
                        let reset = if from == Position::Latest { Position::Latest } else { Position::Earliest };
                        let start = resolve(client, &topic, &[p], reset).await?;
                        positions.extend(start);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                high_watermarks.insert(p, f.high_watermark);
                for r in f.records.iter().filter(|r| r.offset >= position) {
                    if let Err(e) = print_record(&mut out, &topic, p, r, format, args.key_delimiter.as_deref()) {
                        return stdout_closed(e);
                    }
                    printed += 1;
                    positions.insert(p, r.offset + 1);
                    if args.count.is_some_and(|n| printed >= n) {
                        return out.flush().or_else(stdout_closed);
                    }
                }
                if let Some(next) = f.next_offset {
                    positions.insert(p, next.max(positions.get(&p).copied().unwrap_or(position)));
                }
            }
            if let Err(e) = out.flush() {
                return stdout_closed(e);
            }
            if args.exit_at_end
                && member.as_ref().is_none_or(|m| m.epoch > 0)
                && positions.iter().all(|(p, o)| high_watermarks.get(p).is_some_and(|hw| o >= hw))
            {
                return Ok(());
            }
            if progress && last_progress.elapsed() >= Duration::from_secs(1) {
                last_progress = Instant::now();
                let rate = printed as f64 / started.elapsed().as_secs_f64().max(0.001);
                eprint!("\rconsumed {printed} records ({rate:.0}/s)   ");
            }
        }
    }
    .await;
    if progress && started.elapsed() >= Duration::from_secs(1) {
        eprintln!();
    }
    // on the way out: commit what was printed, then leave the group
    if let Some(g) = &args.group {
        let m = member.as_ref().map(|m| (m.member_id.as_str(), m.epoch));
        let owned: Vec<i32> = positions.keys().copied().collect();
        let committed = commit_positions(client, g, &topic, &positions, &mut committed_at, m, &owned).await;
        if let Some(m) = member.as_mut() {
            m.leave(client).await;
        }
        result?;
        committed?;
    } else {
        result?;
    }
    Ok(Outcome::printed())
}

/// Writing stdout failed: a reader that went away (`| head`) ends the run quietly, as it
/// ends kcat; anything else is an error.
fn stdout_closed(e: std::io::Error) -> Result<(), ClientError> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(ClientError::Protocol(format!("writing stdout: {e}")))
    }
}

/// Commits the positions of `which` partitions that moved since their last commit.
async fn commit_positions(
    client: &mut Client,
    group: &str,
    topic: &str,
    positions: &BTreeMap<i32, i64>,
    committed_at: &mut BTreeMap<i32, i64>,
    member: Option<(&str, i32)>,
    which: &[i32],
) -> Result<(), ClientError> {
    let plan: Vec<(Tp, Option<i64>, i64)> = which
        .iter()
        .filter_map(|p| {
            let pos = *positions.get(p)?;
            (committed_at.get(p) != Some(&pos)).then(|| ((topic.to_string(), *p), committed_at.get(p).copied(), pos))
        })
        .collect();
    if plan.is_empty() {
        return Ok(());
    }
    group::commit(client, group, "consumer", &plan, member).await?;
    for ((_, p), _, pos) in plan {
        committed_at.insert(p, pos);
    }
    Ok(())
}
