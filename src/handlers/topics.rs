//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, TopicName,
};
use kafka_protocol::ResponseError;

use super::configs::topic_config_entries;
use super::{str_bytes, RequestContext};
use crate::broker::{AdminError, NewTopic};
use crate::security::acl::{op, resource};

fn error_message(e: &AdminError) -> Option<kafka_protocol::protocol::StrBytes> {
    Some(str_bytes(e.to_string()))
}

pub async fn create_topics(ctx: &RequestContext, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for t in &req.topics {
        *seen.entry(t.name.0.to_string()).or_default() += 1;
    }
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let result = if seen.get(&name).copied().unwrap_or(0) > 1 {
            Err(AdminError::InvalidRequest(format!(
                "Create topics request from client `{}` contains multiple entries for the following topics: {name}",
                ctx.header.client_id.as_deref().unwrap_or("")
            )))
        } else {
            create_one(ctx, t, req.validate_only).await
        };
        results.push(match result {
            Ok(r) => r,
            Err(e) => {
                let mut r = CreatableTopicResult::default()
                    .with_name(TopicName(str_bytes(name)))
                    .with_error_code(e.code())
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
                    .with_configs(None);
                if ctx.version >= 1 {
                    r.error_message = error_message(&e);
                }
                r
            }
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

async fn create_one(
    ctx: &RequestContext,
    t: CreatableTopic,
    validate_only: bool,
) -> Result<CreatableTopicResult, AdminError> {
    let broker = &ctx.broker;
    // CREATE on the cluster allows any topic; CREATE on the topic (name or prefix) that one.
    if !ctx.cluster_authorized(op::CREATE) && !ctx.authorized(op::CREATE, resource::TOPIC, t.name.0.as_str()) {
        return Err(AdminError::TopicAuthorizationFailed);
    }
    let mut configs = BTreeMap::new();
    for c in &t.configs {
        let Some(value) = &c.value else {
            return Err(AdminError::InvalidConfig(format!(
                "Null value not supported for topic configs: {}",
                c.name.as_str()
            )));
        };
        configs.insert(c.name.to_string(), value.to_string());
    }
    let mut new = NewTopic {
        name: t.name.0.to_string(),
        partitions: t.num_partitions,
        replication_factor: t.replication_factor,
        configs,
        assignments: Vec::new(),
    };
    if !t.assignments.is_empty() {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err(AdminError::InvalidRequest("Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into()));
        }
        let mut assignments: Vec<(i32, Vec<i32>)> =
            t.assignments.iter().map(|a| (a.partition_index, a.broker_ids.iter().map(|b| b.0).collect())).collect();
        assignments.sort_by_key(|(p, _)| *p);
        if assignments.iter().enumerate().any(|(i, (p, _))| *p != i as i32) {
            return Err(AdminError::InvalidReplicaAssignment(
                "Partitions should be a consecutive 0-based integer sequence".into(),
            ));
        }
        new.assignments = assignments.into_iter().map(|(_, replicas)| replicas).collect();
        new.partitions = new.assignments.len() as i32;
        new.replication_factor = new.assignments[0].len() as i16;
    }
    let (partitions, rf, configs, id) = if validate_only {
        let (p, rf, c) = broker.check_new_topic(&new)?;
        (p, rf, c, uuid::Uuid::nil())
    } else {
        let topic = broker.create_topic(&new).await?;
        (topic.partition_count, 1, topic.configs.clone(), topic.id)
    };
    let described = topic_config_entries(&broker.config(), &configs)
        .into_iter()
        .map(|e| {
            CreatableTopicConfigs::default()
                .with_name(str_bytes(e.name))
                .with_value(Some(str_bytes(e.value)))
                .with_read_only(false)
                .with_config_source(e.source as i8)
                .with_is_sensitive(false)
        })
        .collect();
    Ok(CreatableTopicResult::default()
        .with_name(t.name)
        .with_topic_id(id)
        .with_num_partitions(partitions)
        .with_replication_factor(rf)
        .with_configs(Some(described)))
}

pub async fn delete_topics(ctx: &RequestContext, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let broker = &ctx.broker;
    let mut wanted: Vec<(Option<TopicName>, uuid::Uuid)> =
        req.topic_names.into_iter().map(|n| (Some(n), uuid::Uuid::nil())).collect();
    wanted.extend(req.topics.into_iter().map(|t| (t.name, t.topic_id)));
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let (resolved, missing) = match (&name, id.is_nil()) {
            (Some(n), _) => (Some(n.0.to_string()), ResponseError::UnknownTopicOrPartition),
            (None, false) => (broker.topic_by_id(&id).map(|t| t.name.clone()), ResponseError::UnknownTopicId),
            (None, true) => (None, ResponseError::InvalidRequest),
        };
        let result = match resolved {
            Some(n) if !ctx.authorized(op::DELETE, resource::TOPIC, &n) => Err(AdminError::TopicAuthorizationFailed),
            Some(n) => broker.delete_topic(&n).await.map(|id| (n, id)),
            None => Err(AdminError::UnknownTopic),
        };
        let r = match result {
            Ok((n, deleted_id)) => DeletableTopicResult::default()
                .with_name(Some(TopicName(str_bytes(n))))
                .with_topic_id(if ctx.version >= 6 { deleted_id } else { uuid::Uuid::nil() }),
            Err(e) => {
                let code = if matches!(e, AdminError::UnknownTopic) { missing.code() } else { e.code() };
                let mut r = DeletableTopicResult::default().with_name(name).with_topic_id(id).with_error_code(code);
                if ctx.version >= 5 {
                    r.error_message = error_message(&e);
                }
                r
            }
        };
        responses.push(r);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

pub async fn create_partitions(ctx: &RequestContext, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let broker = &ctx.broker;
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let result = if !ctx.authorized(op::ALTER, resource::TOPIC, &name) {
            Err(AdminError::TopicAuthorizationFailed)
        } else {
            let assignments =
                t.assignments.as_ref().map(|a| a.iter().map(|a| a.broker_ids.iter().map(|b| b.0).collect()).collect());
            broker.create_partitions(&name, t.count, assignments, req.validate_only).await
        };
        let mut r = CreatePartitionsTopicResult::default().with_name(t.name);
        if let Err(e) = result {
            r = r.with_error_code(e.code()).with_error_message(error_message(&e));
        }
        results.push(r);
    }
    CreatePartitionsResponse::default().with_results(results)
}
