//! The metadata quorum of a single broker: what it keeps across restarts, and data
//! directories written before it existed.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;
use weir::cluster::metadata_log::{MetadataLog, MetadataRecord};

fn partitions_of(bootstrap: &str, topic: &str) -> usize {
    let consumer: rdkafka::consumer::BaseConsumer = client_config(bootstrap).create().unwrap();
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    md.topics().iter().find(|t| t.name() == topic).map_or(0, |t| t.partitions().len())
}

/// A data directory whose metadata is a `metadata.log` (Weir before the quorum) keeps its
/// topics, their configs and their data; the import happens once.
#[tokio::test(flavor = "multi_thread")]
async fn a_metadata_log_from_before_the_quorum_is_imported_once() {
    let dir = tempfile::tempdir().unwrap();
    let id = uuid::Uuid::new_v4();
    {
        let (mut log, _) = MetadataLog::open(&dir.path().join("__cluster_metadata-0")).unwrap();
        let configs = BTreeMap::from([("retention.ms".to_string(), "86400000".to_string())]);
        log.append(&MetadataRecord::CreateTopic {
            name: "legacy".into(),
            id,
            partitions: 2,
            configs,
            replicas: vec![],
        })
        .unwrap();
        log.append(&MetadataRecord::CreatePartitions { id, count: 3, replicas: vec![] }).unwrap();
        log.append(&MetadataRecord::ProducerIds { block_end: 5000 }).unwrap();
    }
    let broker = TestBroker::start_in(dir, &[]).await;
    assert_eq!(partitions_of(&broker.bootstrap, "legacy"), 3);
    let producer = producer(&broker.bootstrap, &[("enable.idempotence", "true")]);
    producer
        .send(FutureRecord::to("legacy").partition(2).key("k").payload("kept"), Duration::from_secs(5))
        .await
        .unwrap();
    let configs = raw::describe_configs(&broker.bootstrap, 2, "legacy").await;
    assert!(configs.iter().any(|(k, v, _)| k == "retention.ms" && v == "86400000"), "{configs:?}");
    let metadata_dir = broker.data_dir().join("__cluster_metadata-0");
    assert!(metadata_dir.join("metadata.log.imported").exists());
    assert!(!metadata_dir.join("metadata.log").exists());

    let broker = broker.restart(&[]).await;
    assert_eq!(partitions_of(&broker.bootstrap, "legacy"), 3);
    let consumer = assigned_consumer(&broker.bootstrap, "legacy", &[2], rdkafka::Offset::Beginning, &[]);
    let got = consume_n(&consumer, 1, Duration::from_secs(10));
    assert_eq!(value_of(&got[0]).as_deref(), Some(&b"kept"[..]));
}

/// Topics created, grown, reconfigured and deleted through the quorum are as they were after
/// a restart.
#[tokio::test(flavor = "multi_thread")]
async fn metadata_changes_survive_restarts() {
    let broker = TestBroker::start(&[]).await;
    let (kept, gone) = (topic_name("kept"), topic_name("gone"));
    create_topic(&broker.bootstrap, &kept, 1, &[]).await;
    create_topic(&broker.bootstrap, &gone, 1, &[]).await;
    let admin = admin(&broker.bootstrap);
    let opts = rdkafka::admin::AdminOptions::new();
    let grown = admin.create_partitions(&[rdkafka::admin::NewPartitions::new(&kept, 4)], &opts).await.unwrap();
    assert!(grown[0].is_ok(), "{grown:?}");
    let deleted = admin.delete_topics(&[&gone], &opts).await.unwrap();
    assert!(deleted[0].is_ok(), "{deleted:?}");
    let broker = broker.restart(&[]).await;
    assert_eq!(partitions_of(&broker.bootstrap, &kept), 4);
    let consumer: rdkafka::consumer::BaseConsumer = client_config(&broker.bootstrap).create().unwrap();
    let md = consumer.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    assert!(!md.topics().iter().any(|t| t.name() == gone));
}
