"""Duplicate detection by message id (weir.dedup.*) with confluent-kafka and kcat.

The payroll story: a producer process sends 10,000 payments, each with a `message-id` header,
and is SIGKILLed part-way; a new process (a new producer id) resends all 10,000 with the same
ids; a consumer reads every payment exactly once, in order. Then kcat sends records with
`-H message-id=...`, one of them twice.

Usage: python_dedup.py BOOTSTRAP  (the `send` mode is the producer process it starts)"""
import subprocess
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

BOOTSTRAP = sys.argv[1]
PAYMENTS = 10_000


def send(topic, report_every=500):
    """Sends every payment in order (one partition); prints how many were acknowledged."""
    p = Producer({"bootstrap.servers": BOOTSTRAP, "enable.idempotence": True, "linger.ms": 5})
    acked = [0]

    def delivered(err, _msg):
        if err is None:
            acked[0] += 1
            if acked[0] % report_every == 0:
                print(acked[0], flush=True)

    for i in range(PAYMENTS):
        while True:
            try:
                p.produce(topic, value=f"payment-{i}:{100 + i % 900}", partition=0,
                          headers=[("message-id", f"payment-{i}".encode())], on_delivery=delivered)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(60) == 0, "payments left unsent"
    print(f"done {acked[0]}", flush=True)


def create(admin, topic):
    admin.create_topics([NewTopic(topic, 1, 1, config={"weir.dedup.window.ms": "600000"})])[topic].result(30)


def read_all(topic, expect):
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"read-{uuid.uuid4()}", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got, deadline, quiet_until = [], time.time() + 60, None
    while time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            if len(got) >= expect and quiet_until is None:
                quiet_until = time.time() + 1.0
            if quiet_until is not None and time.time() > quiet_until:
                break
            continue
        if m.error():
            raise SystemExit(f"consume error: {m.error()}")
        headers = dict(m.headers() or [])
        got.append((m.offset(), headers.get("message-id", b"").decode(), m.value().decode()))
    c.close()
    return got


def payroll(admin):
    topic = f"payroll-{uuid.uuid4().hex[:8]}"
    create(admin, topic)
    first = subprocess.Popen([sys.executable, __file__, BOOTSTRAP, "send", topic], stdout=subprocess.PIPE, text=True)
    acked = 0
    for line in first.stdout:
        acked = int(line.split()[-1])
        if acked >= 3000:
            break
    first.kill()  # SIGKILL: whatever it had queued or in flight is lost or written
    first.wait()
    assert 3000 <= acked < PAYMENTS, f"the first sender was killed after {acked} payments"
    again = subprocess.run([sys.executable, __file__, BOOTSTRAP, "send", topic], capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stderr
    got = read_all(topic, PAYMENTS)
    ids = [i for _, i, _ in got]
    want = [f"payment-{i}" for i in range(PAYMENTS)]
    assert ids == want, f"{len(ids)} payments read; first differences: " + str(
        [(n, a, b) for n, (a, b) in enumerate(zip(ids, want)) if a != b][:3])
    assert all(v.startswith(i + ":") for _, i, v in got)
    print(f"payroll: ok ({acked}+ payments acknowledged before SIGKILL, all {PAYMENTS} resent "
          f"by a new producer, each read once, in order)")


def kcat(admin):
    topic = f"kcat-dedup-{uuid.uuid4().hex[:8]}"
    create(admin, topic)
    for mid, value in [("k-1", "first"), ("k-2", "second"), ("k-1", "first again")]:
        subprocess.run(["kcat", "-b", BOOTSTRAP, "-P", "-t", topic, "-p", "0", "-H", f"message-id={mid}"],
                       input=value + "\n", text=True, check=True, timeout=30)
    got = read_all(topic, 2)
    assert [(i, v) for _, i, v in got] == [("k-1", "first"), ("k-2", "second")], got
    print("kcat -H message-id: ok (the resent id dropped)")


def main():
    if len(sys.argv) > 2 and sys.argv[2] == "send":
        send(sys.argv[3])
        return
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    payroll(admin)
    kcat(admin)


if __name__ == "__main__":
    main()
