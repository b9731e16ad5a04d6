"""Transactions from Python clients against Weir: confluent-kafka and kafka-python
transactional producers commit and abort; read_committed consumers see only committed data,
read_uncommitted consumers see both."""
import sys
import uuid

BOOTSTRAP = sys.argv[1]
N = 300


def values(prefix):
    return [f"{prefix}-{i}".encode() for i in range(N)]


def create_topic(partitions):
    from confluent_kafka.admin import AdminClient, NewTopic
    topic = f"py-txn-{uuid.uuid4().hex}"
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic].result(timeout=30)
    return topic


def read_all(topic, partitions, isolation):
    """Every value visible under `isolation`, read to the end of each partition."""
    from confluent_kafka import Consumer, TopicPartition, KafkaError
    c = Consumer({
        "bootstrap.servers": BOOTSTRAP,
        "group.id": "unused",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "isolation.level": isolation,
    })
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got, at_end = [], set()
    while len(at_end) < partitions:
        msgs = c.consume(500, timeout=10)
        if not msgs:
            raise AssertionError(f"{topic}: no end of partition reached ({isolation})")
        for m in msgs:
            if m.error() is not None:
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                at_end.add(m.partition())
            else:
                got.append(m.value())
    c.close()
    return sorted(got)


def confluent():
    from confluent_kafka import Producer
    topic = create_topic(3)
    p = Producer({"bootstrap.servers": BOOTSTRAP, "transactional.id": f"py-{uuid.uuid4().hex}"})
    p.init_transactions(30)
    for prefix, commit in (("c1", True), ("a2", False), ("c3", True)):
        p.begin_transaction()
        for i, v in enumerate(values(prefix)):
            p.produce(topic, value=v, partition=i % 3)
        if commit:
            p.commit_transaction(30)
        else:
            p.flush(30)
            p.abort_transaction(30)
    committed = read_all(topic, 3, "read_committed")
    assert committed == sorted(values("c1") + values("c3")), "confluent-kafka: read_committed sees aborted data"
    everything = read_all(topic, 3, "read_uncommitted")
    assert everything == sorted(values("c1") + values("a2") + values("c3")), "confluent-kafka: read_uncommitted"
    print(f"confluent-kafka transactions: {len(committed)} committed visible, {N} aborted hidden")


def kafka_python():
    from kafka import KafkaProducer
    topic = create_topic(2)
    p = KafkaProducer(bootstrap_servers=BOOTSTRAP, transactional_id=f"kp-{uuid.uuid4().hex}")
    p.init_transactions()
    for prefix, commit in (("k1", True), ("k2", False)):
        p.begin_transaction()
        for i, v in enumerate(values(prefix)):
            p.send(topic, value=v, partition=i % 2)
        p.flush()
        if commit:
            p.commit_transaction()
        else:
            p.abort_transaction()
    p.close()
    committed = read_all(topic, 2, "read_committed")
    assert committed == sorted(values("k1")), "kafka-python: read_committed sees aborted data"
    print(f"kafka-python transactions: {len(committed)} committed visible, {N} aborted hidden")


confluent()
kafka_python()
