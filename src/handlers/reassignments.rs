//! ElectLeaders (API 43), AlterPartitionReassignments (45), ListPartitionReassignments (46)
//! and UnregisterBroker (64): moving leadership and replicas and retiring brokers, as
//! `kafka-leader-election.sh`, `kafka-reassign-partitions.sh` and
//! `kafka-cluster.sh unregister` drive them. The controller plans each partition's change
//! (see `cluster::partition_change`); the broker that takes the request answers once its
//! own metadata has the change.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult as ElectionResult, ReplicaElectionResult};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId, ElectLeadersRequest,
    ElectLeadersResponse, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
    UnregisterBrokerRequest, UnregisterBrokerResponse,
};

use super::{str_bytes, RequestContext};
use crate::broker::AdminError;
use crate::cluster::controller::PartitionResult;
use crate::security::acl::op;

/// ElectLeaders' election types.
const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

/// Results grouped by topic, in the order the topics first appear.
fn by_topic(results: Vec<PartitionResult>) -> Vec<(String, Vec<PartitionResult>)> {
    let mut order: Vec<String> = Vec::new();
    let mut grouped: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
    for r in results {
        if !grouped.contains_key(&r.topic) {
            order.push(r.topic.clone());
        }
        grouped.entry(r.topic.clone()).or_default().push(r);
    }
    order.into_iter().map(|t| (t.clone(), grouped.remove(&t).unwrap_or_default())).collect()
}

/// Every partition of a request failed with one error (authorization, no controller).
fn all_failed(asked: &[(String, i32)], e: &AdminError) -> Vec<PartitionResult> {
    asked
        .iter()
        .map(|(topic, partition)| PartitionResult {
            topic: topic.clone(),
            partition: *partition,
            error: e.code(),
            message: Some(e.to_string()),
        })
        .collect()
}

pub async fn elect_leaders(ctx: &RequestContext, req: ElectLeadersRequest) -> ElectLeadersResponse {
    let asked: Option<Vec<(String, i32)>> = req
        .topic_partitions
        .map(|topics| topics.iter().flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p))).collect());
    let named = asked.clone().unwrap_or_default();
    let outcome = match req.election_type {
        _ if !ctx.cluster_authorized(op::ALTER) => Err(AdminError::ClusterAuthorizationFailed),
        PREFERRED => ctx.broker.elect_leaders(false, asked).await,
        UNCLEAN => ctx.broker.elect_leaders(true, asked).await,
        other => Err(AdminError::InvalidRequest(format!("Unknown election type {other}"))),
    };
    let (error, results) = match outcome {
        Ok(results) => (0, results),
        Err(e @ AdminError::InvalidRequest(_)) => (e.code(), vec![]),
        Err(e) => (e.code(), all_failed(&named, &e)),
    };
    let results = by_topic(results)
        .into_iter()
        .map(|(topic, partitions)| {
            let partitions = partitions.into_iter().map(|p| {
                ElectionResult::default()
                    .with_partition_id(p.partition)
                    .with_error_code(p.error)
                    .with_error_message(p.message.map(str_bytes))
            });
            ReplicaElectionResult::default()
                .with_topic(TopicName(str_bytes(topic)))
                .with_partition_result(partitions.collect())
        })
        .collect();
    let mut resp = ElectLeadersResponse::default().with_replica_election_results(results);
    if ctx.version >= 1 {
        resp.error_code = error;
    }
    resp
}

pub async fn alter_reassignments(
    ctx: &RequestContext,
    req: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let resp = AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(req.allow_replication_factor_change);
    if !ctx.cluster_authorized(op::ALTER) {
        let e = AdminError::ClusterAuthorizationFailed;
        return resp.with_error_code(e.code()).with_error_message(Some(str_bytes(e.to_string())));
    }
    let asked: Vec<(String, i32, Option<Vec<i32>>)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                let target = p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect());
                (t.name.0.to_string(), p.partition_index, target)
            })
        })
        .collect();
    // v0 has no such field, and Kafka then allows the change
    let allow_rf_change = ctx.version == 0 || req.allow_replication_factor_change;
    let results = match ctx.broker.reassign(asked.clone(), allow_rf_change).await {
        Ok(results) => results,
        Err(e) => {
            let named: Vec<(String, i32)> = asked.into_iter().map(|(t, p, _)| (t, p)).collect();
            all_failed(&named, &e)
        }
    };
    let responses = by_topic(results)
        .into_iter()
        .map(|(topic, partitions)| {
            let partitions = partitions.into_iter().map(|p| {
                ReassignablePartitionResponse::default()
                    .with_partition_index(p.partition)
                    .with_error_code(p.error)
                    .with_error_message(p.message.map(str_bytes))
            });
            ReassignableTopicResponse::default()
                .with_name(TopicName(str_bytes(topic)))
                .with_partitions(partitions.collect())
        })
        .collect();
    resp.with_responses(responses)
}

pub async fn list_reassignments(
    ctx: &RequestContext,
    req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    if !ctx.cluster_authorized(op::DESCRIBE) {
        let e = AdminError::ClusterAuthorizationFailed;
        return ListPartitionReassignmentsResponse::default()
            .with_error_code(e.code())
            .with_error_message(Some(str_bytes(e.to_string())));
    }
    let image = ctx.broker.metadata_image();
    let asked: Vec<(String, Option<Vec<i32>>)> = match &req.topics {
        Some(topics) => topics.iter().map(|t| (t.name.0.to_string(), Some(t.partition_indexes.clone()))).collect(),
        None => image.topics.keys().map(|t| (t.clone(), None)).collect(),
    };
    let ids = |list: &[i32]| list.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    let mut topics = Vec::new();
    for (name, partitions) in asked {
        let Some(t) = image.topics.get(&name) else { continue };
        let indexes = partitions.unwrap_or_else(|| (0..t.states.len() as i32).collect());
        let ongoing: Vec<OngoingPartitionReassignment> = indexes
            .into_iter()
            .filter_map(|p| t.state(p).filter(|s| s.reassigning()).map(|s| (p, s)))
            .map(|(p, s)| {
                OngoingPartitionReassignment::default()
                    .with_partition_index(p)
                    .with_replicas(ids(&s.replicas))
                    .with_adding_replicas(ids(&s.adding))
                    .with_removing_replicas(ids(&s.removing))
            })
            .collect();
        if !ongoing.is_empty() {
            topics.push(
                OngoingTopicReassignment::default().with_name(TopicName(str_bytes(name))).with_partitions(ongoing),
            );
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}

pub async fn unregister_broker(ctx: &RequestContext, req: UnregisterBrokerRequest) -> UnregisterBrokerResponse {
    let result = if ctx.cluster_authorized(op::ALTER) {
        ctx.broker.unregister_broker(req.broker_id.0).await
    } else {
        Err(AdminError::ClusterAuthorizationFailed)
    };
    match result {
        Ok(()) => UnregisterBrokerResponse::default(),
        Err(e) => UnregisterBrokerResponse::default()
            .with_error_code(e.code())
            .with_error_message(Some(str_bytes(e.to_string()))),
    }
}
