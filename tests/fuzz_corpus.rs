//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`, seeds and any crash
//! reproducers added later) through the fuzz entry points on every `cargo test`, so an input
//! that once crashed Weir stays fixed. `WEIR_WRITE_FUZZ_SEEDS=1 cargo test --test fuzz_corpus`
//! regenerates the seeds.

use std::path::{Path, PathBuf};

/// As in the broker binary and the fuzz targets: inputs claiming huge arrays must not abort.
#[global_allocator]
static ALLOC: weir::alloc::LazyHugeAlloc = weir::alloc::LazyHugeAlloc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target)
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A request frame (header and body, no size prefix), as the dispatch sees it.
fn frame<R: Encodable>(key: ApiKey, version: i16, req: &R) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(s("seed")));
    let mut b = BytesMut::new();
    header.encode(&mut b, key.request_header_version(version)).unwrap();
    req.encode(&mut b, version).unwrap();
    b.to_vec()
}

fn request_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let topic = TopicName(s("t"));
    let batch = Bytes::from(weir::log::batch::sample_batch(3));
    vec![
        ("api_versions", frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())),
        (
            "metadata",
            frame(
                ApiKey::Metadata,
                12,
                &MetadataRequest::default().with_topics(Some(vec![
                    metadata_request::MetadataRequestTopic::default().with_name(Some(topic.clone()))
                ])),
            ),
        ),
        (
            "produce",
            frame(
                ApiKey::Produce,
                9,
                &ProduceRequest::default().with_acks(1).with_timeout_ms(1000).with_topic_data(vec![
                    produce_request::TopicProduceData::default().with_name(topic.clone()).with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch.clone())),
                    ]),
                ]),
            ),
        ),
        (
            "fetch",
            frame(
                ApiKey::Fetch,
                12,
                &FetchRequest::default()
                    .with_max_wait_ms(0)
                    .with_max_bytes(1 << 20)
                    .with_replica_id(BrokerId(-1))
                    .with_topics(vec![fetch_request::FetchTopic::default().with_topic(topic.clone()).with_partitions(
                        vec![fetch_request::FetchPartition::default().with_partition_max_bytes(1 << 20)],
                    )]),
            ),
        ),
        (
            "list_offsets",
            frame(
                ApiKey::ListOffsets,
                7,
                &ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
                    list_offsets_request::ListOffsetsTopic::default().with_name(topic.clone()).with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1),
                    ]),
                ]),
            ),
        ),
        ("find_coordinator", frame(ApiKey::FindCoordinator, 3, &FindCoordinatorRequest::default().with_key(s("g")))),
        (
            "join_group",
            frame(
                ApiKey::JoinGroup,
                7,
                &JoinGroupRequest::default()
                    .with_group_id(GroupId(s("g")))
                    .with_session_timeout_ms(10000)
                    .with_rebalance_timeout_ms(10000)
                    .with_protocol_type(s("consumer"))
                    .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default()
                        .with_name(s("range"))
                        .with_metadata(Bytes::from_static(b"\\0\\0"))]),
            ),
        ),
        (
            "offset_commit",
            frame(
                ApiKey::OffsetCommit,
                8,
                &OffsetCommitRequest::default()
                    .with_group_id(GroupId(s("g")))
                    .with_generation_id_or_member_epoch(-1)
                    .with_topics(vec![offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(topic.clone())
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default().with_committed_offset(1)
                        ])]),
            ),
        ),
        (
            "init_producer_id",
            frame(
                ApiKey::InitProducerId,
                4,
                &InitProducerIdRequest::default()
                    .with_transactional_id(Some(TransactionalId(s("tx"))))
                    .with_transaction_timeout_ms(60000),
            ),
        ),
        (
            "end_txn",
            frame(
                ApiKey::EndTxn,
                3,
                &EndTxnRequest::default().with_transactional_id(TransactionalId(s("tx"))).with_committed(true),
            ),
        ),
        (
            "create_topics",
            frame(
                ApiKey::CreateTopics,
                5,
                &CreateTopicsRequest::default().with_topics(vec![create_topics_request::CreatableTopic::default()
                    .with_name(TopicName(s("new")))
                    .with_num_partitions(1)
                    .with_replication_factor(1)]),
            ),
        ),
    ]
}

fn write_seeds() {
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = corpus(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    };
    for (name, bytes) in request_seeds() {
        write("request_frame", name, &bytes);
    }
    let one = weir::log::batch::sample_batch(3);
    write("record_batch", "one_batch", &one);
    write("record_batch", "two_batches", &[one.clone(), weir::log::batch::sample_batch(1)].concat());
    write(
        "record_batch",
        "marker",
        &weir::log::batch::end_txn_marker(1, 0, weir::log::batch::ControlType::Commit, 0, 0).unwrap(),
    );
    // a real segment: three batches with assigned offsets
    let mut segment = Vec::new();
    for (i, n) in [3i32, 1, 2].iter().enumerate() {
        let mut b = weir::log::batch::sample_batch(*n);
        weir::log::batch::assign(&mut b, i as i64 * 3, 0, None);
        segment.extend_from_slice(&b);
    }
    write("log_recovery", "segment", &segment);
    write("log_recovery", "torn", &segment[..segment.len() - 5]);
    let offset_key =
        weir::coordinator::group::records::RecordKey::Offset { group: "g".into(), topic: "t".into(), partition: 0 };
    write("stored_state", "offset_key", &offset_key.encode());
    let value = weir::coordinator::group::records::OffsetValue {
        offset: 5,
        leader_epoch: -1,
        metadata: "m".into(),
        commit_timestamp: 1,
    };
    write("stored_state", "offset_value", &value.encode());
    write("stored_state", "txn_key", &weir::coordinator::txn::records::encode_key("tx"));
    {
        use weir::share::partition::{ArchiveReason, Archived, RecordState};
        let dead = Archived { first: 3, last: 3, delivery_count: 5, reason: ArchiveReason::DeliveryLimit };
        let snapshot = weir::share::state::StateSnapshot {
            start_offset: 2,
            batches: vec![(2, 4, RecordState::Acknowledged, 1), (5, 9, RecordState::Available, 2)],
            dead_letters: vec![dead],
            dead_letter_mark: 3,
            ..Default::default()
        };
        write("stored_state", "share_snapshot", &weir::share::state::encode_snapshot(&snapshot));
    }
    write("sasl_exchange", "plain", b"\x00\x00u\x00pw");
    write("sasl_exchange", "scram_first", b"\x01n,,n=u,r=abcdefgh\nc=biws,r=abcdefgh,p=AAAA");
    write("sasl_exchange", "scram512_v0", b"\x82n,a=u,n=u,r=x");
}

#[test]
fn the_fuzz_corpus_neither_crashes_nor_hangs() {
    if std::env::var_os("WEIR_WRITE_FUZZ_SEEDS").is_some() {
        write_seeds();
    }
    type Target = fn(&[u8]);
    let targets: [(&str, Target); 5] = [
        ("request_frame", weir::fuzzing::request_frame),
        ("record_batch", weir::fuzzing::record_batch),
        ("log_recovery", weir::fuzzing::log_recovery),
        ("stored_state", weir::fuzzing::stored_state),
        ("sasl_exchange", weir::fuzzing::sasl_exchange),
    ];
    for (target, run) in targets {
        let mut inputs: Vec<PathBuf> = std::fs::read_dir(corpus(target))
            .unwrap_or_else(|e| panic!("fuzz/corpus/{target}: {e}"))
            .flatten()
            .map(|e| e.path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "fuzz/corpus/{target} has seeds");
        for input in inputs {
            let data = std::fs::read(&input).unwrap();
            run(&data);
        }
    }
}
