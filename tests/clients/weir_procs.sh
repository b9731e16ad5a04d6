# Sourced by the client-matrix scripts: weir processes on loopback ports.
#   start_weir_broker LOG WEIR ARGS...  one broker on a free port, or on $WEIR_LISTEN (its
#                                       output in LOG); sets $addr and $weir_broker_pid, or
#                                       fails with the log
#   start_weir_cluster WEIR [ARGS...]   three nodes (brokers and controllers combined), data
#                                       under $work, each also given ARGS, clients on the
#                                       listener named $WEIR_CLIENT_LISTENER (PLAINTEXT);
#                                       sets $bootstrap; stopped by stop_weir_cluster or,
#                                       killed, by kill_weir_cluster
start_weir_broker() {
  local log="$1"; shift
  RUST_LOG=info "$@" --listen "${WEIR_LISTEN:-127.0.0.1:0}" > "$log" 2>&1 &
  weir_broker_pid=$!
  addr=""
  for _ in $(seq 1 100); do
    addr=$(sed -n 's/.*weir listening addr=\([^ ]*\).*/\1/p' "$log" | head -1)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "weir did not start"; cat "$log"; return 1; }
}

weir_pids=()
kill_weir_cluster() {
  for p in "${weir_pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
}
start_weir_cluster() {
  local weir="$1" base voters="" i listener="${WEIR_CLIENT_LISTENER:-PLAINTEXT}"
  shift
  base=$((30000 + RANDOM % 2000))
  for i in 1 2 3; do voters+="${voters:+,}$i@127.0.0.1:$((base + 2 * i + 1))"; done
  bootstrap=""
  for i in 1 2 3; do
    RUST_LOG="${WEIR_LOG:-info}" "$weir" --listen "$listener://127.0.0.1:$((base + 2 * i)),CONTROLLER://127.0.0.1:$((base + 2 * i + 1))" \
      --data-dir "$work/$i" --node-id $i --set process.roles=broker,controller --set "controller.quorum.voters=$voters" \
      --set controller.listener.names=CONTROLLER --set auto.leader.rebalance.enable=false "$@" > "$work/$i.log" 2>&1 &
    weir_pids+=($!)
    bootstrap+="${bootstrap:+,}127.0.0.1:$((base + 2 * i))"
  done
  for i in 1 2 3; do
    for _ in $(seq 1 300); do grep -q "weir started" "$work/$i.log" && break; sleep 0.1; done
    grep -q "weir started" "$work/$i.log" || { echo "node $i did not start"; cat "$work/$i.log"; return 1; }
  done
}
# Stops every node with SIGTERM; fails if one does not exit cleanly. With a non-zero
# argument (the caller's status), the nodes' log tails are printed.
stop_weir_cluster() {
  local status=0 p i
  for p in "${weir_pids[@]}"; do kill -TERM "$p"; done
  for p in "${weir_pids[@]}"; do wait "$p" || { echo "a node did not exit cleanly"; status=1; }; done
  weir_pids=()
  if [ "${1:-0}" -ne 0 ] || [ $status -ne 0 ]; then
    for i in 1 2 3; do echo "--- node $i ---"; tail -30 "$work/$i.log"; done
  fi
  return $status
}
