#!/usr/bin/env bash
# The secure listeners with Debian's kcat and the Python clients: SSL, SASL_PLAINTEXT (PLAIN,
# SCRAM-SHA-256, SCRAM-SHA-512) and SASL_SSL; right credentials work, wrong ones are refused.
# Certificates are generated here with openssl (nothing secret is committed).
# Usage: tests/clients/security.sh path/to/weir
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
weir="$(realpath "$1")"
work="$(mktemp -d)"
cd "$work"
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=weir-ci-ca" 2> /dev/null
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" 2> /dev/null
printf "subjectAltName=IP:127.0.0.1,DNS:localhost\n" > san.cnf
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile san.cnf 2> /dev/null
cat server.key server.pem > keystore.pem # Kafka's PEM key store: the key and its chain in one file
log="$work/weir.log"
RUST_LOG=info "$weir" --data-dir "$work/data" \
  --set "listeners=SSL://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0" \
  --set "ssl.keystore.location=$work/keystore.pem" \
  --add-scram 'SCRAM-SHA-256=[name=alice,password=alice-secret]' \
  --add-scram 'SCRAM-SHA-512=[name=alice,password=alice-secret]' > "$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
addr_of() { sed -n "s/.*weir listening addr=\([^ ]*\) listener=$1 .*/\1/p" "$log" | head -1; }
for _ in $(seq 1 100); do
  [ -n "$(addr_of SASL_SSL)" ] && break
  sleep 0.1
done
SSL="$(addr_of SSL)"; SASL="$(addr_of SASL_PLAINTEXT)"; SASL_SSL="$(addr_of SASL_SSL)"
[ -n "$SASL_SSL" ] || { echo "weir did not start"; cat "$log"; exit 1; }
echo "weir at SSL=$SSL SASL_PLAINTEXT=$SASL SASL_SSL=$SASL_SSL"
status=0
roundtrip() { # name, bootstrap, kcat options...
  local name="$1" b="$2"; shift 2
  local topic="sec-$RANDOM$RANDOM"
  seq 1 200 | sed "s/^/$name-/" > in.txt
  kcat -b "$b" "$@" -P -t "$topic" -l in.txt
  kcat -b "$b" "$@" -C -t "$topic" -o beginning -e -q > out.txt
  if diff in.txt out.txt > /dev/null; then echo "kcat $name: 200 records round-tripped"; else echo "kcat $name: data differs"; status=1; fi
}
refused() { # name, bootstrap, kcat options...
  local name="$1" b="$2"; shift 2
  if timeout 20 kcat -b "$b" "$@" -L -m 5 > /dev/null 2>&1; then echo "kcat $name: wrong credentials were accepted"; status=1; else echo "kcat $name: refused"; fi
}
tls=(-X security.protocol=SSL -X "ssl.ca.location=$work/ca.pem")
roundtrip SSL "$SSL" "${tls[@]}"
refused "SSL without the CA" "$SSL" -X security.protocol=SSL -X "ssl.ca.location=/etc/ssl/certs/ca-certificates.crt"
for mech in PLAIN SCRAM-SHA-256 SCRAM-SHA-512; do
  sasl=(-X security.protocol=SASL_PLAINTEXT -X "sasl.mechanisms=$mech" -X sasl.username=alice)
  roundtrip "SASL_PLAINTEXT $mech" "$SASL" "${sasl[@]}" -X sasl.password=alice-secret
  refused "SASL_PLAINTEXT $mech wrong password" "$SASL" "${sasl[@]}" -X sasl.password=wrong
done
sasl_ssl=(-X security.protocol=SASL_SSL -X "ssl.ca.location=$work/ca.pem" -X sasl.mechanisms=SCRAM-SHA-512 -X sasl.username=alice)
roundtrip "SASL_SSL SCRAM-SHA-512" "$SASL_SSL" "${sasl_ssl[@]}" -X sasl.password=alice-secret
refused "SASL_SSL wrong password" "$SASL_SSL" "${sasl_ssl[@]}" -X sasl.password=wrong
python3 "$here/python_security.py" "$SASL_SSL" "$work/ca.pem" || status=1
node "$here/kafkajs_security.js" "$SASL_SSL" "$work/ca.pem" || status=1
if grep -q "alice-secret" "$log"; then echo "a password reached the broker log"; status=1; fi
grep -q "failed authentication" "$log" || { echo "failed authentications were not logged"; status=1; }
kill -TERM $pid
wait $pid || { echo "weir did not exit cleanly"; status=1; }
trap - EXIT
if [ $status -ne 0 ]; then echo "--- weir log ---"; tail -50 "$log"; fi
[ $status -eq 0 ] && echo "security: ok"
exit $status
