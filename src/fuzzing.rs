//! Entry points for fuzzing. Each takes arbitrary bytes and must neither panic nor hang nor
//! allocate without bound. The cargo-fuzz targets in `fuzz/` call them, and
//! `tests/fuzz_corpus.rs` runs the committed seed corpus (plus any crash reproducers added to
//! it) through them on every `cargo test`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;

use crate::broker::Broker;
use crate::config::{BrokerConfig, LogConfig};
use crate::log::batch::{self, ProduceLimits};
use crate::log::Log;

/// A scratch directory, unique in this process, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(kind: &str) -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("weir-fuzz-{kind}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One broker (and runtime) for the whole fuzzing process, with a topic to aim at.
fn broker() -> &'static (tokio::runtime::Runtime, Arc<Broker>) {
    static BROKER: OnceLock<(tokio::runtime::Runtime, Arc<Broker>)> = OnceLock::new();
    BROKER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("weir-fuzz-broker-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let layer = vec![
            ("log.dirs".to_string(), dir.display().to_string()),
            ("auto.create.topics.enable".to_string(), "false".to_string()),
            ("group.initial.rebalance.delay.ms".to_string(), "0".to_string()),
        ];
        let config = BrokerConfig::from_layers([layer]).expect("fuzz broker config");
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let broker = rt.block_on(Broker::open(config)).expect("fuzz broker opens");
        let new = crate::broker::NewTopic {
            name: "t".into(),
            partitions: 2,
            replication_factor: 1,
            configs: Default::default(),
            assignments: Vec::new(),
        };
        let _ = rt.block_on(broker.create_topic(&new));
        (rt, broker)
    })
}

/// A whole request frame (without its size prefix) through the broker's dispatch. Requests
/// that would create topics or partitions are only decoded, so a long run does not fill the
/// disk with topics; requests that may wait (long-poll fetches, joins) are cut off.
pub fn request_frame(data: &[u8]) {
    let (rt, broker) = broker();
    let key = data.get(..2).map(|k| i16::from_be_bytes([k[0], k[1]]));
    let mutating = [ApiKey::CreateTopics as i16, ApiKey::CreatePartitions as i16];
    if key.is_some_and(|k| mutating.contains(&k)) {
        let _ = crate::handlers::decode_only(Bytes::copy_from_slice(data));
        return;
    }
    let peer: SocketAddr = ([127, 0, 0, 1], 9).into();
    let session = std::sync::Arc::new(crate::security::sasl::Session::plaintext(peer));
    let frame = Bytes::copy_from_slice(data);
    rt.block_on(async {
        let served =
            tokio::time::timeout(Duration::from_millis(200), crate::handlers::handle_frame(broker, &session, frame));
        if let Ok(Ok(crate::handlers::Handled::Later(pending))) = served.await {
            let _ = tokio::time::timeout(Duration::from_millis(200), pending).await;
        }
    });
}

/// Record-batch framing and validation, as the produce path runs them.
pub fn record_batch(data: &[u8]) {
    let limits = ProduceLimits {
        max_message_bytes: 1 << 20,
        segment_bytes: 1 << 30,
        log_append_time: false,
        timestamp_before_max_ms: i64::MAX,
        timestamp_after_max_ms: i64::MAX,
        now_ms: 0,
        compacted: false,
        topic_partition: "fuzz-0",
    };
    let compacted = ProduceLimits { compacted: true, timestamp_after_max_ms: 1000, ..limits };
    if let Ok(batches) = batch::split_batches(data) {
        for b in batches {
            if batch::validate_produced(b, &limits).is_ok() {
                deduplicate_twice(b);
            }
            let _ = batch::validate_produced(b, &compacted);
            let _ = batch::control_type(b);
        }
    }
    let _ = batch::check_integrity(data);
}

/// Duplicate detection on an accepted batch, by header and by key, twice (the second time
/// every id is known): whatever it writes instead must be a sound batch.
fn deduplicate_twice(b: &[u8]) {
    use crate::log::dedup::{record_ids, DedupConfig, DedupIndex, Filtered, IdSource};
    for id in [IdSource::Header("message-id".into()), IdSource::Key] {
        let mut index = DedupIndex::new(DedupConfig { window_ms: 1000, id, max_ids: 64 });
        for _ in 0..2 {
            let Ok(ids) = record_ids(b, &index.config().id) else { return };
            let written = match index.filter(b, &ids, 0) {
                Ok(Filtered::Rewritten { leading, batch, .. }) => leading.into_iter().chain([batch]).collect(),
                Ok(Filtered::AllDuplicates { placeholder, .. }) => placeholder.into_iter().collect(),
                _ => Vec::new(),
            };
            for w in written {
                assert!(batch::check_integrity(&w).is_ok(), "deduplication wrote a damaged batch");
            }
            index.remember(&ids, 0, 0, None);
        }
    }
}

/// A segment file of arbitrary bytes opened after a crash (recovery) and after a clean
/// shutdown (trusted), then read end to end.
pub fn log_recovery(data: &[u8]) {
    for clean in [false, true] {
        let scratch = Scratch::new("log");
        if std::fs::create_dir_all(&scratch.0).is_err() {
            return;
        }
        if std::fs::write(scratch.0.join("00000000000000000000.log"), data).is_err() {
            return;
        }
        let config = LogConfig::resolve(&BrokerConfig::default(), &Default::default());
        let Ok((mut log, _)) = Log::open(&scratch.0, config, clean, 0) else { continue };
        let mut offset = log.log_start_offset();
        let end = log.log_end_offset();
        while offset < end {
            match log.read(offset, 1 << 16, end, true).map(|r| r.records) {
                Ok(Some(slice)) if slice.end_offset > offset => offset = slice.end_offset,
                _ => break,
            }
        }
        let _ = log.offset_for_timestamp(0);
        let _ = log.max_timestamp_offset();
        let _ = log.append(&batch::sample_batch(2), 0);
        let _ = log.close();
    }
}

/// Stored state decoders: producer snapshots, `__consumer_offsets` and `__transaction_state`
/// keys and values.
pub fn stored_state(data: &[u8]) {
    use crate::coordinator::group::{consumer_records, records};
    let b = Bytes::copy_from_slice(data);
    let _ = crate::log::producer_state::ProducerState::decode_snapshot(data);
    let _ = records::RecordKey::decode(b.clone());
    let _ = records::OffsetValue::decode(b.clone());
    let _ = records::GroupValue::decode(b.clone());
    let _ = consumer_records::MemberMetadata::decode(b.clone());
    let _ = consumer_records::CurrentAssignment::decode(b.clone());
    let _ = consumer_records::decode_target(b.clone());
    let _ = crate::share::state::decode_key(b.clone());
    let dedup = crate::log::dedup::DedupConfig {
        window_ms: 1000,
        id: crate::log::dedup::IdSource::Header("message-id".into()),
        max_ids: 64,
    };
    let _ = crate::log::dedup::DedupIndex::decode_snapshot(dedup, &b);
    if let Some(s) = crate::share::state::decode_snapshot(b.clone()) {
        // a share-partition rebuilt from it, then read and acknowledged: nothing may panic
        let mut sp = crate::share::restore_snapshot(s, 0, 1_000, Default::default());
        let member: std::sync::Arc<str> = std::sync::Arc::from("m");
        let batch = crate::share::partition::LogBatch::new(0, 999);
        let got = sp.acquire(&member, &[batch], 100, crate::share::partition::AcquireMode::RecordLimit, 0);
        for a in got {
            let _ = sp.acknowledge("m", a.first, a.last, &[4], 1);
            let _ = sp.acknowledge("m", a.first, a.last, &[1], 1);
        }
        let _ = sp.lag(1_000);
    }
    let _ = crate::coordinator::txn::records::decode_key(b.clone());
    let _ = crate::coordinator::txn::records::decode_value("t", b);
}

/// A SASL exchange on a SASL listener's session: the first byte picks the mechanism and the
/// SaslHandshake version, the rest is split at newlines into the client's tokens. The user
/// `u` exists (password `pw`) for every mechanism, so exchanges can get deep.
pub fn sasl_exchange(data: &[u8]) {
    use crate::security::sasl::{ListenerInfo, SaslMechanism, Session};
    use crate::security::scram::{Credential, Mechanism};
    use crate::security::SecurityProtocol;
    static CREDENTIALS: std::sync::OnceLock<[Credential; 2]> = std::sync::OnceLock::new();
    let creds = CREDENTIALS.get_or_init(|| {
        [Credential::new(Mechanism::Sha256, "pw", 4096), Credential::new(Mechanism::Sha512, "pw", 4096)]
    });
    let lookup = |user: &str, m: Mechanism| (user == "u").then(|| creds[usize::from(m == Mechanism::Sha512)].clone());
    let Some((&first, rest)) = data.split_first() else { return };
    let mechanism = match first % 3 {
        0 => SaslMechanism::Plain,
        1 => SaslMechanism::Scram(Mechanism::Sha256),
        _ => SaslMechanism::Scram(Mechanism::Sha512),
    };
    let listener = ListenerInfo { name: "SASL_PLAINTEXT".into(), protocol: SecurityProtocol::SaslPlaintext };
    let session = Session::new(std::sync::Arc::new(listener), ([127, 0, 0, 1], 9).into(), None);
    if session.handshake(mechanism, i16::from(first & 0x80 == 0)).is_err() {
        return;
    }
    for token in rest.split(|b| *b == b'\n') {
        if !session.in_exchange() && session.handshake(mechanism, 1).is_err() {
            return;
        }
        if session.authenticate(token, lookup, None, 1000).is_err() {
            return;
        }
    }
}
