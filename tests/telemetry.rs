//! KIP-714 client telemetry: subscriptions configured as Kafka's `CLIENT_METRICS` resources,
//! librdkafka pushing its metrics and Weir serving them on `/metrics`; and every check of
//! GetTelemetrySubscriptions / PushTelemetry driven raw, in Kafka's order.

mod common;

use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use prost::Message as _;
use rdkafka::producer::FutureRecord;
use weir::telemetry::otlp;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// IncrementalAlterConfigs SET on a `CLIENT_METRICS` subscription; returns (code, message).
async fn subscribe(bootstrap: &str, name: &str, configs: &[(&str, &str)]) -> (i16, String) {
    let ops = configs
        .iter()
        .map(|(k, v)| {
            incremental_alter_configs_request::AlterableConfig::default()
                .with_name(s(k))
                .with_config_operation(0)
                .with_value(Some(s(v)))
        })
        .collect();
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(16)
            .with_resource_name(s(name))
            .with_configs(ops),
    ]);
    let r: IncrementalAlterConfigsResponse = raw::call_async(bootstrap, ApiKey::IncrementalAlterConfigs, 1, req).await;
    let res = &r.responses[0];
    (res.error_code, res.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default())
}

fn metrics_addr(broker: &TestBroker) -> String {
    broker.running.as_ref().unwrap().metrics_addr.expect("metrics listener").to_string()
}

/// Scrapes `/metrics` until `found` holds for the body, for at most `timeout`.
async fn scrape_until(addr: &str, timeout: Duration, found: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let a = addr.to_string();
        let body = tokio::task::spawn_blocking(move || http_get(&a, "/metrics")).await.unwrap();
        if found(&body) || Instant::now() > deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn librdkafka_pushes_its_metrics_to_prometheus() {
    let broker = TestBroker::start(&[("metrics.listener", "127.0.0.1:0")]).await;
    let (code, msg) = subscribe(
        &broker.bootstrap,
        "producers",
        &[("metrics", "org.apache.kafka.producer."), ("interval.ms", "500"), ("match", "client_id=telemetry-.*")],
    )
    .await;
    assert_eq!(code, 0, "{msg}");
    let topic = topic_name("telemetry");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    let producer = producer(&broker.bootstrap, &[("client.id", "telemetry-producer"), ("enable.metrics.push", "true")]);
    for i in 0..20 {
        producer
            .send(FutureRecord::<(), str>::to(&topic).payload(&format!("v{i}")), Duration::from_secs(10))
            .await
            .unwrap();
    }
    let pushed = |body: &str| {
        body.lines()
            .any(|l| l.starts_with("org_apache_kafka_producer_") && l.contains("client_id=\"telemetry-producer\""))
    };
    let body = scrape_until(&metrics_addr(&broker), Duration::from_secs(30), pushed).await;
    assert!(pushed(&body), "no producer metrics pushed:\n{body}");
    let line = body.lines().find(|l| l.contains("client_id=\"telemetry-producer\"")).unwrap();
    assert!(line.contains("client_software_name=\"librdkafka\""), "{line}");
    assert!(line.contains("client_instance_id=\""), "{line}");
    // only what the subscription asked for
    assert!(
        !body.lines().any(|l| l.starts_with("org_apache_kafka_consumer_")),
        "consumer metrics were not subscribed to"
    );
    println!("{}", body.lines().filter(|l| l.contains("telemetry-producer")).collect::<Vec<_>>().join("\n"));
}

/// One gauge and one cumulative counter, OTLP-encoded as a client would push them.
fn otlp_payload(value: f64) -> Vec<u8> {
    let attr = |k: &str, v: &str| otlp::KeyValue {
        key: k.into(),
        value: Some(otlp::AnyValue { value: Some(otlp::AnyValueKind::String(v.into())) }),
    };
    let point = |v: f64| otlp::NumberDataPoint {
        time_unix_nano: 1,
        value: Some(otlp::Value::AsDouble(v)),
        attributes: vec![attr("node.id", "1")],
    };
    otlp::MetricsData {
        resource_metrics: vec![otlp::ResourceMetrics {
            resource: Some(otlp::Resource { attributes: vec![attr("client_rack", "r1")] }),
            scope_metrics: vec![otlp::ScopeMetrics {
                metrics: vec![
                    otlp::Metric {
                        name: "org.apache.kafka.producer.node.request.latency.avg".into(),
                        data: Some(otlp::Data::Gauge(otlp::Gauge { data_points: vec![point(value)] })),
                    },
                    otlp::Metric {
                        name: "org.apache.kafka.producer.connection.creation.total".into(),
                        data: Some(otlp::Data::Sum(otlp::Sum {
                            data_points: vec![point(3.0)],
                            aggregation_temporality: 2,
                            is_monotonic: true,
                        })),
                    },
                ],
            }],
        }],
    }
    .encode_to_vec()
}

fn get(bootstrap: &str, id: uuid::Uuid) -> GetTelemetrySubscriptionsResponse {
    let mut conn = raw::connect(bootstrap);
    let req = GetTelemetrySubscriptionsRequest::default().with_client_instance_id(id);
    raw::roundtrip(&mut conn, ApiKey::GetTelemetrySubscriptions, 0, &req).expect("answered")
}

fn push(bootstrap: &str, id: uuid::Uuid, subscription: i32, compression: i8, metrics: Vec<u8>, end: bool) -> i16 {
    let mut conn = raw::connect(bootstrap);
    let req = PushTelemetryRequest::default()
        .with_client_instance_id(id)
        .with_subscription_id(subscription)
        .with_compression_type(compression)
        .with_terminating(end)
        .with_metrics(metrics.into());
    let r: PushTelemetryResponse = raw::roundtrip(&mut conn, ApiKey::PushTelemetry, 0, &req).expect("answered");
    r.error_code
}

#[tokio::test(flavor = "multi_thread")]
async fn telemetry_requests_are_checked_like_kafka() {
    let broker = TestBroker::start(&[("metrics.listener", "127.0.0.1:0"), ("telemetry.max.bytes", "4096")]).await;
    let b = broker.bootstrap.clone();
    // no subscription: an instance id, nothing requested, Kafka's default interval
    let none = tokio::task::spawn_blocking({
        let b = b.clone();
        move || get(&b, uuid::Uuid::nil())
    })
    .await
    .unwrap();
    assert_eq!(none.error_code, 0);
    assert!(!none.client_instance_id.is_nil());
    assert!(none.requested_metrics.is_empty());
    assert_eq!((none.push_interval_ms, none.telemetry_max_bytes), (300_000, 4096));
    assert_eq!(none.accepted_compression_types, vec![4, 3, 1], "zstd, lz4, gzip");

    // subscription validation: Kafka's errors
    for (configs, code) in
        [(vec![("interval.ms", "50")], 42), (vec![("match", "client_colour=red")], 40), (vec![("colour", "red")], 42)]
    {
        assert_eq!(subscribe(&b, "bad", &configs).await.0, code, "{configs:?}");
    }
    assert_eq!(subscribe(&b, "all", &[("metrics", "*"), ("interval.ms", "1000")]).await.0, 0);

    let addr = metrics_addr(&broker);
    let b2 = b.clone();
    let id = none.client_instance_id;
    tokio::task::spawn_blocking(move || {
        let b = b2;
        // the changed subscription is handed out at once, not throttled
        let sub = get(&b, id);
        assert_eq!(sub.error_code, 0);
        assert_eq!((sub.requested_metrics.len(), sub.push_interval_ms), (1, 1000));
        assert_eq!(get(&b, id).error_code, 89, "asking again within the interval is THROTTLING_QUOTA_EXCEEDED");
        let sid = sub.subscription_id;
        // Kafka's order: the first push after the get is in time; a stale subscription id
        assert_eq!(push(&b, id, sid ^ 1, 0, otlp_payload(1.0), false), 117, "UNKNOWN_SUBSCRIPTION_ID");
        assert_eq!(push(&b, id, sid, 0, otlp_payload(1.0), false), 89, "pushed before the interval");
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(push(&b, id, sid, 2, otlp_payload(1.0), false), 76, "snappy is not accepted");
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(push(&b, id, sid, 0, vec![0; 5000], false), 118, "TELEMETRY_TOO_LARGE");
        std::thread::sleep(Duration::from_millis(1100));
        let zstd = zstd::encode_all(&otlp_payload(42.5)[..], 3).unwrap();
        assert_eq!(push(&b, id, sid, 4, zstd, false), 0);
        let body = http_get(&addr, "/metrics");
        let gauge = body
            .lines()
            .find(|l| l.starts_with("org_apache_kafka_producer_node_request_latency_avg{"))
            .unwrap_or_else(|| panic!("pushed gauge missing:\n{body}"));
        assert!(gauge.ends_with(" 42.5") && gauge.contains(&format!("client_instance_id=\"{id}\"")), "{gauge}");
        assert!(gauge.contains("node_id=\"1\"") && gauge.contains("client_rack=\"r1\""), "{gauge}");
        assert!(body.contains("# TYPE org_apache_kafka_producer_connection_creation_total counter"));
        // a payload that is not OTLP is INVALID_RECORD; a compression bomb too
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(push(&b, id, sid, 0, vec![0xff; 64], false), 87);
        std::thread::sleep(Duration::from_millis(1100));
        let bomb = zstd::encode_all(&vec![0u8; 4 << 20][..], 19).unwrap();
        assert!(bomb.len() < 4096);
        assert_eq!(push(&b, id, sid, 4, bomb, false), 87);
        // a terminating push is accepted at once and ends the instance; its metrics go
        assert_eq!(push(&b, id, sid, 0, Vec::new(), true), 0);
        assert_eq!(push(&b, id, sid, 0, Vec::new(), false), 42, "nothing after terminating");
        assert!(!http_get(&addr, "/metrics").contains(&id.to_string()));
        assert_eq!(push(&b, uuid::Uuid::nil(), 0, 0, Vec::new(), false), 42, "a nil instance id");
    })
    .await
    .unwrap();

    // subscriptions are Kafka config resources: described, listed, kept across a restart
    let list = |version: i16, types: Vec<i8>| {
        let b = b.clone();
        async move {
            let req = ListConfigResourcesRequest::default().with_resource_types(types);
            let r: ListConfigResourcesResponse = raw::call_async(&b, ApiKey::ListConfigResources, version, req).await;
            r.config_resources.iter().map(|c| (c.resource_name.to_string(), c.resource_type)).collect::<Vec<_>>()
        }
    };
    assert_eq!(list(0, vec![]).await, vec![("all".to_string(), 16)]);
    assert_eq!(list(1, vec![16]).await, vec![("all".to_string(), 16)]);
    assert!(list(1, vec![]).await.contains(&("1".to_string(), 4)));
    let broker = broker.restart(&[]).await;
    let described = raw::describe_configs(&broker.bootstrap, 16, "all").await;
    assert_eq!(described, vec![("interval.ms".into(), "1000".into(), 7), ("metrics".into(), "*".into(), 7)]);
}
