//! Raw transaction requests built by kafka-protocol, for tests that control ids, epochs and
//! versions.

use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::raw;

pub fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

pub fn init(b: &str, id: &str, timeout_ms: i32, version: i16) -> InitProducerIdResponse {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(s(id))))
        .with_transaction_timeout_ms(timeout_ms)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    raw::call(b, ApiKey::InitProducerId, version, &req)
}

/// AddPartitionsToTxn v0–3: one error code per requested partition.
pub fn add(
    b: &str,
    version: i16,
    id: &str,
    pid: i64,
    epoch: i16,
    topics: &[(&str, Vec<i32>)],
) -> Vec<(String, i32, i16)> {
    let topics = topics
        .iter()
        .map(|(t, ps)| AddPartitionsToTxnTopic::default().with_name(TopicName(s(t))).with_partitions(ps.clone()))
        .collect();
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(s(id)))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(topics);
    let r: AddPartitionsToTxnResponse = raw::call(b, ApiKey::AddPartitionsToTxn, version, &req);
    r.results_by_topic_v3_and_below
        .iter()
        .flat_map(|t| {
            t.results_by_partition.iter().map(|p| (t.name.0.to_string(), p.partition_index, p.partition_error_code))
        })
        .collect()
}

pub fn end(b: &str, version: i16, id: &str, pid: i64, epoch: i16, commit: bool) -> i16 {
    let req = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s(id)))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    let r: EndTxnResponse = raw::call(b, ApiKey::EndTxn, version, &req);
    r.error_code
}

/// Produce v9, acks=all, of `records` for transactional id `id`: the partition's error code.
pub fn produce(b: &str, id: &str, topic: &str, partition: i32, records: Bytes) -> i16 {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_transactional_id(Some(TransactionalId(s(id))))
        .with_topic_data(vec![TopicProduceData::default().with_name(TopicName(s(topic))).with_partition_data(vec![
            PartitionProduceData::default().with_index(partition).with_records(Some(records)),
        ])]);
    let r: ProduceResponse = raw::call(b, ApiKey::Produce, 9, &req);
    r.responses[0].partition_responses[0].error_code
}
