"""Judges the JSON events of Kafka's Verifiable* tools (Apache Kafka 4.2.1) as Kafka's own
system tests do: every record the producer saw acknowledged was acknowledged once and consumed
at least once, and the group's last committed offset of each partition is its log end.

    java_verify.py producer PRODUCER_OUT                     # acks, no send errors
    java_verify.py consumer PRODUCER_OUT CONSUMER_OUT        # + consumed, committed = log end
    java_verify.py share PRODUCER_OUT SHARE_CONSUMER_OUT     # + every record consumed
"""
import json
import sys


def events(path):
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                yield json.loads(line)


def acknowledged(path):
    acked, errors = {}, 0
    for e in events(path):
        if e["name"] == "producer_send_success":
            key = (e["partition"], e["offset"])
            assert key not in acked, f"offset acknowledged twice: {key}"
            acked[key] = e["value"]
        elif e["name"] == "producer_send_error":
            errors += 1
    assert errors == 0, f"{errors} send errors"
    assert acked, "nothing acknowledged"
    return acked


def log_ends(acked):
    ends = {}
    for p, o in acked:
        ends[p] = max(ends.get(p, 0), o + 1)
    return ends


def check_consumer(acked, path):
    consumed, committed = set(), {}
    for e in events(path):
        if e["name"] == "records_consumed":
            for p in e["partitions"]:
                consumed.update((p["partition"], o) for o in range(p["minOffset"], p["maxOffset"] + 1))
        elif e["name"] == "offsets_committed" and e.get("success"):
            for o in e["offsets"]:
                committed[o["partition"]] = max(committed.get(o["partition"], 0), o["offset"])
    missing = set(acked) - consumed
    assert not missing, f"{len(missing)} acknowledged records not consumed, e.g. {sorted(missing)[:5]}"
    ends = log_ends(acked)
    assert committed == ends, f"committed {committed} != log ends {ends}"
    return f"{len(consumed)} consumed, committed {committed}"


def check_share(acked, path):
    consumed = set()
    for e in events(path):
        if e["name"] == "records_consumed":
            for p in e["partitions"]:
                consumed.update((p["partition"], o) for o in p["offsets"])
    missing = set(acked) - consumed
    assert not missing, f"{len(missing)} acknowledged records not consumed, e.g. {sorted(missing)[:5]}"
    return f"{len(consumed)} consumed"


def main():
    kind, producer = sys.argv[1], sys.argv[2]
    acked = acknowledged(producer)
    detail = {"producer": lambda: "", "consumer": lambda: check_consumer(acked, sys.argv[3]),
              "share": lambda: check_share(acked, sys.argv[3])}[kind]()
    print(f"{kind}: {len(acked)} acknowledged once; {detail}")


if __name__ == "__main__":
    main()
