//! Client quotas with real clients: an rdkafka producer and consumer held to their byte
//! rates, throttle times in responses, and the quota APIs.

mod common;

use std::time::{Duration, Instant};

use common::{raw, TestBroker};
use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;

/// A short quota window (two one-second samples), so a test sees the steady state within
/// seconds; Kafka's default of eleven samples smooths over longer bursts.
const WINDOW: &[(&str, &str)] = &[("quota.window.num", "2"), ("quota.window.size.seconds", "1")];

/// A described quota entry: the entity's (type, name) pairs and its (key, value) pairs.
type Described = (Vec<(String, Option<String>)>, Vec<(String, f64)>);

fn entity(kind: &'static str, name: Option<&str>) -> EntityData {
    EntityData::default()
        .with_entity_type(StrBytes::from_static_str(kind))
        .with_entity_name(name.map(|n| StrBytes::from_string(n.to_string())))
}

fn set_quota(entity: Vec<EntityData>, key: &'static str, value: Option<f64>) -> EntryData {
    EntryData::default().with_entity(entity).with_ops(vec![OpData::default()
        .with_key(StrBytes::from_static_str(key))
        .with_value(value.unwrap_or(0.0))
        .with_remove(value.is_none())])
}

async fn alter(bootstrap: &str, entries: Vec<EntryData>) -> Vec<i16> {
    let req = AlterClientQuotasRequest::default().with_entries(entries);
    let resp: AlterClientQuotasResponse = raw::call_async(bootstrap, ApiKey::AlterClientQuotas, 1, req).await;
    resp.entries.iter().map(|e| e.error_code).collect()
}

/// Sends `value_size`-byte records as fast as the client lets it for `run`; returns when
/// each acknowledged record's bytes were acknowledged.
async fn produce_flat_out(
    producer: &FutureProducer,
    topic: &str,
    value_size: usize,
    run: Duration,
) -> Vec<(Duration, usize)> {
    let start = Instant::now();
    let payload = vec![b'q'; value_size];
    let mut inflight = tokio::task::JoinSet::new();
    let mut acked = Vec::new();
    while start.elapsed() < run {
        while inflight.len() >= 64 {
            if let Some(Ok(Some(at))) = inflight.join_next().await {
                acked.push((at, value_size));
            }
        }
        match producer.send_result(FutureRecord::<(), _>::to(topic).payload(&payload)) {
            Ok(delivery) => {
                inflight.spawn(async move { delivery.await.ok().and_then(|r| r.ok()).map(|_| start.elapsed()) });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
    while let Some(done) = inflight.join_next().await {
        if let Ok(Some(at)) = done {
            acked.push((at, value_size));
        }
    }
    acked
}

/// Bytes per second acknowledged between `from` and `to`.
fn rate_between(events: &[(Duration, usize)], from: Duration, to: Duration) -> f64 {
    let bytes: usize = events.iter().filter(|(at, _)| *at >= from && *at < to).map(|(_, b)| b).sum();
    bytes as f64 / (to - from).as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_producer_is_held_to_its_byte_rate() {
    let b = TestBroker::start(WINDOW).await;
    let topic = common::topic_name("quota-produce");
    common::create_topic(&b.bootstrap, &topic, 1, &[]).await;
    const QUOTA: f64 = 1_000_000.0;
    assert_eq!(
        alter(
            &b.bootstrap,
            vec![set_quota(vec![entity("client-id", Some("capped"))], "producer_byte_rate", Some(QUOTA))]
        )
        .await,
        [0]
    );
    let producer = |client_id: &str| {
        common::producer(
            &b.bootstrap,
            &[("client.id", client_id), ("linger.ms", "2"), ("acks", "1"), ("batch.size", "65536")],
        )
    };

    // Without a quota the same producer is several times faster.
    let free = produce_flat_out(&producer("free"), &topic, 16 * 1024, Duration::from_secs(2)).await;
    let free_rate = rate_between(&free, Duration::ZERO, Duration::from_secs(2));
    assert!(free_rate > 3.0 * QUOTA, "unthrottled rate {free_rate:.0} B/s");

    let capped = produce_flat_out(&producer("capped"), &topic, 16 * 1024, Duration::from_secs(13)).await;
    // After the first windows the acknowledged rate settles at the quota.
    let rate = rate_between(&capped, Duration::from_secs(4), Duration::from_secs(12));
    eprintln!("quota {QUOTA} B/s: free {free_rate:.0} B/s, capped {rate:.0} B/s");
    assert!((rate - QUOTA).abs() < 0.10 * QUOTA, "throttled rate {rate:.0} B/s vs quota {QUOTA}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_consumer_is_held_to_its_byte_rate() {
    let b = TestBroker::start(WINDOW).await;
    let topic = common::topic_name("quota-fetch");
    common::create_topic(&b.bootstrap, &topic, 1, &[]).await;
    // Batches of at most 64 KiB, so one fetch is a small part of a second's quota.
    let writer = common::producer(&b.bootstrap, &[("linger.ms", "5"), ("batch.size", "65536")]);
    produce_flat_out(&writer, &topic, 16 * 1024, Duration::from_secs(3)).await;
    const QUOTA: f64 = 2_000_000.0;
    let user_default = vec![entity("user", None), entity("client-id", Some("slow-reader"))];
    assert_eq!(alter(&b.bootstrap, vec![set_quota(user_default, "consumer_byte_rate", Some(QUOTA))]).await, [0]);
    let consumer = common::assigned_consumer(
        &b.bootstrap,
        &topic,
        &[0],
        rdkafka::Offset::Beginning,
        &[
            ("client.id", "slow-reader"),
            ("max.partition.fetch.bytes", "131072"),
            ("fetch.max.bytes", "131072"),
            ("message.max.bytes", "131072"),
        ],
    );
    let start = Instant::now();
    let mut events = Vec::new();
    while start.elapsed() < Duration::from_secs(13) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            events.push((start.elapsed(), m.payload().map_or(0, <[u8]>::len)));
        }
    }
    let rate = rate_between(&events, Duration::from_secs(4), Duration::from_secs(12));
    eprintln!("consumer quota {QUOTA} B/s: measured {rate:.0} B/s");
    // (librdkafka's prefetching makes the consumer's view coarser than the producer test's:
    // a loaded CI machine once measured 15 % over; unthrottled it reads many times the quota)
    assert!((rate - QUOTA).abs() < 0.20 * QUOTA, "throttled fetch rate {rate:.0} B/s vs quota {QUOTA}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_carry_the_throttle_time() {
    let b = TestBroker::start(WINDOW).await;
    let topic = common::topic_name("quota-raw");
    common::create_topic(&b.bootstrap, &topic, 1, &[]).await;
    // The raw test client's client id is "raw-test".
    assert_eq!(
        alter(
            &b.bootstrap,
            vec![set_quota(vec![entity("client-id", Some("raw-test"))], "producer_byte_rate", Some(1_000.0))]
        )
        .await,
        [0]
    );
    let bootstrap = b.bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        let records = bytes::Bytes::from(weir::log::batch::sample_batch(200));
        let req = ProduceRequest::default().with_acks(1).with_timeout_ms(5000).with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic)))
                .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(records))]),
        ]);
        let mut s = raw::connect(&bootstrap);
        let mut throttles = Vec::new();
        let started = Instant::now();
        for _ in 0..3 {
            let r: ProduceResponse = raw::roundtrip(&mut s, ApiKey::Produce, 9, &req).expect("response");
            assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
            throttles.push(r.throttle_time_ms);
        }
        assert!(throttles.iter().any(|t| *t > 0), "a client over its quota is told to wait: {throttles:?}");
        // And the broker did not read its next request before the throttle time was over.
        let waited: i32 = throttles[..2].iter().sum();
        assert!(started.elapsed() >= Duration::from_millis(waited as u64), "{:?} < {waited} ms", started.elapsed());
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_percentage_throttles_any_request() {
    let b = TestBroker::start(WINDOW).await;
    let quota = set_quota(vec![entity("client-id", Some("raw-test"))], "request_percentage", Some(0.0001));
    assert_eq!(alter(&b.bootstrap, vec![quota]).await, [0]);
    let bootstrap = b.bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let mut s = raw::connect(&bootstrap);
        let mut throttles = Vec::new();
        for _ in 0..3 {
            let r: MetadataResponse =
                raw::roundtrip(&mut s, ApiKey::Metadata, 12, &MetadataRequest::default()).unwrap();
            throttles.push(r.throttle_time_ms);
        }
        assert!(throttles.iter().all(|t| *t > 0), "every Metadata response reports the throttle: {throttles:?}");
        assert!(throttles.iter().all(|t| *t <= 2000), "at most the whole quota window: {throttles:?}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_are_managed_through_the_kafka_apis_and_persist() {
    let b = TestBroker::start(&[]).await;
    let codes = alter(
        &b.bootstrap,
        vec![
            set_quota(vec![entity("user", Some("alice"))], "producer_byte_rate", Some(1024.0)),
            set_quota(vec![entity("user", Some("alice")), entity("client-id", None)], "request_percentage", Some(50.0)),
            set_quota(vec![entity("client-id", None)], "consumer_byte_rate", Some(4096.0)),
            // invalid: unknown key, fractional byte rate, unknown entity type, empty entity
            set_quota(vec![entity("user", Some("bob"))], "bogus_rate", Some(1.0)),
            set_quota(vec![entity("user", Some("bob"))], "producer_byte_rate", Some(1.5)),
            set_quota(vec![entity("ip", Some("1.2.3.4"))], "producer_byte_rate", Some(1.0)),
            set_quota(vec![], "producer_byte_rate", Some(1.0)),
        ],
    )
    .await;
    assert_eq!(codes, [0, 0, 0, 42, 42, 42, 42]);
    let describe = |components: Vec<(&'static str, i8, Option<&'static str>)>, strict: bool| {
        let bootstrap = b.bootstrap.clone();
        async move {
            let req = DescribeClientQuotasRequest::default().with_strict(strict).with_components(
                components
                    .into_iter()
                    .map(|(kind, match_type, name)| {
                        ComponentData::default()
                            .with_entity_type(StrBytes::from_static_str(kind))
                            .with_match_type(match_type)
                            .with_match(name.map(StrBytes::from_static_str))
                    })
                    .collect(),
            );
            let r: DescribeClientQuotasResponse =
                raw::call_async(&bootstrap, ApiKey::DescribeClientQuotas, 1, req).await;
            assert_eq!(r.error_code, 0);
            let mut out: Vec<Described> = r
                .entries
                .unwrap_or_default()
                .into_iter()
                .map(|e| {
                    (
                        e.entity
                            .iter()
                            .map(|d| (d.entity_type.to_string(), d.entity_name.as_ref().map(|n| n.to_string())))
                            .collect(),
                        e.values.iter().map(|v| (v.key.to_string(), v.value)).collect(),
                    )
                })
                .collect();
            out.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
            out
        }
    };
    let alice_exact = describe(vec![("user", 0, Some("alice"))], false).await;
    assert_eq!(alice_exact.len(), 2, "alice alone and alice with the default client: {alice_exact:?}");
    let alice_strict = describe(vec![("user", 0, Some("alice"))], true).await;
    assert_eq!(
        alice_strict,
        [(vec![("user".to_string(), Some("alice".to_string()))], vec![("producer_byte_rate".to_string(), 1024.0)])]
    );
    let default_client = describe(vec![("client-id", 1, None)], true).await;
    assert_eq!(
        default_client,
        [(vec![("client-id".to_string(), None)], vec![("consumer_byte_rate".to_string(), 4096.0)])]
    );
    assert_eq!(describe(vec![], false).await.len(), 3);

    // Removing a value removes the entity once it has none; the rest survives a restart.
    assert_eq!(
        alter(&b.bootstrap, vec![set_quota(vec![entity("client-id", None)], "consumer_byte_rate", None)]).await,
        [0]
    );
    let b = b.restart(&[]).await;
    let req = DescribeClientQuotasRequest::default().with_components(vec![]);
    let r: DescribeClientQuotasResponse = raw::call_async(&b.bootstrap, ApiKey::DescribeClientQuotas, 1, req).await;
    assert_eq!(r.entries.unwrap().len(), 2);
}

/// ShareFetch counts against consumer_byte_rate: over it, the acquired records still arrive
/// (they are locked to the member) with a throttle time, and the connection waits it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_fetches_count_against_the_consumer_byte_rate() {
    use kafka_protocol::messages::share_fetch_request::{FetchPartition, FetchTopic};
    let b = TestBroker::start(WINDOW).await;
    let topic = common::topic_name("quota-share");
    common::create_topic(&b.bootstrap, &topic, 1, &[]).await;
    let id = b.running.as_ref().unwrap().broker.topic(&topic).unwrap().id;
    let quota = set_quota(vec![entity("client-id", Some("raw-test"))], "consumer_byte_rate", Some(1_000.0));
    assert_eq!(alter(&b.bootstrap, vec![quota]).await, [0]);
    let bootstrap = b.bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        let s = |v: &str| StrBytes::from_string(v.to_string());
        let mut conn = raw::connect(&bootstrap);
        let join = ShareGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("quota-share")))
            .with_member_id(s("m"))
            .with_subscribed_topic_names(Some(vec![TopicName(s(&topic))]));
        let r: ShareGroupHeartbeatResponse = raw::roundtrip(&mut conn, ApiKey::ShareGroupHeartbeat, 1, &join).unwrap();
        assert_eq!(r.error_code, 0);
        let records = bytes::Bytes::from(weir::log::batch::sample_batch(200));
        for _ in 0..3 {
            let req = ProduceRequest::default().with_acks(1).with_timeout_ms(5000).with_topic_data(vec![
                TopicProduceData::default().with_name(TopicName(s(&topic))).with_partition_data(vec![
                    PartitionProduceData::default().with_index(0).with_records(Some(records.clone())),
                ]),
            ]);
            let _: ProduceResponse = raw::call(&bootstrap, ApiKey::Produce, 9, &req);
        }
        let mut throttles = Vec::new();
        let mut acquired = 0;
        for epoch in 0..3 {
            let fetch = ShareFetchRequest::default()
                .with_group_id(Some(GroupId(s("quota-share"))))
                .with_member_id(Some(s("m")))
                .with_share_session_epoch(epoch)
                .with_max_wait_ms(100)
                .with_max_bytes(1 << 20)
                .with_max_records(200)
                .with_topics(if epoch == 0 {
                    vec![FetchTopic::default()
                        .with_topic_id(id)
                        .with_partitions(vec![FetchPartition::default().with_partition_index(0)])]
                } else {
                    Vec::new()
                });
            let r: ShareFetchResponse = raw::roundtrip(&mut conn, ApiKey::ShareFetch, 1, &fetch).unwrap();
            assert_eq!(r.error_code, 0);
            acquired += r.responses.iter().flat_map(|t| &t.partitions).map(|p| p.acquired_records.len()).sum::<usize>();
            throttles.push(r.throttle_time_ms);
        }
        assert!(acquired > 0, "records are delivered");
        assert!(throttles.iter().any(|t| *t > 0), "a share consumer over its quota is told to wait: {throttles:?}");
    })
    .await
    .unwrap();
}
