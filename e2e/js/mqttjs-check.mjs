// mqttjs-check.mjs — MQTT.js (the npm package "mqtt") against a running
// Relay, over ws:// or wss://. services/ws_test.go runs it.
//
//   node mqttjs-check.mjs '{"url":"wss://127.0.0.1:8084/mqtt","username":"u@acme","password":"…",
//                           "protocolVersion":5,"ca":"/path/ca.pem","servername":"acme.relay.localhost",
//                           "host":"acme.relay.localhost:8084"}'
//
// It connects a subscriber and a publisher, subscribes, publishes at QoS 0
// and 1, and waits for both messages. It prints one JSON line per step and
// exits 0 on success, 1 on failure (within 10 s).

import fs from 'node:fs'
import mqtt from 'mqtt'

const cfg = JSON.parse(process.argv[2] ?? '{}')
const log = (step, extra = {}) => console.log(JSON.stringify({ step, ...extra }))
const fail = (err) => {
  log('fail', { error: String(err?.stack ?? err) })
  process.exit(1)
}
setTimeout(() => fail(new Error('timed out after 10 s')), 10_000).unref()

function options (clientId) {
  const o = {
    clientId,
    protocolVersion: cfg.protocolVersion ?? 4,
    username: cfg.username,
    password: cfg.password,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: 5_000,
    wsOptions: {}
  }
  if (cfg.host) o.wsOptions.headers = { Host: cfg.host }
  if (cfg.ca) {
    o.ca = fs.readFileSync(cfg.ca)
    o.rejectUnauthorized = true
  }
  if (cfg.servername) o.wsOptions.servername = cfg.servername // TLS SNI
  return o
}

try {
  const tag = `js-v${cfg.protocolVersion ?? 4}-${process.pid}`
  const topic = `mqttjs/${tag}`
  const sub = await mqtt.connectAsync(cfg.url, options(`${tag}-sub`))
  log('connected', { client: 'sub', protocolVersion: sub.options.protocolVersion })
  const pub = await mqtt.connectAsync(cfg.url, options(`${tag}-pub`))
  log('connected', { client: 'pub' })

  const want = new Map([['qos0', 0], ['qos1', 1]])
  const got = new Promise((resolve) => {
    sub.on('message', (t, payload, packet) => {
      const p = payload.toString()
      log('message', { topic: t, payload: p, qos: packet.qos })
      want.delete(p)
      if (want.size === 0) resolve()
    })
  })
  const granted = await sub.subscribeAsync(topic, { qos: 1 })
  log('subscribed', { granted: granted.map((g) => g.qos) })
  if (granted[0]?.qos !== 1) throw new Error(`SUBACK granted ${JSON.stringify(granted)}`)
  await pub.publishAsync(topic, 'qos0', { qos: 0 })
  await pub.publishAsync(topic, 'qos1', { qos: 1 })
  log('published')
  await got
  await Promise.all([sub.endAsync(), pub.endAsync()])
  log('ok')
  process.exit(0)
} catch (err) {
  fail(err)
}
