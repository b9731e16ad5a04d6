//! Shared helpers for integration tests: brokers in-process or as the built binary, and
//! rdkafka clients pointed at them.
#![allow(dead_code)]

pub mod cluster;
pub mod pki;
pub mod proxy;
pub mod txn;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::{Message, Offset, TopicPartitionList};
use weir::config::BrokerConfig;

/// One HTTP GET (the metrics endpoint answers one request per connection): the whole reply.
pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: weir\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// A unique topic name for this test run.
pub fn topic_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Config for a broker on an ephemeral port with its data in `dir`.
pub fn config(dir: &Path, extra: &[(&str, &str)]) -> BrokerConfig {
    let mut layer =
        vec![("listeners".to_string(), "127.0.0.1:0".to_string()), ("log.dirs".to_string(), dir.display().to_string())];
    layer.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    BrokerConfig::from_layers([layer]).expect("valid test config")
}

/// A broker running inside the test process.
pub struct TestBroker {
    pub running: Option<weir::RunningBroker>,
    pub dir: tempfile::TempDir,
    pub bootstrap: String,
}

impl TestBroker {
    pub async fn start(extra: &[(&str, &str)]) -> TestBroker {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, extra).await
    }

    pub async fn start_in(dir: tempfile::TempDir, extra: &[(&str, &str)]) -> TestBroker {
        let config = config(dir.path(), extra);
        Self::start_with(dir, config).await
    }

    /// Starts a broker with a prepared configuration (its `log.dirs` should be `dir`).
    pub async fn start_with(dir: tempfile::TempDir, config: BrokerConfig) -> TestBroker {
        // Broker logs go to the test's captured output, shown when a test fails.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_ansi(false)
            .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .try_init();
        let running = weir::start(config).await.expect("broker starts");
        let bootstrap = running.addr.to_string();
        TestBroker { running: Some(running), dir, bootstrap }
    }

    /// Clean shutdown, then start again on the same data directory.
    pub async fn restart(mut self, extra: &[(&str, &str)]) -> TestBroker {
        self.stop().await;
        Self::start_in(self.dir, extra).await
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await.expect("clean shutdown");
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

/// The built `weir` binary running as a child process.
pub struct BinaryBroker {
    pub child: Child,
    pub bootstrap: String,
    /// Every line the broker has logged so far.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    ready: Option<std::sync::mpsc::Receiver<String>>,
}

impl BinaryBroker {
    pub fn start(dir: &Path, extra: &[&str]) -> BinaryBroker {
        Self::start_on("127.0.0.1:0", dir, extra)
    }

    /// A port that is free now, for a broker that must come back on the same address.
    pub fn free_addr() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    }

    pub fn start_on(listen: &str, dir: &Path, extra: &[&str]) -> BinaryBroker {
        let mut b = Self::spawn_on(listen, dir, extra);
        b.wait_ready(Duration::from_secs(30));
        b
    }

    /// Starts the binary without waiting for it to listen (a cluster's brokers wait for each
    /// other); `wait_ready` waits.
    pub fn spawn_on(listen: &str, dir: &Path, extra: &[&str]) -> BinaryBroker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["--listen", listen, "--data-dir"])
            .arg(dir)
            .args(extra)
            .env("RUST_LOG", std::env::var("WEIR_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weir");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        // what the process says on stderr (why it refused to start) is part of its log
        let errors = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[weir stderr] {line}");
                if let Ok(mut l) = errors.lock() {
                    l.push(line);
                }
            }
        });
        let lines = log.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("[weir] {line}");
                if let Ok(mut l) = lines.lock() {
                    l.push(line.clone());
                }
                if !sent && line.contains("weir listening") {
                    if let Some(addr) = line.split("addr=").nth(1) {
                        let addr = addr.split_whitespace().next().unwrap_or_default().to_string();
                        let _ = tx.send(addr);
                        sent = true;
                    }
                }
            }
        });
        BinaryBroker { child, bootstrap: String::new(), log, ready: Some(rx) }
    }

    /// Waits until the broker reports its client address (in `bootstrap`).
    pub fn wait_ready(&mut self, timeout: Duration) {
        if let Some(rx) = self.ready.take() {
            self.bootstrap = rx.recv_timeout(timeout).expect("weir reports its address");
        }
    }

    /// Waits up to `timeout` for the broker to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether a line the broker logged so far contains `text`.
    /// The lines logged so far that contain `text`.
    pub fn lines_with(&self, text: &str) -> Vec<String> {
        self.log.lock().map(|l| l.iter().filter(|line| line.contains(text)).cloned().collect()).unwrap_or_default()
    }

    pub fn logged(&self, text: &str) -> bool {
        self.log.lock().is_ok_and(|l| l.iter().any(|line| line.contains(text)))
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    /// Sends `signal` to the broker process (SIGSTOP / SIGCONT to freeze it in a test).
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        self.child.wait().expect("wait")
    }
}

impl Drop for BinaryBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Settings every client of a test binary adds, for a binary whose brokers all require them
/// (TLS, SASL); set once before the first client.
pub static CLIENT_SECURITY: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();

pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap).set("broker.address.family", "v4").set("log_level", "4");
    for (k, v) in CLIENT_SECURITY.get().into_iter().flatten() {
        c.set(k, v);
    }
    c
}

pub fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut c = client_config(bootstrap);
    c.set("linger.ms", "5").set("message.timeout.ms", "30000");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("producer")
}

pub fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    client_config(bootstrap).create().expect("admin client")
}

pub async fn create_topic(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let res = admin(bootstrap).create_topics(&[t], &AdminOptions::new()).await.expect("create_topics request");
    res[0].as_ref().expect("topic created");
}

/// A consumer assigned (no group) to `partitions` of `topic` from `offset`.
pub fn assigned_consumer(
    bootstrap: &str,
    topic: &str,
    partitions: &[i32],
    offset: Offset,
    extra: &[(&str, &str)],
) -> BaseConsumer {
    let mut c = client_config(bootstrap);
    c.set("enable.auto.commit", "false").set("group.id", "unused-assign-only").set("enable.partition.eof", "false");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    let consumer: BaseConsumer = c.create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition_offset(topic, *p, offset).expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    consumer
}

/// Polls until `n` messages arrived or `timeout` passed; returns what arrived. Any consumer
/// error fails the test.
pub fn consume_n(consumer: &BaseConsumer, n: usize, timeout: Duration) -> Vec<OwnedMessage> {
    consume_n_tolerating(consumer, n, timeout, &[])
}

/// [`consume_n`], where the errors in `tolerated` are expected (librdkafka reports a broker it
/// cannot connect to — one just killed — as an error event and goes on).
pub fn consume_n_tolerating(
    consumer: &BaseConsumer,
    n: usize,
    timeout: Duration,
    tolerated: &[rdkafka::types::RDKafkaErrorCode],
) -> Vec<OwnedMessage> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::with_capacity(n);
    while out.len() < n && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(m.detach()),
            Some(Err(e)) if e.rdkafka_error_code().is_some_and(|c| tolerated.contains(&c)) => {}
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
    out
}

/// Waits (bounded) until `cond` holds.
pub async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

pub fn value_of(m: &OwnedMessage) -> Option<Vec<u8>> {
    m.payload().map(<[u8]>::to_vec)
}

/// A batch of `n` records (values `seq-<sequence>`) from producer `pid`/`epoch` starting at
/// sequence `seq`, encoded by kafka-protocol: for tests that control producer ids themselves.
pub fn producer_batch(pid: i64, epoch: i16, seq: i32, n: i32, transactional: bool) -> bytes::Bytes {
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i64::from(i),
            sequence: seq + i,
            timestamp: weir::broker::now_ms(),
            key: None,
            value: Some(bytes::Bytes::from(format!("seq-{}", seq + i))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::Lz4 };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("encodable batch");
    buf.freeze()
}

/// A producer context recording acknowledged records (partition, offset, the number in the
/// payload) and failed deliveries.
#[derive(Clone, Default)]
pub struct Acks {
    pub acked: std::sync::Arc<std::sync::Mutex<Vec<(i32, i64, u64)>>>,
    pub failed: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl rdkafka::ClientContext for Acks {}

impl rdkafka::producer::ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                let n: u64 = std::str::from_utf8(m.payload().unwrap_or_default()).unwrap_or("0").parse().unwrap_or(0);
                self.acked.lock().unwrap().push((m.partition(), m.offset(), n));
            }
            Err((e, _)) => self.failed.lock().unwrap().push(e.to_string()),
        }
    }
}

/// A small deterministic generator for randomised tests, seeded from the clock; the seed is
/// printed so a failing run can be understood.
pub struct Lcg(u64);

impl Lcg {
    pub fn seeded(test: &str) -> Lcg {
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        eprintln!("{test} seed {seed}");
        Lcg(seed)
    }

    /// A number in `0..below`.
    pub fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % below.max(1)
    }
}

/// A bare Kafka protocol client for requests rdkafka will not send.
pub mod raw {
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
    use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    pub fn connect(bootstrap: &str) -> TcpStream {
        let s = TcpStream::connect(bootstrap).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// Sends one encoded request frame.
    pub fn send<Req: Encodable>(s: &mut TcpStream, key: ApiKey, version: i16, correlation_id: i32, req: &Req) {
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("raw-test")));
        let mut body = BytesMut::new();
        header.encode(&mut body, key.request_header_version(version)).unwrap();
        req.encode(&mut body, version).unwrap();
        s.write_all(&(body.len() as i32).to_be_bytes()).unwrap();
        s.write_all(&body).unwrap();
    }

    /// Reads one response frame; `None` when the broker closed the connection.
    pub fn read_frame(s: &mut TcpStream) -> Option<Bytes> {
        let mut size = [0u8; 4];
        s.read_exact(&mut size).ok()?;
        let mut buf = vec![0u8; i32::from_be_bytes(size) as usize];
        s.read_exact(&mut buf).ok()?;
        Some(Bytes::from(buf))
    }

    /// Produces one batch to partition 0 of `topic` with acks=all; returns (error code, base
    /// offset).
    pub fn produce(bootstrap: &str, topic: &str, records: Bytes) -> (i16, i64) {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
        let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(records))]),
        ]);
        let r: ProduceResponse = call(bootstrap, ApiKey::Produce, 9, &req);
        let p = &r.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    }

    /// One request/response round trip.
    pub fn call<Req: Encodable, Resp: Decodable + HeaderVersion>(
        bootstrap: &str,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Resp {
        let mut s = connect(bootstrap);
        send(&mut s, key, version, 7, req);
        let mut frame = read_frame(&mut s).expect("response");
        let header = ResponseHeader::decode(&mut frame, Resp::header_version(version)).unwrap();
        assert_eq!(header.correlation_id, 7);
        Resp::decode(&mut frame, version).expect("decodable response")
    }

    /// A partition's end offset (ListOffsets latest: the high watermark).
    pub fn end_offset(bootstrap: &str, topic: &str, partition: i32) -> i64 {
        use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
        use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, ListOffsetsResponse, TopicName};
        let req =
            ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_timestamp(-1)])]);
        let r: ListOffsetsResponse = call(bootstrap, ApiKey::ListOffsets, 7, &req);
        r.topics[0].partitions[0].offset
    }

    /// [`call`] from async tests, on a blocking thread.
    pub async fn call_async<Req, Resp>(bootstrap: &str, key: ApiKey, version: i16, req: Req) -> Resp
    where
        Req: Encodable + Send + 'static,
        Resp: Decodable + HeaderVersion + Send + 'static,
    {
        let b = bootstrap.to_string();
        tokio::task::spawn_blocking(move || call(&b, key, version, &req)).await.expect("raw call")
    }

    /// One round trip on an open connection.
    pub fn roundtrip<Req: Encodable, Resp: Decodable + HeaderVersion>(
        s: &mut TcpStream,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Option<Resp> {
        send(s, key, version, 11, req);
        let mut frame = read_frame(s)?;
        let header = ResponseHeader::decode(&mut frame, Resp::header_version(version)).ok()?;
        assert_eq!(header.correlation_id, 11);
        Some(Resp::decode(&mut frame, version).expect("decodable response"))
    }

    /// SASL/PLAIN login (SaslHandshake v1 + SaslAuthenticate v2); returns the SaslAuthenticate
    /// response.
    pub fn sasl_plain(
        s: &mut TcpStream,
        user: &str,
        password: &str,
    ) -> kafka_protocol::messages::SaslAuthenticateResponse {
        use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest, SaslHandshakeResponse};
        let hs: SaslHandshakeResponse = roundtrip(
            s,
            ApiKey::SaslHandshake,
            1,
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        )
        .expect("handshake response");
        assert_eq!(hs.error_code, 0, "PLAIN enabled");
        let token = format!("\0{user}\0{password}");
        roundtrip(
            s,
            ApiKey::SaslAuthenticate,
            2,
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token.into_bytes())),
        )
        .expect("authenticate response")
    }

    /// True when the broker closes the connection (EOF) within the read timeout.
    /// DescribeConfigs (v4) of every config of one resource: `(name, value, source)`.
    pub async fn describe_configs(bootstrap: &str, resource_type: i8, name: &str) -> Vec<(String, String, i8)> {
        use kafka_protocol::messages::{describe_configs_request, DescribeConfigsRequest, DescribeConfigsResponse};
        let req = DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(StrBytes::from_string(name.to_string()))
                .with_configuration_keys(None),
        ]);
        let r: DescribeConfigsResponse = call_async(bootstrap, ApiKey::DescribeConfigs, 4, req).await;
        r.results[0]
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string()).unwrap_or_default(), c.config_source))
            .collect()
    }

    /// A new KIP-848 member joining `group` subscribed to `topic` (ConsumerGroupHeartbeat v0,
    /// member epoch 0).
    pub fn join_consumer_group(
        bootstrap: &str,
        group: &str,
        topic: &str,
    ) -> kafka_protocol::messages::ConsumerGroupHeartbeatResponse {
        use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, GroupId, TopicName};
        let s = |v: &str| StrBytes::from_string(v.to_string());
        call(
            bootstrap,
            ApiKey::ConsumerGroupHeartbeat,
            0,
            &ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_member_epoch(0)
                .with_rebalance_timeout_ms(30_000)
                .with_subscribed_topic_names(Some(vec![TopicName(s(topic))]))
                .with_topic_partitions(Some(vec![])),
        )
    }

    /// True when an ApiVersions request on `s` is answered (false when the broker closed it).
    pub fn answers(s: &mut TcpStream) -> bool {
        use kafka_protocol::messages::ApiVersionsRequest;
        let header = RequestHeader::default().with_request_api_key(ApiKey::ApiVersions as i16).with_correlation_id(1);
        let mut body = bytes::BytesMut::new();
        header.encode(&mut body, 1).unwrap();
        ApiVersionsRequest::default().encode(&mut body, 0).unwrap();
        let sent = s.write_all(&(body.len() as i32).to_be_bytes()).and_then(|_| s.write_all(&body));
        sent.is_ok() && read_frame(s).is_some()
    }

    pub fn is_closed(s: &mut TcpStream) -> bool {
        let mut b = [0u8; 1];
        matches!(s.read(&mut b), Ok(0))
            || matches!(s.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
    }
}
