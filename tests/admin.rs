//! Topic administration through rdkafka's admin client, with Kafka's error codes.

mod common;

use std::time::Duration;

use common::*;
use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, ApiKey, DescribeConfigsRequest, DescribeConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{
    AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureRecord;
use rdkafka::Offset;

fn code_of<T>(r: &Result<T, (String, RDKafkaErrorCode)>) -> Option<RDKafkaErrorCode> {
    r.as_ref().err().map(|(_, c)| *c)
}

#[tokio::test(flavor = "multi_thread")]
async fn create_topics_validates_like_kafka() {
    let broker = TestBroker::start(&[]).await;
    let admin = admin(&broker.bootstrap);
    let name = topic_name("admin");
    async fn create(
        admin: &rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext>,
        t: NewTopic<'_>,
    ) -> Result<String, (String, RDKafkaErrorCode)> {
        admin.create_topics(&[t], &AdminOptions::new()).await.expect("request").remove(0)
    }
    assert!(create(&admin, NewTopic::new(&name, 3, TopicReplication::Fixed(1))).await.is_ok());
    let cases = [
        (NewTopic::new(&name, 3, TopicReplication::Fixed(1)), RDKafkaErrorCode::TopicAlreadyExists),
        (NewTopic::new("bad name!", 1, TopicReplication::Fixed(1)), RDKafkaErrorCode::InvalidTopic),
        (NewTopic::new("zero-partitions", 0, TopicReplication::Fixed(1)), RDKafkaErrorCode::InvalidPartitions),
        (NewTopic::new("rf-three", 1, TopicReplication::Fixed(3)), RDKafkaErrorCode::InvalidReplicationFactor),
        (
            NewTopic::new("bad-config", 1, TopicReplication::Fixed(1)).set("retention.ms", "soon"),
            RDKafkaErrorCode::InvalidConfig,
        ),
        (
            NewTopic::new("unknown-config", 1, TopicReplication::Fixed(1)).set("no.such.config", "1"),
            RDKafkaErrorCode::InvalidConfig,
        ),
    ];
    for (t, want) in cases {
        let name = t.name.to_string();
        assert_eq!(code_of(&create(&admin, t).await), Some(want), "creating {name}");
    }
    // validate_only creates nothing
    let dry = topic_name("dry");
    let r = admin
        .create_topics(&[NewTopic::new(&dry, 2, TopicReplication::Fixed(1))], &AdminOptions::new().validate_only(true))
        .await
        .unwrap();
    assert!(r[0].is_ok());
    let md = admin.inner().fetch_metadata(None, Duration::from_secs(10)).unwrap();
    let names: Vec<&str> = md.topics().iter().map(|t| t.name()).collect();
    assert!(names.contains(&name.as_str()) && !names.contains(&dry.as_str()), "{names:?}");
    assert_eq!(md.topics().iter().find(|t| t.name() == name).unwrap().partitions().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn partitions_grow_only_and_topics_delete() {
    let broker = TestBroker::start(&[]).await;
    let admin = admin(&broker.bootstrap);
    let opts = AdminOptions::new();
    let name = topic_name("grow");
    create_topic(&broker.bootstrap, &name, 2, &[]).await;
    let r = admin.create_partitions(&[NewPartitions::new(&name, 5)], &opts).await.unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    let r = admin.create_partitions(&[NewPartitions::new(&name, 3)], &opts).await.unwrap();
    assert_eq!(code_of(&r[0]), Some(RDKafkaErrorCode::InvalidPartitions));
    // the new partitions take data
    let p = producer(&broker.bootstrap, &[]);
    let d =
        p.send(FutureRecord::<(), str>::to(&name).partition(4).payload("p4"), Duration::from_secs(10)).await.unwrap();
    assert_eq!((d.partition, d.offset), (4, 0));
    let r = admin.delete_topics(&[&name], &opts).await.unwrap();
    assert!(r[0].is_ok());
    let r = admin.delete_topics(&[&name], &opts).await.unwrap();
    assert_eq!(code_of(&r[0]), Some(RDKafkaErrorCode::UnknownTopicOrPartition));
    let dir = broker.data_dir().join(format!("{name}-0"));
    assert!(wait_until(Duration::from_secs(10), || !dir.exists()).await, "partition files removed");
    // the name can be reused, and starts empty
    create_topic(&broker.bootstrap, &name, 1, &[]).await;
    let consumer = assigned_consumer(&broker.bootstrap, &name, &[0], Offset::Beginning, &[]);
    assert_eq!(consumer.fetch_watermarks(&name, 0, Duration::from_secs(10)).unwrap(), (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn configs_round_trip_and_take_effect() {
    let broker = TestBroker::start(&[("log.retention.ms", "86400000")]).await;
    let admin = admin(&broker.bootstrap);
    let opts = AdminOptions::new();
    let name = topic_name("cfg");
    create_topic(&broker.bootstrap, &name, 1, &[("retention.ms", "3600000")]).await;
    let describe = |n: String| {
        let admin = &admin;
        async move {
            let r = admin.describe_configs(&[ResourceSpecifier::Topic(&n)], &AdminOptions::new()).await.unwrap();
            r.into_iter().next().unwrap().expect("described")
        }
    };
    let cfg = describe(name.clone()).await;
    let retention = cfg.get("retention.ms").unwrap();
    assert_eq!(retention.value.as_deref(), Some("3600000"));
    assert!(matches!(retention.source, ConfigSource::DynamicTopic));
    let segment = cfg.get("segment.bytes").unwrap();
    assert_eq!(segment.value.as_deref(), Some("1073741824"));
    assert!(matches!(segment.source, ConfigSource::Default));
    let broker_set = cfg.get("cleanup.policy").unwrap();
    assert_eq!(broker_set.value.as_deref(), Some("delete"));

    // max.message.bytes takes effect on produce
    let alter = AlterConfig::new(ResourceSpecifier::Topic(&name)).set("max.message.bytes", "1000");
    let r = admin.alter_configs(&[alter], &opts).await.unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    assert_eq!(describe(name.clone()).await.get("max.message.bytes").unwrap().value.as_deref(), Some("1000"));
    let p = producer(&broker.bootstrap, &[("linger.ms", "0")]);
    let big = "x".repeat(5000);
    let err = p.send(FutureRecord::<(), str>::to(&name).payload(&big), Duration::from_secs(10)).await.unwrap_err();
    assert!(matches!(err.0, KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)), "{err:?}");
    p.send(FutureRecord::<(), str>::to(&name).payload("small"), Duration::from_secs(10)).await.expect("small fits");

    // legacy AlterConfigs replaces all overrides: retention.ms falls back to the broker value
    let describe_retention = describe(name.clone()).await;
    assert_eq!(describe_retention.get("retention.ms").unwrap().value.as_deref(), Some("86400000"));

    // unknown keys and bad values are INVALID_CONFIG; unknown topics UNKNOWN_TOPIC_OR_PARTITION
    // (rdkafka's wrapper drops per-resource AlterConfigs errors, so these go raw)
    for (key, value) in [("no.such.key", "1"), ("retention.ms", "soon")] {
        let b = broker.bootstrap.clone();
        let topic = name.clone();
        let resp = tokio::task::spawn_blocking(move || alter_raw(&b, &topic, key, value)).await.unwrap();
        assert_eq!(resp.responses[0].error_code, 40, "{key}={value} is INVALID_CONFIG");
    }
    let b = broker.bootstrap.clone();
    let resp: DescribeConfigsResponse = tokio::task::spawn_blocking(move || {
        let res = DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("missing-topic"));
        raw::call(&b, ApiKey::DescribeConfigs, 4, &DescribeConfigsRequest::default().with_resources(vec![res]))
    })
    .await
    .unwrap();
    assert_eq!(resp.results[0].error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");

    // broker configs are described with their sources
    let r = admin.describe_configs(&[ResourceSpecifier::Broker(1)], &opts).await.unwrap();
    let b = r.into_iter().next().unwrap().unwrap();
    let ret = b.get("log.retention.ms").unwrap();
    assert_eq!(ret.value.as_deref(), Some("86400000"));
    assert!(matches!(ret.source, ConfigSource::StaticBroker));
    assert!(b.get("socket.request.max.bytes").unwrap().is_read_only);
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_auto_creates_unless_disabled() {
    let broker = TestBroker::start(&[("num.partitions", "3")]).await;
    let name = topic_name("auto");
    let p = producer(&broker.bootstrap, &[]);
    p.send(FutureRecord::<(), str>::to(&name).payload("hi"), Duration::from_secs(20)).await.expect("auto-created");
    let md = admin(&broker.bootstrap).inner().fetch_metadata(Some(&name), Duration::from_secs(10)).unwrap();
    assert_eq!(md.topics()[0].partitions().len(), 3);

    let off = TestBroker::start(&[("auto.create.topics.enable", "false")]).await;
    let md = admin(&off.bootstrap).inner().fetch_metadata(Some("never-created"), Duration::from_secs(10)).unwrap();
    assert_eq!(md.topics()[0].error(), Some(rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART));
}

fn alter_raw(bootstrap: &str, topic: &str, key: &'static str, value: &'static str) -> AlterConfigsResponse {
    let config = AlterableConfig::default()
        .with_name(StrBytes::from_static_str(key))
        .with_value(Some(StrBytes::from_static_str(value)));
    let resource = AlterConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_string(topic.to_string()))
        .with_configs(vec![config]);
    let req = AlterConfigsRequest::default().with_resources(vec![resource]);
    raw::call(bootstrap, ApiKey::AlterConfigs, 1, &req)
}
