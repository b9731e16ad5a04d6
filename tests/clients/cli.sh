#!/usr/bin/env bash
# The operator's CLI beside other clients: what `weir produce` writes kcat reads, what kcat
# writes `weir consume` reads, and a confluent-kafka (librdkafka 2.16) group that `weir group`
# describes and moves. Usage: tests/clients/cli.sh path/to/weir HOST:PORT
set -euo pipefail
weir="$1"
export WEIR_BROKERS="$2"
T="cli-matrix-$RANDOM$RANDOM"
G="cli-matrix-group-$RANDOM$RANDOM"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
fail() { echo "cli: $*"; exit 1; }

"$weir" topic create "$T" -p 2 --format json | grep -q '"created":true' || fail "topic create"

# kcat writes keyed records; weir reads them back in order per partition
seq 1 200 | sed 's/.*/k&:v&/' > "$scratch/kcat-in.txt"
kcat -b "$WEIR_BROKERS" -P -t "$T" -K: -p 0 -l "$scratch/kcat-in.txt"
"$weir" consume "$T" -p 0 --from beginning -e -K: > "$scratch/weir-out.txt"
diff -q "$scratch/kcat-in.txt" "$scratch/weir-out.txt" > /dev/null || fail "weir consume differs from what kcat produced"
echo "cli: weir consume read kcat's 200 records"

# weir writes records with a header; kcat reads keys, values and headers
seq 1 100 | sed 's/^/w/' | "$weir" produce "$T" -p 1 -k wk -H origin=weir -z lz4 -q 2> /dev/null
kcat -b "$WEIR_BROKERS" -C -t "$T" -p 1 -o beginning -e -q -f '%k %s %h\n' > "$scratch/kcat-out.txt"
[ "$(wc -l < "$scratch/kcat-out.txt")" -eq 100 ] || fail "kcat read $(wc -l < "$scratch/kcat-out.txt") records, expected 100"
[ "$(head -1 "$scratch/kcat-out.txt")" = "wk w1 origin=weir" ] || fail "kcat saw '$(head -1 "$scratch/kcat-out.txt")'"
echo "cli: kcat read weir's 100 records with key and header"

# a confluent-kafka group commits part of the topic; weir describes its lag and seeks it back
python3 - "$WEIR_BROKERS" "$T" "$G" <<'PY'
import sys
from confluent_kafka import Consumer, TopicPartition
b, t, g = sys.argv[1:4]
c = Consumer({"bootstrap.servers": b, "group.id": g, "enable.auto.commit": False, "auto.offset.reset": "earliest"})
c.assign([TopicPartition(t, 0, 0), TopicPartition(t, 1, 0)])
c.commit(offsets=[TopicPartition(t, 0, 150), TopicPartition(t, 1, 40)], asynchronous=False)
c.close()
PY
desc="$("$weir" group describe "$G" --format json)"
python3 - "$desc" <<'PY' || fail "group describe: $desc"
import json, sys
d = json.loads(sys.argv[1])
assert d["total_lag"] == 50 + 60, d
assert [(o["partition"], o["committed_offset"], o["log_end_offset"]) for o in d["offsets"]] == [(0, 150, 200), (1, 40, 100)], d
PY
echo "cli: weir group describe shows the confluent-kafka group's lag (110)"
"$weir" group seek "$G" --to earliest --topic "$T" --execute > /dev/null
python3 - "$WEIR_BROKERS" "$T" "$G" <<'PY' || fail "confluent-kafka did not resume at the seek"
import sys
from confluent_kafka import Consumer, TopicPartition
b, t, g = sys.argv[1:4]
c = Consumer({"bootstrap.servers": b, "group.id": g, "enable.auto.commit": False})
got = c.committed([TopicPartition(t, 0), TopicPartition(t, 1)], timeout=10)
assert [p.offset for p in got] == [0, 0], got
c.close()
PY
echo "cli: weir group seek moved the confluent-kafka group to the beginning"
"$weir" topic delete "$T" > /dev/null
echo "cli: ok"
