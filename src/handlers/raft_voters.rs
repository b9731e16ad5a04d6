//! AddRaftVoter (API 80) and RemoveRaftVoter (API 81), KIP-853: growing and shrinking the
//! metadata quorum at run time, as `kafka-metadata-quorum.sh add-controller` /
//! `remove-controller` (and the admin client's `addRaftVoter` / `removeRaftVoter`) send them.
//! Any broker takes the request and forwards it to the active controller, which changes the
//! Raft membership: a new voter first copies the metadata log as a learner.

use kafka_protocol::messages::{
    AddRaftVoterRequest, AddRaftVoterResponse, RemoveRaftVoterRequest, RemoveRaftVoterResponse,
};

use super::{str_bytes, RequestContext};
use crate::broker::AdminError;
use crate::security::acl::op;

pub async fn add(ctx: &RequestContext, req: AddRaftVoterRequest) -> AddRaftVoterResponse {
    let result = match checked(ctx, req.cluster_id.as_deref()) {
        Err(e) => Err(e),
        Ok(()) => match controller_endpoint(ctx, &req) {
            // Kafka's default request timeout when the request gives none
            Some(addr) => {
                let timeout = if req.timeout_ms > 0 { req.timeout_ms as u64 } else { 30_000 };
                ctx.broker.change_voters(req.voter_id, Some(addr), timeout).await
            }
            None => Err(AdminError::InvalidRequest("the request names no listener of the new voter".into())),
        },
    };
    let (code, message) = outcome(result);
    AddRaftVoterResponse::default().with_error_code(code).with_error_message(message)
}

pub async fn remove(ctx: &RequestContext, req: RemoveRaftVoterRequest) -> RemoveRaftVoterResponse {
    let result = match checked(ctx, req.cluster_id.as_deref()) {
        Err(e) => Err(e),
        Ok(()) => ctx.broker.change_voters(req.voter_id, None, 0).await,
    };
    let (code, message) = outcome(result);
    RemoveRaftVoterResponse::default().with_error_code(code).with_error_message(message)
}

/// CLUSTER ALTER, and the request's cluster id (when it names one) is this cluster's.
fn checked(ctx: &RequestContext, cluster_id: Option<&str>) -> Result<(), AdminError> {
    if !ctx.cluster_authorized(op::ALTER) {
        return Err(AdminError::ClusterAuthorizationFailed);
    }
    match cluster_id {
        Some(id) if !id.is_empty() && id != ctx.broker.cluster_id => Err(AdminError::InconsistentClusterId),
        _ => Ok(()),
    }
}

/// The new voter's controller listener: the one named like this cluster's
/// `controller.listener.names`, else the first one given.
fn controller_endpoint(ctx: &RequestContext, req: &AddRaftVoterRequest) -> Option<String> {
    let names = ctx.broker.config_str("controller.listener.names");
    let wanted: Vec<&str> = names.split(',').map(str::trim).collect();
    let listener = req
        .listeners
        .iter()
        .find(|l| wanted.iter().any(|w| w.eq_ignore_ascii_case(l.name.as_str())))
        .or_else(|| req.listeners.first())?;
    Some(format!("{}:{}", listener.host.as_str(), listener.port))
}

fn outcome(result: Result<(), AdminError>) -> (i16, Option<kafka_protocol::protocol::StrBytes>) {
    match result {
        Ok(()) => (0, None),
        Err(e) => (e.code(), Some(str_bytes(e.to_string()))),
    }
}
