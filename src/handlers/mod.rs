//! Request dispatch: one module per API family, and the single table of API versions Weir
//! implements. ApiVersions advertises exactly this table, and dispatch refuses anything
//! outside it.

pub mod acls;
pub mod api_versions;
pub mod cluster;
pub mod configs;
pub mod consumer_groups;
pub mod delete_records;
pub mod describe_quorum;
pub mod describe_topic_partitions;
pub mod fetch;
pub mod groups;
pub mod init_producer_id;
pub mod leader_hints;
pub mod list_offsets;
pub mod metadata;
pub mod offset_for_leader_epoch;
pub mod offsets;
pub mod produce;
pub mod producers;
pub mod quotas;
pub mod raft_voters;
pub mod reassignments;
pub mod response;
pub mod sasl;
pub mod scram_credentials;
pub mod share_fetch;
pub mod share_groups;
pub mod share_offsets;
pub mod share_state;
pub mod telemetry;
pub mod topics;
pub mod transactions;
pub mod update_features;
pub mod write_txn_markers;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};
use thiserror::Error;

use crate::broker::Broker;
use crate::security::sasl::Session;
use crate::security::{acl, quota};
pub use response::Response;

/// `(api, min version, max version)` for every API Weir serves.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::AddPartitionsToTxn, 0, 5),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 4),
    (ApiKey::WriteTxnMarkers, 1, 1),
    (ApiKey::TxnOffsetCommit, 0, 4),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::DescribeQuorum, 0, 2),
    (ApiKey::UpdateFeatures, 0, 2),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::UnregisterBroker, 0, 0),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 2),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::GetTelemetrySubscriptions, 0, 0),
    (ApiKey::PushTelemetry, 0, 0),
    (ApiKey::ListConfigResources, 0, 1),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    (ApiKey::ShareGroupHeartbeat, 1, 1),
    (ApiKey::ShareGroupDescribe, 1, 1),
    (ApiKey::ShareFetch, 1, 2),
    (ApiKey::ShareAcknowledge, 1, 2),
    (ApiKey::AddRaftVoter, 0, 0),
    (ApiKey::RemoveRaftVoter, 0, 0),
    (ApiKey::ReadShareGroupState, 0, 0),
    (ApiKey::WriteShareGroupState, 0, 1),
    (ApiKey::DeleteShareGroupState, 0, 0),
    (ApiKey::DescribeShareGroupOffsets, 0, 1),
    (ApiKey::AlterShareGroupOffsets, 0, 0),
    (ApiKey::DeleteShareGroupOffsets, 0, 0),
];

/// The supported version range of `key`, if Weir serves it.
pub fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS.iter().find(|(k, _, _)| *k == key).map(|(_, min, max)| (*min, *max))
}

/// What a request handler knows about the request it serves.
pub struct RequestContext {
    pub broker: Arc<Broker>,
    pub header: RequestHeader,
    pub version: i16,
    pub peer: SocketAddr,
    /// The connection's listener and authenticated principal.
    pub session: Arc<Session>,
}

impl RequestContext {
    /// The `HOST:PORT` to give this client for this broker: its listener's advertised address.
    pub fn advertised(&self) -> (String, i32) {
        self.broker.advertised(&self.session.listener.name)
    }

    /// Whether the client may perform `operation` on a resource (always, without an authorizer).
    pub fn authorized(&self, operation: i8, resource_type: i8, name: &str) -> bool {
        self.broker.security.authorize(&self.session, operation, resource_type, name)
    }

    /// The bit field of `candidates` the client may perform on a resource (the
    /// `*_authorized_operations` fields).
    pub fn authorized_operations(&self, resource_type: i8, name: &str, candidates: &[i8]) -> i32 {
        candidates.iter().filter(|o| self.authorized(**o, resource_type, name)).fold(0, |bits, o| bits | (1 << *o))
    }

    /// `UNSUPPORTED_VERSION` unless the cluster finalized `feature` at level 1 or more:
    /// group.version gates the KIP-848 consumer protocol and share.version share groups,
    /// as in Kafka.
    pub fn require_feature(&self, feature: &str) -> Result<(), kafka_protocol::ResponseError> {
        match self.broker.metadata_image().feature_level(feature) >= 1 {
            true => Ok(()),
            false => Err(kafka_protocol::ResponseError::UnsupportedVersion),
        }
    }

    /// Whether the client may perform `operation` on the cluster.
    pub fn cluster_authorized(&self, operation: i8) -> bool {
        self.authorized(operation, acl::resource::CLUSTER, acl::CLUSTER_NAME)
    }
}

/// A request the connection cannot serve; the connection is closed with a log line.
#[derive(Debug, Error)]
pub enum FrameError {
    #[error("request frame of {0} bytes is too short for a header")]
    TooShort(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("unsupported version {1} of {0:?}")]
    UnsupportedVersion(ApiKey, i16),
    #[error("cannot decode {0:?} v{1}: {2}")]
    Decode(ApiKey, i16, String),
    #[error("cannot encode {0:?} v{1} response: {2}")]
    Encode(ApiKey, i16, String),
    #[error("{0:?} before SASL authentication")]
    Unauthenticated(ApiKey),
    #[error("{0:?} after the SASL session expired (connections.max.reauth.ms)")]
    SessionExpired(ApiKey),
    #[error("SASL authentication failed")]
    AuthenticationFailed,
}

/// A response still being worked on: produce requests waiting for their fsync.
pub type Pending = std::pin::Pin<Box<dyn Future<Output = Result<Option<Response>, FrameError>> + Send>>;

/// What serving a request gave: the response now, or a future that finishes it. Every side
/// effect of a request (appends included) has happened by the time `handle_frame` returns,
/// so requests take effect in arrival order even when their responses wait.
pub enum Handled {
    Now(Option<Response>),
    Later(Pending),
}

/// Serves one request frame (without its size prefix). `Now(None)` means no response is due
/// (acks=0 produce).
pub async fn handle_frame(broker: &Arc<Broker>, session: &Arc<Session>, frame: Bytes) -> Result<Handled, FrameError> {
    if session.expects_raw_token() {
        return sasl::raw_token(broker, session, frame).await.map(|r| Handled::Now(Some(r)));
    }
    let started = Instant::now();
    let (key, version) = match frame.get(..4) {
        Some(h) => (i16::from_be_bytes([h[0], h[1]]), i16::from_be_bytes([h[2], h[3]])),
        None => (-1, -1),
    };
    check_session(session, key)?;
    let header = frame.clone(); // for the client id, after the frame is consumed
    let handled = if key == ApiKey::Produce as i16 {
        handle_produce(broker, session, frame).await
    } else {
        serve_frame(broker, session, frame).await.map(Handled::Now)
    };
    // request_percentage: the time spent serving, as a share of one thread.
    let spent = started.elapsed().as_secs_f64() * 100.0;
    let throttle = broker.security.record_quota(session, client_id_of(&header), quota::REQUEST_PERCENTAGE, spent);
    session.mute_for(throttle);
    let handled = match handled {
        Ok(Handled::Now(Some(Response::Frame(frame)))) if !throttle.is_zero() => {
            Ok(Handled::Now(Some(Response::Frame(with_throttle_time(frame, key, version, throttle)))))
        }
        other => other,
    };
    match handled {
        Ok(Handled::Later(pending)) => {
            let broker = broker.clone();
            Ok(Handled::Later(Box::pin(async move {
                let done = pending.await;
                broker.metrics.request(key, version, started.elapsed(), done.is_err());
                done
            })))
        }
        other => {
            broker.metrics.request(key, version, started.elapsed(), other.is_err());
            other
        }
    }
}

/// The first version of each response whose body starts with `throttle_time_ms`.
const THROTTLE_FIRST_SINCE: &[(ApiKey, i16)] = &[
    (ApiKey::ListOffsets, 2),
    (ApiKey::OffsetForLeaderEpoch, 2),
    (ApiKey::Metadata, 3),
    (ApiKey::OffsetCommit, 3),
    (ApiKey::OffsetFetch, 3),
    (ApiKey::FindCoordinator, 1),
    (ApiKey::JoinGroup, 2),
    (ApiKey::Heartbeat, 1),
    (ApiKey::LeaveGroup, 1),
    (ApiKey::SyncGroup, 1),
    (ApiKey::DescribeGroups, 1),
    (ApiKey::ListGroups, 1),
    (ApiKey::CreateTopics, 2),
    (ApiKey::DeleteTopics, 1),
    (ApiKey::DeleteRecords, 0),
    (ApiKey::InitProducerId, 0),
    (ApiKey::AddPartitionsToTxn, 0),
    (ApiKey::AddOffsetsToTxn, 0),
    (ApiKey::EndTxn, 0),
    (ApiKey::TxnOffsetCommit, 0),
    (ApiKey::DescribeAcls, 0),
    (ApiKey::CreateAcls, 0),
    (ApiKey::DeleteAcls, 0),
    (ApiKey::DescribeConfigs, 0),
    (ApiKey::AlterConfigs, 0),
    (ApiKey::DescribeLogDirs, 0),
    (ApiKey::CreatePartitions, 0),
    (ApiKey::DeleteGroups, 0),
    (ApiKey::IncrementalAlterConfigs, 0),
    (ApiKey::DescribeClientQuotas, 0),
    (ApiKey::AlterClientQuotas, 0),
    (ApiKey::DescribeUserScramCredentials, 0),
    (ApiKey::AlterUserScramCredentials, 0),
    (ApiKey::DescribeCluster, 0),
    (ApiKey::UpdateFeatures, 0),
    (ApiKey::DescribeProducers, 0),
    (ApiKey::DescribeTransactions, 0),
    (ApiKey::ListTransactions, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0),
    (ApiKey::ConsumerGroupDescribe, 0),
    (ApiKey::GetTelemetrySubscriptions, 0),
    (ApiKey::PushTelemetry, 0),
    (ApiKey::ListConfigResources, 0),
    (ApiKey::ElectLeaders, 0),
    (ApiKey::AlterPartitionReassignments, 0),
    (ApiKey::ListPartitionReassignments, 0),
    (ApiKey::UnregisterBroker, 0),
    (ApiKey::DescribeTopicPartitions, 0),
    (ApiKey::ShareGroupHeartbeat, 0),
    (ApiKey::ShareGroupDescribe, 0),
    (ApiKey::ShareFetch, 0),
    (ApiKey::ShareAcknowledge, 0),
    (ApiKey::AddRaftVoter, 0),
    (ApiKey::RemoveRaftVoter, 0),
    (ApiKey::DescribeShareGroupOffsets, 0),
    (ApiKey::AlterShareGroupOffsets, 0),
    (ApiKey::DeleteShareGroupOffsets, 0),
];

/// Reports a request-quota throttle in an encoded response whose body starts with
/// `throttle_time_ms` (keeping a larger one already there); others are left as they are.
fn with_throttle_time(frame: Bytes, key: i16, version: i16, throttle: std::time::Duration) -> Bytes {
    let Ok(api) = ApiKey::try_from(key) else { return frame };
    if !THROTTLE_FIRST_SINCE.iter().any(|(k, since)| *k == api && version >= *since) {
        return frame;
    }
    // size prefix, correlation id, and (flexible headers) an empty tagged-field count
    let at = 4 + 4 + usize::from(api.response_header_version(version) >= 1);
    let Some(current) = frame.get(at..at + 4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]])) else {
        return frame;
    };
    let ms = (throttle.as_millis().min(i32::MAX as u128) as i32).max(current);
    let mut patched = BytesMut::from(&frame[..]);
    patched[at..at + 4].copy_from_slice(&ms.to_be_bytes());
    patched.freeze()
}

/// The client id of a request frame (header v1 and later), without decoding the header.
fn client_id_of(frame: &[u8]) -> &str {
    let Some(len) = frame.get(8..10).map(|b| i16::from_be_bytes([b[0], b[1]])) else { return "" };
    let len = usize::try_from(len).unwrap_or(0);
    frame.get(10..10 + len).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or("")
}

/// How long a client is throttled for the bytes of a produce request or fetch response; the
/// connection is muted for it.
fn throttle(ctx: &RequestContext, key: &'static str, bytes: usize) -> std::time::Duration {
    let client_id = ctx.header.client_id.as_deref().unwrap_or_default();
    let throttle = ctx.broker.security.record_quota(&ctx.session, client_id, key, bytes as f64);
    ctx.session.mute_for(throttle);
    throttle
}

/// Refuses requests the session may not send yet: anything but ApiVersions and the SASL
/// exchange before authentication, and anything but re-authentication once the session's
/// lifetime is over. Kafka closes such connections.
fn check_session(session: &Session, key: i16) -> Result<(), FrameError> {
    let Ok(api) = ApiKey::try_from(key) else { return Ok(()) };
    let sasl = matches!(api, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate);
    if !session.is_authenticated() && !sasl && api != ApiKey::ApiVersions {
        return Err(FrameError::Unauthenticated(api));
    }
    if !sasl && session.expired(Instant::now()) {
        return Err(FrameError::SessionExpired(api));
    }
    Ok(())
}

/// Produce: appended now; answered now, or once its fsync is done.
async fn handle_produce(broker: &Arc<Broker>, session: &Arc<Session>, frame: Bytes) -> Result<Handled, FrameError> {
    let size = frame.len();
    let (ctx, mut body) = parse_header(broker, session, frame)?;
    let req = decode(ApiKey::Produce, ctx.version, &mut body)?;
    let appended = produce::append(&ctx, req).await;
    let appended_waits = appended.waits_for_disk();
    let throttle_ms = throttle(&ctx, quota::PRODUCER_BYTE_RATE, size).as_millis().min(i32::MAX as u128) as i32;
    let finish = async move {
        let resp = appended.complete().await.map(|r| leader_hints::produce(&ctx, r).with_throttle_time_ms(throttle_ms));
        resp.map(|r| respond(&ctx, ApiKey::Produce, &r).map(Response::Frame)).transpose()
    };
    if !appended_waits {
        return finish.await.map(Handled::Now);
    }
    Ok(Handled::Later(Box::pin(finish)))
}

/// An ApiVersions request of a version Weir does not know is answered in version 0 with
/// `UNSUPPORTED_VERSION` and the supported ranges, so the client can pick a version.
fn unsupported_api_versions(frame: &[u8]) -> Result<Option<Response>, FrameError> {
    if frame.len() < 8 || i16::from_be_bytes([frame[0], frame[1]]) != ApiKey::ApiVersions as i16 {
        return Ok(None);
    }
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let Some((min, max)) = supported_range(ApiKey::ApiVersions) else { return Ok(None) };
    if (min..=max).contains(&version) {
        return Ok(None);
    }
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    api_versions::unsupported_version_response(correlation_id).map(|b| Some(Response::Frame(b)))
}

/// Decodes a frame's header and body without serving it (for fuzzing requests whose effects,
/// such as creating topics, are too heavy to run millions of times).
pub fn decode_only(mut frame: Bytes) -> Result<(), FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::TooShort(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let key = ApiKey::try_from(raw_key).map_err(|_| FrameError::UnknownApiKey(raw_key))?;
    let (min, max) = supported_range(key).ok_or(FrameError::UnknownApiKey(raw_key))?;
    if version < min || version > max {
        return Err(FrameError::UnsupportedVersion(key, version));
    }
    let decode_err = |e: anyhow::Error| FrameError::Decode(key, version, e.to_string());
    RequestHeader::decode(&mut frame, key.request_header_version(version)).map_err(decode_err)?;
    match key {
        ApiKey::CreateTopics => {
            decode::<kafka_protocol::messages::CreateTopicsRequest>(key, version, &mut frame).map(drop)
        }
        ApiKey::CreatePartitions => {
            decode::<kafka_protocol::messages::CreatePartitionsRequest>(key, version, &mut frame).map(drop)
        }
        _ => Ok(()),
    }
}

/// Checks the API key and version and decodes the request header.
fn parse_header(
    broker: &Arc<Broker>,
    session: &Arc<Session>,
    mut frame: Bytes,
) -> Result<(RequestContext, Bytes), FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::TooShort(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let key = ApiKey::try_from(raw_key).map_err(|_| FrameError::UnknownApiKey(raw_key))?;
    let Some((min, max)) = supported_range(key) else {
        return Err(FrameError::UnknownApiKey(raw_key));
    };
    if version < min || version > max {
        return Err(FrameError::UnsupportedVersion(key, version));
    }
    let decode_err = |e: anyhow::Error| FrameError::Decode(key, version, e.to_string());
    let header = RequestHeader::decode(&mut frame, key.request_header_version(version)).map_err(decode_err)?;
    let ctx = RequestContext { broker: broker.clone(), header, version, peer: session.peer, session: session.clone() };
    Ok((ctx, frame))
}

/// Serves every request but Produce.
async fn serve_frame(
    broker: &Arc<Broker>,
    session: &Arc<Session>,
    frame: Bytes,
) -> Result<Option<Response>, FrameError> {
    if let Some(resp) = unsupported_api_versions(&frame)? {
        return Ok(Some(resp));
    }
    let (ctx, mut frame) = parse_header(broker, session, frame)?;
    let version = ctx.version;
    let key = ApiKey::try_from(ctx.header.request_api_key).map_err(|_| FrameError::UnknownApiKey(-1))?;
    let body = &mut frame;
    match key {
        ApiKey::Fetch => {
            let req = decode(key, version, body)?;
            let (resp, files) = fetch::handle(&ctx, req).await;
            let resp = leader_hints::fetch(&ctx, resp);
            let quotas = ctx.broker.security.has_quotas();
            let size = if quotas { resp.compute_size(version).unwrap_or(0) } else { 0 };
            let throttled = if quotas { throttle(&ctx, quota::CONSUMER_BYTE_RATE, size) } else { Default::default() };
            if !throttled.is_zero() {
                // Over its quota, the client gets an empty response and the bytes are not
                // counted (Kafka's throttled fetch).
                ctx.broker.security.record_quota(
                    &ctx.session,
                    ctx.header.client_id.as_deref().unwrap_or_default(),
                    quota::CONSUMER_BYTE_RATE,
                    -(size as f64),
                );
                let empty =
                    FetchResponse::default().with_throttle_time_ms(throttled.as_millis().min(i32::MAX as u128) as i32);
                return encode_response(ctx.header.correlation_id, key, version, &empty)
                    .map(|b| Some(Response::Frame(b)));
            }
            response::encode(ctx.header.correlation_id, key, version, &resp, Some(&files)).map(Some)
        }
        ApiKey::ListOffsets => serve(&ctx, key, body, list_offsets::handle).await,
        ApiKey::OffsetForLeaderEpoch => serve(&ctx, key, body, offset_for_leader_epoch::handle).await,
        ApiKey::Metadata => serve(&ctx, key, body, metadata::handle).await,
        ApiKey::ApiVersions => serve(&ctx, key, body, api_versions::handle).await,
        ApiKey::CreateTopics => serve(&ctx, key, body, topics::create_topics).await,
        ApiKey::DeleteTopics => serve(&ctx, key, body, topics::delete_topics).await,
        ApiKey::CreatePartitions => serve(&ctx, key, body, topics::create_partitions).await,
        ApiKey::DeleteRecords => serve(&ctx, key, body, delete_records::handle).await,
        ApiKey::InitProducerId => serve(&ctx, key, body, init_producer_id::handle).await,
        ApiKey::DescribeConfigs => serve(&ctx, key, body, configs::describe).await,
        ApiKey::AlterConfigs => serve(&ctx, key, body, configs::alter).await,
        ApiKey::IncrementalAlterConfigs => serve(&ctx, key, body, configs::incremental_alter).await,
        ApiKey::DescribeCluster => serve(&ctx, key, body, cluster::describe_cluster).await,
        ApiKey::FindCoordinator => serve(&ctx, key, body, groups::find_coordinator).await,
        ApiKey::JoinGroup => serve(&ctx, key, body, groups::join_group).await,
        ApiKey::SyncGroup => serve(&ctx, key, body, groups::sync_group).await,
        ApiKey::Heartbeat => serve(&ctx, key, body, groups::heartbeat).await,
        ApiKey::LeaveGroup => serve(&ctx, key, body, groups::leave_group).await,
        ApiKey::ListGroups => serve(&ctx, key, body, groups::list_groups).await,
        ApiKey::DescribeGroups => serve(&ctx, key, body, groups::describe_groups).await,
        ApiKey::DeleteGroups => serve(&ctx, key, body, groups::delete_groups).await,
        ApiKey::OffsetCommit => serve(&ctx, key, body, offsets::offset_commit).await,
        ApiKey::OffsetFetch => serve(&ctx, key, body, offsets::offset_fetch).await,
        ApiKey::OffsetDelete => serve(&ctx, key, body, offsets::offset_delete).await,
        ApiKey::DescribeProducers => serve(&ctx, key, body, producers::describe_producers).await,
        ApiKey::AddPartitionsToTxn => serve(&ctx, key, body, transactions::add_partitions_to_txn).await,
        ApiKey::AddOffsetsToTxn => serve(&ctx, key, body, transactions::add_offsets_to_txn).await,
        ApiKey::EndTxn => serve(&ctx, key, body, transactions::end_txn).await,
        ApiKey::WriteTxnMarkers => serve(&ctx, key, body, write_txn_markers::handle).await,
        ApiKey::DescribeQuorum => serve(&ctx, key, body, describe_quorum::handle).await,
        ApiKey::UpdateFeatures => serve(&ctx, key, body, update_features::handle).await,
        ApiKey::ElectLeaders => serve(&ctx, key, body, reassignments::elect_leaders).await,
        ApiKey::AlterPartitionReassignments => serve(&ctx, key, body, reassignments::alter_reassignments).await,
        ApiKey::ListPartitionReassignments => serve(&ctx, key, body, reassignments::list_reassignments).await,
        ApiKey::UnregisterBroker => serve(&ctx, key, body, reassignments::unregister_broker).await,
        ApiKey::DescribeTopicPartitions => serve(&ctx, key, body, describe_topic_partitions::handle).await,
        ApiKey::ShareGroupHeartbeat => serve(&ctx, key, body, share_groups::heartbeat).await,
        ApiKey::ShareGroupDescribe => serve(&ctx, key, body, share_groups::describe).await,
        ApiKey::ShareFetch => {
            let req = decode(key, version, body)?;
            let (resp, files) = share_fetch::fetch(&ctx, req).await;
            // acquired records are sent whatever the quota says (they are locked to this
            // member); the connection is muted for the throttle time instead
            let bytes = share_fetch::response_bytes(&resp);
            let throttled = if ctx.broker.security.has_quotas() {
                throttle(&ctx, quota::CONSUMER_BYTE_RATE, bytes)
            } else {
                Default::default()
            };
            let resp = resp.with_throttle_time_ms(throttled.as_millis().min(i32::MAX as u128) as i32);
            response::encode(ctx.header.correlation_id, key, version, &resp, Some(&files)).map(Some)
        }
        ApiKey::ShareAcknowledge => serve(&ctx, key, body, share_fetch::acknowledge_request).await,
        ApiKey::ReadShareGroupState => serve(&ctx, key, body, share_state::read).await,
        ApiKey::WriteShareGroupState => serve(&ctx, key, body, share_state::write).await,
        ApiKey::DeleteShareGroupState => serve(&ctx, key, body, share_state::delete).await,
        ApiKey::DescribeShareGroupOffsets => serve(&ctx, key, body, share_offsets::describe).await,
        ApiKey::AlterShareGroupOffsets => serve(&ctx, key, body, share_offsets::alter).await,
        ApiKey::DeleteShareGroupOffsets => serve(&ctx, key, body, share_offsets::delete).await,
        ApiKey::AddRaftVoter => serve(&ctx, key, body, raft_voters::add).await,
        ApiKey::RemoveRaftVoter => serve(&ctx, key, body, raft_voters::remove).await,
        ApiKey::TxnOffsetCommit => serve(&ctx, key, body, transactions::txn_offset_commit).await,
        ApiKey::DescribeTransactions => serve(&ctx, key, body, transactions::describe_transactions).await,
        ApiKey::ListTransactions => serve(&ctx, key, body, transactions::list_transactions).await,
        ApiKey::ConsumerGroupHeartbeat => serve(&ctx, key, body, consumer_groups::heartbeat).await,
        ApiKey::ConsumerGroupDescribe => serve(&ctx, key, body, consumer_groups::describe).await,
        ApiKey::GetTelemetrySubscriptions => serve(&ctx, key, body, telemetry::get_subscriptions).await,
        ApiKey::PushTelemetry => serve(&ctx, key, body, telemetry::push).await,
        ApiKey::ListConfigResources => serve(&ctx, key, body, telemetry::list_config_resources).await,
        ApiKey::DescribeLogDirs => serve(&ctx, key, body, cluster::describe_log_dirs).await,
        ApiKey::SaslHandshake => serve(&ctx, key, body, sasl::handshake).await,
        ApiKey::SaslAuthenticate => serve(&ctx, key, body, sasl::authenticate).await,
        ApiKey::CreateAcls => serve(&ctx, key, body, acls::create_acls).await,
        ApiKey::DescribeAcls => serve(&ctx, key, body, acls::describe_acls).await,
        ApiKey::DeleteAcls => serve(&ctx, key, body, acls::delete_acls).await,
        ApiKey::DescribeClientQuotas => serve(&ctx, key, body, quotas::describe).await,
        ApiKey::AlterClientQuotas => serve(&ctx, key, body, quotas::alter).await,
        ApiKey::DescribeUserScramCredentials => serve(&ctx, key, body, scram_credentials::describe).await,
        ApiKey::AlterUserScramCredentials => serve(&ctx, key, body, scram_credentials::alter).await,
        other => Err(FrameError::UnknownApiKey(other as i16)),
    }
}

fn decode<Req: Decodable>(key: ApiKey, version: i16, body: &mut Bytes) -> Result<Req, FrameError> {
    Req::decode(body, version).map_err(|e| FrameError::Decode(key, version, e.to_string()))
}

/// Decodes the body, runs the handler and encodes its response.
async fn serve<'a, Req, Resp, F, Fut>(
    ctx: &'a RequestContext,
    key: ApiKey,
    body: &mut Bytes,
    handler: F,
) -> Result<Option<Response>, FrameError>
where
    Req: Decodable,
    Resp: Encodable + HeaderVersion,
    F: FnOnce(&'a RequestContext, Req) -> Fut,
    Fut: Future<Output = Resp> + 'a,
{
    let req = decode(key, ctx.version, body)?;
    let resp = handler(ctx, req).await;
    respond(ctx, key, &resp).map(|b| Some(Response::Frame(b)))
}

/// Frames a response: size, response header (correlation id), body.
pub fn respond<Resp: Encodable + HeaderVersion>(
    ctx: &RequestContext,
    key: ApiKey,
    resp: &Resp,
) -> Result<Bytes, FrameError> {
    encode_response(ctx.header.correlation_id, key, ctx.version, resp)
}

pub fn encode_response<Resp: Encodable + HeaderVersion>(
    correlation_id: i32,
    key: ApiKey,
    version: i16,
    resp: &Resp,
) -> Result<Bytes, FrameError> {
    let err = |e: anyhow::Error| FrameError::Encode(key, version, e.to_string());
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = Resp::header_version(version);
    let size = header.compute_size(header_version).map_err(err)? + resp.compute_size(version).map_err(err)?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.extend_from_slice(&(size as i32).to_be_bytes());
    header.encode(&mut buf, header_version).map_err(err)?;
    resp.encode(&mut buf, version).map_err(err)?;
    Ok(buf.freeze())
}

pub use crate::replica::read::check_leader_epoch;

/// An owned `StrBytes` from a string.
pub fn str_bytes(s: impl Into<String>) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Message, VersionRange};

    /// The versions kafka-protocol's own request codec handles (its `ApiKey` table can be
    /// wider than the codec, as for InitProducerId v6).
    fn codec_range(key: ApiKey) -> VersionRange {
        match key {
            ApiKey::Produce => ProduceRequest::VERSIONS,
            ApiKey::Fetch => FetchRequest::VERSIONS,
            ApiKey::ListOffsets => ListOffsetsRequest::VERSIONS,
            ApiKey::OffsetForLeaderEpoch => OffsetForLeaderEpochRequest::VERSIONS,
            ApiKey::Metadata => MetadataRequest::VERSIONS,
            ApiKey::OffsetCommit => OffsetCommitRequest::VERSIONS,
            ApiKey::OffsetFetch => OffsetFetchRequest::VERSIONS,
            ApiKey::FindCoordinator => FindCoordinatorRequest::VERSIONS,
            ApiKey::JoinGroup => JoinGroupRequest::VERSIONS,
            ApiKey::Heartbeat => HeartbeatRequest::VERSIONS,
            ApiKey::LeaveGroup => LeaveGroupRequest::VERSIONS,
            ApiKey::SyncGroup => SyncGroupRequest::VERSIONS,
            ApiKey::DescribeGroups => DescribeGroupsRequest::VERSIONS,
            ApiKey::ListGroups => ListGroupsRequest::VERSIONS,
            ApiKey::ApiVersions => ApiVersionsRequest::VERSIONS,
            ApiKey::CreateTopics => CreateTopicsRequest::VERSIONS,
            ApiKey::DeleteTopics => DeleteTopicsRequest::VERSIONS,
            ApiKey::DeleteRecords => DeleteRecordsRequest::VERSIONS,
            ApiKey::InitProducerId => InitProducerIdRequest::VERSIONS,
            ApiKey::DescribeConfigs => DescribeConfigsRequest::VERSIONS,
            ApiKey::AlterConfigs => AlterConfigsRequest::VERSIONS,
            ApiKey::DescribeLogDirs => DescribeLogDirsRequest::VERSIONS,
            ApiKey::CreatePartitions => CreatePartitionsRequest::VERSIONS,
            ApiKey::DeleteGroups => DeleteGroupsRequest::VERSIONS,
            ApiKey::IncrementalAlterConfigs => IncrementalAlterConfigsRequest::VERSIONS,
            ApiKey::OffsetDelete => OffsetDeleteRequest::VERSIONS,
            ApiKey::DescribeCluster => DescribeClusterRequest::VERSIONS,
            ApiKey::DescribeProducers => DescribeProducersRequest::VERSIONS,
            ApiKey::ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest::VERSIONS,
            ApiKey::ConsumerGroupDescribe => ConsumerGroupDescribeRequest::VERSIONS,
            ApiKey::GetTelemetrySubscriptions => GetTelemetrySubscriptionsRequest::VERSIONS,
            ApiKey::PushTelemetry => PushTelemetryRequest::VERSIONS,
            ApiKey::ListConfigResources => ListConfigResourcesRequest::VERSIONS,
            ApiKey::AddPartitionsToTxn => AddPartitionsToTxnRequest::VERSIONS,
            ApiKey::AddOffsetsToTxn => AddOffsetsToTxnRequest::VERSIONS,
            ApiKey::EndTxn => EndTxnRequest::VERSIONS,
            ApiKey::WriteTxnMarkers => WriteTxnMarkersRequest::VERSIONS,
            ApiKey::DescribeQuorum => DescribeQuorumRequest::VERSIONS,
            ApiKey::UpdateFeatures => UpdateFeaturesRequest::VERSIONS,
            ApiKey::ElectLeaders => ElectLeadersRequest::VERSIONS,
            ApiKey::AlterPartitionReassignments => AlterPartitionReassignmentsRequest::VERSIONS,
            ApiKey::ListPartitionReassignments => ListPartitionReassignmentsRequest::VERSIONS,
            ApiKey::UnregisterBroker => UnregisterBrokerRequest::VERSIONS,
            ApiKey::DescribeTopicPartitions => DescribeTopicPartitionsRequest::VERSIONS,
            ApiKey::AddRaftVoter => AddRaftVoterRequest::VERSIONS,
            ApiKey::RemoveRaftVoter => RemoveRaftVoterRequest::VERSIONS,
            ApiKey::ShareGroupHeartbeat => ShareGroupHeartbeatRequest::VERSIONS,
            ApiKey::ShareGroupDescribe => ShareGroupDescribeRequest::VERSIONS,
            ApiKey::ShareFetch => ShareFetchRequest::VERSIONS,
            ApiKey::ShareAcknowledge => ShareAcknowledgeRequest::VERSIONS,
            ApiKey::ReadShareGroupState => ReadShareGroupStateRequest::VERSIONS,
            ApiKey::WriteShareGroupState => WriteShareGroupStateRequest::VERSIONS,
            ApiKey::DeleteShareGroupState => DeleteShareGroupStateRequest::VERSIONS,
            ApiKey::DescribeShareGroupOffsets => DescribeShareGroupOffsetsRequest::VERSIONS,
            ApiKey::AlterShareGroupOffsets => AlterShareGroupOffsetsRequest::VERSIONS,
            ApiKey::DeleteShareGroupOffsets => DeleteShareGroupOffsetsRequest::VERSIONS,
            ApiKey::TxnOffsetCommit => TxnOffsetCommitRequest::VERSIONS,
            ApiKey::DescribeTransactions => DescribeTransactionsRequest::VERSIONS,
            ApiKey::ListTransactions => ListTransactionsRequest::VERSIONS,
            ApiKey::SaslHandshake => SaslHandshakeRequest::VERSIONS,
            ApiKey::SaslAuthenticate => SaslAuthenticateRequest::VERSIONS,
            ApiKey::CreateAcls => CreateAclsRequest::VERSIONS,
            ApiKey::DescribeAcls => DescribeAclsRequest::VERSIONS,
            ApiKey::DeleteAcls => DeleteAclsRequest::VERSIONS,
            ApiKey::DescribeClientQuotas => DescribeClientQuotasRequest::VERSIONS,
            ApiKey::AlterClientQuotas => AlterClientQuotasRequest::VERSIONS,
            ApiKey::DescribeUserScramCredentials => DescribeUserScramCredentialsRequest::VERSIONS,
            ApiKey::AlterUserScramCredentials => AlterUserScramCredentialsRequest::VERSIONS,
            other => panic!("add {other:?} to codec_range"),
        }
    }

    /// The table of responses that start with `throttle_time_ms` is right for every version
    /// Weir serves: a patched response decodes with the patched value.
    #[test]
    fn throttle_time_is_patched_where_it_is() {
        macro_rules! check {
            ($key:expr, $resp:ty) => {{
                let (key, since): (ApiKey, i16) = $key;
                let (min, max) = supported_range(key).unwrap();
                for v in since.max(min)..=max {
                    let encoded = encode_response(7, key, v, &<$resp>::default().with_throttle_time_ms(3)).unwrap();
                    let patched = with_throttle_time(encoded, key as i16, v, std::time::Duration::from_millis(1234));
                    let mut body = patched.slice(4..);
                    ResponseHeader::decode(&mut body, <$resp>::header_version(v)).unwrap();
                    let decoded = <$resp>::decode(&mut body, v).unwrap();
                    assert_eq!(decoded.throttle_time_ms, 1234, "{key:?} v{v}");
                }
            }};
        }
        for entry in THROTTLE_FIRST_SINCE {
            match entry.0 {
                ApiKey::ListOffsets => check!(*entry, ListOffsetsResponse),
                ApiKey::OffsetForLeaderEpoch => check!(*entry, OffsetForLeaderEpochResponse),
                ApiKey::Metadata => check!(*entry, MetadataResponse),
                ApiKey::OffsetCommit => check!(*entry, OffsetCommitResponse),
                ApiKey::OffsetFetch => check!(*entry, OffsetFetchResponse),
                ApiKey::FindCoordinator => check!(*entry, FindCoordinatorResponse),
                ApiKey::JoinGroup => check!(*entry, JoinGroupResponse),
                ApiKey::Heartbeat => check!(*entry, HeartbeatResponse),
                ApiKey::LeaveGroup => check!(*entry, LeaveGroupResponse),
                ApiKey::SyncGroup => check!(*entry, SyncGroupResponse),
                ApiKey::DescribeGroups => check!(*entry, DescribeGroupsResponse),
                ApiKey::ListGroups => check!(*entry, ListGroupsResponse),
                ApiKey::CreateTopics => check!(*entry, CreateTopicsResponse),
                ApiKey::DeleteTopics => check!(*entry, DeleteTopicsResponse),
                ApiKey::DeleteRecords => check!(*entry, DeleteRecordsResponse),
                ApiKey::InitProducerId => check!(*entry, InitProducerIdResponse),
                ApiKey::AddPartitionsToTxn => check!(*entry, AddPartitionsToTxnResponse),
                ApiKey::AddOffsetsToTxn => check!(*entry, AddOffsetsToTxnResponse),
                ApiKey::EndTxn => check!(*entry, EndTxnResponse),
                ApiKey::TxnOffsetCommit => check!(*entry, TxnOffsetCommitResponse),
                ApiKey::DescribeAcls => check!(*entry, DescribeAclsResponse),
                ApiKey::CreateAcls => check!(*entry, CreateAclsResponse),
                ApiKey::DeleteAcls => check!(*entry, DeleteAclsResponse),
                ApiKey::DescribeConfigs => check!(*entry, DescribeConfigsResponse),
                ApiKey::AlterConfigs => check!(*entry, AlterConfigsResponse),
                ApiKey::DescribeLogDirs => check!(*entry, DescribeLogDirsResponse),
                ApiKey::CreatePartitions => check!(*entry, CreatePartitionsResponse),
                ApiKey::DeleteGroups => check!(*entry, DeleteGroupsResponse),
                ApiKey::IncrementalAlterConfigs => check!(*entry, IncrementalAlterConfigsResponse),
                ApiKey::DescribeClientQuotas => check!(*entry, DescribeClientQuotasResponse),
                ApiKey::AlterClientQuotas => check!(*entry, AlterClientQuotasResponse),
                ApiKey::DescribeUserScramCredentials => check!(*entry, DescribeUserScramCredentialsResponse),
                ApiKey::AlterUserScramCredentials => check!(*entry, AlterUserScramCredentialsResponse),
                ApiKey::DescribeCluster => check!(*entry, DescribeClusterResponse),
                ApiKey::UpdateFeatures => check!(*entry, UpdateFeaturesResponse),
                ApiKey::DescribeProducers => check!(*entry, DescribeProducersResponse),
                ApiKey::DescribeTransactions => check!(*entry, DescribeTransactionsResponse),
                ApiKey::ListTransactions => check!(*entry, ListTransactionsResponse),
                ApiKey::ConsumerGroupHeartbeat => check!(*entry, ConsumerGroupHeartbeatResponse),
                ApiKey::ConsumerGroupDescribe => check!(*entry, ConsumerGroupDescribeResponse),
                ApiKey::GetTelemetrySubscriptions => check!(*entry, GetTelemetrySubscriptionsResponse),
                ApiKey::PushTelemetry => check!(*entry, PushTelemetryResponse),
                ApiKey::ListConfigResources => check!(*entry, ListConfigResourcesResponse),
                ApiKey::ElectLeaders => check!(*entry, ElectLeadersResponse),
                ApiKey::AlterPartitionReassignments => check!(*entry, AlterPartitionReassignmentsResponse),
                ApiKey::ListPartitionReassignments => check!(*entry, ListPartitionReassignmentsResponse),
                ApiKey::UnregisterBroker => check!(*entry, UnregisterBrokerResponse),
                ApiKey::DescribeTopicPartitions => check!(*entry, DescribeTopicPartitionsResponse),
                ApiKey::AddRaftVoter => check!(*entry, AddRaftVoterResponse),
                ApiKey::RemoveRaftVoter => check!(*entry, RemoveRaftVoterResponse),
                ApiKey::ShareGroupHeartbeat => check!(*entry, ShareGroupHeartbeatResponse),
                ApiKey::ShareGroupDescribe => check!(*entry, ShareGroupDescribeResponse),
                ApiKey::ShareFetch => check!(*entry, ShareFetchResponse),
                ApiKey::ShareAcknowledge => check!(*entry, ShareAcknowledgeResponse),
                ApiKey::DescribeShareGroupOffsets => check!(*entry, DescribeShareGroupOffsetsResponse),
                ApiKey::AlterShareGroupOffsets => check!(*entry, AlterShareGroupOffsetsResponse),
                ApiKey::DeleteShareGroupOffsets => check!(*entry, DeleteShareGroupOffsetsResponse),
                other => panic!("add {other:?} to the test"),
            }
        }
    }

    #[test]
    fn advertised_versions_fit_the_codecs() {
        for (key, min, max) in SUPPORTED_APIS {
            let codec = codec_range(*key);
            assert!(codec.min <= *min && *max <= codec.max, "{key:?} {min}-{max} vs codec {codec}");
        }
    }
}
