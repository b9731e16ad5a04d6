//! Duplicate detection by message id (`weir.dedup.*`, issue 17) with rdkafka clients: records
//! resent with ids already appended are dropped — ids in a header or the key, batches of
//! every codec partly or wholly duplicate, ids forgotten after the window or beyond the
//! limit, kept across a restart and a SIGKILL, forgotten when a transaction aborts — and a
//! topic without it stores every batch as sent.

mod common;

use std::time::Duration;

use common::*;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseProducer, BaseRecord, FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset};

const T: Duration = Duration::from_secs(20);

/// Sends `(message-id, value)` records to partition 0 as one batch (all queued before the
/// first is sent); returns each record's offset from its delivery report.
async fn send_batch(p: &FutureProducer, topic: &str, records: &[(Option<&str>, &str)]) -> Vec<i64> {
    let sends: Vec<_> = records
        .iter()
        .map(|(id, value)| {
            let mut r = FutureRecord::<(), str>::to(topic).partition(0).payload(*value);
            if let Some(id) = id {
                r = r.headers(OwnedHeaders::new().insert(Header { key: "message-id", value: Some(*id) }));
            }
            p.send_result(r).map_err(|(e, _)| e).expect("queued")
        })
        .collect();
    let mut offsets = Vec::new();
    for s in sends {
        let delivery = s.await.expect("delivered").expect("acknowledged");
        offsets.push(delivery.offset);
    }
    offsets
}

/// Every record of partition 0 from the start, as (offset, value), read until `n` arrived
/// (a broker just killed may still be reported unreachable meanwhile).
fn read(bootstrap: &str, topic: &str, n: usize, extra: &[(&str, &str)]) -> Vec<(i64, String)> {
    let c: BaseConsumer = assigned_consumer(bootstrap, topic, &[0], Offset::Beginning, extra);
    let got = consume_n_tolerating(&c, n, T, &[rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure]);
    // nothing more arrives
    assert!(c.poll(Duration::from_millis(500)).is_none(), "more than {n} records");
    got.iter().map(|m| (m.offset(), value(m))).collect()
}

fn value(m: &OwnedMessage) -> String {
    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()
}

fn header_id(m: &OwnedMessage) -> Option<String> {
    let h = m.headers()?;
    (0..h.count())
        .map(|i| h.get(i))
        .find(|h| h.key == "message-id")
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn resent_ids_are_dropped_in_batches_of_every_codec() {
    let broker = TestBroker::start(&[("metrics.listener", "127.0.0.1:0")]).await;
    let metrics = broker.running.as_ref().unwrap().metrics_addr.expect("metrics listener").to_string();
    for (i, codec) in ["none", "gzip", "snappy", "lz4", "zstd"].into_iter().enumerate() {
        let topic = topic_name(&format!("dedup-{codec}"));
        create_topic(&broker.bootstrap, &topic, 1, &[("weir.dedup.window.ms", "60000")]).await;
        let idempotent = if i % 2 == 0 { "true" } else { "false" };
        let p = producer(
            &broker.bootstrap,
            &[("compression.type", codec), ("linger.ms", "50"), ("enable.idempotence", idempotent)],
        );
        let first = send_batch(&p, &topic, &[(Some("a"), "a1"), (Some("b"), "b1"), (Some("c"), "c1")]).await;
        assert_eq!(first, vec![0, 1, 2], "{codec}");
        // b and a again, d twice in the batch, e new, a record without an id
        let second = send_batch(
            &p,
            &topic,
            &[
                (Some("b"), "b2"),
                (Some("d"), "d1"),
                (Some("d"), "d2"),
                (Some("e"), "e1"),
                (Some("a"), "a2"),
                (None, "x"),
            ],
        )
        .await;
        assert_eq!(second, vec![3, 4, 5, 6, 7, 8], "offsets count every record sent, {codec}");
        // a batch of nothing but copies is answered with the first original's offset
        let third = send_batch(&p, &topic, &[(Some("c"), "c2"), (Some("e"), "e2")]).await;
        assert_eq!(third[0], 2, "{codec}");
        let after = send_batch(&p, &topic, &[(Some("f"), "f1")]).await;
        let (b, t) = (broker.bootstrap.clone(), topic.clone());
        let got = tokio::task::spawn_blocking(move || read(&b, &t, 7, &[])).await.unwrap();
        let want: Vec<(i64, String)> = [(0, "a1"), (1, "b1"), (2, "c1"), (4, "d1"), (6, "e1"), (8, "x")]
            .into_iter()
            .map(|(o, v)| (o, v.to_string()))
            .chain([(after[0], "f1".to_string())])
            .collect();
        assert_eq!(got, want, "{codec} (idempotent: {idempotent})");
        assert!(after[0] >= 9, "{codec}: {after:?}");
        let body = http_get(&metrics, "/metrics");
        let dropped = format!("weir_dedup_duplicates_dropped_total{{topic=\"{topic}\"}} 5");
        assert!(body.contains(&dropped), "{dropped} not in\n{body}");
        assert!(
            body.contains(&format!("weir_dedup_ids{{topic=\"{topic}\",partition=\"0\"}} 6")),
            "a b c d e f: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_by_key_expire_after_the_window_and_beyond_the_limit() {
    let broker = TestBroker::start(&[]).await;
    let by_key = topic_name("dedup-key");
    create_topic(&broker.bootstrap, &by_key, 1, &[("weir.dedup.window.ms", "1500"), ("weir.dedup.id", "key")]).await;
    let p = producer(&broker.bootstrap, &[("linger.ms", "0")]);
    let send = |key: Option<&'static str>, value: &'static str| {
        let p = p.clone();
        let topic = by_key.clone();
        async move {
            let mut r = FutureRecord::<str, str>::to(&topic).partition(0).payload(value);
            if let Some(k) = key {
                r = r.key(k);
            }
            p.send(r, T).await.map(|d| d.offset).map_err(|(e, _)| e).unwrap()
        }
    };
    assert_eq!(send(Some("k1"), "one").await, 0);
    assert_eq!(send(Some("k1"), "one again").await, 0, "a copy: the original's offset");
    assert_eq!(send(None, "keyless").await, 1);
    assert_eq!(send(None, "keyless").await, 2, "records without an id are never duplicates");
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(send(Some("k1"), "after the window").await, 3);
    let (b, t) = (broker.bootstrap.clone(), by_key.clone());
    let got = tokio::task::spawn_blocking(move || read(&b, &t, 4, &[])).await.unwrap();
    let values: Vec<&str> = got.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(values, ["one", "keyless", "keyless", "after the window"]);

    // at most two ids: the oldest is forgotten first
    let limited = topic_name("dedup-limit");
    create_topic(&broker.bootstrap, &limited, 1, &[("weir.dedup.window.ms", "600000"), ("weir.dedup.max.ids", "2")])
        .await;
    let p = producer(&broker.bootstrap, &[("linger.ms", "0")]);
    for id in ["a", "b", "c", "c", "a"] {
        send_batch(&p, &limited, &[(Some(id), id)]).await;
    }
    let (b, t) = (broker.bootstrap.clone(), limited.clone());
    let got = tokio::task::spawn_blocking(move || read(&b, &t, 4, &[])).await.unwrap();
    let values: Vec<&str> = got.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(values, ["a", "b", "c", "a"], "a was forgotten when c came");
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_survive_a_restart_and_a_sigkill() {
    // a clean restart (in process)
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("dedup-restart");
    create_topic(&broker.bootstrap, &topic, 1, &[("weir.dedup.window.ms", "600000")]).await;
    let p = producer(&broker.bootstrap, &[("acks", "all")]);
    send_batch(&p, &topic, &[(Some("a"), "a1"), (Some("b"), "b1")]).await;
    drop(p);
    let broker = broker.restart(&[]).await;
    let p = producer(&broker.bootstrap, &[("acks", "all")]);
    send_batch(&p, &topic, &[(Some("b"), "b2"), (Some("c"), "c1"), (Some("a"), "a2")]).await;
    let (b, t) = (broker.bootstrap.clone(), topic.clone());
    let got = tokio::task::spawn_blocking(move || read(&b, &t, 3, &[])).await.unwrap();
    let values: Vec<&str> = got.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(values, ["a1", "b1", "c1"]);

    // SIGKILL of the built broker between the send and the resend
    let dir = tempfile::tempdir().unwrap();
    let killed = topic_name("dedup-kill9");
    let addr = BinaryBroker::free_addr();
    let b = BinaryBroker::start_on(&addr, dir.path(), &[]);
    create_topic(&b.bootstrap, &killed, 1, &[("weir.dedup.window.ms", "600000")]).await;
    let p = producer(&b.bootstrap, &[("acks", "all")]);
    let ids: Vec<String> = (0..200).map(|i| format!("id-{i}")).collect();
    let first: Vec<(Option<&str>, &str)> = ids.iter().map(|id| (Some(id.as_str()), "first")).collect();
    send_batch(&p, &killed, &first).await;
    drop(p);
    b.kill9();
    let b = BinaryBroker::start_on(&addr, dir.path(), &[]);
    let p = producer(&b.bootstrap, &[("acks", "all")]);
    let again: Vec<(Option<&str>, &str)> = ids.iter().map(|id| (Some(id.as_str()), "again")).collect();
    send_batch(&p, &killed, &again).await;
    send_batch(&p, &killed, &[(Some("id-new"), "new")]).await;
    let (bs, t) = (b.bootstrap.clone(), killed.clone());
    let got = tokio::task::spawn_blocking(move || read(&bs, &t, 201, &[])).await.unwrap();
    assert!(got[..200].iter().all(|(_, v)| v == "first"), "nothing resent was written again");
    assert_eq!(got[200].1, "new");
    b.kill9();
}

fn txn_producer(bootstrap: &str, id: &str) -> BaseProducer {
    let mut c = client_config(bootstrap);
    c.set("transactional.id", id).set("linger.ms", "5");
    let p: BaseProducer = c.create().expect("transactional producer");
    p.init_transactions(T).expect("init_transactions");
    p
}

/// Sends `(id, value)` records to partition 0 of `topic` in one transaction, committed or not.
fn transaction(p: &BaseProducer, topic: &str, records: &[(&str, &str)], commit: bool) {
    p.begin_transaction().unwrap();
    for (id, value) in records {
        let headers = OwnedHeaders::new().insert(Header { key: "message-id", value: Some(*id) });
        p.send(BaseRecord::<(), str>::to(topic).partition(0).payload(*value).headers(headers)).unwrap();
    }
    p.flush(T).unwrap();
    if commit {
        p.commit_transaction(T).unwrap();
    } else {
        p.abort_transaction(T).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_aborted_transaction_forgets_its_ids_a_committed_one_keeps_them() {
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("dedup-txn");
    create_topic(&broker.bootstrap, &topic, 1, &[("weir.dedup.window.ms", "600000")]).await;
    let (b, t) = (broker.bootstrap.clone(), topic.clone());
    let got = tokio::task::spawn_blocking(move || {
        let p = txn_producer(&b, "dedup-txn");
        transaction(&p, &t, &[("p1", "aborted"), ("p2", "aborted")], false);
        transaction(&p, &t, &[("p1", "resent"), ("p2", "resent")], true);
        transaction(&p, &t, &[("p2", "copy"), ("p3", "new")], true);
        let c: BaseConsumer =
            assigned_consumer(&b, &t, &[0], Offset::Beginning, &[("isolation.level", "read_committed")]);
        let got = consume_n(&c, 3, T);
        assert!(c.poll(Duration::from_millis(500)).is_none(), "no more records");
        got.iter().map(|m| (header_id(m).unwrap_or_default(), value(m))).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let want = [("p1", "resent"), ("p2", "resent"), ("p3", "new")];
    assert_eq!(got, want.map(|(i, v)| (i.to_string(), v.to_string())));
}

/// With duplicate detection off — and on, when a batch holds no duplicate — the stored batch
/// is the one sent: only the fields the broker assigns (base offset, leader epoch) differ.
#[tokio::test(flavor = "multi_thread")]
async fn batches_without_duplicates_are_stored_as_sent() {
    use bytes::BytesMut;
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let broker = TestBroker::start(&[]).await;
    let off = topic_name("dedup-off");
    let on = topic_name("dedup-on");
    create_topic(&broker.bootstrap, &off, 1, &[]).await;
    create_topic(&broker.bootstrap, &on, 1, &[("weir.dedup.window.ms", "600000")]).await;
    let record = |i: i64, id: &str| Record {
        transactional: false,
        control: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        delete_horizon: false,
        timestamp_type: TimestampType::Creation,
        offset: i,
        sequence: i as i32 - 1,
        timestamp: weir::broker::now_ms(),
        key: None,
        value: Some(bytes::Bytes::from(format!("v{i}"))),
        headers: [(
            kafka_protocol::protocol::StrBytes::from_static_str("message-id"),
            Some(bytes::Bytes::from(id.to_string())),
        )]
        .into_iter()
        .collect(),
    };
    let records = [record(0, "x"), record(1, "x"), record(2, "y")];
    let unique = [record(0, "u"), record(1, "v")];
    let encode = |records: &[Record]| {
        let mut b = BytesMut::new();
        let options = RecordEncodeOptions { version: 2, compression: Compression::Lz4 };
        RecordBatchEncoder::encode(&mut b, records.iter(), &options).unwrap();
        b.freeze()
    };
    let stored =
        |topic: &str| std::fs::read(broker.data_dir().join(format!("{topic}-0/00000000000000000000.log"))).unwrap();
    for (topic, batch) in [(&off, encode(&records)), (&on, encode(&unique))] {
        let (code, base) = raw::produce(&broker.bootstrap, topic, batch.clone());
        assert_eq!((code, base), (0, 0), "{topic}");
        let file = stored(topic);
        // (the file may be longer: space reserved ahead of writes, zeros)
        assert!(file[batch.len()..].iter().all(|b| *b == 0), "{topic}: one batch");
        assert_eq!(file[16..batch.len()], batch[16..], "{topic}: all after base offset, length and epoch as sent");
    }
}

/// Followers track the ids of what they replicate: after the leader is SIGKILLed, the new
/// leader drops a resend of everything the old one wrote.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_leader_detects_duplicates_of_what_the_old_one_wrote() {
    use common::cluster::*;
    use rdkafka::admin::{AdminOptions, AlterConfig, ResourceSpecifier};
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3);
    let bootstrap = cluster.bootstrap();
    let topic = topic_name("dedup-failover");
    let leader = create_in_sync(&bootstrap, &topic).await;
    let alter = AlterConfig::new(ResourceSpecifier::Topic(&topic))
        .set("min.insync.replicas", "2")
        .set("weir.dedup.window.ms", "600000");
    let altered = admin(&bootstrap).alter_configs(&[alter], &AdminOptions::new()).await.unwrap();
    assert!(altered.iter().all(Result::is_ok), "{altered:?}");
    let ids: Vec<String> = (0..100).map(|i| format!("id-{i}")).collect();
    let records =
        |value: &'static str| -> Vec<(Option<&str>, &str)> { ids.iter().map(|i| (Some(i.as_str()), value)).collect() };
    let p = producer(&bootstrap, &[("acks", "all"), ("enable.idempotence", "true")]);
    send_batch(&p, &topic, &records("first")).await;
    drop(p);
    cluster.kill(cluster.index_of(leader));
    let survivors = cluster.bootstrap();
    eventually(Duration::from_secs(20), "a new leader", || {
        leader_and_isr(&survivors, &topic, 0).filter(|(l, _)| *l > 0 && *l != leader)
    });
    let p = producer(&survivors, &[("acks", "all"), ("enable.idempotence", "true")]);
    send_batch(&p, &topic, &records("again")).await;
    send_batch(&p, &topic, &[(Some("id-new"), "new")]).await;
    let t = topic.clone();
    let got = tokio::task::spawn_blocking(move || read(&survivors, &t, 101, &[])).await.unwrap();
    assert!(got[..100].iter().all(|(_, v)| v == "first"), "nothing resent was written again");
    assert_eq!(got[100].1, "new");
    cluster.stop_all();
}
