//! Several `weir` processes as one cluster: formed from Kafka's KRaft settings with no format
//! step, sharing metadata through the Raft quorum, routing clients to each partition's
//! broker, and surviving the loss of the active controller.

mod common;

use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;
use kafka_protocol::ResponseError;
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;

#[tokio::test(flavor = "multi_thread")]
async fn three_brokers_form_a_cluster_share_metadata_and_survive_the_controller() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    // a session far longer than the test waits for the dead broker to be fenced: a broker whose
    // process is gone is fenced as soon as its heartbeats are late and its port refuses
    let mut cluster = Cluster::start_with(3, &[("broker.session.timeout.ms", "60000")]);
    let bootstrap = cluster.bootstrap();

    // formed without a format step: one cluster id, in every meta.properties and in Metadata
    let ids: Vec<String> = cluster.nodes.iter().map(|n| cluster_id_of(&n.dir)).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    // every broker is registered and told to clients, whichever broker is asked
    for node in &cluster.nodes {
        let brokers = eventually(Duration::from_secs(10), "all brokers registered", || {
            let md = metadata(&node.client);
            let mut ids: Vec<i32> = md.brokers().iter().map(|b| b.id()).collect();
            ids.sort();
            (ids == [1, 2, 3]).then_some(ids)
        });
        assert_eq!(brokers, [1, 2, 3]);
    }

    // a topic created through one broker is known to all; its partitions spread over them
    let topic = topic_name("cluster");
    assert!(create(&cluster.nodes[1].client, &topic, 6, 1).await.is_ok());
    for node in &cluster.nodes {
        let leaders = eventually(Duration::from_secs(10), "the topic on every broker", || {
            let md = metadata(&node.client);
            let t = md.topics().iter().find(|t| t.name() == topic)?;
            Some(t.partitions().iter().map(|p| p.leader()).collect::<Vec<_>>())
        });
        assert_eq!(leaders.len(), 6);
        let mut distinct = leaders.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct, [1, 2, 3], "two partitions on each broker: {leaders:?}");
    }
    let too_many = create(&bootstrap, &topic_name("rf4"), 1, 4).await;
    assert_eq!(too_many.err().map(|e| e.1), Some(RDKafkaErrorCode::InvalidReplicationFactor));

    // clients are routed to each partition's broker
    let sent = produce_all(&bootstrap, &topic, 6, 300, "a").await;
    assert_eq!(consume_all(&bootstrap, &topic, 6, 300), sent);

    // the active controller dies: another takes over, metadata is intact, changes work again
    let active = controller_id(&bootstrap).await;
    assert!(active > 0, "an active controller");
    let dead = cluster.index_of(active);
    cluster.kill(dead);
    let survivors = cluster.bootstrap();
    let second = topic_name("after-failover");
    create_after_controller_failover(&survivors, active, &second, 2, 1).await;
    // the dead broker is fenced (long before its session ends): left out of Metadata, its
    // partitions without a leader
    eventually(Duration::from_secs(10), "the dead broker fenced", || {
        let md = metadata(&survivors);
        let t = md.topics().iter().find(|t| t.name() == topic)?;
        let offline = t.partitions().iter().filter(|p| p.leader() == -1).count();
        (md.brokers().len() == 2 && offline == 2).then_some(())
    });

    // it comes back: registered again, and every partition is served
    cluster.restart(dead);
    let bootstrap = cluster.bootstrap();
    eventually(Duration::from_secs(10), "the broker back", || {
        let md = metadata(&bootstrap);
        let t = md.topics().iter().find(|t| t.name() == topic)?;
        let second_known = md.topics().iter().any(|t| t.name() == second);
        (md.brokers().len() == 3 && second_known && t.partitions().iter().all(|p| p.leader() > 0)).then_some(())
    });
    let more = produce_all(&bootstrap, &topic, 6, 60, "b").await;
    let mut expected = sent.clone();
    for (p, values) in more.into_iter().enumerate() {
        expected[p].extend(values);
    }
    assert_eq!(consume_all(&bootstrap, &topic, 6, 360), expected);

    // a node of another cluster in node 3's place: the members refuse it and it refuses them,
    // it stops with the reason, and the cluster goes on without it
    let third = cluster.index_of(3);
    assert!(cluster.nodes[third].process.take().expect("running").terminate().success());
    let foreign_dir = cluster._root.path().join("foreign-3");
    std::fs::create_dir_all(&foreign_dir).unwrap();
    let foreign_id = "AnotherClusterAAAAAAAAA";
    std::fs::write(foreign_dir.join("meta.properties"), format!("version=1\ncluster.id={foreign_id}\nnode.id=3\n"))
        .unwrap();
    let own_dir = std::mem::replace(&mut cluster.nodes[third].dir, foreign_dir);
    cluster.spawn(third);
    let mut foreign = cluster.nodes[third].process.take().expect("spawned");
    let status = foreign.wait_exit(Duration::from_secs(30)).expect("the node of another cluster stops");
    assert!(!status.success());
    eventually(Duration::from_secs(5), "the refusal in the foreign node's log", || {
        foreign.logged("the metadata quorum refuses this node").then_some(())
    });
    let member = cluster.nodes[0].process.as_ref().expect("running");
    assert!(member.logged(&format!("is of cluster {foreign_id}")), "node 1 logged the refusal");
    let after = topic_name("after-foreign");
    let survivors = cluster.bootstrap();
    assert!(create(&survivors, &after, 2, 2).await.is_ok());
    // node 3 left with a controlled shutdown; the node in its place never registered
    eventually(Duration::from_secs(10), "only the two members listed", || {
        (metadata(&survivors).brokers().len() == 2).then_some(())
    });
    cluster.nodes[third].dir = own_dir;
}

/// A broker that is not a voter (`process.roles=broker`, no controller listener) joins from
/// the voters' addresses alone: it follows the metadata from the quorum, registers, is given
/// partitions and leads some, forwards admin requests, follows a new active controller, and
/// is fenced when it dies and serves again when it returns.
#[tokio::test(flavor = "multi_thread")]
async fn a_broker_that_is_not_a_voter_joins_and_serves() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::launch(Cluster::plan_with_brokers(3, 1), None);
    let broker = cluster.nodes[3].client.clone();
    assert_eq!(cluster_id_of(&cluster.nodes[3].dir), cluster_id_of(&cluster.nodes[0].dir));
    let mut ids: Vec<i32> = metadata(&broker).brokers().iter().map(|b| b.id()).collect();
    ids.sort();
    assert_eq!(ids, [1, 2, 3, 4]);

    // a topic created through it: placed over all four brokers, some partitions led by it
    let topic = topic_name("broker-only");
    assert!(create(&broker, &topic, 4, 3).await.is_ok());
    let leaders = eventually(Duration::from_secs(10), "the topic's leaders", || {
        let md = metadata(&broker);
        let t = md.topics().iter().find(|t| t.name() == topic)?;
        let leaders: Vec<i32> = t.partitions().iter().map(|p| p.leader()).collect();
        leaders.iter().all(|l| *l > 0).then_some(leaders)
    });
    assert!(leaders.contains(&4), "the broker-only node leads a partition: {leaders:?}");
    let sent = produce_all(&broker, &topic, 4, 200, "a").await;
    assert_eq!(consume_all(&broker, &topic, 4, 200), sent);

    // DescribeQuorum at the active controller: three voters, broker 4 observing
    let active = controller_id(&broker).await;
    let quorum = describe_quorum(&cluster.nodes[cluster.index_of(active)].client);
    assert_eq!(quorum.error_code, 0);
    let mut voters: Vec<i32> = quorum.current_voters.iter().map(|v| v.replica_id.0).collect();
    voters.sort();
    assert_eq!((quorum.leader_id.0, voters), (active, vec![1, 2, 3]));
    assert!(quorum.high_watermark > 0 && quorum.current_voters.iter().all(|v| v.log_end_offset > 0));
    assert!(quorum.observers.iter().any(|o| o.replica_id.0 == 4), "broker 4 observes: {quorum:?}");
    // a voter that does not lead, and the broker-only node, ask the active controller (as
    // Kafka's brokers forward DescribeQuorum): the same leader, voters and observers
    let follower = (1..=3).find(|id| *id != active).expect("a follower");
    for asked in [follower, 4] {
        let elsewhere = describe_quorum(&cluster.nodes[cluster.index_of(asked)].client);
        assert_eq!(elsewhere.error_code, 0, "asked broker {asked}");
        let mut voters: Vec<i32> = elsewhere.current_voters.iter().map(|v| v.replica_id.0).collect();
        voters.sort();
        assert_eq!((elsewhere.leader_id.0, voters), (active, vec![1, 2, 3]), "asked broker {asked}");
        assert!(elsewhere.high_watermark >= quorum.high_watermark, "asked broker {asked}: {elsewhere:?}");
        assert!(elsewhere.observers.iter().any(|o| o.replica_id.0 == 4), "asked broker {asked}: {elsewhere:?}");
    }

    // the active controller dies: the broker finds the new one and forwards to it
    let active = controller_id(&broker).await;
    assert!((1..=3).contains(&active), "a voter is the active controller: {active}");
    cluster.kill(cluster.index_of(active));
    create_after_controller_failover(&broker, active, &topic_name("broker-only-after"), 1, 2).await;

    // it dies: fenced, its partitions move; it returns and serves again
    let four = cluster.index_of(4);
    cluster.kill(four);
    let survivors = cluster.bootstrap();
    eventually(Duration::from_secs(15), "broker 4 fenced and its partitions moved", || {
        let md = metadata(&survivors);
        let t = md.topics().iter().find(|t| t.name() == topic)?;
        let moved = t.partitions().iter().all(|p| p.leader() > 0 && p.leader() != 4);
        (moved && !md.brokers().iter().any(|b| b.id() == 4)).then_some(())
    });
    cluster.restart(four);
    let more = produce_all(&broker, &topic, 4, 40, "b").await;
    let mut expected = sent;
    for (p, values) in more.into_iter().enumerate() {
        expected[p].extend(values);
    }
    assert_eq!(consume_all(&broker, &topic, 4, 240), expected);
}

/// KIP-890 across brokers: a partition leader that is not the transactional id's coordinator
/// asks the coordinator (AddPartitionsToTxn `verify_only`) before it appends a transaction's
/// first batch. A batch for a partition the producer never added is refused with
/// INVALID_TXN_STATE and not written; once added, the transaction's batches are accepted and
/// its commit marker makes them visible to read_committed consumers.
#[tokio::test(flavor = "multi_thread")]
async fn a_partition_leader_verifies_transactional_batches_with_the_coordinator() {
    use common::txn;
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = Cluster::start(3);
    let bootstrap = cluster.bootstrap();
    let id = format!("verify-{}", uuid::Uuid::new_v4().simple());
    let coordinator = eventually(Duration::from_secs(15), "a transaction coordinator", || {
        std::panic::catch_unwind(|| find_coordinator(&bootstrap, &id, 1)).ok().filter(|c| *c > 0)
    });
    let at_coordinator = cluster.nodes[cluster.index_of(coordinator)].client.clone();
    let init = eventually(Duration::from_secs(15), "a transactional producer id", || {
        let r = txn::init(&at_coordinator, &id, 60_000, 1);
        (r.error_code == 0).then_some(r)
    });
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);

    // one partition on each broker; write to one the coordinator does not lead
    let topic = topic_name("verify");
    let assignment: [&[i32]; 3] = [&[1], &[2], &[3]];
    let new = NewTopic::new(&topic, 3, TopicReplication::Variable(&assignment));
    let created = admin(&bootstrap).create_topics(&[new], &AdminOptions::new()).await.expect("request");
    assert!(created[0].is_ok(), "{created:?}");
    let leader = [1, 2, 3].into_iter().find(|b| *b != coordinator).expect("another broker");
    let partition = leader - 1;
    let at_leader = cluster.nodes[cluster.index_of(leader)].client.clone();
    let batch = |seq| producer_batch(pid, epoch, seq, 5, true);
    eventually(Duration::from_secs(10), "the topic at its leader", || {
        (txn::produce(&at_leader, &id, &topic, partition, batch(0)) != 3).then_some(())
    });

    // never added to the transaction: refused, nothing written
    assert_eq!(txn::produce(&at_leader, &id, &topic, partition, batch(0)), ResponseError::InvalidTxnState.code());
    assert_eq!(raw::end_offset(&at_leader, &topic, partition), 0);

    // added: the transaction's batches are accepted, and committed they are read
    let added = txn::add(&at_coordinator, 3, &id, pid, epoch, &[(&topic, vec![partition])]);
    assert!(added.iter().all(|(_, _, code)| *code == 0), "{added:?}");
    assert_eq!(txn::produce(&at_leader, &id, &topic, partition, batch(0)), 0);
    assert_eq!(txn::produce(&at_leader, &id, &topic, partition, batch(5)), 0);
    assert_eq!(txn::end(&at_coordinator, 3, &id, pid, epoch, true), 0);
    let reader = assigned_consumer(
        &bootstrap,
        &topic,
        &[partition],
        rdkafka::Offset::Beginning,
        &[("isolation.level", "read_committed")],
    );
    assert_eq!(consume(&reader, 10, Duration::from_secs(15)).len(), 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn replicated_partitions_fail_over_without_losing_acknowledged_records() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3);
    let bootstrap = cluster.bootstrap();
    let topic = topic_name("replicated");
    let admin = admin(&bootstrap);
    let new = NewTopic::new(&topic, 2, TopicReplication::Fixed(3)).set("min.insync.replicas", "2");
    let created = admin.create_topics(&[new], &AdminOptions::new()).await.unwrap();
    assert!(created[0].is_ok(), "{created:?}");
    for p in 0..2 {
        eventually(Duration::from_secs(15), "every replica in sync", || {
            leader_and_isr(&bootstrap, &topic, p).filter(|(l, isr)| *l > 0 && isr == &[1, 2, 3])
        });
    }

    let first = produce_all(&bootstrap, &topic, 2, 200, "before").await;
    // the leader of partition 0 dies: a follower from the ISR takes over, nothing acknowledged
    // is lost, and producing goes on
    let (leader, _) = leader_and_isr(&bootstrap, &topic, 0).unwrap();
    let dead = cluster.index_of(leader);
    cluster.kill(dead);
    let survivors = cluster.bootstrap();
    let (new_leader, isr) = eventually(Duration::from_secs(15), "a new leader from the ISR", || {
        leader_and_isr(&survivors, &topic, 0).filter(|(l, _)| *l > 0 && *l != leader)
    });
    assert!(!isr.contains(&leader), "the dead broker left the ISR: {isr:?}");
    assert_ne!(new_leader, leader);
    let second = produce_all(&survivors, &topic, 2, 200, "after").await;

    // the dead broker returns, truncates to the new leader's log, catches up and rejoins
    cluster.restart(dead);
    let bootstrap = cluster.bootstrap();
    for p in 0..2 {
        eventually(Duration::from_secs(20), "the returned broker back in the ISR", || {
            leader_and_isr(&bootstrap, &topic, p).filter(|(_, isr)| isr == &[1, 2, 3])
        });
    }
    let mut expected = first.clone();
    for (p, values) in second.into_iter().enumerate() {
        expected[p].extend(values);
    }
    assert_eq!(consume_all(&bootstrap, &topic, 2, 400), expected, "every acknowledged record once, in order");

    cluster.stop_all();
    for p in 0..2 {
        assert_replicas_identical(&cluster, &topic, p);
    }
}

/// `min.insync.replicas=3` with a replica down: acks=all is refused with NOT_ENOUGH_REPLICAS
/// before anything is appended; once the replica is back in the ISR, writes succeed again.
#[tokio::test(flavor = "multi_thread")]
async fn min_insync_replicas_refuses_writes_the_isr_cannot_hold() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3);
    let bootstrap = cluster.bootstrap();
    let topic = topic_name("min-isr");
    let new = NewTopic::new(&topic, 1, TopicReplication::Fixed(3)).set("min.insync.replicas", "3");
    let created = admin(&bootstrap).create_topics(&[new], &AdminOptions::new()).await.unwrap();
    assert!(created[0].is_ok(), "{created:?}");
    let (leader, _) = eventually(Duration::from_secs(15), "every replica in sync", || {
        leader_and_isr(&bootstrap, &topic, 0).filter(|(l, isr)| *l > 0 && isr == &[1, 2, 3])
    });
    let follower = cluster.nodes.iter().map(|n| n.id).find(|id| *id != leader).unwrap();
    let stopped = cluster.index_of(follower);
    cluster.kill(stopped);
    let survivors = cluster.bootstrap();
    eventually(Duration::from_secs(15), "the stopped follower out of the ISR", || {
        leader_and_isr(&survivors, &topic, 0).filter(|(_, isr)| isr.len() == 2)
    });
    let strict = producer(&survivors, &[("acks", "all"), ("retries", "0"), ("enable.idempotence", "false")]);
    let record = FutureRecord::to(&topic).partition(0).key("k").payload("no");
    let refused = strict.send(record, Duration::from_secs(10)).await;
    let code = refused.err().map(|(e, _)| e.rdkafka_error_code());
    assert_eq!(code, Some(Some(RDKafkaErrorCode::NotEnoughReplicas)));

    cluster.restart(stopped);
    let bootstrap = cluster.bootstrap();
    eventually(Duration::from_secs(20), "the follower back in the ISR", || {
        leader_and_isr(&bootstrap, &topic, 0).filter(|(_, isr)| isr == &[1, 2, 3])
    });
    let sent = produce_all(&bootstrap, &topic, 1, 20, "ok").await;
    assert_eq!(consume_all(&bootstrap, &topic, 1, 20), sent, "the refused record was never appended");
}

/// The group coordinator's broker: FindCoordinator as a client asks it.
fn coordinator_of(bootstrap: &str, group: &str) -> i32 {
    find_coordinator(bootstrap, group, 0)
}

/// The broker FindCoordinator names for `key` (key type 0: a group, 1: a transactional id).
fn find_coordinator(bootstrap: &str, key: &str, key_type: i8) -> i32 {
    use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest, FindCoordinatorResponse};
    let first = bootstrap.split(',').next().unwrap_or_default();
    let req = FindCoordinatorRequest::default()
        .with_key(kafka_protocol::protocol::StrBytes::from_string(key.into()))
        .with_key_type(key_type);
    let resp: FindCoordinatorResponse = raw::call(first, ApiKey::FindCoordinator, 3, &req);
    assert_eq!(resp.error_code, 0, "FindCoordinator");
    resp.node_id.0
}

/// The group coordinator dies: another broker, now leading the group's `__consumer_offsets`
/// partition, loads the group from its replica and the group goes on from its committed
/// offset; committed offsets never go back.
#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_group_outlives_its_coordinator() {
    use rdkafka::Message;
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3);
    let bootstrap = cluster.bootstrap();
    let topic = topic_name("group-failover");
    assert!(create(&bootstrap, &topic, 1, 3).await.is_ok());
    let sent = produce_all(&bootstrap, &topic, 1, 100, "g").await;
    let group = format!("group-{}", uuid::Uuid::new_v4().simple());

    let first = group_consumer(&bootstrap, &group, &topic);
    let got = consume(&first, 40, Duration::from_secs(30));
    assert_eq!(got.len(), 40);
    let mut commit = rdkafka::TopicPartitionList::new();
    commit.add_partition_offset(&topic, 0, rdkafka::Offset::Offset(40)).unwrap();
    first.commit(&commit, rdkafka::consumer::CommitMode::Sync).expect("commit at 40");
    drop(first);

    let coordinator = coordinator_of(&bootstrap, &group);
    let dead = cluster.index_of(coordinator);
    cluster.kill(dead);
    let survivors = cluster.bootstrap();
    let moved = eventually(Duration::from_secs(15), "a new group coordinator", || {
        let c = std::panic::catch_unwind(|| coordinator_of(&survivors, &group)).ok()?;
        (c != coordinator && c > 0).then_some(c)
    });
    assert_ne!(moved, coordinator);

    let second = group_consumer(&survivors, &group, &topic);
    let rest = consume(&second, 60, Duration::from_secs(30));
    assert_eq!(rest.first().map(|m| m.offset()), Some(40), "resumes from the committed offset");
    let values: Vec<String> = rest.iter().map(|m| String::from_utf8(value_of(m).unwrap()).unwrap()).collect();
    assert_eq!(values, sent[0][40..].to_vec());
    let mut commit = rdkafka::TopicPartitionList::new();
    commit.add_partition_offset(&topic, 0, rdkafka::Offset::Offset(100)).unwrap();
    second.commit(&commit, rdkafka::consumer::CommitMode::Sync).expect("commit at 100");
    let committed = second.committed(Duration::from_secs(10)).unwrap();
    let offset = committed.find_partition(&topic, 0).map(|p| p.offset());
    assert_eq!(offset, Some(rdkafka::Offset::Offset(100)));
}

/// SIGTERM on a partition leader: controlled shutdown moves leadership before the process
/// exits, so an idempotent acks=all producer writing all along sees no error, and the pause
/// it sees is reported beside the SIGKILL failover times.
#[tokio::test(flavor = "multi_thread")]
async fn a_leader_shut_down_with_sigterm_hands_over_without_producer_errors() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3);
    let bootstrap = cluster.bootstrap();
    let topic = topic_name("sigterm");
    let leader = create_in_sync(&bootstrap, &topic).await;
    let follower = cluster.nodes.iter().find(|n| n.id != leader).unwrap();
    let leader_addr = &cluster.nodes[cluster.index_of(leader)].client;
    assert_leader_hints(&follower.client, &topic, leader, leader_addr);

    let stop = Arc::new(AtomicBool::new(false));
    // (offset, value, when acknowledged); errors counted
    type Acks = Arc<Mutex<Vec<(i64, String, Instant)>>>;
    let (acked, errors): (Acks, Arc<Mutex<Vec<String>>>) = Default::default();
    let producing = {
        let (stop, acked, errors, topic, bootstrap) =
            (stop.clone(), acked.clone(), errors.clone(), topic.clone(), bootstrap.clone());
        tokio::spawn(async move {
            let p = producer(&bootstrap, &[("enable.idempotence", "true"), ("acks", "all"), ("linger.ms", "0")]);
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let value = format!("t-{i}");
                i += 1;
                let record = FutureRecord::to(&topic).partition(0).key("k").payload(&value);
                match p.send(record, Duration::from_secs(30)).await {
                    Ok(d) => acked.lock().unwrap().push((d.offset, value, Instant::now())),
                    Err((e, _)) => errors.lock().unwrap().push(e.to_string()),
                }
            }
        })
    };
    eventually(Duration::from_secs(30), "writes before the shutdown", || {
        (acked.lock().unwrap().len() >= 100).then_some(())
    });
    let dead = cluster.index_of(leader);
    let process = cluster.nodes[dead].process.take().expect("running");
    let signalled = Instant::now();
    let status = tokio::task::spawn_blocking(move || process.terminate()).await.unwrap();
    assert!(status.success(), "a clean exit: {status:?}");
    let survivors = cluster.bootstrap();
    // the leadership moved before the exit; the survivors learn of it from the metadata log,
    // which a loaded machine may apply a moment later
    eventually(Duration::from_secs(10), "leadership moved to another broker", || {
        leader_and_isr(&survivors, &topic, 0).filter(|(l, _)| *l > 0 && *l != leader)
    });
    let at_shutdown = acked.lock().unwrap().len();
    eventually(Duration::from_secs(30), "writes after the shutdown", || {
        (acked.lock().unwrap().len() >= at_shutdown + 100).then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    producing.await.unwrap();

    assert_eq!(errors.lock().unwrap().clone(), Vec::<String>::new(), "the producer saw no error");
    let acked = acked.lock().unwrap().clone();
    let pause = acked
        .windows(2)
        .filter(|w| w[1].2 >= signalled)
        .map(|w| w[1].2.duration_since(w[0].2))
        .max()
        .unwrap_or_default();
    eprintln!("SIGTERM on the leader: longest pause between acknowledgements {pause:?}");
    let acked: Vec<(i64, String)> = acked.into_iter().map(|(offset, value, _)| (offset, value)).collect();
    assert_log_holds(&survivors, &topic, &acked);
}

/// KIP-951: Produce sent to a follower answers NOT_LEADER_OR_FOLLOWER with the leader's id,
/// epoch and endpoint. A consumer's Fetch v12 is served by the follower itself (KIP-392, as
/// Kafka serves fetches from v11 on), and Fetch v10 is refused like Produce, with no hint (the
/// field came in v12).
fn assert_leader_hints(follower: &str, topic: &str, leader: i32, leader_addr: &str) {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{
        fetch_request, ApiKey, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse,
    };
    use kafka_protocol::protocol::StrBytes;
    let name = kafka_protocol::messages::TopicName(StrBytes::from_string(topic.to_string()));
    let produce =
        ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![TopicProduceData::default(
        )
        .with_name(name.clone())
        .with_partition_data(vec![PartitionProduceData::default()
            .with_index(0)
            .with_records(Some(producer_batch(-1, -1, -1, 1, false)))])]);
    let resp: ProduceResponse = raw::call(follower, ApiKey::Produce, 11, &produce);
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(p.error_code, kafka_protocol::ResponseError::NotLeaderOrFollower.code());
    assert_eq!(p.current_leader.leader_id.0, leader, "the current leader in the produce answer");
    let endpoint = resp.node_endpoints.iter().find(|e| e.node_id.0 == leader).expect("the leader's endpoint");
    assert_eq!(format!("{}:{}", endpoint.host, endpoint.port), leader_addr);

    let fetch = FetchRequest::default().with_max_wait_ms(0).with_topics(vec![fetch_request::FetchTopic::default()
        .with_topic(name)
        .with_partitions(vec![fetch_request::FetchPartition::default()
            .with_partition(0)
            .with_fetch_offset(0)
            .with_partition_max_bytes(1024)])]);
    let resp: FetchResponse = raw::call(follower, ApiKey::Fetch, 12, &fetch);
    assert_eq!(resp.responses[0].partitions[0].error_code, 0, "a follower serves consumers from v11");
    let resp: FetchResponse = raw::call(follower, ApiKey::Fetch, 10, &fetch);
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, kafka_protocol::ResponseError::NotLeaderOrFollower.code());
}

/// A leader that appended acks=1 records its followers never fetched, and then died, comes
/// back as a follower of the new leader: it cuts that tail by leader epoch, fetches what the
/// new leader wrote at those offsets, and ends byte-identical to the others.
#[tokio::test(flavor = "multi_thread")]
async fn a_returning_leader_truncates_its_divergent_tail() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3);
    let bootstrap = cluster.bootstrap();
    let topic = topic_name("divergent");
    assert!(create(&bootstrap, &topic, 1, 3).await.is_ok());
    let (leader, _) = eventually(Duration::from_secs(15), "every replica in sync", || {
        leader_and_isr(&bootstrap, &topic, 0).filter(|(l, isr)| *l > 0 && isr == &[1, 2, 3])
    });
    let before = produce_all(&bootstrap, &topic, 1, 50, "all").await.remove(0);
    let old_leader = cluster.index_of(leader);
    let one = producer(&bootstrap, &[("acks", "1"), ("linger.ms", "0"), ("enable.idempotence", "false")]);
    one.send(FutureRecord::<(), _>::to(&topic).partition(0).payload("warm-up"), Duration::from_secs(10)).await.unwrap();
    eventually(Duration::from_secs(15), "the warm-up record replicated", || {
        let c = assigned_consumer(&bootstrap, &topic, &[0], rdkafka::Offset::Beginning, &[]);
        (consume(&c, 51, Duration::from_secs(5)).len() == 51).then_some(())
    });

    // the followers freeze; the leader takes acks=1 records only it has, then dies
    let followers: Vec<usize> = (0..3).filter(|i| *i != old_leader).collect();
    for i in &followers {
        cluster.nodes[*i].process.as_ref().unwrap().signal(libc::SIGSTOP);
    }
    for i in 0..20 {
        let value = format!("lost-{i}");
        one.send(FutureRecord::<(), _>::to(&topic).partition(0).payload(&value), Duration::from_secs(5))
            .await
            .expect("acks=1 from the leader alone");
    }
    cluster.kill(old_leader);
    for i in &followers {
        cluster.nodes[*i].process.as_ref().unwrap().signal(libc::SIGCONT);
    }
    let survivors = cluster.bootstrap();
    eventually(Duration::from_secs(20), "a new leader", || {
        leader_and_isr(&survivors, &topic, 0).filter(|(l, _)| *l > 0 && *l != leader)
    });
    let after = produce_all(&survivors, &topic, 1, 30, "new").await.remove(0);

    cluster.restart(old_leader);
    let all = cluster.bootstrap();
    eventually(Duration::from_secs(30), "the old leader back in the ISR", || {
        leader_and_isr(&all, &topic, 0).filter(|(_, isr)| isr == &[1, 2, 3])
    });
    let reader = assigned_consumer(&all, &topic, &[0], rdkafka::Offset::Beginning, &[]);
    let log: Vec<String> = consume(&reader, 101, Duration::from_secs(5))
        .iter()
        .map(|m| String::from_utf8(value_of(m).unwrap()).unwrap())
        .collect();
    // a follower's fetch already waiting at the leader when it froze may have carried the
    // first acks=1 record over: that much is the new leader's log too
    let kept = log.iter().filter(|v| v.starts_with("lost-")).count();
    let mut expected = before.clone();
    expected.push("warm-up".to_string());
    expected.extend((0..kept).map(|i| format!("lost-{i}")));
    expected.extend(after);
    assert_eq!(log, expected, "the new leader's log, then what it appended");
    assert!(kept < 3, "the acks=1 tail only the dead leader had is gone ({kept} of 20 kept)");
    cluster.stop_all();
    assert_replicas_identical(&cluster, &topic, 0);
}

/// Test brokers sit on two racks: odd ids on `rack-a`, even ones on `rack-b`.
/// CreateTopics and CreatePartitions with a manual replica assignment put the replicas there
/// (the first one leads), refusing unknown brokers; placed by the controller, every partition
/// of an RF=2 topic spans both racks.
#[tokio::test(flavor = "multi_thread")]
async fn manual_assignments_are_honoured_and_placement_spreads_over_racks() {
    use rdkafka::admin::NewPartitions;
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = Cluster::start(3);
    let bootstrap = cluster.bootstrap();
    let admin = admin(&bootstrap);
    let opts = AdminOptions::new();
    let replicas_of = |topic: &str| -> Vec<(i32, Vec<i32>)> {
        let md = metadata(&bootstrap);
        let t = md.topics().iter().find(|t| t.name() == topic).expect("the topic");
        let mut parts: Vec<(i32, Vec<i32>)> =
            t.partitions().iter().map(|p| (p.leader(), p.replicas().to_vec())).collect();
        parts.sort_by_key(|(_, r)| r.clone());
        parts
    };

    let manual = topic_name("manual");
    let assignment: &[&[i32]] = &[&[2, 3], &[3, 1], &[1, 2]];
    let new = NewTopic::new(&manual, 3, TopicReplication::Variable(assignment));
    assert!(admin.create_topics(&[new], &opts).await.unwrap()[0].is_ok());
    let got = eventually(Duration::from_secs(15), "the manual topic led", || {
        let parts = replicas_of(&manual);
        parts.iter().all(|(l, _)| *l > 0).then_some(parts)
    });
    let mut expected: Vec<(i32, Vec<i32>)> = assignment.iter().map(|r| (r[0], r.to_vec())).collect();
    expected.sort_by_key(|(_, r)| r.clone());
    assert_eq!(got, expected, "replicas where assigned, the first one leading");

    let grow = NewPartitions::new(&manual, 4).assign(&[&[2, 1]]);
    assert!(admin.create_partitions(&[grow], &opts).await.unwrap()[0].is_ok());
    eventually(Duration::from_secs(15), "the added partition where assigned", || {
        replicas_of(&manual).contains(&(2, vec![2, 1])).then_some(())
    });

    // one replica list per added partition, or nothing is added
    {
        use kafka_protocol::messages::create_partitions_request::{CreatePartitionsAssignment, CreatePartitionsTopic};
        use kafka_protocol::messages::{
            ApiKey, BrokerId, CreatePartitionsRequest, CreatePartitionsResponse, TopicName,
        };
        let one_short =
            CreatePartitionsRequest::default().with_timeout_ms(5000).with_topics(vec![CreatePartitionsTopic::default(
            )
            .with_name(TopicName(kafka_protocol::protocol::StrBytes::from_string(manual.clone())))
            .with_count(6)
            .with_assignments(Some(vec![
                CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(1), BrokerId(2)])
            ]))]);
        let resp: CreatePartitionsResponse =
            raw::call(&cluster.nodes[0].client, ApiKey::CreatePartitions, 3, &one_short);
        assert_eq!(resp.results[0].error_code, kafka_protocol::ResponseError::InvalidReplicaAssignment.code());
        assert_eq!(replicas_of(&manual).len(), 4, "nothing added");
    }

    let unknown = topic_name("unknown-broker");
    let bad: &[&[i32]] = &[&[1, 9]];
    let new = NewTopic::new(&unknown, 1, TopicReplication::Variable(bad));
    let refused = admin.create_topics(&[new], &opts).await.unwrap().remove(0);
    assert_eq!(refused.map_err(|(_, code)| code), Err(RDKafkaErrorCode::InvalidReplicaAssignment));

    let spread = topic_name("racks");
    assert!(create(&bootstrap, &spread, 6, 2).await.is_ok());
    let parts = eventually(Duration::from_secs(15), "the placed topic", || {
        let parts = replicas_of(&spread);
        (parts.len() == 6).then_some(parts)
    });
    for (_, replicas) in parts {
        let racks: std::collections::BTreeSet<&str> = replicas.iter().map(|b| rack_of(*b)).collect();
        assert_eq!(racks.len(), 2, "replicas {replicas:?} on both racks");
    }
}

/// The leader is cut off from the other brokers (quorum and replication links, through
/// proxies) while producers still reach it: it acknowledges no acks=all write it cannot
/// replicate, the others elect a new leader and take the writes, and once the links heal the
/// old leader cuts its unreplicated tail; every acknowledged record is there once, at its
/// offset, and the replicas end identical.
#[tokio::test(flavor = "multi_thread")]
async fn a_leader_cut_off_from_the_cluster_acknowledges_nothing_it_cannot_replicate() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start_with_faults(3);
    let bootstrap = cluster.bootstrap();
    let topic = topic_name("cut-off");
    let leader = create_in_sync(&bootstrap, &topic).await;

    // one producer knows every broker (the cut-off leader too), the other only the majority
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(i64, String)>>> = Default::default();
    let others: String =
        cluster.nodes.iter().filter(|n| n.id != leader).map(|n| n.client.clone()).collect::<Vec<_>>().join(",");
    let settings = [("request.timeout.ms", "3000")];
    let produce = |bootstrap: String, tag: &'static str| {
        keep_producing(bootstrap, topic.clone(), tag, &settings, stop.clone(), acked.clone())
    };
    let everyone = produce(bootstrap.clone(), "all");
    eventually(Duration::from_secs(30), "writes before the cut", || (acked.lock().unwrap().len() >= 100).then_some(()));
    let faults = cluster.faults.as_ref().expect("proxied");
    faults.isolate(leader);
    let at_cut = acked.lock().unwrap().len();
    // the others elect a leader among themselves and take the writes
    let (successor, _) = eventually(Duration::from_secs(20), "a leader on the majority side", || {
        leader_and_isr(&others, &topic, 0).filter(|(l, _)| *l > 0 && *l != leader)
    });
    let majority = produce(others.clone(), "majority");
    eventually(Duration::from_secs(30), "writes acknowledged by the new leader", || {
        (acked.lock().unwrap().iter().filter(|(_, v)| v.starts_with("majority")).count() >= 50).then_some(())
    });
    faults.heal();
    eventually(Duration::from_secs(30), "the old leader back in the ISR", || {
        leader_and_isr(&bootstrap, &topic, 0).filter(|(_, isr)| isr == &[1, 2, 3])
    });
    stop.store(true, Ordering::SeqCst);
    everyone.await.unwrap();
    majority.await.unwrap();

    let acked = acked.lock().unwrap().clone();
    assert_log_holds(&bootstrap, &topic, &acked);
    eprintln!("cut off leader {leader}, successor {successor}: {} acknowledged, {at_cut} before the cut", acked.len());
    cluster.stop_all();
    assert_replicas_identical(&cluster, &topic, 0);
}

/// A rolling restart (issue 15): each broker in turn is stopped with SIGTERM, started again
/// and waited for until it is back in the ISR, under an idempotent acks=all producer and a
/// committing consumer group. No record fails, the group meets no error beyond a broker
/// being away, its committed offset never goes back, and every acknowledged record is stored
/// once, identically on every replica.
#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_under_load_loses_nothing_and_fails_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3);
    let bootstrap = cluster.bootstrap();
    let topic = topic_name("rolling");
    create_in_sync(&bootstrap, &topic).await;
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(i64, String)>>> = Default::default();
    let writer = keep_producing(bootstrap.clone(), topic.clone(), "r", &[], stop.clone(), acked.clone());

    // the group reads along and commits what it read; its commits never go back
    let group = format!("rolling-{}", uuid::Uuid::new_v4().simple());
    let went_back = Arc::new(AtomicBool::new(false));
    let reader = committing_group(&bootstrap, &topic, &group, stop.clone(), went_back.clone());
    eventually(Duration::from_secs(30), "writes before the restarts", || {
        (acked.lock().unwrap().len() >= 100).then_some(())
    });

    for i in 0..cluster.nodes.len() {
        let before = acked.lock().unwrap().len();
        let node = cluster.nodes[i].process.take().expect("running");
        assert!(node.terminate().success(), "broker {} stopped cleanly", cluster.nodes[i].id);
        cluster.restart(i);
        eventually(Duration::from_secs(30), "the restarted broker back in the ISR", || {
            leader_and_isr(&cluster.bootstrap(), &topic, 0).filter(|(l, isr)| *l > 0 && isr.len() == 3)
        });
        eventually(Duration::from_secs(30), "writes go on", || {
            (acked.lock().unwrap().len() > before + 50).then_some(())
        });
    }
    stop.store(true, Ordering::SeqCst);
    assert_eq!(writer.await.unwrap(), 0, "no record failed");
    let progress = reader.join().expect("the group met no error beyond a broker away");
    let (read, committed) = (progress.consumed, progress.last_committed);
    assert!(read > 0 && committed > 0, "the group read {read} and committed {committed}");
    assert!(!went_back.load(Ordering::SeqCst), "a committed offset went back");

    let acked = acked.lock().unwrap().clone();
    assert_log_holds(&bootstrap, &topic, &acked);
    eprintln!("rolling restart: {} acknowledged, group read {read}, committed {committed}", acked.len());
    cluster.stop_all();
    assert_replicas_identical(&cluster, &topic, 0);
}

/// Disk loss (issue 15): a follower's data directory is deleted while it is down. It starts
/// empty with the same node id, rejoins the quorum and the cluster, copies the partition back
/// from its leader and returns to the ISR; nothing acknowledged is lost and the replicas end
/// byte-identical.
#[tokio::test(flavor = "multi_thread")]
async fn a_broker_that_lost_its_disk_copies_everything_back() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3);
    let bootstrap = cluster.bootstrap();
    let topic = topic_name("disk-loss");
    let leader = create_in_sync(&bootstrap, &topic).await;
    let sent = produce_all(&bootstrap, &topic, 1, 300, "before").await;

    let lost = cluster.nodes.iter().position(|n| n.id != leader).expect("a follower");
    let lost_id = cluster.nodes[lost].id;
    let node = cluster.nodes[lost].process.take().expect("running");
    assert!(node.terminate().success());
    std::fs::remove_dir_all(&cluster.nodes[lost].dir).unwrap();
    let more = produce_all(&cluster.bootstrap(), &topic, 1, 100, "while-away").await;

    cluster.restart(lost);
    eventually(Duration::from_secs(30), "the emptied broker back in the ISR", || {
        leader_and_isr(&bootstrap, &topic, 0).filter(|(_, isr)| isr.contains(&lost_id) && isr.len() == 3)
    });
    let mut expected = sent[0].clone();
    expected.extend(more[0].iter().cloned());
    assert_eq!(consume_all(&bootstrap, &topic, 1, 400), vec![expected]);
    cluster.stop_all();
    assert_replicas_identical(&cluster, &topic, 0);
}

/// Exactly-once consume-transform-produce across the death of its transaction coordinator:
/// the broker leading the transactional id's `__transaction_state` partition is SIGKILLed
/// halfway; the new leader loads the id's state from its replica, the application goes on,
/// and the output holds every input record transformed exactly once, with the group's
/// offsets committed in the same transactions.
#[tokio::test(flavor = "multi_thread")]
async fn exactly_once_outlives_the_transaction_coordinator() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::Message;
    const N: usize = 300;
    const T: Duration = Duration::from_secs(30);
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3);
    let bootstrap = cluster.bootstrap();
    let (input, output) = (topic_name("eos-in"), topic_name("eos-out"));
    assert!(create(&bootstrap, &input, 1, 3).await.is_ok());
    assert!(create(&bootstrap, &output, 1, 3).await.is_ok());
    let sent = produce_all(&bootstrap, &input, 1, N, "in").await.remove(0);
    let txn_id = format!("eos-{}", uuid::Uuid::new_v4().simple());
    let group = format!("eos-group-{}", uuid::Uuid::new_v4().simple());

    let b = bootstrap.clone();
    let (txn, g, inp, out) = (txn_id.clone(), group.clone(), input.clone(), output.clone());
    let app = std::thread::spawn(move || {
        let consumer: BaseConsumer = client_config(&b)
            .set("group.id", &g)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .create()
            .unwrap();
        consumer.subscribe(&[inp.as_str()]).unwrap();
        let p: BaseProducer = client_config(&b)
            .set("transactional.id", &txn)
            .set("message.timeout.ms", "60000")
            .set("transaction.timeout.ms", "60000")
            .create()
            .unwrap();
        p.init_transactions(T).expect("init_transactions");
        let (mut processed, mut aborts) = (0usize, 0usize);
        let deadline = Instant::now() + Duration::from_secs(120);
        while processed < N && Instant::now() < deadline {
            let batch = consume(&consumer, 20, Duration::from_secs(1));
            if batch.is_empty() {
                continue;
            }
            let next = batch.last().map(|m| m.offset() + 1).unwrap();
            let attempt = (|| {
                p.begin_transaction()?;
                for m in &batch {
                    let v = format!("out-{}", String::from_utf8_lossy(m.payload().unwrap_or_default()));
                    p.send(BaseRecord::<(), String>::to(&out).payload(&v).partition(0)).map_err(|(e, _)| e)?;
                }
                p.flush(T)?;
                let mut tpl = rdkafka::TopicPartitionList::new();
                tpl.add_partition_offset(&inp, 0, rdkafka::Offset::Offset(next))?;
                p.send_offsets_to_transaction(&tpl, &consumer.group_metadata().unwrap(), T)?;
                p.commit_transaction(T)
            })();
            match attempt {
                Ok(()) => processed += batch.len(),
                Err(e) => {
                    // abortable: abort, and process again from the group's committed offset
                    let abortable = matches!(&e, rdkafka::error::KafkaError::Transaction(t) if t.txn_requires_abort());
                    assert!(abortable || e.rdkafka_error_code().is_some(), "transaction failed for good: {e}");
                    eprintln!("transaction failed ({e}); aborting");
                    let _ = p.abort_transaction(T);
                    aborts += 1;
                    let committed = consumer.committed(T).expect("committed offsets");
                    let from = committed
                        .find_partition(&inp, 0)
                        .map(|e| e.offset())
                        .filter(|o| matches!(o, rdkafka::Offset::Offset(_)))
                        .unwrap_or(rdkafka::Offset::Beginning);
                    consumer.seek(&inp, 0, from, T).expect("rewind to the committed offset");
                }
            }
        }
        (processed, aborts)
    });

    // let a few transactions commit, then kill the transaction coordinator
    let before = eventually(Duration::from_secs(60), "the first transactions", || {
        committed_offset(&bootstrap, &group, &input).filter(|o| *o >= 60)
    });
    let coordinator = find_coordinator(&bootstrap, &txn_id, 1);
    cluster.kill(cluster.index_of(coordinator));
    let survivors = cluster.bootstrap();
    eprintln!("killed transaction coordinator {coordinator} at committed offset {before}");
    let (processed, aborts) = app.join().unwrap();
    assert!(processed >= N, "the application processed {processed} of {N} ({aborts} aborted)");
    let moved = find_coordinator(&survivors, &txn_id, 1);
    assert_ne!(moved, coordinator, "another broker coordinates the transactional id");

    let reader = assigned_consumer(
        &survivors,
        &output,
        &[0],
        rdkafka::Offset::Beginning,
        &[("isolation.level", "read_committed")],
    );
    let got = consume(&reader, N, Duration::from_secs(30));
    let mut got: Vec<String> = got.iter().map(|m| String::from_utf8(value_of(m).unwrap()).unwrap()).collect();
    got.sort();
    let mut expected: Vec<String> = sent.iter().map(|v| format!("out-{v}")).collect();
    expected.sort();
    assert_eq!(got, expected, "every input record transformed exactly once ({aborts} transactions aborted)");
    assert!(consume(&reader, 1, Duration::from_secs(2)).is_empty(), "nothing more is visible");
    assert_eq!(committed_offset(&survivors, &group, &input), Some(N as i64));
}

/// The group's committed offset for partition 0 of `topic`, read with OffsetFetch.
fn committed_offset(bootstrap: &str, group: &str, topic: &str) -> Option<i64> {
    let c: BaseConsumer = client_config(bootstrap).set("group.id", group).create().ok()?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let committed = c.committed_offsets(tpl, Duration::from_secs(5)).ok()?;
    match committed.find_partition(topic, 0)?.offset() {
        rdkafka::Offset::Offset(o) => Some(o),
        _ => None,
    }
}

const CYCLES: usize = 20;
const DRILL_GROUP: &str = "kill-cycles-group";

/// The issue's durability drill: the partition leader is SIGKILLed 20 times (and restarted)
/// while an idempotent acks=all producer writes and a group consumes and commits. Afterwards
/// every acknowledged record is in the log once, at its acknowledged offset; the replicas
/// are byte-identical; the group's committed offset never went back.
#[tokio::test(flavor = "multi_thread")]
async fn leaders_killed_twenty_times_lose_nothing_acknowledged() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3);
    let bootstrap = cluster.bootstrap();
    let topic = topic_name("kill-cycles");
    create_in_sync(&bootstrap, &topic).await;

    let stop = Arc::new(AtomicBool::new(false));
    // the producer: one record at a time, each acknowledged offset remembered
    let acked: Arc<Mutex<Vec<(i64, String)>>> = Default::default();
    let producing = keep_producing(bootstrap.clone(), topic.clone(), "r", &[], stop.clone(), acked.clone());
    // the group: consumes, commits every 20 records; the committed offset must only grow
    let committed_went_back = Arc::new(AtomicBool::new(false));
    let consuming = committing_group(&bootstrap, &topic, DRILL_GROUP, stop.clone(), committed_went_back.clone());

    let mut failovers = Vec::new();
    for cycle in 0..CYCLES {
        let bootstrap = cluster.bootstrap();
        let (leader, _) = eventually(Duration::from_secs(20), "a leader", || {
            leader_and_isr(&bootstrap, &topic, 0).filter(|(l, _)| *l > 0)
        });
        let dead = cluster.index_of(leader);
        let killed = Instant::now();
        cluster.kill(dead);
        let survivors = cluster.bootstrap();
        eventually(Duration::from_secs(20), "a new leader", || {
            leader_and_isr(&survivors, &topic, 0).filter(|(l, _)| *l > 0 && *l != leader)
        });
        failovers.push(killed.elapsed());
        cluster.restart(dead);
        let bootstrap = cluster.bootstrap();
        eventually(Duration::from_secs(30), "all three back in the ISR", || {
            leader_and_isr(&bootstrap, &topic, 0).filter(|(_, isr)| isr == &[1, 2, 3])
        });
        eprintln!("cycle {cycle}: killed {leader}, new leader after {:?}", failovers.last().unwrap());
    }
    stop.store(true, Ordering::SeqCst);
    producing.await.unwrap();
    let progress = consuming.join().unwrap();

    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 200, "the producer kept going: {} records acknowledged", acked.len());
    assert_log_holds(&cluster.bootstrap(), &topic, &acked);
    assert!(progress.last_committed > 0, "the group committed: {progress:?}");
    failovers.sort();
    eprintln!(
        "{} acknowledged, failover median {:?}, max {:?}",
        acked.len(),
        failovers[failovers.len() / 2],
        failovers.last().unwrap()
    );

    cluster.stop_all();
    assert_replicas_identical(&cluster, &topic, 0);
    assert!(!committed_went_back.load(Ordering::SeqCst), "a committed offset went back");
}

/// The value of one `/metrics` sample (`name{labels}`), if present.
fn metric(exposition: &str, sample: &str) -> Option<u64> {
    exposition
        .lines()
        .find(|l| l.starts_with(sample) && l[sample.len()..].starts_with(' '))?
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

/// Followers fetch through one fetcher per source broker (`num.replica.fetchers=1`): broker
/// 2 follows 40 partitions from broker 1 and 20 from broker 3 with two fetchers — two
/// replication connections — each of whose Fetch requests names many partitions (all of them
/// when it opens its fetch session; then, KIP-227, only those that moved, and none while
/// idle), and every partition still replicates what acks=all acknowledged.
#[tokio::test(flavor = "multi_thread")]
async fn a_follower_fetches_many_partitions_over_one_connection_per_leader() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::plan(3);
    let (leader_metrics, metrics_addr) = (fixed_port_addr(), fixed_port_addr());
    cluster.nodes[0].args = vec!["--set".into(), format!("metrics.listener={leader_metrics}")];
    cluster.nodes[1].args = vec!["--set".into(), format!("metrics.listener={metrics_addr}")];
    let mut cluster = Cluster::launch(cluster, None);
    let bootstrap = cluster.bootstrap();
    let topic = topic_name("many");
    let mut assignment: Vec<&[i32]> = vec![&[1, 2, 3]; 40];
    assignment.extend(vec![&[3, 2, 1] as &[i32]; 20]);
    create_assigned(&bootstrap, &topic, &assignment).await;
    let sent = produce_all(&bootstrap, &topic, 60, 180, "many").await;

    let exposition = http_get(&metrics_addr, "/metrics");
    let fetchers: Vec<&str> =
        exposition.lines().filter(|l| l.starts_with("weir_replica_fetcher_partitions{")).collect();
    assert_eq!(fetchers.len(), 2, "one fetcher per source broker: {fetchers:?}");
    for (leader, partitions) in [(1, 40), (3, 20)] {
        let labels = format!("{{leader=\"{leader}\",fetcher=\"0\"}}");
        let followed = metric(&exposition, &format!("weir_replica_fetcher_partitions{labels}"));
        assert_eq!(followed, Some(partitions), "partitions followed from broker {leader}");
    }
    // broker 1 holds one fetch session per follower, with all 40 partitions each
    eventually(Duration::from_secs(10), "one session per follower at the leader", || {
        let e = http_get(&leader_metrics, "/metrics");
        let of = |f: i32| metric(&e, &format!("weir_fetch_session_partitions{{follower=\"{f}\"}}"));
        (of(2) == Some(40) && of(3) == Some(40)).then_some(())
    });
    // idle: fetches go on every replica.fetch.wait.max.ms and name no partition
    let named = |e: &str| metric(e, "weir_replica_fetcher_partitions_named_total{leader=\"1\",fetcher=\"0\"}");
    let requests = |e: &str| metric(e, "weir_replica_fetcher_requests_total{leader=\"1\",fetcher=\"0\"}");
    let settled = eventually(Duration::from_secs(10), "the follower idle", || {
        let before = http_get(&metrics_addr, "/metrics");
        std::thread::sleep(Duration::from_millis(1500));
        let after = http_get(&metrics_addr, "/metrics");
        (named(&before) == named(&after)).then_some((requests(&before), requests(&after)))
    });
    assert!(settled.1 > settled.0, "idle fetches still go to the leader: {settled:?}");

    cluster.stop_all();
    for p in 0..60 {
        assert_replicas_identical(&cluster, &topic, p);
    }
    assert!(sent.iter().all(|p| p.len() == 3));
}
