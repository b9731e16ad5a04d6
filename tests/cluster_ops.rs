//! What an operator does to a running cluster (issue 15), through Kafka's admin APIs as
//! `kafka-reassign-partitions.sh` and `kafka-leader-election.sh` send them: moving a
//! partition's replicas under load, cancelling a move, throttling the copy (KIP-73), and
//! moving leadership back to preferred replicas by request and by itself.

mod common;

use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;
use kafka_protocol::messages::{ApiKey, BrokerId, TopicName};
use kafka_protocol::ResponseError;
use rdkafka::admin::{AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};

fn name(s: &str) -> TopicName {
    TopicName(txn::s(s))
}

/// AlterPartitionReassignments v1 for one partition (`None` cancels); its error code.
fn reassign(addr: &str, topic: &str, partition: i32, target: Option<&[i32]>, allow_rf_change: bool) -> i16 {
    use kafka_protocol::messages::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
    use kafka_protocol::messages::{AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse};
    let replicas = target.map(|t| t.iter().map(|b| BrokerId(*b)).collect());
    let req = AlterPartitionReassignmentsRequest::default()
        .with_allow_replication_factor_change(allow_rf_change)
        .with_timeout_ms(30_000)
        .with_topics(vec![ReassignableTopic::default().with_name(name(topic)).with_partitions(vec![
            ReassignablePartition::default().with_partition_index(partition).with_replicas(replicas),
        ])]);
    let resp: AlterPartitionReassignmentsResponse = raw::call(addr, ApiKey::AlterPartitionReassignments, 1, &req);
    assert_eq!(resp.error_code, 0, "{:?}", resp.error_message);
    resp.responses[0].partitions[0].error_code
}

/// The running reassignments: (topic, partition, replicas, adding, removing).
type Ongoing = (String, i32, Vec<i32>, Vec<i32>, Vec<i32>);

fn list_reassignments(addr: &str) -> Vec<Ongoing> {
    use kafka_protocol::messages::{ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse};
    let req = ListPartitionReassignmentsRequest::default().with_timeout_ms(10_000);
    let resp: ListPartitionReassignmentsResponse = raw::call(addr, ApiKey::ListPartitionReassignments, 0, &req);
    assert_eq!(resp.error_code, 0);
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
    resp.topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                let topic = t.name.0.to_string();
                (topic, p.partition_index, ids(&p.replicas), ids(&p.adding_replicas), ids(&p.removing_replicas))
            })
        })
        .collect()
}

/// ElectLeaders v2 (`election`: 0 preferred, 1 unclean) for `partitions` (`None`: all);
/// each (topic, partition, error code).
fn elect(addr: &str, election: i8, partitions: Option<&[(&str, i32)]>) -> Vec<(String, i32, i16)> {
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};
    let topics = partitions.map(|ps| {
        ps.iter()
            .map(|(t, p)| TopicPartitions::default().with_topic(name(t)).with_partitions(vec![*p]))
            .collect::<Vec<_>>()
    });
    let req = ElectLeadersRequest::default()
        .with_election_type(election)
        .with_topic_partitions(topics)
        .with_timeout_ms(30_000);
    let resp: ElectLeadersResponse = raw::call(addr, ApiKey::ElectLeaders, 2, &req);
    assert_eq!(resp.error_code, 0);
    resp.replica_election_results
        .iter()
        .flat_map(|t| t.partition_result.iter().map(|p| (t.topic.0.to_string(), p.partition_id, p.error_code)))
        .collect()
}

/// A partition's replicas (the preferred leader first) as Metadata lists them.
fn replicas_of(bootstrap: &str, topic: &str, partition: i32) -> Vec<i32> {
    let md = metadata(bootstrap);
    let t = md.topics().iter().find(|t| t.name() == topic).expect("topic listed");
    t.partitions().iter().find(|p| p.id() == partition).expect("partition listed").replicas().to_vec()
}

/// The size of a broker's copy of a partition, from DescribeLogDirs asked of that broker.
fn replica_size(addr: &str, topic: &str, partition: i32) -> Option<i64> {
    use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
    use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};
    let req = DescribeLogDirsRequest::default().with_topics(Some(vec![DescribableLogDirTopic::default()
        .with_topic(name(topic))
        .with_partitions(vec![partition])]));
    let resp: DescribeLogDirsResponse = raw::call(addr, ApiKey::DescribeLogDirs, 1, &req);
    let result = resp.results.first()?;
    let t = result.topics.iter().find(|t| t.name.0.as_str() == topic)?;
    t.partitions.iter().find(|p| p.partition_index == partition).map(|p| p.partition_size)
}

/// Creates `topic` with the replicas of each partition given.
async fn create_placed(bootstrap: &str, topic: &str, assignment: &[&[i32]]) {
    let new = NewTopic::new(topic, assignment.len() as i32, TopicReplication::Variable(assignment));
    let created = admin(bootstrap).create_topics(&[new], &AdminOptions::new()).await.unwrap();
    assert!(created[0].is_ok(), "{created:?}");
}

/// Sets dynamic configs of a broker (as `kafka-configs.sh --entity-type brokers`) or a topic.
async fn alter_configs(bootstrap: &str, resource: ResourceSpecifier<'_>, entries: &[(&str, &str)]) {
    let mut alter = AlterConfig::new(resource);
    for (k, v) in entries {
        alter = alter.set(k, v);
    }
    let done = admin(bootstrap).alter_configs(&[alter], &AdminOptions::new()).await.unwrap();
    assert!(done[0].is_ok(), "{done:?}");
}

/// Writes `n` records of `size` bytes to partition 0, all acknowledged, in batches of at
/// most 64 KB (a replica fetch returns at least one whole batch, throttled or not).
async fn fill(bootstrap: &str, topic: &str, n: usize, size: usize) {
    let p = producer(bootstrap, &[("acks", "all"), ("linger.ms", "5"), ("batch.size", "65536")]);
    let value = vec![b'x'; size];
    let sends: Vec<_> = (0..n)
        .map(|i| {
            let key = i.to_string();
            p.send_result(rdkafka::producer::FutureRecord::to(topic).partition(0).key(&key).payload(&value))
                .map_err(|(e, _)| e)
                .expect("queued")
        })
        .collect();
    for s in sends {
        s.await.expect("delivered").expect("acknowledged");
    }
}

fn dir_has_partition(cluster: &Cluster, id: i32, topic: &str, partition: i32) -> bool {
    cluster.nodes[cluster.index_of(id)].dir.join(format!("{topic}-{partition}")).exists()
}

/// A partition moves from brokers 1,2 to 2,3 while an idempotent acks=all producer writes to
/// it: no record fails, every acknowledged record is there once at its offset, broker 1's copy
/// is removed and the new replicas are byte-identical. A throttled move is listed while it
/// runs and cancelling it restores the replicas. Kafka's per-partition errors for bad
/// requests.
#[tokio::test(flavor = "multi_thread")]
async fn a_reassignment_under_load_moves_the_partition_and_a_cancelled_one_restores_it() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3);
    let bootstrap = cluster.bootstrap();
    let addr = cluster.nodes[0].client.clone();
    create_placed(&bootstrap, "moving", &[&[1, 2]]).await;
    eventually(Duration::from_secs(15), "both replicas in sync", || {
        leader_and_isr(&bootstrap, "moving", 0).filter(|(l, isr)| *l == 1 && isr == &[1, 2])
    });

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let producing = keep_producing(bootstrap.clone(), "moving".into(), "m", &[], stop.clone(), acked.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(reassign(&addr, "moving", 0, Some(&[2, 3]), true), 0);
    eventually(Duration::from_secs(30), "the partition on brokers 2 and 3", || {
        let moved = replicas_of(&bootstrap, "moving", 0) == [2, 3];
        moved.then(|| leader_and_isr(&bootstrap, "moving", 0)).flatten().filter(|(_, isr)| isr == &[2, 3])
    });
    assert!(list_reassignments(&addr).is_empty(), "the move is over");
    eventually(Duration::from_secs(10), "broker 1's copy removed", || {
        (!dir_has_partition(&cluster, 1, "moving", 0)).then_some(())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(producing.await.unwrap(), 0, "no record failed during the move");
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 20, "records were written during the move: {}", acked.len());
    assert_log_holds(&bootstrap, "moving", &acked);

    // Kafka's refusals
    assert_eq!(reassign(&addr, "nope", 0, Some(&[1]), true), ResponseError::UnknownTopicOrPartition.code());
    assert_eq!(reassign(&addr, "moving", 7, Some(&[1]), true), ResponseError::UnknownTopicOrPartition.code());
    assert_eq!(reassign(&addr, "moving", 0, Some(&[1, 9]), true), ResponseError::InvalidReplicaAssignment.code());
    assert_eq!(reassign(&addr, "moving", 0, Some(&[1, 1]), true), ResponseError::InvalidReplicaAssignment.code());
    assert_eq!(reassign(&addr, "moving", 0, None, true), ResponseError::NoReassignmentInProgress.code());
    assert_eq!(reassign(&addr, "moving", 0, Some(&[1, 2, 3]), false), ResponseError::InvalidReplicationFactor.code());

    // a move throttled to 20 KB/s of ~1 MB runs long enough to be listed and cancelled
    fill(&bootstrap, "moving", 100, 10_000).await;
    let throttle = [("leader.replication.throttled.rate", "20000"), ("follower.replication.throttled.rate", "20000")];
    alter_configs(&bootstrap, ResourceSpecifier::Broker(1), &throttle).await;
    let topic_throttle =
        [("leader.replication.throttled.replicas", "0:2,0:3"), ("follower.replication.throttled.replicas", "0:1")];
    alter_configs(&bootstrap, ResourceSpecifier::Topic("moving"), &topic_throttle).await;
    assert_eq!(reassign(&addr, "moving", 0, Some(&[2, 1]), true), 0);
    let listed = list_reassignments(&cluster.nodes[2].client);
    assert_eq!(listed, vec![("moving".to_string(), 0, vec![2, 1, 3], vec![1], vec![3])]);
    assert_eq!(replicas_of(&bootstrap, "moving", 0), [2, 1, 3], "Metadata lists every replica while moving");
    eventually(Duration::from_secs(10), "broker 1 copying", || {
        dir_has_partition(&cluster, 1, "moving", 0).then_some(())
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let copied = replica_size(&cluster.nodes[0].client, "moving", 0).expect("broker 1 has a copy");
    assert!(copied < 500_000, "the throttle holds the copy back: {copied} bytes in ~2 s");
    assert_eq!(reassign(&addr, "moving", 0, None, true), 0, "cancelled");
    assert!(list_reassignments(&addr).is_empty());
    assert_eq!(replicas_of(&bootstrap, "moving", 0), [2, 3]);
    eventually(Duration::from_secs(10), "the added replica removed again", || {
        (!dir_has_partition(&cluster, 1, "moving", 0)).then_some(())
    });

    cluster.stop_all();
    let copy = |id: i32| partition_bytes(&cluster.nodes[cluster.index_of(id)].dir, "moving", 0);
    assert!(!copy(2).is_empty());
    assert_eq!(copy(2), copy(3), "the new replicas are byte-identical");
}

/// A partition copied to a new broker with leader and follower throttles of 2 MB/s: the copy
/// rate, measured on the new broker's replica between a fifth and four fifths of the way, is
/// within 10 % of the throttle, and the move then completes.
#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_reassignment_copies_at_the_throttled_rate() {
    const RATE: f64 = 2_000_000.0;
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3);
    let bootstrap = cluster.bootstrap();
    let addr = cluster.nodes[0].client.clone();
    create_placed(&bootstrap, "throttled", &[&[1, 2]]).await;
    fill(&bootstrap, "throttled", 1000, 12_000).await;
    let size = replica_size(&addr, "throttled", 0).expect("leader's copy") as f64;
    assert!(size > 10e6, "{size}");
    let rate = RATE.to_string();
    let throttle =
        [("leader.replication.throttled.rate", rate.as_str()), ("follower.replication.throttled.rate", rate.as_str())];
    alter_configs(&bootstrap, ResourceSpecifier::Broker(1), &throttle).await;
    let topic_throttle =
        [("leader.replication.throttled.replicas", "0:1,0:2"), ("follower.replication.throttled.replicas", "0:3")];
    alter_configs(&bootstrap, ResourceSpecifier::Topic("throttled"), &topic_throttle).await;
    assert_eq!(reassign(&addr, "throttled", 0, Some(&[1, 2, 3]), true), 0);
    let new = cluster.nodes[2].client.clone();
    let (mut from, mut to) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while to.is_none() {
        assert!(Instant::now() < deadline, "the copy did not finish");
        let copied = replica_size(&new, "throttled", 0).unwrap_or(0) as f64;
        if from.is_none() && copied >= size * 0.2 {
            from = Some((Instant::now(), copied));
        }
        if copied >= size * 0.8 {
            to = Some((Instant::now(), copied));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let ((t0, b0), (t1, b1)) = (from.unwrap(), to.unwrap());
    let measured = (b1 - b0) / t1.duration_since(t0).as_secs_f64();
    println!("throttled copy: {measured:.0} B/s against a throttle of {RATE:.0} B/s");
    assert!((measured / RATE - 1.0).abs() < 0.10, "copy rate {measured:.0} B/s, throttle {RATE:.0} B/s");
    eventually(Duration::from_secs(30), "the new replica in sync", || {
        leader_and_isr(&bootstrap, "throttled", 0).filter(|(_, isr)| isr == &[1, 2, 3])
    });
    assert!(list_reassignments(&addr).is_empty());
    cluster.stop_all();
}

/// ElectLeaders: Kafka's per-partition errors (ELECTION_NOT_NEEDED,
/// PREFERRED_LEADER_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION), and a preferred election
/// moving leadership back to the first replica once it is in sync again.
#[tokio::test(flavor = "multi_thread")]
async fn a_preferred_election_moves_leadership_back() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start_with(3, &[("auto.leader.rebalance.enable", "false")]);
    let bootstrap = cluster.bootstrap();
    let addr = cluster.nodes[1].client.clone();
    create_placed(&bootstrap, "elect", &[&[1, 2, 3], &[2, 3, 1]]).await;
    eventually(Duration::from_secs(15), "all in sync", || {
        leader_and_isr(&bootstrap, "elect", 0).filter(|(l, isr)| *l == 1 && isr == &[1, 2, 3])
    });
    let asked = [("elect", 0), ("elect", 1), ("elect", 5), ("nope", 0)];
    let results = elect(&addr, 0, Some(&asked));
    let code = |topic: &str, p: i32| results.iter().find(|r| r.0 == topic && r.1 == p).map(|r| r.2);
    assert_eq!(code("elect", 0), Some(ResponseError::ElectionNotNeeded.code()));
    assert_eq!(code("elect", 1), Some(ResponseError::ElectionNotNeeded.code()));
    assert_eq!(code("elect", 5), Some(ResponseError::UnknownTopicOrPartition.code()));
    assert_eq!(code("nope", 0), Some(ResponseError::UnknownTopicOrPartition.code()));
    assert!(elect(&addr, 0, None).is_empty(), "all partitions: none needs an election");
    assert_eq!(elect(&addr, 1, Some(&[("elect", 0)]))[0].2, ResponseError::ElectionNotNeeded.code(), "unclean");

    cluster.kill(0);
    eventually(Duration::from_secs(15), "partition 0 led by broker 2", || {
        leader_and_isr(&bootstrap, "elect", 0).filter(|(l, _)| *l == 2)
    });
    assert_eq!(elect(&addr, 0, Some(&[("elect", 0)]))[0].2, ResponseError::PreferredLeaderNotAvailable.code());
    cluster.restart(0);
    eventually(Duration::from_secs(30), "broker 1 back in sync", || {
        leader_and_isr(&bootstrap, "elect", 0).filter(|(_, isr)| isr == &[1, 2, 3])
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(leader_and_isr(&bootstrap, "elect", 0).unwrap().0, 2, "no rebalancing when it is off");
    assert_eq!(elect(&addr, 0, None), vec![("elect".to_string(), 0, 0)], "all partitions: the one that needed it");
    // (the answer comes once the controller decided; brokers learn it from the metadata log)
    eventually(Duration::from_secs(10), "the preferred leader leads again", || {
        leader_and_isr(&bootstrap, "elect", 0).filter(|(l, _)| *l == 1)
    });
    cluster.stop_all();
}

/// `auto.leader.rebalance.enable` (checked every second here): once the preferred leader is
/// back in sync the controller moves leadership to it by itself.
#[tokio::test(flavor = "multi_thread")]
async fn the_controller_rebalances_leadership_by_itself() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start_with(3, &[("leader.imbalance.check.interval.seconds", "1")]);
    let bootstrap = cluster.bootstrap();
    create_placed(&bootstrap, "elect", &[&[1, 2, 3], &[2, 3, 1], &[3, 1, 2]]).await;
    eventually(Duration::from_secs(15), "all in sync", || {
        leader_and_isr(&bootstrap, "elect", 0).filter(|(l, isr)| *l == 1 && isr == &[1, 2, 3])
    });
    cluster.kill(0);
    eventually(Duration::from_secs(15), "partition 0 led by broker 2", || {
        leader_and_isr(&bootstrap, "elect", 0).filter(|(l, _)| *l == 2)
    });
    cluster.restart(0);
    eventually(Duration::from_secs(30), "partition 0 led by broker 1 again", || {
        leader_and_isr(&bootstrap, "elect", 0).filter(|(l, isr)| *l == 1 && isr == &[1, 2, 3])
    });
    for p in 1..3 {
        assert_eq!(leader_and_isr(&bootstrap, "elect", p).unwrap().0, p + 1, "partition {p} with its preferred leader");
    }
    cluster.stop_all();
}

/// UnregisterBroker (API 64) as `kafka-cluster.sh unregister` sends it.
fn unregister(addr: &str, id: i32) -> i16 {
    use kafka_protocol::messages::{UnregisterBrokerRequest, UnregisterBrokerResponse};
    let req = UnregisterBrokerRequest::default().with_broker_id(BrokerId(id));
    let resp: UnregisterBrokerResponse = raw::call(addr, ApiKey::UnregisterBroker, 0, &req);
    resp.error_code
}

/// Decommissioning: a broker's partition is drained to the others by reassignment, the broker
/// stops, and UnregisterBroker removes it from the cluster (a second time it is not
/// registered; new placements cannot name it); started again, it registers anew.
#[tokio::test(flavor = "multi_thread")]
async fn a_drained_broker_is_unregistered_and_may_come_back() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::launch(Cluster::plan_with_brokers(3, 1), None);
    let bootstrap = cluster.bootstrap();
    let addr = cluster.nodes[0].client.clone();
    create_placed(&bootstrap, "drained", &[&[4, 1]]).await;
    produce_all(&bootstrap, "drained", 1, 50, "d").await;
    assert_eq!(reassign(&addr, "drained", 0, Some(&[1, 2]), true), 0);
    eventually(Duration::from_secs(30), "the partition off broker 4", || {
        (replicas_of(&bootstrap, "drained", 0) == [1, 2] && !dir_has_partition(&cluster, 4, "drained", 0)).then_some(())
    });
    let node = cluster.index_of(4);
    assert!(cluster.nodes[node].process.take().expect("running").terminate().success());
    assert_eq!(unregister(&addr, 99), ResponseError::BrokerIdNotRegistered.code());
    assert_eq!(unregister(&addr, 4), 0);
    assert_eq!(unregister(&addr, 4), ResponseError::BrokerIdNotRegistered.code(), "gone from the cluster");
    assert_eq!(reassign(&addr, "drained", 0, Some(&[1, 4]), true), ResponseError::InvalidReplicaAssignment.code());
    let values = consume_all(&cluster.bootstrap(), "drained", 1, 50);
    assert_eq!(values[0].len(), 50, "the drained partition kept every record");
    cluster.restart(node);
    eventually(Duration::from_secs(15), "broker 4 registered again", || {
        metadata(&cluster.bootstrap()).brokers().iter().any(|b| b.id() == 4).then_some(())
    });
    cluster.stop_all();
}

/// What librdkafka's statistics say about where a consumer fetched from.
#[derive(Default, Clone)]
struct Stats(std::sync::Arc<std::sync::Mutex<Option<rdkafka::Statistics>>>);

impl rdkafka::ClientContext for Stats {
    fn stats(&self, statistics: rdkafka::Statistics) {
        *self.0.lock().unwrap() = Some(statistics);
    }
}

impl rdkafka::consumer::ConsumerContext for Stats {}

impl Stats {
    /// Bytes received from broker `id`, and the broker partition 0 of `topic` is fetched from.
    fn seen(&self, id: i32, topic: &str) -> (u64, i32) {
        let stats = self.0.lock().unwrap().clone().expect("statistics arrived");
        let rx = stats.brokers.values().filter(|b| b.nodeid == id).map(|b| b.rxbytes).sum();
        let fetching = stats.topics.get(topic).and_then(|t| t.partitions.get(&0)).map_or(-1, |p| p.broker);
        (rx, fetching)
    }
}

/// Follower fetching (KIP-392) with `RackAwareReplicaSelector`: a consumer in rack-b
/// (`client.rack`) is sent from the leader (broker 1, rack-a) to the in-sync follower in its
/// rack (broker 2), which then serves the bytes (librdkafka's statistics say how many came
/// from each broker); when that follower dies the consumer falls back to the leader and reads
/// on.
#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_reads_from_the_follower_in_its_rack() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let selector = ("replica.selector.class", "org.apache.kafka.common.replica.RackAwareReplicaSelector");
    let mut cluster = Cluster::start_with(3, &[selector]);
    assert_eq!((rack_of(1), rack_of(2)), ("rack-a", "rack-b"));
    let bootstrap = cluster.bootstrap();
    create_placed(&bootstrap, "near", &[&[1, 2]]).await;
    eventually(Duration::from_secs(15), "both replicas in sync", || {
        leader_and_isr(&bootstrap, "near", 0).filter(|(l, isr)| *l == 1 && isr == &[1, 2])
    });
    fill(&bootstrap, "near", 1000, 1000).await;

    let stats = Stats::default();
    let mut config = client_config(&bootstrap);
    config
        .set("group.id", "near-reader")
        .set("enable.auto.commit", "false")
        .set("client.rack", "rack-b")
        .set("statistics.interval.ms", "200");
    let consumer: BaseConsumer<Stats> = config.create_with_context(stats.clone()).unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("near", 0, rdkafka::Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let got = poll_n(&consumer, 1000, false);
    assert_eq!(got.len(), 1000);
    std::thread::sleep(Duration::from_millis(500));
    let _ = consumer.poll(Duration::from_millis(100)); // serves the statistics callback
    let (from_follower, fetching) = stats.seen(2, "near");
    let (from_leader, _) = stats.seen(1, "near");
    println!("bytes from the follower {from_follower}, from the leader {from_leader}");
    assert_eq!(fetching, 2, "the consumer fetches from the follower in its rack");
    assert!(from_follower > 1_000_000, "the follower served the records: {from_follower} bytes");
    assert!(from_leader < from_follower / 10, "the leader served little: {from_leader} bytes");

    // the follower dies: the consumer goes back to the leader and reads on
    cluster.kill(1);
    fill(&bootstrap, "near", 100, 1000).await;
    let more = poll_n(&consumer, 100, true);
    assert_eq!(more.len(), 100, "records written after the follower died are read from the leader");
    use rdkafka::Message;
    assert_eq!(more[0].offset(), 1000);
    cluster.stop_all();
}

/// Polls up to a minute for `n` records; consumer errors fail the test unless `dead_broker`
/// (a broker was killed: librdkafka reports it).
fn poll_n<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    n: usize,
    dead_broker: bool,
) -> Vec<rdkafka::message::OwnedMessage> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => got.push(m.detach()),
            Some(Err(e)) if dead_broker => println!("consumer error (expected while the follower is gone): {e}"),
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
    got
}

/// AddRaftVoter (API 80) for node `id` reached at `controller` (its CONTROLLER listener).
fn add_voter(addr: &str, id: i32, controller: &str) -> i16 {
    add_voter_within(addr, id, controller, 30_000)
}

fn add_voter_within(addr: &str, id: i32, controller: &str, timeout_ms: i32) -> i16 {
    use kafka_protocol::messages::add_raft_voter_request::Listener;
    use kafka_protocol::messages::{AddRaftVoterRequest, AddRaftVoterResponse};
    let (host, port) = controller.rsplit_once(':').expect("HOST:PORT");
    let listener =
        Listener::default().with_name(txn::s("CONTROLLER")).with_host(txn::s(host)).with_port(port.parse().unwrap());
    let req =
        AddRaftVoterRequest::default().with_voter_id(id).with_timeout_ms(timeout_ms).with_listeners(vec![listener]);
    let resp: AddRaftVoterResponse = raw::call(addr, ApiKey::AddRaftVoter, 0, &req);
    resp.error_code
}

fn remove_voter(addr: &str, id: i32) -> i16 {
    use kafka_protocol::messages::{RemoveRaftVoterRequest, RemoveRaftVoterResponse};
    let req = RemoveRaftVoterRequest::default().with_voter_id(id);
    let resp: RemoveRaftVoterResponse = raw::call(addr, ApiKey::RemoveRaftVoter, 0, &req);
    resp.error_code
}

/// The voters DescribeQuorum lists, asked of the active controller.
async fn voters(cluster: &Cluster) -> Vec<i32> {
    let leader = controller_id(&cluster.bootstrap()).await;
    let mut ids: Vec<i32> = describe_quorum(&cluster.nodes[cluster.index_of(leader)].client)
        .current_voters
        .iter()
        .map(|v| v.replica_id.0)
        .collect();
    ids.sort_unstable();
    ids
}

/// KIP-853: a controller started with `controller.quorum.bootstrap.servers` instead of static
/// voters waits until AddRaftVoter adds it (as a learner that copies the metadata log, then a
/// voter), then registers and serves; RemoveRaftVoter takes a voter out (the active
/// controller too: another takes over), after which the quorum survives losing that node and
/// another; the added voter comes back from its own log.
/// Kafka's errors: DUPLICATE_VOTER, VOTER_NOT_FOUND, INCONSISTENT_CLUSTER_ID.
#[tokio::test(flavor = "multi_thread")]
async fn the_controller_quorum_grows_and_shrinks_at_run_time() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::plan_with_brokers(3, 1);
    cluster.nodes[3].voter = false;
    cluster.nodes[3].joining = true;
    for i in 0..3 {
        cluster.spawn(i);
    }
    for i in 0..3 {
        cluster.wait_ready(i);
    }
    cluster.spawn(3);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(voters(&cluster).await, [1, 2, 3]);
    let addr = cluster.nodes[1].client.clone();
    let new_controller = cluster.nodes[3].controller.clone();
    assert_eq!(add_voter(&addr, 4, &new_controller), 0, "node 4 added");
    cluster.wait_ready(3);
    cluster.wait_registered();
    assert_eq!(voters(&cluster).await, [1, 2, 3, 4]);
    assert_eq!(add_voter(&addr, 4, &new_controller), ResponseError::DuplicateVoter.code());
    // a node that never answers is refused after the request's timeout and taken out again
    let nobody = fixed_port_addr();
    assert_eq!(add_voter_within(&addr, 9, &nobody, 2000), ResponseError::RequestTimedOut.code());
    assert_eq!(voters(&cluster).await, [1, 2, 3, 4]);

    assert_eq!(remove_voter(&addr, 1), 0, "node 1 removed");
    eventually(Duration::from_secs(10), "three voters again", || {
        let rt = tokio::runtime::Handle::current();
        let now = tokio::task::block_in_place(|| rt.block_on(voters(&cluster)));
        (now == [2, 3, 4]).then_some(())
    });
    assert_eq!(remove_voter(&addr, 1), ResponseError::VoterNotFound.code());
    {
        use kafka_protocol::messages::{RemoveRaftVoterRequest, RemoveRaftVoterResponse};
        let req = RemoveRaftVoterRequest::default().with_voter_id(2).with_cluster_id(Some(txn::s("another-cluster")));
        let resp: RemoveRaftVoterResponse = raw::call(&addr, ApiKey::RemoveRaftVoter, 0, &req);
        assert_eq!(resp.error_code, ResponseError::InconsistentClusterId.code());
    }
    // the active controller removes itself: another voter takes over; then it is added back
    let leader = controller_id(&cluster.bootstrap()).await;
    let leader_node = cluster.index_of(leader);
    assert_eq!(remove_voter(&addr, leader), 0, "the active controller {leader} removed");
    let rest: Vec<i32> = [2, 3, 4].into_iter().filter(|v| *v != leader).collect();
    eventually(Duration::from_secs(15), "a new controller among the rest", || {
        let rt = tokio::runtime::Handle::current();
        let (now, new) = tokio::task::block_in_place(|| {
            rt.block_on(async { (voters(&cluster).await, controller_id(&cluster.bootstrap()).await) })
        });
        (now == rest && new != leader).then_some(())
    });
    create_after_controller_failover(&cluster.bootstrap(), leader, "after-leader-removal", 1, 2).await;
    let back = cluster.nodes[leader_node].controller.clone();
    assert_eq!(add_voter(&addr, leader, &back), 0, "{leader} added back");
    assert_eq!(voters(&cluster).await, [2, 3, 4]);
    // nodes 1 (no longer a voter) and 2 go: voters 3 and 4 are a majority of three
    cluster.kill(0);
    cluster.kill(1);
    let survivors = cluster.bootstrap();
    create_after_controller_failover(&survivors, 2, "after-shrink", 1, 2).await;
    // the added voter restarts from its own log and the quorum goes on (without it, voter 3
    // alone is no majority)
    assert!(cluster.nodes[3].process.take().expect("running").terminate().success());
    cluster.restart(3);
    create_after_controller_failover(&cluster.bootstrap(), 2, "after-restart", 1, 2).await;
    cluster.stop_all();
}
