//! Listeners, TLS and SASL with real clients: rdkafka (librdkafka 2.12 with OpenSSL) over SSL,
//! SASL_PLAINTEXT and SASL_SSL with PLAIN and both SCRAMs, plus raw-protocol checks of the
//! SASL state machine and the SCRAM credential APIs.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::pki::Pki;
use common::{raw, TestBroker};
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset};
use weir::security::scram::ScramUser;

const ALL_LISTENERS: &str =
    "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0";

/// A broker with every kind of listener, the test PKI, and users alice (both SCRAMs) and bob
/// (SCRAM-SHA-256 only).
async fn secure_broker(pki: &Pki, extra: &[(&str, &str)]) -> TestBroker {
    let dir = tempfile::tempdir().unwrap();
    let mut pairs: Vec<(String, String)> =
        vec![("listeners".into(), ALL_LISTENERS.into()), ("log.dirs".into(), dir.path().display().to_string())];
    pairs.extend(pki.broker_settings());
    pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut config = weir::config::BrokerConfig::from_layers([pairs]).unwrap();
    for spec in [
        "SCRAM-SHA-256=[name=alice,password=alice-secret]",
        "SCRAM-SHA-512=[name=alice,password=alice-secret,iterations=8192]",
        "SCRAM-SHA-256=[name=bob,password=bob-secret]",
    ] {
        config.add_scram_user(ScramUser::parse(spec).unwrap());
    }
    TestBroker::start_with(dir, config).await
}

fn listener(b: &TestBroker, name: &str) -> String {
    b.running.as_ref().unwrap().listener_addr(name).unwrap().to_string()
}

/// Client settings for `protocol` (and SASL `mechanism` with `user`/`password`).
fn client(bootstrap: &str, pki: &Pki, protocol: &str, sasl: Option<(&str, &str, &str)>) -> ClientConfig {
    let mut c = common::client_config(bootstrap);
    c.set("security.protocol", protocol);
    if protocol.contains("SSL") {
        c.set("ssl.ca.location", pki.ca_file.display().to_string());
    }
    if let Some((mechanism, user, password)) = sasl {
        c.set("sasl.mechanism", mechanism).set("sasl.username", user).set("sasl.password", password);
    }
    c
}

/// Produces `values` to `topic` with the client `c` (acks=all); errors are returned.
async fn produce(c: &ClientConfig, topic: &str, values: &[String]) -> Result<(), String> {
    let producer: FutureProducer = c.clone().set("message.timeout.ms", "8000").create().map_err(|e| e.to_string())?;
    for v in values {
        producer
            .send(FutureRecord::<(), _>::to(topic).payload(v.as_bytes()), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e.to_string())?;
    }
    Ok(())
}

/// Reads `n` values of partition 0 from the beginning with the client `c`.
fn consume(c: &ClientConfig, topic: &str, n: usize) -> Vec<String> {
    let consumer: BaseConsumer = c
        .clone()
        .set("group.id", "unused")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    out
}

/// Whether a client with these settings can fetch metadata (i.e. connect and authenticate).
fn can_connect(c: &ClientConfig) -> Result<i32, String> {
    let consumer: BaseConsumer = c.create().map_err(|e| e.to_string())?;
    let md = consumer.fetch_metadata(None, Duration::from_millis(2500)).map_err(|e| e.to_string())?;
    Ok(md.brokers()[0].port())
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_and_tls_listeners_serve_at_once() {
    let pki = Pki::new();
    let b = secure_broker(&pki, &[]).await;
    let (plain, ssl) = (listener(&b, "PLAINTEXT"), listener(&b, "SSL"));
    let topic = common::topic_name("tls");
    let sent = values("v", 50);
    produce(&client(&plain, &pki, "PLAINTEXT", None), &topic, &sent).await.unwrap();
    let tls = client(&ssl, &pki, "SSL", None);
    // Metadata names the listener the client came in on.
    assert_eq!(can_connect(&tls).unwrap().to_string(), ssl.rsplit(':').next().unwrap());
    assert_eq!(
        can_connect(&client(&plain, &pki, "PLAINTEXT", None)).unwrap().to_string(),
        plain.rsplit(':').next().unwrap()
    );
    assert_eq!(consume(&tls, &topic, 50), sent, "read over TLS what was written in plaintext");
    // And the other way round, with a larger fetch that the TLS path reads from the files.
    let big: Vec<String> = (0..200).map(|i| format!("{i}-{}", "x".repeat(3000))).collect();
    let topic2 = common::topic_name("tls-big");
    produce(&tls, &topic2, &big).await.unwrap();
    assert_eq!(consume(&client(&plain, &pki, "PLAINTEXT", None), &topic2, 200), big);
    assert_eq!(consume(&tls, &topic2, 200), big);
    // A plaintext client on the TLS port gets nowhere; a TLS client that does not trust the CA neither.
    assert!(can_connect(&client(&ssl, &pki, "PLAINTEXT", None)).is_err());
    let mut untrusting = common::client_config(&ssl);
    untrusting.set("security.protocol", "SSL");
    assert!(can_connect(&untrusting).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_mechanisms_accept_the_right_password_and_refuse_wrong_ones() {
    let pki = Pki::new();
    let b = secure_broker(&pki, &[]).await;
    let topic = common::topic_name("sasl");
    let mut expected = Vec::new();
    for protocol in ["SASL_PLAINTEXT", "SASL_SSL"] {
        let addr = listener(&b, protocol);
        for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
            let good = client(&addr, &pki, protocol, Some((mechanism, "alice", "alice-secret")));
            let vals = values(&format!("{protocol}-{mechanism}"), 3);
            produce(&good, &topic, &vals).await.unwrap_or_else(|e| panic!("{protocol} {mechanism}: {e}"));
            expected.extend(vals);
            assert_eq!(consume(&good, &topic, expected.len()), expected, "{protocol} {mechanism}");
            let wrong = client(&addr, &pki, protocol, Some((mechanism, "alice", "not-her-password")));
            assert!(can_connect(&wrong).is_err(), "{protocol} {mechanism}: wrong password refused");
            let nobody = client(&addr, &pki, protocol, Some((mechanism, "mallory", "alice-secret")));
            assert!(can_connect(&nobody).is_err(), "{protocol} {mechanism}: unknown user refused");
        }
    }
    // bob has only a SCRAM-SHA-256 credential: SHA-512 does not know him, PLAIN does.
    let addr = listener(&b, "SASL_PLAINTEXT");
    assert!(can_connect(&client(&addr, &pki, "SASL_PLAINTEXT", Some(("SCRAM-SHA-256", "bob", "bob-secret")))).is_ok());
    assert!(can_connect(&client(&addr, &pki, "SASL_PLAINTEXT", Some(("PLAIN", "bob", "bob-secret")))).is_ok());
    assert!(can_connect(&client(&addr, &pki, "SASL_PLAINTEXT", Some(("SCRAM-SHA-512", "bob", "bob-secret")))).is_err());
}

fn handshake(s: &mut std::net::TcpStream, version: i16, mechanism: &'static str) -> SaslHandshakeResponse {
    let req = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
    raw::roundtrip(s, ApiKey::SaslHandshake, version, &req).expect("handshake response")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_state_machine_over_the_raw_protocol() {
    let pki = Pki::new();
    let b = secure_broker(&pki, &[]).await;
    let sasl = listener(&b, "SASL_PLAINTEXT");
    let plain = listener(&b, "PLAINTEXT");
    tokio::task::spawn_blocking(move || {
        // Anything but ApiVersions before authenticating closes the connection.
        let mut s = raw::connect(&sasl);
        let versions: Option<ApiVersionsResponse> =
            raw::roundtrip(&mut s, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        let versions = versions.expect("ApiVersions is allowed before authentication");
        assert!(versions.api_keys.iter().any(|k| k.api_key == ApiKey::SaslAuthenticate as i16 && k.max_version == 2));
        raw::send(&mut s, ApiKey::Metadata, 12, 1, &MetadataRequest::default());
        assert!(raw::is_closed(&mut s), "Metadata before authentication closes the connection");

        // An unknown mechanism is refused with the list of enabled ones, then the connection closes.
        let mut s = raw::connect(&sasl);
        let hs = handshake(&mut s, 1, "GSSAPI");
        assert_eq!(hs.error_code, 33, "UNSUPPORTED_SASL_MECHANISM");
        let names: Vec<String> = hs.mechanisms.iter().map(|m| m.to_string()).collect();
        assert_eq!(names, ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]);
        assert!(raw::is_closed(&mut s));

        // SaslAuthenticate without a handshake: ILLEGAL_SASL_STATE.
        let mut s = raw::connect(&sasl);
        let r: SaslAuthenticateResponse = raw::roundtrip(
            &mut s,
            ApiKey::SaslAuthenticate,
            1,
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0alice\0alice-secret")),
        )
        .unwrap();
        assert_eq!(r.error_code, 34);

        // Wrong password: SASL_AUTHENTICATION_FAILED with a generic message, then closed.
        let mut s = raw::connect(&sasl);
        let r = raw::sasl_plain(&mut s, "alice", "wrong");
        assert_eq!(r.error_code, 58);
        let msg = r.error_message.unwrap().to_string();
        assert!(msg.contains("invalid credentials") && !msg.contains("wrong"), "{msg}");
        assert!(raw::is_closed(&mut s));

        // Right password: the connection serves requests afterwards.
        let mut s = raw::connect(&sasl);
        let r = raw::sasl_plain(&mut s, "alice", "alice-secret");
        assert_eq!((r.error_code, r.session_lifetime_ms), (0, 0));
        let md: Option<MetadataResponse> = raw::roundtrip(&mut s, ApiKey::Metadata, 12, &MetadataRequest::default());
        assert_eq!(md.unwrap().brokers[0].port.to_string(), sasl.rsplit(':').next().unwrap());

        // SaslHandshake v0: the exchange continues in raw tokens without Kafka headers.
        let mut s = raw::connect(&sasl);
        let hs = handshake(&mut s, 0, "PLAIN");
        assert_eq!(hs.error_code, 0);
        use std::io::Write;
        let token = b"\0alice\0alice-secret";
        s.write_all(&(token.len() as i32).to_be_bytes()).unwrap();
        s.write_all(token).unwrap();
        assert_eq!(raw::read_frame(&mut s).unwrap().len(), 0, "PLAIN's empty reply");
        let md: Option<MetadataResponse> = raw::roundtrip(&mut s, ApiKey::Metadata, 12, &MetadataRequest::default());
        assert!(md.is_some());

        // SASL requests on a PLAINTEXT listener: ILLEGAL_SASL_STATE.
        let mut s = raw::connect(&plain);
        let hs = handshake(&mut s, 1, "PLAIN");
        assert_eq!(hs.error_code, 34);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_unless_clients_reauthenticate() {
    let pki = Pki::new();
    let b = secure_broker(&pki, &[("connections.max.reauth.ms", "1000")]).await;
    let sasl = listener(&b, "SASL_PLAINTEXT");
    let raw_addr = sasl.clone();
    tokio::task::spawn_blocking(move || {
        let mut s = raw::connect(&raw_addr);
        let r = raw::sasl_plain(&mut s, "alice", "alice-secret");
        assert_eq!((r.error_code, r.session_lifetime_ms), (0, 1000));
        let md: Option<MetadataResponse> = raw::roundtrip(&mut s, ApiKey::Metadata, 12, &MetadataRequest::default());
        assert!(md.is_some());
        std::thread::sleep(Duration::from_millis(1200));
        raw::send(&mut s, ApiKey::Metadata, 12, 1, &MetadataRequest::default());
        assert!(raw::is_closed(&mut s), "a request after the session expired closes the connection");
        // Re-authenticating in time keeps the connection.
        let mut s = raw::connect(&raw_addr);
        assert_eq!(raw::sasl_plain(&mut s, "alice", "alice-secret").error_code, 0);
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(raw::sasl_plain(&mut s, "alice", "alice-secret").error_code, 0);
        std::thread::sleep(Duration::from_millis(700));
        let md: Option<MetadataResponse> = raw::roundtrip(&mut s, ApiKey::Metadata, 12, &MetadataRequest::default());
        assert!(md.is_some(), "re-authenticated session still serves");
        // Re-authenticating as somebody else fails and closes.
        let r = raw::sasl_plain(&mut s, "bob", "bob-secret");
        assert_eq!(r.error_code, 58);
        assert!(raw::is_closed(&mut s));
    })
    .await
    .unwrap();
    // librdkafka re-authenticates by itself (KIP-368): one producer outlives several sessions
    // on the same connections (a closed connection would show as a new one). Sessions of 4 s
    // leave librdkafka's re-authentication (at ~90 % of the lifetime) room on a busy machine.
    let b = secure_broker(&pki, &[("connections.max.reauth.ms", "4000")]).await;
    let sasl = listener(&b, "SASL_PLAINTEXT");
    let c = client(&sasl, &pki, "SASL_PLAINTEXT", Some(("SCRAM-SHA-512", "alice", "alice-secret")));
    let topic = common::topic_name("reauth");
    let producer: FutureProducer = c.clone().set("message.timeout.ms", "8000").create().unwrap();
    let connections =
        || b.running.as_ref().unwrap().broker.metrics.connections_total.load(std::sync::atomic::Ordering::Relaxed);
    let mut sent = Vec::new();
    let mut before = None;
    for round in 0..25 {
        let v = format!("r{round}");
        producer.send(FutureRecord::<(), _>::to(&topic).payload(v.as_bytes()), Duration::from_secs(10)).await.unwrap();
        sent.push(v);
        if round == 0 {
            before = Some(connections());
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert_eq!(connections(), before.unwrap(), "no reconnection over two and a half session lifetimes");
    assert_eq!(consume(&c, &topic, sent.len()), sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requested_client_certificates_are_optional() {
    let pki = Pki::new();
    let b = secure_broker(&pki, &[("ssl.client.auth", "requested")]).await;
    let ssl = listener(&b, "SSL");
    assert!(can_connect(&client(&ssl, &pki, "SSL", None)).is_ok(), "no certificate: still served");
    let (cert, key) = pki.client("someone");
    let mut with_cert = client(&ssl, &pki, "SSL", None);
    with_cert
        .set("ssl.certificate.location", cert.display().to_string())
        .set("ssl.key.location", key.display().to_string());
    assert!(can_connect(&with_cert).is_ok());
    // A certificate from another CA is refused even when certificates are only requested.
    let stranger = Pki::new();
    let (cert, key) = stranger.client("stranger");
    let mut foreign = client(&ssl, &pki, "SSL", None);
    foreign
        .set("ssl.certificate.location", cert.display().to_string())
        .set("ssl.key.location", key.display().to_string());
    assert!(can_connect(&foreign).is_err());
}

#[tokio::test]
async fn describe_configs_never_returns_keys_or_passwords() {
    let pki = Pki::new();
    let b = secure_broker(&pki, &[]).await;
    let plain = listener(&b, "PLAINTEXT");
    let req = DescribeConfigsRequest::default().with_include_synonyms(true).with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_static_str("1"))
            .with_configuration_keys(None),
    ]);
    let r: DescribeConfigsResponse = raw::call_async(&plain, ApiKey::DescribeConfigs, 4, req).await;
    let configs = &r.results[0].configs;
    let key = configs.iter().find(|c| c.name.as_str() == "ssl.keystore.key").expect("listed");
    assert!(key.is_sensitive && key.value.is_none(), "{key:?}");
    assert!(key.synonyms.iter().all(|s| s.value.is_none()));
    let chain = configs.iter().find(|c| c.name.as_str() == "ssl.keystore.certificate.chain").expect("listed");
    assert!(chain.value.is_none());
    let listeners = configs.iter().find(|c| c.name.as_str() == "listeners").expect("listed");
    assert!(listeners.value.as_ref().is_some_and(|v| v.contains("SASL_SSL")), "ordinary values are shown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_and_accepted() {
    let pki = Pki::new();
    let b = secure_broker(&pki, &[("ssl.client.auth", "required")]).await;
    let ssl = listener(&b, "SSL");
    let anonymous = client(&ssl, &pki, "SSL", None);
    assert!(can_connect(&anonymous).is_err(), "no client certificate: refused");
    let (cert, key) = pki.client("writer");
    let mut with_cert = client(&ssl, &pki, "SSL", None);
    with_cert
        .set("ssl.certificate.location", cert.display().to_string())
        .set("ssl.key.location", key.display().to_string());
    let topic = common::topic_name("mtls");
    let v = values("m", 5);
    produce(&with_cert, &topic, &v).await.unwrap();
    assert_eq!(consume(&with_cert, &topic, 5), v);
}

/// The salted password a client sends in AlterUserScramCredentials.
fn salted(password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut out = vec![0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        std::num::NonZeroU32::new(iterations).unwrap(),
        salt,
        password.as_bytes(),
        &mut out,
    );
    out
}

fn upsert(name: &str, mechanism: i8, iterations: i32, password: &str) -> ScramCredentialUpsertion {
    let salt = b"0123456789abcdef".to_vec();
    ScramCredentialUpsertion::default()
        .with_name(StrBytes::from_string(name.into()))
        .with_mechanism(mechanism)
        .with_iterations(iterations)
        .with_salted_password(Bytes::from(salted(password, &salt, iterations.max(1) as u32)))
        .with_salt(Bytes::from(salt))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_credentials_are_managed_through_the_kafka_apis_and_persist() {
    let pki = Pki::new();
    let b = secure_broker(&pki, &[]).await;
    let plain = listener(&b, "PLAINTEXT");
    let sasl = listener(&b, "SASL_PLAINTEXT");
    let alter = |deletions: Vec<ScramCredentialDeletion>, upsertions: Vec<ScramCredentialUpsertion>| {
        let req = AlterUserScramCredentialsRequest::default().with_deletions(deletions).with_upsertions(upsertions);
        raw::call_async::<_, AlterUserScramCredentialsResponse>(&plain, ApiKey::AlterUserScramCredentials, 0, req)
    };
    let r = alter(vec![], vec![upsert("carol", 1, 8192, "carol-secret")]).await;
    assert_eq!(r.results[0].error_code, 0, "{:?}", r.results[0].error_message);
    let carol = client(&sasl, &pki, "SASL_PLAINTEXT", Some(("SCRAM-SHA-256", "carol", "carol-secret")));
    assert!(can_connect(&carol).is_ok(), "a user created with AlterUserScramCredentials logs in");
    assert!(can_connect(&client(&sasl, &pki, "SASL_PLAINTEXT", Some(("PLAIN", "carol", "carol-secret")))).is_ok());

    // Errors, each on its own user.
    let r = alter(
        vec![ScramCredentialDeletion::default().with_name(StrBytes::from_static_str("nobody")).with_mechanism(1)],
        vec![upsert("few", 1, 100, "x"), upsert("odd", 9, 4096, "x"), upsert("", 1, 4096, "x")],
    )
    .await;
    let codes: Vec<(String, i16)> = r.results.iter().map(|r| (r.user.to_string(), r.error_code)).collect();
    assert!(codes.contains(&("nobody".into(), 91)), "RESOURCE_NOT_FOUND: {codes:?}");
    assert!(codes.contains(&("few".into(), 93)), "UNACCEPTABLE_CREDENTIAL: {codes:?}");
    assert!(codes.contains(&("odd".into(), 33)), "UNSUPPORTED_SASL_MECHANISM: {codes:?}");
    assert!(codes.contains(&("".into(), 93)), "empty user: {codes:?}");

    let describe = |users: Option<Vec<&str>>| {
        let users = users
            .map(|u| u.iter().map(|n| UserName::default().with_name(StrBytes::from_string(n.to_string()))).collect());
        let req = DescribeUserScramCredentialsRequest::default().with_users(users);
        raw::call_async::<_, DescribeUserScramCredentialsResponse>(&plain, ApiKey::DescribeUserScramCredentials, 0, req)
    };
    let d = describe(None).await;
    let all: Vec<(String, Vec<(i8, i32)>)> = d
        .results
        .iter()
        .map(|r| (r.user.to_string(), r.credential_infos.iter().map(|c| (c.mechanism, c.iterations)).collect()))
        .collect();
    assert_eq!(
        all,
        [
            ("alice".to_string(), vec![(1, 4096), (2, 8192)]),
            ("bob".to_string(), vec![(1, 4096)]),
            ("carol".to_string(), vec![(1, 8192)])
        ]
    );
    let d = describe(Some(vec!["carol", "ghost"])).await;
    assert_eq!(d.results[0].error_code, 0);
    assert_eq!(d.results[1].error_code, 91);

    // Deleting carol's only credential locks her out.
    let r = alter(
        vec![ScramCredentialDeletion::default().with_name(StrBytes::from_static_str("carol")).with_mechanism(1)],
        vec![],
    )
    .await;
    assert_eq!(r.results[0].error_code, 0);
    assert!(can_connect(&carol).is_err());

    // The store is in the metadata log: after a restart alice and bob are there, carol is not.
    let b = b.restart(&[]).await;
    let plain = b.running.as_ref().unwrap().addr.to_string();
    let req = DescribeUserScramCredentialsRequest::default().with_users(None);
    let d: DescribeUserScramCredentialsResponse =
        raw::call_async(&plain, ApiKey::DescribeUserScramCredentials, 0, req).await;
    let users: Vec<String> = d.results.iter().map(|r| r.user.to_string()).collect();
    assert_eq!(users, ["alice", "bob"]);
}

#[test]
fn add_scram_creates_users_once_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let spec = "SCRAM-SHA-256=[name=admin,password=admin-secret]";
    let added =
        |b: &common::BinaryBroker| b.log.lock().unwrap().iter().filter(|l| l.contains("added SCRAM user")).count();
    for restart in 0..2 {
        let b = common::BinaryBroker::start_on("SASL_PLAINTEXT://127.0.0.1:0", dir.path(), &["--add-scram", spec]);
        // The first start adds the user; the second finds the same password and leaves it.
        assert_eq!(added(&b), 1 - restart, "start {restart}");
        let mut s = raw::connect(&b.bootstrap);
        assert_eq!(raw::sasl_plain(&mut s, "admin", "admin-secret").error_code, 0);
        let mut s = raw::connect(&b.bootstrap);
        assert_eq!(raw::sasl_plain(&mut s, "admin", "admin-secret!").error_code, 58);
        assert!(raw::is_closed(&mut s));
        let logged =
            |b: &common::BinaryBroker| b.log.lock().unwrap().iter().any(|l| l.contains("failed authentication"));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !logged(&b) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(logged(&b), "the failure is logged");
        let log = b.log.lock().unwrap().clone();
        assert!(!log.iter().any(|l| l.contains("admin-secret")), "no secret in the log");
        assert!(b.terminate().success());
    }
    // The metadata log (the quorum's log and snapshot) keeps salted keys, never the password.
    let mut metadata = Vec::new();
    for f in std::fs::read_dir(dir.path().join("__cluster_metadata-0")).unwrap() {
        metadata.extend(std::fs::read(f.unwrap().path()).unwrap());
    }
    assert!(String::from_utf8_lossy(&metadata).contains("ScramCredential"));
    assert!(!metadata.windows(b"admin-secret".len()).any(|w| w == b"admin-secret"));
}
