//! OffsetCommit and TxnOffsetCommit check the committer in Kafka's order
//! (`ClassicGroup.validateOffsetCommit`, `ConsumerGroup.validateOffsetCommit`): dead group,
//! generation-less commit to an empty group, static member, member, generation, and only then
//! the group's state — so a consumer of an older generation hears `ILLEGAL_GENERATION` while
//! a rebalance completes, never `REBALANCE_IN_PROGRESS`. Transactional commits skip the state
//! check. Each branch is driven by rdkafka where a client reaches it on its own, and by raw
//! requests where only precise timing would.

mod common;

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use common::*;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::ResponseError;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const GROUP_BROKER: &[(&str, &str)] = &[("group.initial.rebalance.delay.ms", "0")];

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn join_request(group: &str, topic: &str, member: &str, instance: Option<&str>) -> JoinGroupRequest {
    let mut meta = BytesMut::new();
    meta.put_i16(0);
    ConsumerProtocolSubscription::default().with_topics(vec![s(topic)]).encode(&mut meta, 0).unwrap();
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(30_000)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(s("range")).with_metadata(meta.freeze())])
}

fn read<R: Decodable>(conn: &mut TcpStream, version: i16) -> R {
    let mut frame = raw::read_frame(conn).expect("response");
    ResponseHeader::decode(&mut frame, 0).unwrap();
    R::decode(&mut frame, version).unwrap()
}

/// A classic member on its own connection (JoinGroup v5: a new member first gets its id).
struct RawMember {
    conn: TcpStream,
    id: String,
    generation: i32,
}

impl RawMember {
    /// Sends the JoinGroup that enters the group; the answer comes when the join phase ends.
    fn start_join(bootstrap: &str, group: &str, topic: &str, instance: Option<&str>) -> RawMember {
        let id = match instance {
            Some(_) => String::new(), // static members get their id with the join answer
            None => {
                let first: JoinGroupResponse =
                    raw::call(bootstrap, ApiKey::JoinGroup, 5, &join_request(group, topic, "", None));
                assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
                first.member_id.to_string()
            }
        };
        let mut conn = raw::connect(bootstrap);
        conn.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
        raw::send(&mut conn, ApiKey::JoinGroup, 5, 1, &join_request(group, topic, &id, instance));
        RawMember { conn, id, generation: -1 }
    }

    fn finish_join(&mut self) {
        let joined: JoinGroupResponse = read(&mut self.conn, 5);
        assert_eq!(joined.error_code, 0, "joined");
        self.id = joined.member_id.to_string();
        self.generation = joined.generation_id;
    }

    fn rejoin(&mut self, group: &str, topic: &str, instance: Option<&str>) {
        raw::send(&mut self.conn, ApiKey::JoinGroup, 5, 2, &join_request(group, topic, &self.id, instance));
    }

    fn sync(&mut self, group: &str, instance: Option<&str>) {
        let req = SyncGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id(self.generation)
            .with_member_id(s(&self.id))
            .with_group_instance_id(instance.map(s));
        raw::send(&mut self.conn, ApiKey::SyncGroup, 3, 3, &req);
        let synced: SyncGroupResponse = read(&mut self.conn, 3);
        assert_eq!(synced.error_code, 0, "synced");
    }
}

/// Polls DescribeGroups until the group is in `state` (10 s at most).
fn wait_for_state(bootstrap: &str, group: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
        let r: DescribeGroupsResponse = raw::call(bootstrap, ApiKey::DescribeGroups, 5, &req);
        if r.groups[0].group_state.as_str() == state {
            return;
        }
        assert!(Instant::now() < deadline, "group never reached {state}: {:?}", r.groups[0].group_state);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The partition error of a one-partition OffsetCommit.
fn commit(bootstrap: &str, version: i16, group: &str, member: &str, instance: Option<&str>, generation: i32) -> i16 {
    let topic = OffsetCommitRequestTopic::default().with_name(TopicName(s(COMMIT_TOPIC))).with_partitions(vec![
        OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(1),
    ]);
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
        .with_topics(vec![topic]);
    let resp: OffsetCommitResponse = raw::call(bootstrap, ApiKey::OffsetCommit, version, &req);
    resp.topics[0].partitions[0].error_code
}

/// The topic raw commits name (each test has its own broker).
const COMMIT_TOPIC: &str = "commit-checks";

async fn topic_for_commits(bootstrap: &str) {
    create_topic(bootstrap, COMMIT_TOPIC, 1, &[]).await;
}

/// A transactional id with an open transaction that includes `group`'s offsets.
struct RawTxn {
    id: String,
    producer_id: i64,
    epoch: i16,
}

impl RawTxn {
    fn open(bootstrap: &str, group: &str) -> RawTxn {
        let id = topic_name("txn");
        let init: InitProducerIdResponse = raw::call(
            bootstrap,
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(s(&id))))
                .with_transaction_timeout_ms(60_000),
        );
        assert_eq!(init.error_code, 0);
        let add: AddOffsetsToTxnResponse = raw::call(
            bootstrap,
            ApiKey::AddOffsetsToTxn,
            3,
            &AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(s(&id)))
                .with_producer_id(init.producer_id)
                .with_producer_epoch(init.producer_epoch)
                .with_group_id(GroupId(s(group))),
        );
        assert_eq!(add.error_code, 0);
        RawTxn { id, producer_id: init.producer_id.0, epoch: init.producer_epoch }
    }

    /// The partition error of a one-partition TxnOffsetCommit v3.
    fn commit(&self, bootstrap: &str, group: &str, member: &str, instance: Option<&str>, generation: i32) -> i16 {
        let topic = TxnOffsetCommitRequestTopic::default().with_name(TopicName(s(COMMIT_TOPIC))).with_partitions(vec![
            TxnOffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(1),
        ]);
        let req = TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(s(&self.id)))
            .with_group_id(GroupId(s(group)))
            .with_producer_id(ProducerId(self.producer_id))
            .with_producer_epoch(self.epoch)
            .with_generation_id(generation)
            .with_member_id(s(member))
            .with_group_instance_id(instance.map(s))
            .with_topics(vec![topic]);
        let resp: TxnOffsetCommitResponse = raw::call(bootstrap, ApiKey::TxnOffsetCommit, 3, &req);
        resp.topics[0].partitions[0].error_code
    }
}

const NONE: i16 = 0;

/// Every branch of the classic order, with the group held in CompletingRebalance (two members
/// joined generation 2, nobody synced yet) and then Stable.
#[tokio::test(flavor = "multi_thread")]
async fn classic_commit_checks_member_and_generation_before_state() {
    let broker = TestBroker::start(GROUP_BROKER).await;
    topic_for_commits(&broker.bootstrap).await;
    let b = broker.bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let (group, topic) = (topic_name("g"), COMMIT_TOPIC.to_string());
        let inst = Some("static-1");
        // A group that does not exist: v9 says so, older versions keep ILLEGAL_GENERATION.
        assert_eq!(commit(&b, 9, &group, "nobody", None, 3), ResponseError::GroupIdNotFound.code());
        assert_eq!(commit(&b, 8, &group, "nobody", None, 3), ResponseError::IllegalGeneration.code());

        // Generation 1: one static member, synced → Stable.
        let mut m1 = RawMember::start_join(&b, &group, &topic, inst);
        m1.finish_join();
        assert_eq!(m1.generation, 1);
        m1.sync(&group, inst);
        assert_eq!(commit(&b, 8, &group, &m1.id, inst, 1), NONE, "current member and generation");

        // A second member joins; m1 rejoins: generation 2 is CompletingRebalance until synced.
        let mut m2 = RawMember::start_join(&b, &group, &topic, None);
        wait_for_state(&b, &group, "PreparingRebalance");
        m1.rejoin(&group, &topic, inst);
        m1.finish_join();
        m2.finish_join();
        assert_eq!((m1.generation, m2.generation), (2, 2));

        // The order of checks, one branch at a time (OffsetCommit v8, as librdkafka 2.12 sends).
        let (v, m1id) = (8, m1.id.clone());
        assert_eq!(commit(&b, v, &group, &m1id, inst, 1), ResponseError::IllegalGeneration.code(), "stale generation");
        assert_eq!(commit(&b, v, &group, &m2.id, None, 1), ResponseError::IllegalGeneration.code(), "stale generation");
        assert_eq!(commit(&b, v, &group, "ghost", None, 2), ResponseError::UnknownMemberId.code(), "unknown member");
        assert_eq!(commit(&b, v, &group, "ghost", inst, 2), ResponseError::FencedInstanceId.code(), "fenced static");
        assert_eq!(
            commit(&b, v, &group, &m1id, Some("other"), 2),
            ResponseError::UnknownMemberId.code(),
            "no such instance"
        );
        assert_eq!(
            commit(&b, v, &group, "", None, -1),
            ResponseError::UnknownMemberId.code(),
            "simple commit, busy group"
        );
        assert_eq!(
            commit(&b, v, &group, &m1id, inst, 2),
            ResponseError::RebalanceInProgress.code(),
            "current, not synced"
        );

        // Transactional commits: the same member checks, no state check.
        let txn = RawTxn::open(&b, &group);
        assert_eq!(txn.commit(&b, &group, &m1id, inst, 2), NONE, "no state check for transactions");
        assert_eq!(txn.commit(&b, &group, &m1id, inst, 1), ResponseError::IllegalGeneration.code());
        assert_eq!(txn.commit(&b, &group, "ghost", None, 2), ResponseError::UnknownMemberId.code());
        assert_eq!(txn.commit(&b, &group, "", None, -1), NONE, "generation-less transactional commit");

        // Synced: Stable, and the current generation commits.
        m1.sync(&group, inst);
        m2.sync(&group, None);
        assert_eq!(commit(&b, v, &group, &m1id, inst, 2), NONE);
        assert_eq!(commit(&b, v, &group, &m2.id, None, 2), NONE);
        assert_eq!(commit(&b, v, &group, &m2.id, None, 1), ResponseError::IllegalGeneration.code());
    })
    .await
    .unwrap();
}

/// TxnOffsetCommit to a group that does not exist: created for a generation-less commit,
/// ILLEGAL_GENERATION otherwise.
#[tokio::test(flavor = "multi_thread")]
async fn transactional_commit_to_missing_group() {
    let broker = TestBroker::start(GROUP_BROKER).await;
    topic_for_commits(&broker.bootstrap).await;
    let b = broker.bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let group = topic_name("g");
        let txn = RawTxn::open(&b, &group);
        assert_eq!(txn.commit(&b, &group, "m", None, 5), ResponseError::IllegalGeneration.code());
        assert_eq!(txn.commit(&b, &group, "", None, -1), NONE);
    })
    .await
    .unwrap();
}

/// KIP-848 members: OffsetCommit below v9 is UNSUPPORTED_VERSION, a wrong epoch is
/// STALE_MEMBER_EPOCH, and in a transaction ILLEGAL_GENERATION.
#[tokio::test(flavor = "multi_thread")]
async fn consumer_protocol_commit_checks() {
    let broker = TestBroker::start(GROUP_BROKER).await;
    topic_for_commits(&broker.bootstrap).await;
    let b = broker.bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let (group, topic) = (topic_name("g"), COMMIT_TOPIC.to_string());
        let hb = raw::join_consumer_group(&b, &group, &topic);
        assert_eq!(hb.error_code, 0);
        let (member, epoch) = (hb.member_id.unwrap_or_default().to_string(), hb.member_epoch);
        assert!(epoch > 0);
        assert_eq!(commit(&b, 9, &group, &member, None, epoch), NONE);
        assert_eq!(commit(&b, 9, &group, &member, None, epoch + 1), ResponseError::StaleMemberEpoch.code());
        assert_eq!(commit(&b, 8, &group, &member, None, epoch), ResponseError::UnsupportedVersion.code());
        assert_eq!(commit(&b, 9, &group, "ghost", None, epoch), ResponseError::UnknownMemberId.code());
        let txn = RawTxn::open(&b, &group);
        assert_eq!(txn.commit(&b, &group, &member, None, epoch), NONE);
        assert_eq!(txn.commit(&b, &group, &member, None, epoch + 1), ResponseError::IllegalGeneration.code());
    })
    .await
    .unwrap();
}

/// KIP-1251 (issue 31 item 5): a KIP-848 member's commit sent just before the heartbeat that
/// moved it to a new epoch reaches the coordinator after it; for partitions the member has
/// held since the older epoch it still goes in (the Java consumer reported these as
/// "OffsetCommit failed with stale member epoch" at every rebalance), and for others not.
#[tokio::test(flavor = "multi_thread")]
async fn a_commit_with_the_epoch_just_replaced_still_goes_in() {
    let broker = TestBroker::start(GROUP_BROKER).await;
    topic_for_commits(&broker.bootstrap).await;
    let b = broker.bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let (group, topic) = (topic_name("g"), COMMIT_TOPIC.to_string());
        let a = raw::join_consumer_group(&b, &group, &topic);
        let (a_id, a_epoch) = (a.member_id.unwrap_or_default().to_string(), a.member_epoch);
        let owned: Vec<_> = (a.assignment.expect("a is assigned the partition").topic_partitions.iter())
            .map(|t| {
                consumer_group_heartbeat_request::TopicPartitions::default()
                    .with_topic_id(t.topic_id)
                    .with_partitions(t.partitions.clone())
            })
            .collect();
        // b joins: a new group epoch; a keeps the partition and moves to that epoch
        let joined = raw::join_consumer_group(&b, &group, &topic);
        let b_id = joined.member_id.unwrap_or_default().to_string();
        let heartbeat = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_member_id(s(&a_id))
            .with_member_epoch(a_epoch)
            .with_topic_partitions(Some(owned));
        let r: ConsumerGroupHeartbeatResponse = raw::call(&b, ApiKey::ConsumerGroupHeartbeat, 0, &heartbeat);
        assert!(r.member_epoch > a_epoch, "a moved to the new epoch: {r:?}");
        assert_eq!(commit(&b, 9, &group, &a_id, None, a_epoch), NONE, "held since the epoch it names");
        assert_eq!(commit(&b, 9, &group, &a_id, None, r.member_epoch), NONE);
        let stale = ResponseError::StaleMemberEpoch.code();
        assert_eq!(commit(&b, 9, &group, &a_id, None, r.member_epoch + 1), stale, "an epoch not yet given");
        // b's own epoch commits anything (as Kafka); an older one covers only what b held then
        assert_eq!(commit(&b, 9, &group, &b_id, None, joined.member_epoch), NONE);
        assert_eq!(commit(&b, 9, &group, &b_id, None, joined.member_epoch - 1), stale, "b never held it");
    })
    .await
    .unwrap();
}

fn group_consumer(bootstrap: &str, group: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut c = client_config(bootstrap);
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "200");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("consumer")
}

/// Polls `c` until it owns `n` partitions (20 s at most).
fn wait_assignment(c: &BaseConsumer, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.assignment().map(|a| a.count()).unwrap_or(0) != n {
        assert!(Instant::now() < deadline, "an assignment of {n} partitions");
        c.poll(Duration::from_millis(50));
    }
}

fn commit_error(r: Result<(), KafkaError>) -> Option<RDKafkaErrorCode> {
    match r {
        Ok(()) => None,
        Err(KafkaError::ConsumerCommit(code)) => Some(code),
        Err(e) => panic!("unexpected commit error {e:?}"),
    }
}

/// A member polling on its own thread until told to leave (so it rejoins rebalances).
fn polling_member(bootstrap: &str, group: &str, topic: &str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let (b, g, t) = (bootstrap.to_string(), group.to_string(), topic.to_string());
    std::thread::spawn(move || {
        let c = group_consumer(&b, &g, &[("partition.assignment.strategy", "cooperative-sticky")]);
        c.subscribe(&[&t]).unwrap();
        while !stop.load(Ordering::SeqCst) {
            c.poll(Duration::from_millis(20));
        }
        c.unsubscribe();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && c.assignment().map(|a| a.count()).unwrap_or(0) > 0 {
            c.poll(Duration::from_millis(20));
        }
    })
}

/// The reported case: a cooperative consumer commits right after every poll while other
/// members join and leave. Its commits succeed or get what Kafka answers mid-rebalance —
/// ILLEGAL_GENERATION for a generation a rebalance replaced, REBALANCE_IN_PROGRESS for the
/// current one before its assignment is known — and nothing else; afterwards it commits again
/// and the committed offsets are exactly what it consumed.
#[tokio::test(flavor = "multi_thread")]
async fn cooperative_consumer_commits_through_rebalances() {
    let broker = TestBroker::start(GROUP_BROKER).await;
    let (topic, group) = (topic_name("coop"), topic_name("g"));
    create_topic(&broker.bootstrap, &topic, 6, &[]).await;
    let b = broker.bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let p: BaseProducer = client_config(&b).create().unwrap();
        for i in 0..6000u32 {
            let v = format!("v{i}");
            p.send(BaseRecord::<(), _>::to(&topic).partition((i % 6) as i32).payload(&v)).unwrap();
            if i % 500 == 0 {
                p.flush(Duration::from_secs(10)).unwrap();
            }
        }
        p.flush(Duration::from_secs(10)).unwrap();
        let a = group_consumer(&b, &group, &[("partition.assignment.strategy", "cooperative-sticky")]);
        a.subscribe(&[&topic]).unwrap();
        let (mut ok, mut illegal, mut in_progress, mut other) = (0, 0, 0, Vec::new());
        let mut consumed: std::collections::BTreeMap<i32, i64> = Default::default();
        let mut joiner: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)> = None;
        let (mut cycles, mut next_change) = (0, Instant::now() + Duration::from_millis(500));
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline && cycles < 4 {
            if let Some(Ok(m)) = a.poll(Duration::from_millis(5)) {
                let (partition, offset) = (rdkafka::Message::partition(&m), rdkafka::Message::offset(&m));
                consumed.insert(partition, offset + 1);
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(&topic, partition, Offset::Offset(offset + 1)).unwrap();
                match commit_error(a.commit(&tpl, CommitMode::Sync)) {
                    None => ok += 1,
                    Some(RDKafkaErrorCode::IllegalGeneration) => illegal += 1,
                    Some(RDKafkaErrorCode::RebalanceInProgress) => in_progress += 1,
                    Some(code) => other.push(code),
                }
            }
            if Instant::now() >= next_change {
                // a second member joins, then leaves: two rebalances per cycle
                match joiner.take() {
                    None => {
                        let stop = Arc::new(AtomicBool::new(false));
                        joiner = Some((stop.clone(), polling_member(&b, &group, &topic, stop)));
                    }
                    Some((stop, thread)) => {
                        stop.store(true, Ordering::SeqCst);
                        thread.join().unwrap();
                        cycles += 1;
                    }
                }
                next_change = Instant::now() + Duration::from_millis(1500);
            }
        }
        println!(
            "cooperative commits: {ok} ok, {illegal} ILLEGAL_GENERATION, {in_progress} REBALANCE_IN_PROGRESS, \
             others {other:?}, {cycles} join/leave cycles"
        );
        assert_eq!(cycles, 4, "rebalances happened");
        assert!(other.is_empty(), "only Kafka's mid-rebalance codes may refuse a commit: {other:?}");
        // Settled: one more commit of everything consumed goes through and reads back.
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &consumed {
            tpl.add_partition_offset(&topic, *p, Offset::Offset(*o)).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while commit_error(a.commit(&tpl, CommitMode::Sync)).is_some() {
            assert!(Instant::now() < deadline, "the settled member commits");
            a.poll(Duration::from_millis(50));
        }
        let committed = a.committed_offsets(tpl.clone(), Duration::from_secs(10)).unwrap();
        for (p, o) in &consumed {
            assert_eq!(committed.find_partition(&topic, *p).unwrap().offset(), Offset::Offset(*o));
        }
    })
    .await
    .unwrap();
}

/// A consumer that assigns partitions itself commits without a member id or generation:
/// accepted while the group is empty, UNKNOWN_MEMBER_ID while the group has members.
#[tokio::test(flavor = "multi_thread")]
async fn simple_commit_needs_an_empty_group() {
    let broker = TestBroker::start(GROUP_BROKER).await;
    let (topic, group) = (topic_name("simple"), topic_name("g"));
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    let b = broker.bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let manual = assigned_consumer(&b, &topic, &[0], Offset::Beginning, &[("group.id", group.as_str())]);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(7)).unwrap();
        assert_eq!(commit_error(manual.commit(&tpl, CommitMode::Sync)), None, "empty group takes the commit");
        let committed = manual.committed_offsets(tpl.clone(), Duration::from_secs(10)).unwrap();
        assert_eq!(committed.find_partition(&topic, 0).unwrap().offset(), Offset::Offset(7));

        let member = group_consumer(&b, &group, &[]);
        member.subscribe(&[&topic]).unwrap();
        wait_assignment(&member, 1);
        tpl.set_partition_offset(&topic, 0, Offset::Offset(9)).unwrap();
        assert_eq!(
            commit_error(manual.commit(&tpl, CommitMode::Sync)),
            Some(RDKafkaErrorCode::UnknownMemberId),
            "a group with members refuses generation-less commits"
        );
        let committed = member.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
        assert_eq!(committed.find_partition(&topic, 0).unwrap().offset(), Offset::Offset(7), "unchanged");
    })
    .await
    .unwrap();
}

/// Two consumers with one `group.instance.id`: the newer one takes the membership, and the
/// older one's commit is FENCED_INSTANCE_ID (librdkafka makes it fatal).
#[tokio::test(flavor = "multi_thread")]
async fn fenced_static_member_cannot_commit() {
    let broker = TestBroker::start(GROUP_BROKER).await;
    let (topic, group) = (topic_name("static"), topic_name("g"));
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    let b = broker.bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let inst = [("group.instance.id", "the-one")];
        let old = group_consumer(&b, &group, &inst);
        old.subscribe(&[&topic]).unwrap();
        wait_assignment(&old, 1);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(3)).unwrap();
        assert_eq!(commit_error(old.commit(&tpl, CommitMode::Sync)), None);

        let new = group_consumer(&b, &group, &inst);
        new.subscribe(&[&topic]).unwrap();
        wait_assignment(&new, 1);
        tpl.set_partition_offset(&topic, 0, Offset::Offset(5)).unwrap();
        let refused = commit_error(old.commit(&tpl, CommitMode::Sync));
        assert!(
            matches!(refused, Some(RDKafkaErrorCode::FencedInstanceId) | Some(RDKafkaErrorCode::Fatal)),
            "the replaced static member is fenced: {refused:?}"
        );
        assert_eq!(commit_error(new.commit(&tpl, CommitMode::Sync)), None, "the current one commits");
        let committed = new.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
        assert_eq!(committed.find_partition(&topic, 0).unwrap().offset(), Offset::Offset(5));
    })
    .await
    .unwrap();
}

/// A transactional producer that sends offsets with a consumer's group metadata taken before
/// a rebalance: the stale generation is ILLEGAL_GENERATION and the transaction cannot commit
/// those offsets; with the current metadata it can.
#[tokio::test(flavor = "multi_thread")]
async fn transactional_offsets_with_stale_generation_are_refused() {
    let broker = TestBroker::start(GROUP_BROKER).await;
    let (topic, group) = (topic_name("txg"), topic_name("g"));
    create_topic(&broker.bootstrap, &topic, 2, &[]).await;
    let b = broker.bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let a = group_consumer(&b, &group, &[]);
        a.subscribe(&[&topic]).unwrap();
        wait_assignment(&a, 2);
        let stale = a.group_metadata().expect("group metadata");
        let other = group_consumer(&b, &group, &[]);
        other.subscribe(&[&topic]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while a.assignment().map(|x| x.count()).unwrap_or(0) != 1
            || other.assignment().map(|x| x.count()).unwrap_or(0) != 1
        {
            assert!(Instant::now() < deadline, "rebalanced");
            a.poll(Duration::from_millis(20));
            other.poll(Duration::from_millis(20));
        }
        let p: BaseProducer = producer_config_txn(&b).create().unwrap();
        p.init_transactions(Duration::from_secs(10)).unwrap();
        p.begin_transaction().unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(4)).unwrap();
        let err = p.send_offsets_to_transaction(&tpl, &stale, Duration::from_secs(10)).expect_err("stale generation");
        assert_eq!(err.rdkafka_error_code(), Some(RDKafkaErrorCode::IllegalGeneration), "{err:?}");
        p.abort_transaction(Duration::from_secs(10)).unwrap();
        p.begin_transaction().unwrap();
        let current = a.group_metadata().expect("group metadata");
        p.send_offsets_to_transaction(&tpl, &current, Duration::from_secs(10)).expect("current generation");
        p.commit_transaction(Duration::from_secs(10)).unwrap();
        let committed = a.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
        assert_eq!(committed.find_partition(&topic, 0).unwrap().offset(), Offset::Offset(4));
        drop(other);
    })
    .await
    .unwrap();
}

fn producer_config_txn(bootstrap: &str) -> rdkafka::ClientConfig {
    let mut c = client_config(bootstrap);
    c.set("transactional.id", topic_name("tx"));
    c
}
