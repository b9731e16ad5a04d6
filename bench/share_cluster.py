"""Share groups on one broker and on a cluster (issue 33): producers and share consumers of one
share group running at once, as a client suite's share-consumer concurrency scenarios do; the
time from the first record produced until every record was read (each exactly once) is the
figure. confluent-kafka's ShareConsumer (librdkafka 2.16) in threads, acks=all producers.

Usage: python3 bench/share_cluster.py --bootstrap B --label L [--records N] [--producers P]
       [--consumers C] [--partitions K] [--replication-factor R]
Prints one JSON line (kind share-cluster)."""
import argparse
import json
import threading
import time
import uuid

from confluent_kafka import Producer, ShareConsumer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType

ap = argparse.ArgumentParser()
ap.add_argument("--bootstrap", required=True)
ap.add_argument("--label", required=True)
ap.add_argument("--records", type=int, default=20000)
ap.add_argument("--producers", type=int, default=1)
ap.add_argument("--consumers", type=int, default=1)
ap.add_argument("--partitions", type=int, default=3)
ap.add_argument("--replication-factor", type=int, default=1)
a = ap.parse_args()

topic = f"share-bench-{uuid.uuid4().hex[:8]}"
group = f"share-bench-{uuid.uuid4().hex[:8]}"
admin = AdminClient({"bootstrap.servers": a.bootstrap})
admin.create_topics([NewTopic(topic, a.partitions, a.replication_factor)])[topic].result(30)
# the group reads the topic from its start (a share group starts at the latest offset otherwise)
earliest = ConfigEntry("share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET)
for f in admin.incremental_alter_configs([ConfigResource(ResourceType.GROUP, group, incremental_configs=[earliest])]).values():
    f.result(30)
time.sleep(1)  # leaders known everywhere

seen = {}
lock = threading.Lock()
done = threading.Event()
first_read = [None]
# one record per partition first, read before the clock starts: the consumers have joined and
# been assigned (a share member learns its assignment from a heartbeat, every 5 s by default)
ready = threading.Event()
primers = {f"ready-{p}".encode() for p in range(a.partitions)}


def consume(i):
    c = ShareConsumer({"bootstrap.servers": a.bootstrap, "group.id": group})
    c.subscribe([topic])
    while not done.is_set():
        for m in c.poll(0.2):
            if m.error():
                continue
            if m.value() in primers:
                with lock:
                    primers.discard(m.value())
                    if not primers:
                        ready.set()
                continue
            with lock:
                seen[m.value()] = seen.get(m.value(), 0) + 1
                if first_read[0] is None:
                    first_read[0] = time.time()
                if len(seen) >= a.records:
                    done.set()
    try:
        c.commit_sync()
    except Exception:
        pass
    c.close()


def produce(i):
    p = Producer({"bootstrap.servers": a.bootstrap, "acks": "all", "linger.ms": 5})
    for n in range(i, a.records, a.producers):
        while True:
            try:
                p.produce(topic, value=f"r{n}".encode())
                break
            except BufferError:
                p.poll(0.01)
        p.poll(0)
    assert p.flush(60) == 0, "records left unsent"


consumers = [threading.Thread(target=consume, args=(i,)) for i in range(a.consumers)]
for t in consumers:
    t.start()
primer = Producer({"bootstrap.servers": a.bootstrap, "acks": "all"})
for p in range(a.partitions):
    primer.produce(topic, value=f"ready-{p}".encode(), partition=p)
assert primer.flush(30) == 0, "primer records left unsent"
if not ready.wait(60):
    done.set()
    raise SystemExit("the share consumers never read the primer records")
started = time.time()
producers = [threading.Thread(target=produce, args=(i,)) for i in range(a.producers)]
for t in producers:
    t.start()
for t in producers:
    t.join()
produced = time.time() - started
done.wait(120)
seconds = time.time() - started
done.set()
for t in consumers:
    t.join(30)
dupes = sum(1 for v in seen.values() if v > 1)
print(json.dumps({
    "scenario": a.label, "kind": "share-cluster", "records": len(seen), "expected": a.records,
    "duplicates": dupes, "producers": a.producers, "consumers": a.consumers, "partitions": a.partitions,
    "replication_factor": a.replication_factor, "seconds": round(seconds, 3), "produce_seconds": round(produced, 3),
}))
