//! `weir produce`: records from stdin, batched per partition, acks=all.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use clap::Args;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use serde_json::{json, Value};

use super::output::{Format, Outcome, Table};
use super::position::now_ms;
use crate::client::{partitions_named, Client, ClientError};

pub const EXAMPLES: &str = "Examples:
  echo hello | weir produce greetings
  seq 1 1000 | weir produce numbers -k batch-1 -H source=seq -z lz4
  printf 'k1:v1\\nk2:v2\\n' | weir produce orders --key-delimiter :
  weir consume orders --from beginning -e --format json | weir produce orders-copy --input json
With --input json each line is an object: {\"key\": …, \"value\": …, \"headers\": [{\"key\": …, \"value\": …}], \"partition\": …}
(headers may also be an object of name → value; every field is optional).";

/// A batch is sent once it holds this much (well under the default max.message.bytes).
const BATCH_BYTES: usize = 512 * 1024;
const BATCH_RECORDS: usize = 10_000;
/// Lines typed at a terminal go out this soon.
const LINGER: Duration = Duration::from_millis(50);

#[derive(Args, Debug)]
pub struct ProduceArgs {
    topic: String,
    /// Partition for every record (default: by key hash as the Java client, else spread).
    #[arg(short = 'p', long)]
    partition: Option<i32>,
    /// Key for every record.
    #[arg(short = 'k', long)]
    key: Option<String>,
    /// Split each line into KEY DELIM VALUE at the first DELIM (kcat's -K).
    #[arg(short = 'K', long = "key-delimiter", value_name = "DELIM", conflicts_with = "key")]
    key_delimiter: Option<String>,
    /// A header for every record (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
    /// Compression codec: none, gzip, snappy, lz4, zstd.
    #[arg(short = 'z', long, default_value = "none")]
    compression: String,
    /// Input: text (a record per line) or json (JSON lines, as `weir consume --format json`
    /// prints them).
    #[arg(long, value_enum, default_value = "text")]
    input: Format,
    /// No progress line on stderr.
    #[arg(short = 'q', long)]
    quiet: bool,
}

fn codec(name: &str) -> Result<Compression, ClientError> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        other => {
            return Err(ClientError::Config(format!("unknown compression '{other}' (none, gzip, snappy, lz4, zstd)")))
        }
    })
}

/// The Java client's murmur2 (its default partitioner hashes keys with it).
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// One input record before it gets a partition.
struct Input {
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<(String, Option<Bytes>)>,
    partition: Option<i32>,
}

fn text_bytes(v: &Value) -> Option<Bytes> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(Bytes::from(s.clone().into_bytes())),
        other => Some(Bytes::from(other.to_string().into_bytes())),
    }
}

fn parse_json_line(line: &str) -> Result<Input, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not a JSON object: {e}"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    let mut headers = Vec::new();
    match obj.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => headers.extend(map.iter().map(|(k, v)| (k.clone(), text_bytes(v)))),
        Some(Value::Array(list)) => {
            for h in list {
                let name = h.get("key").and_then(Value::as_str).ok_or("a header needs a \"key\"")?;
                headers.push((name.to_string(), h.get("value").and_then(text_bytes)));
            }
        }
        Some(_) => return Err("\"headers\" must be an object or an array".into()),
    }
    let partition = match obj.get("partition") {
        None | Some(Value::Null) => None,
        Some(p) => Some(p.as_i64().and_then(|p| i32::try_from(p).ok()).ok_or("\"partition\" must be an integer")?),
    };
    Ok(Input {
        key: obj.get("key").and_then(text_bytes),
        value: obj.get("value").and_then(text_bytes),
        headers,
        partition,
    })
}

/// Records waiting for one partition's next batch.
#[derive(Default)]
struct Pending {
    records: Vec<Record>,
    bytes: usize,
}

pub async fn run(client: &mut Client, args: ProduceArgs, format: Format) -> Result<Outcome, ClientError> {
    let compression = codec(&args.compression)?;
    let partitions = client.partitions(&args.topic).await?;
    let count = partitions.len() as i32;
    if partitions.is_empty() {
        return Err(ClientError::Protocol(format!("topic '{}' has no partitions in the metadata", args.topic)));
    }
    if let Some(p) = args.partition {
        partitions_named(&args.topic, partitions.clone(), &[p])?;
    }
    let fixed_headers: Vec<(String, Option<Bytes>)> = super::key_values(&args.headers, "-H")?
        .into_iter()
        .map(|(k, v)| (k, Some(Bytes::from(v.into_bytes()))))
        .collect();
    // stdin is read on a thread so a pause in the input flushes what is waiting
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<String>>(4096);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let progress = !args.quiet && std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut pending: BTreeMap<i32, Pending> = BTreeMap::new();
    let mut spread = 0i32;
    let mut sent: BTreeMap<i32, (i64, i64, u64)> = BTreeMap::new();
    let mut total: u64 = 0;
    let mut line_no: u64 = 0;
    loop {
        let next = tokio::time::timeout(LINGER, rx.recv()).await;
        let line = match next {
            Ok(Some(line)) => Some(line.map_err(|e| ClientError::Config(format!("reading stdin: {e}")))?),
            Ok(None) => None,
            Err(_) => {
                flush(client, &args.topic, compression, &mut pending, &mut sent, |_| true).await?;
                continue;
            }
        };
        let Some(line) = line else { break };
        line_no += 1;
        let mut input = match args.input {
            Format::Json if line.trim().is_empty() => continue,
            Format::Json => {
                parse_json_line(&line).map_err(|e| ClientError::Config(format!("stdin line {line_no}: {e}")))?
            }
            Format::Text => {
                let (key, value) = match &args.key_delimiter {
                    Some(d) => match line.split_once(d.as_str()) {
                        Some((k, v)) => (Some(k.to_string()), v.to_string()),
                        None => (None, line),
                    },
                    None => (None, line),
                };
                Input {
                    key: key.map(|k| Bytes::from(k.into_bytes())),
                    value: Some(Bytes::from(value.into_bytes())),
                    headers: Vec::new(),
                    partition: None,
                }
            }
        };
        if input.key.is_none() {
            input.key = args.key.clone().map(|k| Bytes::from(k.into_bytes()));
        }
        let partition = match (args.partition, input.partition, &input.key) {
            (Some(p), _, _) | (None, Some(p), _) => p,
            (None, None, Some(k)) => partitions[((murmur2(k) & 0x7fff_ffff) % count) as usize],
            (None, None, None) => partitions[(spread.rem_euclid(count)) as usize],
        };
        if !partitions.contains(&partition) {
            return Err(ClientError::kafka(
                format!("stdin line {line_no}: topic '{}' partition {partition}", args.topic),
                kafka_protocol::ResponseError::UnknownTopicOrPartition.code(),
                None,
            ));
        }
        let size = input.key.as_ref().map_or(0, Bytes::len) + input.value.as_ref().map_or(0, Bytes::len) + 32;
        let mut record = Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: now_ms(),
            key: input.key,
            value: input.value,
            headers: Default::default(),
        };
        for (k, v) in fixed_headers.iter().cloned().chain(input.headers) {
            record.headers.insert(StrBytes::from_string(k), v);
        }
        let p = pending.entry(partition).or_default();
        p.records.push(record);
        p.bytes += size;
        total += 1;
        if p.records.len() >= BATCH_RECORDS || p.bytes >= BATCH_BYTES {
            // the sticky partitioner's idea: a keyless stream fills one batch, then moves on
            spread = spread.wrapping_add(1);
            flush(client, &args.topic, compression, &mut pending, &mut sent, |q| {
                q.records.len() >= BATCH_RECORDS || q.bytes >= BATCH_BYTES
            })
            .await?;
        }
        if progress && last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            let rate = total as f64 / started.elapsed().as_secs_f64().max(0.001);
            eprint!("\rproduced {total} records ({rate:.0}/s)   ");
        }
    }
    flush(client, &args.topic, compression, &mut pending, &mut sent, |_| true).await?;
    if progress && started.elapsed() >= Duration::from_secs(1) {
        eprintln!();
    }
    let mut table = Table::new(&["PARTITION", "RECORDS", "FIRST-OFFSET", "LAST-OFFSET"]);
    let mut parts = Vec::new();
    for (p, (first, last, n)) in &sent {
        table.row(vec![p.to_string(), n.to_string(), first.to_string(), last.to_string()]);
        parts.push(json!({"partition": p, "records": n, "first_offset": first, "last_offset": last}));
    }
    let json = json!({"topic": args.topic, "records": total, "partitions": parts});
    let text = format!(
        "produced {total} records to '{}'\n{}",
        args.topic,
        if total > 0 { table.render() } else { String::new() }
    );
    // text mode keeps stdout for data: the summary goes to stderr
    if format == Format::Text {
        eprint!("{text}");
        return Ok(Outcome::printed());
    }
    Ok(Outcome::new(json, text))
}

/// Sends the pending batches `ready` picks; records each partition's offsets.
async fn flush(
    client: &mut Client,
    topic: &str,
    compression: Compression,
    pending: &mut BTreeMap<i32, Pending>,
    sent: &mut BTreeMap<i32, (i64, i64, u64)>,
    ready: impl Fn(&Pending) -> bool,
) -> Result<(), ClientError> {
    let mut batches = Vec::new();
    let mut counts = BTreeMap::new();
    let chosen: Vec<i32> = pending.iter().filter(|(_, q)| !q.records.is_empty() && ready(q)).map(|(p, _)| *p).collect();
    for p in chosen {
        let Some(mut q) = pending.remove(&p) else { continue };
        // offsets and sequences in step keep the records in one batch (kafka-protocol's
        // encoder starts a new batch where they are not); base sequence -1: not idempotent
        for (i, r) in q.records.iter_mut().enumerate() {
            r.offset = i as i64;
            r.sequence = i as i32 - 1;
        }
        let mut buf = BytesMut::with_capacity(q.bytes + 128);
        let options = RecordEncodeOptions { version: 2, compression };
        RecordBatchEncoder::encode(&mut buf, q.records.iter(), &options)
            .map_err(|e| ClientError::Protocol(format!("cannot encode a batch: {e}")))?;
        counts.insert(p, q.records.len() as u64);
        batches.push(((topic.to_string(), p), buf.freeze()));
    }
    if batches.is_empty() {
        return Ok(());
    }
    for ((_, p), result) in client.produce(batches, 30_000).await? {
        let base = result?;
        let n = counts.get(&p).copied().unwrap_or(0);
        let last = base + n as i64 - 1;
        let e = sent.entry(p).or_insert((base, last, 0));
        e.1 = last;
        e.2 += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // values from Kafka's UtilsTest.testMurmur2
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"), -58897971);
        assert_eq!(murmur2(b"abc"), 479470107);
    }
}
