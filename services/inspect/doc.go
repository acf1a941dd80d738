// Package inspect answers "what is live right now" across a Relay cluster,
// for the dashboard and the HTTP API, which may run in a process without an
// edge (relay control).
//
// Protocol (core NATS, JSON bodies). Every edge runs a Responder that
// answers, from its own broker, requests on
//
//	rly.ctl.inspect.<tenant>.<what>   clients, client, kick, topics, stats
//	rly.ctl.inspectall.stats          every tenant's counters (operator, usage sampling)
//
// with one reply per node carrying the node ID. The tenant is always a
// subject token and a responder only ever reads that tenant's state, so a
// request cannot see another tenant's data. The Inspector (the dashboard's
// side) publishes a request with a reply inbox and gathers replies until
// every live node has answered (live nodes: the RELAY_NODES heartbeats,
// watched) or Options.Timeout (300 ms) passes, then merges them.
//
// What lives in JetStream — offline persistent sessions (RELAY_SESSIONS)
// and their queue depth (RELAY_QUEUE messages per session subject), the
// time a retained message was stored (RELAY_RETAINED) — is read directly,
// read-only, with the jetstream API.
//
// Usage history: the Inspector samples every tenant's counters on every
// edge each Options.SampleInterval (10 s), sums the per-edge deltas per
// tenant and keeps Options.History (6 h) of them in a ring of frames; a
// frame holds only the tenants that were active in it.
//
// Subscriber matching ("did an HTTP publish match anyone?"): per tenant,
// the filters of every edge's routes (live subscriptions, including
// connected persistent sessions) and the QoS ≥ 1 filters of every stored
// persistent session (offline ones are queued for), cached for
// Options.MatchTTL (2 s) and refreshed in the background. A subscription
// made or dropped within that window, or on a node that did not answer in
// time, can be misjudged; the message itself is delivered regardless.
package inspect
