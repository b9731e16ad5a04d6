//! Consumer groups, classic protocol: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, ListGroups, DescribeGroups, DeleteGroups. The state machine lives in
//! `coordinator::group::classic`; these handlers translate requests and responses.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use super::metadata::OPERATIONS_NOT_REQUESTED;
use super::{str_bytes, RequestContext};
use crate::broker::now_ms;
use crate::coordinator::group::classic::{GroupState, JoinArgs, JoinResult, Reply, SyncArgs, SyncResult};
use crate::coordinator::group::records::RecordKey;
use crate::coordinator::group::GroupCoordinator;
use crate::security::acl::{op, resource};

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;
/// A share-partition's state (`group:topicId:partition`, KIP-932; FindCoordinator v6+): the
/// leader of its `__share_group_state` partition. Brokers ask; clients may not.
const KEY_TYPE_SHARE: i8 = 2;
/// What a group's authorized operations can contain.
pub const GROUP_OPERATIONS: &[i8] = &[op::READ, op::DELETE, op::DESCRIBE];

/// `GROUP_AUTHORIZATION_FAILED` unless the client may perform `operation` on the group.
pub fn check_group(ctx: &RequestContext, operation: i8, group: &str) -> Result<(), ResponseError> {
    if ctx.authorized(operation, resource::GROUP, group) {
        Ok(())
    } else {
        Err(ResponseError::GroupAuthorizationFailed)
    }
}

/// [`check_group`] for a request only the group's coordinator serves: NOT_COORDINATOR on a
/// broker that does not lead the group's `__consumer_offsets` partition, so the client looks
/// the coordinator up again (after a leader change, say).
pub fn check_group_here(ctx: &RequestContext, operation: i8, group: &str) -> Result<(), ResponseError> {
    check_group(ctx, operation, group)?;
    GroupCoordinator::ownership(&ctx.broker, group)
}

/// The checks a KIP-848 or KIP-932 heartbeat starts with: READ on the group at its
/// coordinator (NOT_COORDINATOR sends the member to look it up again,
/// COORDINATOR_LOAD_IN_PROGRESS to retry), DESCRIBE on every subscribed topic, a group id.
pub fn check_heartbeat(
    ctx: &RequestContext,
    group: &str,
    topics: Option<&[TopicName]>,
) -> Result<(), (ResponseError, String)> {
    if let Err(code) = check_group_here(ctx, op::READ, group) {
        let message = match code {
            ResponseError::GroupAuthorizationFailed => "Not authorized to access group".to_string(),
            other => other.to_string(),
        };
        return Err((code, message));
    }
    if topics.is_some_and(|names| names.iter().any(|t| !ctx.authorized(op::DESCRIBE, resource::TOPIC, t.0.as_str()))) {
        return Err((ResponseError::TopicAuthorizationFailed, "Not authorized to describe a subscribed topic".into()));
    }
    if group.is_empty() {
        return Err((ResponseError::InvalidRequest, "GroupId can't be empty.".into()));
    }
    Ok(())
}

/// A group's authorized-operations field, when asked for.
pub fn group_operations(ctx: &RequestContext, group: &str, requested: bool) -> i32 {
    if requested {
        ctx.authorized_operations(resource::GROUP, group, GROUP_OPERATIONS)
    } else {
        OPERATIONS_NOT_REQUESTED
    }
}

fn opt_str(s: &Option<StrBytes>) -> Option<&str> {
    s.as_deref()
}

/// Resolves one FindCoordinator key: this broker coordinates every group and transaction,
/// once the internal topic that stores them exists.
async fn coordinator_for(ctx: &RequestContext, key_type: i8) -> Result<(), (ResponseError, &'static str)> {
    let broker = &ctx.broker;
    match key_type {
        KEY_TYPE_GROUP => broker
            .groups
            .ensure_offsets_topic(broker)
            .await
            .map_err(|_| (ResponseError::CoordinatorNotAvailable, "the offsets topic cannot be created")),
        KEY_TYPE_TRANSACTION => broker
            .txns
            .ensure_topic(broker)
            .await
            .map_err(|_| (ResponseError::CoordinatorNotAvailable, "the transaction state topic cannot be created")),
        KEY_TYPE_SHARE if ctx.version >= 6 => broker
            .shares
            .state
            .ensure_topic(broker)
            .await
            .map_err(|_| (ResponseError::CoordinatorNotAvailable, "the share state topic cannot be created")),
        _ => Err((ResponseError::InvalidRequest, "unknown coordinator key type")),
    }
}

/// Whether the client may look up the coordinator of `key`: DESCRIBE on the group or the
/// transactional id.
fn authorize_key(ctx: &RequestContext, key_type: i8, key: &str) -> Result<(), (ResponseError, &'static str)> {
    let (resource_type, code) = match key_type {
        KEY_TYPE_GROUP => (resource::GROUP, ResponseError::GroupAuthorizationFailed),
        KEY_TYPE_TRANSACTION => (resource::TRANSACTIONAL_ID, ResponseError::TransactionalIdAuthorizationFailed),
        KEY_TYPE_SHARE if ctx.cluster_authorized(op::CLUSTER_ACTION) => return Ok(()),
        KEY_TYPE_SHARE => return Err((ResponseError::ClusterAuthorizationFailed, "not authorized")),
        _ => return Ok(()),
    };
    if ctx.authorized(op::DESCRIBE, resource_type, key) {
        Ok(())
    } else {
        Err((code, "not authorized"))
    }
}

pub async fn find_coordinator(ctx: &RequestContext, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let result = coordinator_for(ctx, req.key_type).await;
    let topic = match req.key_type {
        KEY_TYPE_TRANSACTION => crate::coordinator::txn::TXN_TOPIC,
        KEY_TYPE_SHARE => crate::share::state::STATE_TOPIC,
        _ => crate::coordinator::group::OFFSETS_TOPIC,
    };
    // the leader of the key's partition of the internal topic
    let locate = |key: &str| {
        ctx.broker
            .coordinator_of(topic, key, &ctx.session.listener.name)
            .map_err(|code| (code, "the coordinator's partition has no leader"))
    };
    if ctx.version < 4 {
        let result = authorize_key(ctx, req.key_type, req.key.as_str()).and(result).and_then(|()| locate(&req.key));
        let mut resp = FindCoordinatorResponse::default();
        if let Ok(b) = &result {
            resp = resp.with_node_id(BrokerId(b.id)).with_host(str_bytes(b.host.clone())).with_port(b.port);
        }
        if let Err((code, msg)) = result {
            resp = resp.with_error_code(code.code()).with_node_id(BrokerId(-1)).with_host(str_bytes("")).with_port(-1);
            if ctx.version >= 1 {
                resp.error_message = Some(str_bytes(msg));
            }
        }
        return resp;
    }
    let coordinators = req
        .coordinator_keys
        .into_iter()
        .map(|key| {
            let result = authorize_key(ctx, req.key_type, key.as_str()).and(result).and_then(|()| locate(&key));
            let c = Coordinator::default().with_key(key);
            match &result {
                Ok(b) => c.with_node_id(BrokerId(b.id)).with_host(str_bytes(b.host.clone())).with_port(b.port),
                Err((code, msg)) => c
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(code.code())
                    .with_error_message(Some(str_bytes(*msg))),
            }
        })
        .collect();
    FindCoordinatorResponse::default().with_coordinators(coordinators)
}

fn join_response(ctx: &RequestContext, r: JoinResult) -> JoinGroupResponse {
    let v = ctx.version;
    let members = r
        .members
        .into_iter()
        .map(|(id, inst, meta)| {
            let mut m = JoinGroupResponseMember::default().with_member_id(str_bytes(id)).with_metadata(meta);
            if v >= 5 {
                m.group_instance_id = inst.map(str_bytes);
            }
            m
        })
        .collect();
    let mut resp = JoinGroupResponse::default()
        .with_error_code(r.error)
        .with_generation_id(r.generation)
        .with_leader(str_bytes(r.leader))
        .with_member_id(str_bytes(r.member_id))
        .with_members(members);
    resp.protocol_name = match (r.protocol_name, v >= 7) {
        (Some(p), _) => Some(str_bytes(p)),
        (None, true) => None,
        (None, false) => Some(str_bytes("")),
    };
    if v >= 7 {
        resp.protocol_type = r.protocol_type.map(str_bytes);
    }
    if v >= 9 {
        resp.skip_assignment = r.skip_assignment;
    }
    resp
}

pub async fn join_group(ctx: &RequestContext, req: JoinGroupRequest) -> JoinGroupResponse {
    let group_id = req.group_id.0.to_string();
    if let Err(code) = check_group_here(ctx, op::READ, &group_id) {
        return join_response(ctx, JoinResult { error: code.code(), generation: -1, ..Default::default() });
    }
    if group_id.is_empty() {
        return join_response(
            ctx,
            JoinResult { error: ResponseError::InvalidGroupId.code(), generation: -1, ..Default::default() },
        );
    }
    let cfg = GroupCoordinator::config(&ctx.broker);
    let args = JoinArgs {
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
        client_id: ctx.header.client_id.as_deref().unwrap_or_default().to_string(),
        client_host: format!("/{}", ctx.peer.ip()),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if ctx.version >= 1 { req.rebalance_timeout_ms } else { req.session_timeout_ms },
        protocol_type: req.protocol_type.to_string(),
        protocols: req.protocols.into_iter().map(|p| (p.name.to_string(), p.metadata)).collect(),
        require_known_member_id: ctx.version >= 4,
        supports_skip_assignment: ctx.version >= 9,
    };
    let handle = ctx.broker.groups.group_or_create(&group_id);
    let reply = {
        let mut entry = handle.lock().await;
        if entry.is_consumer_group() || entry.share.is_some() {
            Reply::Now(JoinResult {
                error: ResponseError::InconsistentGroupProtocol.code(),
                generation: -1,
                ..Default::default()
            })
        } else {
            entry.group.join(args, Instant::now(), now_ms(), &cfg)
        }
    };
    let result = match reply {
        Reply::Now(r) => r,
        Reply::Later(rx) => rx.await.unwrap_or_else(|_| JoinResult {
            error: ResponseError::UnknownServerError.code(),
            generation: -1,
            ..Default::default()
        }),
    };
    join_response(ctx, result)
}

pub async fn sync_group(ctx: &RequestContext, req: SyncGroupRequest) -> SyncGroupResponse {
    let checked = check_group_here(ctx, op::READ, req.group_id.0.as_str());
    let reply = match ctx.broker.groups.group(req.group_id.0.as_str()) {
        _ if checked.is_err() => {
            let code = checked.err().unwrap_or(ResponseError::GroupAuthorizationFailed);
            Reply::Now(SyncResult { error: code.code(), ..Default::default() })
        }
        None => Reply::Now(SyncResult { error: ResponseError::UnknownMemberId.code(), ..Default::default() }),
        Some(handle) => {
            let args = SyncArgs {
                member_id: req.member_id.to_string(),
                generation: req.generation_id,
                group_instance_id: req.group_instance_id.map(|s| s.to_string()),
                protocol_type: req.protocol_type.map(|s| s.to_string()),
                protocol_name: req.protocol_name.map(|s| s.to_string()),
                assignments: req.assignments.into_iter().map(|a| (a.member_id.to_string(), a.assignment)).collect(),
            };
            handle.lock().await.group.sync(args, Instant::now(), now_ms())
        }
    };
    let r = match reply {
        Reply::Now(r) => r,
        Reply::Later(rx) => {
            rx.await.unwrap_or(SyncResult { error: ResponseError::UnknownServerError.code(), ..Default::default() })
        }
    };
    let mut resp = SyncGroupResponse::default().with_error_code(r.error).with_assignment(r.assignment);
    if ctx.version >= 5 {
        resp.protocol_type = r.protocol_type.map(str_bytes);
        resp.protocol_name = r.protocol_name.map(str_bytes);
    }
    resp
}

pub async fn heartbeat(ctx: &RequestContext, req: HeartbeatRequest) -> HeartbeatResponse {
    let checked = check_group_here(ctx, op::READ, req.group_id.0.as_str());
    let code = match ctx.broker.groups.group(req.group_id.0.as_str()) {
        _ if checked.is_err() => checked.err().unwrap_or(ResponseError::GroupAuthorizationFailed).code(),
        None => ResponseError::UnknownMemberId.code(),
        Some(handle) => handle.lock().await.group.heartbeat(
            req.member_id.as_str(),
            req.generation_id,
            opt_str(&req.group_instance_id),
            Instant::now(),
        ),
    };
    HeartbeatResponse::default().with_error_code(code)
}

pub async fn leave_group(ctx: &RequestContext, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let leaving: Vec<(String, Option<String>)> = if ctx.version >= 3 {
        req.members
            .iter()
            .map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|s| s.to_string())))
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    if let Err(code) = check_group_here(ctx, op::READ, req.group_id.0.as_str()) {
        return LeaveGroupResponse::default().with_error_code(code.code());
    }
    let codes = match ctx.broker.groups.group(req.group_id.0.as_str()) {
        None => vec![ResponseError::UnknownMemberId.code(); leaving.len()],
        Some(handle) => {
            let cfg = GroupCoordinator::config(&ctx.broker);
            let codes = handle.lock().await.group.leave(&leaving, Instant::now(), now_ms(), &cfg);
            if let Err(e) = ctx.broker.groups.write_changes(&ctx.broker, req.group_id.0.as_str()).await {
                tracing::warn!(group = %req.group_id.0.as_str(), error = %e, "cannot persist a group's members leaving");
            }
            codes
        }
    };
    if ctx.version < 3 {
        return LeaveGroupResponse::default().with_error_code(codes.first().copied().unwrap_or(0));
    }
    let members = leaving
        .into_iter()
        .zip(codes)
        .map(|((id, inst), code)| {
            MemberResponse::default()
                .with_member_id(str_bytes(id))
                .with_group_instance_id(inst.map(str_bytes))
                .with_error_code(code)
        })
        .collect();
    LeaveGroupResponse::default().with_members(members)
}

pub async fn list_groups(ctx: &RequestContext, req: ListGroupsRequest) -> ListGroupsResponse {
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_ascii_lowercase()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_ascii_lowercase()).collect();
    let mut groups = Vec::new();
    // DESCRIBE on the cluster lists every group; otherwise only those the client may describe.
    let all = ctx.cluster_authorized(op::DESCRIBE);
    for id in ctx.broker.groups.group_ids() {
        if !all && !ctx.authorized(op::DESCRIBE, resource::GROUP, &id) {
            continue;
        }
        let Some(handle) = ctx.broker.groups.group(&id) else { continue };
        let entry = handle.lock().await;
        let g = &entry.group;
        let (state, kind, protocol_type) = entry.describe_kind();
        if g.state == GroupState::Dead
            || (!states.is_empty() && !states.contains(&state.to_ascii_lowercase()))
            || (!types.is_empty() && !types.iter().any(|t| t == kind))
        {
            continue;
        }
        let mut listed = ListedGroup::default()
            .with_group_id(GroupId(str_bytes(id.clone())))
            .with_protocol_type(str_bytes(protocol_type));
        if ctx.version >= 4 {
            listed.group_state = str_bytes(state);
        }
        if ctx.version >= 5 {
            listed.group_type = str_bytes(kind);
        }
        groups.push(listed);
    }
    ListGroupsResponse::default().with_groups(groups)
}

pub async fn describe_groups(ctx: &RequestContext, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let mut groups = Vec::with_capacity(req.groups.len());
    for id in req.groups {
        let mut d = DescribedGroup::default().with_group_id(id.clone()).with_group_state(str_bytes("Dead"));
        if let Err(code) = check_group_here(ctx, op::DESCRIBE, id.0.as_str()) {
            groups.push(d.with_group_state(str_bytes("")).with_error_code(code.code()));
            continue;
        }
        if ctx.version >= 3 {
            d.authorized_operations = group_operations(ctx, id.0.as_str(), req.include_authorized_operations);
        }
        let handle = ctx.broker.groups.group(id.0.as_str());
        let Some(handle) = handle else {
            if ctx.version >= 6 {
                d.error_code = ResponseError::GroupIdNotFound.code();
                d.error_message = Some(str_bytes(format!("Group {} not found.", id.0.as_str())));
            }
            groups.push(d);
            continue;
        };
        let entry = handle.lock().await;
        if entry.share.is_some() {
            // Kafka describes only classic groups here (ShareGroupDescribe serves share groups)
            if ctx.version >= 6 {
                d.error_code = ResponseError::GroupIdNotFound.code();
                d.error_message = Some(str_bytes(format!("Group {} is not a classic group.", id.0.as_str())));
            }
            groups.push(d);
            continue;
        }
        let g = &entry.group;
        let stable = g.state == GroupState::Stable;
        d.group_state = str_bytes(g.state.name());
        d.protocol_type = str_bytes(g.protocol_type.clone().unwrap_or_default());
        d.protocol_data = str_bytes(g.protocol_name.clone().unwrap_or_default());
        d.members = g
            .members
            .values()
            .map(|m| {
                let mut dm = DescribedGroupMember::default()
                    .with_member_id(str_bytes(m.id.clone()))
                    .with_client_id(str_bytes(m.client_id.clone()))
                    .with_client_host(str_bytes(m.client_host.clone()));
                if ctx.version >= 4 {
                    dm.group_instance_id = m.group_instance_id.clone().map(str_bytes);
                }
                if stable {
                    dm.member_metadata = m.metadata(g.protocol_name.as_deref());
                    dm.member_assignment = m.assignment.clone();
                }
                dm
            })
            .collect();
        groups.push(d);
    }
    DescribeGroupsResponse::default().with_groups(groups)
}

pub async fn delete_groups(ctx: &RequestContext, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let coordinator = &ctx.broker.groups;
    let mut results = Vec::with_capacity(req.groups_names.len());
    for id in req.groups_names {
        let name = id.0.to_string();
        let checked = check_group_here(ctx, op::DELETE, &name);
        let code = match coordinator.group(&name) {
            _ if checked.is_err() => checked.err().unwrap_or(ResponseError::GroupAuthorizationFailed).code(),
            None => ResponseError::GroupIdNotFound.code(),
            Some(handle) => {
                let mut entry = handle.lock().await;
                let share_state = match entry.share.is_some() && entry.is_empty() {
                    true => ctx.broker.shares.delete_group(&ctx.broker, &name).await,
                    false => Ok(()),
                };
                if !entry.is_empty() {
                    ResponseError::NonEmptyGroup.code()
                } else if let Err(e) = share_state {
                    tracing::error!(group = %name, error = %e, "cannot delete share group state");
                    ResponseError::KafkaStorageError.code()
                } else {
                    entry.group.state = GroupState::Dead;
                    let mut records: Vec<_> = entry
                        .offsets
                        .keys()
                        .map(|(t, p)| GroupCoordinator::offset_record(&name, t, *p, None))
                        .collect();
                    records.push(GroupCoordinator::group_record(&entry.group));
                    if entry.share.take().is_some() {
                        records.push((RecordKey::ShareGroup { group: name.clone() }.encode(), None));
                    }
                    entry.offsets.clear();
                    match coordinator.write(&ctx.broker, &name, records).await {
                        Ok(()) => {
                            coordinator.remove(&name);
                            0
                        }
                        Err(e) => {
                            tracing::error!(group = %name, error = %e, "cannot delete group");
                            ResponseError::KafkaStorageError.code()
                        }
                    }
                }
            }
        };
        results.push(DeletableGroupResult::default().with_group_id(id).with_error_code(code));
    }
    DeleteGroupsResponse::default().with_results(results)
}
