//! Prometheus metrics: counters and histograms kept in atomics on the request path, gauges
//! (offsets, sizes, group lag) read from the broker when scraped, and a minimal HTTP
//! endpoint serving them at `GET /metrics` on `metrics.listener` (`--metrics`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::broker::Broker;

/// API keys and versions tracked (Kafka's keys stay below this).
const MAX_API: usize = 128;
const MAX_VERSION: usize = 32;
/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// A latency histogram with Prometheus' cumulative-bucket exposition.
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram::new()
    }
}

/// fsync latency of every partition in the process (partitions do not know their broker).
pub static FSYNC: Histogram = Histogram::new();

impl Histogram {
    pub const fn new() -> Histogram {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; BUCKETS.len()],
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// Everything counted on the request path.
pub struct Metrics {
    requests: Vec<AtomicU64>,
    errors: Vec<AtomicU64>,
    latency: Vec<Histogram>,
    pub connections_active: AtomicI64,
    pub connections_total: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            requests: (0..MAX_API * MAX_VERSION).map(|_| AtomicU64::new(0)).collect(),
            errors: (0..MAX_API * MAX_VERSION).map(|_| AtomicU64::new(0)).collect(),
            latency: (0..MAX_API).map(|_| Histogram::default()).collect(),
            connections_active: AtomicI64::new(0),
            connections_total: AtomicU64::new(0),
        }
    }
}

fn slot(key: i16, version: i16) -> Option<usize> {
    let (k, v) = (usize::try_from(key).ok()?, usize::try_from(version).ok()?);
    (k < MAX_API && v < MAX_VERSION).then_some(k * MAX_VERSION + v)
}

impl Metrics {
    /// Records one served request: `failed` when it could not be answered (the connection
    /// was closed).
    pub fn request(&self, key: i16, version: i16, elapsed: Duration, failed: bool) {
        let Some(i) = slot(key, version) else { return };
        self.requests[i].fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors[i].fetch_add(1, Ordering::Relaxed);
        }
        if let Some(h) = self.latency.get(key as usize) {
            h.observe(elapsed);
        }
    }

    fn render_requests(&self, out: &mut String) {
        out.push_str(
            "# HELP weir_requests_total Requests served, by API and version.\n# TYPE weir_requests_total counter\n",
        );
        self.render_per_version(out, "weir_requests_total", &self.requests);
        out.push_str(
            "# HELP weir_request_errors_total Requests that could not be served (connection closed).\n\
             # TYPE weir_request_errors_total counter\n",
        );
        self.render_per_version(out, "weir_request_errors_total", &self.errors);
        out.push_str(
            "# HELP weir_request_duration_seconds Time from reading a request to its response.\n\
             # TYPE weir_request_duration_seconds histogram\n",
        );
        for (k, h) in self.latency.iter().enumerate() {
            if h.count.load(Ordering::Relaxed) > 0 {
                h.render(out, "weir_request_duration_seconds", &format!("api=\"{}\"", api_name(k)));
            }
        }
        out.push_str("# HELP weir_fsync_duration_seconds fdatasync of a partition's active segment.\n# TYPE weir_fsync_duration_seconds histogram\n");
        FSYNC.render(out, "weir_fsync_duration_seconds", "");
        let _ = write!(
            out,
            "# HELP weir_connections_active Open client connections.\n# TYPE weir_connections_active gauge\n\
             weir_connections_active {}\n\
             # HELP weir_connections_total Client connections accepted.\n# TYPE weir_connections_total counter\n\
             weir_connections_total {}\n",
            self.connections_active.load(Ordering::Relaxed),
            self.connections_total.load(Ordering::Relaxed)
        );
    }

    fn render_per_version(&self, out: &mut String, name: &str, counters: &[AtomicU64]) {
        for (i, c) in counters.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            if n > 0 {
                let (k, v) = (i / MAX_VERSION, i % MAX_VERSION);
                let _ = writeln!(out, "{name}{{api=\"{}\",version=\"{v}\"}} {n}", api_name(k));
            }
        }
    }
}

fn api_name(key: usize) -> String {
    i16::try_from(key).ok().and_then(|k| ApiKey::try_from(k).ok()).map_or_else(|| key.to_string(), |k| format!("{k:?}"))
}

/// Escapes a label value (topic and group names may hold `"` or `\`).
/// Escapes a Prometheus label value.
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The whole exposition: request metrics, then per-topic, per-partition and per-group gauges,
/// then the metrics clients pushed (KIP-714).
pub async fn render(broker: &Broker) -> String {
    let mut out = String::new();
    broker.metrics.render_requests(&mut out);
    let topics = broker.topics();
    let traffic = [
        ("weir_topic_bytes_in_total", "Record bytes appended, by topic.", true),
        ("weir_topic_bytes_out_total", "Record bytes sent to fetchers, by topic.", false),
    ];
    for (name, help, inbound) in traffic {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for t in &topics {
            let counter = if inbound { &t.traffic.bytes_in } else { &t.traffic.bytes_out };
            let _ = writeln!(out, "{name}{{topic=\"{}\"}} {}", label(&t.name), counter.load(Ordering::Relaxed));
        }
    }
    let gauges = [
        ("weir_partition_log_end_offset", "Log end offset."),
        ("weir_partition_log_start_offset", "Log start offset."),
        ("weir_partition_high_watermark", "High watermark."),
        ("weir_partition_size_bytes", "Bytes of the partition's segments."),
    ];
    let mut rows: Vec<(String, i32, [i64; 4])> = Vec::new();
    for t in &topics {
        for p in &t.partitions {
            let log = p.log();
            let values = [log.log_end_offset(), log.log_start_offset(), log.high_watermark(), log.size_bytes() as i64];
            rows.push((label(&t.name), p.index, values));
        }
    }
    for (i, (name, help)) in gauges.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (topic, partition, values) in &rows {
            let _ = writeln!(out, "{name}{{topic=\"{topic}\",partition=\"{partition}\"}} {}", values[i]);
        }
    }
    out.push_str(
        "# HELP weir_consumer_group_lag High watermark minus the committed offset.\n# TYPE weir_consumer_group_lag gauge\n",
    );
    for id in broker.groups.group_ids() {
        let Some(handle) = broker.groups.group(&id) else { continue };
        let offsets = handle.lock().await.offsets.clone();
        for ((topic, partition), v) in offsets {
            let Some(p) = broker.partition(&topic, partition) else { continue };
            let lag = (p.log().high_watermark() - v.offset).max(0);
            let _ = writeln!(
                out,
                "weir_consumer_group_lag{{group=\"{}\",topic=\"{}\",partition=\"{partition}\"}} {lag}",
                label(&id),
                label(&topic)
            );
        }
    }
    render_dedup(&topics, &mut out);
    render_replica_fetch_errors(broker, &mut out);
    render_storage_failures(broker, &mut out);
    render_replica_fetchers(broker, &mut out);
    render_share_groups(broker, &mut out);
    broker.telemetry.render(&mut out, crate::broker::now_ms());
    out
}

/// Failed writes and fsyncs of partitions, and the replicas taken out of their ISR for them.
fn render_storage_failures(broker: &Broker, out: &mut String) {
    use std::sync::atomic::Ordering::Relaxed;
    let f = &broker.storage_failures;
    let _ = writeln!(
        out,
        "# HELP weir_storage_failures_total Partition writes and fsyncs that failed.\n\
         # TYPE weir_storage_failures_total counter\nweir_storage_failures_total {}\n\
         # HELP weir_storage_offline_replicas_total Replicas taken out of their ISR after a storage failure.\n\
         # TYPE weir_storage_offline_replicas_total counter\nweir_storage_offline_replicas_total {}",
        f.failures.load(Relaxed),
        f.offline_replicas.load(Relaxed)
    );
}

/// Replica fetches that failed, by leader and cause (authentication, tls, authorization,
/// no_listener, unreachable, other), and whether the cause is current.
fn render_replica_fetch_errors(broker: &Broker, out: &mut String) {
    let errors = broker.links.fetch_errors.snapshot();
    let _ = writeln!(
        out,
        "# HELP weir_replica_fetch_errors_total Replica fetches from a leader that failed, by cause.\n\
         # TYPE weir_replica_fetch_errors_total counter"
    );
    for e in &errors {
        let (leader, cause, count) = (e.leader, e.cause.label(), e.count);
        let _ = writeln!(out, "weir_replica_fetch_errors_total{{leader=\"{leader}\",cause=\"{cause}\"}} {count}");
    }
    let _ = writeln!(
        out,
        "# HELP weir_replica_fetch_failing 1 while fetches from the leader fail for this cause.\n\
         # TYPE weir_replica_fetch_failing gauge"
    );
    for e in &errors {
        let (leader, cause, current) = (e.leader, e.cause.label(), u8::from(e.current));
        let _ = writeln!(out, "weir_replica_fetch_failing{{leader=\"{leader}\",cause=\"{cause}\"}} {current}");
    }
}

/// The replica fetchers (one connection each): partitions followed, Fetch requests sent and
/// the partitions they named (incremental fetch sessions name only what changed), per source
/// broker and fetcher.
fn render_replica_fetchers(broker: &Broker, out: &mut String) {
    let fetchers = broker.fetchers.snapshot();
    type Value = fn(&crate::replica::FetcherStats) -> u64;
    let families: [(&str, &str, &str, Value); 4] = [
        ("weir_replica_fetcher_partitions", "gauge", "Partitions a replica fetcher follows.", |s| s.partitions as u64),
        ("weir_replica_fetcher_requests_total", "counter", "Fetch requests a replica fetcher sent.", |s| s.requests),
        (
            "weir_replica_fetcher_partitions_named_total",
            "counter",
            "Partitions named in a replica fetcher's Fetch requests, in all.",
            |s| s.partitions_named,
        ),
        (
            "weir_replica_fetcher_most_partitions_named",
            "gauge",
            "The most partitions one Fetch of a replica fetcher named (a full fetch names all; an \
             incremental one only those whose position changed).",
            |s| s.most_named,
        ),
    ];
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in &fetchers {
            let (leader, id) = (s.key.leader, s.key.id);
            let _ = writeln!(out, "{name}{{leader=\"{leader}\",fetcher=\"{id}\"}} {}", value(s));
        }
    }
    let _ = writeln!(
        out,
        "# HELP weir_fetch_session_partitions Partitions in followers' fetch sessions with this leader.\n\
         # TYPE weir_fetch_session_partitions gauge"
    );
    for (follower, partitions) in broker.fetch_sessions.partitions_by_follower() {
        let _ = writeln!(out, "weir_fetch_session_partitions{{follower=\"{follower}\"}} {partitions}");
    }
}

/// Duplicate detection by message id: ids remembered per partition, duplicates dropped per
/// topic (topics that detect duplicates only).
fn render_dedup(topics: &[Arc<crate::broker::Topic>], out: &mut String) {
    let mut ids = Vec::new();
    let mut dropped = Vec::new();
    for t in topics {
        let mut topic_dropped = None;
        for p in &t.partitions {
            if let Some((n, d)) = p.log().dedup_stats() {
                ids.push((label(&t.name), p.index, n));
                *topic_dropped.get_or_insert(0) += d;
            }
        }
        dropped.extend(topic_dropped.map(|d| (label(&t.name), d)));
    }
    let _ = writeln!(
        out,
        "# HELP weir_dedup_ids Message ids remembered to detect duplicates.\n# TYPE weir_dedup_ids gauge"
    );
    for (topic, partition, n) in ids {
        let _ = writeln!(out, "weir_dedup_ids{{topic=\"{topic}\",partition=\"{partition}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP weir_dedup_duplicates_dropped_total Records dropped as duplicates of a message id, by topic.\n\
         # TYPE weir_dedup_duplicates_dropped_total counter"
    );
    for (topic, n) in dropped {
        let _ = writeln!(out, "weir_dedup_duplicates_dropped_total{{topic=\"{topic}\"}} {n}");
    }
}

/// One counter's labelled values, from a group's summed share-partition counters.
type CounterValues = fn(&crate::share::partition::Counters) -> Vec<(&'static str, u64)>;

/// Share groups (KIP-932): per share-partition in-flight records, start offset and lag; per
/// group acknowledgements by type, redeliveries and archived records.
fn render_share_groups(broker: &Broker, out: &mut String) {
    let mut rows = Vec::new();
    for (key, sp) in broker.shares.all() {
        let Some(topic) = broker.topic_by_id(&key.topic_id) else { continue };
        let hw = topic.partition(key.partition).map_or(0, |p| p.log().high_watermark());
        let state = sp.lock();
        let labels =
            format!("group=\"{}\",topic=\"{}\",partition=\"{}\"", label(&key.group), label(&topic.name), key.partition);
        rows.push((labels, [state.acquired_count(), state.start_offset(), state.lag(hw)]));
    }
    let gauges = [
        ("weir_share_partition_acquired_records", "Records acquired by share consumers now (in flight)."),
        ("weir_share_partition_start_offset", "Share-partition start offset: every record below it is done."),
        ("weir_share_partition_lag", "Records up to the high watermark not yet acknowledged or archived."),
    ];
    for (i, (name, help)) in gauges.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, values) in &rows {
            let _ = writeln!(out, "{name}{{{labels}}} {}", values[i]);
        }
    }
    let counters: [(&str, &str, CounterValues); 3] = [
        ("weir_share_group_acknowledgements_total", "Records acknowledged, by type.", |c| {
            vec![
                ("type=\"gap\"", c.acknowledged[0]),
                ("type=\"accept\"", c.acknowledged[1]),
                ("type=\"release\"", c.acknowledged[2]),
                ("type=\"reject\"", c.acknowledged[3]),
                ("type=\"renew\"", c.acknowledged[4]),
            ]
        }),
        ("weir_share_group_deliveries_total", "Records delivered (acquired), first time or again.", |c| {
            vec![("attempt=\"first\"", c.acquired - c.redelivered), ("attempt=\"redelivery\"", c.redelivered)]
        }),
        ("weir_share_group_archived_records_total", "Records given up on, by reason.", |c| {
            vec![("reason=\"rejected\"", c.archived_rejected), ("reason=\"delivery_limit\"", c.archived_delivery_limit)]
        }),
    ];
    let totals = broker.shares.group_counters();
    for (name, help, values) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (group, c) in &totals {
            for (extra, v) in values(c) {
                let _ = writeln!(out, "{name}{{group=\"{}\",{extra}}} {v}", label(group));
            }
        }
    }
}

/// Serves `GET /metrics` until the listener fails. One response per connection.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>) {
    loop {
        let Ok((mut stream, peer)) = listener.accept().await else { continue };
        let broker = broker.clone();
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            // the request line and headers, bounded, within a short time
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
                    let n = stream.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                return;
            }
            let response = if request.starts_with(b"GET /metrics ") || request.starts_with(b"GET /metrics?") {
                let body = render(&broker).await;
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
            };
            if let Err(e) = stream.write_all(response.as_bytes()).await {
                tracing::debug!(%peer, error = %e, "metrics response not sent");
            }
        });
    }
}
