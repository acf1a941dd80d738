// Command natsmqtt runs nats-server's built-in MQTT (the version in go.mod)
// for bench/compare: one NATS server in this process with JetStream in
// -store and MQTT on -addr, until SIGINT or SIGTERM.
//
//	go run ./bench/compare/natsmqtt -addr 127.0.0.1:18833 -store /tmp/x
//	go run ./bench/compare/natsmqtt -version
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:1883", "MQTT listen address, host:port")
	store := flag.String("store", "", "JetStream directory (required)")
	version := flag.Bool("version", false, "print the nats-server version and exit")
	flag.Parse()
	if *version {
		fmt.Println(server.VERSION)
		return
	}
	if err := run(*addr, *store); err != nil {
		fmt.Fprintln(os.Stderr, "natsmqtt:", err)
		os.Exit(1)
	}
}

func run(addr, store string) error {
	if store == "" {
		return fmt.Errorf("-store is required")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("port %q: %w", port, err)
	}
	opts := &server.Options{
		ServerName: "natsmqtt",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT, // MQTT needs no NATS clients, but the listener is cheap
		JetStream:  true,
		StoreDir:   store,
		NoSigs:     true,
		NoLog:      true,
		MQTT:       server.MQTTOpts{Host: host, Port: p},
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return err
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return fmt.Errorf("not ready after 30s")
	}
	fmt.Printf("nats-server %s: MQTT on %s, JetStream in %s\n", server.VERSION, addr, store)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	ns.Shutdown()
	ns.WaitForShutdown()
	return nil
}
