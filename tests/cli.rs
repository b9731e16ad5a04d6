//! The operator's CLI (`weir topic|group|acl|user|quota|cluster|produce|consume`): the built
//! binary driven against a running broker, asserting on its `--format json` output and on
//! what rdkafka (librdkafka) clients then see.

mod common;

use std::time::Duration;

use common::cluster::{eventually, metadata, Cluster};
use common::pki::Pki;
use common::{admin, assigned_consumer, client_config, consume_n, producer, topic_name, TestBroker};
use rdkafka::admin::{AdminOptions, ResourceSpecifier};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::FutureRecord;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::Value;
use weir::security::scram::ScramUser;

/// One run of the binary.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn weir_with(bootstrap: &str, args: &[&str], stdin: Option<&str>) -> Run {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.args(args)
        .env("WEIR_BROKERS", bootstrap)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn weir");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.expect("write stdin");
    }
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("weir {args:?} did not finish in 60 s"))
        .expect("weir output");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!("$ weir {}\n-> {}\n{}{}", args.join(" "), run.code, run.stdout, run.stderr);
    run
}

async fn weir(bootstrap: &str, args: &[&str]) -> Run {
    weir_with(bootstrap, args, None).await
}

/// Runs with `--format json`, asserts success, parses stdout.
async fn json(bootstrap: &str, args: &[&str]) -> Value {
    json_with(bootstrap, args, None).await
}

async fn json_with(bootstrap: &str, args: &[&str], stdin: Option<&str>) -> Value {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let run = weir_with(bootstrap, &all, stdin).await;
    assert_eq!(run.code, 0, "weir {args:?} failed: {}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("weir {args:?}: not JSON ({e}): {}", run.stdout))
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

fn find<'a>(list: &'a Value, field: &str, value: &str) -> &'a Value {
    list.as_array()
        .expect("array")
        .iter()
        .find(|v| v[field] == value)
        .unwrap_or_else(|| panic!("no {field}={value} in {list}"))
}

fn watermarks(bootstrap: &str, topic: &str, partition: i32) -> (i64, i64) {
    let c: BaseConsumer = client_config(bootstrap).create().unwrap();
    c.fetch_watermarks(topic, partition, Duration::from_secs(10)).expect("watermarks")
}

async fn topic_config(bootstrap: &str, topic: &str, key: &str) -> (Option<String>, bool) {
    let res =
        admin(bootstrap).describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new()).await.unwrap();
    let resource = res.into_iter().next().unwrap().expect("describe configs");
    let entry = resource.get(key).expect("config present");
    (entry.value.clone(), entry.is_default)
}

/// A group's committed offsets as librdkafka reads them.
fn committed(bootstrap: &str, group: &str, topic: &str, partitions: &[i32]) -> Vec<Offset> {
    let mut c = client_config(bootstrap);
    c.set("group.id", group).set("enable.auto.commit", "false");
    let consumer: BaseConsumer = c.create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition(topic, *p);
    }
    let got = consumer.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
    partitions.iter().map(|p| got.find_partition(topic, *p).unwrap().offset()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_commands_change_what_clients_see() {
    let b = TestBroker::start(&[]).await;
    let bs = b.bootstrap.as_str();
    let t = topic_name("cli-topic");

    let created = json(bs, &["topic", "create", &t, "-p", "3", "-c", "retention.ms=3600000"]).await;
    assert_eq!((created["created"].clone(), created["partitions"].clone()), (Value::Bool(true), Value::from(3)));
    assert_eq!(metadata(bs).topics().iter().find(|x| x.name() == t).unwrap().partitions().len(), 3);
    assert_eq!(topic_config(bs, &t, "retention.ms").await, (Some("3600000".into()), false));
    let again = weir(bs, &["topic", "create", &t]).await;
    assert_eq!(again.code, 7, "an existing topic is its own exit code");
    assert!(again.stderr.contains("TOPIC_ALREADY_EXISTS"), "{}", again.stderr);
    assert_eq!(json(bs, &["topic", "create", &t, "--if-not-exists"]).await["already_existed"], true);
    assert_eq!(find(&json(bs, &["topic", "list"]).await, "name", &t)["partitions"], 3);

    let p = producer(bs, &[]);
    for i in 0..20 {
        let v = format!("v{i}");
        p.send(FutureRecord::to(&t).partition(1).key("k").payload(&v), Duration::from_secs(10)).await.unwrap();
    }
    let d = json(bs, &["topic", "describe", &t]).await;
    let p1 = &d["partitions"][1];
    assert_eq!((p1["partition"].clone(), p1["leader"].clone()), (Value::from(1), Value::from(1)));
    assert_eq!((p1["log_start_offset"].clone(), p1["high_watermark"].clone()), (Value::from(0), Value::from(20)));
    assert_eq!((p1["replicas"].clone(), p1["isr"].clone()), (serde_json::json!([1]), serde_json::json!([1])));
    let retention = find(&d["configs"], "name", "retention.ms");
    assert_eq!(
        (retention["value"].clone(), retention["source"].clone()),
        ("3600000".into(), "DYNAMIC_TOPIC_CONFIG".into())
    );
    assert_eq!(find(&d["configs"], "name", "cleanup.policy")["source"], "DEFAULT_CONFIG");

    json(bs, &["topic", "alter-config", &t, "--set", "retention.ms=7200000", "--set", "cleanup.policy=compact"]).await;
    assert_eq!(topic_config(bs, &t, "retention.ms").await.0.as_deref(), Some("7200000"));
    assert_eq!(topic_config(bs, &t, "cleanup.policy").await.0.as_deref(), Some("compact"));
    json(bs, &["topic", "alter-config", &t, "--delete", "cleanup.policy"]).await;
    assert_eq!(topic_config(bs, &t, "cleanup.policy").await, (Some("delete".into()), true));
    assert_eq!(weir(bs, &["topic", "alter-config", &t, "--set", "retention.ms=soon"]).await.code, 2);

    let trimmed = json(bs, &["topic", "trim", &t, "--to", "5", "-p", "1"]).await;
    assert_eq!(trimmed["partitions"][0]["log_start_offset"], 5);
    assert_eq!(watermarks(bs, &t, 1), (5, 20));
    json(bs, &["topic", "trim", &t, "--to", "-1h"]).await; // every record is newer: nothing goes
    assert_eq!(watermarks(bs, &t, 1), (5, 20));
    json(bs, &["topic", "trim", &t, "--to", "latest", "-p", "1"]).await;
    assert_eq!(watermarks(bs, &t, 1), (20, 20));

    assert_eq!(json(bs, &["topic", "add-partitions", &t, "-p", "5"]).await["partitions"], 5);
    assert_eq!(json(bs, &["topic", "add-partitions", &t, "--add", "1"]).await["partitions"], 6);
    eventually(Duration::from_secs(10), "6 partitions in metadata", || {
        (metadata(bs).topics().iter().find(|x| x.name() == t)?.partitions().len() == 6).then_some(())
    });
    let fewer = weir(bs, &["topic", "add-partitions", &t, "-p", "2"]).await;
    assert!(fewer.code != 0 && fewer.stderr.contains("INVALID_PARTITIONS"), "{}", fewer.stderr);

    assert_eq!(json(bs, &["topic", "delete", &t]).await["deleted"][0], t.as_str());
    eventually(Duration::from_secs(10), "topic gone", || {
        metadata(bs).topics().iter().all(|x| x.name() != t).then_some(())
    });
    let gone = weir(bs, &["topic", "describe", &t, "--format", "json"]).await;
    assert_eq!(gone.code, 3, "not found has its own exit code");
    let error: Value = serde_json::from_str(&gone.stdout).unwrap();
    assert_eq!(
        (error["error"]["kind"].clone(), error["error"]["kafka_error"].clone()),
        ("not_found".into(), "UNKNOWN_TOPIC_OR_PARTITION".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_and_consume_round_trip_with_librdkafka() {
    let b = TestBroker::start(&[]).await;
    let bs = b.bootstrap.as_str();
    let t = topic_name("cli-data");
    json(bs, &["topic", "create", &t, "-p", "3"]).await;

    // lines with one key and a header: one partition (the Java client's murmur2 of the key)
    let lines: String = (0..50).map(|i| format!("line-{i}\n")).collect();
    let sent = json_with(bs, &["produce", &t, "-k", "key-1", "-H", "src=cli", "-z", "zstd"], Some(&lines)).await;
    assert_eq!(sent["records"], 50);
    let part = sent["partitions"][0]["partition"].as_i64().unwrap() as i32;
    let expected = (weir_murmur2(b"key-1") & 0x7fff_ffff) % 3;
    assert_eq!(part, expected, "keys are partitioned as the Java client does");
    let c = assigned_consumer(bs, &t, &[part], Offset::Beginning, &[]);
    let got = consume_n(&c, 50, Duration::from_secs(20));
    assert_eq!(got.len(), 50);
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.payload(), Some(format!("line-{i}").as_bytes()));
        assert_eq!(m.key(), Some(&b"key-1"[..]));
        let h = m.headers().unwrap().get(0);
        assert_eq!((h.key, h.value), ("src", Some(&b"cli"[..])));
    }

    // JSON lines: key, value, headers, partition; and kcat's key delimiter
    let input = r#"{"key":"jk","value":"jv","headers":[{"key":"h","value":"1"}],"partition":2}
{"value":"no key","partition":2}"#;
    json_with(bs, &["produce", &t], Some("")).await; // nothing in, nothing sent
    let sent = json_with(bs, &["produce", &t, "--input", "json"], Some(input)).await;
    assert_eq!(sent["partitions"][0]["partition"], 2);
    let sent = weir_with(bs, &["produce", &t, "-p", "2", "-K", ":"], Some("dk:dv\n")).await;
    assert_eq!(sent.code, 0);
    let c = assigned_consumer(bs, &t, &[2], Offset::Beginning, &[]);
    let got = consume_n(&c, 3, Duration::from_secs(20));
    let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
    let seen: Vec<_> = got.iter().map(|m| (text(m.key()), text(m.payload()))).collect();
    let want = |k: Option<&str>, v: &str| (k.map(str::to_string), Some(v.to_string()));
    assert_eq!(seen, vec![want(Some("jk"), "jv"), want(None, "no key"), want(Some("dk"), "dv")]);
    assert_eq!(got[0].headers().unwrap().get(0).value, Some(&b"1"[..]));

    // consume what librdkafka wrote, with timestamps
    let t2 = topic_name("cli-read");
    json(bs, &["topic", "create", &t2, "-p", "2"]).await;
    let p = producer(bs, &[]);
    let t0 = weir::cli::position::now_ms() - 3_600_000;
    for i in 0..10i64 {
        let (k, v) = (format!("k{i}"), format!("v{i}"));
        let rec = FutureRecord::to(&t2).partition(0).key(&k).payload(&v).timestamp(t0 + i * 60_000);
        p.send(rec, Duration::from_secs(10)).await.unwrap();
    }
    let all = weir(bs, &["consume", &t2, "--from", "beginning", "-e", "--format", "json"]).await;
    assert_eq!(all.code, 0, "{}", all.stderr);
    let records = json_lines(&all.stdout);
    assert_eq!(records.len(), 10);
    for (i, r) in records.iter().enumerate() {
        assert_eq!((r["partition"].clone(), r["offset"].clone()), (Value::from(0), Value::from(i)));
        assert_eq!(
            (r["key"].clone(), r["value"].clone()),
            (Value::from(format!("k{i}")), Value::from(format!("v{i}")))
        );
        assert_eq!(r["timestamp"], t0 + i as i64 * 60_000);
    }
    let since = format!("@{}", t0 + 6 * 60_000);
    let later = weir(bs, &["consume", &t2, "-p", "0", "--from", &since, "-e"]).await;
    assert_eq!(later.stdout, "v6\nv7\nv8\nv9\n");
    let some = weir(bs, &["consume", &t2, "-p", "0", "--from", "2", "-n", "2", "-K", "="]).await;
    assert_eq!(some.stdout, "k2=v2\nk3=v3\n");
    let none = weir(bs, &["consume", &t2, "--from", "end", "-e"]).await;
    assert_eq!((none.code, none.stdout.as_str()), (0, ""));
}

/// The Java client's murmur2 (pinned by a unit test against Kafka's own values).
fn weir_murmur2(data: &[u8]) -> i32 {
    weir::cli::murmur2(data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_describe_seek_and_an_rdkafka_consumer_resumes() {
    let b = TestBroker::start(&[("group.initial.rebalance.delay.ms", "0")]).await;
    let bs = b.bootstrap.as_str();
    let t = topic_name("cli-group");
    let g = topic_name("billing");
    json(bs, &["topic", "create", &t, "-p", "2"]).await;
    let p = producer(bs, &[]);
    let t0 = weir::cli::position::now_ms() - 600_000;
    for part in 0..2 {
        for i in 0..10i64 {
            let v = format!("p{part}-{i}");
            let rec = FutureRecord::<(), _>::to(&t).partition(part).payload(&v).timestamp(t0 + i * 1000);
            p.send(rec, Duration::from_secs(10)).await.unwrap();
        }
    }

    // a classic member commits 4 and 7, and is described while it runs
    let mut cfg = client_config(bs);
    cfg.set("group.id", &g).set("enable.auto.commit", "false").set("client.id", "cli-test-member");
    let member: BaseConsumer = cfg.create().unwrap();
    member.subscribe(&[&t]).unwrap();
    eventually(Duration::from_secs(20), "partitions assigned", || {
        member.poll(Duration::from_millis(100));
        (member.assignment().ok()?.count() == 2).then_some(())
    });
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&t, 0, Offset::Offset(4)).unwrap();
    tpl.add_partition_offset(&t, 1, Offset::Offset(7)).unwrap();
    member.commit(&tpl, CommitMode::Sync).unwrap();
    let d = json(bs, &["group", "describe", &g]).await;
    assert_eq!((d["type"].clone(), d["state"].clone()), ("classic".into(), "Stable".into()));
    assert_eq!(d["members"].as_array().unwrap().len(), 1);
    assert_eq!(d["members"][0]["client_id"], "cli-test-member");
    assert_eq!(d["members"][0]["assignment"].as_array().unwrap().len(), 2);
    assert_eq!(d["total_lag"], 6 + 3);
    let p0 = &d["offsets"][0];
    assert_eq!(
        (p0["committed_offset"].clone(), p0["log_end_offset"].clone(), p0["lag"].clone()),
        (4.into(), 10.into(), 6.into())
    );
    assert_eq!(find(&json(bs, &["group", "list"]).await, "group", &g)["state"], "Stable");

    let refused = weir(bs, &["group", "seek", &g, "--to", "earliest", "--topic", &t, "--execute"]).await;
    assert!(refused.code != 0 && refused.stderr.contains("NON_EMPTY_GROUP"), "an active group is not moved");
    drop(member);
    eventually(Duration::from_secs(20), "group empty", || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["group", "describe", &g, "-b", bs, "--format", "json"])
            .output()
            .ok()?;
        let d: Value = serde_json::from_slice(&out.stdout).ok()?;
        (d["state"] == "Empty").then_some(())
    });

    // the plan changes nothing; --execute does
    let plan = json(bs, &["group", "seek", &g, "--to", "earliest", "--topic", &t]).await;
    assert_eq!(plan["executed"], false);
    assert_eq!(plan["partitions"][0]["new_offset"], 0);
    assert_eq!(committed(bs, &g, &t, &[0, 1]), vec![Offset::Offset(4), Offset::Offset(7)]);
    json(bs, &["group", "seek", &g, "--to", "6", "--topic", &format!("{t}:0"), "--execute"]).await;
    let at = format!("@{}", t0 + 5000);
    json(bs, &["group", "seek", &g, "--to", &at, "--topic", &format!("{t}:1"), "--execute"]).await;
    assert_eq!(committed(bs, &g, &t, &[0, 1]), vec![Offset::Offset(6), Offset::Offset(5)]);
    let clamped = json(bs, &["group", "seek", &g, "--to", "999", "--topic", &t]).await;
    assert_eq!(clamped["partitions"][0]["new_offset"], 10, "an offset past the end moves to the end");

    // an rdkafka member resumes where the seek put the group
    let mut cfg = client_config(bs);
    cfg.set("group.id", &g).set("enable.auto.commit", "false");
    let resumed: BaseConsumer = cfg.create().unwrap();
    resumed.subscribe(&[&t]).unwrap();
    let got = consume_n(&resumed, 4 + 5, Duration::from_secs(30));
    let mut firsts: Vec<(i32, i64)> = Vec::new();
    for m in &got {
        if !firsts.iter().any(|(p, _)| *p == m.partition()) {
            firsts.push((m.partition(), m.offset()));
        }
    }
    firsts.sort();
    assert_eq!(firsts, vec![(0, 6), (1, 5)]);
    drop(resumed);

    json(bs, &["group", "delete-offsets", &g, "--topic", &format!("{t}:1")]).await;
    assert_eq!(committed(bs, &g, &t, &[0, 1]), vec![Offset::Offset(6), Offset::Invalid]);
    eventually(Duration::from_secs(20), "group deleted", || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["group", "delete", &g, "-b", bs])
            .output()
            .ok()?;
        out.status.success().then_some(())
    });
    assert_eq!(weir(bs, &["group", "describe", &g]).await.code, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_as_a_group_member_commits_and_librdkafka_resumes() {
    let b = TestBroker::start(&[("group.initial.rebalance.delay.ms", "0")]).await;
    let bs = b.bootstrap.as_str();
    let t = topic_name("cli-member");
    let g = topic_name("reader");
    json(bs, &["topic", "create", &t, "-p", "2"]).await;
    let lines: String = (0..30).map(|i| format!("r{i}\n")).collect();
    json_with(bs, &["produce", &t, "-p", "0"], Some(&lines)).await;
    json_with(bs, &["produce", &t, "-p", "1"], Some(&lines)).await;

    let first = weir(bs, &["consume", &t, "-g", &g, "--from", "beginning", "-n", "12"]).await;
    assert_eq!((first.code, first.stdout.lines().count()), (0, 12), "{}", first.stderr);
    let d = json(bs, &["group", "describe", &g]).await;
    assert_eq!(d["type"], "consumer", "a KIP-848 member");
    assert_eq!(d["total_lag"], 60 - 12);
    let all = weir(bs, &["consume", &t, "-g", &g, "-e"]).await;
    assert_eq!(all.stdout.lines().count(), 48, "the rest, from the committed offsets");
    assert_eq!(committed(bs, &g, &t, &[0, 1]), vec![Offset::Offset(30), Offset::Offset(30)]);
    assert_eq!(json(bs, &["group", "describe", &g]).await["total_lag"], 0);

    // librdkafka, as a KIP-848 member of the same group, resumes after what the CLI read
    json_with(bs, &["produce", &t, "-p", "1"], Some("after\n")).await;
    let mut cfg = client_config(bs);
    cfg.set("group.id", &g).set("group.protocol", "consumer").set("enable.auto.commit", "false");
    let c: BaseConsumer = cfg.create().unwrap();
    c.subscribe(&[&t]).unwrap();
    let got = consume_n(&c, 1, Duration::from_secs(30));
    assert_eq!((got[0].partition(), got[0].offset(), got[0].payload()), (1, 30, Some(&b"after"[..])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_acls_and_quotas_over_sasl_ssl() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let mut pairs: Vec<(String, String)> = vec![
        ("listeners".into(), "SASL_SSL://127.0.0.1:0".into()),
        ("log.dirs".into(), dir.path().display().to_string()),
        ("authorizer.class.name".into(), "org.apache.kafka.metadata.authorizer.StandardAuthorizer".into()),
        ("super.users".into(), "User:admin".into()),
        ("sasl.enabled.mechanisms".into(), "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512".into()),
    ];
    pairs.extend(pki.broker_settings());
    let mut config = weir::config::BrokerConfig::from_layers([pairs]).unwrap();
    config.add_scram_user(ScramUser::parse("SCRAM-SHA-256=[name=admin,password=admin-secret]").unwrap());
    let b = TestBroker::start_with(dir, config).await;
    let addr = b.running.as_ref().unwrap().listener_addr("SASL_SSL").unwrap().to_string();
    let ca = format!("ssl.ca.location={}", pki.ca_file.display());
    let login = |user: &str, password: &str, mechanism: &str| -> Vec<String> {
        [
            "security.protocol=SASL_SSL",
            &ca,
            &format!("sasl.mechanism={mechanism}"),
            &format!("sasl.username={user}"),
            &format!("sasl.password={password}"),
        ]
        .iter()
        .flat_map(|x| ["-X".to_string(), x.to_string()])
        .collect()
    };
    let with = |args: &[&str], login: &[String]| -> Vec<String> {
        args.iter().map(|s| s.to_string()).chain(login.iter().cloned()).collect()
    };
    let admin_login = login("admin", "admin-secret", "SCRAM-SHA-256");
    let alice_login = login("alice", "alice-pw", "SCRAM-SHA-512");
    let run = |args: Vec<String>| {
        let addr = addr.clone();
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            weir(&addr, &refs).await
        }
    };
    let run_json = |args: Vec<String>| {
        let addr = addr.clone();
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            json(&addr, &refs).await
        }
    };

    let t = topic_name("cli-secure");
    run_json(with(&["topic", "create", &t, "-p", "1"], &admin_login)).await;
    run_json(with(
        &["user", "create", "alice", "--password", "alice-pw", "--mechanism", "SCRAM-SHA-512"],
        &admin_login,
    ))
    .await;
    let users = run_json(with(&["user", "list"], &admin_login)).await;
    assert_eq!(find(&users, "user", "alice")["credentials"][0]["mechanism"], "SCRAM-SHA-512");

    let wrong = run(with(&["topic", "list"], &login("alice", "nope", "SCRAM-SHA-512"))).await;
    assert_eq!(wrong.code, 4, "a failed login is 'not authorized': {}", wrong.stderr);
    let denied = run(with(&["topic", "describe", &t], &alice_login)).await;
    assert_eq!(denied.code, 4, "no ACL yet: {}", denied.stderr);
    assert!(denied.stderr.contains("TOPIC_AUTHORIZATION_FAILED"), "{}", denied.stderr);

    let created = run_json(with(
        &[
            "acl",
            "create",
            "--allow-principal",
            "User:alice",
            "--operation",
            "Read",
            "--operation",
            "Describe",
            "--operation",
            "DescribeConfigs",
            "--topic",
            &t,
        ],
        &admin_login,
    ))
    .await;
    assert_eq!(created["created"].as_array().unwrap().len(), 3);
    run_json(with(
        &["acl", "create", "--allow-principal", "User:alice", "--operation", "Read", "--group", "alice-", "--prefixed"],
        &admin_login,
    ))
    .await;
    let listed = run_json(with(&["acl", "list", "--topic", &t], &admin_login)).await;
    let ops: Vec<&str> = listed.as_array().unwrap().iter().map(|a| a["operation"].as_str().unwrap()).collect();
    assert_eq!(ops.len(), 3, "{listed}");
    assert!(ops.contains(&"Read") && ops.contains(&"Describe") && ops.contains(&"DescribeConfigs"));
    let prefixed = run_json(with(
        &["acl", "list", "--allow-principal", "User:alice", "--group", "alice-", "--prefixed"],
        &admin_login,
    ))
    .await;
    assert_eq!(
        (prefixed[0]["pattern_type"].clone(), prefixed[0]["resource_type"].clone()),
        ("Prefixed".into(), "Group".into())
    );

    let refs: Vec<String> = with(&["produce", &t], &admin_login);
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    json_with(&addr, &refs, Some("hello\n")).await;
    let described = run_json(with(&["topic", "describe", &t], &alice_login)).await;
    assert_eq!(described["name"], t.as_str());
    // librdkafka logs in as alice with the SCRAM-SHA-512 credential the CLI made, and reads
    let mut cfg = client_config(&addr);
    cfg.set("security.protocol", "SASL_SSL")
        .set("ssl.ca.location", pki.ca_file.display().to_string())
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", "alice")
        .set("sasl.password", "alice-pw")
        .set("group.id", "alice-readers")
        .set("enable.auto.commit", "false");
    let c: BaseConsumer = cfg.create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&t, 0, Offset::Beginning).unwrap();
    c.assign(&tpl).unwrap();
    let got = consume_n(&c, 1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "alice reads with the ACLs the CLI created");

    let deleted =
        run_json(with(&["acl", "delete", "--allow-principal", "User:alice", "--topic", &t], &admin_login)).await;
    assert_eq!(deleted["deleted"].as_array().unwrap().len(), 3);
    assert_eq!(run(with(&["topic", "describe", &t], &alice_login)).await.code, 4);

    run_json(with(&["quota", "alter", "--user", "alice", "--set", "producer_byte_rate=1024"], &admin_login)).await;
    let quotas = run_json(with(&["quota", "describe", "--user", "alice"], &admin_login)).await;
    assert_eq!(quotas[0]["entity"]["user"], "alice");
    assert_eq!(quotas[0]["quotas"]["producer_byte_rate"], 1024.0);
    run_json(with(&["quota", "alter", "--user", "alice", "--delete", "producer_byte_rate"], &admin_login)).await;
    assert_eq!(run_json(with(&["quota", "describe", "--user", "alice"], &admin_login)).await, serde_json::json!([]));

    run_json(with(&["user", "delete", "alice"], &admin_login)).await;
    assert!(run_json(with(&["user", "list"], &admin_login))
        .await
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["user"] != "alice"));
    assert_eq!(run(with(&["topic", "list"], &alice_login)).await.code, 4, "a deleted user cannot log in");

    // TLS without the CA: the handshake fails, which is "unreachable"
    let no_ca = run(vec![
        "topic".into(),
        "list".into(),
        "-X".into(),
        "security.protocol=SSL".into(),
        "-X".into(),
        "ssl.ca.location=/dev/null".into(),
    ])
    .await;
    assert_eq!(no_ca.code, 2, "an empty CA file is a usage error: {}", no_ca.stderr);
    let other = Pki::new();
    let untrusted = run(vec![
        "topic".into(),
        "list".into(),
        "-X".into(),
        "security.protocol=SSL".into(),
        "-X".into(),
        format!("ssl.ca.location={}", other.ca_file.display()),
    ])
    .await;
    assert_eq!(untrusted.code, 5, "a certificate from another CA fails the handshake: {}", untrusted.stderr);
    assert!(untrusted.stderr.contains("TLS handshake failed"), "{}", untrusted.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_commands_help_completion_and_exit_codes() {
    let b = TestBroker::start(&[]).await;
    let bs = b.bootstrap.as_str();
    let info = json(bs, &["cluster", "info"]).await;
    assert_eq!((info["controller_id"].clone(), info["brokers"][0]["id"].clone()), (1.into(), 1.into()));
    assert!(!info["cluster_id"].as_str().unwrap_or_default().is_empty());
    let health = json(bs, &["cluster", "health"]).await;
    assert_eq!((health["healthy"].clone(), health["offline_partitions"].clone()), (true.into(), serde_json::json!([])));

    json(bs, &["cluster", "config", "set", "log.retention.ms=86400000"]).await;
    let got = json(bs, &["cluster", "config", "get", "log.retention.ms"]).await;
    assert_eq!(got["configs"][0]["value"], "86400000");
    let res = admin(bs).describe_configs(&[ResourceSpecifier::Broker(1)], &AdminOptions::new()).await.unwrap();
    let broker = res.into_iter().next().unwrap().unwrap();
    assert_eq!(broker.get("log.retention.ms").unwrap().value.as_deref(), Some("86400000"));
    let dynamic = json(bs, &["cluster", "config", "get", "--dynamic"]).await;
    assert!(dynamic["configs"].as_array().unwrap().iter().any(|c| c["name"] == "log.retention.ms"));
    json(bs, &["cluster", "config", "set", "--delete", "log.retention.ms"]).await;
    assert_eq!(json(bs, &["cluster", "config", "get", "log.retention.ms"]).await["configs"][0]["value"], "604800000");
    assert_eq!(weir(bs, &["cluster", "config", "set", "no.such.config=1"]).await.code, 2);

    // exit codes
    let down = weir("127.0.0.1:1", &["topic", "list", "--format", "json"]).await;
    assert_eq!(down.code, 5, "unreachable");
    assert_eq!(serde_json::from_str::<Value>(&down.stdout).unwrap()["error"]["kind"], "unreachable");
    assert_eq!(weir(bs, &["topic", "list", "-X", "no.such.property=1"]).await.code, 2);
    assert_eq!(weir(bs, &["group", "seek", "g", "--to", "sometime", "--topic", "t"]).await.code, 2);
    assert_eq!(weir(bs, &["topic", "frobnicate"]).await.code, 2);

    // help with examples on every command; completion scripts
    for cmd in [
        &["topic"][..],
        &["topic", "create"],
        &["topic", "list"],
        &["topic", "describe"],
        &["topic", "delete"],
        &["topic", "add-partitions"],
        &["topic", "alter-config"],
        &["topic", "trim"],
        &["group"],
        &["group", "list"],
        &["group", "describe"],
        &["group", "seek"],
        &["group", "delete"],
        &["group", "delete-offsets"],
        &["acl"],
        &["acl", "create"],
        &["acl", "list"],
        &["acl", "delete"],
        &["user"],
        &["user", "create"],
        &["user", "list"],
        &["user", "delete"],
        &["quota"],
        &["quota", "describe"],
        &["quota", "alter"],
        &["cluster"],
        &["cluster", "info"],
        &["cluster", "health"],
        &["cluster", "config"],
        &["cluster", "config", "get"],
        &["cluster", "config", "set"],
        &["produce"],
        &["consume"],
        &["completion"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let help = weir(bs, &args).await;
        assert_eq!(help.code, 0);
        assert!(
            help.stdout.contains("Examples:\n") && help.stdout.contains(" weir "),
            "no examples in `weir {}`",
            cmd.join(" ")
        );
    }
    for shell in ["bash", "zsh", "fish"] {
        let script = weir(bs, &["completion", shell]).await;
        assert_eq!(script.code, 0);
        assert!(script.stdout.contains("add-partitions") && script.stdout.contains("delete-offsets"), "{shell}");
    }
}

#[test]
fn health_sees_offline_and_under_replicated_partitions_and_the_client_follows_leaders() {
    let mut cluster = Cluster::start(3);
    let bs = cluster.bootstrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let replicated = topic_name("cli-rf3");
    let single = topic_name("cli-rf1");
    rt.block_on(async {
        json(&bs, &["topic", "create", &replicated, "-p", "1", "-r", "3"]).await;
        json(&bs, &["topic", "create", &single, "-p", "3", "-r", "1"]).await;
    });
    eventually(Duration::from_secs(20), "healthy", || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["cluster", "health", "-b", &bs])
            .output()
            .ok()?;
        out.status.success().then_some(())
    });
    let lines: String = (0..100).map(|i| format!("before-{i}\n")).collect();
    rt.block_on(json_with(&bs, &["produce", &replicated], Some(&lines)));

    // a broker's own dynamic config is its alone; the cluster-wide default reaches every broker
    rt.block_on(async {
        json(&bs, &["cluster", "config", "set", "--broker", "2", "log.cleaner.threads=3"]).await;
        json(&bs, &["cluster", "config", "set", "log.cleaner.threads=2"]).await;
    });
    for (id, want) in [
        ("1", ("2", "DYNAMIC_DEFAULT_BROKER_CONFIG")),
        ("2", ("3", "DYNAMIC_BROKER_CONFIG")),
        ("3", ("2", "DYNAMIC_DEFAULT_BROKER_CONFIG")),
    ] {
        eventually(Duration::from_secs(10), "the broker's config", || {
            let got = rt.block_on(json(&bs, &["cluster", "config", "get", "log.cleaner.threads", "--broker", id]));
            let c = &got["configs"][0];
            (c["value"] == want.0 && c["source"] == want.1).then_some(())
        });
    }

    // kill the leader of the replicated partition: it is under-replicated, a single-replica
    // partition there is offline, and the CLI follows the new leader
    let leader =
        rt.block_on(json(&bs, &["topic", "describe", &replicated]))["partitions"][0]["leader"].as_i64().unwrap() as i32;
    let on_leader: Vec<i64> = rt.block_on(json(&bs, &["topic", "describe", &single]))["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["leader"] == leader)
        .map(|p| p["partition"].as_i64().unwrap())
        .collect();
    cluster.kill(cluster.index_of(leader));
    let bs = cluster.bootstrap();
    let health = eventually(Duration::from_secs(30), "the problems reported", || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["cluster", "health", "-b", &bs, "--format", "json"])
            .output()
            .ok()?;
        let h: Value = serde_json::from_slice(&out.stdout).ok()?;
        let offline = h["offline_partitions"].as_array()?.len();
        let under = h["under_replicated_partitions"].as_array()?.iter().any(|p| p["topic"] == replicated.as_str());
        (offline == on_leader.len() && under).then_some((out.status.code(), h))
    });
    assert_eq!(health.0, Some(weir::cli::UNHEALTHY), "health exits non-zero");
    assert_eq!(health.1["healthy"], false);
    let more: String = (0..100).map(|i| format!("after-{i}\n")).collect();
    let sent = rt.block_on(json_with(&bs, &["produce", &replicated], Some(&more)));
    assert_eq!(sent["records"], 100);
    let all = rt.block_on(weir(&bs, &["consume", &replicated, "--from", "beginning", "-e"]));
    let expected: String = lines + &more;
    assert_eq!(all.stdout, expected, "every record once, in order, through the new leader");
}
