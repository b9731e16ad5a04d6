#!/usr/bin/env bash
# Cluster operations with Kafka's own client libraries (issue 15): three weir processes on
# loopback ports; KafkaJS's admin moves a partition (AlterPartitionReassignments, listed while
# it runs) and reorders another's replicas; confluent-kafka's AdminClient then elects the new
# preferred leader (ElectLeaders). Usage: tests/clients/cluster_ops.sh path/to/weir
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
weir="$1"
work="$(mktemp -d)"
source "$here/weir_procs.sh"
trap 'kill_weir_cluster; rm -rf "$work"' EXIT
start_weir_cluster "$weir"
status=0
node "$here/kafkajs_cluster.js" "$bootstrap" || status=1
[ $status -eq 0 ] && { python3 "$here/python_cluster.py" "$bootstrap" || status=1; }
stop_weir_cluster $status || status=1
[ $status -eq 0 ] && echo "cluster operations with client libraries: ok"
exit $status
