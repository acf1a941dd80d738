package bench

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/relaymq/relay/broker/packet"
)

// Scenario names a load shape.
type Scenario string

// The scenarios.
const (
	// FanIn: Clients publishers, each on its own topic, one subscriber on a
	// wildcard filter that matches them all.
	FanIn Scenario = "fanin"
	// FanOut: one publisher, Clients subscribers on its topic.
	FanOut Scenario = "fanout"
	// Pairs: Clients publisher/subscriber pairs, each pair on its own topic.
	Pairs Scenario = "pairs"
	// Latency: Clients pairs (default 1) publishing at a fixed Rate, each
	// message flushed on its own; the report centres on the end-to-end
	// latency percentiles.
	Latency Scenario = "latency"
	// Conn: Clients idle connections opened Concurrency at a time; reports
	// connects/s, holds them for Duration and, with PID, samples the
	// broker's resident memory per connection.
	Conn Scenario = "conn"
)

// Scenarios lists every scenario, in the order the help shows them.
var Scenarios = []Scenario{FanIn, FanOut, Pairs, Latency, Conn}

// minSize is the smallest payload: publisher index (4 bytes), sequence
// number (4) and send time (8), little-endian, then filler.
const minSize = 16

// Config is one benchmark run. The zero value of every field but Scenario
// and Addr means its default.
type Config struct {
	// Scenario is the load shape (required).
	Scenario Scenario
	// Addr is the broker's host:port (required).
	Addr string
	// Version is the MQTT protocol level: packet.V31, V311 or V5.
	// Default V311.
	Version byte
	// QoS of every publish and subscription: 0, 1 or 2.
	QoS byte
	// Size is the payload size in bytes, at least 16. Default 64.
	Size int
	// Clients is the number of publishers (fanin), subscribers (fanout),
	// pairs (pairs, latency) or connections (conn). Default 10 (fanin,
	// fanout, pairs), 1 (latency), 1000 (conn).
	Clients int
	// Duration is the measurement window (conn: how long the connections
	// are held). Default 10 s.
	Duration time.Duration
	// Rate limits each publisher to this many messages per second; 0 means
	// as fast as the broker takes them. Default 0, and 1000 for latency.
	Rate float64
	// Inflight is the QoS 1/2 window per publisher: messages sent and not
	// yet acknowledged (PUBACK, or PUBCOMP for QoS 2). Default 64; an MQTT 5
	// broker's Receive Maximum lowers it.
	Inflight int
	// Concurrency is how many connections are set up at once. Default 100.
	Concurrency int
	// Username and Password are sent in CONNECT when Username is not
	// empty. "{i}" in either is replaced by the client's index (0-based),
	// for per-client credentials.
	Username, Password string
	// Credentials, if any, replace Username and Password: client i uses
	// Credentials[i % len(Credentials)] (ReadCredentials reads a file).
	Credentials []Credential
	// Transport is TCP (default), TLS, WS or WSS; ParseURL sets it with
	// Addr and Path.
	Transport string
	// TLS configures TLS and WSS (default: system roots, the address's
	// host as server name). For WS its ServerName, if set, is the Host.
	TLS *tls.Config
	// Path is the WebSocket request path (default /mqtt).
	Path string
	// LocalIPs, if any, are the source addresses of the connections,
	// client n on LocalIPs[n % len(LocalIPs)] (ParseIPs reads a list).
	LocalIPs []net.IP
	// Persistent asks for persistent sessions (Clean Session 0, or Clean
	// Start 0 with a Session Expiry Interval of one hour in MQTT 5). Default
	// false: clean sessions.
	Persistent bool
	// KeepAlive is sent in CONNECT; a PINGREQ goes to every connection
	// that wrote nothing for half of it. Default 60 s.
	KeepAlive time.Duration
	// PID is the broker's process ID; conn samples /proc/PID/status for its
	// resident memory. 0: no sampling.
	PID int
	// Drain bounds the wait, after the window, for outstanding
	// acknowledgements and messages still on their way. Default 10 s.
	Drain time.Duration
	// ConnectTimeout bounds each connection's TCP connect plus CONNACK and
	// SUBACK. Default 10 s.
	ConnectTimeout time.Duration
	// TopicPrefix is the first levels of every topic; a random run ID is
	// appended, so runs never see each other's messages. Default "bench".
	TopicPrefix string
	// Progress, when not nil, receives one line per second while the run
	// goes.
	Progress io.Writer
}

// ErrConfig is wrapped by every configuration error Run returns.
var ErrConfig = errors.New("invalid benchmark configuration")

// withDefaults returns c with defaults applied, or an error wrapping
// ErrConfig.
func (c Config) withDefaults() (Config, error) {
	bad := func(format string, a ...any) (Config, error) {
		return c, fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...))
	}
	switch c.Scenario {
	case FanIn, FanOut, Pairs, Latency, Conn:
	default:
		return bad("unknown scenario %q (want one of %s)", c.Scenario, scenarioList())
	}
	if c.Addr == "" {
		return bad("no broker address")
	}
	if c.Version == 0 {
		c.Version = packet.V311
	}
	if c.Version < packet.V31 || c.Version > packet.V5 {
		return bad("MQTT version %d (want 3, 4 or 5)", c.Version)
	}
	if c.QoS > 2 {
		return bad("QoS %d", c.QoS)
	}
	if c.Size == 0 {
		c.Size = 64
	}
	if c.Size < minSize {
		return bad("payload size %d under %d bytes (publisher, sequence number and timestamp)", c.Size, minSize)
	}
	if c.Clients == 0 {
		switch c.Scenario {
		case Latency:
			c.Clients = 1
		case Conn:
			c.Clients = 1000
		default:
			c.Clients = 10
		}
	}
	if c.Clients < 0 {
		return bad("%d clients", c.Clients)
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Duration < 0 {
		return bad("duration %v", c.Duration)
	}
	if c.Rate == 0 && c.Scenario == Latency {
		c.Rate = 1000
	}
	if c.Rate < 0 {
		return bad("rate %v", c.Rate)
	}
	if c.Inflight == 0 {
		c.Inflight = 64
	}
	if c.Inflight < 1 || c.Inflight > 65535 {
		return bad("in-flight window %d (1..65535)", c.Inflight)
	}
	if c.Concurrency == 0 {
		c.Concurrency = 100
	}
	if c.Concurrency < 1 {
		return bad("concurrency %d", c.Concurrency)
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = 60 * time.Second
	}
	if c.KeepAlive < time.Second || c.KeepAlive > 65535*time.Second {
		return bad("keep-alive %v (1s..65535s)", c.KeepAlive)
	}
	if c.Drain == 0 {
		c.Drain = 10 * time.Second
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.TopicPrefix == "" {
		c.TopicPrefix = "bench"
	}
	if strings.ContainsAny(c.TopicPrefix, "+#") {
		return bad("topic prefix %q has a wildcard", c.TopicPrefix)
	}
	return c, nil
}

func scenarioList() string {
	s := make([]string, len(Scenarios))
	for i, sc := range Scenarios {
		s[i] = string(sc)
	}
	return strings.Join(s, ", ")
}

// credential expands "{i}" in s to the client index i.
func credential(s string, i int) string {
	if !strings.Contains(s, "{i}") {
		return s
	}
	return strings.ReplaceAll(s, "{i}", fmt.Sprint(i))
}
