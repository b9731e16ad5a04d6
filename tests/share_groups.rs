//! Share groups (KIP-932) at the protocol level: ShareGroupHeartbeat, ShareGroupDescribe,
//! ShareFetch and ShareAcknowledge requests built by kafka-protocol (rdkafka 0.39's
//! librdkafka predates share consumers; confluent-kafka's ShareConsumer runs in `.ci/run`),
//! their error codes, share sessions, the record state machine, and `__share_group_state`
//! replay after a restart.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::*;
use kafka_protocol::messages::share_acknowledge_request::{AcknowledgePartition, AcknowledgeTopic};
use kafka_protocol::messages::share_fetch_request::{AcknowledgementBatch, FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use rdkafka::producer::FutureRecord;
use uuid::Uuid;

const ACCEPT: i8 = 1;
const RELEASE: i8 = 2;
const REJECT: i8 = 3;
const RENEW: i8 = 4;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A share consumer speaking the protocol by hand: its own connection (share sessions belong
/// to it), group, member id and session epoch.
struct Member {
    conn: TcpStream,
    /// The group coordinator's connection, when it is not the partition leader's.
    coordinator: Option<TcpStream>,
    group: String,
    id: String,
    epoch: i32,
    session_epoch: i32,
    /// The ShareFetch / ShareAcknowledge version it speaks, and its fetches' acquire mode
    /// and record limit.
    version: i16,
    acquire_mode: i8,
    max_records: i32,
}

impl Member {
    fn new(bootstrap: &str, group: &str, id: &str) -> Member {
        Member {
            conn: raw::connect(bootstrap),
            coordinator: None,
            group: group.into(),
            id: id.into(),
            epoch: 0,
            session_epoch: 0,
            version: 1,
            acquire_mode: 0,
            max_records: 500,
        }
    }

    /// A member whose heartbeats go to `coordinator` and whose fetches go to `leader`.
    fn split(coordinator: &str, leader: &str, group: &str, id: &str) -> Member {
        Member { coordinator: Some(raw::connect(coordinator)), ..Member::new(leader, group, id) }
    }

    fn heartbeat_with(&mut self, epoch: i32, topics: Option<&[&str]>) -> ShareGroupHeartbeatResponse {
        let req = ShareGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_member_id(s(&self.id))
            .with_member_epoch(epoch)
            .with_subscribed_topic_names(topics.map(|t| t.iter().map(|n| TopicName(s(n))).collect()));
        let conn = self.coordinator.as_mut().unwrap_or(&mut self.conn);
        raw::roundtrip(conn, ApiKey::ShareGroupHeartbeat, 1, &req).expect("heartbeat answered")
    }

    /// Joins (epoch 0) subscribed to `topics`; returns the assignment.
    fn join(&mut self, topics: &[&str]) -> Vec<(Uuid, Vec<i32>)> {
        let r = self.heartbeat_with(0, Some(topics));
        assert_eq!(r.error_code, 0, "{:?}", r.error_message);
        self.epoch = r.member_epoch;
        r.assignment.unwrap().topic_partitions.into_iter().map(|t| (t.topic_id, t.partitions)).collect()
    }

    fn fetch_request(&self, topic: Uuid, acks: Vec<AcknowledgementBatch>) -> ShareFetchRequest {
        ShareFetchRequest::default()
            .with_group_id(Some(GroupId(s(&self.group))))
            .with_member_id(Some(s(&self.id)))
            .with_share_session_epoch(self.session_epoch)
            .with_max_wait_ms(200)
            .with_max_bytes(1 << 20)
            .with_max_records(self.max_records)
            .with_batch_size(self.max_records)
            .with_share_acquire_mode(self.acquire_mode)
            .with_topics(vec![FetchTopic::default().with_topic_id(topic).with_partitions(vec![
                FetchPartition::default().with_partition_index(0).with_acknowledgement_batches(acks),
            ])])
    }

    /// A ShareFetch of partition 0 of `topic` carrying `acks`; moves the session epoch on.
    fn fetch(&mut self, topic: Uuid, acks: Vec<AcknowledgementBatch>) -> ShareFetchResponse {
        let req = self.fetch_request(topic, acks);
        self.send_fetch(&req)
    }

    fn send_fetch(&mut self, req: &ShareFetchRequest) -> ShareFetchResponse {
        let r: ShareFetchResponse =
            raw::roundtrip(&mut self.conn, ApiKey::ShareFetch, self.version, req).expect("fetch answered");
        if r.error_code == 0 {
            self.session_epoch += 1;
        }
        r
    }

    fn acknowledge(&mut self, topic: Uuid, acks: Vec<AcknowledgementBatch>) -> ShareAcknowledgeResponse {
        let renew = self.version >= 2 && acks.iter().any(|b| b.acknowledge_types.contains(&RENEW));
        let req = ShareAcknowledgeRequest::default()
            .with_group_id(Some(GroupId(s(&self.group))))
            .with_member_id(Some(s(&self.id)))
            .with_share_session_epoch(self.session_epoch)
            .with_is_renew_ack(renew)
            .with_topics(vec![AcknowledgeTopic::default().with_topic_id(topic).with_partitions(vec![
                AcknowledgePartition::default().with_partition_index(0).with_acknowledgement_batches(
                    acks.into_iter()
                        .map(|b| {
                            share_acknowledge_request::AcknowledgementBatch::default()
                                .with_first_offset(b.first_offset)
                                .with_last_offset(b.last_offset)
                                .with_acknowledge_types(b.acknowledge_types)
                        })
                        .collect(),
                ),
            ])]);
        let r: ShareAcknowledgeResponse =
            raw::roundtrip(&mut self.conn, ApiKey::ShareAcknowledge, self.version, &req).expect("acknowledge answered");
        if r.error_code == 0 {
            self.session_epoch += 1;
        }
        r
    }
}

/// Kafka's text form of a topic id (URL-safe base64, no padding).
fn base64_url(id: Uuid) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes())
}

fn ack(first: i64, last: i64, types: &[i8]) -> AcknowledgementBatch {
    AcknowledgementBatch::default()
        .with_first_offset(first)
        .with_last_offset(last)
        .with_acknowledge_types(types.to_vec())
}

/// Acquired (first, last, delivery count) ranges of partition 0, empty when none.
fn acquired(r: &ShareFetchResponse) -> Vec<(i64, i64, i16)> {
    r.responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .flat_map(|p| p.acquired_records.iter().map(|a| (a.first_offset, a.last_offset, a.delivery_count)))
        .collect()
}

/// What the member's fetches acquire first (fetching for up to about 2 s).
fn first_acquired(m: &mut Member, topic: Uuid) -> Vec<(i64, i64, i16)> {
    for _ in 0..20 {
        let got = acquired(&m.fetch(topic, vec![]));
        if !got.is_empty() {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Vec::new()
}

fn partition_codes(r: &ShareFetchResponse) -> Vec<(i16, i16)> {
    r.responses.iter().flat_map(|t| t.partitions.iter()).map(|p| (p.error_code, p.acknowledge_error_code)).collect()
}

async fn produce_n(bootstrap: &str, topic: &str, n: usize) {
    let p = producer(bootstrap, &[("linger.ms", "0")]);
    for i in 0..n {
        let v = format!("v{i}");
        p.send(FutureRecord::<(), _>::to(topic).partition(0).payload(&v), Duration::from_secs(10)).await.unwrap();
    }
}

fn topic_id(broker: &TestBroker, topic: &str) -> Uuid {
    broker.running.as_ref().unwrap().broker.topic(topic).unwrap().id
}

/// A member of `group` that joined subscribed to `topic` and opened its share session on
/// partition 0 (before anything is produced).
async fn fetching_member(b: &str, group: &str, member: &str, topic: &str, id: Uuid) -> Member {
    let (b, group, member, topic) = (b.to_string(), group.to_string(), member.to_string(), topic.to_string());
    blocking(move || {
        let mut m = Member::new(&b, &group, &member);
        m.join(&[&topic]);
        assert_eq!(m.fetch(id, vec![]).error_code, 0, "share session opened");
        m
    })
    .await
}

/// Runs blocking raw-protocol work off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn heartbeat_errors_assignment_and_describe() {
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("share-hb");
    create_topic(&broker.bootstrap, &topic, 3, &[]).await;
    let id = topic_id(&broker, &topic);
    let b = broker.bootstrap.clone();
    blocking(move || {
        let mut a = Member::new(&b, "sg-hb", "member-a");
        let no_topics = a.heartbeat_with(0, None);
        assert_eq!(no_topics.error_code, ResponseError::InvalidRequest.code());
        let mut nameless = Member::new(&b, "sg-hb", "");
        assert_eq!(nameless.heartbeat_with(0, Some(&[&topic])).error_code, ResponseError::InvalidRequest.code());
        assert_eq!(a.heartbeat_with(3, Some(&[&topic])).error_code, ResponseError::UnknownMemberId.code());
        assert_eq!(a.join(&[&topic]), vec![(id, vec![0, 1, 2])]);
        let mut m = Member::new(&b, "sg-hb", "member-b");
        let assigned = m.join(&[&topic]);
        assert_eq!(assigned[0].1.len(), 1, "two members split three partitions: {assigned:?}");
        assert_eq!(a.heartbeat_with(a.epoch + 5, None).error_code, ResponseError::FencedMemberEpoch.code());
        let again = a.heartbeat_with(a.epoch, None);
        assert_eq!(again.error_code, 0);
        let mine = again.assignment.expect("a's assignment changed").topic_partitions;
        assert_eq!(mine[0].partitions.len(), 2);

        let describe = ShareGroupDescribeRequest::default()
            .with_group_ids(vec![GroupId(s("sg-hb")), GroupId(s("sg-missing"))])
            .with_include_authorized_operations(true);
        let r: ShareGroupDescribeResponse = raw::call(&b, ApiKey::ShareGroupDescribe, 1, &describe);
        let g = &r.groups[0];
        assert_eq!((g.error_code, g.group_state.as_str(), g.assignor_name.as_str()), (0, "Stable", "simple"));
        assert_eq!(g.members.len(), 2);
        assert!(g.members.iter().all(|m| m.assignment.topic_partitions[0].topic_name.0.as_str() == topic));
        assert_eq!(r.groups[1].error_code, ResponseError::GroupIdNotFound.code());

        let list = ListGroupsRequest::default().with_types_filter(vec![s("share")]);
        let l: ListGroupsResponse = raw::call(&b, ApiKey::ListGroups, 5, &list);
        let listed: Vec<_> =
            l.groups.iter().map(|g| (g.group_id.0.as_str(), g.group_type.as_str(), g.group_state.as_str())).collect();
        assert_eq!(listed, vec![("sg-hb", "share", "Stable")]);

        // DescribeGroups describes classic groups only
        let classic = DescribeGroupsRequest::default().with_groups(vec![GroupId(s("sg-hb"))]);
        let dg: DescribeGroupsResponse = raw::call(&b, ApiKey::DescribeGroups, 6, &classic);
        assert_eq!(dg.groups[0].error_code, ResponseError::GroupIdNotFound.code());
        // the share-state coordinator of a share-partition (key type 2, FindCoordinator v6)
        let key = format!("sg-hb:{}:0", base64_url(id));
        let find = FindCoordinatorRequest::default().with_key_type(2).with_coordinator_keys(vec![s(&key)]);
        let f: FindCoordinatorResponse = raw::call(&b, ApiKey::FindCoordinator, 6, &find);
        assert_eq!((f.coordinators[0].error_code, f.coordinators[0].node_id.0), (0, 1));
        let f: FindCoordinatorResponse = raw::call(&b, ApiKey::FindCoordinator, 5, &find);
        assert_eq!(f.coordinators[0].error_code, ResponseError::InvalidRequest.code());

        // a share group's id is not a consumer group's
        let consumer = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("sg-hb")))
            .with_member_id(s("c"))
            .with_rebalance_timeout_ms(1000)
            .with_subscribed_topic_names(Some(vec![TopicName(s(&topic))]));
        let c: ConsumerGroupHeartbeatResponse = raw::call(&b, ApiKey::ConsumerGroupHeartbeat, 1, &consumer);
        assert_eq!(c.error_code, ResponseError::GroupIdNotFound.code());

        // members leave; the empty group can be deleted
        assert_eq!(a.heartbeat_with(-1, None).member_epoch, -1);
        assert_eq!(m.heartbeat_with(-1, None).member_epoch, -1);
        let del = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("sg-hb"))]);
        let d: DeleteGroupsResponse = raw::call(&b, ApiKey::DeleteGroups, 2, &del);
        assert_eq!(d.results[0].error_code, 0);
        let l: ListGroupsResponse = raw::call(&b, ApiKey::ListGroups, 5, &list);
        assert!(l.groups.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn share_sessions_and_their_errors() {
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("share-sessions");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    let id = topic_id(&broker, &topic);
    let b = broker.bootstrap.clone();
    blocking(move || {
        let mut m = Member::new(&b, "sg-sessions", "member-s");
        m.join(&[&topic]);
        m.session_epoch = 1;
        assert_eq!(m.fetch(id, vec![]).error_code, ResponseError::ShareSessionNotFound.code());
        m.session_epoch = 0;
        let opening_with_acks = m.fetch(id, vec![ack(0, 0, &[ACCEPT])]);
        assert_eq!(opening_with_acks.error_code, ResponseError::InvalidRequest.code());
        let opened = m.fetch(id, vec![]);
        assert_eq!(opened.error_code, 0);
        assert_eq!(opened.acquisition_lock_timeout_ms, 30_000);
        m.session_epoch = 5;
        assert_eq!(m.fetch(id, vec![]).error_code, ResponseError::InvalidShareSessionEpoch.code());
        m.session_epoch = 1;
        assert_eq!(m.fetch(id, vec![]).error_code, 0);
        // ShareAcknowledge cannot open a session; a wrong epoch is refused
        let mut opener = Member::new(&b, "sg-sessions", "member-t");
        assert_eq!(opener.acknowledge(id, vec![]).error_code, ResponseError::InvalidShareSessionEpoch.code());
        assert_eq!(m.acknowledge(id, vec![]).error_code, 0);
        // an unknown topic id is answered per partition
        let unknown = m.fetch(Uuid::new_v4(), vec![]);
        assert_eq!(unknown.error_code, 0);
        assert!(partition_codes(&unknown).contains(&(ResponseError::UnknownTopicId.code(), 0)));
        // forgetting it, then closing the session (epoch -1)
        let mut forget = m.fetch_request(id, vec![]);
        forget.topics.clear();
        forget.forgotten_topics_data = vec![ForgottenTopic::default().with_topic_id(id).with_partitions(vec![0])];
        let r: ShareFetchResponse = raw::roundtrip(&mut m.conn, ApiKey::ShareFetch, 1, &forget).unwrap();
        assert_eq!(r.error_code, 0);
        m.session_epoch = -1;
        assert_eq!(m.fetch(id, vec![]).error_code, 0);
        m.session_epoch = 4;
        assert_eq!(m.fetch(id, vec![]).error_code, ResponseError::ShareSessionNotFound.code());
        // missing ids
        let anonymous = ShareFetchRequest::default().with_group_id(Some(GroupId(s("sg-sessions"))));
        let r: ShareFetchResponse = raw::call(&b, ApiKey::ShareFetch, 1, &anonymous);
        assert_eq!(r.error_code, ResponseError::InvalidRequest.code());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn record_states_acquire_release_reject_and_limits() {
    let broker =
        TestBroker::start(&[("group.share.delivery.count.limit", "2"), ("metrics.listener", "127.0.0.1:0")]).await;
    let metrics = broker.running.as_ref().unwrap().metrics_addr.expect("metrics listener").to_string();
    let metrics_after = metrics.clone();
    let topic = topic_name("share-states");
    let unloaded = format!("weir_share_partition_start_offset{{group=\"sg-states\",topic=\"{topic}\"");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    let id = topic_id(&broker, &topic);
    let b = broker.bootstrap.clone();
    let (mut a, mut c) = blocking({
        let (b, topic) = (b.clone(), topic.clone());
        move || {
            let mut a = Member::new(&b, "sg-states", "member-a");
            a.join(&[&topic]);
            let mut c = Member::new(&b, "sg-states", "member-c");
            c.join(&[&topic]);
            assert_eq!(a.fetch(id, vec![]).error_code, 0, "session opened before the records exist");
            assert_eq!(c.fetch(id, vec![]).error_code, 0);
            (a, c)
        }
    })
    .await;
    produce_n(&broker.bootstrap, &topic, 10).await;
    blocking(move || {
        let first = a.fetch(id, vec![]);
        assert_eq!(acquired(&first), vec![(0, 9, 1)]);
        let records = first.responses[0].partitions[0].records.clone().unwrap();
        assert!(!records.is_empty());
        assert!(acquired(&c.fetch(id, vec![])).is_empty(), "acquired records are not handed out twice");
        // c may not acknowledge a's records
        let stolen = c.fetch(id, vec![ack(0, 9, &[ACCEPT])]);
        assert_eq!(partition_codes(&stolen), vec![(0, ResponseError::InvalidRecordState.code())]);
        // a: accept 0-3, release 4-6, reject 7, a gap at 8 and a malformed batch
        let r = a.fetch(id, vec![ack(0, 3, &[ACCEPT]), ack(4, 8, &[RELEASE, RELEASE, RELEASE, REJECT, 0])]);
        assert_eq!(partition_codes(&r)[0].1, 0);
        assert_eq!(acquired(&r), vec![(4, 6, 2)], "released records come back, delivered twice");
        let bad = a.acknowledge(id, vec![ack(9, 9, &[ACCEPT, ACCEPT])]);
        assert_eq!(bad.responses[0].partitions[0].error_code, ResponseError::InvalidRequest.code());
        // releasing at the delivery-count limit (2) archives them
        let r = a.fetch(id, vec![ack(4, 6, &[RELEASE]), ack(9, 9, &[ACCEPT])]);
        assert_eq!(partition_codes(&r)[0].1, 0);
        assert!(acquired(&r).is_empty(), "records at the delivery limit were archived");
        assert!(acquired(&c.fetch(id, vec![])).is_empty(), "nothing is left for anyone");
        let body = http_get(&metrics, "/metrics");
        let labels = format!("group=\"sg-states\",topic=\"{topic}\",partition=\"0\"");
        for line in [
            format!("weir_share_partition_start_offset{{{labels}}} 10"),
            format!("weir_share_partition_lag{{{labels}}} 0"),
            format!("weir_share_partition_acquired_records{{{labels}}} 0"),
            "weir_share_group_acknowledgements_total{group=\"sg-states\",type=\"accept\"} 5".to_string(),
            "weir_share_group_acknowledgements_total{group=\"sg-states\",type=\"release\"} 6".to_string(),
            "weir_share_group_acknowledgements_total{group=\"sg-states\",type=\"reject\"} 1".to_string(),
            "weir_share_group_acknowledgements_total{group=\"sg-states\",type=\"gap\"} 1".to_string(),
            "weir_share_group_deliveries_total{group=\"sg-states\",attempt=\"redelivery\"} 3".to_string(),
            "weir_share_group_archived_records_total{group=\"sg-states\",reason=\"delivery_limit\"} 3".to_string(),
            "weir_share_group_archived_records_total{group=\"sg-states\",reason=\"rejected\"} 1".to_string(),
        ] {
            assert!(
                body.contains(&line),
                "metrics lack {line}:\n{}",
                body.lines().filter(|l| l.contains("share")).collect::<Vec<_>>().join("\n")
            );
        }
    })
    .await;
    // both members gone (their connections closed with them): the share-partition is written
    // and unloaded, and the group's counters stay where they were
    let gone = wait_until(Duration::from_secs(10), || !http_get(&metrics_after, "/metrics").contains(&unloaded)).await;
    assert!(gone, "the share-partition was unloaded");
    let body = http_get(&metrics_after, "/metrics");
    assert!(body.contains("weir_share_group_acknowledgements_total{group=\"sg-states\",type=\"accept\"} 5"), "{body}");
}

/// Ten records produced as one batch (a linger long enough for all of them).
async fn produce_one_batch(bootstrap: &str, topic: &str) {
    let p = producer(bootstrap, &[("linger.ms", "200")]);
    let values: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
    // send_result queues at once (an awaited send would wait for each delivery in turn)
    let sends: Vec<_> = values
        .iter()
        .map(|v| p.send_result(FutureRecord::<(), _>::to(topic).partition(0).payload(v)).map_err(|(e, _)| e).unwrap())
        .collect();
    for s in sends {
        s.await.unwrap().unwrap();
    }
}

/// Kafka 4.2's version 2 of ShareFetch and ShareAcknowledge: the record-limit acquire mode
/// (KIP-1206) cuts batches at `max_records`; RENEW (KIP-1222) restarts the lock of records a
/// member holds, through ShareAcknowledge or a ShareFetch that fetches nothing; version 1
/// refuses RENEW.
#[tokio::test(flavor = "multi_thread")]
async fn version_2_record_limit_and_renew() {
    let broker = TestBroker::start(&[
        ("group.share.min.record.lock.duration.ms", "1000"),
        ("group.share.record.lock.duration.ms", "2000"),
    ])
    .await;
    let topic = topic_name("share-v2");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    let id = topic_id(&broker, &topic);
    let mut whole = fetching_member(&broker.bootstrap, "sg-v2-batch", "member-w", &topic, id).await;
    let mut a = fetching_member(&broker.bootstrap, "sg-v2", "member-a", &topic, id).await;
    let mut b = fetching_member(&broker.bootstrap, "sg-v2", "member-b", &topic, id).await;
    produce_one_batch(&broker.bootstrap, &topic).await;
    blocking(move || {
        let invalid = ResponseError::InvalidRequest.code();
        // batch-optimized (v1, and v2's default) takes the whole batch past max_records
        whole.version = 2;
        whole.max_records = 3;
        assert_eq!(acquired(&whole.fetch(id, vec![])), vec![(0, 9, 1)]);
        // record-limit takes exactly max_records, the rest of the batch stays for others
        a.version = 2;
        a.acquire_mode = 1;
        a.max_records = 3;
        let t0 = std::time::Instant::now();
        let first = a.fetch(id, vec![]);
        assert_eq!(acquired(&first), vec![(0, 2, 1)]);
        assert_eq!(first.acquisition_lock_timeout_ms, 2000);
        a.max_records = 4;
        assert_eq!(acquired(&a.fetch(id, vec![])), vec![(3, 6, 1)]);
        a.acquire_mode = 7;
        assert_eq!(a.fetch(id, vec![]).error_code, invalid, "unknown acquire mode");
        a.acquire_mode = 1;
        // RENEW is version 2's: a version 1 acknowledgement carrying it is refused
        a.version = 1;
        let old = a.acknowledge(id, vec![ack(0, 1, &[RENEW])]);
        assert_eq!(old.responses[0].partitions[0].error_code, invalid);
        assert_eq!(old.acquisition_lock_timeout_ms, 0, "not in version 1");
        a.version = 2;
        // a renewing fetch must not ask for records
        let mut greedy = a.fetch_request(id, vec![ack(3, 6, &[RENEW])]).with_is_renew_ack(true);
        assert_eq!(a.send_fetch(&greedy).error_code, invalid);
        greedy = greedy.with_max_wait_ms(0).with_min_bytes(0).with_max_bytes(0).with_max_records(0).with_batch_size(0);
        let renewed = a.send_fetch(&greedy.with_share_session_epoch(a.session_epoch));
        assert_eq!(partition_codes(&renewed), vec![(0, 0)]);
        assert!(acquired(&renewed).is_empty(), "a renewing fetch fetches nothing");
        // renew 0-1 (not 2) well into the lock; 2 expires at 2 s, 0-1 now last until ~3.2 s
        std::thread::sleep(Duration::from_millis(1200).saturating_sub(t0.elapsed()));
        let r = a.acknowledge(id, vec![ack(0, 1, &[RENEW])]);
        assert_eq!(r.responses[0].partitions[0].error_code, 0);
        assert_eq!(r.acquisition_lock_timeout_ms, 2000);
        b.version = 2;
        let theirs = b.acknowledge(id, vec![ack(0, 0, &[RENEW])]);
        assert_eq!(theirs.responses[0].partitions[0].error_code, ResponseError::InvalidRecordState.code());
        std::thread::sleep(Duration::from_millis(2400).saturating_sub(t0.elapsed()));
        b.max_records = 1;
        b.acquire_mode = 1;
        let got = b.fetch(id, vec![]);
        assert_eq!(acquired(&got), vec![(2, 2, 2)], "only the record not renewed came back");
        assert!(t0.elapsed() < Duration::from_millis(3100), "checked before the renewed locks end");
        let done = a.acknowledge(id, vec![ack(0, 1, &[ACCEPT])]);
        assert_eq!(done.responses[0].partitions[0].error_code, 0, "a still held 0-1");
    })
    .await;
}

/// A share-partition's start offset is written when it starts (Kafka's
/// InitializeShareGroupState): records produced after a group subscribed with
/// `share.auto.offset.reset=latest` are delivered after a restart even though nobody fetched
/// them before it.
#[tokio::test(flavor = "multi_thread")]
async fn a_start_offset_nobody_fetched_from_survives_a_restart() {
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("share-start-restart");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    let id = topic_id(&broker, &topic);
    let b = broker.bootstrap.clone();
    let t = topic.clone();
    blocking(move || Member::new(&b, "sg-start-restart", "member-s").join(&[&t])).await;
    produce_n(&broker.bootstrap, &topic, 3).await;
    let broker = broker.restart(&[]).await;
    let b = broker.bootstrap.clone();
    let got = blocking(move || {
        let mut m = Member::new(&b, "sg-start-restart", "member-s2");
        m.join(&[&topic]);
        first_acquired(&mut m, id)
    })
    .await;
    assert_eq!(got, vec![(0, 2, 1)], "the records after the group's start, delivered once");
}

#[tokio::test(flavor = "multi_thread")]
async fn share_state_survives_a_restart() {
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("share-restart");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    let id = topic_id(&broker, &topic);
    let b = broker.bootstrap.clone();
    let m = fetching_member(&b, "sg-restart", "member-r", &topic, id).await;
    produce_n(&broker.bootstrap, &topic, 6).await;
    blocking(move || {
        let mut m = m;
        assert_eq!(acquired(&m.fetch(id, vec![])), vec![(0, 5, 1)]);
        // accept 0-1, release 2, reject 3; 4-5 stay acquired
        let r = m.acknowledge(id, vec![ack(0, 3, &[ACCEPT, ACCEPT, RELEASE, REJECT])]);
        assert_eq!(r.responses[0].partitions[0].error_code, 0);
    })
    .await;
    let broker = broker.restart(&[]).await;
    let b = broker.bootstrap.clone();
    assert_eq!(topic_id(&broker, &topic), id);
    blocking(move || {
        let mut m = Member::new(&b, "sg-restart", "member-r2");
        m.join(&[&topic]);
        let got = first_acquired(&mut m, id);
        // 2 was released (delivered once), 4-5 were acquired when the broker stopped
        // (their delivery counted): each comes back delivered twice; 0, 1 and 3 never
        assert_eq!(got, vec![(2, 2, 2), (4, 5, 2)]);
    })
    .await;
}

/// The end offset of partition 0 of `topic`, polled until it reaches `want` (or 10 s pass).
async fn end_offset_reaching(bootstrap: &str, topic: &str, want: i64) -> i64 {
    let mut end = -1;
    for _ in 0..100 {
        end = raw::end_offset(bootstrap, topic, 0);
        if end >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    end
}

/// The state of a share-partition of three records, all done, whose broker crashed after
/// copying rejected offset 1 to the dead-letter topic but before its state said so, with
/// offset 2 rejected too and not copied yet; the mark from before both copies.
fn crashed_after_the_first_copy() -> weir::share::state::StateSnapshot {
    use weir::share::partition::{ArchiveReason, Archived, RecordState};
    let pending = |offset| Archived { first: offset, last: offset, delivery_count: 1, reason: ArchiveReason::Rejected };
    weir::share::state::StateSnapshot {
        start_offset: 3,
        batches: vec![(0, 2, RecordState::Archived, 1)],
        dead_letters: vec![pending(1), pending(2)],
        dead_letter_mark: 0,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_are_copied_once_even_across_a_crash() {
    use weir::share::SharePartitionKey;

    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("share-dlq");
    let dlq = format!("dlq.{topic}");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    create_topic(&broker.bootstrap, &dlq, 1, &[("errors.deadletterqueue.group.enable", "true")]).await;
    let running = broker.running.as_ref().unwrap().broker.clone();
    let configs = [("errors.deadletterqueue.topic.name".to_string(), dlq.clone())].into();
    running.set_group_configs("sg-dlq", configs, false).await.unwrap();
    let id = topic_id(&broker, &topic);
    let b = broker.bootstrap.clone();
    let m = fetching_member(&b, "sg-dlq", "member-d", &topic, id).await;
    produce_n(&broker.bootstrap, &topic, 3).await;
    blocking(move || {
        let mut m = m;
        assert_eq!(acquired(&m.fetch(id, vec![])), vec![(0, 2, 1)]);
        let r = m.acknowledge(id, vec![ack(0, 2, &[ACCEPT, REJECT, ACCEPT])]);
        assert_eq!(r.responses[0].partitions[0].error_code, 0);
    })
    .await;
    assert_eq!(end_offset_reaching(&broker.bootstrap, &dlq, 1).await, 1, "the rejected record was copied");

    // As if the broker had crashed after writing that copy but before its state said so:
    // offset 1 still pending (copied already) and offset 2 pending too (never copied).
    let key = SharePartitionKey { group: "sg-dlq".into(), topic_id: id, partition: 0 };
    let settled = || running.shares.state.stored(&key).is_some_and(|s| s.dead_letters.is_empty());
    assert!(wait_until(Duration::from_secs(10), settled).await, "the copy is recorded");
    let crashed = crashed_after_the_first_copy();
    running.shares.state.persist(&running, &key, Some(crashed)).await.unwrap();
    drop(running);
    let broker = broker.restart(&[]).await;
    let stored = broker.running.as_ref().unwrap().broker.shares.state.stored(&key).unwrap();
    assert_eq!(stored.dead_letters.len(), 2, "{stored:?}");
    let b = broker.bootstrap.clone();
    blocking({
        let topic = topic.clone();
        move || {
            let mut m = Member::new(&b, "sg-dlq", "member-d2");
            m.join(&[&topic]);
            assert!(acquired(&m.fetch(id, vec![])).is_empty(), "everything was done before the crash");
        }
    })
    .await;
    assert_eq!(end_offset_reaching(&broker.bootstrap, &dlq, 2).await, 2, "offset 2 copied, offset 1 not again");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(raw::end_offset(&broker.bootstrap, &dlq, 0), 2);
}

/// The same crash as above, with the dead-letter partition led by another broker: the copies
/// are found there with Fetch (from the mark ListOffsets gave), not written again by Produce.
#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_led_elsewhere_are_copied_once_across_a_crash() {
    use common::cluster::*;
    use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
    use weir::share::state::rpc;
    use weir::share::SharePartitionKey;

    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3);
    let bootstrap = cluster.bootstrap();
    let (a, b) = (cluster.nodes[0].id, cluster.nodes[1].id);
    let (a_addr, b_addr) = (cluster.nodes[0].client.clone(), cluster.nodes[1].client.clone());
    let topic = topic_name("share-dlq-remote");
    let dlq = format!("dlq.{topic}");
    let group = "sg-dlq-remote";
    // the origin partition on a, the dead-letter partition on b
    let (on_a, on_b) = ([a], [b]);
    let (on_a, on_b): (&[&[i32]], &[&[i32]]) = (&[&on_a], &[&on_b]);
    let origin_spec = NewTopic::new(&topic, 1, TopicReplication::Variable(on_a));
    let dlq_spec =
        NewTopic::new(&dlq, 1, TopicReplication::Variable(on_b)).set("errors.deadletterqueue.group.enable", "true");
    let created = admin(&bootstrap).create_topics(&[origin_spec, dlq_spec], &AdminOptions::new()).await.unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let set = IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(32)
            .with_resource_name(s(group))
            .with_configs(vec![incremental_alter_configs_request::AlterableConfig::default()
                .with_name(s("errors.deadletterqueue.topic.name"))
                .with_config_operation(0)
                .with_value(Some(s(&dlq)))]),
    ]);
    let r: IncrementalAlterConfigsResponse = raw::call(&a_addr, ApiKey::IncrementalAlterConfigs, 1, &set);
    assert_eq!(r.responses[0].error_code, 0, "{:?}", r.responses[0].error_message);
    let meta: MetadataResponse =
        raw::call(&a_addr, ApiKey::Metadata, 12, &MetadataRequest::default().with_topics(None));
    let id = meta.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic)).unwrap().topic_id;
    let join = |cluster: &Cluster, member: &str| {
        eventually(Duration::from_secs(30), "a member fetching from a", || {
            let coordinator = coordinator_of(cluster, group)?;
            let mut m = Member::split(&coordinator, &a_addr, group, member);
            let r = m.heartbeat_with(0, Some(&[&topic]));
            m.epoch = r.member_epoch;
            (r.error_code == 0 && m.fetch(id, vec![]).error_code == 0).then_some(m)
        })
    };
    let mut m = join(&cluster, "member-r");
    let p = producer(&bootstrap, &[("acks", "all")]);
    for i in 0..3 {
        let v = format!("d{i}");
        p.send(FutureRecord::<(), _>::to(&topic).partition(0).payload(&v), Duration::from_secs(10)).await.unwrap();
    }
    let got = eventually(Duration::from_secs(10), "the three records", || {
        Some(acquired(&m.fetch(id, vec![]))).filter(|g| !g.is_empty())
    });
    assert_eq!(got, vec![(0, 2, 1)]);
    let r = m.acknowledge(id, vec![ack(0, 2, &[ACCEPT, REJECT, ACCEPT])]);
    assert_eq!(r.responses[0].partitions[0].error_code, 0);
    eventually(Duration::from_secs(10), "the rejected record copied to b", || {
        (raw::end_offset(&b_addr, &dlq, 0) == 1).then_some(())
    });
    // the member leaves: a writes the share-partition's state and unloads it
    drop(m);
    std::thread::sleep(Duration::from_millis(1500));

    // As if a had crashed after that copy but before its state said so (offset 1 pending,
    // copied already) with offset 2 pending too (never copied), the mark from before both.
    let key = SharePartitionKey { group: group.into(), topic_id: id, partition: 0 };
    let crashed = crashed_after_the_first_copy();
    let write = rpc::to_write(&key, &crashed);
    let written = cluster.nodes.iter().filter(|n| n.process.is_some()).any(|n| {
        let r: WriteShareGroupStateResponse = raw::call(&n.client, ApiKey::WriteShareGroupState, 0, &write);
        r.results[0].partitions[0].error_code == 0
    });
    assert!(written, "the share coordinator took the crashed state");
    let ia = cluster.index_of(a);
    cluster.kill(ia);
    cluster.restart(ia);
    let mut m = join(&cluster, "member-r2");
    assert!(acquired(&m.fetch(id, vec![])).is_empty(), "everything was done before the crash");
    eventually(Duration::from_secs(15), "offset 2 copied", || (raw::end_offset(&b_addr, &dlq, 0) >= 2).then_some(()));
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(raw::end_offset(&b_addr, &dlq, 0), 2, "offset 1 was not copied again");
}

fn describe_offsets(b: &str, group: &str) -> DescribeShareGroupOffsetsResponse {
    describe_offsets_v(b, group, 0)
}

fn describe_offsets_v(b: &str, group: &str, version: i16) -> DescribeShareGroupOffsetsResponse {
    let req = DescribeShareGroupOffsetsRequest::default().with_groups(vec![
        describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(None),
    ]);
    raw::call(b, ApiKey::DescribeShareGroupOffsets, version, &req)
}

/// AlterShareGroupOffsets of partition 0 of `topic` to `start`: (top error, partition error).
fn alter_offsets(b: &str, group: &str, topic: &str, start: i64) -> (i16, i16) {
    let alter = AlterShareGroupOffsetsRequest::default().with_group_id(GroupId(s(group))).with_topics(vec![
        alter_share_group_offsets_request::AlterShareGroupOffsetsRequestTopic::default()
            .with_topic_name(TopicName(s(topic)))
            .with_partitions(vec![alter_share_group_offsets_request::AlterShareGroupOffsetsRequestPartition::default(
            )
            .with_start_offset(start)]),
    ]);
    let r: AlterShareGroupOffsetsResponse = raw::call(b, ApiKey::AlterShareGroupOffsets, 0, &alter);
    (r.error_code, r.responses.first().and_then(|t| t.partitions.first()).map_or(-1, |p| p.error_code))
}

#[tokio::test(flavor = "multi_thread")]
async fn share_group_offsets_described_altered_and_deleted() {
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("share-offsets");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    let id = topic_id(&broker, &topic);
    let b = broker.bootstrap.clone();
    let m = fetching_member(&b, "sg-offsets", "member-o", &topic, id).await;
    produce_n(&broker.bootstrap, &topic, 8).await;
    blocking(move || {
        let mut m = m;
        assert_eq!(acquired(&m.fetch(id, vec![])), vec![(0, 7, 1)]);
        assert_eq!(m.acknowledge(id, vec![ack(0, 4, &[ACCEPT])]).error_code, 0);
        let d = describe_offsets(&b, "sg-offsets");
        let g = &d.groups[0];
        assert_eq!(g.error_code, 0);
        let p = &g.topics[0].partitions[0];
        assert_eq!((g.topics[0].topic_name.0.as_str(), g.topics[0].topic_id, p.start_offset), (topic.as_str(), id, 5));
        assert_eq!(describe_offsets(&b, "sg-none").groups[0].error_code, ResponseError::GroupIdNotFound.code());
        // v1 carries the lag: 8 records, 0..=4 accepted, 5..=7 acquired (not done)
        let p1 = describe_offsets_v(&b, "sg-offsets", 1).groups[0].topics[0].partitions[0].clone();
        assert_eq!((p1.start_offset, p1.lag), (5, 3));
        assert_eq!(m.acknowledge(id, vec![ack(6, 6, &[ACCEPT])]).error_code, 0);
        let p1 = describe_offsets_v(&b, "sg-offsets", 1).groups[0].topics[0].partitions[0].clone();
        assert_eq!((p1.start_offset, p1.lag), (5, 2), "an accepted record past the start is done");

        // a group with members cannot be altered
        assert_eq!(alter_offsets(&b, "sg-offsets", &topic, 2).0, ResponseError::NonEmptyGroup.code());
        assert_eq!(m.heartbeat_with(-1, None).member_epoch, -1);
        assert_eq!(alter_offsets(&b, "sg-offsets", &topic, 2), (0, 0));
        assert_eq!(describe_offsets(&b, "sg-offsets").groups[0].topics[0].partitions[0].start_offset, 2);
        // the lag of state the group left (read from the stored state): all of 2..8 again
        let p1 = describe_offsets_v(&b, "sg-offsets", 1).groups[0].topics[0].partitions[0].clone();
        assert_eq!((p1.start_offset, p1.lag), (2, 6));

        // a group id nobody uses: altering it creates the share group, empty, with that start
        assert_eq!(alter_offsets(&b, "sg-created-by-alter", &topic, 3), (0, 0));
        let d = describe_offsets_v(&b, "sg-created-by-alter", 1);
        let p = &d.groups[0].topics[0].partitions[0];
        assert_eq!((d.groups[0].error_code, p.start_offset, p.lag), (0, 3, 5));
        let listed: ListGroupsResponse = raw::call(&b, ApiKey::ListGroups, 5, &ListGroupsRequest::default());
        let created = listed.groups.iter().find(|g| g.group_id.0.as_str() == "sg-created-by-alter").expect("listed");
        assert_eq!((created.group_type.as_str(), created.group_state.as_str()), ("share", "Empty"));
        let mut joined = Member::new(&b, "sg-created-by-alter", "member-c");
        joined.join(&[&topic]);
        assert_eq!(acquired(&joined.fetch(id, vec![])), vec![(3, 7, 1)], "it starts where it was set");
        assert_eq!(joined.heartbeat_with(-1, None).member_epoch, -1);
        // a group of another type is not taken over
        let classic = format!("{topic}-classic");
        let commit = OffsetCommitRequest::default().with_group_id(GroupId(s(&classic))).with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default().with_name(TopicName(s(&topic))).with_partitions(
                vec![offset_commit_request::OffsetCommitRequestPartition::default().with_committed_offset(1)],
            ),
        ]);
        let r: OffsetCommitResponse = raw::call(&b, ApiKey::OffsetCommit, 8, &commit);
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
        assert_eq!(alter_offsets(&b, &classic, &topic, 3).0, ResponseError::GroupIdNotFound.code());
        // back in: everything from 2 on, delivered afresh
        let mut again = Member::new(&b, "sg-offsets", "member-o2");
        again.join(&[&topic]);
        assert_eq!(acquired(&again.fetch(id, vec![])), vec![(2, 7, 1)]);
        assert_eq!(again.heartbeat_with(-1, None).member_epoch, -1);
        drop(again);

        let delete =
            DeleteShareGroupOffsetsRequest::default().with_group_id(GroupId(s("sg-offsets"))).with_topics(vec![
                delete_share_group_offsets_request::DeleteShareGroupOffsetsRequestTopic::default()
                    .with_topic_name(TopicName(s(&topic))),
                delete_share_group_offsets_request::DeleteShareGroupOffsetsRequestTopic::default()
                    .with_topic_name(TopicName(s("no-such-topic"))),
            ]);
        let r: DeleteShareGroupOffsetsResponse = raw::call(&b, ApiKey::DeleteShareGroupOffsets, 0, &delete);
        let codes: Vec<i16> = r.responses.iter().map(|t| t.error_code).collect();
        assert_eq!(codes, vec![0, ResponseError::UnknownTopicOrPartition.code()]);
        assert!(describe_offsets(&b, "sg-offsets").groups[0].topics.is_empty(), "no state left");
    })
    .await;
}

/// `weir group …` (the built binary) with `--format json`: its exit code and parsed stdout.
fn weir_cli(b: &str, args: &[&str]) -> (i32, serde_json::Value) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .args(["-b", b, "--format", "json"])
        .output()
        .expect("run weir");
    eprintln!("weir {args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), serde_json::from_slice(&out.stdout).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_describes_and_moves_a_share_group() {
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("share-cli");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    let id = topic_id(&broker, &topic);
    let b = broker.bootstrap.clone();
    let m = fetching_member(&b, "sg-cli", "member-cli", &topic, id).await;
    produce_n(&broker.bootstrap, &topic, 8).await;
    blocking(move || {
        let mut m = m;
        assert_eq!(acquired(&m.fetch(id, vec![])), vec![(0, 7, 1)]);
        assert_eq!(m.acknowledge(id, vec![ack(0, 4, &[ACCEPT])]).error_code, 0);
        let (code, d) = weir_cli(&b, &["group", "describe", "sg-cli"]);
        assert_eq!(code, 0);
        assert_eq!((d["type"].as_str(), d["members"][0]["member_id"].as_str()), (Some("share"), Some("member-cli")));
        assert_eq!(d["members"][0]["assignment"][0]["topic"].as_str(), Some(topic.as_str()));
        let p = &d["offsets"][0];
        assert_eq!(
            (p["committed_offset"].as_i64(), p["log_end_offset"].as_i64(), p["lag"].as_i64()),
            (Some(5), Some(8), Some(3))
        );
        let (_, listed) = weir_cli(&b, &["group", "list", "--type", "share"]);
        assert!(listed.as_array().unwrap().iter().any(|g| g["group"] == "sg-cli"));

        let (code, _) = weir_cli(&b, &["group", "seek", "sg-cli", "--to", "2", "--topic", &topic, "--execute"]);
        assert_eq!(code, 1, "a share group with a member is not moved");
        assert_eq!(m.heartbeat_with(-1, None).member_epoch, -1);
        let (code, plan) = weir_cli(&b, &["group", "seek", "sg-cli", "--to", "2", "--topic", &topic, "--execute"]);
        assert_eq!((code, plan["partitions"][0]["new_offset"].as_i64()), (0, Some(2)));
        assert_eq!(describe_offsets(&b, "sg-cli").groups[0].topics[0].partitions[0].start_offset, 2);
    })
    .await;
}

/// Every offset a fresh member of `group` acquires from partition 0 within a few fetches.
fn acquired_offsets(b: &str, group: &str, topic: &str, id: Uuid) -> Vec<i64> {
    let mut m = Member::new(b, group, &format!("{group}-member"));
    m.join(&[topic]);
    let mut offsets = Vec::new();
    for _ in 0..5 {
        for (first, last, _) in acquired(&m.fetch(id, vec![])) {
            offsets.extend(first..=last);
        }
    }
    offsets
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_offset_reset_and_isolation_level() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("share-isolation");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    let id = topic_id(&broker, &topic);
    let running = broker.running.as_ref().unwrap().broker.clone();
    for (group, configs) in [
        ("sg-earliest-rc", vec![("share.auto.offset.reset", "earliest"), ("share.isolation.level", "read_committed")]),
        ("sg-earliest-ru", vec![("share.auto.offset.reset", "earliest")]),
        ("sg-duration", vec![("share.auto.offset.reset", "by_duration:PT1H")]),
    ] {
        let configs = configs.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        running.set_group_configs(group, configs, false).await.unwrap();
    }
    produce_n(&broker.bootstrap, &topic, 2).await;
    let b = broker.bootstrap.clone();
    let t = topic.clone();
    tokio::task::spawn_blocking(move || {
        let mut c = client_config(&b);
        c.set("transactional.id", "share-isolation").set("linger.ms", "0");
        let p: BaseProducer = c.create().unwrap();
        let wait = Duration::from_secs(20);
        p.init_transactions(wait).unwrap();
        for commit in [false, true] {
            p.begin_transaction().unwrap();
            for v in ["t1", "t2"] {
                p.send(BaseRecord::<(), str>::to(&t).partition(0).payload(v)).map_err(|(e, _)| e).unwrap();
            }
            p.flush(wait).unwrap();
            if commit {
                p.commit_transaction(wait).unwrap();
            } else {
                p.abort_transaction(wait).unwrap();
            }
        }
    })
    .await
    .unwrap();
    // offsets: 0-1 plain, 2-3 aborted + marker 4, 5-6 committed + marker 7
    let b = broker.bootstrap.clone();
    blocking(move || {
        assert_eq!(acquired_offsets(&b, "sg-earliest-rc", &topic, id), vec![0, 1, 5, 6]);
        assert_eq!(acquired_offsets(&b, "sg-earliest-ru", &topic, id), vec![0, 1, 2, 3, 5, 6]);
        assert_eq!(acquired_offsets(&b, "sg-duration", &topic, id), vec![0, 1, 2, 3, 5, 6]);
        assert!(acquired_offsets(&b, "sg-latest", &topic, id).is_empty(), "latest starts after what exists");
    })
    .await;
}

/// The client address of the broker coordinating `group`, as FindCoordinator says.
fn coordinator_of(cluster: &common::cluster::Cluster, group: &str) -> Option<String> {
    let req = FindCoordinatorRequest::default().with_key_type(0).with_coordinator_keys(vec![s(group)]);
    let r: FindCoordinatorResponse =
        raw::call(cluster.bootstrap().split(',').next()?, ApiKey::FindCoordinator, 4, &req);
    let c = r.coordinators.first().filter(|c| c.error_code == 0)?;
    cluster.nodes.iter().find(|n| n.id == c.node_id.0 && n.process.is_some()).map(|n| n.client.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn share_state_fails_over_with_the_partition_leader() {
    use common::cluster::*;
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3);
    let bootstrap = cluster.bootstrap();
    let topic = topic_name("share-failover");
    let leader = create_in_sync(&bootstrap, &topic).await;
    let req = MetadataRequest::default().with_topics(None);
    let r: MetadataResponse = raw::call(bootstrap.split(',').next().unwrap(), ApiKey::Metadata, 12, &req);
    let id = r.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic)).unwrap().topic_id;
    let leader_addr = cluster.nodes[cluster.index_of(leader)].client.clone();
    // the coordinator may still be loading its partition (COORDINATOR_LOAD_IN_PROGRESS)
    let mut m = eventually(Duration::from_secs(15), "joined through the group coordinator", || {
        let coordinator = coordinator_of(&cluster, "sg-failover")?;
        let mut m = Member::split(&coordinator, &leader_addr, "sg-failover", "member-f");
        let r = m.heartbeat_with(0, Some(&[&topic]));
        m.epoch = r.member_epoch;
        (r.error_code == 0).then_some(m)
    });
    assert_eq!(m.fetch(id, vec![]).error_code, 0);
    let p = producer(&bootstrap, &[("acks", "all")]);
    for i in 0..10 {
        let v = format!("f{i}");
        p.send(FutureRecord::<(), _>::to(&topic).partition(0).payload(&v), Duration::from_secs(10)).await.unwrap();
    }
    let m = blocking(move || {
        let mut m = m;
        assert_eq!(acquired(&m.fetch(id, vec![])), vec![(0, 9, 1)]);
        let r = m.acknowledge(id, vec![ack(0, 4, &[ACCEPT])]);
        assert_eq!(r.responses[0].partitions[0].error_code, 0);
        m
    })
    .await;
    drop(m);
    cluster.kill(cluster.index_of(leader));
    let survivors = cluster.bootstrap();
    let (new_leader, _) = eventually(Duration::from_secs(20), "a new leader", || {
        leader_and_isr(&survivors, &topic, 0).filter(|(l, _)| *l > 0 && *l != leader)
    });
    let new_addr = cluster.nodes[cluster.index_of(new_leader)].client.clone();
    let got = eventually(Duration::from_secs(30), "the unacknowledged records from the new leader", || {
        let coordinator = coordinator_of(&cluster, "sg-failover")?;
        let mut m = Member::split(&coordinator, &new_addr, "sg-failover", "member-f2");
        let r = m.heartbeat_with(0, Some(&[&topic]));
        (r.error_code == 0).then_some(())?;
        m.epoch = r.member_epoch;
        // (the new leader's high watermark may take a moment to cover offset 9)
        let mut got = Vec::new();
        for _ in 0..20 {
            for (first, last, count) in acquired(&m.fetch(id, vec![])) {
                got.extend((first..=last).map(|o| (o, count)));
            }
            if got.len() >= 5 {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        (!got.is_empty()).then_some(got)
    });
    // 0-4 were accepted; 5-9 were held when the leader died (their delivery counted)
    assert_eq!(got, (5..=9).map(|o| (o, 2)).collect::<Vec<_>>());
}

/// ShareFetch's MaxBytes bounds what is acquired as Kafka bounds it: 0 acquires nothing (the
/// request waits out MaxWaitMs and answers empty), and the records stay available for the
/// next fetch with room.
#[tokio::test(flavor = "multi_thread")]
async fn a_share_fetch_with_no_bytes_to_spare_acquires_nothing() {
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("share-max-bytes");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    let id = topic_id(&broker, &topic);
    let m = fetching_member(&broker.bootstrap, "sg-max-bytes", "member-mb", &topic, id).await;
    produce_n(&broker.bootstrap, &topic, 5).await;
    blocking(move || {
        let mut m = m;
        let none = m.fetch_request(id, vec![]).with_max_bytes(0);
        let r = m.send_fetch(&none);
        assert_eq!(r.error_code, 0);
        assert!(acquired(&r).is_empty(), "MaxBytes 0 acquired {:?}", acquired(&r));
        assert_eq!(acquired(&m.fetch(id, vec![])), vec![(0, 4, 1)], "delivered for the first time after");
    })
    .await;
}

/// As Kafka's brokers do, a fetch that finds records in one share-partition answers without
/// waiting for the state of others that are still being initialized: a new consumer of two
/// partitions of 50 records each gets one partition's 50 and then the other's (librdkafka's
/// share-consumer tests rely on it), and later fetches start at the next partition in turn.
#[tokio::test(flavor = "multi_thread")]
async fn a_first_share_fetch_answers_with_the_partition_initialized_first() {
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("share-init-order");
    create_topic(&broker.bootstrap, &topic, 2, &[]).await;
    let id = topic_id(&broker, &topic);
    let earliest = [("share.auto.offset.reset".to_string(), "earliest".to_string())].into();
    let running = broker.running.as_ref().unwrap().broker.clone();
    running.set_group_configs("sg-init-order", earliest, false).await.unwrap();
    let p = producer(&broker.bootstrap, &[("linger.ms", "5")]);
    for partition in 0..2 {
        for i in 0..50 {
            let v = format!("v{i}");
            let record = FutureRecord::<(), _>::to(&topic).partition(partition).payload(&v);
            p.send(record, Duration::from_secs(10)).await.unwrap();
        }
    }
    let b = broker.bootstrap.clone();
    blocking(move || {
        let mut m = Member::new(&b, "sg-init-order", "member-io");
        m.join(&[&topic]);
        let both = vec![FetchTopic::default()
            .with_topic_id(id)
            .with_partitions((0..2).map(|i| FetchPartition::default().with_partition_index(i)).collect())];
        let by_partition = |r: &ShareFetchResponse| -> Vec<(i32, i64, i64)> {
            r.responses
                .iter()
                .flat_map(|t| t.partitions.iter())
                .flat_map(|p| p.acquired_records.iter().map(|a| (p.partition_index, a.first_offset, a.last_offset)))
                .collect()
        };
        let first = m.send_fetch(&m.fetch_request(id, vec![]).with_topics(both));
        let first = by_partition(&first);
        assert_eq!(first.len(), 1, "one partition in the first answer: {first:?}");
        assert_eq!((first[0].1, first[0].2), (0, 49));
        // the session keeps both partitions; the next fetch names none
        let next = m.send_fetch(&m.fetch_request(id, vec![]).with_topics(vec![]));
        let next = by_partition(&next);
        assert_eq!(next, vec![(1 - first[0].0, 0, 49)], "the other partition next");
    })
    .await;
}

/// `share.auto.offset.reset` set through one broker an instant before a consumer subscribes
/// is what the partition's leader, another broker, starts the share-partition from: the
/// leader catches up with the metadata before it decides (a librdkafka test saw one of six
/// partitions start at the log end, its records never delivered).
#[tokio::test(flavor = "multi_thread")]
async fn a_new_share_partition_sees_the_reset_policy_set_elsewhere() {
    use common::cluster::*;
    use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};

    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = Cluster::start(3);
    let bootstrap = cluster.bootstrap();
    let (a, a_addr, b_addr) = (cluster.nodes[0].id, cluster.nodes[0].client.clone(), cluster.nodes[1].client.clone());
    let topic = topic_name("share-reset-elsewhere");
    let on_a = [a];
    let replicas: &[&[i32]] = &[&on_a];
    let spec = NewTopic::new(&topic, 1, TopicReplication::Variable(replicas));
    assert!(admin(&bootstrap).create_topics(&[spec], &AdminOptions::new()).await.unwrap()[0].is_ok());
    let p = producer(&bootstrap, &[("acks", "all")]);
    for i in 0..3 {
        let v = format!("r{i}");
        p.send(FutureRecord::<(), _>::to(&topic).partition(0).payload(&v), Duration::from_secs(10)).await.unwrap();
    }
    let meta: MetadataResponse =
        raw::call(&a_addr, ApiKey::Metadata, 12, &MetadataRequest::default().with_topics(None));
    let id = meta.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic)).unwrap().topic_id;
    for round in 0..4 {
        let group = format!("sg-reset-elsewhere-{round}");
        let set = IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(32)
                .with_resource_name(s(&group))
                .with_configs(vec![incremental_alter_configs_request::AlterableConfig::default()
                    .with_name(s("share.auto.offset.reset"))
                    .with_config_operation(0)
                    .with_value(Some(s("earliest")))]),
        ]);
        let r: IncrementalAlterConfigsResponse = raw::call(&b_addr, ApiKey::IncrementalAlterConfigs, 1, &set);
        assert_eq!(r.responses[0].error_code, 0, "{:?}", r.responses[0].error_message);
        let got = eventually(Duration::from_secs(30), "a member fetching from the leader", || {
            let coordinator = coordinator_of(&cluster, &group)?;
            let mut m = Member::split(&coordinator, &a_addr, &group, "member-re");
            let r = m.heartbeat_with(0, Some(&[&topic]));
            m.epoch = r.member_epoch;
            (r.error_code == 0).then_some(())?;
            let got = acquired(&m.fetch(id, vec![]));
            (!got.is_empty()).then_some(got)
        });
        assert_eq!(got, vec![(0, 2, 1)], "group {group} starts at the earliest offset");
    }
}
