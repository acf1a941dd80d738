// Package e2e holds Relay's end-to-end tests: they build the real relay
// binary, run a NATS server with JetStream in the test process, start
// several `relay edge` processes (and one `relay serve`) on 127.0.0.1 with
// random ports, and drive them with the Eclipse Paho MQTT client — across
// edges, through SIGKILL and SIGTERM of edges, and through a restart of the
// NATS server.
//
// The suite takes about a minute and a half; `go test -short` skips it.
package e2e
