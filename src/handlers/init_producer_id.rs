//! InitProducerId. Without a transactional id: a fresh producer id for an idempotent
//! producer, or (KIP-360) the same id with a bumped epoch when it recovers after an error.
//! With one: the transaction coordinator hands out the id's producer id and a bumped epoch,
//! fencing older producers of the same transactional id.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::transactions::txn_error_code;
use super::RequestContext;
use crate::security::acl::{op, resource};

/// InitProducerId knows `PRODUCER_FENCED` from version 4.
const FENCED_SINCE: i16 = 4;

pub async fn handle(ctx: &RequestContext, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    let expected =
        (req.producer_id.0 >= 0 && req.producer_epoch >= 0).then_some((req.producer_id.0, req.producer_epoch));
    if let Some(id) = req.transactional_id.as_ref().filter(|id| !id.is_empty()) {
        if !ctx.authorized(op::WRITE, resource::TRANSACTIONAL_ID, id.as_str()) {
            return resp.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
        }
        let broker = &ctx.broker;
        return match broker.txns.init_producer_id(broker, id.as_str(), req.transaction_timeout_ms, expected).await {
            Ok((pid, epoch)) => resp.with_producer_id(ProducerId(pid)).with_producer_epoch(epoch),
            Err(e) => resp.with_error_code(txn_error_code(e, ctx.version, FENCED_SINCE).code()),
        };
    }
    // An idempotent producer needs IDEMPOTENT_WRITE on the cluster, or WRITE on some topic.
    let security = &ctx.broker.security;
    if !ctx.cluster_authorized(op::IDEMPOTENT_WRITE)
        && !security.authorize_any(&ctx.session, op::WRITE, resource::TOPIC)
    {
        return resp.with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    if let Some((pid, epoch)) = expected.filter(|(_, e)| *e < i16::MAX - 1) {
        return resp.with_producer_id(ProducerId(pid)).with_producer_epoch(epoch + 1);
    }
    match ctx.broker.allocate_producer_id().await {
        Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e, "cannot allocate a producer id");
            resp.with_error_code(ResponseError::CoordinatorNotAvailable.code())
        }
    }
}
