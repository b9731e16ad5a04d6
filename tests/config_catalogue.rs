//! Kafka's whole config catalogue: every Kafka broker and topic config name is accepted with
//! Kafka's type and validator, stored and described; read-only and per-broker keys get Kafka's
//! errors. Driven with rdkafka's admin client (AlterConfigs, DescribeConfigs) as librdkafka's
//! own admin test does, and with raw IncrementalAlterConfigs where rdkafka has no API.

mod common;

use std::time::Duration;

use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminOptions, AlterConfig, ConfigSource, ResourceSpecifier};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn opts() -> AdminOptions {
    AdminOptions::new().request_timeout(Some(Duration::from_secs(10)))
}

/// IncrementalAlterConfigs on one resource; returns (error code, message).
async fn incremental(bootstrap: &str, resource_type: i8, name: &str, ops: &[(&str, i8, &str)]) -> (i16, String) {
    let configs = ops
        .iter()
        .map(|(k, op, v)| {
            incremental_alter_configs_request::AlterableConfig::default()
                .with_name(s(k))
                .with_config_operation(*op)
                .with_value(Some(s(v)))
        })
        .collect();
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_configs(configs),
    ]);
    let r: IncrementalAlterConfigsResponse = raw::call_async(bootstrap, ApiKey::IncrementalAlterConfigs, 1, req).await;
    let res = &r.responses[0];
    (res.error_code, res.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default())
}

/// (resource type, resource name, operations as (key, op, value), expected code, message part)
type Case<'a> = (i8, &'a str, &'a [(&'a str, i8, &'a str)], i16, &'a str);

#[tokio::test(flavor = "multi_thread")]
async fn kafka_config_names_are_accepted_validated_and_described() {
    let broker = TestBroker::start(&[]).await;
    let admin = admin(&broker.bootstrap);
    let topic = topic_name("catalogue");
    create_topic(&broker.bootstrap, &topic, 1, &[("max.compaction.lag.ms", "7200000")]).await;

    // librdkafka's 0081-admin AlterConfigs: a topic, the broker, a missing topic
    let missing = topic_name("catalogue-missing");
    let alters = [
        AlterConfig::new(ResourceSpecifier::Topic(&topic)).set("compression.type", "gzip").set("flush.ms", "12345678"),
        AlterConfig::new(ResourceSpecifier::Broker(1)).set("sasl.kerberos.min.time.before.relogin", "58000"),
        AlterConfig::new(ResourceSpecifier::Topic(&missing))
            .set("compression.type", "lz4")
            .set("max.compaction.lag.ms", "3600000"),
    ];
    let results = admin.alter_configs(alters.iter(), &opts()).await.unwrap();
    assert_eq!(results.len(), 3);
    // rdkafka 0.39 drops AlterConfigs' per-resource errors; the missing topic's is checked raw
    let req =
        AlterConfigsRequest::default().with_resources(vec![alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s(&missing))
            .with_configs(vec![alter_configs_request::AlterableConfig::default()
                .with_name(s("max.compaction.lag.ms"))
                .with_value(Some(s("3600000")))])]);
    let r: AlterConfigsResponse = raw::call_async(&broker.bootstrap, ApiKey::AlterConfigs, 2, req).await;
    assert_eq!(r.responses[0].error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");

    let described = admin
        .describe_configs([ResourceSpecifier::Broker(1), ResourceSpecifier::Topic(&topic)].iter(), &opts())
        .await
        .unwrap();
    let broker_cfg = described[0].as_ref().unwrap();
    let topic_cfg = described[1].as_ref().unwrap();
    // the broker lists Kafka's whole catalogue, not only what Weir acts on
    assert!(broker_cfg.entries.len() > 300, "{} broker configs", broker_cfg.entries.len());
    let relogin = broker_cfg.get("sasl.kerberos.min.time.before.relogin").unwrap();
    assert_eq!(relogin.value.as_deref(), Some("58000"));
    assert_eq!(relogin.source, ConfigSource::DynamicBroker);
    let threads = broker_cfg.get("num.io.threads").unwrap();
    assert_eq!((threads.value.as_deref(), &threads.source), (Some("8"), &ConfigSource::Default));
    assert!(!threads.is_read_only, "num.io.threads is cluster-wide dynamic in Kafka");
    assert!(broker_cfg.get("broker.id").unwrap().is_read_only);
    // no default in Kafka: described as null; passwords are never shown
    assert_eq!(broker_cfg.get("broker.rack").unwrap().value, None);
    let secret = broker_cfg.get("ssl.keystore.password").unwrap();
    assert!(secret.is_sensitive && secret.value.is_none());

    assert_eq!(topic_cfg.get("compression.type").unwrap().value.as_deref(), Some("gzip"));
    assert_eq!(topic_cfg.get("flush.ms").unwrap().value.as_deref(), Some("12345678"));
    // legacy AlterConfigs replaces a topic's whole override set, as in Kafka: the creation-time
    // max.compaction.lag.ms is gone, back to its default
    let lag = topic_cfg.get("max.compaction.lag.ms").unwrap();
    assert_eq!((lag.value.as_deref(), &lag.source), (Some("9223372036854775807"), &ConfigSource::Default));
    let level = topic_cfg.get("compression.zstd.level").unwrap();
    assert_eq!((level.value.as_deref(), &level.source), (Some("3"), &ConfigSource::Default));
    for name in ["remote.storage.enable", "segment.jitter.ms", "unclean.leader.election.enable", "preallocate"] {
        assert!(topic_cfg.get(name).is_some(), "topic config {name} is described");
    }

    // Kafka's checks: type and validator, update mode, per-broker keys need a broker id
    let cases: [Case; 9] = [
        (4, "1", &[("background.threads", 0, "9"), ("log.cleanup.policy", 2, "compact")], 0, ""),
        (4, "1", &[("background.threads", 0, "0")], 42, "at least 1"),
        (4, "1", &[("sasl.kerberos.min.time.before.relogin", 0, "soon")], 42, "expected an integer"),
        (4, "1", &[("log.dirs", 0, "/elsewhere")], 42, "Cannot update these configs dynamically: Set(log.dirs)"),
        (4, "", &[("sasl.kerberos.service.name", 0, "kafka")], 42, "broker id must be specified"),
        (4, "1", &[("no.such.config", 0, "1")], 40, "Unknown config name: no.such.config"),
        (2, &topic, &[("compression.gzip.level", 0, "10")], 40, "between 1 and 9 or -1"),
        (2, &topic, &[("compression.gzip.level", 0, "-1"), ("cleanup.policy", 0, "compact,delete")], 0, ""),
        (2, &topic, &[("no.such.config", 0, "1")], 40, "Unknown topic config name: no.such.config"),
    ];
    for (resource_type, name, ops, code, message) in cases {
        let (got, msg) = incremental(&broker.bootstrap, resource_type, name, ops).await;
        assert_eq!(got, code, "{ops:?}: {msg}");
        assert!(msg.contains(message), "{ops:?}: {msg}");
    }
    let described = admin.describe_configs([ResourceSpecifier::Broker(1)].iter(), &opts()).await.unwrap();
    let broker_cfg = described[0].as_ref().unwrap();
    assert_eq!(broker_cfg.get("background.threads").unwrap().value.as_deref(), Some("9"));
    assert_eq!(broker_cfg.get("log.cleanup.policy").unwrap().value.as_deref(), Some("delete,compact"));

    // dynamic values survive a restart
    drop(admin);
    let broker = broker.restart(&[]).await;
    let described = common::admin(&broker.bootstrap)
        .describe_configs([ResourceSpecifier::Broker(1)].iter(), &opts())
        .await
        .unwrap();
    let relogin = described[0].as_ref().unwrap().get("sasl.kerberos.min.time.before.relogin").unwrap();
    assert_eq!((relogin.value.as_deref(), &relogin.source), (Some("58000"), &ConfigSource::DynamicBroker));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_static_config_file_may_use_kafka_names_weir_does_not_act_on() {
    // server.properties habits: Kafka names in the broker's own config are accepted and
    // described as static broker config
    let broker = TestBroker::start(&[("num.io.threads", "16"), ("broker.rack", "rack-a")]).await;
    let described =
        admin(&broker.bootstrap).describe_configs([ResourceSpecifier::Broker(1)].iter(), &opts()).await.unwrap();
    let cfg = described[0].as_ref().unwrap();
    for (name, value) in [("num.io.threads", "16"), ("broker.rack", "rack-a")] {
        let e = cfg.get(name).unwrap();
        assert_eq!((e.value.as_deref(), &e.source), (Some(value), &ConfigSource::StaticBroker), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_limits_are_dynamic_as_in_kafka() {
    let broker = TestBroker::start(&[]).await;
    let (code, msg) = incremental(&broker.bootstrap, 4, "", &[("max.connections.per.ip", 0, "3")]).await;
    assert_eq!(code, 0, "{msg}");
    let b = broker.bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        // the admin connection above may still be closing: retry until three are served
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let _held = loop {
            let mut held: Vec<std::net::TcpStream> = (0..3).map(|_| raw::connect(&b)).collect();
            if held.iter_mut().all(raw::answers) {
                break held;
            }
            assert!(std::time::Instant::now() < deadline, "three connections are never served");
            drop(held);
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut extra = raw::connect(&b);
        assert!(raw::is_closed(&mut extra), "a fourth from the same address is refused under the new limit");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn group_configs_set_a_consumer_groups_timing() {
    let broker = TestBroker::start(&[]).await;
    let group = topic_name("grp");
    let topic = topic_name("grp-topic");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    // librdkafka's 0081-admin: SET then DELETE consumer.session.timeout.ms on a GROUP resource
    let cases: [Case; 7] = [
        (32, &group, &[("consumer.session.timeout.ms", 0, "50000")], 0, ""),
        (32, &group, &[("consumer.session.timeout.ms", 1, "")], 0, ""),
        (32, &group, &[("consumer.session.timeout.ms", 0, "1000")], 40, "greater than or equal to group.consumer.min"),
        (32, &group, &[("consumer.heartbeat.interval.ms", 0, "15000")], 0, ""),
        (32, &group, &[("consumer.session.timeout.ms", 0, "45000"), ("share.isolation.level", 0, "snapshot")], 40, ""),
        (32, &group, &[("consumer.colour", 0, "red")], 40, "Unknown group config name: consumer.colour"),
        (32, "", &[("consumer.session.timeout.ms", 0, "50000")], 42, "Group name must not be empty"),
    ];
    for (resource_type, name, ops, code, message) in cases {
        let (got, msg) = incremental(&broker.bootstrap, resource_type, name, ops).await;
        assert_eq!(got, code, "{ops:?}: {msg}");
        assert!(msg.contains(message), "{ops:?}: {msg}");
    }
    // values a member can observe
    let (code, msg) = incremental(
        &broker.bootstrap,
        32,
        &group,
        &[("consumer.heartbeat.interval.ms", 0, "6000"), ("consumer.session.timeout.ms", 0, "50000")],
    )
    .await;
    assert_eq!(code, 0, "{msg}");
    // raw: rdkafka 0.39 refuses GROUP_CONFIG, the config source Kafka 4 reports for a
    // group's own values ("bogus config source type")
    let described = raw::describe_configs(&broker.bootstrap, 32, &group).await;
    // Kafka 4.1's ten, share.delivery.count.limit and share.partition.max.record.locks (Kafka
    // 4.2), errors.deadletterqueue.topic.name (KIP-1191) and Weir's two release back-off keys
    assert_eq!(described.len(), 15, "the group configs");
    assert!(described.contains(&("consumer.session.timeout.ms".into(), "50000".into(), 8)));
    assert!(described.contains(&("share.record.lock.duration.ms".into(), "30000".into(), 5)));

    // a KIP-848 member of the group is told the group's heartbeat interval
    let b = broker.bootstrap.clone();
    let hb = tokio::task::spawn_blocking(move || raw::join_consumer_group(&b, &group, &topic)).await.unwrap();
    assert_eq!((hb.error_code, hb.heartbeat_interval_ms), (0, 6000));
}

/// DescribeConfigs v4 with synonyms of one resource: `(name, value, source, synonym sources)`
/// of every config listed.
async fn described(bootstrap: &str, resource_type: i8, name: &str) -> Vec<(String, Option<String>, i8, Vec<i8>)> {
    let req = DescribeConfigsRequest::default().with_include_synonyms(true).with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_configuration_keys(None),
    ]);
    let r: DescribeConfigsResponse = raw::call_async(bootstrap, ApiKey::DescribeConfigs, 4, req).await;
    assert_eq!(r.results[0].error_code, 0, "{:?}", r.results[0].error_message);
    r.results[0]
        .configs
        .iter()
        .map(|c| {
            let synonyms = c.synonyms.iter().map(|s| s.source).collect();
            (c.name.to_string(), c.value.as_ref().map(|v| v.to_string()), c.config_source, synonyms)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_brokers_own_dynamic_config_overrides_the_cluster_default() {
    const DYNAMIC_BROKER: i8 = 2;
    const DYNAMIC_DEFAULT_BROKER: i8 = 3;
    const STATIC_BROKER: i8 = 4;
    const DEFAULT: i8 = 5;
    let broker = TestBroker::start(&[("log.retention.ms", "1000000")]).await;
    let bs = broker.bootstrap.as_str();
    let topic = topic_name("levels");
    create_topic(bs, &topic, 1, &[]).await;
    let one = |list: &[(String, Option<String>, i8, Vec<i8>)], name: &str| {
        list.iter().find(|c| c.0 == name).map(|c| (c.1.clone(), c.2, c.3.clone()))
    };
    let value = |v: &str| Some(v.to_string());

    // the cluster-wide default: described at both levels
    assert_eq!(incremental(bs, 4, "", &[("log.retention.ms", 0, "2000000")]).await.0, 0);
    let default_level = described(bs, 4, "").await;
    assert_eq!(default_level.len(), 1, "the default level lists what is set there: {default_level:?}");
    assert_eq!(
        one(&default_level, "log.retention.ms"),
        Some((value("2000000"), DYNAMIC_DEFAULT_BROKER, vec![DYNAMIC_DEFAULT_BROKER]))
    );
    let broker_level = described(bs, 4, "1").await;
    assert_eq!(
        one(&broker_level, "log.retention.ms"),
        Some((value("2000000"), DYNAMIC_DEFAULT_BROKER, vec![DYNAMIC_DEFAULT_BROKER, STATIC_BROKER, DEFAULT]))
    );
    let topic_level = described(bs, 2, &topic).await;
    assert_eq!(one(&topic_level, "retention.ms").map(|c| (c.0, c.1)), Some((value("2000000"), DYNAMIC_DEFAULT_BROKER)));

    // this broker's own value wins over the default, which stays set beneath it
    assert_eq!(incremental(bs, 4, "1", &[("log.retention.ms", 0, "3000000")]).await.0, 0);
    let broker_level = described(bs, 4, "1").await;
    assert_eq!(
        one(&broker_level, "log.retention.ms"),
        Some((value("3000000"), DYNAMIC_BROKER, vec![DYNAMIC_BROKER, DYNAMIC_DEFAULT_BROKER, STATIC_BROKER, DEFAULT]))
    );
    assert_eq!(one(&described(bs, 4, "").await, "log.retention.ms").map(|c| c.0), Some(value("2000000")));
    let topic_level = described(bs, 2, &topic).await;
    assert_eq!(one(&topic_level, "retention.ms").map(|c| (c.0, c.1)), Some((value("3000000"), DYNAMIC_BROKER)));
    // rdkafka sees the same
    let res = admin(bs).describe_configs(&[ResourceSpecifier::Broker(1)], &opts()).await.unwrap();
    let retention = res[0].as_ref().unwrap().get("log.retention.ms").unwrap();
    assert_eq!((&retention.value, &retention.source), (&value("3000000"), &ConfigSource::DynamicBroker));

    // removing the broker's own value uncovers the default; removing that, the static value
    assert_eq!(incremental(bs, 4, "1", &[("log.retention.ms", 1, "")]).await.0, 0);
    assert_eq!(
        one(&described(bs, 4, "1").await, "log.retention.ms").map(|c| (c.0, c.1)),
        Some((value("2000000"), DYNAMIC_DEFAULT_BROKER))
    );
    assert_eq!(incremental(bs, 4, "", &[("log.retention.ms", 1, "")]).await.0, 0);
    assert_eq!(described(bs, 4, "").await, vec![]);
    assert_eq!(
        one(&described(bs, 4, "1").await, "log.retention.ms").map(|c| (c.0, c.1)),
        Some((value("1000000"), STATIC_BROKER))
    );

    // both levels survive a restart
    assert_eq!(incremental(bs, 4, "", &[("log.cleaner.threads", 0, "2")]).await.0, 0);
    assert_eq!(incremental(bs, 4, "1", &[("log.cleaner.threads", 0, "3")]).await.0, 0);
    let broker = broker.restart(&[]).await;
    let bs = broker.bootstrap.as_str();
    assert_eq!(one(&described(bs, 4, "").await, "log.cleaner.threads").map(|c| c.0), Some(value("2")));
    assert_eq!(
        one(&described(bs, 4, "1").await, "log.cleaner.threads").map(|c| (c.0, c.1)),
        Some((value("3"), DYNAMIC_BROKER))
    );
}
