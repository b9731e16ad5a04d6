#!/usr/bin/env bash
# Starts the built weir binary on a free port with a fresh data directory and runs every
# client check against it. Usage: tests/clients/run_all.sh path/to/weir
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
weir="$1"
data="$(mktemp -d)"
log="$data/weir.log"
source "$here/weir_procs.sh"
trap 'p=${weir_broker_pid:-}; [ -n "$p" ] && { kill $p 2>/dev/null; wait $p 2>/dev/null; }; true' EXIT
start_weir_broker "$log" "$weir" --metrics 127.0.0.1:0 --data-dir "$data/data"
pid=$weir_broker_pid
metrics=$(sed -n 's/.*metrics at http:\/\/\([^/]*\)\/metrics.*/\1/p' "$log" | head -1)
echo "weir at $addr, metrics at $metrics"
status=0
export KAFKAJS_NO_PARTITIONER_WARNING=1
bash "$here/kcat.sh" "$addr" || status=1
python3 "$here/python_clients.py" "$addr" || status=1
python3 "$here/python_groups.py" "$addr" || status=1
python3 "$here/python_transactions.py" "$addr" || status=1
python3 "$here/python_telemetry.py" "$addr" "$metrics" || status=1
python3 "$here/python_dedup.py" "$addr" || status=1
node "$here/kafkajs.js" "$addr" || status=1
bash "$here/cli.sh" "$weir" "$addr" || status=1
kill -TERM $pid
wait $pid || { echo "weir did not exit cleanly"; status=1; }
trap - EXIT
if [ $status -ne 0 ]; then echo "--- weir log ---"; tail -50 "$log"; fi
grep -q "clean shutdown complete" "$log" || { echo "no clean shutdown"; status=1; }
# TLS and SASL listeners, on a broker of their own
bash "$here/security.sh" "$weir" || status=1
# a secure three-broker cluster: SASL_SSL for clients and brokers, an SSL controller listener
bash "$here/secure_cluster.sh" "$weir" || status=1
# share groups (KIP-932) with their own lock and delivery settings, and a broker restart
bash "$here/share_groups.sh" "$weir" || status=1
# reassignment and elections on a three-broker cluster
bash "$here/cluster_ops.sh" "$weir" || status=1
# Kafka's own Java client and tools (../shared/java-kafka), one broker and three
bash "$here/java.sh" "$weir" || status=1
[ $status -eq 0 ] && echo "client matrix: ok"
exit $status
