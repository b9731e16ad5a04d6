//! Transactions with rdkafka's transactional producer: committed data visible to
//! `read_committed` consumers and aborted data never; offsets committed inside transactions;
//! zombie fencing; broker-side aborts of timed-out transactions; restarts mid-transaction.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

const T: Duration = Duration::from_secs(20);

fn txn_producer(bootstrap: &str, id: &str, extra: &[(&str, &str)]) -> BaseProducer {
    let mut c = client_config(bootstrap);
    c.set("transactional.id", id).set("linger.ms", "5").set("message.timeout.ms", "30000");
    for (k, v) in extra {
        c.set(*k, *v);
        if *k == "transaction.timeout.ms" {
            c.set("message.timeout.ms", *v); // librdkafka requires message <= transaction timeout
        }
    }
    let p: BaseProducer = c.create().expect("transactional producer");
    p.init_transactions(T).expect("init_transactions");
    p
}

/// Sends `values` round-robin over `partitions` of `topic` (inside the open transaction).
fn send_all(p: &BaseProducer, topic: &str, partitions: i32, values: &[String]) {
    for (i, v) in values.iter().enumerate() {
        let rec = BaseRecord::<(), String>::to(topic).payload(v).partition(i as i32 % partitions);
        p.send(rec).map_err(|(e, _)| e).expect("send");
    }
    p.flush(T).expect("flush");
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Everything a consumer with `isolation` sees in `topic`, read to the end of every partition.
fn read_visible(bootstrap: &str, topic: &str, partitions: i32, isolation: &str) -> Vec<String> {
    let parts: Vec<i32> = (0..partitions).collect();
    let c = assigned_consumer(
        bootstrap,
        topic,
        &parts,
        Offset::Beginning,
        &[("isolation.level", isolation), ("enable.partition.eof", "true")],
    );
    let mut at_end = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + T;
    while at_end.len() < partitions as usize && Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
    assert_eq!(at_end.len(), partitions as usize, "did not reach the end of {topic}");
    out.sort();
    out
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn describe_txn(bootstrap: &str, id: &str) -> describe_transactions_response::TransactionState {
    let req = DescribeTransactionsRequest::default()
        .with_transactional_ids(vec![TransactionalId(StrBytes::from_string(id.to_string()))]);
    let mut r: DescribeTransactionsResponse = raw::call(bootstrap, ApiKey::DescribeTransactions, 0, &req);
    r.transaction_states.remove(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn committed_data_is_visible_and_aborted_data_never() {
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("txn-visibility");
    create_topic(&broker.bootstrap, &topic, 3, &[]).await;
    let b = broker.bootstrap.clone();
    let t = topic.clone();
    tokio::task::spawn_blocking(move || {
        let p = txn_producer(&b, "visibility", &[]);
        for (prefix, commit) in [("c1", true), ("a2", false), ("c3", true), ("a4", false)] {
            p.begin_transaction().unwrap();
            send_all(&p, &t, 3, &values(prefix, 100));
            if commit {
                p.commit_transaction(T).unwrap();
            } else {
                p.abort_transaction(T).unwrap();
            }
        }
        let committed = read_visible(&b, &t, 3, "read_committed");
        let expected = sorted([values("c1", 100), values("c3", 100)].concat());
        assert_eq!(committed, expected, "read_committed sees exactly the committed transactions");
        let all = read_visible(&b, &t, 3, "read_uncommitted");
        let expected = sorted([values("c1", 100), values("a2", 100), values("c3", 100), values("a4", 100)].concat());
        assert_eq!(all, expected, "read_uncommitted sees every data record and no control record");

        let d = describe_txn(&b, "visibility");
        assert_eq!(d.error_code, 0);
        assert_eq!(d.transaction_state.as_str(), "CompleteAbort");
        let listed: ListTransactionsResponse =
            raw::call(&b, ApiKey::ListTransactions, 1, &ListTransactionsRequest::default().with_duration_filter(-1));
        assert!(listed.transaction_states.iter().any(|s| s.transactional_id.0.as_str() == "visibility"));
        let missing = describe_txn(&b, "no-such-txn");
        assert_eq!(missing.error_code, ResponseError::TransactionalIdNotFound.code());
    })
    .await
    .unwrap();
}

use kafka_protocol::ResponseError;

#[tokio::test(flavor = "multi_thread")]
async fn an_open_transaction_holds_back_read_committed_consumers() {
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("txn-lso");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    let b = broker.bootstrap.clone();
    let t = topic.clone();
    tokio::task::spawn_blocking(move || {
        let p = txn_producer(&b, "lso", &[]);
        p.begin_transaction().unwrap();
        send_all(&p, &t, 1, &values("open", 10));
        // a plain record after the open transaction's records
        let plain: BaseProducer = client_config(&b).create().unwrap();
        plain.send(BaseRecord::<(), str>::to(&t).payload("plain").partition(0)).map_err(|(e, _)| e).unwrap();
        plain.flush(T).unwrap();
        assert!(read_visible(&b, &t, 1, "read_committed").is_empty(), "stable offset stops at the open txn");
        assert_eq!(read_visible(&b, &t, 1, "read_uncommitted").len(), 11);
        let d = describe_txn(&b, "lso");
        assert_eq!(d.transaction_state.as_str(), "Ongoing");
        assert_eq!(d.topics.len(), 1);
        assert!(d.transaction_start_time_ms > 0);
        p.commit_transaction(T).unwrap();
        let mut expected = values("open", 10);
        expected.push("plain".into());
        assert_eq!(read_visible(&b, &t, 1, "read_committed"), sorted(expected));
    })
    .await
    .unwrap();
}

/// Committed offsets of `group` for `topic`'s partitions (raw OffsetFetch, require_stable).
fn committed_offsets(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    offset_fetch(bootstrap, group, topic, partitions).into_iter().map(|(p, (_, offset))| (p, offset)).collect()
}

/// OffsetFetch v7 with require_stable: partition → (error code, committed offset).
fn offset_fetch(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, (i16, i64)> {
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(Some(vec![offset_fetch_request::OffsetFetchRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_indexes((0..partitions).collect())]))
        .with_require_stable(true);
    let r: OffsetFetchResponse = raw::call(bootstrap, ApiKey::OffsetFetch, 7, &req);
    r.topics[0].partitions.iter().map(|p| (p.partition_index, (p.error_code, p.committed_offset))).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn consume_transform_produce_commits_offsets_with_the_output() {
    let broker = TestBroker::start(&[("group.initial.rebalance.delay.ms", "0")]).await;
    let input = topic_name("ctp-in");
    let output = topic_name("ctp-out");
    create_topic(&broker.bootstrap, &input, 2, &[]).await;
    create_topic(&broker.bootstrap, &output, 2, &[]).await;
    let b = broker.bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let plain: BaseProducer = client_config(&b).create().unwrap();
        for (i, v) in values("in", 200).iter().enumerate() {
            plain
                .send(BaseRecord::<(), String>::to(&input).payload(v).partition(i as i32 % 2))
                .map_err(|(e, _)| e)
                .unwrap();
        }
        plain.flush(T).unwrap();
        let group = "ctp-group";
        let consumer: BaseConsumer = client_config(&b)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .create()
            .unwrap();
        consumer.subscribe(&[input.as_str()]).unwrap();
        let p = txn_producer(&b, "ctp", &[]);
        let mut processed = 0;
        let mut aborted_once = false;
        let deadline = Instant::now() + Duration::from_secs(60);
        while processed < 200 && Instant::now() < deadline {
            let batch = consume_n(&consumer, 50, Duration::from_secs(2));
            if batch.is_empty() {
                continue;
            }
            p.begin_transaction().unwrap();
            let mut next: BTreeMap<i32, i64> = BTreeMap::new();
            for m in &batch {
                let v = format!("out-{}", String::from_utf8_lossy(m.payload().unwrap()));
                p.send(BaseRecord::<(), String>::to(&output).payload(&v).partition(m.partition()))
                    .map_err(|(e, _)| e)
                    .unwrap();
                next.insert(m.partition(), m.offset() + 1);
            }
            p.flush(T).unwrap(); // BaseProducer: deliver (and poll reports) before ending
            let mut tpl = TopicPartitionList::new();
            for (part, off) in &next {
                tpl.add_partition_offset(&input, *part, Offset::Offset(*off)).unwrap();
            }
            p.send_offsets_to_transaction(&tpl, &consumer.group_metadata().unwrap(), T).unwrap();
            if !aborted_once {
                // the first transaction is aborted: its output and its offsets must vanish
                let before = committed_offsets(&b, group, &input, 2);
                p.abort_transaction(T).unwrap();
                aborted_once = true;
                assert_eq!(committed_offsets(&b, group, &input, 2), before, "aborted offsets are not committed");
                // rewind to the committed positions and process again
                let mut rewind = TopicPartitionList::new();
                for part in 0..2 {
                    let off = before.get(&part).copied().filter(|o| *o >= 0).map_or(Offset::Beginning, Offset::Offset);
                    rewind.add_partition_offset(&input, part, off).unwrap();
                }
                for (t, part, off) in
                    rewind.elements().iter().map(|e| (e.topic().to_string(), e.partition(), e.offset()))
                {
                    consumer.seek(&t, part, off, T).unwrap();
                }
                continue;
            }
            p.commit_transaction(T).unwrap();
            processed += batch.len();
            let committed = committed_offsets(&b, group, &input, 2);
            for (part, off) in &next {
                assert_eq!(committed.get(part), Some(off), "offsets become visible with the commit");
            }
        }
        assert_eq!(processed, 200);
        let out = read_visible(&b, &output, 2, "read_committed");
        let expected = sorted(values("in", 200).into_iter().map(|v| format!("out-{v}")).collect());
        assert_eq!(out, expected, "each input record transformed exactly once");
        assert_eq!(committed_offsets(&b, group, &input, 2), BTreeMap::from([(0, 100), (1, 100)]));
        assert!(read_visible(&b, &output, 2, "read_uncommitted").len() > 200, "the aborted output is in the log");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_producer_with_the_same_id_fences_the_first() {
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("txn-fence");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    let b = broker.bootstrap.clone();
    let t = topic.clone();
    tokio::task::spawn_blocking(move || {
        let zombie = txn_producer(&b, "fence", &[]);
        zombie.begin_transaction().unwrap();
        send_all(&zombie, &t, 1, &values("zombie", 20));
        let fresh = txn_producer(&b, "fence", &[]);
        let err = zombie.commit_transaction(T).expect_err("the zombie is fenced");
        assert!(err.to_string().to_lowercase().contains("fenc"), "unexpected error: {err}");
        fresh.begin_transaction().unwrap();
        send_all(&fresh, &t, 1, &values("fresh", 20));
        fresh.commit_transaction(T).unwrap();
        assert_eq!(read_visible(&b, &t, 1, "read_committed"), sorted(values("fresh", 20)));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn transactions_past_their_timeout_are_aborted_by_the_broker() {
    let broker = TestBroker::start(&[("transaction.abort.timed.out.transaction.cleanup.interval.ms", "100")]).await;
    let topic = topic_name("txn-timeout");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    let b = broker.bootstrap.clone();
    let t = topic.clone();
    tokio::task::spawn_blocking(move || {
        let p = txn_producer(&b, "slow", &[("transaction.timeout.ms", "1500")]);
        p.begin_transaction().unwrap();
        send_all(&p, &t, 1, &values("late", 10));
        let deadline = Instant::now() + T;
        while describe_txn(&b, "slow").transaction_state.as_str() != "CompleteAbort" && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(describe_txn(&b, "slow").transaction_state.as_str(), "CompleteAbort");
        assert!(p.commit_transaction(T).is_err(), "the late commit fails");
        assert!(read_visible(&b, &t, 1, "read_committed").is_empty());
        assert_eq!(read_visible(&b, &t, 1, "read_uncommitted").len(), 10);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_in_the_middle_of_a_transaction_ends_consistently() {
    let dir = tempfile::tempdir().unwrap();
    let addr = BinaryBroker::free_addr();
    let args = ["--set", "transaction.abort.timed.out.transaction.cleanup.interval.ms=200"];
    let broker = BinaryBroker::start_on(&addr, dir.path(), &args);
    let topic = topic_name("txn-restart");
    create_topic(&addr, &topic, 2, &[]).await;
    let (d, a, t) = (dir.path().to_path_buf(), addr.clone(), topic.clone());
    tokio::task::spawn_blocking(move || {
        // 1: the broker dies after the records and offsets are written; the producer commits
        // afterwards
        let p = txn_producer(&a, "restart", &[("transaction.timeout.ms", "60000")]);
        let group = "restart-group";
        let consumer: BaseConsumer = client_config(&a).set("group.id", group).create().unwrap();
        p.begin_transaction().unwrap();
        send_all(&p, &t, 2, &values("kept", 50));
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&t, 0, Offset::Offset(7)).unwrap();
        p.send_offsets_to_transaction(&tpl, &consumer.group_metadata().unwrap(), T).unwrap();
        broker.kill9();
        let broker = BinaryBroker::start_on(&a, &d, &args);
        assert!(read_visible(&a, &t, 2, "read_committed").is_empty(), "still open after the restart");
        let unstable = ResponseError::UnstableOffsetCommit.code();
        assert_eq!(offset_fetch(&a, group, &t, 1)[&0].0, unstable, "the offset is pending in the transaction");
        p.commit_transaction(T).expect("commit after the restart");
        assert_eq!(read_visible(&a, &t, 2, "read_committed"), sorted(values("kept", 50)));
        assert_eq!(offset_fetch(&a, group, &t, 1)[&0], (0, 7));
        drop(p);
        assert!(broker.terminate().success());
        let broker = BinaryBroker::start_on(&a, &d, &args);
        assert_eq!(offset_fetch(&a, group, &t, 1)[&0], (0, 7), "replayed with its commit marker");

        // 2: the broker dies with a transaction open and its producer never returns: after
        // the restart the transaction times out and is aborted
        let p = txn_producer(&a, "orphan", &[("transaction.timeout.ms", "2000")]);
        p.begin_transaction().unwrap();
        send_all(&p, &t, 2, &values("orphan", 50));
        broker.kill9();
        drop(p);
        let broker = BinaryBroker::start_on(&a, &d, &args);
        let deadline = Instant::now() + T;
        while describe_txn(&a, "orphan").transaction_state.as_str() != "CompleteAbort" && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(describe_txn(&a, "orphan").transaction_state.as_str(), "CompleteAbort");
        assert_eq!(read_visible(&a, &t, 2, "read_committed"), sorted(values("kept", 50)));
        assert_eq!(read_visible(&a, &t, 2, "read_uncommitted").len(), 100);
        broker.terminate();
    })
    .await
    .unwrap();
}
