//! `weir-bench share-consume`: share-group (KIP-932) consumers over the raw protocol (the
//! rdkafka crate's librdkafka predates share consumers), so the broker's cost is what is
//! measured. Each consumer is a thread with its own connection: it joins with
//! ShareGroupHeartbeat, then ShareFetches in a loop, accepting each batch's records in the
//! next fetch (librdkafka's implicit mode). With `--ack-rtt` it accepts with a separate
//! ShareAcknowledge instead and reports that round trip's latency.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use clap::Args;
use kafka_protocol::messages::share_fetch_request::{AcknowledgementBatch, FetchPartition, FetchTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use serde_json::{json, Value};

use super::{merge, percentile_ms, round, BrokerSampler, Progress, Target};

#[derive(Args)]
pub struct ShareConsumeArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long, default_value = "bench")]
    topic: String,
    /// Stop after this many records.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Share consumers, each on its own thread and connection, all in one share group.
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// The share group (a fresh one reads the topic from the start: share.auto.offset.reset
    /// is set to earliest for it).
    #[arg(long, default_value = "bench-share")]
    group: String,
    /// Acknowledge with ShareAcknowledge after each fetch and report its round trip.
    #[arg(long)]
    ack_rtt: bool,
}

/// One connection speaking the protocol by hand.
struct Conn {
    stream: TcpStream,
    correlation: i32,
}

impl Conn {
    fn open(addr: &str) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Conn { stream, correlation: 0 })
    }

    fn call<Req: Encodable, Resp: Decodable + HeaderVersion>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> anyhow::Result<Resp> {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("weir-bench-share")));
        let mut body = BytesMut::new();
        header.encode(&mut body, key.request_header_version(version))?;
        req.encode(&mut body, version)?;
        self.stream.write_all(&(body.len() as i32).to_be_bytes())?;
        self.stream.write_all(&body)?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let mut frame = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
        self.stream.read_exact(&mut frame)?;
        let mut frame = Bytes::from(frame);
        ResponseHeader::decode(&mut frame, Resp::header_version(version))?;
        Resp::decode(&mut frame, version)
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// `share.auto.offset.reset=earliest` for the group (IncrementalAlterConfigs, GROUP = 32).
fn read_from_start(addr: &str, group: &str) -> anyhow::Result<()> {
    use incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(32)
        .with_resource_name(s(group))
        .with_configs(vec![AlterableConfig::default()
            .with_name(s("share.auto.offset.reset"))
            .with_config_operation(0)
            .with_value(Some(s("earliest")))])]);
    let r: IncrementalAlterConfigsResponse = Conn::open(addr)?.call(ApiKey::IncrementalAlterConfigs, 1, &req)?;
    let code = r.responses.first().map_or(-1, |r| r.error_code);
    anyhow::ensure!(code == 0, "setting share.auto.offset.reset failed: error {code}");
    Ok(())
}

/// Partitions by topic id, as an assignment lists them.
type Assignment = Vec<(uuid::Uuid, Vec<i32>)>;

/// Joins the group; returns the member epoch once an assignment arrived.
fn join(conn: &mut Conn, group: &str, member: &str, topic: &str) -> anyhow::Result<(i32, Assignment)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut epoch = 0;
    loop {
        let req = ShareGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_member_id(s(member))
            .with_member_epoch(epoch)
            .with_subscribed_topic_names((epoch == 0).then(|| vec![TopicName(s(topic))]));
        let r: ShareGroupHeartbeatResponse = conn.call(ApiKey::ShareGroupHeartbeat, 1, &req)?;
        anyhow::ensure!(r.error_code == 0, "ShareGroupHeartbeat error {} {:?}", r.error_code, r.error_message);
        epoch = r.member_epoch;
        if let Some(a) = r.assignment.filter(|a| !a.topic_partitions.is_empty()) {
            let parts = a.topic_partitions.into_iter().map(|t| (t.topic_id, t.partitions)).collect();
            return Ok((epoch, parts));
        }
        anyhow::ensure!(Instant::now() < deadline, "no assignment within 30 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// ACCEPT for every acquired range of a ShareFetch answer, by topic and partition.
type Acks = Vec<(uuid::Uuid, i32, Vec<(i64, i64)>)>;

/// Whether `records` (whole batches) hold every offset of `ranges`: the broker sent the
/// records it said it acquired.
fn covers(records: &[u8], ranges: &[(i64, i64)]) -> bool {
    let mut batches = Vec::new();
    let mut rest = records;
    while let Some(h) = weir::log::batch::BatchHeader::parse(rest).filter(|h| h.total_size() <= rest.len()) {
        batches.push((h.base_offset, h.last_offset()));
        rest = &rest[h.total_size()..];
    }
    rest.is_empty()
        && ranges.iter().all(|(f, l)| (*f..=*l).all(|o| batches.iter().any(|(b, e)| (*b..=*e).contains(&o))))
}

fn acks_of(r: &ShareFetchResponse) -> anyhow::Result<(Acks, u64, u64)> {
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut acks = Vec::new();
    for t in &r.responses {
        for p in &t.partitions {
            bytes += p.records.as_ref().map_or(0, |b| b.len() as u64);
            let ranges: Vec<(i64, i64)> = p.acquired_records.iter().map(|a| (a.first_offset, a.last_offset)).collect();
            let sent = p.records.as_deref().unwrap_or_default();
            anyhow::ensure!(
                covers(sent, &ranges),
                "partition {}: acquired {ranges:?} not in the records sent",
                p.partition_index
            );
            records += ranges.iter().map(|(f, l)| (l - f + 1) as u64).sum::<u64>();
            if !ranges.is_empty() {
                acks.push((t.topic_id, p.partition_index, ranges));
            }
        }
    }
    Ok((acks, records, bytes))
}

fn ack_batches(ranges: &[(i64, i64)]) -> Vec<AcknowledgementBatch> {
    ranges
        .iter()
        .map(|(f, l)| {
            AcknowledgementBatch::default().with_first_offset(*f).with_last_offset(*l).with_acknowledge_types(vec![1])
        })
        .collect()
}

struct Shared {
    counter: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    want: u64,
}

/// One share consumer until the group has consumed `want` records (or 10 s without any).
fn consume_one(
    addr: &str,
    group: &str,
    topic: &str,
    index: usize,
    ack_rtt: bool,
    shared: &Shared,
) -> anyhow::Result<Vec<u64>> {
    let member = format!("bench-member-{index}-{}", uuid::Uuid::new_v4());
    let mut conn = Conn::open(addr)?;
    let (_epoch, assigned) = join(&mut conn, group, &member, topic)?;
    let mut session_epoch = 0;
    let mut pending: Acks = Vec::new();
    let mut rtts_us = Vec::new();
    let mut idle_since = Instant::now();
    while shared.counter.load(Ordering::Relaxed) < shared.want && idle_since.elapsed() < Duration::from_secs(10) {
        let mut topics: Vec<FetchTopic> = Vec::new();
        if session_epoch == 0 {
            for (id, parts) in &assigned {
                let partitions = parts.iter().map(|p| FetchPartition::default().with_partition_index(*p)).collect();
                topics.push(FetchTopic::default().with_topic_id(*id).with_partitions(partitions));
            }
        }
        for (id, p, ranges) in pending.drain(..) {
            let part =
                FetchPartition::default().with_partition_index(p).with_acknowledgement_batches(ack_batches(&ranges));
            topics.push(FetchTopic::default().with_topic_id(id).with_partitions(vec![part]));
        }
        let req = ShareFetchRequest::default()
            .with_group_id(Some(GroupId(s(group))))
            .with_member_id(Some(s(&member)))
            .with_share_session_epoch(session_epoch)
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(50 << 20)
            .with_max_records(2000)
            .with_batch_size(2000)
            .with_topics(topics);
        let r: ShareFetchResponse = conn.call(ApiKey::ShareFetch, 1, &req)?;
        anyhow::ensure!(r.error_code == 0, "ShareFetch error {} {:?}", r.error_code, r.error_message);
        session_epoch += 1;
        let (acks, records, bytes) = acks_of(&r)?;
        if records > 0 {
            idle_since = Instant::now();
            shared.counter.fetch_add(records, Ordering::Relaxed);
            shared.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        if ack_rtt && !acks.is_empty() {
            let topics = acks
                .iter()
                .map(|(id, p, ranges)| {
                    let batches = ranges
                        .iter()
                        .map(|(f, l)| {
                            share_acknowledge_request::AcknowledgementBatch::default()
                                .with_first_offset(*f)
                                .with_last_offset(*l)
                                .with_acknowledge_types(vec![1])
                        })
                        .collect();
                    share_acknowledge_request::AcknowledgeTopic::default().with_topic_id(*id).with_partitions(vec![
                        share_acknowledge_request::AcknowledgePartition::default()
                            .with_partition_index(*p)
                            .with_acknowledgement_batches(batches),
                    ])
                })
                .collect();
            let req = ShareAcknowledgeRequest::default()
                .with_group_id(Some(GroupId(s(group))))
                .with_member_id(Some(s(&member)))
                .with_share_session_epoch(session_epoch)
                .with_topics(topics);
            let sent = Instant::now();
            let r: ShareAcknowledgeResponse = conn.call(ApiKey::ShareAcknowledge, 1, &req)?;
            rtts_us.push(sent.elapsed().as_micros() as u64);
            anyhow::ensure!(r.error_code == 0, "ShareAcknowledge error {}", r.error_code);
            session_epoch += 1;
        } else {
            pending = acks;
        }
    }
    // the last acknowledgements, closing the session; then leave the group
    let topics = pending
        .into_iter()
        .map(|(id, p, ranges)| {
            let part =
                FetchPartition::default().with_partition_index(p).with_acknowledgement_batches(ack_batches(&ranges));
            FetchTopic::default().with_topic_id(id).with_partitions(vec![part])
        })
        .collect();
    let close = ShareFetchRequest::default()
        .with_group_id(Some(GroupId(s(group))))
        .with_member_id(Some(s(&member)))
        .with_share_session_epoch(-1)
        .with_topics(topics);
    let _: ShareFetchResponse = conn.call(ApiKey::ShareFetch, 1, &close)?;
    let leave = ShareGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(&member))
        .with_member_epoch(-1);
    let _: ShareGroupHeartbeatResponse = conn.call(ApiKey::ShareGroupHeartbeat, 1, &leave)?;
    Ok(rtts_us)
}

pub fn share_consume(a: ShareConsumeArgs) -> anyhow::Result<Value> {
    let addr = a.target.bootstrap.split(',').next().unwrap_or_default().to_string();
    read_from_start(&addr, &a.group)?;
    let shared =
        Arc::new(Shared { counter: Arc::new(AtomicU64::new(0)), bytes: Arc::new(AtomicU64::new(0)), want: a.records });
    let progress = Progress::start(&a.target.label, shared.counter.clone(), 100);
    let sampler = BrokerSampler::start(&a.target.broker_pid);
    let started = Instant::now();
    let threads: Vec<_> = (0..a.consumers.max(1))
        .map(|i| {
            let (addr, group, topic, shared) = (addr.clone(), a.group.clone(), a.topic.clone(), shared.clone());
            let ack_rtt = a.ack_rtt;
            std::thread::spawn(move || consume_one(&addr, &group, &topic, i, ack_rtt, &shared))
        })
        .collect();
    let mut rtts = Vec::new();
    for t in threads {
        rtts.extend(t.join().map_err(|_| anyhow::anyhow!("share consumer panicked"))??);
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(progress);
    let (records, bytes) = (shared.counter.load(Ordering::Relaxed), shared.bytes.load(Ordering::Relaxed));
    let mut out = json!({
        "scenario": a.target.label, "kind": "share-consume", "records": records, "consumers": a.consumers,
        "seconds": round(seconds, 3), "records_per_s": round(records as f64 / seconds, 0),
        "mb_per_s": round(bytes as f64 / seconds / 1e6, 1),
    });
    if !rtts.is_empty() {
        rtts.sort_unstable();
        merge(
            &mut out,
            json!({
                "acks": rtts.len(), "ack_rtt_p50_ms": percentile_ms(&rtts, 0.50), "ack_rtt_p99_ms": percentile_ms(&rtts, 0.99),
            }),
        );
    }
    if let Some(s) = sampler {
        merge(&mut out, s.finish(bytes));
    }
    Ok(out)
}
