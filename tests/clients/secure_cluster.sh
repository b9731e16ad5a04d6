#!/usr/bin/env bash
# Debian's kcat and confluent-kafka against a secure three-broker cluster: SASL_SSL
# (SCRAM-SHA-512) for clients and between brokers, an SSL controller listener requiring the
# brokers' certificate, ACLs on with only User:broker and User:admin as super users.
# Certificates come from docker/secure/gen-certs.sh, as the secure compose file makes them.
# Usage: tests/clients/secure_cluster.sh path/to/weir
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
weir="$(realpath "$1")"
work="$(mktemp -d)"
source "$here/weir_procs.sh"
bash "$here/../../docker/secure/gen-certs.sh" "$work/certs"
trap kill_weir_cluster EXIT
jaas='org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="broker-secret";'
WEIR_CLIENT_LISTENER=SASL_SSL start_weir_cluster "$weir" \
  --set listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL \
  --set inter.broker.listener.name=SASL_SSL --set sasl.enabled.mechanisms=SCRAM-SHA-512 \
  --set sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512 \
  --set "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=$jaas" \
  --set "ssl.keystore.location=$work/certs/broker.pem" --set "ssl.truststore.location=$work/certs/ca.pem" \
  --set listener.name.controller.ssl.client.auth=required \
  --set 'ssl.principal.mapping.rules=RULE:^CN=([^,]+).*$/$1/,DEFAULT' \
  --set authorizer.class.name=acl --set 'super.users=User:broker;User:admin' \
  --set replica.lag.time.max.ms=3000 \
  --add-scram 'SCRAM-SHA-512=[name=broker,password=broker-secret]' \
  --add-scram 'SCRAM-SHA-512=[name=admin,password=admin-secret]'
echo "secure cluster at $bootstrap"
status=0
kc=(-X security.protocol=SASL_SSL -X "ssl.ca.location=$work/certs/ca.pem" -X sasl.mechanisms=SCRAM-SHA-512 -X sasl.username=admin -X sasl.password=admin-secret)
brokers=$(timeout 30 kcat -b "$bootstrap" "${kc[@]}" -L -m 10 | grep -c "at 127.0.0.1" || true)
if [ "$brokers" -eq 3 ]; then echo "kcat: metadata lists 3 brokers over SASL_SSL"; else echo "kcat: $brokers brokers listed"; status=1; fi
if timeout 20 kcat -b "$bootstrap" -L -m 5 > /dev/null 2>&1; then echo "kcat: plaintext was answered"; status=1; else echo "kcat: plaintext refused"; fi
python3 "$here/python_secure_cluster.py" "$bootstrap" "$work/certs/ca.pem" || status=1
topic=secure-kcat
seq 1 300 | sed "s/^/kcat-/" > "$work/in.txt"
kcat -b "$bootstrap" "${kc[@]}" -P -t "$topic" -p 0 -X acks=all -l "$work/in.txt" || status=1
kcat -b "$bootstrap" "${kc[@]}" -C -t "$topic" -p 0 -o beginning -e -q > "$work/out.txt" || status=1
if diff "$work/in.txt" "$work/out.txt" > /dev/null; then echo "kcat: 300 records round-tripped over SASL_SSL (acks=all, RF=3)"; else echo "kcat: data differs"; status=1; fi
if grep -q "broker-secret\|admin-secret" "$work"/?.log; then echo "a password reached a broker log"; status=1; fi
if grep -q "replica fetching from the leader fails" "$work"/?.log; then echo "a follower could not fetch"; status=1; fi
if grep -q "cannot persist share-partition state" "$work"/?.log; then echo "a share-state call failed"; status=1; fi
stop_weir_cluster $status || status=1
exit $status
