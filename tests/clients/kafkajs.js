// KafkaJS against Weir: admin create/list topics, produce, and check offsets.
const { Kafka, logLevel, CompressionTypes, ConfigResourceTypes } = require('kafkajs')

async function main () {
  const broker = process.argv[2]
  const kafka = new Kafka({ clientId: 'weir-ci', brokers: [broker], logLevel: logLevel.WARN })
  const admin = kafka.admin()
  await admin.connect()
  const topic = `kafkajs-${Date.now()}-${Math.floor(Math.random() * 1e9)}`
  const created = await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true })
  if (!created) throw new Error('createTopics returned false')
  const again = await admin.createTopics({ topics: [{ topic, numPartitions: 3 }] })
  if (again) throw new Error('creating an existing topic should return false')
  const topics = await admin.listTopics()
  if (!topics.includes(topic)) throw new Error(`listTopics lacks ${topic}`)

  const producer = kafka.producer({ allowAutoTopicCreation: false })
  await producer.connect()
  const perPartition = 300
  for (let p = 0; p < 3; p++) {
    const messages = Array.from({ length: perPartition }, (_, i) => ({ key: `k${i}`, value: `p${p}-v${i}`, partition: p, headers: { h: `${i}` } }))
    const res = await producer.send({ topic, messages, acks: -1, compression: CompressionTypes.GZIP })
    if (res[0].errorCode !== 0 || res[0].baseOffset !== '0') throw new Error(`produce result ${JSON.stringify(res)}`)
  }
  await producer.disconnect()
  const offsets = await admin.fetchTopicOffsets(topic)
  for (const o of offsets) {
    if (o.high !== String(perPartition) || o.low !== '0') throw new Error(`offsets ${JSON.stringify(offsets)}`)
  }
  const meta = await admin.fetchTopicMetadata({ topics: [topic] })
  if (meta.topics[0].partitions.length !== 3) throw new Error('metadata partitions')
  // a group consumer reads everything back
  const consumer = kafka.consumer({ groupId: `kjs-${topic}` })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  const seen = new Set()
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`consumer saw ${seen.size} of ${3 * perPartition}`)), 60000)
    consumer.run({
      eachMessage: async ({ partition, message }) => {
        seen.add(`${partition}:${message.value.toString()}`)
        if (seen.size === 3 * perPartition) { clearTimeout(timer); resolve() }
      }
    }).catch(reject)
  })
  for (let p = 0; p < 3; p++) {
    for (let i = 0; i < perPartition; i++) {
      if (!seen.has(`${p}:p${p}-v${i}`)) throw new Error(`missing p${p}-v${i}`)
    }
  }
  await consumer.disconnect()
  await transactions(kafka, admin)
  await brokerLoggers(admin)
  await kafkaConfigNames(admin, topic)
  await admin.deleteTopics({ topics: [topic] })
  await admin.disconnect()
  console.log(`kafkajs ${require('kafkajs/package.json').version}: created, listed, produced ${3 * perPartition}, offsets checked, group consumer read all back: ok`)
}

// A transactional producer commits one transaction and aborts another; a (read_committed)
// group consumer sees exactly the committed records.
async function transactions (kafka, admin) {
  const topic = `kafkajs-txn-${Date.now()}-${Math.floor(Math.random() * 1e9)}`
  await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true })
  const producer = kafka.producer({ transactionalId: `kjs-${topic}`, idempotent: true, maxInFlightRequests: 1 })
  await producer.connect()
  const n = 200
  for (const [prefix, commit] of [['committed', true], ['aborted', false]]) {
    const txn = await producer.transaction()
    const messages = Array.from({ length: n }, (_, i) => ({ value: `${prefix}-${i}`, partition: i % 2 }))
    await txn.send({ topic, messages })
    if (commit) await txn.commit(); else await txn.abort()
  }
  await producer.disconnect()
  const consumer = kafka.consumer({ groupId: `kjs-${topic}` })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  const seen = []
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`transactional consumer saw ${seen.length} of ${n}`)), 60000)
    consumer.run({
      eachMessage: async ({ message }) => {
        seen.push(message.value.toString())
        if (seen.length === n) { clearTimeout(timer); setTimeout(resolve, 1000) }
      }
    }).catch(reject)
  })
  await consumer.disconnect()
  if (seen.length !== n || seen.some(v => !v.startsWith('committed-'))) {
    throw new Error(`read_committed consumer saw ${seen.length} records, aborted ones: ${seen.filter(v => v.startsWith('aborted-')).length}`)
  }
  console.log(`kafkajs transactions: ${n} committed records read, ${n} aborted ones hidden: ok`)
}

// DescribeConfigs on the BROKER_LOGGER resource (type 8): Weir's loggers and their levels.
async function brokerLoggers (admin) {
  const described = await admin.describeConfigs({
    includeSynonyms: false,
    resources: [{ type: ConfigResourceTypes.BROKER_LOGGER, name: '1' }]
  })
  const res = described.resources[0]
  if (res.errorCode !== 0) throw new Error(`broker loggers: ${JSON.stringify(res)}`)
  const levels = Object.fromEntries(res.configEntries.map(e => [e.configName, e.configValue]))
  if (levels.root !== 'INFO' || levels['weir::server::connection'] !== 'INFO') {
    throw new Error(`broker logger levels: ${JSON.stringify(levels)}`)
  }
  if (res.configEntries.some(e => e.configSource !== 6)) throw new Error('logger source should be DYNAMIC_BROKER_LOGGER_CONFIG')
  console.log(`kafkajs broker loggers: ${res.configEntries.length} loggers described: ok`)
}

// Kafka config names Weir does not act on are still Kafka's: accepted with their type and
// described (the names librdkafka's admin test sets).
async function kafkaConfigNames (admin, topic) {
  await admin.alterConfigs({
    resources: [
      { type: ConfigResourceTypes.BROKER, name: '1', configEntries: [{ name: 'sasl.kerberos.min.time.before.relogin', value: '58000' }] },
      { type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name: 'max.compaction.lag.ms', value: '3600000' }] }
    ]
  })
  const described = await admin.describeConfigs({
    includeSynonyms: false,
    resources: [
      { type: ConfigResourceTypes.BROKER, name: '1', configNames: ['sasl.kerberos.min.time.before.relogin', 'num.io.threads'] },
      { type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['max.compaction.lag.ms'] }
    ]
  })
  const values = described.resources.flatMap(r => r.configEntries.map(e => `${e.configName}=${e.configValue}`)).sort()
  const want = ['max.compaction.lag.ms=3600000', 'num.io.threads=8', 'sasl.kerberos.min.time.before.relogin=58000']
  if (JSON.stringify(values) !== JSON.stringify(want)) throw new Error(`kafka config names: ${JSON.stringify(values)}`)
  let refused = false
  try {
    await admin.alterConfigs({ resources: [{ type: ConfigResourceTypes.BROKER, name: '1', configEntries: [{ name: 'log.dirs', value: '/tmp/x' }] }] })
  } catch (e) {
    refused = e.type === 'INVALID_REQUEST'
  }
  if (!refused) throw new Error('altering read-only log.dirs should be INVALID_REQUEST')
  console.log('kafkajs kafka config names: kerberos/max.compaction.lag.ms accepted and described, log.dirs refused: ok')
}

main().catch(e => { console.error('kafkajs failed:', e); process.exit(1) })
