//! Fetch: decodes, authorizes and encodes; the reading — long-polls, byte limits, follower
//! progress — is the replica manager's (`crate::replica::read`).
//!
//! Fetch sessions (KIP-227): followers get incremental sessions (`crate::replica::fetch_sessions`);
//! consumers are answered with session id 0, which Kafka itself does when its session cache is
//! full, so they keep sending full fetches.

use std::sync::Arc;

use kafka_protocol::messages::fetch_response::FetchableTopicResponse;
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use kafka_protocol::ResponseError;
use tokio::sync::Notify;

use super::response::FileRecords;
use super::RequestContext;
use crate::broker::Topic;
use crate::log::segment::Slice;
use crate::replica::read::{FetchParams, FetchTarget, RecordSink};
use crate::security::acl::{op, resource};

impl RecordSink for FileRecords {
    fn records_for(&mut self, slice: Slice) -> std::io::Result<bytes::Bytes> {
        FileRecords::records_for(self, slice)
    }
}

/// Answers a fetch; the returned [`FileRecords`] hold the file ranges whose stand-ins are in
/// the response (sent with `sendfile`).
pub async fn handle(ctx: &RequestContext, mut req: FetchRequest) -> (FetchResponse, FileRecords) {
    let broker = &ctx.broker;
    let replica = if ctx.version >= 15 { req.replica_state.replica_id.0 } else { req.replica_id.0 };
    let mut session = match broker.fetch_sessions.resolve(&mut req, replica, ctx.version) {
        Ok(session) => session,
        Err(code) => return (FetchResponse::default().with_error_code(code.code()), FileRecords::default()),
    };
    let mut topics = Vec::with_capacity(session.topics.len());
    let mut wanted = Vec::new();
    // the response topic of each wanted partition
    let mut topic_of = Vec::new();
    for (ti, ft) in std::mem::take(&mut session.topics).into_iter().enumerate() {
        let (topic, unknown): (Option<Arc<Topic>>, _) = if ctx.version >= 13 {
            (broker.topic_by_id(&ft.topic_id), ResponseError::UnknownTopicId)
        } else {
            (broker.topic(ft.topic.0.as_str()), ResponseError::UnknownTopicOrPartition)
        };
        let name = topic.as_ref().map_or(ft.topic.0.as_str(), |t| t.name.as_str());
        let denied = if replica >= 0 {
            !ctx.cluster_authorized(op::CLUSTER_ACTION)
        } else {
            !ctx.authorized(op::READ, resource::TOPIC, name)
        };
        for p in ft.partitions {
            let local = topic.as_ref().filter(|_| !denied).map(|t| {
                // consumers may read from a follower from v11 on (KIP-392)
                if replica < 0 && ctx.version >= 11 { t.readable(p.partition) } else { t.local(p.partition) }.cloned()
            });
            let error = match &local {
                _ if denied => ResponseError::TopicAuthorizationFailed,
                None => unknown,
                Some(Err(code)) => *code,
                Some(Ok(_)) => ResponseError::UnknownServerError, // unused when the partition is here
            };
            let partition = local.and_then(Result::ok);
            wanted.push(FetchTarget { replica, topic: topic.clone(), partition, error, req: p });
            topic_of.push(ti);
        }
        topics.push(FetchableTopicResponse::default().with_topic(ft.topic).with_topic_id(ft.topic_id));
    }
    let params = FetchParams {
        max_wait_ms: req.max_wait_ms,
        min_bytes: req.min_bytes,
        max_bytes: req.max_bytes,
        isolation_level: req.isolation_level,
        client_rack: (replica < 0 && ctx.version >= 11).then_some(req.rack_id.as_str()),
    };
    let wake = session.wake.clone().unwrap_or_else(|| Arc::new(Notify::new()));
    let (parts, files) = crate::replica::read::fetch::<FileRecords>(broker, &wanted, &params, wake).await;
    for ((w, ti), pd) in wanted.iter().zip(topic_of).zip(parts) {
        if let (Some(t), Some(records)) = (&w.topic, &pd.records) {
            t.traffic.bytes_out.fetch_add(records.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        topics[ti].partitions.push(pd);
    }
    broker.fetch_sessions.answered(&session, &mut topics);
    (FetchResponse::default().with_session_id(session.session_id).with_responses(topics), files)
}
