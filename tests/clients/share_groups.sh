#!/usr/bin/env bash
# Share groups (KIP-932) with confluent-kafka's ShareConsumer against a Weir of their own
# (short record locks, a delivery-count limit of 3, 1 s heartbeats), then a SIGKILL and restart
# of the broker in the middle of a share group's work.
# Usage: tests/clients/share_groups.sh path/to/weir
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
weir="$1"
data="$(mktemp -d)"
log="$data/weir.log"
settings=(--set group.share.min.record.lock.duration.ms=1000 --set group.share.record.lock.duration.ms=3000
  --set group.share.delivery.count.limit=3 --set group.share.min.heartbeat.interval.ms=500
  --set group.share.heartbeat.interval.ms=1000 --set errors.deadletterqueue.auto.create.topics.enable=true)
source "$here/weir_procs.sh"
pid=
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; true' EXIT

# start [ADDRESS]: the broker on a free port, or again on ADDRESS
start() {
  WEIR_LISTEN="${1:-127.0.0.1:0}" start_weir_broker "$log" "$weir" --data-dir "$data/data" "${settings[@]}" || exit 1
  pid=$weir_broker_pid
}

start
echo "weir (share groups) at $addr"
status=0
python3 "$here/python_share.py" "$addr" || status=1
python3 "$here/python_share.py" "$addr" before-restart "$data/accepted.json" || status=1
{ kill -9 $pid; wait $pid; } 2>/dev/null || true
start "$addr"
python3 "$here/python_share.py" "$addr" after-restart "$data/accepted.json" || status=1
kill -TERM $pid
wait $pid || { echo "weir did not exit cleanly"; status=1; }
pid=
if [ $status -ne 0 ]; then echo "--- weir log ---"; tail -50 "$log"; fi
[ $status -eq 0 ] && echo "share groups: ok"
exit $status
