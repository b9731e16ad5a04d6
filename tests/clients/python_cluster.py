"""confluent-kafka's AdminClient against a three-broker Weir cluster, after kafkajs_cluster.js
reordered `ops-elect` to replicas 2,1 with broker 1 still leading: a preferred election moves
leadership to broker 2; a second one is not needed (ELECTION_NOT_NEEDED)."""
import sys
import time

from confluent_kafka import ElectionType, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient
import confluent_kafka

BOOTSTRAP = sys.argv[1]
print("confluent-kafka", confluent_kafka.version(), "librdkafka", confluent_kafka.libversion()[0])
admin = AdminClient({"bootstrap.servers": BOOTSTRAP})


def leader():
    return admin.list_topics("ops-elect", timeout=10).topics["ops-elect"].partitions[0].leader


assert leader() == 1, leader()
done = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition("ops-elect", 0)]).result(timeout=30)
errors = {(tp.topic, tp.partition): err for tp, err in done.items()}
assert errors[("ops-elect", 0)] is None, errors
deadline = time.time() + 15
while leader() != 2:
    assert time.time() < deadline, f"leader still {leader()}"
    time.sleep(0.2)
again = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition("ops-elect", 0)]).result(timeout=30)
err = again[TopicPartition("ops-elect", 0)]
assert err is not None and err.code() == KafkaError.ELECTION_NOT_NEEDED, err
print("confluent-kafka elect_leaders: ok (preferred leader elected, then not needed)")
