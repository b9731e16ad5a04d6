//! The transaction APIs' error codes and the partition view of a transaction, with raw
//! requests built by kafka-protocol (so the test controls ids, epochs and versions).

mod common;

use bytes::Bytes;
use common::txn::{self, add, end, init, s};
use common::*;
use kafka_protocol::messages::add_partitions_to_txn_request::{AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

fn txn_batch(pid: i64, epoch: i16, n: i32) -> Bytes {
    producer_batch(pid, epoch, 0, n, true)
}

fn produce(b: &str, topic: &str, partition: i32, records: Bytes) -> i16 {
    txn::produce(b, "raw", topic, partition, records)
}

/// Fetches partition 0 from offset 0 with `isolation` (0 uncommitted, 1 committed): the
/// returned bytes, last stable offset and aborted transactions as (producer id, first offset).
fn fetch(b: &str, topic: &str, isolation: i8) -> (usize, i64, Vec<(i64, i64)>) {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_isolation_level(isolation)
        .with_topics(vec![fetch_request::FetchTopic::default().with_topic(TopicName(s(topic))).with_partitions(vec![
            fetch_request::FetchPartition::default().with_partition(0).with_partition_max_bytes(1 << 20),
        ])]);
    let r: FetchResponse = raw::call(b, ApiKey::Fetch, 11, &req);
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    let aborted = p.aborted_transactions.iter().flatten().map(|a| (a.producer_id.0, a.first_offset)).collect();
    (p.records.as_ref().map_or(0, Bytes::len), p.last_stable_offset, aborted)
}

fn latest(b: &str, topic: &str, isolation: i8) -> i64 {
    let req =
        ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_isolation_level(isolation).with_topics(vec![
            list_offsets_request::ListOffsetsTopic::default().with_name(TopicName(s(topic))).with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1),
            ]),
        ]);
    let r: ListOffsetsResponse = raw::call(b, ApiKey::ListOffsets, 5, &req);
    r.topics[0].partitions[0].offset
}

const OK: i16 = 0;

fn txn_offset_commit(b: &str, pid: i64, epoch: i16, group: &str, topic: &str) -> i16 {
    let req = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(s("raw")))
        .with_group_id(GroupId(s(group)))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_generation_id(-1)
        .with_topics(vec![txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(3)])]);
    let r: TxnOffsetCommitResponse = raw::call(b, ApiKey::TxnOffsetCommit, 3, &req);
    r.topics[0].partitions[0].error_code
}

/// OffsetFetch v7 with require_stable for partition 0: (error code, offset).
fn stable_offset(b: &str, group: &str, topic: &str) -> (i16, i64) {
    let req = OffsetFetchRequest::default().with_group_id(GroupId(s(group))).with_require_stable(true).with_topics(
        Some(vec![offset_fetch_request::OffsetFetchRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partition_indexes(vec![0])]),
    );
    let r: OffsetFetchResponse = raw::call(b, ApiKey::OffsetFetch, 7, &req);
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.committed_offset)
}

#[tokio::test(flavor = "multi_thread")]
async fn transaction_apis_answer_with_kafkas_error_codes() {
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("txn-raw");
    create_topic(&broker.bootstrap, &topic, 2, &[]).await;
    let b = broker.bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let invalid_timeout = ResponseError::InvalidTransactionTimeout.code();
        assert_eq!(init(&b, "raw", 900_001, 4).error_code, invalid_timeout);
        assert_eq!(init(&b, "raw", 0, 4).error_code, invalid_timeout);
        let first = init(&b, "raw", 60_000, 4);
        assert_eq!((first.error_code, first.producer_epoch), (OK, 0));
        let pid = first.producer_id.0;
        let second = init(&b, "raw", 60_000, 4);
        assert_eq!((second.producer_id.0, second.producer_epoch), (pid, 1), "same id, bumped epoch");

        // the fenced epoch, by request version (KIP-588)
        let fenced = add(&b, 3, "raw", pid, 0, &[(&topic, vec![0])]);
        assert_eq!(fenced[0].2, ResponseError::ProducerFenced.code());
        let fenced = add(&b, 1, "raw", pid, 0, &[(&topic, vec![0])]);
        assert_eq!(fenced[0].2, ResponseError::InvalidProducerEpoch.code());
        let wrong_pid = add(&b, 3, "raw", pid + 1000, 1, &[(&topic, vec![0])]);
        assert_eq!(wrong_pid[0].2, ResponseError::InvalidProducerIdMapping.code());
        let mixed = add(&b, 3, "raw", pid, 1, &[(&topic, vec![0]), ("no-such-topic", vec![0])]);
        let codes: Vec<i16> = mixed.iter().map(|r| r.2).collect();
        let expected = [ResponseError::OperationNotAttempted.code(), ResponseError::UnknownTopicOrPartition.code()];
        assert_eq!(codes, expected);
        assert_eq!(end(&b, 3, "raw", pid, 1, true), ResponseError::InvalidTxnState.code(), "nothing to end yet");

        assert_eq!(add(&b, 3, "raw", pid, 1, &[(&topic, vec![0])])[0].2, OK);
        // KIP-890 verification: only partition 0 is in the transaction
        let verify =
            AddPartitionsToTxnRequest::default().with_transactions(vec![AddPartitionsToTxnTransaction::default()
                .with_transactional_id(TransactionalId(s("raw")))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(1)
                .with_verify_only(true)
                .with_topics(vec![AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(s(&topic)))
                    .with_partitions(vec![0, 1])])]);
        let r: AddPartitionsToTxnResponse = raw::call(&b, ApiKey::AddPartitionsToTxn, 4, &verify);
        let codes: Vec<i16> = r.results_by_transaction[0].topic_results[0]
            .results_by_partition
            .iter()
            .map(|p| p.partition_error_code)
            .collect();
        assert_eq!(codes, [OK, ResponseError::InvalidTxnState.code()]);
        assert_eq!(produce(&b, &topic, 1, txn_batch(pid, 1, 3)), ResponseError::InvalidTxnState.code());
        assert_eq!(produce(&b, &topic, 0, txn_batch(pid, 0, 3)), ResponseError::InvalidProducerEpoch.code());
        assert_eq!(produce(&b, &topic, 0, txn_batch(pid, 1, 5)), OK);

        // offsets in the transaction: only after AddOffsetsToTxn, and pending until it ends
        let group = "raw-group";
        assert_eq!(txn_offset_commit(&b, pid, 1, group, &topic), ResponseError::InvalidTxnState.code());
        let add_offsets = AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(s("raw")))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(1)
            .with_group_id(GroupId(s(group)));
        let r: AddOffsetsToTxnResponse = raw::call(&b, ApiKey::AddOffsetsToTxn, 3, &add_offsets);
        assert_eq!(r.error_code, OK);
        assert_eq!(txn_offset_commit(&b, pid, 0, group, &topic), ResponseError::InvalidProducerEpoch.code());
        assert_eq!(txn_offset_commit(&b, pid, 1, group, &topic), OK);
        assert_eq!(stable_offset(&b, group, &topic).0, ResponseError::UnstableOffsetCommit.code());

        // the open transaction holds back read_committed readers
        assert_eq!(latest(&b, &topic, 0), 5);
        assert_eq!(latest(&b, &topic, 1), 0);
        let (bytes, lso, _) = fetch(&b, &topic, 1);
        assert_eq!((bytes, lso), (0, 0));
        assert!(fetch(&b, &topic, 0).0 > 0);
        let producers: DescribeProducersResponse = raw::call(
            &b,
            ApiKey::DescribeProducers,
            0,
            &DescribeProducersRequest::default().with_topics(vec![describe_producers_request::TopicRequest::default()
                .with_name(TopicName(s(&topic)))
                .with_partition_indexes(vec![0])]),
        );
        let active = &producers.topics[0].partitions[0].active_producers;
        assert_eq!(active.len(), 1);
        assert_eq!((active[0].producer_id.0, active[0].current_txn_start_offset), (pid, 0));

        assert_eq!(end(&b, 1, "raw", pid, 0, false), ResponseError::InvalidProducerEpoch.code());
        assert_eq!(end(&b, 3, "raw", pid, 0, false), ResponseError::ProducerFenced.code());
        assert_eq!(end(&b, 3, "raw", pid, 1, false), OK);
        assert_eq!(end(&b, 3, "raw", pid, 1, false), OK, "a retried abort succeeds again");
        assert_eq!(end(&b, 3, "raw", pid, 1, true), ResponseError::InvalidTxnState.code());
        let (bytes, lso, aborted) = fetch(&b, &topic, 1);
        assert!(bytes > 0, "the aborted batch and its marker are returned");
        assert_eq!(lso, 6, "five records and the abort marker");
        assert_eq!(aborted, vec![(pid, 0)]);
        assert_eq!(fetch(&b, &topic, 0).2, Vec::<(i64, i64)>::new(), "read_uncommitted gets no aborted list");
        assert_eq!(latest(&b, &topic, 1), 6);
        assert_eq!(stable_offset(&b, group, &topic), (OK, -1), "the aborted offset commit is dropped");
    })
    .await
    .unwrap();
}
