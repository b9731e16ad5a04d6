"""confluent-kafka and kafka-python over SASL_SSL with SCRAM: a round trip with the right
password, a refusal with a wrong one. Usage: python_security.py HOST:PORT CA_FILE"""
import sys
import uuid

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient

bootstrap, ca = sys.argv[1], sys.argv[2]


def conf(mechanism, password):
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": ca,
        "sasl.mechanism": mechanism,
        "sasl.username": "alice",
        "sasl.password": password,
    }


for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"):
    topic = f"py-sec-{uuid.uuid4().hex}"
    sent = [f"{mechanism}-{i}".encode() for i in range(100)]
    p = Producer(conf(mechanism, "alice-secret"))
    for v in sent:
        p.produce(topic, v)
    assert p.flush(30) == 0, "all delivered"
    c = Consumer({**conf(mechanism, "alice-secret"), "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = []
    while len(got) < len(sent):
        m = c.poll(20)
        assert m is not None, f"timed out after {len(got)} records"
        assert m.error() is None, m.error()
        got.append(m.value())
    c.close()
    assert got == sent, "consumed what was produced"
    print(f"confluent-kafka SASL_SSL {mechanism}: 100 records round-tripped")

admin = AdminClient(conf("SCRAM-SHA-256", "wrong"))
try:
    admin.list_topics(timeout=5)
    raise SystemExit("confluent-kafka: a wrong password was accepted")
except KafkaException:
    print("confluent-kafka SASL_SSL wrong password: refused")

import ssl  # noqa: E402

from kafka import KafkaConsumer, KafkaProducer  # noqa: E402

context = ssl.create_default_context(cafile=ca)
common = dict(
    bootstrap_servers=bootstrap,
    security_protocol="SASL_SSL",
    ssl_context=context,
    sasl_mechanism="SCRAM-SHA-512",
    sasl_plain_username="alice",
    sasl_plain_password="alice-secret",
)
topic = f"kp-sec-{uuid.uuid4().hex}"
producer = KafkaProducer(**common)
for i in range(50):
    producer.send(topic, f"kp-{i}".encode())
producer.flush(30)
producer.close()
consumer = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=15000, **common)
got = [m.value for m in consumer]
consumer.close()
assert got == [f"kp-{i}".encode() for i in range(50)], f"kafka-python consumed {len(got)} records"
print("kafka-python SASL_SSL SCRAM-SHA-512: 50 records round-tripped")
print("python security: ok")
