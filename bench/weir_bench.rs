//! weir-bench: load generator and measuring tool for Weir (or any Kafka broker), on rdkafka.
//!
//! In the spirit of Kafka's `kafka-producer-perf-test`, `kafka-consumer-perf-test` and
//! `EndToEndLatency`: produce and consume throughput, end-to-end latency percentiles at a fixed
//! offered rate, the machine's own disk limits, and a 10,000-partition start-up check. Every
//! run prints a progress line on stderr each second and one JSON summary line on stdout. With
//! `--broker-pid` it samples the broker's CPU time (user+sys) and peak RSS over the run and
//! reports broker CPU-seconds per GB of record payload moved.
//!
//! Run `cargo run --release --example weir-bench -- --help`; `bench/run` drives the standard
//! scenarios.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[path = "share_bench.rs"]
mod share;

use clap::{Args, Parser, Subcommand};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(name = "weir-bench", about = "Load generator and measurements for Kafka-protocol brokers")]
struct Cli {
    /// An extra librdkafka setting for every client, e.g. -X security.protocol=SSL (repeatable).
    #[arg(short = 'X', global = true, value_name = "KEY=VALUE")]
    client_settings: Vec<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

/// The `-X` settings, applied by [`client_config`].
static CLIENT_SETTINGS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();

#[derive(Subcommand)]
enum Cmd {
    /// Produce throughput.
    Produce(ProduceArgs),
    /// Consume throughput (reads what is in the topic, from the beginning).
    Consume(ConsumeArgs),
    /// End-to-end latency at a fixed offered rate.
    Latency(LatencyArgs),
    /// Producer acknowledgement latency at a fixed offered rate, measured per record from
    /// send to delivery report (librdkafka's `rdkafka_performance -l`), linger.ms=0 by default.
    AckLatency(AckLatencyArgs),
    /// This machine's disk limits: sequential write bandwidth with fdatasync, fsync latency.
    Disk(DiskArgs),
    /// Many partitions: create them, restart the broker, time start-up, idle RSS, Metadata.
    Partitions(PartitionsArgs),
    /// Failover of a cluster: an idempotent acks=all producer writes one record at a time
    /// while the partition leader gets SIGKILL (or SIGTERM); reports how long writes paused.
    Failover(FailoverArgs),
    /// Reassignment copy rate: moves a partition to new replicas (AlterPartitionReassignments,
    /// as kafka-reassign-partitions.sh does) and times the copy until the move completes.
    Reassign(ReassignArgs),
    /// Sets dynamic configs of a broker or a topic (AlterConfigs), e.g. replication throttles.
    Config(ConfigArgs),
    /// An idle cluster with many replicated partitions: time until every ISR is full after
    /// creation, then each broker's replication connections, idle CPU and RSS.
    ClusterIdle(ClusterIdleArgs),
    /// Share-group (KIP-932) consume throughput, and with --ack-rtt the acknowledgement round
    /// trip, with raw-protocol share consumers.
    ShareConsume(share::ShareConsumeArgs),
}

#[derive(Args)]
struct ConfigArgs {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, conflicts_with = "topic")]
    broker: Option<i32>,
    #[arg(long)]
    topic: Option<String>,
    /// KEY=VALUE, repeatable.
    #[arg(long = "set")]
    set: Vec<String>,
}

#[derive(Args)]
struct ClusterIdleArgs {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// The cluster's brokers as NODE_ID=PID, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    nodes: Vec<String>,
    #[arg(long, default_value = "idle")]
    topic: String,
    #[arg(long, default_value_t = 3000)]
    partitions: i32,
    #[arg(long, default_value_t = 3)]
    replication_factor: i32,
    /// Seconds over which idle CPU is measured (after the ISRs are full and 5 s of settling).
    #[arg(long, default_value_t = 30)]
    idle_seconds: u64,
    #[arg(long, default_value = "cluster-idle")]
    label: String,
}

#[derive(Args)]
struct ReassignArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long, default_value = "bench")]
    topic: String,
    #[arg(long, default_value_t = 0)]
    partition: i32,
    /// The new replicas, comma-separated broker ids; by default the current ones and the
    /// lowest broker id without a replica (a copy to one new broker).
    #[arg(long)]
    to: Option<String>,
}

#[derive(Args, Clone)]
struct Target {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Broker process to sample (CPU time, peak RSS); repeat it for every broker of a cluster.
    #[arg(long)]
    broker_pid: Vec<i32>,
    /// Scenario name for the summary.
    #[arg(long, default_value = "run")]
    label: String,
}

#[derive(Args)]
struct FailoverArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long, default_value = "bench-failover")]
    topic: String,
    /// The cluster's brokers as NODE_ID=PID, comma-separated: the leader's pid gets the signal.
    #[arg(long, value_delimiter = ',', required = true)]
    nodes: Vec<String>,
    /// `kill` (SIGKILL) or `term` (SIGTERM: controlled shutdown).
    #[arg(long, default_value = "kill")]
    signal: String,
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Seconds of writes before the signal.
    #[arg(long, default_value_t = 3)]
    seconds_before: u64,
    /// Seconds of writes after it.
    #[arg(long, default_value_t = 6)]
    seconds_after: u64,
}

#[derive(Args)]
struct ProduceArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long, default_value = "bench")]
    topic: String,
    /// Partitions of the topic, created if it does not exist.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// 0, 1 or all.
    #[arg(long, default_value = "1")]
    acks: String,
    #[arg(long, default_value = "none")]
    compression: String,
    #[arg(long, default_value_t = 5)]
    linger_ms: u32,
    /// librdkafka batch.size (bytes).
    #[arg(long, default_value_t = 1_000_000)]
    batch_size: u32,
    /// Producer instances, each on its own thread.
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Replication factor of the topic when it is created (a cluster).
    #[arg(long, default_value_t = 1)]
    replication_factor: i32,
    /// Idle client connections held open during the run.
    #[arg(long, default_value_t = 0)]
    idle_connections: usize,
    /// A topic config for the topic when it is created (`name=value`, repeatable).
    #[arg(long = "topic-config", value_parser = parse_key_value)]
    topic_configs: Vec<(String, String)>,
    /// Give every record a `message-id` header, unique in the run (`id-N`; the same N in every
    /// run of the same size, so a second run resends the same ids).
    #[arg(long)]
    message_ids: bool,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("expected name=value: {s}"))
}

#[derive(Args)]
struct ConsumeArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long, default_value = "bench")]
    topic: String,
    /// Stop after this many records.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Consumer instances, each on its own thread with its share of the partitions.
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// The consumers' `client.rack`: with the brokers' RackAwareReplicaSelector they read from
    /// replicas in that rack (KIP-392).
    #[arg(long)]
    client_rack: Option<String>,
}

#[derive(Args)]
struct LatencyArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long, default_value = "bench-latency")]
    topic: String,
    /// Offered load in records per second.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    #[arg(long, default_value = "all")]
    acks: String,
}

#[derive(Args)]
struct AckLatencyArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long, default_value = "bench-ack-latency")]
    topic: String,
    /// Offered load in records per second, over all producers.
    #[arg(long, default_value_t = 1_000)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    #[arg(long, default_value = "all")]
    acks: String,
    /// Partitions of the topic (created if missing); records go to them in turn.
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Producers (each its own client and connection), each offering rate / producers.
    #[arg(long, default_value_t = 1)]
    producers: u64,
    #[arg(long, default_value_t = 0)]
    linger_ms: u32,
    /// A topic config for the topic when it is created (`name=value`, repeatable): e.g. a
    /// small `segment.bytes`, so that segments roll during the run.
    #[arg(long = "topic-config", value_parser = parse_key_value)]
    topic_configs: Vec<(String, String)>,
}

#[derive(Args)]
struct DiskArgs {
    /// Directory on the filesystem to measure (the broker's data directory's filesystem).
    #[arg(long)]
    dir: PathBuf,
    /// MiB written for the bandwidth figures.
    #[arg(long, default_value_t = 256)]
    mib: usize,
    /// Seconds of small fsynced appends for the latency figures.
    #[arg(long, default_value_t = 10)]
    fsync_seconds: u64,
    #[arg(long, default_value = "disk")]
    label: String,
    /// Only the fsync latency of small appends (of `--append-bytes`), no bandwidth figures.
    #[arg(long)]
    fsync_only: bool,
    /// Size of each fsynced append in the fsync-only measurement.
    #[arg(long, default_value_t = 1024)]
    append_bytes: usize,
    /// With `--fsync-only`: append at this many appends/s from one thread while another runs
    /// fdatasyncs back to back over whatever was appended (group commit with no broker and no
    /// thread wake-ups), and report each append's latency until an fsync covered it: what the
    /// disk alone costs a paced stream, slow fsyncs delaying every append made meanwhile.
    #[arg(long, default_value_t = 0)]
    rate: u64,
}

#[derive(Args)]
struct PartitionsArgs {
    /// The broker binary to start.
    #[arg(long)]
    weir: PathBuf,
    /// Data directory (created; its contents are the broker's).
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long, default_value_t = 1000)]
    topics: usize,
    #[arg(long, default_value_t = 10)]
    partitions: i32,
    /// Metadata requests timed.
    #[arg(long, default_value_t = 20)]
    metadata_requests: usize,
    #[arg(long, default_value = "partitions")]
    label: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut settings = Vec::new();
    for kv in &cli.client_settings {
        let (k, v) = kv.split_once('=').ok_or_else(|| anyhow::anyhow!("-X expects KEY=VALUE, got '{kv}'"))?;
        settings.push((k.to_string(), v.to_string()));
    }
    let _ = CLIENT_SETTINGS.set(settings);
    let summary = match cli.cmd {
        Cmd::Produce(a) => produce(a)?,
        Cmd::Consume(a) => consume(a)?,
        Cmd::Latency(a) => latency(a)?,
        Cmd::AckLatency(a) => ack_latency(a)?,
        Cmd::Disk(a) => disk(a)?,
        Cmd::Partitions(a) => partitions(a)?,
        Cmd::Failover(a) => failover(a)?,
        Cmd::Reassign(a) => reassign(a)?,
        Cmd::Config(a) => config(a)?,
        Cmd::ClusterIdle(a) => cluster_idle(a)?,
        Cmd::ShareConsume(a) => share::share_consume(a)?,
    };
    println!("{summary}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// broker sampling

/// CPU time and peak RSS of the broker processes over one run, read from `/proc`.
struct BrokerSampler {
    /// (pid, CPU seconds at the start)
    brokers: Vec<(i32, f64)>,
}

fn proc_cpu_seconds(pid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // fields after the parenthesised command name; utime and stime are fields 14 and 15
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

fn proc_status_kib(pid: i32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

impl BrokerSampler {
    fn start(pids: &[i32]) -> Option<BrokerSampler> {
        let brokers: Vec<(i32, f64)> = pids
            .iter()
            .filter_map(|&pid| {
                // resets the peak RSS so VmHWM covers this run only
                let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
                Some((pid, proc_cpu_seconds(pid)?))
            })
            .collect();
        (!brokers.is_empty()).then_some(BrokerSampler { brokers })
    }

    /// Total CPU over the brokers (and per broker when there are several), peak RSS of the
    /// largest.
    fn finish(&self, payload_bytes: u64) -> Value {
        let cpu: f64 = self.brokers.iter().map(|(pid, start)| proc_cpu_seconds(*pid).unwrap_or(*start) - start).sum();
        let gb = payload_bytes as f64 / 1e9;
        let per_gb = |cpu: f64| if gb > 0.0 { round(cpu / gb, 3) } else { 0.0 };
        let mut out = json!({
            "broker_cpu_s": round(cpu, 3),
            "broker_cpu_s_per_gb": per_gb(cpu),
            "broker_peak_rss_mb": self.brokers.iter().filter_map(|(pid, _)| proc_status_kib(*pid, "VmHWM:")).max().map(|k| k / 1024),
        });
        if self.brokers.len() > 1 {
            merge(
                &mut out,
                json!({
                    "brokers": self.brokers.len(),
                    "per_broker_cpu_s_per_gb": per_gb(cpu / self.brokers.len() as f64),
                }),
            );
        }
        out
    }
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

/// Prints a progress line every second until dropped.
struct Progress {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(label: &str, counter: Arc<AtomicU64>, record_size: usize) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, label) = (stop.clone(), label.to_string());
        let handle = std::thread::spawn(move || {
            let started = Instant::now();
            let mut last = (0u64, Instant::now());
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                if last.1.elapsed() < Duration::from_secs(1) {
                    continue;
                }
                let n = counter.load(Ordering::Relaxed);
                let rate = (n - last.0) as f64 / last.1.elapsed().as_secs_f64();
                eprintln!(
                    "[{label}] {:>6.1}s {n:>12} records {rate:>12.0} rec/s {:>8.1} MB/s",
                    started.elapsed().as_secs_f64(),
                    rate * record_size as f64 / 1e6
                );
                last = (n, Instant::now());
            }
        });
        Progress { stop, handle: Some(handle) }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// clients

fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap).set("broker.address.family", "v4").set("log_level", "3");
    for (k, v) in CLIENT_SETTINGS.get().into_iter().flatten() {
        c.set(k, v);
    }
    c
}

fn ensure_topic(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    ensure_replicated_topic(bootstrap, topic, partitions, 1, &[])
}

fn ensure_replicated_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    replicas: i32,
    configs: &[(String, String)],
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap).create()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replicas));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let res = rt.block_on(admin.create_topics(&[new], &AdminOptions::new()))?;
    match &res[0] {
        Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => Ok(()),
        Err((t, e)) => anyhow::bail!("cannot create {t}: {e}"),
    }
}

/// Distinct payloads of uppercase letters (as kafka-producer-perf-test makes them), so that
/// compression sees realistic, not repeated, data.
fn payload_pool(size: usize) -> Vec<Vec<u8>> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..4096)
        .map(|_| {
            (0..size)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    b'A' + (x % 26) as u8
                })
                .collect()
        })
        .collect()
}

/// Counts acknowledged and failed deliveries.
#[derive(Clone, Default)]
struct Counting {
    acked: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.acked.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

fn producer_config(bootstrap: &str, acks: &str, compression: &str, linger_ms: u32, batch_size: u32) -> ClientConfig {
    let mut c = client_config(bootstrap);
    c.set("acks", acks)
        .set("compression.type", compression)
        .set("linger.ms", linger_ms.to_string())
        .set("batch.size", batch_size.to_string())
        .set("batch.num.messages", "100000")
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "2097151")
        .set("message.timeout.ms", "120000");
    c
}

/// Opens `n` connections and completes an ApiVersions exchange on each, so the broker holds
/// them as real (idle) client connections.
fn open_idle_connections(bootstrap: &str, n: usize) -> anyhow::Result<Vec<std::net::TcpStream>> {
    use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = std::net::TcpStream::connect(bootstrap)?;
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::ApiVersions as i16)
            .with_request_api_version(0)
            .with_correlation_id(i as i32)
            .with_client_id(Some(StrBytes::from_static_str("idle")));
        let mut body = bytes::BytesMut::new();
        header.encode(&mut body, 1)?;
        ApiVersionsRequest::default().encode(&mut body, 0)?;
        s.write_all(&(body.len() as i32).to_be_bytes())?;
        s.write_all(&body)?;
        let mut size = [0u8; 4];
        std::io::Read::read_exact(&mut s, &mut size)?;
        let mut resp = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
        std::io::Read::read_exact(&mut s, &mut resp)?;
        out.push(s);
    }
    Ok(out)
}

fn produce(a: ProduceArgs) -> anyhow::Result<Value> {
    ensure_replicated_topic(&a.target.bootstrap, &a.topic, a.partitions, a.replication_factor, &a.topic_configs)?;
    let idle = open_idle_connections(&a.target.bootstrap, a.idle_connections)?;
    let pool = Arc::new(payload_pool(a.record_size));
    let ctx = Counting::default();
    let progress = Progress::start(&a.target.label, ctx.acked.clone(), a.record_size);
    let sampler = BrokerSampler::start(&a.target.broker_pid);
    let started = Instant::now();
    let per_producer = a.records / a.producers as u64;
    let threads: Vec<_> = (0..a.producers)
        .map(|n| {
            let config = producer_config(&a.target.bootstrap, &a.acks, &a.compression, a.linger_ms, a.batch_size);
            let (ctx, pool, topic, ids) = (ctx.clone(), pool.clone(), a.topic.clone(), a.message_ids);
            std::thread::spawn(move || -> anyhow::Result<()> {
                let p: ThreadedProducer<Counting> = config.create_with_context(ctx)?;
                for i in 0..per_producer {
                    let payload = &pool[i as usize % pool.len()];
                    let mut rec = BaseRecord::<(), [u8]>::to(&topic).payload(payload);
                    if ids {
                        let id = format!("id-{}", n as u64 * per_producer + i);
                        rec = rec.headers(OwnedHeaders::new().insert(Header { key: "message-id", value: Some(&id) }));
                    }
                    loop {
                        match p.send(rec) {
                            Ok(()) => break,
                            Err((_, back)) => {
                                rec = back;
                                std::thread::sleep(Duration::from_micros(200));
                            }
                        }
                    }
                }
                p.flush(Duration::from_secs(120))?;
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| anyhow::anyhow!("producer thread panicked"))??;
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(progress);
    drop(idle);
    let records = ctx.acked.load(Ordering::Relaxed);
    let bytes = records * a.record_size as u64;
    let mut out = json!({
        "scenario": a.target.label, "kind": "produce", "records": records,
        "failed": ctx.failed.load(Ordering::Relaxed), "record_size": a.record_size,
        "partitions": a.partitions, "acks": a.acks, "compression": a.compression,
        "producers": a.producers, "idle_connections": a.idle_connections,
        "replication_factor": a.replication_factor,
        "seconds": round(seconds, 3), "records_per_s": round(records as f64 / seconds, 0),
        "mb_per_s": round(bytes as f64 / seconds / 1e6, 1),
    });
    if let Some(s) = sampler {
        merge(&mut out, s.finish(bytes));
    }
    Ok(out)
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}

fn consumer_config(bootstrap: &str) -> ClientConfig {
    let mut c = client_config(bootstrap);
    c.set("group.id", "weir-bench")
        .set("enable.auto.commit", "false")
        .set("fetch.message.max.bytes", "8388608")
        .set("fetch.max.bytes", "67108864")
        .set("queued.max.messages.kbytes", "1048576")
        .set("queued.min.messages", "1000000");
    c
}

fn consume(a: ConsumeArgs) -> anyhow::Result<Value> {
    let probe: BaseConsumer = consumer_config(&a.target.bootstrap).create()?;
    let meta = probe.fetch_metadata(Some(&a.topic), Duration::from_secs(10))?;
    let partitions = meta.topics().first().map_or(0, |t| t.partitions().len()) as i32;
    drop(probe);
    // one consumer per thread, each assigned every n-th partition
    let consumers = a.consumers.clamp(1, partitions.max(1) as usize);
    let mut assigned = Vec::new();
    for i in 0..consumers {
        let mut config = consumer_config(&a.target.bootstrap);
        if let Some(rack) = &a.client_rack {
            config.set("client.rack", rack);
        }
        let c: BaseConsumer = config.create()?;
        let mut tpl = TopicPartitionList::new();
        for p in (0..partitions).filter(|p| *p as usize % consumers == i) {
            tpl.add_partition_offset(&a.topic, p, Offset::Beginning)?;
        }
        c.assign(&tpl)?;
        assigned.push(c);
    }
    let counter = Arc::new(AtomicU64::new(0));
    let total_bytes = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(&a.target.label, counter.clone(), 100);
    let sampler = BrokerSampler::start(&a.target.broker_pid);
    let started = Instant::now();
    let threads: Vec<_> = assigned
        .into_iter()
        .map(|consumer| {
            let (counter, total_bytes, want) = (counter.clone(), total_bytes.clone(), a.records);
            std::thread::spawn(move || -> anyhow::Result<usize> {
                let (mut local, mut bytes, mut size) = (0u64, 0u64, 0usize);
                let mut idle_since = Instant::now();
                // the shared counter moves in steps of 1024; this thread's remainder is added here
                while counter.load(Ordering::Relaxed) + local % 1024 < want
                    && idle_since.elapsed() < Duration::from_secs(10)
                {
                    match consumer.poll(Duration::from_millis(100)) {
                        Some(Ok(m)) => {
                            size = m.payload_len() + m.key().map_or(0, <[u8]>::len);
                            bytes += size as u64;
                            local += 1;
                            if local % 1024 == 0 {
                                counter.fetch_add(1024, Ordering::Relaxed);
                            }
                            idle_since = Instant::now();
                        }
                        Some(Err(e)) => anyhow::bail!("consumer error: {e}"),
                        None => {}
                    }
                }
                counter.fetch_add(local % 1024, Ordering::Relaxed);
                total_bytes.fetch_add(bytes, Ordering::Relaxed);
                Ok(size)
            })
        })
        .collect();
    let mut record_size = 0;
    for t in threads {
        record_size = record_size.max(t.join().map_err(|_| anyhow::anyhow!("consumer thread panicked"))??);
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(progress);
    let (records, bytes) = (counter.load(Ordering::Relaxed), total_bytes.load(Ordering::Relaxed));
    let mut out = json!({
        "scenario": a.target.label, "kind": "consume", "records": records, "record_size": record_size,
        "partitions": partitions, "consumers": consumers, "seconds": round(seconds, 3),
        "records_per_s": round(records as f64 / seconds, 0), "mb_per_s": round(bytes as f64 / seconds / 1e6, 1),
    });
    if let Some(s) = sampler {
        merge(&mut out, s.finish(bytes));
    }
    Ok(out)
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn latency(a: LatencyArgs) -> anyhow::Result<Value> {
    ensure_topic(&a.target.bootstrap, &a.topic, 1)?;
    let consumer: BaseConsumer = client_config(&a.target.bootstrap)
        .set("group.id", "weir-bench-latency")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "500")
        .set("fetch.min.bytes", "1")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&a.topic, 0, Offset::End)?;
    consumer.assign(&tpl)?;
    // let the consumer find its position before the clock starts
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_secs(2) {
        consumer.poll(Duration::from_millis(50));
    }
    let total = a.rate * a.seconds;
    let producer: ThreadedProducer<Counting> = producer_config(&a.target.bootstrap, &a.acks, "none", 0, 1_000_000)
        .set("queue.buffering.max.ms", "0")
        .create_with_context(Counting::default())?;
    let sampler = BrokerSampler::start(&a.target.broker_pid);
    let counter = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(&a.target.label, counter.clone(), a.record_size);
    let (topic, size, rate) = (a.topic.clone(), a.record_size.max(8), a.rate);
    let sender = std::thread::spawn(move || {
        let start = Instant::now();
        let mut payload = vec![b'x'; size];
        for i in 0..total {
            let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            payload[..8].copy_from_slice(&now_ns().to_be_bytes());
            let mut rec = BaseRecord::<(), [u8]>::to(&topic).payload(&payload).partition(0);
            while let Err((_, back)) = producer.send(rec) {
                rec = back;
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        let _ = producer.flush(Duration::from_secs(30));
    });
    let mut latencies_us: Vec<u64> = Vec::with_capacity(total as usize);
    let deadline = Instant::now() + Duration::from_secs(a.seconds + 30);
    while (latencies_us.len() as u64) < total && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            if let Some(p) = m.payload().filter(|p| p.len() >= 8) {
                let sent = u64::from_be_bytes(p[..8].try_into().unwrap_or_default());
                latencies_us.push(now_ns().saturating_sub(sent) / 1000);
                counter.store(latencies_us.len() as u64, Ordering::Relaxed);
            }
        }
    }
    let _ = sender.join();
    drop(progress);
    latencies_us.sort_unstable();
    let pct = |q: f64| -> f64 {
        if latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((latencies_us.len() as f64 - 1.0) * q).round() as usize;
        latencies_us[i] as f64 / 1000.0
    };
    let mut out = json!({
        "scenario": a.target.label, "kind": "latency", "records": latencies_us.len(), "expected": total,
        "rate": a.rate, "record_size": a.record_size, "acks": a.acks,
        "p50_ms": pct(0.5), "p99_ms": pct(0.99), "p999_ms": pct(0.999), "max_ms": pct(1.0),
    });
    if let Some(s) = sampler {
        merge(&mut out, s.finish(latencies_us.len() as u64 * a.record_size as u64));
    }
    Ok(out)
}

/// Records each acknowledged record's latency, with when it was sent (µs after `epoch`): the
/// send instant travels as the opaque.
struct Timing {
    epoch: Instant,
    latencies_us: Arc<parking_lot::Mutex<Vec<(u64, u64)>>>,
    failed: Arc<AtomicU64>,
}

impl ClientContext for Timing {}

/// A record's send instant, and whether it counts (records sent while warming up do not).
type Sent = Box<(Instant, bool)>;

impl ProducerContext for Timing {
    type DeliveryOpaque = Sent;
    fn delivery(&self, result: &DeliveryResult<'_>, sent: Sent) {
        let (sent, measured) = *sent;
        if !measured {
            return;
        }
        match result {
            Ok(_) => {
                let at = sent.saturating_duration_since(self.epoch).as_micros() as u64;
                self.latencies_us.lock().push((at, sent.elapsed().as_micros() as u64));
            }
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The latency at quantile `q` of sorted microsecond samples, in milliseconds.
fn percentile_ms(sorted_us: &[u64], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let i = ((sorted_us.len() as f64 - 1.0) * q).round() as usize;
    round(sorted_us[i] as f64 / 1000.0, 3)
}

/// The p99 of the records sent in each whole second after `from` (µs since the epoch, latency
/// in µs): a slow stretch (a segment's first seconds, a roll) shows as its own second.
fn per_second_p99_ms(timed: &[(u64, u64)], from: u64) -> Vec<f64> {
    let mut seconds: Vec<Vec<u64>> = Vec::new();
    for (at, l) in timed {
        let s = ((at - from) / 1_000_000) as usize;
        if seconds.len() <= s {
            seconds.resize_with(s + 1, Vec::new);
        }
        seconds[s].push(*l);
    }
    seconds
        .into_iter()
        .map(|mut l| {
            l.sort_unstable();
            percentile_ms(&l, 0.99)
        })
        .collect()
}

fn ack_latency(a: AckLatencyArgs) -> anyhow::Result<Value> {
    ensure_replicated_topic(&a.target.bootstrap, &a.topic, a.partitions, 1, &a.topic_configs)?;
    let latencies_us = Arc::new(parking_lot::Mutex::new(Vec::with_capacity((a.rate * a.seconds) as usize)));
    let epoch = Instant::now();
    let failed = Arc::new(AtomicU64::new(0));
    let producers: Vec<ThreadedProducer<Timing>> =
        (0..a.producers.max(1))
            .map(|_| {
                producer_config(&a.target.bootstrap, &a.acks, "none", a.linger_ms, 1_000_000)
                    .create_with_context(Timing { epoch, latencies_us: latencies_us.clone(), failed: failed.clone() })
            })
            .collect::<Result<_, _>>()?;
    for p in &producers {
        p.client().fetch_metadata(Some(&a.topic), Duration::from_secs(10))?;
    }
    let sampler = BrokerSampler::start(&a.target.broker_pid);
    let counter = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(&a.target.label, counter.clone(), a.record_size);
    let per_producer = (a.rate * a.seconds) / producers.len() as u64;
    let rate = (a.rate / producers.len() as u64).max(1);
    // a first second at the same pace is not counted: a client's first records wait for it to
    // set up its partitions and connections, which is not what is measured here
    let warm_up = rate;
    let senders: Vec<_> = producers
        .into_iter()
        .enumerate()
        .map(|(n, producer)| {
            let (topic, size, partitions, counter) =
                (a.topic.clone(), a.record_size.max(1), a.partitions, counter.clone());
            std::thread::spawn(move || {
                let payload = vec![b'x'; size];
                let start = Instant::now();
                for i in 0..warm_up + per_producer {
                    let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    let partition = ((i + n as u64) % partitions.max(1) as u64) as i32;
                    let sent: Sent = Box::new((Instant::now(), i >= warm_up));
                    let mut rec = BaseRecord::<(), [u8], Sent>::with_opaque_to(&topic, sent)
                        .payload(&payload)
                        .partition(partition);
                    while let Err((_, back)) = producer.send(rec) {
                        rec = back;
                        std::thread::sleep(Duration::from_micros(100));
                    }
                    if i >= warm_up {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let _ = producer.flush(Duration::from_secs(60));
            })
        })
        .collect();
    for s in senders {
        let _ = s.join();
    }
    drop(progress);
    let mut timed = std::mem::take(&mut *latencies_us.lock());
    // when the slowest were sent (s after the clock started): a stall shows as one cluster
    timed.sort_unstable_by_key(|(_, l)| std::cmp::Reverse(*l));
    let measured_from = timed.iter().map(|(at, _)| *at).min().unwrap_or(0);
    let per_second = per_second_p99_ms(&timed, measured_from);
    let slowest: Vec<Value> = timed
        .iter()
        .take(5)
        .map(|(at, l)| json!([round((at - measured_from) as f64 / 1e6, 3), round(*l as f64 / 1e3, 3)]))
        .collect();
    let mut lat: Vec<u64> = timed.into_iter().map(|(_, l)| l).collect();
    lat.sort_unstable();
    let mut out = json!({
        "scenario": a.target.label, "kind": "ack-latency", "records": lat.len(),
        "expected": per_producer * a.producers.max(1), "failed": failed.load(Ordering::Relaxed),
        "rate": a.rate, "record_size": a.record_size, "acks": a.acks, "linger_ms": a.linger_ms,
        "partitions": a.partitions, "producers": a.producers,
        "p50_ms": percentile_ms(&lat, 0.5), "p99_ms": percentile_ms(&lat, 0.99),
        "p999_ms": percentile_ms(&lat, 0.999), "max_ms": percentile_ms(&lat, 1.0),
        "slowest_sent_at_s_and_ms": slowest,
        "per_second_p99_ms": per_second,
    });
    if let Some(s) = sampler {
        merge(&mut out, s.finish(lat.len() as u64 * a.record_size as u64));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// machine limits

/// fdatasync latencies (ms, sorted) of `bytes`-sized appends to a fresh file for `seconds`
/// (and at least 100 of them): long enough to meet the filesystem's periodic journal commits.
fn fsync_latencies(path: &std::path::Path, bytes: usize, seconds: u64) -> anyhow::Result<Vec<f64>> {
    let mut f = std::fs::File::create(path)?;
    let small = vec![0u8; bytes];
    let mut lat: Vec<f64> = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) || lat.len() < 100 {
        let t = Instant::now();
        f.write_all(&small)?;
        f.sync_data()?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let _ = std::fs::remove_file(path);
    lat.sort_by(f64::total_cmp);
    Ok(lat)
}

/// Appends of `bytes` at `rate`/s for `seconds`, group-committed by a second thread that
/// spins between fdatasyncs; each append's milliseconds until an fsync covered it, sorted.
fn paced_append_latencies(path: &std::path::Path, bytes: usize, rate: u64, seconds: u64) -> anyhow::Result<Vec<f64>> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let file = std::fs::File::create(path)?;
    let total = (rate * seconds).max(100) as usize;
    let appended_at: std::sync::Mutex<Vec<Instant>> = std::sync::Mutex::new(Vec::with_capacity(total));
    let appended = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let mut lat = Vec::with_capacity(total);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let flusher = scope.spawn(|| -> anyhow::Result<()> {
            let mut covered = 0;
            loop {
                let end = appended.load(Ordering::Acquire);
                if end == covered {
                    if done.load(Ordering::Acquire) && appended.load(Ordering::Acquire) == covered {
                        return Ok(());
                    }
                    std::thread::yield_now();
                    continue;
                }
                file.sync_data()?;
                let now = Instant::now();
                let times = appended_at.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                lat.extend(times[covered..end].iter().map(|t| (now - *t).as_secs_f64() * 1e3));
                covered = end;
            }
        });
        let small = vec![0u8; bytes];
        let started = Instant::now();
        let result = (0..total).try_for_each(|i| -> anyhow::Result<()> {
            let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let at = Instant::now();
            (&file).write_all(&small)?;
            appended_at.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push(at);
            appended.fetch_add(1, Ordering::Release);
            Ok(())
        });
        done.store(true, Ordering::Release);
        flusher.join().map_err(|_| anyhow::anyhow!("flusher panicked"))??;
        result
    })?;
    let _ = std::fs::remove_file(path);
    lat.sort_by(f64::total_cmp);
    Ok(lat)
}

/// The value at quantile `q` of sorted samples, rounded to microseconds when in ms.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    round(sorted[((sorted.len() - 1) as f64 * q) as usize], 3)
}

fn disk(a: DiskArgs) -> anyhow::Result<Value> {
    std::fs::create_dir_all(&a.dir)?;
    let path = a.dir.join(".weir-bench-disk");
    if a.fsync_only && a.rate > 0 {
        let lat = paced_append_latencies(&path, a.append_bytes, a.rate, a.fsync_seconds)?;
        let pct = |q: f64| quantile(&lat, q);
        return Ok(json!({
            "scenario": a.label, "kind": "disk-paced", "append_bytes": a.append_bytes, "rate": a.rate,
            "appends": lat.len(), "p50_ms": pct(0.5), "p99_ms": pct(0.99), "p999_ms": pct(0.999), "max_ms": pct(1.0),
        }));
    }
    if a.fsync_only {
        let lat = fsync_latencies(&path, a.append_bytes, a.fsync_seconds)?;
        let pct = |q: f64| quantile(&lat, q);
        return Ok(json!({
            "scenario": a.label, "kind": "disk-fsync", "append_bytes": a.append_bytes, "fsyncs": lat.len(),
            "p50_ms": pct(0.5), "p99_ms": pct(0.99), "p999_ms": pct(0.999), "max_ms": pct(1.0),
        }));
    }
    let block = vec![0x5au8; 1 << 20];
    // sequential 1 MiB writes, each followed by fdatasync: the best a durable log can do
    let mut f = std::fs::File::create(&path)?;
    let started = Instant::now();
    for _ in 0..a.mib {
        f.write_all(&block)?;
        f.sync_data()?;
    }
    let synced_mb_s = a.mib as f64 * 1.048_576 / started.elapsed().as_secs_f64();
    // the same without fsync, from a 64 MiB source that does not stay in the CPU caches
    // (like freshly received produce data): what the kernel's copy into the page cache
    // costs, the floor of a broker's CPU per GB written
    let source: Vec<u8> = payload_pool(1 << 14).concat();
    let mut f = std::fs::File::create(&path)?;
    let started = Instant::now();
    for i in 0..a.mib {
        let at = (i % 64) << 20;
        f.write_all(&source[at..at + (1 << 20)])?;
    }
    let cached_s = started.elapsed().as_secs_f64();
    let cached_mb_s = a.mib as f64 * 1.048_576 / cached_s;
    // fsync latency of a small append (which also grows the file, as log appends do)
    let lat = fsync_latencies(&path, 4096, a.fsync_seconds)?;
    let pct = |q: f64| quantile(&lat, q);
    Ok(json!({
        "scenario": a.label, "kind": "disk", "dir": a.dir.display().to_string(),
        "fdatasync_write_mb_s": round(synced_mb_s, 1), "page_cache_write_mb_s": round(cached_mb_s, 1),
        "page_cache_write_cpu_s_per_gb": round(cached_s / (a.mib as f64 * 1.048_576 / 1e3), 3),
        "fdatasync_4k_p50_ms": pct(0.5), "fdatasync_4k_p99_ms": pct(0.99), "fdatasync_4k_p999_ms": pct(0.999),
        "fdatasync_4k_max_ms": pct(1.0),
    }))
}

/// A broker child process and the address it listens on.
struct Spawned {
    child: std::process::Child,
    addr: String,
    started_in: Duration,
}

fn spawn_broker(weir: &PathBuf, data_dir: &PathBuf) -> anyhow::Result<Spawned> {
    let started = Instant::now();
    let mut child = Command::new(weir)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let out = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let err = child.stderr.take().ok_or_else(|| anyhow::anyhow!("no stderr"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    for stream in [Box::new(out) as Box<dyn std::io::Read + Send>, Box::new(err)] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("weir listening addr=").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_string());
                }
            }
        });
    }
    let addr = rx.recv_timeout(Duration::from_secs(120))?;
    Ok(Spawned { child, addr, started_in: started.elapsed() })
}

fn stop_broker(mut s: Spawned) -> anyhow::Result<()> {
    // SAFETY: kill(2) with the child's pid and SIGTERM has no memory-safety preconditions.
    unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
    s.child.wait()?;
    Ok(())
}

fn partitions(a: PartitionsArgs) -> anyhow::Result<Value> {
    std::fs::create_dir_all(&a.data_dir)?;
    let first = spawn_broker(&a.weir, &a.data_dir)?;
    let admin: AdminClient<DefaultClientContext> = client_config(&first.addr).create()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let names: Vec<String> = (0..a.topics).map(|i| format!("many-{i:05}")).collect();
    let created = Instant::now();
    for (i, chunk) in names.chunks(100).enumerate() {
        let news: Vec<NewTopic> =
            chunk.iter().map(|n| NewTopic::new(n, a.partitions, TopicReplication::Fixed(1))).collect();
        for r in rt.block_on(admin.create_topics(&news, &AdminOptions::new()))? {
            if let Err((t, e)) = r {
                if e != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                    anyhow::bail!("cannot create {t}: {e}");
                }
            }
        }
        eprintln!("[{}] created {} topics", a.label, i * 100 + chunk.len());
    }
    let create_s = created.elapsed().as_secs_f64();
    drop(admin);
    stop_broker(first)?;
    let second = spawn_broker(&a.weir, &a.data_dir)?;
    std::thread::sleep(Duration::from_secs(2));
    let pid = second.child.id() as i32;
    let idle_rss_mb = proc_status_kib(pid, "VmRSS:").map(|k| k / 1024);
    let consumer: BaseConsumer = client_config(&second.addr).create()?;
    let mut times: Vec<f64> = Vec::new();
    let mut seen = 0;
    for _ in 0..a.metadata_requests {
        let t = Instant::now();
        let meta = consumer.fetch_metadata(None, Duration::from_secs(30))?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        seen = meta.topics().iter().map(|t| t.partitions().len()).sum::<usize>();
    }
    times.sort_by(f64::total_cmp);
    let startup_s = second.started_in.as_secs_f64();
    stop_broker(second)?;
    Ok(json!({
        "scenario": a.label, "kind": "partitions", "topics": a.topics,
        "partitions": seen, "create_s": round(create_s, 2), "startup_s": round(startup_s, 3),
        "idle_rss_mb": idle_rss_mb, "metadata_p50_ms": round(times[times.len() / 2], 2),
        "metadata_max_ms": round(times.last().copied().unwrap_or_default(), 2),
    }))
}

// ---------------------------------------------------------------------------------------
// failover

/// The leader and ISR size of partition 0 of `topic`.
/// The cluster's brokers from `--nodes ID=PID,…`.
fn parse_nodes(nodes: &[String]) -> anyhow::Result<Vec<(i32, i32)>> {
    nodes
        .iter()
        .map(|n| {
            let (id, pid) = n.split_once('=').ok_or_else(|| anyhow::anyhow!("--nodes expects ID=PID, got '{n}'"))?;
            Ok((id.parse()?, pid.parse()?))
        })
        .collect()
}

/// Established TCP connections of process `pid` to any of `ports` (from `/proc`: the
/// process's socket inodes matched against the network namespace's TCP table).
fn connections_to(pid: i32, ports: &[u16]) -> usize {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_string))
        .collect();
    let mut n = 0;
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else { continue };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(remote), Some(state), Some(inode)) = (f.get(2), f.get(3), f.get(9)) else { continue };
            let port = remote.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            // 01: ESTABLISHED
            if *state == "01" && inodes.contains(*inode) && port.is_some_and(|p| ports.contains(&p)) {
                n += 1;
            }
        }
    }
    n
}

fn cluster_idle(a: ClusterIdleArgs) -> anyhow::Result<Value> {
    let nodes = parse_nodes(&a.nodes)?;
    let ports: Vec<u16> = a.bootstrap.split(',').filter_map(|b| b.rsplit(':').next()?.parse().ok()).collect();
    // every broker registered and unfenced: a one-partition topic on all of them can be made
    let ready_by = Instant::now() + Duration::from_secs(60);
    while let Err(e) = ensure_replicated_topic(&a.bootstrap, "cluster-idle-warmup", 1, a.replication_factor, &[]) {
        anyhow::ensure!(Instant::now() < ready_by, "the cluster never took an RF={} topic: {e}", a.replication_factor);
        std::thread::sleep(Duration::from_millis(200));
    }
    let created = Instant::now();
    ensure_replicated_topic(&a.bootstrap, &a.topic, a.partitions, a.replication_factor, &[])?;
    let c: BaseConsumer = client_config(&a.bootstrap).create()?;
    let full = loop {
        let md = c.fetch_metadata(Some(&a.topic), Duration::from_secs(10))?;
        let parts = md.topics().first().map(|t| t.partitions()).unwrap_or_default();
        let in_sync = parts.iter().filter(|p| p.isr().len() as i32 == a.replication_factor).count();
        if parts.len() as i32 == a.partitions && in_sync == parts.len() {
            break created.elapsed();
        }
        anyhow::ensure!(created.elapsed() < Duration::from_secs(300), "ISRs not full after 300 s ({in_sync} in sync)");
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("{}: every ISR full {:.1} s after creation", a.label, full.as_secs_f64());
    std::thread::sleep(Duration::from_secs(5));
    let start: Vec<f64> = nodes.iter().map(|(_, pid)| proc_cpu_seconds(*pid).unwrap_or(0.0)).collect();
    std::thread::sleep(Duration::from_secs(a.idle_seconds));
    let per_minute = 60.0 / a.idle_seconds as f64;
    let brokers: Vec<Value> = nodes
        .iter()
        .zip(&start)
        .map(|((id, pid), start)| {
            let cpu = proc_cpu_seconds(*pid).unwrap_or(*start) - start;
            json!({
                "id": id,
                "idle_cpu_s_per_min": round(cpu * per_minute, 3),
                "broker_links": connections_to(*pid, &ports),
                "rss_mb": proc_status_kib(*pid, "VmRSS:").map(|k| k / 1024),
            })
        })
        .collect();
    let max = |field: &str| brokers.iter().filter_map(|b| b[field].as_f64()).fold(0.0, f64::max);
    Ok(json!({
        "scenario": a.label,
        "kind": "cluster-idle",
        "partitions": a.partitions,
        "replication_factor": a.replication_factor,
        "isr_full_s": round(full.as_secs_f64(), 2),
        "max_idle_cpu_s_per_min": max("idle_cpu_s_per_min"),
        "max_broker_links": max("broker_links"),
        "max_rss_mb": max("rss_mb"),
        "brokers": brokers,
    }))
}

fn leader_of(bootstrap: &str, topic: &str) -> anyhow::Result<(i32, usize)> {
    let c: BaseConsumer = client_config(bootstrap).create()?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let p = md
        .topics()
        .first()
        .and_then(|t| t.partitions().iter().find(|p| p.id() == 0))
        .ok_or_else(|| anyhow::anyhow!("{topic} has no partition 0"))?;
    Ok((p.leader(), p.isr().len()))
}

fn failover(a: FailoverArgs) -> anyhow::Result<Value> {
    let nodes: std::collections::HashMap<i32, i32> = parse_nodes(&a.nodes)?.into_iter().collect();
    let signal = match a.signal.as_str() {
        "kill" => libc::SIGKILL,
        "term" => libc::SIGTERM,
        other => anyhow::bail!("--signal is kill or term, not {other}"),
    };
    let bootstrap = a.target.bootstrap.clone();
    ensure_replicated_topic(&bootstrap, &a.topic, 1, nodes.len() as i32, &[])?;
    let in_sync = Instant::now() + Duration::from_secs(30);
    while leader_of(&bootstrap, &a.topic).map_or(true, |(l, isr)| l < 0 || isr < nodes.len()) {
        anyhow::ensure!(Instant::now() < in_sync, "{} never had all its replicas in sync", a.topic);
        std::thread::sleep(Duration::from_millis(100));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let (acks, failed) = (Arc::new(std::sync::Mutex::new(Vec::<Instant>::new())), Arc::new(AtomicU64::new(0)));
    let writer = {
        let mut config = client_config(&bootstrap);
        config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "0")
            .set("message.timeout.ms", "60000");
        let (stop, acks, failed, topic) = (stop.clone(), acks.clone(), failed.clone(), a.topic.clone());
        let payload = vec![b'x'; a.record_size];
        std::thread::spawn(move || -> anyhow::Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let p: rdkafka::producer::FutureProducer = config.create()?;
            while !stop.load(Ordering::Relaxed) {
                let record = rdkafka::producer::FutureRecord::<(), _>::to(&topic).partition(0).payload(&payload);
                match rt.block_on(p.send(record, Duration::from_secs(60))) {
                    Ok(_) => acks.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push(Instant::now()),
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(())
        })
    };
    std::thread::sleep(Duration::from_secs(a.seconds_before));
    let (leader, _) = leader_of(&bootstrap, &a.topic)?;
    let pid = *nodes.get(&leader).ok_or_else(|| anyhow::anyhow!("leader {leader} is not among --nodes"))?;
    // SAFETY: signalling a broker process the caller named.
    unsafe { libc::kill(pid, signal) };
    let signalled = Instant::now();
    std::thread::sleep(Duration::from_secs(a.seconds_after));
    stop.store(true, Ordering::Relaxed);
    writer.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
    let (new_leader, _) = leader_of(&bootstrap, &a.topic).unwrap_or((-1, 0));

    let acks = acks.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    let ms = |d: Duration| round(d.as_secs_f64() * 1000.0, 1);
    // the longest wait between two acknowledgements around the signal: what the producer saw
    let pause = acks.windows(2).filter(|w| w[1] >= signalled).map(|w| w[1] - w[0]).max().unwrap_or_default();
    let first_after = acks.iter().find(|t| **t >= signalled).map(|t| *t - signalled);
    Ok(json!({
        "scenario": a.target.label, "kind": "failover", "signal": a.signal,
        "records": acks.len(), "failed": failed.load(Ordering::Relaxed),
        "old_leader": leader, "new_leader": new_leader,
        "max_pause_ms": ms(pause),
        "first_ack_after_signal_ms": first_after.map(ms),
    }))
}

// ---------------------------------------------------------------------------------------
// reassignment

fn reassign(a: ReassignArgs) -> anyhow::Result<Value> {
    use kafka_protocol::messages::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
    use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    use weir::client::connection::Connection;
    let client = weir::client::ClientConfig::new("");
    // where the partition is now (the leader's copy is what moves) and where it goes
    let probe: BaseConsumer = client_config(&a.target.bootstrap).create()?;
    let meta = probe.fetch_metadata(Some(&a.topic), Duration::from_secs(10))?;
    let partition = meta
        .topics()
        .first()
        .and_then(|t| t.partitions().iter().find(|p| p.id() == a.partition))
        .ok_or_else(|| anyhow::anyhow!("no partition {} of {}", a.partition, a.topic))?;
    let leader =
        meta.brokers().iter().find(|b| b.id() == partition.leader()).ok_or_else(|| anyhow::anyhow!("no leader"))?;
    let source = format!("{}:{}", leader.host(), leader.port());
    let target: Vec<i32> = match &a.to {
        Some(to) => to.split(',').map(|b| b.trim().parse()).collect::<Result<_, _>>()?,
        None => {
            let mut ids: Vec<i32> = meta.brokers().iter().map(|b| b.id()).collect();
            ids.sort_unstable();
            let new = ids
                .into_iter()
                .find(|id| !partition.replicas().contains(id))
                .ok_or_else(|| anyhow::anyhow!("no broker without a replica"))?;
            partition.replicas().iter().copied().chain([new]).collect()
        }
    };
    let to = target.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    let target: Vec<BrokerId> = target.into_iter().map(BrokerId).collect();
    let name = || TopicName(StrBytes::from_string(a.topic.clone()));
    let first = a.target.bootstrap.split(',').next().unwrap_or_default().to_string();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let dirs = DescribeLogDirsRequest::default().with_topics(Some(vec![DescribableLogDirTopic::default()
            .with_topic(name())
            .with_partitions(vec![a.partition])]));
        let described: DescribeLogDirsResponse =
            Connection::open(&source, &client).await?.call_at(ApiKey::DescribeLogDirs, 1, &dirs).await?;
        let bytes = described
            .results
            .iter()
            .flat_map(|r| &r.topics)
            .flat_map(|t| &t.partitions)
            .find(|p| p.partition_index == a.partition)
            .map_or(0, |p| p.partition_size);
        let sampler = BrokerSampler::start(&a.target.broker_pid);
        let mut admin = Connection::open(&first, &client).await?;
        let started = Instant::now();
        let req = AlterPartitionReassignmentsRequest::default().with_topics(vec![ReassignableTopic::default()
            .with_name(name())
            .with_partitions(vec![ReassignablePartition::default()
                .with_partition_index(a.partition)
                .with_replicas(Some(target.clone()))])]);
        let resp: AlterPartitionReassignmentsResponse =
            admin.call_at(ApiKey::AlterPartitionReassignments, 0, &req).await?;
        let code = resp.responses.first().and_then(|t| t.partitions.first()).map_or(resp.error_code, |p| p.error_code);
        anyhow::ensure!(code == 0, "reassignment refused with error {code}");
        loop {
            let list: ListPartitionReassignmentsResponse = admin
                .call_at(ApiKey::ListPartitionReassignments, 0, &ListPartitionReassignmentsRequest::default())
                .await?;
            if list
                .topics
                .iter()
                .all(|t| t.name != name() || t.partitions.iter().all(|p| p.partition_index != a.partition))
            {
                break;
            }
            anyhow::ensure!(started.elapsed() < Duration::from_secs(3600), "the move did not finish within an hour");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let seconds = started.elapsed().as_secs_f64();
        let mut out = json!({
            "scenario": a.target.label, "kind": "reassign", "bytes": bytes, "seconds": round(seconds, 3),
            "mb_per_s": round(bytes as f64 / seconds / 1e6, 1), "to": to,
        });
        if let Some(sampler) = sampler {
            merge(&mut out, sampler.finish(bytes.max(0) as u64));
        }
        Ok(out)
    })
}

fn config(a: ConfigArgs) -> anyhow::Result<Value> {
    use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    let resource = match (&a.broker, &a.topic) {
        (Some(b), _) => ResourceSpecifier::Broker(*b),
        (None, Some(t)) => ResourceSpecifier::Topic(t),
        (None, None) => anyhow::bail!("--broker or --topic"),
    };
    let mut alter = AlterConfig::new(resource);
    for kv in &a.set {
        let (k, v) = kv.split_once('=').ok_or_else(|| anyhow::anyhow!("--set expects KEY=VALUE, got '{kv}'"))?;
        alter = alter.set(k, v);
    }
    let admin: AdminClient<DefaultClientContext> = client_config(&a.bootstrap).create()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let results = runtime.block_on(admin.alter_configs(&[alter], &AdminOptions::new()))?;
    for r in results {
        r.map_err(|(_, e)| anyhow::anyhow!("config not set: {e}"))?;
    }
    Ok(json!({ "kind": "config", "set": a.set }))
}
