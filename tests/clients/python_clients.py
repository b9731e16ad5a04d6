"""confluent-kafka and kafka-python against Weir: produce, then assign-and-consume, checking data."""
import sys
import uuid

BOOTSTRAP = sys.argv[1]
N = 2000


def expected(prefix):
    return [(f"k{i}".encode(), f"{prefix}-{i}".encode()) for i in range(N)]


def confluent():
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
    import confluent_kafka
    print("confluent-kafka", confluent_kafka.version(), "librdkafka", confluent_kafka.libversion()[0])
    topic = f"py-confluent-{uuid.uuid4().hex}"
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(timeout=30)
    assert topic in admin.list_topics(timeout=10).topics
    p = Producer({"bootstrap.servers": BOOTSTRAP, "compression.type": "lz4", "acks": "all"})
    errors = []
    for k, v in expected("c"):
        p.produce(topic, key=k, value=v, partition=0, on_delivery=lambda e, m: e and errors.append(e))
    assert p.flush(30) == 0 and not errors, errors
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "unused", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    while len(got) < N:
        msgs = c.consume(500, timeout=10)
        if not msgs:
            break
        for m in msgs:
            assert m.error() is None, m.error()
            got.append((m.key(), m.value(), m.offset()))
    c.close()
    assert [(k, v) for k, v, _ in got] == expected("c"), "confluent-kafka: data differs"
    assert [o for _, _, o in got] == list(range(N)), "confluent-kafka: offsets not dense"
    print(f"confluent-kafka: {N} records round-tripped")


def kafka_python():
    import kafka
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic
    print("kafka-python", kafka.__version__)
    topic = f"py-kafka-python-{uuid.uuid4().hex}"
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    assert topic in admin.list_topics()
    p = KafkaProducer(bootstrap_servers=BOOTSTRAP, compression_type="gzip", acks="all")
    futures = [p.send(topic, key=k, value=v) for k, v in expected("k")]
    offsets = [f.get(timeout=30).offset for f in futures]
    assert offsets == list(range(N)), "kafka-python: acknowledged offsets not dense"
    p.close()
    c = KafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False, consumer_timeout_ms=10000)
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    got = []
    for m in c:
        got.append((m.key, m.value))
        if len(got) == N:
            break
    c.close()
    assert got == expected("k"), "kafka-python: data differs"
    print(f"kafka-python: {N} records round-tripped")


confluent()
kafka_python()
print("python clients: ok")
