"""Group consumers from confluent-kafka and kafka-python against Weir: subscribe, consume,
commit, close; a re-subscribed consumer of the same group resumes after the committed offsets."""
import sys
import time
import uuid

BOOTSTRAP = sys.argv[1]
N = 600


def produce(topic):
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(timeout=30)
    p = Producer({"bootstrap.servers": BOOTSTRAP})
    for i in range(N):
        p.produce(topic, value=f"v{i}".encode(), partition=i % 3)
    assert p.flush(30) == 0


def confluent_group(topic, group):
    from confluent_kafka import Consumer

    def consume(limit):
        c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": group, "auto.offset.reset": "earliest",
                      "enable.auto.commit": False})
        c.subscribe([topic])
        got = []
        deadline = time.time() + 60
        while len(got) < limit and time.time() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, m.error()
            got.append(m.value().decode())
        c.commit(asynchronous=False)
        c.close()
        return got

    first = consume(N // 2)
    rest = consume(N - len(first))
    assert sorted(first + rest, key=lambda v: int(v[1:])) == [f"v{i}" for i in range(N)], "confluent group: each record once"
    print(f"confluent-kafka group: {len(first)} + {len(rest)} records, resumed from committed offsets")


def kafka_python_group(topic, group):
    from kafka import KafkaConsumer

    def consume(limit):
        c = KafkaConsumer(topic, bootstrap_servers=BOOTSTRAP, group_id=group, auto_offset_reset="earliest",
                          enable_auto_commit=False, consumer_timeout_ms=15000)
        got = []
        for m in c:
            got.append(m.value.decode())
            if len(got) == limit:
                break
        c.commit()
        c.close()
        return got

    first = consume(N // 2)
    rest = consume(N - len(first))
    assert sorted(first + rest, key=lambda v: int(v[1:])) == [f"v{i}" for i in range(N)], "kafka-python group: each record once"
    print(f"kafka-python group: {len(first)} + {len(rest)} records, resumed from committed offsets")


topic = f"py-groups-{uuid.uuid4().hex}"
produce(topic)
confluent_group(topic, f"cg-{uuid.uuid4().hex}")
kafka_python_group(topic, f"kg-{uuid.uuid4().hex}")
print("python group consumers: ok")
