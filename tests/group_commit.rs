//! Group commit's mechanism, pinned with fsyncs held at a gate (`log::faults`), not with
//! timings: an acks=all produce's fsync starts when it is appended — not when the requests
//! ahead of it on its connection have been answered — a running flush goes on to cover
//! appends made while it ran, and a produce whose fsync completed is answered without waiting
//! for a later flush.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use weir::log::faults;

/// Sends an acks=all produce of one record to `partition` with `correlation_id`.
fn send_produce(s: &mut TcpStream, topic: &str, partition: i32, correlation_id: i32) {
    let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![
        TopicProduceData::default().with_name(TopicName(StrBytes::from_string(topic.to_string()))).with_partition_data(
            vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(producer_batch(-1, -1, -1, 1, false)))],
        ),
    ]);
    raw::send(s, ApiKey::Produce, 9, correlation_id, &req);
}

/// Reads one produce response: (correlation id, error code, base offset).
fn read_produce(s: &mut TcpStream) -> (i32, i16, i64) {
    let mut frame = raw::read_frame(s).expect("a produce response");
    let header = ResponseHeader::decode(&mut frame, 1).expect("response header");
    let r = ProduceResponse::decode(&mut frame, 9).expect("produce response");
    let p = &r.responses[0].partition_responses[0];
    (header.correlation_id, p.error_code, p.base_offset)
}

/// Waits (bounded) until `n` fsyncs are held at `dir`'s gate.
fn wait_held(dir: &Path, n: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while faults::held_syncs(dir) < n {
        assert!(Instant::now() < deadline, "{what}: {} of {n} fsyncs reached the disk", faults::held_syncs(dir));
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// True when a response is waiting on `s` within a short look.
fn has_response(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut byte = [0u8; 1];
    let ready = s.peek(&mut byte).is_ok_and(|n| n > 0);
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    ready
}

struct OpenOnDrop(Vec<PathBuf>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.iter().for_each(|d| faults::open_gate(d));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_produces_start_their_fsyncs_before_earlier_answers() {
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("group-commit");
    create_topic(&broker.bootstrap, &topic, 2, &[]).await;
    let dirs: Vec<PathBuf> = (0..2).map(|p| broker.data_dir().join(format!("{topic}-{p}"))).collect();
    let b = broker.bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let _open = OpenOnDrop(dirs.clone());
        dirs.iter().for_each(|d| faults::hold_syncs(d));
        let mut s = raw::connect(&b);
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        // two requests on one connection, to different partitions: the second one's fsync
        // runs beside the first one's, although its answer must come after the first
        send_produce(&mut s, &topic, 0, 1);
        send_produce(&mut s, &topic, 1, 2);
        wait_held(&dirs[0], 1, "the first request's fsync");
        wait_held(&dirs[1], 1, "the second request's fsync while the first is unanswered");
        assert!(!has_response(&mut s), "nothing is acknowledged before its fsync");
        faults::allow_syncs(&dirs[1], 1);
        assert!(!has_response(&mut s), "answers keep the request order");
        faults::allow_syncs(&dirs[0], 1);
        assert_eq!(read_produce(&mut s), (1, 0, 0));
        assert_eq!(read_produce(&mut s), (2, 0, 0));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_covered_produce_is_answered_while_a_later_flush_is_held() {
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("group-commit");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    let dir = broker.data_dir().join(format!("{topic}-0"));
    let b = broker.bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let _open = OpenOnDrop(vec![dir.clone()]);
        faults::hold_syncs(&dir);
        let (mut first, mut second, mut third) = (raw::connect(&b), raw::connect(&b), raw::connect(&b));
        send_produce(&mut first, &topic, 0, 1);
        wait_held(&dir, 1, "the first produce's fsync");
        // appended while that fsync runs: the flush goes on to cover them with one more fsync
        send_produce(&mut second, &topic, 0, 2);
        send_produce(&mut third, &topic, 0, 3);
        let deadline = Instant::now() + Duration::from_secs(20);
        while raw::end_offset(&b, &topic, 0) < 3 {
            assert!(Instant::now() < deadline, "both later produces are appended");
            std::thread::sleep(Duration::from_millis(5));
        }
        faults::allow_syncs(&dir, 1);
        assert_eq!(read_produce(&mut first), (1, 0, 0), "answered once its own fsync is done");
        wait_held(&dir, 1, "the next fsync, started by the running flush for the later appends");
        assert!(!has_response(&mut second) && !has_response(&mut third), "not before their fsync");
        faults::allow_syncs(&dir, 1);
        let mut later = [read_produce(&mut second), read_produce(&mut third)];
        later.sort_by_key(|r| r.2);
        assert_eq!(later.map(|r| (r.1, r.2)), [(0, 1), (0, 2)], "one fsync covered both");
    })
    .await
    .unwrap();
}
