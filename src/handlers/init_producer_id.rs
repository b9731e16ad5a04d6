//! InitProducerId for idempotent producers: a fresh producer id, or (KIP-360) the same id
//! with a bumped epoch when a producer asks to recover after an error.
//!
//! Transactional ids need the transaction coordinator and are refused until it exists;
//! clients only send them after FindCoordinator, which Weir does not advertise yet.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::RequestContext;

pub async fn handle(ctx: &RequestContext, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    if req.transactional_id.is_some() {
        tracing::warn!(peer = %ctx.peer, "InitProducerId with a transactional id: transactions are not supported yet");
        return resp.with_error_code(ResponseError::InvalidRequest.code());
    }
    let bump = req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1;
    if bump {
        return resp.with_producer_id(req.producer_id).with_producer_epoch(req.producer_epoch + 1);
    }
    match ctx.broker.allocate_producer_id().await {
        Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e, "cannot allocate a producer id");
            resp.with_error_code(ResponseError::CoordinatorNotAvailable.code())
        }
    }
}
