//! KIP-890 at a partition leader that is not the transactional id's coordinator: before the
//! first transactional batch of a producer's transaction is appended to a partition, the
//! leader asks the coordinator whether the producer added that partition to its open
//! transaction — AddPartitionsToTxn v4 with `verify_only`, the broker-to-broker form Kafka's
//! `AddPartitionsToTxnManager` sends. A batch the coordinator does not know of would leave a
//! transaction open on the partition that no marker ever closes.

use std::time::Duration;

use kafka_protocol::messages::add_partitions_to_txn_request::{AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::ResponseError;

use super::TxnCoordinator;
use crate::broker::Broker;
use crate::handlers::str_bytes;

/// The first AddPartitionsToTxn version with the broker-to-broker batch form.
const VERIFY_VERSION: i16 = 4;
/// How long a produce waits for the coordinator's answer.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks `id`'s coordinator whether `producer` added `topic`-`index` to its open transaction.
/// Errors are Kafka's as the coordinator gives them, PRODUCER_FENCED as INVALID_PRODUCER_EPOCH
/// (what producers expect here), and NETWORK_EXCEPTION when it cannot be reached.
pub async fn verify_at_coordinator(
    broker: &Broker,
    id: &str,
    producer: (i64, i16),
    topic: &str,
    index: i32,
) -> Result<(), ResponseError> {
    let coordinator = TxnCoordinator::coordinator_of(broker, id).ok_or(ResponseError::CoordinatorNotAvailable)?;
    if broker.inter_broker_addr(coordinator).is_none() {
        return Err(ResponseError::CoordinatorNotAvailable);
    }
    let req = AddPartitionsToTxnRequest::default().with_transactions(vec![AddPartitionsToTxnTransaction::default()
        .with_transactional_id(TransactionalId(str_bytes(id)))
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_verify_only(true)
        .with_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(TopicName(str_bytes(topic)))
            .with_partitions(vec![index])])]);
    let resp: AddPartitionsToTxnResponse = broker
        .call_broker(coordinator, ApiKey::AddPartitionsToTxn, VERIFY_VERSION, &req, VERIFY_TIMEOUT)
        .await
        .map_err(|e| {
            tracing::debug!(coordinator, error = %e, "cannot verify a transactional batch");
            ResponseError::NetworkException
        })?;
    if let Some(e) = ResponseError::try_from_code(resp.error_code) {
        // a producer is not told of the brokers' own authorization
        return Err(if e == ResponseError::ClusterAuthorizationFailed { ResponseError::InvalidTxnState } else { e });
    }
    let code = resp
        .results_by_transaction
        .iter()
        .flat_map(|t| &t.topic_results)
        .flat_map(|t| &t.results_by_partition)
        .find(|p| p.partition_index == index)
        .map_or(ResponseError::UnknownServerError.code(), |p| p.partition_error_code);
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(ResponseError::ProducerFenced) => Err(ResponseError::InvalidProducerEpoch),
        Some(e) => Err(e),
    }
}
