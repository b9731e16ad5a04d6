//! KIP-951 leader hints: a Produce or Fetch answer of NOT_LEADER_OR_FOLLOWER (Fetch: also
//! FENCED_LEADER_EPOCH) names the partition's current leader and its epoch, and the response
//! carries that leader's endpoint, so a client (librdkafka 2.4+, the Java client 3.7+) goes
//! straight to it instead of waiting for a metadata refresh.

use kafka_protocol::messages::{
    fetch_response, produce_response, share_acknowledge_response, share_fetch_response, BrokerId, FetchResponse,
    ProduceResponse,
};
use kafka_protocol::ResponseError;

use super::{str_bytes, RequestContext};
use crate::broker::BrokerEndpoint;

/// The current leader and leader epoch of a partition, as this broker's metadata has them.
fn current_leader(ctx: &RequestContext, topic: &str, partition: i32) -> Option<(i32, i32)> {
    let topic = ctx.broker.topic(topic)?;
    let state = topic.state(partition)?;
    (state.leader >= 0).then_some((state.leader, state.leader_epoch))
}

/// The endpoints, on the client's listener, of the leaders named in hints.
fn endpoints(ctx: &RequestContext, mut leaders: Vec<i32>) -> Vec<BrokerEndpoint> {
    if leaders.is_empty() {
        return Vec::new(); // the usual answer: no hint, and no cluster view built per request
    }
    leaders.sort_unstable();
    leaders.dedup();
    let view = ctx.broker.cluster_view(&ctx.session.listener.name);
    view.brokers.into_iter().filter(|b| leaders.binary_search(&b.id).is_ok()).collect()
}

/// The response's `node_endpoints` (Produce and Fetch each have their own `NodeEndpoint`).
macro_rules! node_endpoints {
    ($module:ident, $endpoints:expr) => {
        $endpoints
            .into_iter()
            .map(|b| {
                $module::NodeEndpoint::default()
                    .with_node_id(BrokerId(b.id))
                    .with_host(str_bytes(b.host))
                    .with_port(b.port)
                    .with_rack(b.rack.map(str_bytes))
            })
            .collect()
    };
}

pub fn produce(ctx: &RequestContext, mut resp: ProduceResponse) -> ProduceResponse {
    let not_leader = ResponseError::NotLeaderOrFollower.code();
    let mut leaders = Vec::new();
    for t in &mut resp.responses {
        for p in t.partition_responses.iter_mut().filter(|p| p.error_code == not_leader) {
            if let Some((leader, epoch)) = current_leader(ctx, t.name.0.as_str(), p.index) {
                p.current_leader = produce_response::LeaderIdAndEpoch::default()
                    .with_leader_id(BrokerId(leader))
                    .with_leader_epoch(epoch);
                leaders.push(leader);
            }
        }
    }
    resp.node_endpoints = node_endpoints!(produce_response, endpoints(ctx, leaders));
    resp
}

pub fn fetch(ctx: &RequestContext, mut resp: FetchResponse) -> FetchResponse {
    let hinted = [ResponseError::NotLeaderOrFollower.code(), ResponseError::FencedLeaderEpoch.code()];
    let mut leaders = Vec::new();
    for t in &mut resp.responses {
        if !t.partitions.iter().any(|p| hinted.contains(&p.error_code)) {
            continue; // the usual answer: no topic lookup
        }
        // Fetch v13+ names topics by id only
        let name = match ctx.broker.topic_by_id(&t.topic_id) {
            Some(topic) if t.topic.0.is_empty() => topic.name.clone(),
            _ => t.topic.0.to_string(),
        };
        for p in t.partitions.iter_mut().filter(|p| hinted.contains(&p.error_code)) {
            if let Some((leader, epoch)) = current_leader(ctx, &name, p.partition_index) {
                p.current_leader = fetch_response::LeaderIdAndEpoch::default()
                    .with_leader_id(BrokerId(leader))
                    .with_leader_epoch(epoch);
                leaders.push(leader);
            }
        }
    }
    resp.node_endpoints = node_endpoints!(fetch_response, endpoints(ctx, leaders));
    resp
}

/// ShareFetch's `node_endpoints` for the leaders it names.
pub fn share_fetch_endpoints(ctx: &RequestContext, leaders: Vec<i32>) -> Vec<share_fetch_response::NodeEndpoint> {
    node_endpoints!(share_fetch_response, endpoints(ctx, leaders))
}

/// ShareAcknowledge's `node_endpoints` for the leaders it names.
pub fn share_acknowledge_endpoints(
    ctx: &RequestContext,
    leaders: Vec<i32>,
) -> Vec<share_acknowledge_response::NodeEndpoint> {
    node_endpoints!(share_acknowledge_response, endpoints(ctx, leaders))
}
