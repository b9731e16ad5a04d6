//! Hostile and broken clients at the network level: connection floods over the limits,
//! stalled half-written frames, and requests naming thousands of unknown topics. Each is
//! refused or answered the way Kafka does, and other clients are unaffected.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

/// True when a new connection is admitted and served within `timeout` (the broker frees a
/// place when it sees the old connection's end).
fn served_within(bootstrap: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if raw::answers(&mut raw::connect(bootstrap)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_the_limits_are_refused_cleanly() {
    let broker = TestBroker::start(&[("max.connections.per.ip", "20")]).await;
    let b = broker.bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let mut held: Vec<TcpStream> = (0..20).map(|_| raw::connect(&b)).collect();
        assert!(held.iter_mut().all(raw::answers), "the first 20 are served");
        let mut extra = raw::connect(&b);
        assert!(raw::is_closed(&mut extra), "the 21st from the same address is closed");
        assert!(raw::answers(&mut held[0]), "the admitted ones are unaffected");
        held.truncate(15);
        assert!(served_within(&b, Duration::from_secs(10)), "a freed place can be taken again");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_connections_is_capped_by_max_connections() {
    let broker = TestBroker::start(&[("max.connections", "200")]).await;
    let b = broker.bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let mut flood: Vec<TcpStream> = (0..1000).map(|_| raw::connect(&b)).collect();
        let served = flood.iter_mut().map(raw::answers).filter(|ok| *ok).count();
        assert_eq!(served, 200, "exactly max.connections are served");
        drop(flood);
        assert!(served_within(&b, Duration::from_secs(10)), "once the flood is gone clients are served");
    })
    .await
    .unwrap();
    let topic = topic_name("after-flood");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_half_frame_is_closed_and_others_are_served() {
    let broker = TestBroker::start(&[("connections.max.idle.ms", "500")]).await;
    let b = broker.bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let mut stalled = raw::connect(&b);
        stalled.write_all(&100i32.to_be_bytes()).unwrap();
        stalled.write_all(&[0u8; 10]).unwrap();
        let mut other = raw::connect(&b);
        assert!(raw::answers(&mut other), "served while another connection stalls");
        let started = Instant::now();
        assert!(raw::is_closed(&mut stalled), "the stalled frame's connection is closed");
        assert!(started.elapsed() < Duration::from_secs(5));
        let mut fresh = raw::connect(&b);
        assert!(raw::answers(&mut fresh));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn thousands_of_unknown_topics_get_errors_not_trouble() {
    let broker = TestBroker::start(&[]).await;
    let b = broker.bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let names: Vec<TopicName> =
            (0..3000).map(|i| TopicName(StrBytes::from_string(format!("no-such-topic-{i}")))).collect();
        let started = Instant::now();
        let req = MetadataRequest::default().with_allow_auto_topic_creation(false).with_topics(Some(
            names
                .iter()
                .map(|n| metadata_request::MetadataRequestTopic::default().with_name(Some(n.clone())))
                .collect(),
        ));
        let r: MetadataResponse = raw::call(&b, ApiKey::Metadata, 9, &req);
        assert_eq!(r.topics.len(), 3000);
        assert!(r.topics.iter().all(|t| t.error_code == ResponseError::UnknownTopicOrPartition.code()));
        let fetch = FetchRequest::default().with_max_wait_ms(0).with_replica_id(BrokerId(-1)).with_topics(
            names
                .iter()
                .take(1000)
                .map(|n| {
                    fetch_request::FetchTopic::default()
                        .with_topic(n.clone())
                        .with_partitions(vec![fetch_request::FetchPartition::default().with_partition_max_bytes(1024)])
                })
                .collect(),
        );
        let r: FetchResponse = raw::call(&b, ApiKey::Fetch, 11, &fetch);
        assert_eq!(r.responses.len(), 1000);
        let code = ResponseError::UnknownTopicOrPartition.code();
        assert!(r.responses.iter().all(|t| t.partitions[0].error_code == code));
        assert!(started.elapsed() < Duration::from_secs(10));
        let mut s = raw::connect(&b);
        assert!(raw::answers(&mut s), "the broker still serves");
    })
    .await
    .unwrap();
}

/// A few bytes claiming an array of two billion topics (found by fuzzing): the decoder's
/// up-front reservation must not take the broker down.
#[test]
fn a_request_claiming_billions_of_elements_does_not_crash_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BinaryBroker::start(dir.path(), &[]);
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/request_frame");
    let frames: Vec<Vec<u8>> = std::fs::read_dir(corpus)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("oom-"))
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    assert!(!frames.is_empty());
    for f in frames {
        let mut s = raw::connect(&broker.bootstrap);
        s.write_all(&(f.len() as i32).to_be_bytes()).unwrap();
        s.write_all(&f).unwrap();
        let _ = raw::read_frame(&mut s);
    }
    assert!(raw::answers(&mut raw::connect(&broker.bootstrap)), "still serving");
    assert!(broker.terminate().success());
}
