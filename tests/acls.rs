//! ACL authorization with real clients: rdkafka producers, consumers and group members logged
//! in over SASL as different users (and over TLS with client certificates), ACLs managed with
//! CreateAcls / DescribeAcls / DeleteAcls.

mod common;

use std::time::{Duration, Instant};

use common::pki::Pki;
use common::{raw, TestBroker};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::Message;
use weir::security::acl::{op, pattern, permission, resource};
use weir::security::scram::ScramUser;

const ADMIN: (&str, &str) = ("admin", "admin-secret");
const ALICE: (&str, &str) = ("alice", "alice-secret");
const BOB: (&str, &str) = ("bob", "bob-secret");

/// A broker with the ACL authorizer, a SASL_PLAINTEXT and an SSL listener (client
/// certificates required), super user admin, and users admin, alice and bob.
async fn acl_broker(pki: &Pki, dir: tempfile::TempDir) -> TestBroker {
    let mut pairs: Vec<(String, String)> = vec![
        ("listeners".into(), "SASL_PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0".into()),
        ("log.dirs".into(), dir.path().display().to_string()),
        ("authorizer.class.name".into(), "org.apache.kafka.metadata.authorizer.StandardAuthorizer".into()),
        ("super.users".into(), "User:admin".into()),
        ("ssl.client.auth".into(), "required".into()),
    ];
    pairs.extend(pki.broker_settings());
    let mut config = weir::config::BrokerConfig::from_layers([pairs]).unwrap();
    for (user, password) in [ADMIN, ALICE, BOB] {
        config.add_scram_user(ScramUser::parse(&format!("SCRAM-SHA-256=[name={user},password={password}]")).unwrap());
    }
    TestBroker::start_with(dir, config).await
}

fn sasl_addr(b: &TestBroker) -> String {
    b.running.as_ref().unwrap().listener_addr("SASL_PLAINTEXT").unwrap().to_string()
}

fn as_user(addr: &str, (user, password): (&str, &str)) -> ClientConfig {
    let mut c = common::client_config(addr);
    c.set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanism", "SCRAM-SHA-256")
        .set("sasl.username", user)
        .set("sasl.password", password);
    c
}

fn acl(rt: i8, name: &str, pt: i8, principal: &str, operation: i8, perm: i8) -> AclCreation {
    AclCreation::default()
        .with_resource_type(rt)
        .with_resource_name(StrBytes::from_string(name.into()))
        .with_resource_pattern_type(pt)
        .with_principal(StrBytes::from_string(principal.into()))
        .with_host(StrBytes::from_static_str("*"))
        .with_operation(operation)
        .with_permission_type(perm)
}

/// One request over a raw connection logged in as `who`.
async fn call_as<Req, Resp>(addr: &str, who: (&str, &str), key: ApiKey, version: i16, req: Req) -> Resp
where
    Req: kafka_protocol::protocol::Encodable + Send + 'static,
    Resp: kafka_protocol::protocol::Decodable + kafka_protocol::protocol::HeaderVersion + Send + 'static,
{
    let (addr, user, password) = (addr.to_string(), who.0.to_string(), who.1.to_string());
    tokio::task::spawn_blocking(move || {
        let mut s = raw::connect(&addr);
        assert_eq!(raw::sasl_plain(&mut s, &user, &password).error_code, 0, "{user} logs in");
        raw::roundtrip(&mut s, key, version, &req).expect("response")
    })
    .await
    .unwrap()
}

async fn create_acls(addr: &str, who: (&str, &str), creations: Vec<AclCreation>) -> Vec<i16> {
    let resp: CreateAclsResponse =
        call_as(addr, who, ApiKey::CreateAcls, 3, CreateAclsRequest::default().with_creations(creations)).await;
    resp.results.iter().map(|r| r.error_code).collect()
}

async fn grant(addr: &str, creations: Vec<AclCreation>) {
    let codes = create_acls(addr, ADMIN, creations).await;
    assert!(codes.iter().all(|c| *c == 0), "ACLs created: {codes:?}");
}

async fn create_topics(addr: &str, names: &[&str]) {
    let admin: rdkafka::admin::AdminClient<_> = as_user(addr, ADMIN).create().unwrap();
    let topics: Vec<_> =
        names.iter().map(|n| rdkafka::admin::NewTopic::new(n, 1, rdkafka::admin::TopicReplication::Fixed(1))).collect();
    for r in admin.create_topics(&topics, &rdkafka::admin::AdminOptions::new()).await.unwrap() {
        r.expect("admin creates topics");
    }
}

/// Produces one record; the broker's error code on failure.
async fn produce(c: &ClientConfig, topic: &str, value: &str) -> Result<(), RDKafkaErrorCode> {
    let p: FutureProducer = c.clone().set("message.timeout.ms", "5000").create().unwrap();
    match p.send(FutureRecord::<(), _>::to(topic).payload(value), Duration::from_secs(6)).await {
        Ok(_) => Ok(()),
        Err((KafkaError::MessageProduction(code), _)) => Err(code),
        Err((e, _)) => panic!("unexpected produce error: {e}"),
    }
}

/// Polls a consumer for `n` values or the first error.
fn poll_values(consumer: &BaseConsumer, n: usize) -> Result<Vec<String>, RDKafkaErrorCode> {
    let deadline = Instant::now() + Duration::from_secs(if n == 1 { 5 } else { 15 });
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()),
            Some(Err(e)) => return Err(e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Unknown)),
            None => {}
        }
    }
    Ok(out)
}

fn assigned(c: &ClientConfig, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer =
        c.clone().set("group.id", "unused").set("enable.auto.commit", "false").create().unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    consumer
}

fn subscribed(c: &ClientConfig, topic: &str, group: &str) -> BaseConsumer {
    let consumer: BaseConsumer = c
        .clone()
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_reading_and_joining_need_their_acls() {
    let pki = Pki::new();
    let b = acl_broker(&pki, tempfile::tempdir().unwrap()).await;
    let addr = sasl_addr(&b);
    create_topics(&addr, &["orders"]).await;
    let alice = as_user(&addr, ALICE);
    // The assign-only consumers' group (librdkafka looks its coordinator up) is open to all.
    grant(&addr, vec![acl(resource::GROUP, "unused", pattern::LITERAL, "User:*", op::ALL, permission::ALLOW)]).await;

    assert_eq!(produce(&alice, "orders", "x").await, Err(RDKafkaErrorCode::TopicAuthorizationFailed));
    grant(&addr, vec![acl(resource::TOPIC, "orders", pattern::LITERAL, "User:alice", op::WRITE, permission::ALLOW)])
        .await;
    for i in 0..3 {
        produce(&alice, "orders", &format!("o{i}")).await.expect("WRITE granted");
    }

    // WRITE does not give READ.
    assert_eq!(poll_values(&assigned(&alice, "orders"), 3), Err(RDKafkaErrorCode::TopicAuthorizationFailed));
    grant(&addr, vec![acl(resource::TOPIC, "orders", pattern::LITERAL, "User:alice", op::READ, permission::ALLOW)])
        .await;
    assert_eq!(poll_values(&assigned(&alice, "orders"), 3).unwrap(), ["o0", "o1", "o2"]);

    // Joining a group needs READ on the group.
    let joined = poll_values(&subscribed(&alice, "orders", "billing"), 3);
    assert_eq!(joined, Err(RDKafkaErrorCode::GroupAuthorizationFailed));
    grant(&addr, vec![acl(resource::GROUP, "bill", pattern::PREFIXED, "User:alice", op::READ, permission::ALLOW)])
        .await;
    let consumer = subscribed(&alice, "orders", "billing");
    assert_eq!(poll_values(&consumer, 3).unwrap(), ["o0", "o1", "o2"]);
    consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync).expect("commit with READ on the group");

    // bob has nothing: he cannot see, write, or read the topic.
    let bob = as_user(&addr, BOB);
    assert_eq!(produce(&bob, "orders", "b").await, Err(RDKafkaErrorCode::TopicAuthorizationFailed));
    // He cannot describe it, so librdkafka may not even fetch: either way no data reaches him.
    let read = poll_values(&assigned(&bob, "orders"), 1);
    assert!(
        matches!(read, Ok(ref v) if v.is_empty()) || read == Err(RDKafkaErrorCode::TopicAuthorizationFailed),
        "{read:?}"
    );
    let md: BaseConsumer = bob.create().unwrap();
    let md = md.fetch_metadata(None, Duration::from_secs(5)).unwrap();
    assert!(md.topics().iter().all(|t| t.name() != "orders"), "Metadata hides topics bob may not describe");
    // Without CREATE he cannot auto-create topics either.
    assert_eq!(produce(&bob, "bobs-new-topic", "b").await, Err(RDKafkaErrorCode::TopicAuthorizationFailed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_deny_and_super_users() {
    let pki = Pki::new();
    let b = acl_broker(&pki, tempfile::tempdir().unwrap()).await;
    let addr = sasl_addr(&b);
    create_topics(&addr, &["logs-a", "logs-b", "logs-secret", "other"]).await;
    grant(
        &addr,
        vec![
            acl(resource::TOPIC, "logs-", pattern::PREFIXED, "User:bob", op::WRITE, permission::ALLOW),
            acl(resource::TOPIC, "logs-secret", pattern::LITERAL, "User:bob", op::WRITE, permission::DENY),
        ],
    )
    .await;
    let bob = as_user(&addr, BOB);
    produce(&bob, "logs-a", "1").await.expect("prefixed ACL grants logs-a");
    produce(&bob, "logs-b", "2").await.expect("prefixed ACL grants logs-b");
    assert_eq!(produce(&bob, "logs-secret", "3").await, Err(RDKafkaErrorCode::TopicAuthorizationFailed), "deny wins");
    assert_eq!(produce(&bob, "other", "4").await, Err(RDKafkaErrorCode::TopicAuthorizationFailed));
    let md: BaseConsumer = bob.create().unwrap();
    let md = md.fetch_metadata(None, Duration::from_secs(5)).unwrap();
    let mut visible: Vec<&str> = md.topics().iter().map(|t| t.name()).collect();
    visible.sort();
    assert_eq!(visible, ["logs-a", "logs-b", "logs-secret"], "WRITE implies DESCRIBE; 'other' is hidden");
    // The super user needs no ACL.
    produce(&as_user(&addr, ADMIN), "logs-secret", "admin").await.expect("super user");
    produce(&as_user(&addr, ADMIN), "other", "admin").await.expect("super user");
    // An idempotent producer needs WRITE on some topic (KIP-679): bob has it, alice does not.
    let idempotent = |c: &ClientConfig| {
        let p: FutureProducer = c.clone().set("enable.idempotence", "true").create().unwrap();
        p.client().fetch_metadata(None, Duration::from_secs(5)).unwrap();
        p
    };
    let p = idempotent(&bob);
    p.send(FutureRecord::<(), _>::to("logs-a").payload("idem"), Duration::from_secs(5)).await.expect("idempotent bob");
    let p = idempotent(&as_user(&addr, ALICE));
    let r = p.send(FutureRecord::<(), _>::to("logs-a").payload("idem"), Duration::from_secs(5)).await;
    assert!(r.is_err(), "alice may not produce idempotently");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_subjects_are_principals() {
    let pki = Pki::new();
    let b = acl_broker(&pki, tempfile::tempdir().unwrap()).await;
    let addr = sasl_addr(&b);
    create_topics(&addr, &["metrics"]).await;
    grant(
        &addr,
        vec![acl(
            resource::TOPIC,
            "metrics",
            pattern::LITERAL,
            "User:CN=writer,O=Weir Tests",
            op::WRITE,
            permission::ALLOW,
        )],
    )
    .await;
    let ssl = b.running.as_ref().unwrap().listener_addr("SSL").unwrap().to_string();
    let with_cert = |cn: &str| {
        let (cert, key) = pki.client(cn);
        let mut c = common::client_config(&ssl);
        c.set("security.protocol", "SSL")
            .set("ssl.ca.location", pki.ca_file.display().to_string())
            .set("ssl.certificate.location", cert.display().to_string())
            .set("ssl.key.location", key.display().to_string());
        c
    };
    produce(&with_cert("writer"), "metrics", "m").await.expect("the writer certificate may write");
    assert_eq!(produce(&with_cert("reader"), "metrics", "m").await, Err(RDKafkaErrorCode::TopicAuthorizationFailed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_ids_need_write() {
    let pki = Pki::new();
    let b = acl_broker(&pki, tempfile::tempdir().unwrap()).await;
    let addr = sasl_addr(&b);
    create_topics(&addr, &["payments"]).await;
    grant(&addr, vec![acl(resource::TOPIC, "payments", pattern::LITERAL, "User:alice", op::WRITE, permission::ALLOW)])
        .await;
    let txn = |id: &str| -> FutureProducer {
        as_user(&addr, ALICE).set("transactional.id", id).set("transaction.timeout.ms", "10000").create().unwrap()
    };
    let p = txn("pay-1");
    let denied = p.init_transactions(Duration::from_secs(10)).unwrap_err();
    assert_eq!(denied.rdkafka_error_code(), Some(RDKafkaErrorCode::TransactionalIdAuthorizationFailed), "{denied}");
    grant(
        &addr,
        vec![acl(resource::TRANSACTIONAL_ID, "pay-", pattern::PREFIXED, "User:alice", op::WRITE, permission::ALLOW)],
    )
    .await;
    let p = txn("pay-2");
    p.init_transactions(Duration::from_secs(10)).expect("WRITE on the transactional id");
    p.begin_transaction().unwrap();
    p.send(FutureRecord::<(), _>::to("payments").payload("p"), Duration::from_secs(5)).await.unwrap();
    p.commit_transaction(Duration::from_secs(10)).expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_are_managed_through_the_kafka_apis_and_persist() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let b = acl_broker(&pki, dir).await;
    let addr = sasl_addr(&b);
    let creations = vec![
        acl(resource::TOPIC, "orders", pattern::LITERAL, "User:alice", op::READ, permission::ALLOW),
        acl(resource::TOPIC, "ord", pattern::PREFIXED, "User:bob", op::WRITE, permission::ALLOW),
        acl(resource::GROUP, "*", pattern::LITERAL, "User:*", op::READ, permission::ALLOW),
    ];
    grant(&addr, creations.clone()).await;
    grant(&addr, creations[..1].to_vec()).await; // creating an existing ACL again is fine (and kept once)
                                                 // Invalid bindings and unauthorized callers.
    let bad = vec![
        acl(resource::CLUSTER, "not-the-cluster", pattern::LITERAL, "User:x", op::ALTER, permission::ALLOW),
        acl(resource::TOPIC, "t", pattern::MATCH, "User:x", op::READ, permission::ALLOW),
        acl(resource::TOPIC, "t", pattern::LITERAL, "nobody", op::READ, permission::ALLOW),
    ];
    assert_eq!(create_acls(&addr, ADMIN, bad).await, [42, 42, 42], "INVALID_REQUEST");
    assert_eq!(create_acls(&addr, ALICE, creations[..1].to_vec()).await, [31], "CLUSTER_AUTHORIZATION_FAILED");

    let describe = |filter: DescribeAclsRequest| {
        let addr = addr.clone();
        async move {
            let r: DescribeAclsResponse = call_as(&addr, ADMIN, ApiKey::DescribeAcls, 3, filter).await;
            assert_eq!(r.error_code, 0);
            let mut found: Vec<(String, String, i8)> = r
                .resources
                .iter()
                .flat_map(|res| {
                    res.acls.iter().map(move |a| (res.resource_name.to_string(), a.principal.to_string(), a.operation))
                })
                .collect();
            found.sort();
            found
        }
    };
    let any = DescribeAclsRequest::default()
        .with_resource_name_filter(None)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_resource_type_filter(resource::ANY)
        .with_pattern_type_filter(pattern::ANY)
        .with_operation(op::ANY)
        .with_permission_type(permission::ANY);
    assert_eq!(describe(any.clone()).await.len(), 3);
    let matching_orders = any
        .clone()
        .with_resource_type_filter(resource::TOPIC)
        .with_pattern_type_filter(pattern::MATCH)
        .with_resource_name_filter(Some(StrBytes::from_static_str("orders")));
    assert_eq!(
        describe(matching_orders).await,
        [
            ("orders".to_string(), "User:alice".to_string(), op::READ),
            ("ord".to_string(), "User:bob".to_string(), op::WRITE)
        ]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    let r: DescribeAclsResponse = call_as(&addr, BOB, ApiKey::DescribeAcls, 3, any.clone()).await;
    assert_eq!(r.error_code, 31, "DescribeAcls needs DESCRIBE on the cluster");

    // Delete bob's ACLs; the response lists what matched.
    let filter = DeleteAclsFilter::default()
        .with_resource_name_filter(None)
        .with_host_filter(None)
        .with_resource_type_filter(resource::ANY)
        .with_pattern_type_filter(pattern::ANY)
        .with_principal_filter(Some(StrBytes::from_static_str("User:bob")))
        .with_operation(op::ANY)
        .with_permission_type(permission::ANY);
    let r: DeleteAclsResponse =
        call_as(&addr, ADMIN, ApiKey::DeleteAcls, 3, DeleteAclsRequest::default().with_filters(vec![filter])).await;
    assert_eq!(r.filter_results[0].error_code, 0);
    assert_eq!(r.filter_results[0].matching_acls.len(), 1);
    assert_eq!(r.filter_results[0].matching_acls[0].resource_name.as_str(), "ord");

    // ACLs live in the metadata log.
    let dir = {
        let mut b = b;
        b.stop().await;
        b.dir
    };
    let b = acl_broker(&pki, dir).await;
    let addr = sasl_addr(&b);
    let r: DescribeAclsResponse = call_as(&addr, ADMIN, ApiKey::DescribeAcls, 3, any).await;
    let names: Vec<String> = r.resources.iter().map(|res| res.resource_name.to_string()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"orders".to_string()) && names.contains(&"*".to_string()));
}

#[tokio::test]
async fn acl_apis_without_an_authorizer_are_security_disabled() {
    let b = TestBroker::start(&[]).await;
    let req = CreateAclsRequest::default().with_creations(vec![acl(
        resource::TOPIC,
        "t",
        pattern::LITERAL,
        "User:a",
        op::READ,
        permission::ALLOW,
    )]);
    let r: CreateAclsResponse = raw::call_async(&b.bootstrap, ApiKey::CreateAcls, 2, req).await;
    assert_eq!(r.results[0].error_code, 54, "SECURITY_DISABLED");
    let r: DescribeAclsResponse =
        raw::call_async(&b.bootstrap, ApiKey::DescribeAcls, 1, DescribeAclsRequest::default()).await;
    assert_eq!(r.error_code, 54);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_everyone_if_no_acl_found_opens_only_resources_without_acls() {
    let b = TestBroker::start(&[("authorizer.class.name", "acl"), ("allow.everyone.if.no.acl.found", "true")]).await;
    let anonymous = common::client_config(&b.bootstrap);
    produce(&anonymous, "open-topic", "x").await.expect("no ACLs anywhere: open");
    produce(&anonymous, "guarded", "x").await.expect("no ACLs on it yet");
    // The cluster has no ACLs either, so anybody may create the first ones.
    let req = CreateAclsRequest::default().with_creations(vec![acl(
        resource::TOPIC,
        "guarded",
        pattern::LITERAL,
        "User:alice",
        op::READ,
        permission::ALLOW,
    )]);
    let r: CreateAclsResponse = raw::call_async(&b.bootstrap, ApiKey::CreateAcls, 3, req).await;
    assert_eq!(r.results[0].error_code, 0);
    assert_eq!(
        produce(&anonymous, "guarded", "y").await,
        Err(RDKafkaErrorCode::TopicAuthorizationFailed),
        "has ACLs now"
    );
    produce(&anonymous, "open-topic", "z").await.expect("still without ACLs");
}

/// A principal without any ACL gets Kafka's authorization error from every API that checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_checked_api_refuses_a_principal_without_acls() {
    let pki = Pki::new();
    let b = acl_broker(&pki, tempfile::tempdir().unwrap()).await;
    let addr = sasl_addr(&b);
    create_topics(&addr, &["secret"]).await;
    let s = |v: &'static str| StrBytes::from_static_str(v);
    let topic = || TopicName(s("secret"));
    const TOPIC: i16 = 29;
    const GROUP: i16 = 30;
    const CLUSTER: i16 = 31;
    const TXN_ID: i16 = 53;

    let r: CreateTopicsResponse = call_as(
        &addr,
        BOB,
        ApiKey::CreateTopics,
        7,
        CreateTopicsRequest::default().with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(TopicName(s("bobs")))
            .with_num_partitions(1)
            .with_replication_factor(1)]),
    )
    .await;
    assert_eq!(r.topics[0].error_code, TOPIC, "CreateTopics");
    let r: DeleteTopicsResponse = call_as(
        &addr,
        BOB,
        ApiKey::DeleteTopics,
        6,
        DeleteTopicsRequest::default()
            .with_topics(vec![delete_topics_request::DeleteTopicState::default().with_name(Some(topic()))]),
    )
    .await;
    assert_eq!(r.responses[0].error_code, TOPIC, "DeleteTopics");
    let r: CreatePartitionsResponse = call_as(
        &addr,
        BOB,
        ApiKey::CreatePartitions,
        3,
        CreatePartitionsRequest::default().with_topics(vec![
            create_partitions_request::CreatePartitionsTopic::default().with_name(topic()).with_count(2),
        ]),
    )
    .await;
    assert_eq!(r.results[0].error_code, TOPIC, "CreatePartitions");
    let r: DeleteRecordsResponse = call_as(
        &addr,
        BOB,
        ApiKey::DeleteRecords,
        2,
        DeleteRecordsRequest::default().with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
            .with_name(topic())
            .with_partitions(vec![delete_records_request::DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(0)])]),
    )
    .await;
    assert_eq!(r.topics[0].partitions[0].error_code, TOPIC, "DeleteRecords");
    let r: ListOffsetsResponse = call_as(
        &addr,
        BOB,
        ApiKey::ListOffsets,
        7,
        ListOffsetsRequest::default().with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(topic())
            .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)])]),
    )
    .await;
    assert_eq!(r.topics[0].partitions[0].error_code, TOPIC, "ListOffsets");
    let describe_configs = |rt: i8, name: &'static str| {
        DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(rt)
                .with_resource_name(s(name))
                .with_configuration_keys(None),
        ])
    };
    let r: DescribeConfigsResponse =
        call_as(&addr, BOB, ApiKey::DescribeConfigs, 4, describe_configs(2, "secret")).await;
    assert_eq!(r.results[0].error_code, TOPIC, "DescribeConfigs topic");
    let r: DescribeConfigsResponse = call_as(&addr, BOB, ApiKey::DescribeConfigs, 4, describe_configs(4, "1")).await;
    assert_eq!(r.results[0].error_code, CLUSTER, "DescribeConfigs broker");
    let r: DescribeLogDirsResponse =
        call_as(&addr, BOB, ApiKey::DescribeLogDirs, 4, DescribeLogDirsRequest::default()).await;
    assert_eq!((r.error_code, r.results.len()), (CLUSTER, 0), "DescribeLogDirs");
    let r: FindCoordinatorResponse = call_as(
        &addr,
        BOB,
        ApiKey::FindCoordinator,
        4,
        FindCoordinatorRequest::default().with_key_type(0).with_coordinator_keys(vec![s("g")]),
    )
    .await;
    assert_eq!(r.coordinators[0].error_code, GROUP, "FindCoordinator group");
    let r: FindCoordinatorResponse = call_as(
        &addr,
        BOB,
        ApiKey::FindCoordinator,
        4,
        FindCoordinatorRequest::default().with_key_type(1).with_coordinator_keys(vec![s("tx")]),
    )
    .await;
    assert_eq!(r.coordinators[0].error_code, TXN_ID, "FindCoordinator transaction");
    let r: DescribeGroupsResponse = call_as(
        &addr,
        BOB,
        ApiKey::DescribeGroups,
        5,
        DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]),
    )
    .await;
    assert_eq!(r.groups[0].error_code, GROUP, "DescribeGroups");
    let r: DeleteGroupsResponse = call_as(
        &addr,
        BOB,
        ApiKey::DeleteGroups,
        2,
        DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g"))]),
    )
    .await;
    assert_eq!(r.results[0].error_code, GROUP, "DeleteGroups");
    let r: OffsetFetchResponse = call_as(
        &addr,
        BOB,
        ApiKey::OffsetFetch,
        7,
        OffsetFetchRequest::default().with_group_id(GroupId(s("g"))).with_topics(None),
    )
    .await;
    assert_eq!(r.error_code, GROUP, "OffsetFetch");
    let r: HeartbeatResponse =
        call_as(&addr, BOB, ApiKey::Heartbeat, 4, HeartbeatRequest::default().with_group_id(GroupId(s("g")))).await;
    assert_eq!(r.error_code, GROUP, "Heartbeat");
    let r: InitProducerIdResponse = call_as(
        &addr,
        BOB,
        ApiKey::InitProducerId,
        4,
        InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(s("tx"))))
            .with_transaction_timeout_ms(10000),
    )
    .await;
    assert_eq!(r.error_code, TXN_ID, "InitProducerId transactional");
    let r: InitProducerIdResponse =
        call_as(&addr, BOB, ApiKey::InitProducerId, 4, InitProducerIdRequest::default().with_transactional_id(None))
            .await;
    assert_eq!(r.error_code, CLUSTER, "InitProducerId idempotent");
    let r: DescribeProducersResponse = call_as(
        &addr,
        BOB,
        ApiKey::DescribeProducers,
        0,
        DescribeProducersRequest::default().with_topics(vec![describe_producers_request::TopicRequest::default()
            .with_name(topic())
            .with_partition_indexes(vec![0])]),
    )
    .await;
    assert_eq!(r.topics[0].partitions[0].error_code, TOPIC, "DescribeProducers");
    let r: DescribeUserScramCredentialsResponse = call_as(
        &addr,
        BOB,
        ApiKey::DescribeUserScramCredentials,
        0,
        DescribeUserScramCredentialsRequest::default().with_users(None),
    )
    .await;
    assert_eq!(r.error_code, CLUSTER, "DescribeUserScramCredentials");
    let r: DescribeClientQuotasResponse =
        call_as(&addr, BOB, ApiKey::DescribeClientQuotas, 1, DescribeClientQuotasRequest::default()).await;
    assert_eq!(r.error_code, CLUSTER, "DescribeClientQuotas");
    let r: ListGroupsResponse = call_as(&addr, ADMIN, ApiKey::ListGroups, 4, ListGroupsRequest::default()).await;
    assert_eq!(r.error_code, 0);
    let r: MetadataResponse = call_as(
        &addr,
        BOB,
        ApiKey::Metadata,
        12,
        MetadataRequest::default()
            .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default().with_name(Some(topic()))])),
    )
    .await;
    assert_eq!(r.topics[0].error_code, TOPIC, "Metadata for a named topic");
    // The super user may do all of it.
    let r: DescribeConfigsResponse =
        call_as(&addr, ADMIN, ApiKey::DescribeConfigs, 4, describe_configs(2, "secret")).await;
    assert_eq!(r.results[0].error_code, 0);
    let r: MetadataResponse = call_as(
        &addr,
        ADMIN,
        ApiKey::Metadata,
        10,
        MetadataRequest::default()
            .with_topics(None)
            .with_include_cluster_authorized_operations(true)
            .with_include_topic_authorized_operations(true),
    )
    .await;
    let secret = r.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "secret")).expect("listed");
    assert_eq!(secret.topic_authorized_operations, 0b1101_1111_1000, "all topic operations");
    assert_ne!(r.cluster_authorized_operations, 0);
}

/// Share groups are checked as Kafka checks them: READ on the group (heartbeat, fetch,
/// acknowledge), DESCRIBE on subscribed topics, READ on the topics fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_groups_need_read_on_the_group_and_the_topic() {
    use kafka_protocol::messages::share_fetch_request::{FetchPartition, FetchTopic};
    let pki = Pki::new();
    let b = acl_broker(&pki, tempfile::tempdir().unwrap()).await;
    let addr = sasl_addr(&b);
    create_topics(&addr, &["jobs"]).await;
    let id = b.running.as_ref().unwrap().broker.topic("jobs").unwrap().id;
    let s = |v: &str| StrBytes::from_string(v.to_string());
    let heartbeat = ShareGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s("workers")))
        .with_member_id(s("alice-1"))
        .with_subscribed_topic_names(Some(vec![TopicName(s("jobs"))]));
    let fetch = ShareFetchRequest::default()
        .with_group_id(Some(GroupId(s("workers"))))
        .with_member_id(Some(s("alice-1")))
        .with_max_records(10)
        .with_topics(vec![FetchTopic::default()
            .with_topic_id(id)
            .with_partitions(vec![FetchPartition::default().with_partition_index(0)])]);
    let hb =
        |who| call_as::<_, ShareGroupHeartbeatResponse>(&addr, who, ApiKey::ShareGroupHeartbeat, 1, heartbeat.clone());
    assert_eq!(hb(ALICE).await.error_code, ResponseError::GroupAuthorizationFailed.code());
    grant(&addr, vec![acl(resource::GROUP, "workers", pattern::LITERAL, "User:alice", op::READ, permission::ALLOW)])
        .await;
    assert_eq!(hb(ALICE).await.error_code, ResponseError::TopicAuthorizationFailed.code(), "DESCRIBE on the topic");
    grant(&addr, vec![acl(resource::TOPIC, "jobs", pattern::LITERAL, "User:alice", op::DESCRIBE, permission::ALLOW)])
        .await;
    assert_eq!(hb(ALICE).await.error_code, 0);
    let f: ShareFetchResponse = call_as(&addr, ALICE, ApiKey::ShareFetch, 1, fetch.clone()).await;
    assert_eq!(f.error_code, 0);
    assert_eq!(f.responses[0].partitions[0].error_code, ResponseError::TopicAuthorizationFailed.code());
    grant(&addr, vec![acl(resource::TOPIC, "jobs", pattern::LITERAL, "User:alice", op::READ, permission::ALLOW)]).await;
    let f: ShareFetchResponse = call_as(&addr, ALICE, ApiKey::ShareFetch, 1, fetch.clone()).await;
    assert_eq!((f.error_code, f.responses.first().map_or(0, |t| t.partitions[0].error_code)), (0, 0));
    let f: ShareFetchResponse = call_as(&addr, BOB, ApiKey::ShareFetch, 1, fetch).await;
    assert_eq!(f.error_code, ResponseError::GroupAuthorizationFailed.code());
}
