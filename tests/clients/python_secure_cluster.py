"""confluent-kafka against a secure three-broker Weir cluster over SASL_SSL (SCRAM-SHA-512):
an RF=3 topic stays fully in sync under an idempotent acks=all producer (replication runs
over the brokers' own SASL_SSL links) and every acknowledged record reads back once; a share
group (ShareConsumer) reads a topic led by all three brokers once, its state kept by share
coordinators that the partition leaders reach over the same links; it also creates the RF=3
topic kcat then writes to.
Usage: python3 python_secure_cluster.py BOOTSTRAP CA_FILE"""
import sys
import time

from confluent_kafka import Consumer, Producer, ShareConsumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap, ca = sys.argv[1], sys.argv[2]
secure = {
    "bootstrap.servers": bootstrap,
    "security.protocol": "SASL_SSL",
    "ssl.ca.location": ca,
    "sasl.mechanisms": "SCRAM-SHA-512",
    "sasl.username": "admin",
    "sasl.password": "admin-secret",
}


def isr(admin, topic):
    md = admin.list_topics(topic, timeout=10)
    return {p: sorted(m.isrs) for p, m in md.topics[topic].partitions.items()}


admin = AdminClient(secure)
for t in ("secure-py", "secure-kcat"):
    admin.create_topics([NewTopic(t, 3, 3, config={"min.insync.replicas": "2"})])[t].result(30)
deadline = time.time() + 30
while any(len(v) < 3 for v in isr(admin, "secure-py").values()):
    assert time.time() < deadline, f"not in sync: {isr(admin, 'secure-py')}"
    time.sleep(0.2)

producer = Producer({**secure, "enable.idempotence": True, "acks": "all", "linger.ms": 5})
acked = []
start = time.time()
i = 0
# longer than replica.lag.time.max.ms (3 s): the followers keep up over SASL_SSL
while time.time() - start < 7:
    producer.produce("secure-py", value=f"py-{i}".encode(), partition=i % 3,
                     on_delivery=lambda err, m: acked.append(m.value().decode()) if err is None else None)
    i += 1
    if i % 100 == 0:
        producer.flush(30)
producer.flush(30)
assert len(acked) == i, f"{len(acked)} of {i} acknowledged"
now = isr(admin, "secure-py")
assert all(len(v) == 3 for v in now.values()), f"a follower left the ISR: {now}"

consumer = Consumer({**secure, "group.id": "secure-py", "auto.offset.reset": "earliest", "enable.auto.commit": False})
consumer.assign([TopicPartition("secure-py", p, 0) for p in range(3)])
got = []
deadline = time.time() + 30
while len(got) < len(acked) and time.time() < deadline:
    m = consumer.poll(1.0)
    if m is not None and m.error() is None:
        got.append(m.value().decode())
consumer.close()
assert sorted(got) == sorted(acked), f"read {len(got)} of {len(acked)}, or duplicates"
print(f"confluent-kafka: {len(acked)} acks=all records over SASL_SSL, ISR stayed {now[0]}, all read back once")


# share groups: each partition's leader asks the share coordinator of (group, partition) for
# its state and writes acknowledgements to it; with nine partitions over three leaders and
# the share-state topic spread over three brokers, some of those calls cross the SASL_SSL
# links (all nine staying local has odds of 3^-9)
admin.create_topics([NewTopic("secure-share", 9, 3)])["secure-share"].result(30)
share = ShareConsumer({**secure, "group.id": "secure-share"})
share.subscribe(["secure-share"])
for m in share.poll(3):
    assert False, f"nothing was produced yet, got {m.value()}"
values = [f"share-{i}" for i in range(90)]
p = Producer({**secure, "acks": "all"})
for i, v in enumerate(values):
    p.produce("secure-share", value=v.encode(), partition=i % 9)
assert p.flush(30) == 0, "records left unsent"
shared = []
deadline = time.time() + 30
while len(shared) < len(values) and time.time() < deadline:
    for m in share.poll(0.5):
        assert m.error() is None, m.error()
        shared.append(m.value().decode())
# librdkafka 2.16 does not send the last poll's implicit acknowledgements on close (its
# ShareAcknowledge on leave carries none): commit them first
share.commit_sync()
share.close()
assert sorted(shared) == sorted(values), f"share group read {len(shared)} of {len(values)}, or duplicates"
again = ShareConsumer({**secure, "group.id": "secure-share"})
again.subscribe(["secure-share"])
deadline = time.time() + 5
while time.time() < deadline:
    left = again.poll(0.5)
    assert not left, f"acknowledged records came back: {[m.value() for m in left]}"
again.close()
print(f"confluent-kafka ShareConsumer: {len(values)} records once from 9 partitions over 3 leaders, acknowledgements kept")
