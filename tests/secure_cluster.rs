//! A secure cluster, set up with Kafka's own settings: three `weir` processes whose only client
//! listener is SASL_SSL (SCRAM-SHA-512), whose controller listener is SSL with client
//! certificates, ACLs on with nobody allowed by default and `super.users=User:broker;User:admin`.
//! Brokers authenticate to each other as User:broker — over SASL_SSL, or with certificates on
//! an SSL inter-broker listener — and replication, transaction markers and group coordination
//! work over those links; a broker with wrong or missing credentials is loud about it.

mod common;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::cluster::*;
use common::pki::Pki;
use common::*;
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::Consumer;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::Message;

const BROKER_PASSWORD: &str = "broker-secret";
const MAPPING: &str = "RULE:^CN=([^,]+),O=Weir Tests$/$1/,DEFAULT";

/// The binary's one PKI; its clients all come in as User:admin over SASL_SSL.
fn pki() -> &'static Pki {
    static PKI: std::sync::OnceLock<Pki> = std::sync::OnceLock::new();
    PKI.get_or_init(|| {
        let pki = Pki::new();
        let settings = [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "admin"),
            ("sasl.password", "admin-secret"),
        ];
        let mut all: Vec<(String, String)> = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        all.push(("ssl.ca.location".into(), pki.ca_file.display().to_string()));
        let _ = CLIENT_SECURITY.set(all);
        pki
    })
}

fn scram_jaas(user: &str, password: &str) -> String {
    format!(
        r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="{user}" password="{password}";"#
    )
}

/// How the brokers reach each other.
#[derive(Clone, Copy, PartialEq)]
enum Inter {
    /// On the clients' SASL_SSL listener, as User:broker with SCRAM-SHA-512.
    SaslSsl,
    /// On an SSL listener of their own that requires certificates (CN=broker → User:broker).
    MutualTls,
}

/// Plans three secure nodes; `node_settings(id)` adds settings per node.
fn plan(inter: Inter, node_settings: impl Fn(i32) -> Vec<String>) -> Cluster {
    let pki = pki();
    let keystore = pki.node("broker");
    let mut cluster = Cluster::plan(3);
    let voters = cluster.voters.clone();
    for node in &mut cluster.nodes {
        let mut sets = vec![
            "sasl.enabled.mechanisms=SCRAM-SHA-512".to_string(),
            format!("ssl.keystore.location={}", keystore.display()),
            format!("ssl.truststore.location={}", pki.ca_file.display()),
            "listener.name.controller.ssl.client.auth=required".into(),
            format!("ssl.principal.mapping.rules={MAPPING}"),
            "authorizer.class.name=acl".into(),
            "allow.everyone.if.no.acl.found=false".into(),
            "super.users=User:broker;User:admin".into(),
            "offsets.topic.num.partitions=1".into(),
            "transaction.state.log.num.partitions=1".into(),
        ];
        let listen = match inter {
            Inter::SaslSsl => {
                sets.push("listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL".into());
                sets.push("inter.broker.listener.name=SASL_SSL".into());
                sets.push("sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512".into());
                sets.push(format!(
                    "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={}",
                    scram_jaas("broker", BROKER_PASSWORD)
                ));
                format!("SASL_SSL://{},CONTROLLER://{}", node.client, node.controller)
            }
            Inter::MutualTls => {
                sets.push("listener.security.protocol.map=SASL_SSL:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL".into());
                sets.push("inter.broker.listener.name=INTERNAL".into());
                sets.push("listener.name.internal.ssl.client.auth=required".into());
                format!("SASL_SSL://{},INTERNAL://{},CONTROLLER://{}", node.client, fixed_port_addr(), node.controller)
            }
        };
        sets.extend(node_settings(node.id));
        let mut args = Vec::new();
        for s in sets {
            args.extend(["--set".to_string(), s]);
        }
        for user in ["broker", "admin"] {
            let password = if user == "broker" { BROKER_PASSWORD } else { "admin-secret" };
            args.extend(["--add-scram".to_string(), format!("SCRAM-SHA-512=[name={user},password={password}]")]);
        }
        node.own = Some(OwnNetwork { listen, voters: voters.clone(), args });
    }
    cluster
}

fn launch(inter: Inter, node_settings: impl Fn(i32) -> Vec<String>) -> Cluster {
    Cluster::launch(plan(inter, node_settings), None)
}

/// Commits offset 1 of `topic`-0 for `group` (which creates `__consumer_offsets`).
fn commit_once(bootstrap: &str, topic: &str, group: &str) {
    let c = assigned_consumer(bootstrap, topic, &[0], rdkafka::Offset::Beginning, &[("group.id", group)]);
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Offset(1)).unwrap();
    eventually(Duration::from_secs(20), "a first offset commit", || {
        c.commit(&tpl, rdkafka::consumer::CommitMode::Sync).ok()
    });
}

/// A transactional producer writes to every partition of `topic` and commits; a
/// read_committed consumer then reads them all.
fn transaction_across(bootstrap: &str, topic: &str, partitions: i32) {
    let producer: ThreadedProducer<_> = client_config(bootstrap)
        .set("transactional.id", "secure-txn")
        .set("transaction.timeout.ms", "30000")
        .create()
        .expect("transactional producer");
    producer.init_transactions(Duration::from_secs(30)).expect("InitProducerId over SASL_SSL");
    producer.begin_transaction().unwrap();
    for p in 0..partitions {
        for i in 0..10 {
            let value = format!("txn-{p}-{i}");
            producer.send(BaseRecord::<(), _>::to(topic).partition(p).payload(&value)).expect("queued");
        }
    }
    producer.commit_transaction(Duration::from_secs(30)).expect("the transaction commits (markers over the links)");
    let all: Vec<i32> = (0..partitions).collect();
    let reader =
        assigned_consumer(bootstrap, topic, &all, rdkafka::Offset::Beginning, &[("isolation.level", "read_committed")]);
    let got = consume(&reader, 10 * partitions as usize, Duration::from_secs(30));
    assert_eq!(got.len(), 10 * partitions as usize);
    for m in &got {
        let value = String::from_utf8(value_of(m).unwrap()).unwrap();
        assert!(value.starts_with(&format!("txn-{}-", m.partition())), "{value}");
    }
}

/// What a secure cluster must do over its own links, whichever way brokers authenticate:
/// stay in sync under acks=all, commit a transaction over three leaders, and fail a leader
/// and the group coordinator over with nothing acknowledged lost.
async fn failover_drill(inter: Inter) {
    let mut cluster = launch(inter, |_| Vec::new());
    let bootstrap = cluster.bootstrap();

    // the group coordinator is the leader of the one __consumer_offsets partition
    create_assigned(&bootstrap, "warmup", &[&[1, 2, 3]]).await;
    commit_once(&bootstrap, "warmup", "secure-group");
    let (coordinator, _) = eventually(Duration::from_secs(20), "__consumer_offsets in sync", || {
        leader_and_isr(&bootstrap, "__consumer_offsets", 0).filter(|(l, isr)| *l > 0 && isr.len() == 3)
    });
    let others: Vec<i32> = (1..=3).filter(|id| *id != coordinator).collect();

    // a transaction over partitions led by three different brokers: markers cross the links
    create_assigned(&bootstrap, "txn", &[&[1, 2, 3], &[2, 3, 1], &[3, 1, 2]]).await;
    transaction_across(&bootstrap, "txn", 3);

    // the data partition is led by the coordinator, so one kill fails both over
    create_assigned(&bootstrap, "events", &[&[coordinator, others[0], others[1]]]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let producing = keep_producing(bootstrap.clone(), "events".into(), "s", &[], stop.clone(), acked.clone());
    let went_back = Arc::new(AtomicBool::new(false));
    let group = committing_group(&bootstrap, "events", "secure-group", stop.clone(), went_back.clone());

    // twice replica.lag.time.max.ms (2 s) under acks=all: every replica stays in sync
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (leader, isr) = leader_and_isr(&bootstrap, "events", 0).expect("events-0");
    assert_eq!((leader, isr), (coordinator, vec![1, 2, 3]), "followers stay in the ISR");
    let before = acked.lock().unwrap().len();
    assert!(before > 50, "acks=all records acknowledged: {before}");

    cluster.kill(cluster.index_of(coordinator));
    let survivors: String = cluster.bootstrap();
    eventually(Duration::from_secs(20), "a new leader of events-0", || {
        leader_and_isr(&survivors, "events", 0).filter(|(l, _)| *l > 0 && *l != coordinator)
    });
    let at_kill = acked.lock().unwrap().len();
    eventually(Duration::from_secs(30), "acknowledgements after the failover", || {
        (acked.lock().unwrap().len() > at_kill + 20).then_some(())
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    producing.await.unwrap();
    let progress = group.join().unwrap();
    assert!(!went_back.load(Ordering::SeqCst), "committed offsets never go back");
    assert!(progress.consumed > 50 && progress.last_committed > 0, "the group kept going: {progress:?}");
    let acked = acked.lock().unwrap().clone();
    assert_log_holds(&survivors, "events", &acked);
    cluster.stop_all();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sasl_ssl_cluster_replicates_fails_over_and_commits_transactions() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    failover_drill(Inter::SaslSsl).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn brokers_authenticate_to_each_other_with_certificates() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    failover_drill(Inter::MutualTls).await;
}

/// `weir cluster health --format json` as the admin client: its exit code and report.
fn cluster_health(bootstrap: &str) -> (Option<i32>, serde_json::Value) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.args(["cluster", "health", "-b", bootstrap, "--format", "json"]);
    for (k, v) in CLIENT_SECURITY.get().expect("client settings") {
        cmd.arg("-X").arg(format!("{k}={v}"));
    }
    let out = cmd.output().expect("weir cluster health");
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code(), report)
}

/// Whether the listener at `addr` closes a plaintext Kafka connection (ApiVersions v0 in
/// clear) without answering it.
fn refuses_plaintext(addr: &str) -> bool {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // ApiVersions v0, correlation id 1, no client id
    let _ = s.write_all(&[0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff]);
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) | Err(_) => true,
        // a TLS alert (record type 21) is not a Kafka answer, whose size starts with 0
        Ok(_) => buf[0] != 0,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_or_missing_credentials_are_loud_and_plaintext_is_refused() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let metrics = fixed_port_addr();
    let metrics_of_3 = metrics.clone();
    let mut cluster = launch(Inter::SaslSsl, move |id| match id {
        3 => vec![
            format!("listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={}", scram_jaas("broker", "wrong")),
            format!("metrics.listener={metrics_of_3}"),
        ],
        _ => Vec::new(),
    });
    let bootstrap = cluster.bootstrap();
    let new = NewTopic::new("lonely", 1, TopicReplication::Variable(&[&[1, 2, 3]]));
    assert!(admin(&bootstrap).create_topics(&[new], &AdminOptions::new()).await.unwrap()[0].is_ok());
    // node 3 cannot authenticate to the leader: it leaves the ISR and says why
    eventually(Duration::from_secs(20), "node 3 out of the ISR", || {
        leader_and_isr(&bootstrap, "lonely", 0).filter(|(l, isr)| *l == 1 && isr == &[1, 2])
    });
    let node3 = cluster.nodes[2].process.as_ref().unwrap();
    let errors = node3.lines_with("replica fetching from the leader fails");
    assert!(!errors.is_empty(), "node 3 logs an ERROR");
    assert!(errors.iter().all(|l| l.contains("ERROR") && l.contains("authentication")), "{errors:?}");
    assert_eq!(errors.len(), 1, "logged once per cause, not per attempt: {errors:?}");
    let exposition = http_get(&metrics, "/metrics");
    let line = exposition
        .lines()
        .find(|l| l.starts_with("weir_replica_fetch_errors_total{leader=\"1\",cause=\"authentication\"}"))
        .unwrap_or_else(|| panic!("no fetch error metric in\n{exposition}"));
    assert!(line.split_whitespace().last().unwrap().parse::<u64>().unwrap() >= 1, "{line}");
    // and `weir cluster health` names the broker, its leader and the cause
    let (code, health) = cluster_health(&bootstrap);
    assert_eq!(code, Some(weir::cli::UNHEALTHY), "{health}");
    let failures = health["replica_fetch_failures"].as_array().expect("replica_fetch_failures");
    let failure = failures.iter().find(|f| f["broker"] == 3).unwrap_or_else(|| panic!("{health}"));
    assert_eq!((&failure["leader"], &failure["cause"]), (&serde_json::json!(1), &serde_json::json!("authentication")));
    assert!(failure["failures"].as_u64().unwrap() >= 1 && failure["since_ms"].as_i64().unwrap() > 0, "{failure}");
    assert!(!failure.to_string().contains("wrong"), "no password in the report: {failure}");
    assert!(failures.iter().all(|f| f["broker"] == 3), "brokers 1 and 2 fetch fine: {health}");

    // plaintext to the client and the controller listeners is refused
    assert!(refuses_plaintext(&cluster.nodes[0].client), "client listener");
    assert!(refuses_plaintext(&cluster.nodes[0].controller), "controller listener");
    cluster.stop_all();

    // a broker of a cluster with no credentials for its SASL inter-broker listener does not start
    let mut missing = plan(Inter::SaslSsl, |_| Vec::new());
    let own = missing.nodes[0].own.as_mut().unwrap();
    let jaas = own.args.iter().position(|a| a.starts_with("listener.name.sasl_ssl.scram-sha-512")).unwrap();
    own.args.drain(jaas - 1..=jaas);
    missing.spawn(0);
    let node = missing.nodes[0].process.as_mut().unwrap();
    let status = node.wait_exit(Duration::from_secs(30)).expect("exits by itself");
    assert!(!status.success());
    assert!(node.logged("listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"), "names the missing key");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_without_a_client_certificate_is_refused_by_the_quorum() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let _ = pki();
    // a controller listener whose certificates map to nobody allowed: no quorum forms, and
    // the nodes say why instead of waiting silently
    let mut cluster =
        plan(Inter::SaslSsl, |_| vec!["ssl.principal.mapping.rules=RULE:^CN=(.*),O=Weir Tests$/$1-x/".into()]);
    for i in 0..3 {
        cluster.spawn(i);
    }
    let node = cluster.nodes[0].process.as_mut().unwrap();
    let status = node.wait_exit(Duration::from_secs(40)).expect("gives up");
    assert!(!status.success());
    assert!(node.logged("User:broker-x is not authorized on the controller listener"), "says why");
}
