#!/usr/bin/env bash
# Kafka's own Java client and tools (Apache Kafka 4.2.1, prebuilt in ../shared/java-kafka):
# against the built broker and against a three-broker cluster. The Verifiable* tools' events
# are judged by java_verify.py (every acknowledged record acknowledged once and consumed,
# committed offsets at the log end); the admin tools' output by grep.
# Skipped, saying so, where ../shared/java-kafka is absent.
# Usage: tests/clients/java.sh path/to/weir
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
weir="$1"
java_kafka="${JAVA_KAFKA:-$here/../../../shared/java-kafka}"
if [ ! -x "$java_kafka/kafka-run" ]; then
  echo "java client: SKIPPED ($java_kafka is absent: Kafka's Java client and tools are not on this machine)"
  exit 0
fi
"$java_kafka/install-deps"
bin="$java_kafka/bin"
work="$(mktemp -d)"
source "$here/weir_procs.sh"
single_pid=""
# WEIR_KEEP_WORK=1 keeps the tools' output and the brokers' logs (for a failure's post-mortem)
trap 'kill_weir_cluster; [ -n "$single_pid" ] && kill -9 $single_pid 2>/dev/null; [ -n "${WEIR_KEEP_WORK:-}" ] && echo "kept $work" || rm -rf "$work"' EXIT

# Runs a tool with a deadline; its output goes to $work/NAME.out (stderr to NAME.err).
tool() {
  local name="$1"; shift
  if ! timeout 120 "$@" > "$work/$name.out" 2> "$work/$name.err"; then
    echo "FAILED: $name: $*"; tail -20 "$work/$name.err"; tail -5 "$work/$name.out"; return 1
  fi
}
expect() {  # expect NAME PATTERN [COUNT]: the tool's output has a line (COUNT lines) matching PATTERN
  local found
  found=$(grep -Ec "$2" "$work/$1.out" || true)
  if [ "$found" -lt "${3:-1}" ]; then
    echo "FAILED: $1 printed $found lines matching '$2', not ${3:-1}:"; cat "$work/$1.out"; return 1
  fi
}

# What a share consumer that stopped short leaves behind: the group's offsets and lag as Weir
# sees them, and the brokers' warnings.
share_post_mortem() {
  echo "--- share group $2 as described after the failure"
  timeout 60 "$bin/kafka-share-groups.sh" --bootstrap-server "$1" --describe --group "$2" 2>&1 || true
  echo "--- brokers' warnings and errors"
  grep -h -E " (WARN|ERROR) " "$work"/*.log | tail -40 || true
  echo "--- the group's last share requests (debug, three-broker run)"
  grep -h "$2" "$work"/*.log | sort | tail -60 | cut -c1-400 || true
}

# scenarios BOOTSTRAP LABEL REPLICATION_FACTOR
scenarios() {
  local b="$1" label="$2" rf="$3" t="java-$2" n=4000
  local p="$work/$label"
  printf 'enable.idempotence=true\nacks=all\nretries=2147483647\ncompression.type=lz4\n' > "$p-producer.properties" || return 1
  tool "$label-create" "$bin/kafka-topics.sh" --bootstrap-server "$b" --create --topic "$t" --partitions 3 \
    --replication-factor "$rf" || return 1
  tool "$label-topic" "$bin/kafka-topics.sh" --bootstrap-server "$b" --describe --topic "$t" || return 1
  expect "$label-topic" "PartitionCount: 3.*ReplicationFactor: $rf" || return 1
  tool "$label-produce" "$bin/kafka-verifiable-producer.sh" --bootstrap-server "$b" --topic "$t" \
    --max-messages $n --acks -1 --command-config "$p-producer.properties" || return 1
  python3 "$here/java_verify.py" producer "$work/$label-produce.out" || return 1
  for protocol in classic consumer; do
    tool "$label-consume-$protocol" "$bin/kafka-verifiable-consumer.sh" --bootstrap-server "$b" --topic "$t" \
      --group-id "$t-$protocol" --group-protocol $protocol --max-messages $n --reset-policy earliest || return 1
    python3 "$here/java_verify.py" consumer "$work/$label-produce.out" "$work/$label-consume-$protocol.out" || return 1
  done
  tool "$label-groups" "$bin/kafka-consumer-groups.sh" --bootstrap-server "$b" --describe --group "$t-classic" || return 1
  expect "$label-groups" "^$t-classic +$t +[0-9]+ +[1-9][0-9]* +[1-9][0-9]* +0 " || return 1
  tool "$label-reset" "$bin/kafka-consumer-groups.sh" --bootstrap-server "$b" --reset-offsets --to-earliest \
    --group "$t-classic" --topic "$t" --execute || return 1
  tool "$label-groups-after" "$bin/kafka-consumer-groups.sh" --bootstrap-server "$b" --describe --group "$t-classic" || return 1
  expect "$label-groups-after" "^$t-classic +$t +[0-9]+ +0 +[1-9][0-9]* " || return 1
  # a share group made by resetting its offsets (AlterShareGroupOffsets creates it), then
  # consumed by the verifiable share consumer; its lag is described (DescribeShareGroupOffsets v1)
  tool "$label-share-reset" "$bin/kafka-share-groups.sh" --bootstrap-server "$b" --reset-offsets --to-earliest \
    --group "$t-share" --topic "$t" --execute || return 1
  expect "$label-share-reset" "^$t-share +$t +[0-2] +0$" 3 || return 1
  tool "$label-share" "$bin/kafka-verifiable-share-consumer.sh" --bootstrap-server "$b" --topic "$t" \
    --group-id "$t-share" --max-messages $n --acknowledgement-mode sync || { share_post_mortem "$b" "$t-share"; return 1; }
  python3 "$here/java_verify.py" share "$work/$label-produce.out" "$work/$label-share.out" || return 1
  tool "$label-share-describe" "$bin/kafka-share-groups.sh" --bootstrap-server "$b" --describe --group "$t-share" || return 1
  expect "$label-share-describe" "^$t-share +$t +[0-9]+ +[1-9][0-9]* +0$" || return 1
  tool "$label-transactions" "$bin/kafka-transactions.sh" --bootstrap-server "$b" list || return 1
  expect "$label-transactions" "^TransactionalId" || return 1
  tool "$label-features" "$bin/kafka-features.sh" --bootstrap-server "$b" describe || return 1
  expect "$label-features" "^Feature: share.version.*SupportedMaxVersion: 1.*FinalizedVersionLevel: 1" || return 1
  expect "$label-features" "^Feature: metadata.version.*FinalizedVersionLevel: 4.2-IV1" || return 1
  tool "$label-quorum-status" "$bin/kafka-metadata-quorum.sh" --bootstrap-server "$b" describe --status || return 1
  expect "$label-quorum-status" "^LeaderId: +[0-9]+" || return 1
  tool "$label-quorum-replication" "$bin/kafka-metadata-quorum.sh" --bootstrap-server "$b" describe --replication || return 1
  expect "$label-quorum-replication" "Leader" || return 1
  echo "java tools against $label: topics, verifiable producer (idempotent, lz4) and consumers (classic, consumer), consumer-groups describe/reset, share groups reset/consume/describe with lag, transactions, features, metadata-quorum: ok"
}

# KIP-848 consumers joining and leaving while a producer writes (java_churn.py)
churn() {
  local b="$1" t="java-churn"
  printf 'partitioner.class=org.apache.kafka.clients.producer.RoundRobinPartitioner\nlinger.ms=5\n' \
    > "$work/churn-producer.properties" || return 1
  tool churn-create "$bin/kafka-topics.sh" --bootstrap-server "$b" --create --topic "$t" --partitions 6 \
    --replication-factor 3 || return 1
  timeout 180 python3 "$here/java_churn.py" "$bin" "$b" "$t" "$work" || { tail -5 "$work"/churn-*.err; return 1; }
}

status=0
start_weir_broker "$work/single.log" "$weir" --data-dir "$work/single"
single_pid=$weir_broker_pid
scenarios "$addr" one-broker 1 || status=1
kill -TERM $single_pid; wait $single_pid || status=1
single_pid=""
[ $status -eq 0 ] || tail -40 "$work/single.log"

# share-group requests logged at debug, for share_post_mortem
WEIR_LOG=info,weir::handlers::share_fetch=debug,weir::handlers::share_groups=debug start_weir_cluster "$weir"
scenarios "$bootstrap" three-brokers 3 || status=1
churn "$bootstrap" || status=1
# every broker answers the quorum's state, whichever the active controller is
for b in ${bootstrap//,/ }; do
  tool "quorum-at-$b" "$bin/kafka-metadata-quorum.sh" --bootstrap-server "$b" describe --status || status=1
  expect "quorum-at-$b" "^CurrentVoters: .*\"id\": 1.*\"id\": 2.*\"id\": 3" || status=1
done
stop_weir_cluster $status || status=1
[ $status -eq 0 ] && echo "java client and tools: ok"
exit $status
