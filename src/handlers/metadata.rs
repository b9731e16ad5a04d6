//! Metadata: brokers, cluster id, controller, and topics with their partitions; auto-creates
//! unknown topics when the request and `auto.create.topics.enable` allow it.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::{str_bytes, RequestContext};
use crate::broker::{is_internal_topic, validate_topic_name, AdminError, Broker, ClusterView, NewTopic, Topic};
use crate::security::acl::{op, resource, CLUSTER_NAME};
use std::sync::Arc;

/// "Authorized operations were not requested", as Kafka encodes it.
pub const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;
/// The operations a topic has, as authorized-operations bit fields list them.
pub const TOPIC_OPERATIONS: &[i8] =
    &[op::READ, op::WRITE, op::CREATE, op::DELETE, op::ALTER, op::DESCRIBE, op::DESCRIBE_CONFIGS, op::ALTER_CONFIGS];
/// The operations the cluster has.
pub const CLUSTER_OPERATIONS: &[i8] = &[
    op::CREATE,
    op::ALTER,
    op::DESCRIBE,
    op::CLUSTER_ACTION,
    op::DESCRIBE_CONFIGS,
    op::ALTER_CONFIGS,
    op::IDEMPOTENT_WRITE,
];

pub async fn handle(ctx: &RequestContext, req: MetadataRequest) -> MetadataResponse {
    let broker = &ctx.broker;
    let view = broker.cluster_view(&ctx.session.listener.name);
    let all_topics = req.topics.is_none() || (ctx.version == 0 && req.topics.as_ref().is_some_and(Vec::is_empty));
    let auto_create =
        (ctx.version < 4 || req.allow_auto_topic_creation) && broker.config_bool("auto.create.topics.enable");
    let topic_ops = |name: &str| {
        if req.include_topic_authorized_operations {
            ctx.authorized_operations(resource::TOPIC, name, TOPIC_OPERATIONS)
        } else {
            OPERATIONS_NOT_REQUESTED
        }
    };
    let mut topics = Vec::new();
    if all_topics {
        // Topics the client may not describe are left out.
        for t in broker.topics().iter().filter(|t| ctx.authorized(op::DESCRIBE, resource::TOPIC, &t.name)) {
            topics.push(describe_topic(broker, &view, t, topic_ops(&t.name)));
        }
    } else {
        for wanted in req.topics.unwrap_or_default() {
            let topic = match &wanted.name {
                Some(name) => lookup_or_create(ctx, name.0.as_str(), auto_create).await,
                None => broker
                    .topic_by_id(&wanted.topic_id)
                    .filter(|t| ctx.authorized(op::DESCRIBE, resource::TOPIC, &t.name))
                    .ok_or(ResponseError::UnknownTopicId),
            };
            topics.push(match topic {
                Ok(t) => describe_topic(broker, &view, &t, topic_ops(&t.name)),
                Err(code) => MetadataResponseTopic::default()
                    .with_error_code(code.code())
                    .with_name(wanted.name)
                    .with_topic_id(wanted.topic_id)
                    .with_topic_authorized_operations(OPERATIONS_NOT_REQUESTED),
            });
        }
    }
    let mut resp = MetadataResponse::default()
        .with_brokers(
            view.brokers
                .iter()
                .map(|b| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(b.id))
                        .with_host(str_bytes(b.host.clone()))
                        .with_port(b.port)
                        .with_rack(b.rack.clone().map(str_bytes))
                })
                .collect(),
        )
        .with_cluster_id(Some(str_bytes(broker.cluster_id.clone())))
        .with_controller_id(BrokerId(view.controller))
        .with_topics(topics);
    if (8..=10).contains(&ctx.version) {
        resp.cluster_authorized_operations = if req.include_cluster_authorized_operations {
            ctx.authorized_operations(resource::CLUSTER, CLUSTER_NAME, CLUSTER_OPERATIONS)
        } else {
            OPERATIONS_NOT_REQUESTED
        };
    }
    resp
}

/// A named topic for the client: `TOPIC_AUTHORIZATION_FAILED` unless it may describe it, and
/// auto-created only when it may also create it.
async fn lookup_or_create(ctx: &RequestContext, name: &str, auto_create: bool) -> Result<Arc<Topic>, ResponseError> {
    let broker = &ctx.broker;
    if !ctx.authorized(op::DESCRIBE, resource::TOPIC, name) {
        return Err(ResponseError::TopicAuthorizationFailed);
    }
    if let Some(t) = broker.topic(name) {
        return Ok(t);
    }
    if validate_topic_name(name).is_err() {
        return Err(ResponseError::InvalidTopicException);
    }
    if !auto_create || is_internal_topic(name) {
        return Err(ResponseError::UnknownTopicOrPartition);
    }
    if !ctx.cluster_authorized(op::CREATE) && !ctx.authorized(op::CREATE, resource::TOPIC, name) {
        return Err(ResponseError::TopicAuthorizationFailed);
    }
    let new = NewTopic {
        name: name.to_string(),
        partitions: -1,
        replication_factor: -1,
        configs: Default::default(),
        assignments: Vec::new(),
    };
    match broker.create_topic(&new).await {
        Ok(t) => Ok(t),
        Err(AdminError::TopicAlreadyExists(_)) => broker.topic(name).ok_or(ResponseError::UnknownTopicOrPartition),
        Err(e) => {
            tracing::warn!(topic = name, error = %e, "auto-creation failed");
            Err(ResponseError::UnknownTopicOrPartition)
        }
    }
}

/// One partition as clients see it, the same in Metadata and DescribeTopicPartitions: a
/// partition whose leader's broker is not live has no leader (-1), its replicas on dead
/// brokers listed offline.
pub struct PartitionView {
    pub index: i32,
    pub leader: Option<i32>,
    pub leader_epoch: i32,
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    pub offline: Vec<BrokerId>,
}

pub fn partition_view(broker: &Broker, view: &ClusterView, t: &Topic, index: i32) -> PartitionView {
    let (replicas, isr, leader, leader_epoch) = match t.state(index) {
        Some(s) => (s.replicas.clone(), s.isr.clone(), s.leader, s.leader_epoch),
        None => {
            let epoch = t.partition(index).map_or(0, |p| p.log().leader_epoch());
            (vec![broker.node_id], vec![broker.node_id], broker.node_id, epoch)
        }
    };
    let ids = |v: &mut dyn Iterator<Item = i32>| v.map(BrokerId).collect::<Vec<_>>();
    PartitionView {
        index,
        leader: Some(leader).filter(|l| view.is_live(*l)),
        leader_epoch,
        offline: ids(&mut replicas.iter().copied().filter(|r| !view.is_live(*r))),
        replicas: ids(&mut replicas.into_iter()),
        isr: ids(&mut isr.into_iter()),
    }
}

/// A topic's partitions for Metadata: LEADER_NOT_AVAILABLE where there is no live leader.
fn describe_topic(broker: &Broker, view: &ClusterView, t: &Topic, topic_ops: i32) -> MetadataResponseTopic {
    let partitions = (0..t.partition_count)
        .map(|index| {
            let p = partition_view(broker, view, t, index);
            let resp = MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(BrokerId(p.leader.unwrap_or(-1)))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(p.replicas)
                .with_isr_nodes(p.isr)
                .with_offline_replicas(p.offline);
            match p.leader {
                Some(_) => resp,
                None => resp.with_error_code(ResponseError::LeaderNotAvailable.code()),
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(t.name.clone()))))
        .with_topic_id(t.id)
        .with_is_internal(t.is_internal())
        .with_partitions(partitions)
        .with_topic_authorized_operations(topic_ops)
}

/// Topic ids are `Uuid::nil()` when a request names topics instead.
pub fn is_nil(id: &Uuid) -> bool {
    id.is_nil()
}
