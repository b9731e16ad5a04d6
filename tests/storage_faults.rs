//! A failing disk: with ENOSPC or EIO injected on appends or fsyncs (`log::faults`), produce
//! gets KAFKA_STORAGE_ERROR and never a false success, existing data stays readable, and the
//! partition takes writes again once the disk works — with nothing acknowledged damaged. In a
//! cluster, a leader whose disk fills up mid-load hands its partition to an in-sync replica
//! and leaves the ISR (`replica::storage`), and rejoins once it has space again.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use rdkafka::Message;
use weir::log::faults::{self, Op};

/// Produces `n` records (values `v<from>`…) in one batch; returns (error code, base offset).
fn produce(bootstrap: &str, topic: &str, acks: i16, from: usize, n: usize) -> (i16, i64) {
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: weir::broker::now_ms(),
            key: None,
            value: Some(Bytes::from(format!("v{}", from + i))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).unwrap();
    let req = ProduceRequest::default().with_acks(acks).with_timeout_ms(5000).with_topic_data(vec![
        TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(buf.freeze()))]),
    ]);
    let r: ProduceResponse = raw::call(bootstrap, ApiKey::Produce, 9, &req);
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn read_values(bootstrap: &str, topic: &str, n: usize) -> Vec<String> {
    let c = assigned_consumer(bootstrap, topic, &[0], rdkafka::Offset::Beginning, &[]);
    consume_n(&c, n, Duration::from_secs(20))
        .iter()
        .map(|m| String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
        .collect()
}

fn values(from: usize, n: usize) -> Vec<String> {
    (from..from + n).map(|i| format!("v{i}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_disk_never_acknowledges_and_recovers() {
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("faults");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    let data = broker.data_dir();
    let b = broker.bootstrap.clone();
    let t = topic.clone();
    tokio::task::spawn_blocking(move || {
        let storage_error = ResponseError::KafkaStorageError.code();
        assert_eq!(produce(&b, &t, -1, 0, 10), (0, 0));

        // the disk is full: appends fail, reads still work
        faults::inject(&data, Op::Write, libc::ENOSPC);
        assert_eq!(produce(&b, &t, -1, 100, 10).0, storage_error, "acks=all");
        assert_eq!(produce(&b, &t, 1, 100, 10).0, storage_error, "acks=1");
        assert_eq!(read_values(&b, &t, 10), values(0, 10));
        faults::clear(&data);
        assert_eq!(produce(&b, &t, -1, 10, 10), (0, 10), "writes resume at the next offset");

        // fsync fails with EIO: acks=all is refused, acks=1 (page cache) is not
        faults::inject(&data, Op::Sync, libc::EIO);
        assert_eq!(produce(&b, &t, -1, 200, 5).0, storage_error, "no false success");
        assert_eq!(produce(&b, &t, 1, 20, 5), (0, 25), "the unacknowledged acks=all batch stays in the log");
        faults::clear(&data);
        assert_eq!(produce(&b, &t, -1, 25, 5), (0, 30), "fsync works again");
        let mut want = values(0, 20);
        want.extend(values(200, 5));
        want.extend(values(20, 10));
        assert_eq!(read_values(&b, &t, 35), want);
    })
    .await
    .unwrap();
    // everything is still there after a restart, and the log takes writes
    let broker = broker.restart(&[]).await;
    let b = broker.bootstrap.clone();
    let t = topic.clone();
    tokio::task::spawn_blocking(move || {
        assert_eq!(read_values(&b, &t, 35).len(), 35);
        assert_eq!(produce(&b, &t, -1, 30, 1), (0, 35));
    })
    .await
    .unwrap();
}

/// Three brokers in this process (so faults can be injected under one of them), combined
/// broker-controllers on loopback ports.
async fn in_process_cluster() -> Vec<TestBroker> {
    let clients: Vec<String> = (0..3).map(|_| BinaryBroker::free_addr()).collect();
    let controllers: Vec<String> = (0..3).map(|_| BinaryBroker::free_addr()).collect();
    let voters: Vec<String> = controllers.iter().enumerate().map(|(i, c)| format!("{}@{c}", i + 1)).collect();
    let voters = voters.join(",");
    let start = |i: usize| {
        let dir = tempfile::tempdir().unwrap();
        let listeners = format!("PLAINTEXT://{},CONTROLLER://{}", clients[i], controllers[i]);
        let id = (i + 1).to_string();
        let mut extra: Vec<(&str, &str)> = vec![
            ("listeners", listeners.as_str()),
            ("node.id", id.as_str()),
            ("process.roles", "broker,controller"),
            ("controller.quorum.voters", voters.as_str()),
            ("controller.listener.names", "CONTROLLER"),
        ];
        extra.extend(cluster::FAST.iter().copied());
        let config = config(dir.path(), &extra);
        TestBroker::start_with(dir, config)
    };
    let (a, b, c) = tokio::join!(start(0), start(1), start(2));
    vec![a, b, c]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_whose_disk_fills_up_hands_over_and_loses_nothing_acknowledged() {
    let nodes = in_process_cluster().await;
    let bootstrap = nodes.iter().map(|n| n.bootstrap.as_str()).collect::<Vec<_>>().join(",");
    cluster::eventually(Duration::from_secs(20), "three brokers registered", || {
        (cluster::metadata(&bootstrap).brokers().len() == 3).then_some(())
    });
    let topic = topic_name("full-disk");
    cluster::create_assigned(&bootstrap, &topic, &[&[1, 2, 3]]).await;
    let producer = producer(&bootstrap, &[("acks", "all"), ("enable.idempotence", "true"), ("linger.ms", "5")]);
    let send = |from: usize, n: usize| {
        let producer = producer.clone();
        let topic = topic.clone();
        async move {
            for i in from..from + n {
                let value = format!("v{i}");
                let record = rdkafka::producer::FutureRecord::<(), _>::to(&topic).payload(&value).partition(0);
                producer.send(record, Duration::from_secs(60)).await.expect("acknowledged");
            }
        }
    };
    send(0, 100).await;
    // mid-load, broker 1's disk fills up: its appends fail from then on, and so do its fsyncs
    let load = tokio::spawn(send(100, 300));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let full = nodes[0].data_dir();
    faults::inject(&full, Op::Write, libc::ENOSPC);
    faults::inject(&full, Op::Sync, libc::ENOSPC);
    load.await.expect("every record acknowledged");
    let (leader, isr) = cluster::leader_and_isr(&nodes[1].bootstrap, &topic, 0).expect("a leader");
    assert_ne!(leader, 1, "leadership left the broker whose disk is full");
    assert!(!isr.contains(&1), "and so did its place in the ISR: {isr:?}");
    let broker = &nodes[0].running.as_ref().expect("the broker is still running").broker;
    let metrics = weir::metrics::render(broker).await;
    let counter = |name: &str| -> u64 {
        let line = metrics.lines().find(|l| l.starts_with(name)).unwrap_or_default();
        line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    assert!(counter("weir_storage_failures_total ") >= 1, "the failure is counted:\n{metrics}");
    assert!(counter("weir_storage_offline_replicas_total ") >= 1, "and the replica taken out of the ISR");
    assert!(cluster::metadata(&nodes[0].bootstrap).brokers().len() == 3, "and still answers");
    let c = assigned_consumer(&nodes[1].bootstrap, &topic, &[0], rdkafka::Offset::Beginning, &[]);
    let got: Vec<String> = consume_n(&c, 400, Duration::from_secs(30))
        .iter()
        .map(|m| String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
        .collect();
    assert_eq!(got, values(0, 400), "every acknowledged record, once, in order");
    // space freed: the replica catches up and comes back into the ISR
    faults::clear(&full);
    cluster::eventually(Duration::from_secs(30), "broker 1 back in the ISR", || {
        cluster::leader_and_isr(&nodes[1].bootstrap, &topic, 0).filter(|(_, isr)| isr.contains(&1))
    });
}
