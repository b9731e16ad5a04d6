"""Share groups (KIP-932) through confluent-kafka's ShareConsumer (librdkafka 2.16), against a
Weir started by share_groups.sh with a 3 s record lock, a delivery-count limit of 3 and 1 s
heartbeats.

Usage: python_share.py BOOTSTRAP SCENARIO [args]; run with no scenario for all the
scenarios that need no broker restart."""
import json
import os
import signal
import subprocess
import sys
import time

import confluent_kafka
from confluent_kafka import AcknowledgeType, Producer, ShareConsumer
from confluent_kafka.admin import AdminClient, NewTopic

BOOTSTRAP = sys.argv[1]
LOCK_S = 3.0
DELIVERY_LIMIT = 3


ADMIN = AdminClient({"bootstrap.servers": BOOTSTRAP})


def create(topic, partitions, configs=None):
    futures = ADMIN.create_topics([NewTopic(topic, partitions, 1, config=configs or {})])
    futures[topic].result(timeout=30)


def produce(topic, values, partition=None, headers=None):
    p = Producer({"bootstrap.servers": BOOTSTRAP, "enable.idempotence": True})
    for v in values:
        kwargs = {"value": v, "key": v}
        if partition is not None:
            kwargs["partition"] = partition
        if headers is not None:
            kwargs["headers"] = headers(v)
        p.produce(topic, **kwargs)
    assert p.flush(30) == 0, "records left unsent"


def consumer(group, explicit=False, **extra):
    conf = {"bootstrap.servers": BOOTSTRAP, "group.id": group}
    if explicit:
        conf["share.acknowledgement.mode"] = "explicit"
    conf.update(extra)
    return ShareConsumer(conf)


def joined(c, topic):
    """Subscribes and polls until the member has its assignment (nothing produced yet)."""
    c.subscribe([topic])
    for m in c.poll(3):
        assert False, f"nothing was produced yet, got {m.value()}"


def settle(consumers, seconds=2.5):
    """Polls every member for a few heartbeats so that all hold their final assignment."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        for c in consumers:
            assert not c.poll(0.2), "nothing was produced yet"


def first_poll(c, timeout=30.0):
    """The records of the first poll that returns any. An explicitly acknowledging member
    holds what one poll gave: it may not poll again until every one is acknowledged (the
    client raises), and a poll may return one partition's records before another's."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = c.poll(0.5)
        if got:
            assert all(m.error() is None for m in got), [m.error() for m in got]
            return got
    return []


def drain(consumers, want, timeout=30.0, on_message=None):
    """Polls the consumers in turn until `want` records arrived in all; returns them as
    (consumer index, message)."""
    got = []
    deadline = time.time() + timeout
    while len(got) < want and time.time() < deadline:
        for i, c in enumerate(consumers):
            for m in c.poll(0.5):
                assert m.error() is None, m.error()
                got.append((i, m))
                if on_message:
                    on_message(c, m)
    return got


def split():
    """Three members of one group share a 4-partition topic: every record once, no loss."""
    create("sq-split", 4)
    cs = [consumer("sg-split") for _ in range(3)]
    for c in cs:
        joined(c, "sq-split")
    settle(cs)
    values = [b"s%d" % i for i in range(600)]
    produce("sq-split", values)
    got = drain(cs, len(values))
    seen = sorted(m.value() for _, m in got)
    assert seen == sorted(values), f"got {len(seen)} records, {len(set(seen))} distinct, want {len(values)}"
    per_member = [sum(1 for i, _ in got if i == k) for k in range(3)]
    assert all(n > 0 for n in per_member), per_member
    assert all(m.delivery_count() == 1 for _, m in got)
    for c in cs:
        c.close()
    print(f"split: ok ({len(values)} records once each over 3 members: {per_member})")


def explicit_acks():
    """ACCEPT, RELEASE and REJECT: released records come back with delivery count 2, rejected
    ones never; accepted ones never again."""
    create("sq-acks", 1)
    c = consumer("sg-acks", explicit=True)
    joined(c, "sq-acks")
    produce("sq-acks", [b"a%d" % i for i in range(9)])
    first = drain([c], 9, on_message=lambda c, m: c.acknowledge(m, kind(m)))
    assert len(first) == 9, len(first)
    c.commit_sync()
    again = drain([c], 3, timeout=10, on_message=lambda c, m: c.acknowledge(m, AcknowledgeType.ACCEPT))
    values = sorted(m.value() for _, m in again)
    assert values == [b"a1", b"a4", b"a7"], values
    assert all(m.delivery_count() == 2 for _, m in again), [m.delivery_count() for _, m in again]
    c.commit_sync()
    assert drain([c], 1, timeout=4) == [], "accepted and rejected records came back"
    c.close()
    print("explicit acknowledgement: ok (RELEASE redelivered with delivery count 2, REJECT and ACCEPT final)")


def kind(m):
    n = int(m.value()[1:])
    return [AcknowledgeType.ACCEPT, AcknowledgeType.RELEASE, AcknowledgeType.REJECT][n % 3]


def killed_member():
    """A member SIGKILLed while holding records: they go to another member, delivery count 2,
    within the lock duration. One partition, so the dead member (in the group until its
    session times out) and the live one share it."""
    create("sq-kill", 1)
    values = [b"k%d" % i for i in range(40)]
    child = subprocess.Popen(
        [sys.executable, __file__, BOOTSTRAP, "hold", "sg-kill", "sq-kill"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "joined"
    produce("sq-kill", values)
    line = child.stdout.readline().strip()
    assert line.startswith("holding "), line
    held = set(json.loads(line[len("holding "):]))
    assert held, "the member held nothing"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    killed_at = time.time()
    c = consumer("sg-kill")
    c.subscribe(["sq-kill"])
    got = drain([c], len(values), timeout=LOCK_S + 20)
    took = time.time() - killed_at
    assert sorted(m.value() for _, m in got) == sorted(values), len(got)
    # the held records were delivered once before; any the member never received, never
    counts = {m.value().decode(): m.delivery_count() for _, m in got}
    wrong = {v: n for v, n in counts.items() if n != (2 if v in held else 1)}
    assert not wrong, wrong
    c.close()
    print(f"killed member: ok ({len(held)} held records redelivered with delivery count 2 after {took:.1f} s)")


def hold(group, topic):
    """(child) Acquires what one poll gives and holds it without acknowledging; prints the
    values held."""
    c = consumer(group, explicit=True)
    c.subscribe([topic])
    c.poll(2)
    print("joined", flush=True)
    got = first_poll(c)
    print("holding " + json.dumps([m.value().decode() for m in got]), flush=True)
    time.sleep(600)


def delivery_limit():
    """A poison record released every time is archived after the delivery-count limit."""
    create("sq-poison", 1)
    c = consumer("sg-poison", explicit=True)
    joined(c, "sq-poison")
    produce("sq-poison", [b"ok1", b"poison", b"ok2"])
    deliveries = []

    def handle(c, m):
        if m.value() == b"poison":
            deliveries.append(m.delivery_count())
            c.acknowledge(m, AcknowledgeType.RELEASE)
        else:
            c.acknowledge(m, AcknowledgeType.ACCEPT)

    deadline = time.time() + 20
    while len(deliveries) < DELIVERY_LIMIT and time.time() < deadline:
        drain([c], 1, timeout=1, on_message=handle)
        c.commit_sync()
    assert deliveries == list(range(1, DELIVERY_LIMIT + 1)), deliveries
    assert drain([c], 1, timeout=4) == [], "the poison record came back after the limit"
    c.close()
    print(f"delivery limit: ok (poison record delivered {len(deliveries)} times, then archived)")


def set_group_config(group, name, value):
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    entry = ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=[entry])
    for f in ADMIN.incremental_alter_configs([resource]).values():
        f.result(timeout=30)


def read_all(topic, want, timeout=20.0):
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"reader-{topic}-{time.time()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = []
    deadline = time.time() + timeout
    while len(got) < want and time.time() < deadline:
        got.extend(m for m in c.consume(100, 0.5) if m.error() is None)
    c.close()
    return got


def dead_letters():
    """A rejected record and a poison record (released to the delivery limit) are copied to the
    group's dead-letter topic with their key, value, headers, timestamp and context headers;
    the accepted ones are not. A second group's dead-letter topic is created on first use."""
    create("sq-dlq", 1)
    create("dlq.sq-dlq", 1, {"errors.deadletterqueue.group.enable": "true"})
    set_group_config("sg-dlq", "errors.deadletterqueue.topic.name", "dlq.sq-dlq")
    c = consumer("sg-dlq", explicit=True)
    joined(c, "sq-dlq")
    produce("sq-dlq", [b"ok0", b"reject-me", b"poison", b"ok3"], headers=lambda v: [("origin-h", b"h-" + v)])
    sent = {}

    def handle(c, m):
        sent[m.value()] = m.timestamp()[1]
        kind = {b"reject-me": AcknowledgeType.REJECT, b"poison": AcknowledgeType.RELEASE}
        c.acknowledge(m, kind.get(m.value(), AcknowledgeType.ACCEPT))

    deadline = time.time() + 30
    while time.time() < deadline:
        got = drain([c], 1, timeout=1, on_message=handle)
        c.commit_sync()
        if not got and b"poison" in sent:
            break
    copies = read_all("dlq.sq-dlq", 2)
    assert len(copies) == 2, [m.value() for m in copies]
    by_value = {m.value(): m for m in copies}
    rejected, poison = by_value[b"reject-me"], by_value[b"poison"]
    for m, reason, count, offset in [(rejected, b"REJECTED", b"1", b"1"), (poison, b"DELIVERY_COUNT_LIMIT", b"3", b"2")]:
        h = dict(m.headers())
        assert m.key() == m.value(), m.key()
        assert h["origin-h"] == b"h-" + m.value(), h
        assert h["__dlq.errors.topic"] == b"sq-dlq" and h["__dlq.errors.partition"] == b"0", h
        assert h["__dlq.errors.offset"] == offset, h
        assert h["__dlq.errors.group.id"] == b"sg-dlq", h
        assert h["__dlq.errors.delivery.count"] == count, h
        assert h["__dlq.errors.reason"] == reason, h
        assert m.timestamp()[1] == sent[m.value()], (m.timestamp(), sent[m.value()])
    c.close()
    # auto-created on first use (errors.deadletterqueue.auto.create.topics.enable=true here)
    create("sq-dlq-auto", 1)
    set_group_config("sg-dlq-auto", "errors.deadletterqueue.topic.name", "dlq.auto")
    c = consumer("sg-dlq-auto", explicit=True)
    joined(c, "sq-dlq-auto")
    produce("sq-dlq-auto", [b"bad"])
    drain([c], 1, on_message=lambda c, m: c.acknowledge(m, AcknowledgeType.REJECT))
    c.commit_sync()
    copies = read_all("dlq.auto", 1)
    assert [m.value() for m in copies] == [b"bad"], copies
    c.close()
    print("dead-letter topics: ok (rejected and delivery-limit records copied with context headers; "
          "a dead-letter topic created on first use)")


def delayed():
    """Records with weir.deliver.at / weir.deliver.after.ms arrive no earlier than their time,
    without holding back the records after them; weir.share.release.backoff.ms delays a
    released record's redelivery."""
    create("sq-delay", 1)
    c = consumer("sg-delay", explicit=True)
    joined(c, "sq-delay")
    start = time.time()
    at_ms = int((start + 2.0) * 1000)
    headers = {
        b"now-1": [],
        b"after-3s": [("weir.deliver.after.ms", b"3000")],
        b"at-2s": [("weir.deliver.at", str(at_ms).encode())],
        b"now-2": [],
    }
    produce("sq-delay", list(headers), headers=lambda v: headers[v])
    arrived = {}
    deadline = time.time() + 20
    while len(arrived) < 4 and time.time() < deadline:
        for _, m in drain([c], 1, timeout=0.3):
            arrived[m.value()] = time.time()
            c.acknowledge(m, AcknowledgeType.ACCEPT)
        c.commit_sync()
    assert set(arrived) == set(headers), arrived
    assert arrived[b"now-2"] - start < 1.5, "a record after delayed ones waited"
    assert arrived[b"at-2s"] >= at_ms / 1000.0 - 0.05, arrived[b"at-2s"] - start
    assert arrived[b"after-3s"] - start >= 2.9, arrived[b"after-3s"] - start
    assert max(arrived.values()) - start < 8, arrived
    c.close()
    # release back-off: a released record comes back no sooner than 1.5 s later
    set_group_config("sg-backoff", "weir.share.release.backoff.ms", "1500")
    b = consumer("sg-backoff", explicit=True)
    joined(b, "sq-delay")
    produce("sq-delay", [b"retry-me"])
    first = drain([b], 1, on_message=lambda c, m: c.acknowledge(m, AcknowledgeType.RELEASE))
    assert [m.value() for _, m in first] == [b"retry-me"]
    b.commit_sync()
    released_at = time.time()
    again = drain([b], 1, timeout=10, on_message=lambda c, m: c.acknowledge(m, AcknowledgeType.ACCEPT))
    waited = time.time() - released_at
    assert [m.delivery_count() for _, m in again] == [2], again
    assert waited >= 1.4, waited
    b.commit_sync()
    b.close()
    print(f"delayed delivery: ok (at +2 s, after +3 s, undelayed records first; release back-off {waited:.1f} s)")


def beside_consumer_group():
    """A share group and a consumer group read one topic at once without affecting each other."""
    from confluent_kafka import Consumer

    create("sq-both", 2)
    s = consumer("sg-both")
    joined(s, "sq-both")
    values = [b"b%d" % i for i in range(200)]
    produce("sq-both", values)
    plain = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "cg-both", "auto.offset.reset": "earliest"})
    plain.subscribe(["sq-both"])
    plain_got, share_got = [], []
    # both polled in turn: a share consumer left unpolled past the (3 s) record lock would see
    # its prefetched records again, redelivered as the lock expired
    deadline = time.time() + 30
    while (len(plain_got) < len(values) or len(share_got) < len(values)) and time.time() < deadline:
        plain_got.extend(m.value() for m in plain.consume(500, 0.1) if m.error() is None)
        share_got.extend(m.value() for _, m in drain([s], 1, timeout=0.1))
    assert sorted(plain_got) == sorted(values), len(plain_got)
    assert sorted(share_got) == sorted(values), len(share_got)
    plain.close()
    s.close()
    print("share group beside a consumer group: ok (both read all 200)")


RESTART_RECORDS = 60


def before_restart(accepted_file):
    """(first half) The records of one poll acquired, the even ones of them accepted
    (committed), the rest held when the broker is killed; the accepted values go to
    `accepted_file` for the second half."""
    create("sq-restart", 2)
    c = consumer("sg-restart", explicit=True)
    joined(c, "sq-restart")
    produce("sq-restart", [b"r%d" % i for i in range(RESTART_RECORDS)])
    got = first_poll(c)
    accepted = [m for m in got if int(m.value()[1:]) % 2 == 0]
    assert accepted and len(accepted) < len(got), f"{len(got)} acquired, {len(accepted)} even"
    for m in accepted:
        c.acknowledge(m, AcknowledgeType.ACCEPT)
    results = c.commit_sync()
    assert all(err is None for err in results.values()), results
    with open(accepted_file, "w") as f:
        json.dump([int(m.value()[1:]) for m in accepted], f)
    print(f"before restart: {len(got)} acquired, {len(accepted)} accepted", flush=True)
    os._exit(0)  # no close: the others stay acquired until the broker goes


def after_restart(accepted_file):
    """(second half, after the broker was SIGKILLed and restarted) every record that was not
    accepted comes back, those held before the kill included; none of the accepted ones."""
    with open(accepted_file) as f:
        accepted = set(json.load(f))
    expected = [i for i in range(RESTART_RECORDS) if i not in accepted]
    c = consumer("sg-restart")
    c.subscribe(["sq-restart"])
    got = drain([c], len(expected), timeout=40)
    values = sorted(int(m.value()[1:]) for _, m in got)
    assert values == expected, values
    assert drain([c], 1, timeout=4) == [], "an accepted record came back"
    c.close()
    print(f"after restart: ok ({len(expected)} unaccepted records delivered, no accepted one)")


SCENARIOS = {
    "split": split,
    "explicit": explicit_acks,
    "killed": killed_member,
    "limit": delivery_limit,
    "both": beside_consumer_group,
    "dlq": dead_letters,
    "delayed": delayed,
}

if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[2] == "hold":
        hold(*sys.argv[3:])
    elif len(sys.argv) > 2 and sys.argv[2] == "before-restart":
        before_restart(sys.argv[3])
    elif len(sys.argv) > 2 and sys.argv[2] == "after-restart":
        after_restart(sys.argv[3])
    else:
        print("confluent-kafka", confluent_kafka.version(), "librdkafka", confluent_kafka.libversion()[0])
        for name in sys.argv[2:] or list(SCENARIOS):
            SCENARIOS[name]()
