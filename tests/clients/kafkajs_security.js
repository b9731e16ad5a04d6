// KafkaJS over SASL_SSL with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512: a produce/consume round
// trip with the right password, a refusal with a wrong one. Usage: node kafkajs_security.js HOST:PORT CA_FILE
const fs = require('fs')
const { Kafka, logLevel } = require('kafkajs')

async function roundTrip (broker, ca, mechanism) {
  const kafka = new Kafka({
    clientId: 'weir-ci-sec',
    brokers: [broker],
    ssl: { ca: [fs.readFileSync(ca, 'utf-8')] },
    sasl: { mechanism, username: 'alice', password: 'alice-secret' },
    logLevel: logLevel.NOTHING
  })
  const topic = `kafkajs-sec-${Date.now()}-${Math.floor(Math.random() * 1e9)}`
  const admin = kafka.admin()
  await admin.connect()
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true })
  await admin.disconnect()
  const producer = kafka.producer()
  await producer.connect()
  const sent = Array.from({ length: 50 }, (_, i) => `${mechanism}-${i}`)
  await producer.send({ topic, messages: sent.map(value => ({ value })), acks: -1 })
  await producer.disconnect()
  const consumer = kafka.consumer({ groupId: `g-${topic}` })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  const got = []
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${got.length} records`)), 30000)
    consumer.run({
      eachMessage: async ({ message }) => {
        got.push(message.value.toString())
        if (got.length === sent.length) { clearTimeout(timer); resolve() }
      }
    })
  })
  await consumer.disconnect()
  if (JSON.stringify(got) !== JSON.stringify(sent)) throw new Error(`${mechanism}: consumed data differs`)
  console.log(`kafkajs SASL_SSL ${mechanism}: 50 records round-tripped`)
}

async function refused (broker, ca) {
  const kafka = new Kafka({
    clientId: 'weir-ci-sec',
    brokers: [broker],
    ssl: { ca: [fs.readFileSync(ca, 'utf-8')] },
    sasl: { mechanism: 'scram-sha-512', username: 'alice', password: 'wrong' },
    retry: { retries: 0 },
    logLevel: logLevel.NOTHING
  })
  const admin = kafka.admin()
  try {
    await admin.connect()
  } catch (e) {
    if (!/SASL|uthentication/.test(`${e.name} ${e.message}`)) throw new Error(`unexpected error: ${e}`)
    console.log('kafkajs SASL_SSL wrong password: refused')
    return
  }
  throw new Error('kafkajs: a wrong password was accepted')
}

async function main () {
  const [broker, ca] = process.argv.slice(2)
  for (const mechanism of ['plain', 'scram-sha-256', 'scram-sha-512']) await roundTrip(broker, ca, mechanism)
  await refused(broker, ca)
  console.log('kafkajs security: ok')
}

main().catch(e => { console.error(e); process.exit(1) })
