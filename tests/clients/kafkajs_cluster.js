// KafkaJS's admin against a three-broker Weir cluster: AlterPartitionReassignments and
// ListPartitionReassignments move a partition from brokers 1,2 to 2,3 with its records, and
// reorder the replicas of `ops-elect` to 2,1 (leadership stays; python_cluster.py elects).
const { Kafka, logLevel } = require('kafkajs')

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function replicasOf (admin, topic) {
  const meta = await admin.fetchTopicMetadata({ topics: [topic] })
  const p = meta.topics[0].partitions.find((p) => p.partitionId === 0)
  return { replicas: p.replicas, leader: p.leader, isr: p.isr.slice().sort() }
}

async function waitFor (what, f) {
  const deadline = Date.now() + 30000
  for (;;) {
    if (await f()) return
    if (Date.now() > deadline) throw new Error(`not within 30 s: ${what}`)
    await sleep(200)
  }
}

async function main () {
  const brokers = process.argv[2].split(',')
  const kafka = new Kafka({ clientId: 'weir-ci-cluster', brokers, logLevel: logLevel.WARN })
  const admin = kafka.admin()
  await admin.connect()
  const topic = `kjs-move-${Date.now()}`
  await admin.createTopics({ topics: [{ topic, replicaAssignment: [{ partition: 0, replicas: [1, 2] }] }], waitForLeaders: true })
  const producer = kafka.producer()
  await producer.connect()
  const values = Array.from({ length: 200 }, (_, i) => `v-${i}`)
  await producer.send({ topic, acks: -1, messages: values.map((value) => ({ partition: 0, value })) })
  await admin.alterPartitionReassignments({ topics: [{ topic, partitionAssignment: [{ partition: 0, replicas: [2, 3] }] }] })
  await waitFor('the move to brokers 2 and 3', async () => {
    const listed = await admin.listPartitionReassignments({ topics: [{ topic, partitions: [0] }] })
    const now = await replicasOf(admin, topic)
    return listed.topics.length === 0 && JSON.stringify(now.replicas) === '[2,3]' && JSON.stringify(now.isr) === '[2,3]'
  })
  await producer.send({ topic, acks: -1, messages: [{ partition: 0, value: 'after' }] })
  const consumer = kafka.consumer({ groupId: `kjs-move-${Date.now()}` })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  const got = []
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`consumed ${got.length} of 201`)), 30000)
    consumer.run({
      eachMessage: async ({ message }) => {
        got.push(message.value.toString())
        if (got.length === 201) { clearTimeout(timer); resolve() }
      }
    })
  })
  if (JSON.stringify(got) !== JSON.stringify([...values, 'after'])) throw new Error('moved partition lost or reordered records')
  await consumer.disconnect()

  // reorder: the preferred leader becomes 2, broker 1 keeps leading until an election
  const elect = 'ops-elect'
  await admin.createTopics({ topics: [{ topic: elect, replicaAssignment: [{ partition: 0, replicas: [1, 2] }] }], waitForLeaders: true })
  await waitFor('both replicas of ops-elect in sync', async () => JSON.stringify((await replicasOf(admin, elect)).isr) === '[1,2]')
  await admin.alterPartitionReassignments({ topics: [{ topic: elect, partitionAssignment: [{ partition: 0, replicas: [2, 1] }] }] })
  await waitFor('ops-elect reordered', async () => JSON.stringify((await replicasOf(admin, elect)).replicas) === '[2,1]')
  const after = await replicasOf(admin, elect)
  if (after.leader !== 1) throw new Error(`reordering moved leadership to ${after.leader}`)
  await producer.disconnect()
  await admin.disconnect()
  console.log('kafkajs cluster operations: ok (reassignment with records kept, reorder)')
}

main().catch((e) => { console.error(e); process.exit(1) })
