//! Consumer groups with rdkafka's group consumer: partitions shared among members, rebalances
//! on join/leave/expiry, static membership, cooperative rebalancing, and committed offsets that
//! survive broker restarts.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

const GROUP_BROKER: &[(&str, &str)] = &[("group.initial.rebalance.delay.ms", "0")];

/// Counts rebalance callbacks, to tell whether a member saw a rebalance.
#[derive(Default, Clone)]
struct Counting(Arc<AtomicUsize>);
impl ClientContext for Counting {}
impl ConsumerContext for Counting {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A group member polling on its own thread, recording what it consumed.
struct Member {
    consumer: Arc<BaseConsumer<Counting>>,
    rebalances: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<(i32, i64, String)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Member {
    fn start(bootstrap: &str, group: &str, topic: &str, extra: &[(&str, &str)]) -> Member {
        let mut c = client_config(bootstrap);
        c.set("group.id", group).set("enable.auto.commit", "false").set("auto.offset.reset", "earliest");
        // the KIP-848 protocol takes its timeouts from the broker and refuses these settings
        if !extra.contains(&("group.protocol", "consumer")) {
            c.set("session.timeout.ms", "10000").set("heartbeat.interval.ms", "500");
        }
        for (k, v) in extra {
            c.set(*k, *v);
        }
        let ctx = Counting::default();
        let rebalances = ctx.0.clone();
        let consumer: Arc<BaseConsumer<Counting>> = Arc::new(c.create_with_context(ctx).expect("consumer"));
        consumer.subscribe(&[topic]).expect("subscribe");
        let (seen, stop) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let (c2, seen2, stop2) = (consumer.clone(), seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                if let Some(Ok(m)) = c2.poll(Duration::from_millis(50)) {
                    let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
                    seen2.lock().unwrap().push((m.partition(), m.offset(), v));
                }
            }
        });
        Member { consumer, rebalances, seen, stop, thread: Some(thread) }
    }

    /// True when this member has read up to `last` in every partition it owns.
    fn caught_up(&self, last: i64) -> bool {
        let seen = self.seen.lock().unwrap();
        self.assigned().iter().all(|p| seen.iter().any(|x| x.0 == *p && x.1 == last))
    }

    fn assigned(&self) -> BTreeSet<i32> {
        self.consumer.assignment().map(|t| t.elements().iter().map(|e| e.partition()).collect()).unwrap_or_default()
    }

    /// Commits, for each partition, one past the last offset this member consumed.
    fn commit_consumed(&self, topic: &str) -> BTreeMap<i32, i64> {
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for (p, o, _) in self.seen.lock().unwrap().iter() {
            let e = next.entry(*p).or_insert(0);
            *e = (*e).max(o + 1);
        }
        let owned = self.assigned();
        next.retain(|p, _| owned.contains(p));
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &next {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*o)).unwrap();
        }
        if tpl.count() > 0 {
            self.consumer.commit(&tpl, CommitMode::Sync).expect("commit");
        }
        next
    }

    /// Stops polling and closes the consumer (a dynamic member leaves the group).
    fn close(mut self) -> Vec<(i32, i64, String)> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.consumer.unsubscribe();
        let seen = self.seen.lock().unwrap().clone();
        drop(self.consumer);
        seen
    }
}

/// Waits until the members' assignments are disjoint and cover `0..partitions`.
fn wait_for_balanced(members: &[&Member], partitions: i32, timeout: Duration) -> Vec<BTreeSet<i32>> {
    let deadline = Instant::now() + timeout;
    loop {
        let sets: Vec<BTreeSet<i32>> = members.iter().map(|m| m.assigned()).collect();
        let total: usize = sets.iter().map(BTreeSet::len).sum();
        let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
        if total == partitions as usize && union.len() == partitions as usize && sets.iter().all(|s| !s.is_empty()) {
            return sets;
        }
        assert!(Instant::now() < deadline, "assignment did not converge: {sets:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn produce_values(bootstrap: &str, topic: &str, partitions: i32, per_partition: usize, tag: &str) {
    let p = producer(bootstrap, &[]);
    let mut acks = Vec::new();
    for i in 0..per_partition {
        for part in 0..partitions {
            let v = format!("{tag}-{part}-{i}");
            acks.push(p.send_result(FutureRecord::<(), String>::to(topic).partition(part).payload(&v)).unwrap());
        }
    }
    for a in acks {
        a.await.unwrap().expect("produced");
    }
}

/// Three members of one group on a 12-partition topic: every join and leave converges to a
/// disjoint cover of the partitions, every record is consumed, commits equal consumption.
/// `client` selects the protocol/assignor under test; `broker` adds broker settings.
async fn three_members_share_partitions(client: (&'static str, &'static str), broker_cfg: &[(&str, &str)]) {
    let mut cfg = GROUP_BROKER.to_vec();
    cfg.extend_from_slice(broker_cfg);
    let broker = TestBroker::start(&cfg).await;
    let (topic, group) = (topic_name("grp"), topic_name("g"));
    create_topic(&broker.bootstrap, &topic, 12, &[]).await;
    produce_values(&broker.bootstrap, &topic, 12, 50, "a").await;
    let b = broker.bootstrap.clone();
    let (t, g) = (topic.clone(), group.clone());
    tokio::task::spawn_blocking(move || {
        let extra = [client];
        let m1 = Member::start(&b, &g, &t, &extra);
        wait_for_balanced(&[&m1], 12, Duration::from_secs(30));
        let m2 = Member::start(&b, &g, &t, &extra);
        wait_for_balanced(&[&m1, &m2], 12, Duration::from_secs(30));
        let m3 = Member::start(&b, &g, &t, &extra);
        let sets = wait_for_balanced(&[&m1, &m2, &m3], 12, Duration::from_secs(30));
        assert!(sets.iter().all(|s| s.len() == 4), "12 partitions over 3 members: {sets:?}");
        // every record is consumed, and each member reaches the end of the partitions it owns
        // (after an eager rebalance a new owner re-reads uncommitted partitions)
        let deadline = Instant::now() + Duration::from_secs(30);
        while ![&m1, &m2, &m3].iter().all(|m| m.caught_up(49)) {
            assert!(Instant::now() < deadline, "members did not reach the end of their partitions");
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut values: Vec<String> = [&m1, &m2, &m3]
            .iter()
            .flat_map(|m| m.seen.lock().unwrap().iter().map(|x| x.2.clone()).collect::<Vec<_>>())
            .collect();
        values.sort();
        values.dedup();
        assert_eq!(values.len(), 600, "all 600 records consumed");
        // commits land: committed offsets equal what each member consumed of its partitions
        let mut committed_by_us = BTreeMap::new();
        for m in [&m1, &m2, &m3] {
            committed_by_us.extend(m.commit_consumed(&t));
        }
        assert_eq!(committed_by_us, (0..12).map(|p| (p, 50)).collect::<BTreeMap<_, _>>());
        let mut tpl = TopicPartitionList::new();
        for p in 0..12 {
            tpl.add_partition(&t, p);
        }
        let committed = m1.consumer.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
        for e in committed.elements() {
            assert_eq!(e.offset(), Offset::Offset(50), "partition {}", e.partition());
        }
        // a member leaves: the other two take over all 12 partitions
        m3.close();
        wait_for_balanced(&[&m1, &m2], 12, Duration::from_secs(30));
        m1.close();
        m2.close();
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn eager_group_shares_partitions_and_rebalances() {
    three_members_share_partitions(("partition.assignment.strategy", "range"), &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cooperative_sticky_group_shares_partitions_and_rebalances() {
    three_members_share_partitions(("partition.assignment.strategy", "cooperative-sticky"), &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn consumer_protocol_group_shares_partitions_and_rebalances() {
    // KIP-848: the broker's uniform assignor; commits are validated against member epochs
    three_members_share_partitions(("group.protocol", "consumer"), &[("group.consumer.heartbeat.interval.ms", "500")])
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn static_member_restart_causes_no_rebalance() {
    let broker = TestBroker::start(GROUP_BROKER).await;
    let (topic, group) = (topic_name("static"), topic_name("g"));
    create_topic(&broker.bootstrap, &topic, 4, &[]).await;
    let b = broker.bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let m1 = Member::start(&b, &group, &topic, &[("group.instance.id", "one")]);
        let m2 = Member::start(&b, &group, &topic, &[("group.instance.id", "two")]);
        let before = wait_for_balanced(&[&m1, &m2], 4, Duration::from_secs(30));
        std::thread::sleep(Duration::from_secs(1));
        let m1_rebalances = m1.rebalances.load(Ordering::SeqCst);
        // m2 restarts within its session timeout: static members do not leave on close
        m2.close();
        let m2 = Member::start(&b, &group, &topic, &[("group.instance.id", "two")]);
        let after = wait_for_balanced(&[&m1, &m2], 4, Duration::from_secs(30));
        assert_eq!(before, after, "the restarted member got its old partitions back");
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(m1.rebalances.load(Ordering::SeqCst), m1_rebalances, "the other member saw no rebalance");
        m1.close();
        m2.close();
    })
    .await
    .unwrap();
}

/// Joins `group` with the raw protocol, syncs, and never heartbeats again.
fn raw_member_joins_and_goes_silent(bootstrap: &str, group: &str, topic: &str) -> Vec<u8> {
    use bytes::BufMut;
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let sub = ConsumerProtocolSubscription::default().with_topics(vec![StrBytes::from_string(topic.to_string())]);
    let mut meta = bytes::BytesMut::new();
    meta.put_i16(0);
    sub.encode(&mut meta, 0).unwrap();
    let join = |member: &str| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_session_timeout_ms(6000)
            .with_rebalance_timeout_ms(30000)
            .with_member_id(StrBytes::from_string(member.to_string()))
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(meta.clone().freeze())])
    };
    let first: JoinGroupResponse = raw::call(bootstrap, ApiKey::JoinGroup, 5, &join(""));
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
    let mut s = raw::connect(bootstrap);
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    raw::send(&mut s, ApiKey::JoinGroup, 5, 1, &join(first.member_id.as_str()));
    let mut frame = raw::read_frame(&mut s).expect("join response");
    use kafka_protocol::protocol::Decodable;
    ResponseHeader::decode(&mut frame, 0).unwrap();
    let joined = JoinGroupResponse::decode(&mut frame, 5).unwrap();
    assert_eq!(joined.error_code, 0);
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id(joined.generation_id)
        .with_member_id(joined.member_id.clone());
    raw::send(&mut s, ApiKey::SyncGroup, 3, 2, &sync);
    let mut frame = raw::read_frame(&mut s).expect("sync response");
    ResponseHeader::decode(&mut frame, 0).unwrap();
    let synced = SyncGroupResponse::decode(&mut frame, 3).unwrap();
    assert_eq!(synced.error_code, 0);
    synced.assignment.to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_member_expires_and_its_partitions_move() {
    let broker = TestBroker::start(GROUP_BROKER).await;
    let (topic, group) = (topic_name("expiry"), topic_name("g"));
    create_topic(&broker.bootstrap, &topic, 4, &[]).await;
    let b = broker.bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let m1 = Member::start(&b, &group, &topic, &[]);
        wait_for_balanced(&[&m1], 4, Duration::from_secs(30));
        let assignment = raw_member_joins_and_goes_silent(&b, &group, &topic);
        assert!(!assignment.is_empty(), "the leader gave the raw member partitions");
        let deadline = Instant::now() + Duration::from_secs(10);
        while m1.assigned().len() != 2 {
            assert!(Instant::now() < deadline, "m1 should hold half: {:?}", m1.assigned());
            std::thread::sleep(Duration::from_millis(50));
        }
        let silent_since = Instant::now();
        wait_for_balanced(&[&m1], 4, Duration::from_secs(30));
        assert!(silent_since.elapsed() >= Duration::from_secs(4), "expelled only after its 6 s session timeout");
        m1.close();
    })
    .await
    .unwrap();
}

/// Commits offsets with metadata, restarts the broker (clean or SIGKILL), and checks that a new
/// member of the group resumes exactly there.
fn commit_restart_resume(kill: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (topic, group) = (topic_name("resume"), topic_name("g"));
    let broker = BinaryBroker::start(dir.path(), &["--set", "group.initial.rebalance.delay.ms=0"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        create_topic(&broker.bootstrap, &topic, 2, &[]).await;
        produce_values(&broker.bootstrap, &topic, 2, 100, "r").await;
    });
    let m = Member::start(&broker.bootstrap, &group, &topic, &[]);
    wait_for_balanced(&[&m], 2, Duration::from_secs(30));
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(60)).unwrap();
    tpl.add_partition_offset(&topic, 1, Offset::Offset(70)).unwrap();
    for mut e in tpl.elements() {
        let meta = format!("meta-{}", e.partition());
        e.set_metadata(meta);
    }
    m.consumer.commit(&tpl, CommitMode::Sync).expect("commit");
    drop(m.close());
    if kill {
        broker.kill9();
    } else {
        assert!(broker.terminate().success());
    }
    let broker = BinaryBroker::start(dir.path(), &["--set", "group.initial.rebalance.delay.ms=0"]);
    let m = Member::start(&broker.bootstrap, &group, &topic, &[]);
    let mut want = TopicPartitionList::new();
    want.add_partition(&topic, 0);
    want.add_partition(&topic, 1);
    let committed = m.consumer.committed_offsets(want, Duration::from_secs(10)).unwrap();
    let got: Vec<(i32, Offset, String)> =
        committed.elements().iter().map(|e| (e.partition(), e.offset(), e.metadata().to_string())).collect();
    assert_eq!(
        got,
        vec![(0, Offset::Offset(60), "meta-0".to_string()), (1, Offset::Offset(70), "meta-1".to_string())],
        "committed offsets and metadata survive the restart"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while m.seen.lock().unwrap().len() < 70 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen = m.close();
    let first = |p: i32| seen.iter().filter(|x| x.0 == p).map(|x| x.1).min();
    assert_eq!((first(0), first(1)), (Some(60), Some(70)), "consumption resumes at the committed offsets");
    assert_eq!(seen.len(), 70, "40 + 30 records after the committed offsets, none before");
}

#[test]
fn committed_offsets_survive_clean_restart() {
    commit_restart_resume(false);
}

#[test]
fn committed_offsets_survive_sigkill() {
    commit_restart_resume(true);
}

#[tokio::test(flavor = "multi_thread")]
async fn group_admin_apis_answer_like_kafka() {
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    let broker = TestBroker::start(GROUP_BROKER).await;
    let (topic, busy, idle) = (topic_name("admin"), topic_name("busy"), topic_name("idle"));
    create_topic(&broker.bootstrap, &topic, 2, &[]).await;
    let b = broker.bootstrap.clone();
    let (t, busy2) = (topic.clone(), busy.clone());
    let member = tokio::task::spawn_blocking(move || {
        let m = Member::start(&b, &busy2, &t, &[]);
        wait_for_balanced(&[&m], 2, Duration::from_secs(30));
        m
    })
    .await
    .unwrap();
    // an idle group with a simple commit
    let b = broker.bootstrap.clone();
    let (t, idle2) = (topic.clone(), idle.clone());
    tokio::task::spawn_blocking(move || {
        let c = assigned_consumer(&b, &t, &[0], Offset::Beginning, &[("group.id", idle2.as_str())]);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&t, 0, Offset::Offset(0)).unwrap();
        c.commit(&tpl, CommitMode::Sync).expect("simple commit");
    })
    .await
    .unwrap();
    let gid = |s: &str| GroupId(StrBytes::from_string(s.to_string()));

    let listed: ListGroupsResponse =
        raw::call_async(&broker.bootstrap, ApiKey::ListGroups, 5, ListGroupsRequest::default()).await;
    let find = |id: &str| listed.groups.iter().find(|g| g.group_id.0.as_str() == id).cloned();
    let (busy_l, idle_l) = (find(&busy).expect("busy listed"), find(&idle).expect("idle listed"));
    assert_eq!(
        (busy_l.group_state.as_str(), busy_l.protocol_type.as_str(), busy_l.group_type.as_str()),
        ("Stable", "consumer", "classic")
    );
    assert_eq!(idle_l.group_state.as_str(), "Empty");
    let stable_only = ListGroupsRequest::default().with_states_filter(vec![StrBytes::from_static_str("Stable")]);
    let listed: ListGroupsResponse = raw::call_async(&broker.bootstrap, ApiKey::ListGroups, 5, stable_only).await;
    assert!(listed.groups.iter().all(|g| g.group_state.as_str() == "Stable"));
    assert!(listed.groups.iter().any(|g| g.group_id.0.as_str() == busy));

    let described: DescribeGroupsResponse = raw::call_async(
        &broker.bootstrap,
        ApiKey::DescribeGroups,
        5,
        DescribeGroupsRequest::default().with_groups(vec![gid(&busy), gid("no-such-group")]),
    )
    .await;
    let d = &described.groups[0];
    assert_eq!((d.group_state.as_str(), d.protocol_type.as_str(), d.members.len()), ("Stable", "consumer", 1));
    assert!(!d.members[0].member_assignment.is_empty(), "the member's assignment is described");
    assert_eq!(described.groups[1].group_state.as_str(), "Dead");

    // OffsetDelete: refused for the topic the busy group consumes, allowed for the idle group
    let od = |g: &str| {
        OffsetDeleteRequest::default().with_group_id(gid(g)).with_topics(vec![
            offset_delete_request::OffsetDeleteRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.clone())))
                .with_partitions(vec![
                    offset_delete_request::OffsetDeleteRequestPartition::default().with_partition_index(0)
                ]),
        ])
    };
    let r: OffsetDeleteResponse = raw::call_async(&broker.bootstrap, ApiKey::OffsetDelete, 0, od(&busy)).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 86, "GROUP_SUBSCRIBED_TO_TOPIC");
    let r: OffsetDeleteResponse = raw::call_async(&broker.bootstrap, ApiKey::OffsetDelete, 0, od(&idle)).await;
    assert_eq!((r.error_code, r.topics[0].partitions[0].error_code), (0, 0));
    let r: OffsetDeleteResponse =
        raw::call_async(&broker.bootstrap, ApiKey::OffsetDelete, 0, od("no-such-group")).await;
    assert_eq!(r.error_code, 69, "GROUP_ID_NOT_FOUND");

    // DeleteGroups: NON_EMPTY_GROUP, then deleted once empty, then GROUP_ID_NOT_FOUND
    let dg = |g: &str| DeleteGroupsRequest::default().with_groups_names(vec![gid(g)]);
    let r: DeleteGroupsResponse = raw::call_async(&broker.bootstrap, ApiKey::DeleteGroups, 2, dg(&busy)).await;
    assert_eq!(r.results[0].error_code, 68, "NON_EMPTY_GROUP");
    tokio::task::spawn_blocking(move || drop(member.close())).await.unwrap();
    let bb = broker.bootstrap.clone();
    let busy3 = busy.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r: DeleteGroupsResponse = raw::call_async(&bb, ApiKey::DeleteGroups, 2, dg(&busy3)).await;
        if r.results[0].error_code == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "group never became deletable: {}", r.results[0].error_code);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r: DeleteGroupsResponse = raw::call_async(&broker.bootstrap, ApiKey::DeleteGroups, 2, dg(&busy)).await;
    assert_eq!(r.results[0].error_code, 69, "GROUP_ID_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread")]
async fn consumer_protocol_regex_subscription_follows_new_topics() {
    let broker = TestBroker::start(&[("group.consumer.heartbeat.interval.ms", "300")]).await;
    let prefix = topic_name("rx");
    let group = topic_name("g");
    create_topic(&broker.bootstrap, &format!("{prefix}-a"), 2, &[]).await;
    create_topic(&broker.bootstrap, &format!("{prefix}-other"), 1, &[]).await;
    let b = broker.bootstrap.clone();
    let pattern = format!("^{prefix}-[ab]$");
    let (p2, g2) = (prefix.clone(), group.clone());
    let member = tokio::task::spawn_blocking(move || {
        let m = Member::start(&b, &g2, &pattern, &[("group.protocol", "consumer")]);
        let names = |m: &Member| -> BTreeSet<String> {
            m.consumer
                .assignment()
                .map(|t| t.elements().iter().map(|e| format!("{}/{}", e.topic(), e.partition())).collect())
                .unwrap_or_default()
        };
        let want_a: BTreeSet<String> = (0..2).map(|p| format!("{p2}-a/{p}")).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while names(&m) != want_a {
            assert!(Instant::now() < deadline, "regex subscription: {:?}", names(&m));
            std::thread::sleep(Duration::from_millis(100));
        }
        m
    })
    .await
    .unwrap();
    // a new topic matching the pattern joins the subscription
    create_topic(&broker.bootstrap, &format!("{prefix}-b"), 1, &[]).await;
    let p3 = prefix.clone();
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got: BTreeSet<String> = member
                .consumer
                .assignment()
                .map(|t| t.elements().iter().map(|e| format!("{}/{}", e.topic(), e.partition())).collect())
                .unwrap_or_default();
            if got.contains(&format!("{p3}-b/0")) {
                assert!(!got.iter().any(|n| n.contains("-other")), "non-matching topics stay out: {got:?}");
                break;
            }
            assert!(Instant::now() < deadline, "new matching topic not assigned: {got:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
        member.close();
    })
    .await
    .unwrap();
}

#[test]
fn consumer_protocol_group_survives_sigkill_without_a_new_epoch() {
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    let dir = tempfile::tempdir().unwrap();
    let addr = BinaryBroker::free_addr();
    let args = ["--set", "group.consumer.heartbeat.interval.ms=300"];
    let broker = BinaryBroker::start_on(&addr, dir.path(), &args);
    let (topic, group) = (topic_name("kip848-restart"), topic_name("g"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(create_topic(&addr, &topic, 4, &[]));
    let extra = [("group.protocol", "consumer")];
    let m1 = Member::start(&addr, &group, &topic, &extra);
    let m2 = Member::start(&addr, &group, &topic, &extra);
    let before = wait_for_balanced(&[&m1, &m2], 4, Duration::from_secs(30));
    let describe = || -> (i32, Vec<(String, i32)>) {
        let req =
            ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(StrBytes::from_string(group.clone()))]);
        let r: ConsumerGroupDescribeResponse = raw::call(&addr, ApiKey::ConsumerGroupDescribe, 0, &req);
        let g = &r.groups[0];
        (g.group_epoch, g.members.iter().map(|m| (m.member_id.to_string(), m.member_epoch)).collect())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut described = describe();
    while described.1.len() != 2 || described.1.iter().any(|(_, e)| *e != described.0) {
        assert!(Instant::now() < deadline, "group did not settle: {described:?}");
        std::thread::sleep(Duration::from_millis(100));
        described = describe();
    }
    broker.kill9();
    let _broker = BinaryBroker::start_on(&addr, dir.path(), &args);
    assert_eq!(describe(), described, "members and epochs are replayed from __consumer_offsets");
    // the members reconnect and carry on in the same epoch with the same partitions
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(wait_for_balanced(&[&m1, &m2], 4, Duration::from_secs(30)), before);
    assert_eq!(describe(), described, "no new group epoch after the restart");
    m1.close();
    m2.close();
}
