//! A cluster of `weir` processes for tests: nodes on fixed loopback ports (so a restarted
//! broker comes back where clients expect it), optional fault-injecting proxies on every
//! inter-broker and quorum link, and the checks the cluster tests share.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

use super::*;

/// One node of a test cluster: where it keeps its data and the addresses it keeps across
/// restarts.
pub struct Node {
    pub id: i32,
    pub dir: PathBuf,
    pub client: String,
    pub controller: String,
    pub process: Option<BinaryBroker>,
    /// Listeners, voters and settings of its own (a cluster whose links can be cut).
    pub own: Option<OwnNetwork>,
    /// A voter of the metadata quorum (`broker,controller`), or a broker only (`broker`).
    pub voter: bool,
    /// A controller that joins the running quorum through `controller.quorum.bootstrap.servers`
    /// (KIP-853) instead of being a static voter.
    pub joining: bool,
    /// Arguments of this node alone (e.g. its own `metrics.listener`).
    pub args: Vec<String>,
}

/// A node that reaches the others through proxies: its own view of the voters, and an
/// INTERNAL listener advertised at a proxy.
pub struct OwnNetwork {
    pub listen: String,
    pub voters: String,
    pub args: Vec<String>,
}

/// The proxied paths of a cluster: quorum links `(from, to)` and each broker's INTERNAL
/// (replication) listener.
pub struct Faults {
    pub _proxies: proxy::Proxies,
    pub quorum: Vec<(i32, i32, proxy::Link)>,
    pub internal: Vec<(i32, proxy::Link)>,
}

impl Faults {
    /// Cuts broker `id` off from the others (clients still reach it).
    pub fn isolate(&self, id: i32) {
        self.quorum.iter().filter(|(from, to, _)| *from == id || *to == id).for_each(|(_, _, l)| l.cut());
        self.internal.iter().filter(|(to, _)| *to == id).for_each(|(_, l)| l.cut());
    }

    pub fn heal(&self) {
        self.quorum.iter().for_each(|(_, _, l)| l.heal());
        self.internal.iter().for_each(|(_, l)| l.heal());
    }
}

/// A free `127.0.0.1:PORT` below Linux's ephemeral range (32768–60999), so that no client
/// connection is given it while a broker is down and must come back on it.
pub fn fixed_port_addr() -> String {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    if NEXT.load(Ordering::SeqCst) == 0 {
        let base = 20_000 + (std::process::id() % 1000) as u16 * 10;
        let _ = NEXT.compare_exchange(0, base, Ordering::SeqCst, Ordering::SeqCst);
    }
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = if port >= 32_000 { 20_000 + port % 1000 } else { port };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return format!("127.0.0.1:{port}");
        }
    }
}

pub struct Cluster {
    pub _root: tempfile::TempDir,
    pub nodes: Vec<Node>,
    pub voters: String,
    pub faults: Option<Faults>,
    /// Settings of this test on top of [`FAST`].
    pub settings: Vec<(&'static str, &'static str)>,
}

/// The cluster tests run one at a time: each starts three brokers, and a 2-core CI machine
/// running three clusters at once would miss heartbeats for no reason of the tests'.
pub static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Timeouts short enough for tests: a dead broker is fenced within 1.5 s.
pub const FAST: &[(&str, &str)] = &[
    ("controller.quorum.election.timeout.ms", "500"),
    ("broker.heartbeat.interval.ms", "200"),
    ("broker.session.timeout.ms", "1500"),
    ("replica.lag.time.max.ms", "2000"),
    ("group.initial.rebalance.delay.ms", "0"),
];

impl Cluster {
    /// Starts `n` combined broker-controllers with the same voters, all at once (each waits
    /// for the quorum), and waits until every one serves clients.
    pub fn start(n: i32) -> Cluster {
        Cluster::launch(Cluster::plan(n), None)
    }

    /// [`Cluster::start`] with `settings` on top of [`FAST`].
    pub fn start_with(n: i32, settings: &[(&'static str, &'static str)]) -> Cluster {
        let mut cluster = Cluster::plan(n);
        cluster.settings = settings.to_vec();
        Cluster::launch(cluster, None)
    }

    pub fn plan(n: i32) -> Cluster {
        Cluster::plan_with_brokers(n, 0)
    }

    /// `voters` combined broker-controllers and then `brokers` brokers that are not voters.
    pub fn plan_with_brokers(voters: i32, brokers: i32) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let nodes: Vec<Node> = (1..=voters + brokers)
            .map(|id| Node {
                id,
                dir: root.path().join(format!("node-{id}")),
                client: fixed_port_addr(),
                controller: fixed_port_addr(),
                process: None,
                own: None,
                voter: id <= voters,
                joining: false,
                args: Vec::new(),
            })
            .collect();
        let voters = nodes
            .iter()
            .filter(|n| n.voter)
            .map(|n| format!("{}@{}", n.id, n.controller))
            .collect::<Vec<_>>()
            .join(",");
        Cluster { _root: root, nodes, voters, faults: None, settings: Vec::new() }
    }

    /// `n` brokers whose links to each other (quorum and replication) go through proxies the
    /// test can cut, each broker on its own path to every other; clients connect directly.
    pub fn start_with_faults(n: i32) -> Cluster {
        let mut cluster = Cluster::plan(n);
        let proxies = proxy::Proxies::new();
        let mut quorum = Vec::new();
        let mut internal = Vec::new();
        for node in &mut cluster.nodes {
            let replication = fixed_port_addr();
            let link = proxies.link(&fixed_port_addr(), &replication);
            node.own = Some(OwnNetwork {
                listen: format!(
                    "PLAINTEXT://{},INTERNAL://{replication},CONTROLLER://{}",
                    node.client, node.controller
                ),
                voters: String::new(),
                args: vec![
                    "--advertise".into(),
                    format!("PLAINTEXT://{},INTERNAL://{}", node.client, link.addr),
                    "--set".into(),
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT".into(),
                    "--set".into(),
                    "inter.broker.listener.name=INTERNAL".into(),
                ],
            });
            internal.push((node.id, link));
        }
        let controllers: Vec<(i32, String)> = cluster.nodes.iter().map(|n| (n.id, n.controller.clone())).collect();
        for node in &mut cluster.nodes {
            let mut voters = Vec::new();
            for (to, addr) in &controllers {
                if *to == node.id {
                    voters.push(format!("{to}@{addr}"));
                } else {
                    let link = proxies.link(&fixed_port_addr(), addr);
                    voters.push(format!("{to}@{}", link.addr));
                    quorum.push((node.id, *to, link));
                }
            }
            node.own.as_mut().expect("planned").voters = voters.join(",");
        }
        Cluster::launch(cluster, Some(Faults { _proxies: proxies, quorum, internal }))
    }

    /// Starts every planned node at once (each waits for the quorum) and waits until every
    /// one serves clients.
    pub fn launch(mut cluster: Cluster, faults: Option<Faults>) -> Cluster {
        cluster.faults = faults;
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i);
        }
        for i in 0..cluster.nodes.len() {
            cluster.wait_ready(i);
        }
        cluster.wait_registered();
        cluster
    }

    /// Waits until every running broker is registered (a broker listens a moment before).
    pub fn wait_registered(&self) {
        let running = self.nodes.iter().filter(|n| n.process.is_some()).count();
        let bootstrap = self.bootstrap();
        eventually(Duration::from_secs(15), "every broker registered", || {
            (metadata(&bootstrap).brokers().len() == running).then_some(())
        });
    }

    pub fn spawn(&mut self, i: usize) {
        let node = &self.nodes[i];
        let (listen, voters) = match &node.own {
            Some(own) => (own.listen.clone(), own.voters.clone()),
            None if !node.voter => (format!("PLAINTEXT://{}", node.client), self.voters.clone()),
            None => (format!("PLAINTEXT://{},CONTROLLER://{}", node.client, node.controller), self.voters.clone()),
        };
        let roles = if node.voter || node.joining { "broker,controller" } else { "broker" };
        let listen = match node.joining {
            true => format!("PLAINTEXT://{},CONTROLLER://{}", node.client, node.controller),
            false => listen,
        };
        let quorum = match node.joining {
            true => format!("controller.quorum.bootstrap.servers={}", self.nodes[0].controller),
            false => format!("controller.quorum.voters={voters}"),
        };
        let mut sets =
            vec![format!("process.roles={roles}"), quorum, "controller.listener.names=CONTROLLER".to_string()];
        sets.extend(FAST.iter().chain(&self.settings).map(|(k, v)| format!("{k}={v}")));
        sets.push(format!("broker.rack={}", rack_of(node.id)));
        let id = node.id.to_string();
        let mut args = vec!["--node-id", id.as_str()];
        for s in &sets {
            args.extend(["--set", s.as_str()]);
        }
        if let Some(own) = &node.own {
            args.extend(own.args.iter().map(String::as_str));
        }
        args.extend(node.args.iter().map(String::as_str));
        let process = BinaryBroker::spawn_on(&listen, &node.dir, &args);
        self.nodes[i].process = Some(process);
    }

    pub fn wait_ready(&mut self, i: usize) {
        self.nodes[i].process.as_mut().expect("running").wait_ready(Duration::from_secs(60));
    }

    pub fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.wait_ready(i);
        self.wait_registered();
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(p) = self.nodes[i].process.take() {
            p.kill9();
        }
    }

    /// SIGTERM to every running node, each expected to exit cleanly.
    pub fn stop_all(&mut self) {
        for node in &mut self.nodes {
            if let Some(p) = node.process.take() {
                assert!(p.terminate().success());
            }
        }
    }

    pub fn index_of(&self, id: i32) -> usize {
        self.nodes.iter().position(|n| n.id == id).expect("a node of the cluster")
    }

    /// Client addresses of the running nodes.
    pub fn bootstrap(&self) -> String {
        self.nodes.iter().filter(|n| n.process.is_some()).map(|n| n.client.clone()).collect::<Vec<_>>().join(",")
    }
}

/// A topic whose replicas are `assignment` (the first of each partition leads), with
/// `min.insync.replicas=2`, waited until every replica is in the ISR.
pub async fn create_assigned(bootstrap: &str, topic: &str, assignment: &[&[i32]]) {
    let new = NewTopic::new(topic, assignment.len() as i32, TopicReplication::Variable(assignment))
        .set("min.insync.replicas", "2");
    let created = admin(bootstrap).create_topics(&[new], &AdminOptions::new()).await.expect("CreateTopics");
    assert!(created[0].is_ok(), "{:?}", created[0]);
    for (p, replicas) in assignment.iter().enumerate() {
        eventually(Duration::from_secs(20), "every replica in sync", || {
            leader_and_isr(bootstrap, topic, p as i32).filter(|(l, isr)| *l > 0 && isr.len() == replicas.len())
        });
    }
}

pub fn metadata(bootstrap: &str) -> Metadata {
    let consumer: BaseConsumer = client_config(bootstrap).create().unwrap();
    consumer.fetch_metadata(None, Duration::from_secs(10)).expect("metadata")
}

/// Polls `f` every 100 ms until it gives a value or `timeout` passes.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "not within {timeout:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn cluster_id_of(dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string(dir.join("meta.properties")).expect("meta.properties");
    text.lines().find_map(|l| l.strip_prefix("cluster.id=")).expect("cluster.id").to_string()
}

pub async fn create(
    bootstrap: &str,
    name: &str,
    partitions: i32,
    rf: i32,
) -> Result<String, (String, RDKafkaErrorCode)> {
    let admin = admin(bootstrap);
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(rf));
    admin.create_topics(&[topic], &AdminOptions::new()).await.expect("request").remove(0)
}

/// Produces `n` records round-robin over `partitions`, each acknowledged; returns the values
/// by partition.
pub async fn produce_all(bootstrap: &str, topic: &str, partitions: i32, n: usize, tag: &str) -> Vec<Vec<String>> {
    let producer = producer(bootstrap, &[("enable.idempotence", "true"), ("acks", "all")]);
    let mut sent = vec![Vec::new(); partitions as usize];
    for i in 0..n {
        let p = (i % partitions as usize) as i32;
        let value = format!("{tag}-{i}");
        producer
            .send(FutureRecord::to(topic).partition(p).key("k").payload(&value), Duration::from_secs(20))
            .await
            .unwrap_or_else(|(e, _)| panic!("record {i} to partition {p} not acknowledged: {e}"));
        sent[p as usize].push(value);
    }
    sent
}

/// Polls until `n` messages arrived or `timeout` passed. A broker that was just killed or
/// stopped can still be listed for a moment (Weir lists a fenced broker for two seconds, Kafka
/// for its whole session), and librdkafka reports failing to connect to it as an error event:
/// those are expected here, any other consumer error fails the test.
pub fn consume(consumer: &BaseConsumer, n: usize, timeout: Duration) -> Vec<rdkafka::message::OwnedMessage> {
    let transport = [RDKafkaErrorCode::BrokerTransportFailure, RDKafkaErrorCode::AllBrokersDown];
    consume_n_tolerating(consumer, n, timeout, &transport)
}

pub fn consume_all(bootstrap: &str, topic: &str, partitions: i32, expected: usize) -> Vec<Vec<String>> {
    let all: Vec<i32> = (0..partitions).collect();
    let consumer = assigned_consumer(bootstrap, topic, &all, rdkafka::Offset::Beginning, &[]);
    let mut got = vec![Vec::new(); partitions as usize];
    for m in consume(&consumer, expected, Duration::from_secs(30)) {
        use rdkafka::Message;
        got[m.partition() as usize].push(String::from_utf8(value_of(&m).unwrap()).unwrap());
    }
    got
}

/// DescribeQuorum v2 for partition 0 of `__cluster_metadata`, asked of the broker at `addr`.
pub fn describe_quorum(addr: &str) -> kafka_protocol::messages::describe_quorum_response::PartitionData {
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    use kafka_protocol::messages::{ApiKey, DescribeQuorumRequest, DescribeQuorumResponse, TopicName};
    let req = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(super::txn::s("__cluster_metadata")))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let mut resp: DescribeQuorumResponse = raw::call(addr, ApiKey::DescribeQuorum, 2, &req);
    assert_eq!(resp.error_code, 0);
    resp.topics.remove(0).partitions.remove(0)
}

/// The active controller's id, from DescribeCluster as a Kafka admin client reads it.
pub async fn controller_id(bootstrap: &str) -> i32 {
    use kafka_protocol::messages::{ApiKey, DescribeClusterRequest, DescribeClusterResponse};
    let first = bootstrap.split(',').next().unwrap_or_default().to_string();
    let resp: DescribeClusterResponse =
        raw::call_async(&first, ApiKey::DescribeCluster, 0, DescribeClusterRequest::default()).await;
    resp.controller_id.0
}

/// The partition's leader and ISR as the cluster reports them.
pub fn leader_and_isr(bootstrap: &str, topic: &str, partition: i32) -> Option<(i32, Vec<i32>)> {
    let md = metadata(bootstrap);
    let t = md.topics().iter().find(|t| t.name() == topic)?;
    let p = t.partitions().iter().find(|p| p.id() == partition)?;
    let mut isr = p.isr().to_vec();
    isr.sort();
    Some((p.leader(), isr))
}

/// Creates a one-partition topic with three replicas and `min.insync.replicas=2`, waits until
/// every replica is in sync, and returns its leader.
pub async fn create_in_sync(bootstrap: &str, topic: &str) -> i32 {
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(3)).set("min.insync.replicas", "2");
    assert!(admin(bootstrap).create_topics(&[new], &AdminOptions::new()).await.unwrap()[0].is_ok());
    let (leader, _) = eventually(Duration::from_secs(15), "every replica in sync", || {
        leader_and_isr(bootstrap, topic, 0).filter(|(l, isr)| *l > 0 && isr == &[1, 2, 3])
    });
    leader
}

/// An idempotent acks=all producer writing `TAG-N` to partition 0 one record at a time until
/// `stop`, each acknowledged offset and value pushed to `acked`; the task's result is how
/// many records failed.
pub fn keep_producing(
    bootstrap: String,
    topic: String,
    tag: &'static str,
    extra: &[(&'static str, &'static str)],
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acked: std::sync::Arc<std::sync::Mutex<Vec<(i64, String)>>>,
) -> tokio::task::JoinHandle<u64> {
    let mut settings = vec![("enable.idempotence", "true"), ("acks", "all"), ("linger.ms", "0")];
    settings.extend_from_slice(extra);
    tokio::spawn(async move {
        let mut p = producer(&bootstrap, &settings);
        let (mut i, mut failed) = (0u64, 0u64);
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let value = format!("{tag}-{i}");
            i += 1;
            let record = FutureRecord::to(&topic).partition(0).key("k").payload(&value);
            match p.send(record, Duration::from_secs(60)).await {
                Ok(d) => acked.lock().unwrap().push((d.offset, value)),
                Err((e, _)) => {
                    failed += 1;
                    if failed == 1 {
                        eprintln!("producer {tag}: first failed send: {e}");
                    }
                    // a failure can come at once, again and again: without a pause this task
                    // would hold a runtime thread and starve the test's own tasks
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    // an idempotent producer's fatal error fails every later send: start anew,
                    // as an application would
                    if let Some((code, reason)) = p.client().fatal_error() {
                        eprintln!("producer {tag}: fatal error {code:?} ({reason}); a new producer takes over");
                        p = producer(&bootstrap, &settings);
                    }
                }
            }
        }
        failed
    })
}

/// Reads partition 0 of `topic` from the beginning through the last acknowledged offset and
/// checks [`assert_acknowledged_once`].
pub fn assert_log_holds(bootstrap: &str, topic: &str, acked: &[(i64, String)]) {
    let end = acked.iter().map(|(o, _)| *o).max().expect("something acknowledged") + 1;
    let reader = assigned_consumer(bootstrap, topic, &[0], rdkafka::Offset::Beginning, &[]);
    assert_acknowledged_once(&consume(&reader, end as usize, Duration::from_secs(60)), acked);
}

/// Every acknowledged `(offset, value)` is in `log` at its offset, and no value is there twice.
pub fn assert_acknowledged_once(log: &[rdkafka::message::OwnedMessage], acked: &[(i64, String)]) {
    use rdkafka::Message;
    let by_offset: std::collections::HashMap<i64, String> =
        log.iter().map(|m| (m.offset(), String::from_utf8(value_of(m).unwrap()).unwrap())).collect();
    for (offset, value) in acked {
        assert_eq!(by_offset.get(offset), Some(value), "acknowledged record at offset {offset}");
    }
    let mut values: Vec<&String> = by_offset.values().collect();
    let count = values.len();
    values.sort();
    values.dedup();
    assert_eq!(values.len(), count, "no record appears twice");
}

/// After [`Cluster::stop_all`] (clean stops: no space reserved ahead of writes), the nodes'
/// segment files of the partition are byte-identical.
pub fn assert_replicas_identical(cluster: &Cluster, topic: &str, partition: i32) {
    let replicas: Vec<Vec<u8>> = cluster.nodes.iter().map(|n| partition_bytes(&n.dir, topic, partition)).collect();
    assert!(!replicas[0].is_empty(), "partition {partition} has data");
    assert!(replicas.iter().all(|r| *r == replicas[0]), "partition {partition}: replicas differ");
}

/// Every segment file of a partition on one node, concatenated in offset order.
pub fn partition_bytes(dir: &std::path::Path, topic: &str, partition: i32) -> Vec<u8> {
    let pdir = dir.join(format!("{topic}-{partition}"));
    let mut logs: Vec<_> = std::fs::read_dir(&pdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.iter().flat_map(|p| std::fs::read(p).unwrap()).collect()
}

pub fn rack_of(id: i32) -> &'static str {
    if id % 2 == 1 {
        "rack-a"
    } else {
        "rack-b"
    }
}

pub fn group_consumer(bootstrap: &str, group: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

/// What a committing group did, reported when it did not get anywhere.
#[derive(Debug, Default)]
pub struct GroupProgress {
    pub consumed: u64,
    pub last_committed: i64,
    pub last_error: Option<String>,
}

/// A group member on its own thread until `stop`: consumes partition 0 of `topic`, commits
/// every 20 records and reads the commit back; sets `went_back` if a committed offset ever
/// goes back. It starts from a committed offset 0 rather than from auto.offset.reset:
/// librdkafka keeps a ListOffsets(BEGINNING) that failed on a dead broker queued for retry,
/// and when its answer comes back after leadership moved on it restarts that offset query and
/// rewinds the consumer to the beginning (seen with librdkafka 2.12.1, whoever the broker).
pub fn committing_group(
    bootstrap: &str,
    topic: &str,
    group: &str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    went_back: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<GroupProgress> {
    use rdkafka::Message;
    use std::sync::atomic::Ordering;
    let first = assigned_consumer(bootstrap, topic, &[0], rdkafka::Offset::Beginning, &[("group.id", group)]);
    let mut start = rdkafka::TopicPartitionList::new();
    start.add_partition_offset(topic, 0, rdkafka::Offset::Offset(0)).unwrap();
    first.commit(&start, rdkafka::consumer::CommitMode::Sync).expect("the group's starting offset");
    drop(first);
    let (topic, bootstrap, group) = (topic.to_string(), bootstrap.to_string(), group.to_string());
    std::thread::spawn(move || {
        let c = group_consumer(&bootstrap, &group, &topic);
        let mut progress = GroupProgress { last_committed: -1, ..Default::default() };
        while !stop.load(Ordering::SeqCst) {
            let m = match c.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    progress.last_error = Some(e.to_string());
                    continue;
                }
                None => continue,
            };
            progress.consumed += 1;
            if !progress.consumed.is_multiple_of(20) {
                continue;
            }
            let mut tpl = rdkafka::TopicPartitionList::new();
            let _ = tpl.add_partition_offset(&topic, 0, rdkafka::Offset::Offset(m.offset() + 1));
            let read_back =
                c.commit(&tpl, rdkafka::consumer::CommitMode::Sync).and_then(|()| c.committed(Duration::from_secs(10)));
            let now = match read_back {
                Ok(now) => now.find_partition(&topic, 0).map(|p| p.offset()),
                Err(e) => {
                    progress.last_error = Some(e.to_string());
                    continue;
                }
            };
            if let Some(rdkafka::Offset::Offset(o)) = now {
                if o < progress.last_committed {
                    eprintln!("committed offset went back: {} -> {o}", progress.last_committed);
                }
                went_back.fetch_or(o < progress.last_committed, Ordering::SeqCst);
                progress.last_committed = progress.last_committed.max(o);
            }
        }
        progress
    })
}

/// After the active controller `dead` was killed: creates `topic` through `asked`, retrying
/// while the voters elect a new one. The broker asked names itself as the controller meanwhile
/// (as Kafka's brokers name any live broker), never -1 or the dead one once it is fenced.
pub async fn create_after_controller_failover(asked: &str, dead: i32, topic: &str, partitions: i32, rf: i32) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let c = controller_id(asked).await;
        assert!(c > 0, "{asked} names no controller");
        if c != dead {
            break;
        }
        assert!(Instant::now() < deadline, "{asked} still names the dead controller after 15 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while let Err(e) = create(asked, topic, partitions, rf).await {
        assert!(Instant::now() < deadline, "no topic created through {asked} after failover: {e:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
