#!/usr/bin/env bash
# Cluster operations with Kafka's own client libraries (issue 15): three weir processes on
# loopback ports; KafkaJS's admin moves a partition (AlterPartitionReassignments, listed while
# it runs) and reorders another's replicas; confluent-kafka's AdminClient then elects the new
# preferred leader (ElectLeaders). Usage: tests/clients/cluster_ops.sh path/to/weir
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
weir="$1"
work="$(mktemp -d)"
base=$((30000 + RANDOM % 2000))
voters=""
for i in 1 2 3; do voters+="${voters:+,}$i@127.0.0.1:$((base + 2 * i + 1))"; done
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
bootstrap=""
for i in 1 2 3; do
  RUST_LOG=info "$weir" --listen "PLAINTEXT://127.0.0.1:$((base + 2 * i)),CONTROLLER://127.0.0.1:$((base + 2 * i + 1))" \
    --data-dir "$work/$i" --node-id $i --set process.roles=broker,controller --set "controller.quorum.voters=$voters" \
    --set controller.listener.names=CONTROLLER --set auto.leader.rebalance.enable=false > "$work/$i.log" 2>&1 &
  pids+=($!)
  bootstrap+="${bootstrap:+,}127.0.0.1:$((base + 2 * i))"
done
for i in 1 2 3; do
  for _ in $(seq 1 300); do grep -q "weir started" "$work/$i.log" && break; sleep 0.1; done
  grep -q "weir started" "$work/$i.log" || { echo "node $i did not start"; cat "$work/$i.log"; exit 1; }
done
status=0
node "$here/kafkajs_cluster.js" "$bootstrap" || status=1
[ $status -eq 0 ] && { python3 "$here/python_cluster.py" "$bootstrap" || status=1; }
for p in "${pids[@]}"; do kill -TERM "$p"; done
for p in "${pids[@]}"; do wait "$p" || { echo "a node did not exit cleanly"; status=1; }; done
pids=()
if [ $status -ne 0 ]; then for i in 1 2 3; do echo "--- node $i ---"; tail -30 "$work/$i.log"; done; fi
[ $status -eq 0 ] && echo "cluster operations with client libraries: ok"
exit $status
