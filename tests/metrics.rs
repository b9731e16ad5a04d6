//! The Prometheus endpoint: request counters and latencies, traffic per topic, offsets per
//! partition, consumer-group lag and fsync latency, after real client traffic.

mod common;

use std::time::Duration;

use common::*;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};

/// The value of the sample whose name and labels are exactly `series`.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_describe_requests_traffic_offsets_and_lag() {
    let broker =
        TestBroker::start(&[("metrics.listener", "127.0.0.1:0"), ("group.initial.rebalance.delay.ms", "0")]).await;
    let metrics_addr = broker.running.as_ref().unwrap().metrics_addr.expect("metrics listener").to_string();
    let topic = topic_name("metered");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    let p = producer(&broker.bootstrap, &[("acks", "all")]);
    for i in 0..100 {
        p.send(
            FutureRecord::<(), str>::to(&topic).payload(&format!("value-{i:04}")).partition(0),
            Duration::from_secs(10),
        )
        .await
        .expect("delivered");
    }
    let b = broker.bootstrap.clone();
    let t = topic.clone();
    tokio::task::spawn_blocking(move || {
        let c: BaseConsumer =
            client_config(&b).set("group.id", "metered-group").set("enable.auto.commit", "false").create().unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&t, 0, Offset::Beginning).unwrap();
        c.assign(&tpl).unwrap();
        assert_eq!(consume_n(&c, 100, Duration::from_secs(20)).len(), 100);
        let mut commit = TopicPartitionList::new();
        commit.add_partition_offset(&t, 0, Offset::Offset(60)).unwrap();
        c.commit(&commit, CommitMode::Sync).unwrap();
    })
    .await
    .unwrap();

    let body = tokio::task::spawn_blocking(move || http_get(&metrics_addr, "/metrics")).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    let produce = body.lines().filter(|l| l.starts_with("weir_requests_total{api=\"Produce\"")).count();
    assert!(produce >= 1, "produce requests counted");
    assert!(sample(&body, "weir_request_duration_seconds_count{api=\"Fetch\"}").unwrap() >= 1.0);
    let bytes_in = sample(&body, &format!("weir_topic_bytes_in_total{{topic=\"{topic}\"}}")).unwrap();
    assert!(bytes_in > 1000.0, "100 records of 10 bytes and their batch overhead");
    assert!(sample(&body, &format!("weir_topic_bytes_out_total{{topic=\"{topic}\"}}")).unwrap() >= bytes_in);
    let leo = sample(&body, &format!("weir_partition_log_end_offset{{topic=\"{topic}\",partition=\"0\"}}"));
    assert_eq!(leo, Some(100.0));
    let lag =
        sample(&body, &format!("weir_consumer_group_lag{{group=\"metered-group\",topic=\"{topic}\",partition=\"0\"}}"));
    assert_eq!(lag, Some(40.0), "high watermark 100, committed 60");
    assert!(sample(&body, "weir_fsync_duration_seconds_count").unwrap() >= 1.0, "acks=all produce fsynced");
    assert!(sample(&body, "weir_connections_total").unwrap() >= 2.0);
    let missing = http_get(&broker.running.as_ref().unwrap().metrics_addr.unwrap().to_string(), "/other");
    assert!(missing.starts_with("HTTP/1.1 404"));
}
