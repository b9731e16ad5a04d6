"""KIP-848 membership churn with Kafka's Java consumer (issue 31 item 5): while the verifiable
producer writes to a 6-partition topic, three verifiable consumers (group.protocol=consumer)
join one after another and two leave again. Judged on the tools' events: no commit refused
(the consumer commits after every poll, so each rebalance races a commit against the
heartbeat that moves the member to a new epoch), every acknowledged record consumed by some
member, and no partition left unconsumed for long while it had records.

    java_churn.py BIN BOOTSTRAP TOPIC WORKDIR
"""
import json
import signal
import subprocess
import sys
import threading
import time

# a partition that had records but was consumed by nobody for longer than this has stalled
# (each hand-over takes up to two heartbeat intervals, 5 s each, plus a revocation)
MAX_GAP_S = 15.0
STEP_S = 5.0

bin_dir, bootstrap, topic, work = sys.argv[1:5]
t0 = time.time()
lock = threading.Lock()
last_consumed, gaps, failures, consumed = {}, {}, [], set()


def read(name, proc):
    for line in proc.stdout:
        if not line.startswith("{"):
            continue
        e, now = json.loads(line), time.time() - t0
        with lock:
            if e["name"] == "records_consumed":
                for p in e["partitions"]:
                    i = p["partition"]
                    if i in last_consumed:
                        gaps[i] = max(gaps.get(i, 0.0), now - last_consumed[i])
                    last_consumed[i] = now
                    consumed.update((i, o) for o in range(p["minOffset"], p["maxOffset"] + 1))
            elif e["name"] == "offsets_committed" and not e.get("success", True):
                failures.append(f"{name} at {now:.1f}s: {e.get('error')}")


def spawn(args, out):
    return subprocess.Popen(args, stdout=out, stderr=open(f"{work}/churn-{len(procs)}.err", "w"), text=True)


procs = []
with open(f"{work}/churn-produce.out", "w") as produced:
    producer = spawn([f"{bin_dir}/kafka-verifiable-producer.sh", "--bootstrap-server", bootstrap, "--topic", topic,
                      "--throughput", "500", "--max-messages", "-1", "--acks", "-1",
                      "--producer.config", f"{work}/churn-producer.properties"], produced)
    procs.append(producer)
    consumers = []
    for i in range(3):
        c = spawn([f"{bin_dir}/kafka-verifiable-consumer.sh", "--bootstrap-server", bootstrap, "--topic", topic,
                   "--group-id", f"{topic}-group", "--group-protocol", "consumer", "--reset-policy", "earliest"],
                  subprocess.PIPE)
        procs.append(c)
        threading.Thread(target=read, args=(f"consumer {i}", c), daemon=True).start()
        consumers.append(c)
        time.sleep(STEP_S)
    for c in consumers[:2]:
        c.send_signal(signal.SIGTERM)
        c.wait(60)
        time.sleep(STEP_S)
    producer.send_signal(signal.SIGTERM)
    producer.wait(60)
# the last consumer drains what the producer wrote before it stopped
acked = set()
with open(f"{work}/churn-produce.out") as f:
    for line in f:
        if line.startswith("{"):
            e = json.loads(line)
            if e["name"] == "producer_send_success":
                acked.add((e["partition"], e["offset"]))
deadline = time.time() + 60
while time.time() < deadline:
    with lock:
        if acked <= consumed:
            break
    time.sleep(0.5)
consumers[2].send_signal(signal.SIGTERM)
consumers[2].wait(60)
with lock:
    missing = acked - consumed
    worst = max(gaps.values(), default=0.0)
    print(f"churn: {len(acked)} acknowledged, {len(consumed & acked)} consumed, "
          f"longest a partition went unconsumed {worst:.1f}s, {len(failures)} commits refused")
    assert acked, "nothing acknowledged"
    assert not failures, "commits refused:\n  " + "\n  ".join(failures)
    assert not missing, f"{len(missing)} acknowledged records never consumed, e.g. {sorted(missing)[:5]}"
    assert worst <= MAX_GAP_S, f"a partition went unconsumed for {worst:.1f}s: {gaps}"
