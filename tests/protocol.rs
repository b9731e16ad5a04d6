//! Hostile and broken input: each gets Kafka's answer or a closed connection, and other
//! clients keep working.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, ResponseHeader};
use kafka_protocol::protocol::Decodable;
use weir::handlers::SUPPORTED_APIS;

async fn still_serves(bootstrap: &str) {
    let md =
        admin(bootstrap).inner().fetch_metadata(None, Duration::from_secs(10)).expect("a second client still works");
    assert_eq!(md.brokers().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_frames_close_only_their_connection() {
    let broker = TestBroker::start(&[("socket.request.max.bytes", "1000000")]).await;
    let b = broker.bootstrap.clone();
    let frames: Vec<(&str, Vec<u8>)> = vec![
        ("oversized size prefix", 2_000_000i32.to_be_bytes().to_vec()),
        ("negative size prefix", (-5i32).to_be_bytes().to_vec()),
        ("frame shorter than a header", [3i32.to_be_bytes().to_vec(), vec![0, 1, 2]].concat()),
        ("unknown API key", [8i32.to_be_bytes().to_vec(), vec![0x7f, 0x00, 0, 1, 0, 0, 0, 1]].concat()),
        (
            "unsupported Produce version",
            [12i32.to_be_bytes().to_vec(), vec![0, 0, 0, 99, 0, 0, 0, 1, 0, 0, 0, 0]].concat(),
        ),
        ("garbage body", [20i32.to_be_bytes().to_vec(), vec![0, 3, 0, 12], vec![0xff; 16]].concat()),
    ];
    for (what, bytes) in frames {
        let b2 = b.clone();
        let closed = tokio::task::spawn_blocking(move || {
            let mut s = raw::connect(&b2);
            s.write_all(&bytes).unwrap();
            raw::is_closed(&mut s)
        })
        .await
        .unwrap();
        assert!(closed, "{what}: connection closed");
        still_serves(&b).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn api_versions_advertises_the_table_and_answers_newer_versions_with_v0() {
    let broker = TestBroker::start(&[]).await;
    let b = broker.bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        for version in [0, 3, 4] {
            let resp: ApiVersionsResponse = raw::call(&b, ApiKey::ApiVersions, version, &ApiVersionsRequest::default());
            assert_eq!(resp.error_code, 0);
            let got: Vec<(i16, i16, i16)> =
                resp.api_keys.iter().map(|k| (k.api_key, k.min_version, k.max_version)).collect();
            let want: Vec<(i16, i16, i16)> = SUPPORTED_APIS.iter().map(|(k, lo, hi)| (*k as i16, *lo, *hi)).collect();
            assert_eq!(got, want);
        }
        // A client from the future: v0-shaped UNSUPPORTED_VERSION with our ranges.
        let mut s = raw::connect(&b);
        let frame = [vec![0, 18, 0, 99, 0, 0, 0, 42, 0, 0], vec![0; 4]].concat();
        s.write_all(&(frame.len() as i32).to_be_bytes()).unwrap();
        s.write_all(&frame).unwrap();
        let mut resp = raw::read_frame(&mut s).expect("answered");
        let header = ResponseHeader::decode(&mut resp, 0).unwrap();
        assert_eq!(header.correlation_id, 42);
        let body = ApiVersionsResponse::decode(&mut resp, 0).unwrap();
        assert_eq!(body.error_code, 35);
        assert_eq!(body.api_keys.len(), SUPPORTED_APIS.len());
    })
    .await
    .unwrap();
}

#[test]
fn readme_lists_exactly_the_supported_apis() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let table: Vec<String> = readme
        .lines()
        .skip_while(|l| !l.contains("<!-- api-table -->"))
        .skip(3)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.trim().to_string())
        .collect();
    let want: Vec<String> =
        SUPPORTED_APIS.iter().map(|(k, lo, hi)| format!("| {:?} | {} | {lo}–{hi} |", k, *k as i16)).collect();
    assert_eq!(table, want, "README's API table matches handlers::SUPPORTED_APIS");
}

fn produce_req(topic: &str, acks: i16, records: Vec<u8>) -> kafka_protocol::messages::ProduceRequest {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    ProduceRequest::default().with_acks(acks).with_timeout_ms(5000).with_topic_data(vec![TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(records.into()))])])
}

#[tokio::test(flavor = "multi_thread")]
async fn produce_validation_codes_and_acks_zero() {
    use kafka_protocol::messages::ProduceResponse;
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("validate");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    let b = broker.bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let good = weir::log::batch::sample_batch(3);
        let mut bad_crc = good.clone();
        *bad_crc.last_mut().unwrap() ^= 1;
        let mut magic1 = good.clone();
        magic1[16] = 1;
        let truncated = good[..good.len() - 5].to_vec();
        let with_crc = |mut b: Vec<u8>| {
            let crc = weir::log::batch::compute_crc(&b);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
            b
        };
        // lastOffsetDelta claims 5 records of the 3 (CRC made valid again)
        let mut delta = good.clone();
        delta[23..27].copy_from_slice(&4i32.to_be_bytes());
        let delta = with_crc(delta);
        // the first record says it is at offset delta 2
        let mut record_delta = good.clone();
        let at = 61 + weir::log::batch::read_varint(&good[61..]).unwrap().1 + 1 + 1;
        record_delta[at] = 4; // zig-zag 2
        let record_delta = with_crc(record_delta);
        let mut long = good.clone();
        long[8..12].copy_from_slice(&((good.len() as i32) + 88).to_be_bytes());
        for (what, records, code) in [
            ("bad CRC", bad_crc, 2),
            ("magic 1", magic1, 87),
            ("truncated", truncated, 2),
            ("lastOffsetDelta", delta, 87),
            ("record offset delta", record_delta, 87),
            ("length past the data", long, 2),
            ("good", good.clone(), 0),
        ] {
            let r: ProduceResponse = raw::call(&b, ApiKey::Produce, 9, &produce_req(&topic, 1, records));
            let p = &r.responses[0].partition_responses[0];
            assert_eq!(p.error_code, code, "{what}");
            if code == 0 {
                assert_eq!(p.base_offset, 0, "rejected batches took no offsets");
            }
        }
        // acks=0 gets no response: the next response on the connection is the next request's.
        let mut s = raw::connect(&b);
        raw::send(&mut s, ApiKey::Produce, 9, 1, &produce_req(&topic, 0, good.clone()));
        raw::send(&mut s, ApiKey::Produce, 9, 2, &produce_req(&topic, 1, good));
        let mut frame = raw::read_frame(&mut s).expect("a response");
        let header = ResponseHeader::decode(&mut frame, 1).unwrap();
        assert_eq!(header.correlation_id, 2);
        let r = ProduceResponse::decode(&mut frame, 9).unwrap();
        assert_eq!(r.responses[0].partition_responses[0].base_offset, 6, "the acks=0 batch was appended first");
    })
    .await
    .unwrap();
}

/// Pipelined requests on one connection: durable produces wait for their fsync while the
/// next requests are read, yet responses come back in request order and appends happen in it.
#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_are_answered_in_order() {
    use kafka_protocol::messages::ProduceResponse;
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("pipelined");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    let b = broker.bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let mut s = raw::connect(&b);
        for i in 0..10 {
            raw::send(&mut s, ApiKey::Produce, 9, i, &produce_req(&topic, -1, weir::log::batch::sample_batch(3)));
            raw::send(&mut s, ApiKey::ApiVersions, 0, 100 + i, &ApiVersionsRequest::default());
        }
        for i in 0..10 {
            let mut frame = raw::read_frame(&mut s).expect("produce response");
            let header_version = <ProduceResponse as kafka_protocol::protocol::HeaderVersion>::header_version(9);
            assert_eq!(ResponseHeader::decode(&mut frame, header_version).unwrap().correlation_id, i);
            let r = ProduceResponse::decode(&mut frame, 9).unwrap();
            let p = &r.responses[0].partition_responses[0];
            assert_eq!((p.error_code, p.base_offset), (0, i64::from(i) * 3), "appended in request order");
            let mut frame = raw::read_frame(&mut s).expect("api versions response");
            assert_eq!(ResponseHeader::decode(&mut frame, 0).unwrap().correlation_id, 100 + i);
        }
    })
    .await
    .unwrap();
}
