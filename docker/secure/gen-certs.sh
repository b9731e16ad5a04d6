#!/usr/bin/env bash
# Makes a test CA and one key store for the brokers of a secure Weir cluster:
#   gen-certs.sh DIR [HOST ...]
#   DIR/ca.pem      the CA certificate (clients' ssl.ca.location, brokers' ssl.truststore.location)
#   DIR/broker.pem  the brokers' key, then their certificate (ssl.keystore.location): subject
#                   CN=broker, valid for HOSTs (default: localhost 127.0.0.1), for server and
#                   client use (it is presented to other brokers and controllers too)
# Existing files are kept. Needs openssl.
set -euo pipefail
dir="$1"; shift
hosts=("$@"); [ ${#hosts[@]} -gt 0 ] || hosts=(localhost 127.0.0.1)
mkdir -p "$dir"
[ -f "$dir/broker.pem" ] && [ -f "$dir/ca.pem" ] && exit 0
san=""
for h in "${hosts[@]}"; do
  if [[ "$h" =~ ^[0-9.]+$ ]]; then san+="${san:+,}IP:$h"; else san+="${san:+,}DNS:$h"; fi
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=Weir cluster CA" \
  -keyout "$tmp/ca.key" -out "$dir/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=broker" -keyout "$tmp/broker.key" -out "$tmp/broker.csr" 2>/dev/null
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" > "$tmp/ext"
openssl x509 -req -in "$tmp/broker.csr" -CA "$dir/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial \
  -days 825 -extfile "$tmp/ext" -out "$tmp/broker.crt" 2>/dev/null
cat "$tmp/broker.key" "$tmp/broker.crt" > "$dir/broker.pem"
chmod 600 "$dir/broker.pem"
