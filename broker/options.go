package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Options configure a Broker. Zero values take the defaults documented on
// each field.
type Options struct {
	// NodeID names this edge in the cluster; it must be unique among the
	// edges on one backbone. Required.
	NodeID string
	// Logger receives the broker's logs. Default: slog.Default().
	Logger *slog.Logger
	// Backbone connects the edge to the other edges and to stored state.
	// Required.
	Backbone Backbone
	// Authenticator decides who may connect. Default: Anonymous{Allow: false}.
	Authenticator Authenticator
	// MaxPacketSize is the largest packet accepted from a client, in bytes
	// (fixed header included). Default 1 MiB; the MQTT maximum is 256 MiB.
	MaxPacketSize int
	// MaxInflight is how many QoS ≥ 1 messages may be unacknowledged per
	// client in each direction. Default 32.
	MaxInflight int
	// MaxQueued is how many messages may wait in a connected client's
	// outbound queue; beyond it, new live messages for that client are
	// dropped (counted and logged). Default 10000.
	MaxQueued int
	// MaxConnections caps the connections this edge accepts; 0 means
	// unlimited. Beyond it, CONNECT gets "server unavailable".
	MaxConnections int
	// ConnectTimeout is how long a new connection may take to send
	// CONNECT. Default 10 s.
	ConnectTimeout time.Duration
	// WriteTimeout bounds one write to a client; a client that does not
	// read for this long is disconnected. Default 30 s.
	WriteTimeout time.Duration
	// SessionExpiry is how long a persistent session outlives its
	// connection (MQTT 3.1.1 sessions; MQTT 5 clients ask for their own,
	// capped at this). Default 24 h.
	SessionExpiry time.Duration
	// MaxKeepAlive caps the keep-alive a client may ask for (0: no cap).
	MaxKeepAlive time.Duration
	// BackboneTimeout bounds each call to the backbone on the connect and
	// subscribe paths. Default 5 s.
	BackboneTimeout time.Duration
}

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Authenticator == nil {
		o.Authenticator = Anonymous{}
	}
	if o.MaxPacketSize == 0 {
		o.MaxPacketSize = 1 << 20
	}
	if o.MaxInflight == 0 {
		o.MaxInflight = 32
	}
	if o.MaxQueued == 0 {
		o.MaxQueued = 10000
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = 30 * time.Second
	}
	if o.SessionExpiry == 0 {
		o.SessionExpiry = 24 * time.Hour
	}
	if o.BackboneTimeout == 0 {
		o.BackboneTimeout = 5 * time.Second
	}
}

func (o *Options) validate() error {
	var errs []error
	if o.NodeID == "" {
		errs = append(errs, errors.New("NodeID is required"))
	}
	if o.Backbone == nil {
		errs = append(errs, errors.New("Backbone is required"))
	}
	if o.MaxPacketSize < 0 || o.MaxPacketSize > 268435455+5 {
		errs = append(errs, fmt.Errorf("MaxPacketSize %d out of range", o.MaxPacketSize))
	}
	if o.MaxInflight < 1 || o.MaxInflight > 65535 {
		errs = append(errs, fmt.Errorf("MaxInflight %d out of range 1..65535", o.MaxInflight))
	}
	if o.MaxQueued < 1 {
		errs = append(errs, fmt.Errorf("MaxQueued %d must be positive", o.MaxQueued))
	}
	if o.MaxConnections < 0 {
		errs = append(errs, fmt.Errorf("MaxConnections %d must not be negative", o.MaxConnections))
	}
	return errors.Join(errs...)
}
