//! Admin APIs the rdkafka crate does not expose, driven with raw kafka-protocol requests and
//! checked against what rdkafka clients then see.

mod common;

use std::time::Duration;

use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;
use rdkafka::{Message, Offset};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn describe_topic_config(topic: &str, key: &str) -> DescribeConfigsRequest {
    DescribeConfigsRequest::default().with_resources(vec![describe_configs_request::DescribeConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(s(topic))
        .with_configuration_keys(Some(vec![s(key)]))])
}

#[tokio::test(flavor = "multi_thread")]
async fn incremental_alter_configs_set_append_subtract_delete() {
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("incr");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    let op = |key: &str, op: i8, value: Option<&str>| {
        incremental_alter_configs_request::AlterableConfig::default()
            .with_name(s(key))
            .with_config_operation(op)
            .with_value(value.map(s))
    };
    let alter = |ops: Vec<incremental_alter_configs_request::AlterableConfig>| {
        IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s(&topic))
                .with_configs(ops),
        ])
    };
    let value_of_key = |key: &str| {
        let b = broker.bootstrap.clone();
        let req = describe_topic_config(&topic, key);
        async move {
            let r: DescribeConfigsResponse = raw::call_async(&b, ApiKey::DescribeConfigs, 4, req).await;
            let c = &r.results[0].configs[0];
            (c.value.as_ref().unwrap().to_string(), c.config_source)
        }
    };
    let steps: Vec<(Vec<_>, &str, &str, i8)> = vec![
        (vec![op("cleanup.policy", 0, Some("compact"))], "cleanup.policy", "compact", 1),
        (vec![op("cleanup.policy", 2, Some("delete"))], "cleanup.policy", "compact,delete", 1),
        (vec![op("cleanup.policy", 3, Some("compact"))], "cleanup.policy", "delete", 1),
        (vec![op("cleanup.policy", 1, None)], "cleanup.policy", "delete", 5),
    ];
    for (ops, key, want, source) in steps {
        let r: IncrementalAlterConfigsResponse =
            raw::call_async(&broker.bootstrap, ApiKey::IncrementalAlterConfigs, 1, alter(ops)).await;
        assert_eq!(r.responses[0].error_code, 0, "{:?}", r.responses[0].error_message);
        assert_eq!(value_of_key(key).await, (want.to_string(), source));
    }
    // APPEND on a non-list key is INVALID_CONFIG; a bad value too; duplicates INVALID_REQUEST
    for (ops, code) in [
        (vec![op("retention.ms", 2, Some("5"))], 40),
        (vec![op("retention.ms", 0, Some("later"))], 40),
        (vec![op("retention.ms", 0, Some("5")), op("retention.ms", 1, None)], 42),
    ] {
        let r: IncrementalAlterConfigsResponse =
            raw::call_async(&broker.bootstrap, ApiKey::IncrementalAlterConfigs, 1, alter(ops)).await;
        assert_eq!(r.responses[0].error_code, code);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_records_moves_the_log_start_offset() {
    let broker = TestBroker::start(&[("log.segment.bytes", "2000")]).await;
    let topic = topic_name("delrec");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    let p = producer(&broker.bootstrap, &[("linger.ms", "0")]);
    for i in 0..100 {
        p.send(FutureRecord::<(), String>::to(&topic).payload(&format!("v{i}")), Duration::from_secs(10))
            .await
            .unwrap();
    }
    let delete = |offset: i64| {
        DeleteRecordsRequest::default().with_timeout_ms(5000).with_topics(vec![
            delete_records_request::DeleteRecordsTopic::default().with_name(TopicName(s(&topic))).with_partitions(
                vec![
                    delete_records_request::DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(offset),
                    delete_records_request::DeleteRecordsPartition::default()
                        .with_partition_index(7)
                        .with_offset(offset),
                ],
            ),
        ])
    };
    let r: DeleteRecordsResponse = raw::call_async(&broker.bootstrap, ApiKey::DeleteRecords, 2, delete(60)).await;
    let parts = &r.topics[0].partitions;
    assert_eq!((parts[0].error_code, parts[0].low_watermark), (0, 60));
    assert_eq!(parts[1].error_code, 3, "unknown partition");
    let r: DeleteRecordsResponse = raw::call_async(&broker.bootstrap, ApiKey::DeleteRecords, 2, delete(101)).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 1, "beyond the high watermark: OFFSET_OUT_OF_RANGE");
    let bootstrap = broker.bootstrap.clone();
    let t = topic.clone();
    let (lo, first) = tokio::task::spawn_blocking(move || {
        let c = assigned_consumer(&bootstrap, &t, &[0], Offset::Beginning, &[]);
        let wm = c.fetch_watermarks(&t, 0, Duration::from_secs(10)).unwrap();
        let m = consume_n(&c, 1, Duration::from_secs(30));
        (wm, (m[0].offset(), value_of(&m[0]).unwrap()))
    })
    .await
    .unwrap();
    assert_eq!(lo, (60, 100));
    assert_eq!(first, (60, b"v60".to_vec()), "consumers start at the new log start offset");
    let dir = broker.data_dir().join(format!("{topic}-0"));
    let first_segment = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".log")?.parse::<i64>().ok())
        .min()
        .unwrap();
    assert!(first_segment > 0, "segments wholly below the start were deleted");
    // -1 means the high watermark
    let r: DeleteRecordsResponse = raw::call_async(&broker.bootstrap, ApiKey::DeleteRecords, 2, delete(-1)).await;
    assert_eq!(r.topics[0].partitions[0].low_watermark, 100);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_topics_by_id_and_cluster_descriptions() {
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("byid");
    create_topic(&broker.bootstrap, &topic, 2, &[]).await;
    let p = producer(&broker.bootstrap, &[("linger.ms", "0")]);
    p.send(FutureRecord::<(), str>::to(&topic).payload("some bytes"), Duration::from_secs(10)).await.unwrap();

    let md: MetadataResponse =
        raw::call_async(&broker.bootstrap, ApiKey::Metadata, 12, MetadataRequest::default().with_topics(None)).await;
    let t = md.topics.iter().find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic.as_str())).unwrap();
    let id = t.topic_id;
    assert!(!id.is_nil());
    assert_eq!(md.cluster_id.as_ref().unwrap().len(), 22);

    let cluster: DescribeClusterResponse = raw::call_async(
        &broker.bootstrap,
        ApiKey::DescribeCluster,
        1,
        DescribeClusterRequest::default().with_endpoint_type(1),
    )
    .await;
    assert_eq!(cluster.cluster_id.as_str(), md.cluster_id.as_ref().unwrap().as_str());
    assert_eq!(cluster.brokers.len(), 1);
    assert_eq!(format!("{}:{}", cluster.brokers[0].host.as_str(), cluster.brokers[0].port), broker.bootstrap);

    let dirs: DescribeLogDirsResponse = raw::call_async(
        &broker.bootstrap,
        ApiKey::DescribeLogDirs,
        4,
        DescribeLogDirsRequest::default().with_topics(None),
    )
    .await;
    let d = &dirs.results[0];
    assert!(d.total_bytes > 0 && d.usable_bytes > 0);
    let mine = d.topics.iter().find(|t| t.name.0.as_str() == topic).unwrap();
    let sizes: Vec<i64> = mine.partitions.iter().map(|p| p.partition_size).collect();
    assert_eq!(sizes.len(), 2);
    assert!(sizes.iter().sum::<i64>() > 0, "{sizes:?}");

    let del = |id| {
        DeleteTopicsRequest::default()
            .with_topics(vec![delete_topics_request::DeleteTopicState::default().with_topic_id(id)])
    };
    let r: DeleteTopicsResponse = raw::call_async(&broker.bootstrap, ApiKey::DeleteTopics, 6, del(id)).await;
    assert_eq!(r.responses[0].error_code, 0);
    assert_eq!(r.responses[0].name.as_ref().unwrap().0.as_str(), topic);
    let r: DeleteTopicsResponse = raw::call_async(&broker.bootstrap, ApiKey::DeleteTopics, 6, del(id)).await;
    assert_eq!(r.responses[0].error_code, 100, "UNKNOWN_TOPIC_ID");
}

/// DescribeTopicPartitions pages through topics in name order at the partition limit, with a
/// cursor to continue from, and describes each partition as Metadata does; unknown names and
/// a cursor outside the list get Kafka's errors.
#[tokio::test(flavor = "multi_thread")]
async fn describe_topic_partitions_pages_with_a_cursor_and_agrees_with_metadata() {
    use describe_topic_partitions_request::{Cursor, TopicRequest};
    let broker = TestBroker::start(&[]).await;
    let (a, b) = (topic_name("pages-a"), topic_name("pages-b"));
    create_topic(&broker.bootstrap, &a, 5, &[]).await;
    create_topic(&broker.bootstrap, &b, 3, &[]).await;
    let ask = |names: &[&str], limit: i32, cursor: Option<(&str, i32)>| {
        let req = DescribeTopicPartitionsRequest::default()
            .with_topics(names.iter().map(|n| TopicRequest::default().with_name(TopicName(s(n)))).collect())
            .with_response_partition_limit(limit)
            .with_cursor(
                cursor.map(|(t, p)| Cursor::default().with_topic_name(TopicName(s(t))).with_partition_index(p)),
            );
        let r: DescribeTopicPartitionsResponse = raw::call(&broker.bootstrap, ApiKey::DescribeTopicPartitions, 0, &req);
        r
    };
    let listed = |r: &DescribeTopicPartitionsResponse| -> Vec<(String, Vec<i32>)> {
        r.topics
            .iter()
            .map(|t| (t.name.as_ref().unwrap().0.to_string(), t.partitions.iter().map(|p| p.partition_index).collect()))
            .collect()
    };
    let first = ask(&[&b, &a, "zz-no-such-topic"], 4, None);
    assert_eq!(listed(&first), vec![(a.clone(), vec![0, 1, 2, 3])]);
    let next = first.next_cursor.clone().expect("a cursor");
    assert_eq!((next.topic_name.0.to_string(), next.partition_index), (a.clone(), 4));
    let second = ask(&[&b, &a, "zz-no-such-topic"], 5, Some((&a, 4)));
    assert_eq!(listed(&second)[..2], [(a.clone(), vec![4]), (b.clone(), vec![0, 1, 2])]);
    assert_eq!(second.topics[2].error_code, ResponseError::UnknownTopicOrPartition.code(), "{:?}", second.topics[2]);
    assert!(second.next_cursor.is_none());
    // all topics (no names): the two, among whatever else exists, in name order
    let all = ask(&[], 2000, None);
    let names: Vec<String> = listed(&all).into_iter().map(|(n, _)| n).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(names.contains(&a) && names.contains(&b));
    // as Metadata says
    let consumer: rdkafka::consumer::BaseConsumer = client_config(&broker.bootstrap).create().unwrap();
    let md = consumer.fetch_metadata(Some(&a), Duration::from_secs(10)).unwrap();
    for (mp, dp) in md.topics()[0].partitions().iter().zip(&first.topics[0].partitions) {
        assert_eq!(mp.leader(), dp.leader_id.0);
        assert_eq!(mp.replicas().to_vec(), dp.replica_nodes.iter().map(|b| b.0).collect::<Vec<_>>());
        assert_eq!(mp.isr().to_vec(), dp.isr_nodes.iter().map(|b| b.0).collect::<Vec<_>>());
    }
    assert_eq!(first.topics[0].topic_id, broker.running.as_ref().unwrap().broker.topic(&a).unwrap().id);
    // a cursor on a topic not asked for
    let bad = ask(&[&a], 10, Some((&b, 0)));
    assert_eq!(bad.topics[0].error_code, ResponseError::InvalidRequest.code());
}
