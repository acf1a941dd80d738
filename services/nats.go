package services

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedNATSConfig configures the NATS server `relay serve` runs in
// process.
type EmbeddedNATSConfig struct {
	// DataDir holds JetStream's files (under DataDir/jetstream).
	DataDir string
	// Addr, if set, exposes the server to other edges (HOST:PORT); empty
	// keeps it in process only.
	Addr string
	// Name is the server name. Default "relay".
	Name string
	// Logger receives the server's notices and errors.
	Logger *slog.Logger
}

// embeddedMaxControlLine lets MQTT topics of up to 65535 bytes through
// even when every byte is escaped.
const embeddedMaxControlLine = 256 << 10

// StartEmbeddedNATS starts a NATS server with JetStream and waits until it
// is ready.
func StartEmbeddedNATS(cfg EmbeddedNATSConfig) (*server.Server, error) {
	if cfg.Name == "" {
		cfg.Name = "relay"
	}
	opts := &server.Options{
		ServerName:     cfg.Name,
		JetStream:      true,
		StoreDir:       filepath.Join(cfg.DataDir, "jetstream"),
		NoSigs:         true,
		MaxPayload:     8 << 20, // an MQTT packet (≤ 1 MiB default, configurable) plus envelope
		MaxControlLine: embeddedMaxControlLine,
		MaxPending:     256 << 20,
		DontListen:     cfg.Addr == "",
	}
	if cfg.Addr != "" {
		host, port, err := net.SplitHostPort(cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("nats address %q: %w", cfg.Addr, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("nats address %q: %w", cfg.Addr, err)
		}
		if p == 0 {
			p = server.RANDOM_PORT
		}
		opts.Host, opts.Port = host, p
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if cfg.Logger != nil {
		ns.SetLoggerV2(&natsLogger{cfg.Logger.With("component", "nats")}, false, false, false)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("embedded nats: not ready after 30s")
	}
	return ns, nil
}

// natsLogger adapts slog to nats-server's logger.
type natsLogger struct{ l *slog.Logger }

// Noticef logs nats-server's notices at debug level (they are chatty at
// start-up), except those about slow consumers, which mean lost messages.
func (n *natsLogger) Noticef(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if strings.Contains(msg, "Slow Consumer") {
		n.l.Warn(msg)
		return
	}
	n.l.Debug(msg)
}
func (n *natsLogger) Warnf(format string, v ...any)  { n.l.Warn(fmt.Sprintf(format, v...)) }
func (n *natsLogger) Fatalf(format string, v ...any) { n.l.Error(fmt.Sprintf(format, v...)) }
func (n *natsLogger) Errorf(format string, v ...any) { n.l.Error(fmt.Sprintf(format, v...)) }
func (n *natsLogger) Debugf(format string, v ...any) { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n *natsLogger) Tracef(format string, v ...any) {}
