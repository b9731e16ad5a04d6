#!/usr/bin/env bash
# kcat (Debian's, on an older librdkafka) against Weir: metadata, produce and consume with a codec.
set -euo pipefail
B="$1"
T="kcat-$RANDOM$RANDOM"
kcat -V 2>&1 | grep -i "version" || true
kcat -b "$B" -L -J > /tmp/kcat-meta.json
grep -q '"brokers"' /tmp/kcat-meta.json || { echo "kcat -L: no brokers"; exit 1; }
for codec in none gzip snappy lz4 zstd; do
  topic="$T-$codec"
  seq 1 500 | sed "s/^/$codec-/" > /tmp/kcat-in.txt
  kcat -b "$B" -P -t "$topic" -z "$codec" -k key -l /tmp/kcat-in.txt
  kcat -b "$B" -C -t "$topic" -o beginning -e -q -f '%k:%s\n' > /tmp/kcat-out.txt
  if ! diff <(sed 's/^/key:/' /tmp/kcat-in.txt) /tmp/kcat-out.txt > /dev/null; then
    echo "kcat $codec: consumed data differs from produced"; diff <(sed 's/^/key:/' /tmp/kcat-in.txt) /tmp/kcat-out.txt | head; exit 1
  fi
  cp /tmp/kcat-in.txt "/tmp/kcat-in-$codec.txt"
  echo "kcat $codec: 500 records round-tripped"
done
kcat -b "$B" -L -t "$T-none" | grep -q "partition 0, leader" || { echo "kcat -L -t: partition missing"; exit 1; }
# balanced consumer group (-G): reads everything, commits, and a second run finds nothing new
G="kcat-group-$RANDOM$RANDOM"
timeout 60 kcat -b "$B" -G "$G" -o beginning -e -q -f '%s\n' "$T-gzip" > /tmp/kcat-group.txt || true
if ! diff <(sort /tmp/kcat-in-gzip.txt) <(sort /tmp/kcat-group.txt) > /dev/null; then
  echo "kcat -G: consumed $(wc -l < /tmp/kcat-group.txt) records, expected 500"; exit 1
fi
echo "kcat -G: 500 records through a consumer group"
echo "kcat: ok"
