//! Feature flags (KIP-584): ApiVersions advertises the features Weir supports and the levels
//! the cluster finalized; UpdateFeatures changes them with Kafka's checks, the change is in
//! the metadata log (it survives a restart), and group.version / share.version switch the
//! KIP-848 consumer protocol and share groups on and off as in Kafka. An rdkafka consumer
//! proves the consumer protocol follows the switch.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// (supported ranges, finalized levels, epoch) from ApiVersions at `version`.
type Features = (BTreeMap<String, (i16, i16)>, BTreeMap<String, i16>, i64);

async fn features(bootstrap: &str, version: i16) -> Features {
    let req =
        ApiVersionsRequest::default().with_client_software_name(s("weir-tests")).with_client_software_version(s("1"));
    let r: ApiVersionsResponse = raw::call_async(bootstrap, ApiKey::ApiVersions, version, req).await;
    assert_eq!(r.error_code, 0);
    let supported = r.supported_features.iter().map(|f| (f.name.to_string(), (f.min_version, f.max_version))).collect();
    let finalized = r
        .finalized_features
        .iter()
        .map(|f| {
            assert_eq!(f.min_version_level, f.max_version_level, "{f:?}");
            (f.name.to_string(), f.max_version_level)
        })
        .collect();
    (supported, finalized, r.finalized_features_epoch)
}

/// UpdateFeatures at `version` with (feature, level, upgrade type).
async fn update(
    bootstrap: &str,
    version: i16,
    updates: &[(&str, i16, i8)],
    validate_only: bool,
) -> UpdateFeaturesResponse {
    let req = UpdateFeaturesRequest::default().with_validate_only(validate_only).with_feature_updates(
        updates
            .iter()
            .map(|(name, level, kind)| {
                update_features_request::FeatureUpdateKey::default()
                    .with_feature(s(name))
                    .with_max_version_level(*level)
                    .with_upgrade_type(*kind)
            })
            .collect(),
    );
    raw::call_async(bootstrap, ApiKey::UpdateFeatures, version, req).await
}

const UPGRADE: i8 = 1;
const SAFE_DOWNGRADE: i8 = 2;
const UNSAFE_DOWNGRADE: i8 = 3;

async fn share_heartbeat(bootstrap: &str, topic: &str) -> i16 {
    let req = ShareGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(&topic_name("share-gate"))))
        .with_member_id(s(&uuid::Uuid::new_v4().to_string()))
        .with_member_epoch(0)
        .with_subscribed_topic_names(Some(vec![TopicName(s(topic))]));
    let r: ShareGroupHeartbeatResponse = raw::call_async(bootstrap, ApiKey::ShareGroupHeartbeat, 1, req).await;
    r.error_code
}

async fn consumer_heartbeat(bootstrap: &str, topic: &str) -> i16 {
    let req = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(&topic_name("consumer-gate"))))
        .with_member_id(s(&uuid::Uuid::new_v4().to_string()))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(Some(vec![TopicName(s(topic))]));
    let r: ConsumerGroupHeartbeatResponse = raw::call_async(bootstrap, ApiKey::ConsumerGroupHeartbeat, 0, req).await;
    r.error_code
}

#[tokio::test(flavor = "multi_thread")]
async fn api_versions_advertises_supported_and_finalized_features() {
    let broker = TestBroker::start(&[]).await;
    let (supported, finalized, epoch) = features(&broker.bootstrap, 4).await;
    let want_supported: BTreeMap<String, (i16, i16)> = [
        ("metadata.version", (7, 29)),
        ("kraft.version", (0, 1)),
        ("transaction.version", (0, 0)),
        ("group.version", (0, 1)),
        ("eligible.leader.replicas.version", (0, 0)),
        ("share.version", (0, 1)),
        ("streams.version", (0, 0)),
    ]
    .into_iter()
    .map(|(n, r)| (n.to_string(), r))
    .collect();
    assert_eq!(supported, want_supported);
    // levels at 0 are not listed, as Kafka lists them
    let want_finalized: BTreeMap<String, i16> =
        [("metadata.version", 29), ("kraft.version", 1), ("group.version", 1), ("share.version", 1)]
            .into_iter()
            .map(|(n, l)| (n.to_string(), l))
            .collect();
    assert_eq!(finalized, want_finalized);
    assert!(epoch >= 0);
    // before v4, features whose lowest level is 0 are left out (KAFKA-17492)
    let (supported_v3, finalized_v3, _) = features(&broker.bootstrap, 3).await;
    assert_eq!(supported_v3.keys().collect::<Vec<_>>(), ["metadata.version"]);
    assert_eq!(finalized_v3, want_finalized);
}

#[tokio::test(flavor = "multi_thread")]
async fn update_features_checks_levels_and_switches_group_protocols() {
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("features");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    let b = broker.bootstrap.clone();
    let (_, before, epoch0) = features(&b, 4).await;

    // refused, each with INVALID_UPDATE_VERSION and Kafka's reason; nothing changes
    for (updates, reason) in [
        (vec![("transaction.version", 2, UPGRADE)], "does not support this feature"),
        (vec![("group.version", 2, UPGRADE)], "only supports versions 0-1"),
        (vec![("group.version", 0, UPGRADE)], "without setting the upgrade type"),
        (vec![("share.version", 2, SAFE_DOWNGRADE)], "only supports versions 0-1"),
        (vec![("metadata.version", 22, SAFE_DOWNGRADE)], "might delete metadata information"),
        (vec![("metadata.version", 22, UNSAFE_DOWNGRADE)], "Unsafe metadata downgrade is not supported"),
        (vec![("kraft.version", 0, SAFE_DOWNGRADE)], "Can't downgrade the version of this feature."),
        (vec![("no.such.feature", 1, UPGRADE)], "does not support this feature"),
        // all or none: the valid first update is not applied either
        (vec![("share.version", 0, SAFE_DOWNGRADE), ("streams.version", 1, UPGRADE)], "does not support"),
    ] {
        let r = update(&b, 1, &updates, false).await;
        assert_eq!(r.error_code, ResponseError::InvalidUpdateVersion.code(), "{updates:?}");
        let message = r.error_message.map(|m| m.to_string()).unwrap_or_default();
        assert!(message.contains(reason), "{updates:?}: {message}");
        assert!(r.results.is_empty(), "no per-feature results on failure");
    }
    // validate-only checks without changing
    let r = update(&b, 1, &[("share.version", 0, SAFE_DOWNGRADE)], true).await;
    assert_eq!(r.error_code, 0);
    let (_, unchanged, epoch) = features(&b, 4).await;
    assert_eq!((unchanged, epoch), (before.clone(), epoch0));

    // share.version 0: share groups are off (UNSUPPORTED_VERSION), the level is not listed
    let r = update(&b, 1, &[("share.version", 0, SAFE_DOWNGRADE)], false).await;
    assert_eq!((r.error_code, r.results.len()), (0, 1));
    assert_eq!((r.results[0].feature.as_str(), r.results[0].error_code), ("share.version", 0));
    let (_, finalized, epoch1) = features(&b, 4).await;
    assert!(!finalized.contains_key("share.version") && epoch1 > epoch0, "{finalized:?} {epoch1}");
    assert_eq!(share_heartbeat(&b, &topic).await, ResponseError::UnsupportedVersion.code());
    // a safe metadata.version downgrade where no level in between changed the records (v2:
    // no per-feature results)
    let r = update(&b, 2, &[("metadata.version", 24, SAFE_DOWNGRADE)], false).await;
    assert_eq!((r.error_code, r.results.len()), (0, 0), "{:?}", r.error_message);

    // group.version 0: the KIP-848 protocol is off; the classic protocol still serves
    let r = update(&b, 1, &[("group.version", 0, SAFE_DOWNGRADE)], false).await;
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert_eq!(consumer_heartbeat(&b, &topic).await, ResponseError::UnsupportedVersion.code());

    // the levels are in the metadata log: a restart keeps them
    let broker = broker.restart(&[]).await;
    let b = broker.bootstrap.clone();
    let (_, finalized, epoch2) = features(&b, 4).await;
    assert_eq!(epoch2, epoch1 + 2);
    assert_eq!(finalized.get("metadata.version"), Some(&24));
    assert!(!finalized.contains_key("group.version") && !finalized.contains_key("share.version"));
    assert_eq!(share_heartbeat(&b, &topic).await, ResponseError::UnsupportedVersion.code());

    // upgraded again (v0 form for one of them): both protocols serve, and a librdkafka
    // KIP-848 consumer joins and is assigned the partition
    let r = update(&b, 1, &[("share.version", 1, UPGRADE), ("metadata.version", 29, UPGRADE)], false).await;
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    let req = UpdateFeaturesRequest::default().with_feature_updates(vec![
        update_features_request::FeatureUpdateKey::default().with_feature(s("group.version")).with_max_version_level(1),
    ]);
    let r: UpdateFeaturesResponse = raw::call_async(&b, ApiKey::UpdateFeatures, 0, req).await;
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert_eq!(features(&b, 4).await.1, before);
    assert_eq!(share_heartbeat(&b, &topic).await, 0);
    assert_eq!(consumer_heartbeat(&b, &topic).await, 0);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("group.id", topic_name("kip848-after-upgrade"))
        .set("group.protocol", "consumer")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while consumer.assignment().map(|a| a.count()).unwrap_or(0) == 0 {
        assert!(std::time::Instant::now() < deadline, "the KIP-848 consumer got no assignment");
        consumer.poll(Duration::from_millis(100));
    }
}
