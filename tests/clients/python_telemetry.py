"""KIP-714 client telemetry with Python clients: kafka-python's admin creates a CLIENT_METRICS
subscription (as kafka-client-metrics.sh does), describes and lists it; a confluent-kafka
producer (librdkafka) then pushes its metrics, which must appear on Weir's /metrics."""
import sys
import time
import urllib.request
import uuid

BOOTSTRAP, METRICS = sys.argv[1], sys.argv[2]


def scrape():
    with urllib.request.urlopen(f"http://{METRICS}/metrics", timeout=10) as r:
        return r.read().decode()


def main():
    import kafka
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
    import confluent_kafka
    from confluent_kafka import Producer

    name = f"py-telemetry-{uuid.uuid4().hex[:8]}"
    client_id = f"{name}-producer"
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    configs = {"metrics": "org.apache.kafka.producer.", "interval.ms": "500", "match": f"client_id={client_id}"}
    # a new subscription has no configs to describe yet (in Kafka too): skip the client-side check
    admin.alter_configs([ConfigResource(ConfigResourceType.CLIENT_METRICS, name, configs=configs)], raise_on_unknown=False)
    described = admin.describe_configs([ConfigResource(ConfigResourceType.CLIENT_METRICS, name)])
    text = str(described)
    assert "interval.ms" in text and "500" in text, f"describe: {text}"
    listed = admin.list_config_resources([ConfigResourceType.CLIENT_METRICS])
    assert name in str(listed), f"list_config_resources: {listed}"
    admin.close()

    p = Producer({"bootstrap.servers": BOOTSTRAP, "client.id": client_id})
    for i in range(10):
        p.produce(f"{name}-topic", value=f"v{i}".encode())
    assert p.flush(30) == 0
    deadline = time.time() + 30
    lines = []
    while time.time() < deadline and not lines:
        p.poll(0.2)
        lines = [l for l in scrape().splitlines() if f'client_id="{client_id}"' in l]
    assert lines, "the producer's metrics never appeared on /metrics"
    assert all(l.startswith("org_apache_kafka_producer_") for l in lines), lines
    assert any('client_software_name="confluent-kafka-python"' in l or 'client_software_name="librdkafka"' in l
               for l in lines), lines
    p.flush(5)
    print(f"kafka-python {kafka.__version__} subscription + confluent-kafka {confluent_kafka.version()} "
          f"(librdkafka {confluent_kafka.libversion()[0]}) pushed {len(lines)} metric series: ok")


if __name__ == "__main__":
    main()
