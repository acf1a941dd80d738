package broker

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/broker/packet"
	"github.com/relaymq/relay/broker/topic"
)

// Errors of the connection life cycle. reasonFor maps every error the broker
// meets to an MQTT reason code; it is the only place that does.
var (
	errShuttingDown       = errors.New("server shutting down")
	errTooManyConnections = errors.New("connection limit reached")
	errNotConnect         = errors.New("first packet is not CONNECT")
	errSecondConnect      = errors.New("second CONNECT")
	errKeepAlive          = errors.New("keep-alive timeout")
	errSlowClient         = errors.New("client does not read its messages")
	errBadTopicAlias      = errors.New("topic alias invalid")
	errReceiveMaximum     = errors.New("receive maximum exceeded")
)

// reasonFor maps an error to the MQTT reason code sent in CONNACK (for
// connect errors) or DISCONNECT (MQTT 5, for errors on a live connection).
func reasonFor(err error) packet.ReasonCode {
	var rc packet.ReasonCode
	switch {
	case err == nil:
		return packet.NormalDisconnection
	case errors.As(err, &rc):
		return rc
	case errors.Is(err, auth.ErrBadCredentials):
		return packet.BadUsernameOrPassword
	case errors.Is(err, auth.ErrNotAuthorized):
		return packet.NotAuthorized
	case errors.Is(err, auth.ErrThrottled):
		// 3.1.1 clients see 0x03 (server unavailable): try again later,
		// which is what a throttled client should do.
		return packet.ConnectionRateExceeded
	case errors.Is(err, ErrClientIDRejected):
		return packet.ClientIdentifierNotValid
	case errors.Is(err, auth.ErrUnavailable), errors.Is(err, ErrBackboneUnavailable),
		errors.Is(err, context.DeadlineExceeded):
		return packet.ServerUnavailable
	case errors.Is(err, errShuttingDown):
		return packet.ServerShuttingDown
	case errors.Is(err, errTooManyConnections):
		return packet.QuotaExceeded
	case errors.Is(err, errKeepAlive):
		return packet.KeepAliveTimeout
	case errors.Is(err, errSecondConnect), errors.Is(err, errNotConnect):
		return packet.ProtocolError
	case errors.Is(err, errBadTopicAlias):
		return packet.TopicAliasInvalid
	case errors.Is(err, errReceiveMaximum):
		return packet.ReceiveMaximumExceeded
	case errors.Is(err, topic.ErrWildcardInTopic), errors.Is(err, topic.ErrEmpty),
		errors.Is(err, topic.ErrTooLong), errors.Is(err, topic.ErrInvalidUTF8), errors.Is(err, topic.ErrNUL):
		return packet.TopicNameInvalid
	case errors.Is(err, errSlowClient):
		return packet.ImplementationSpecificError
	default:
		return packet.UnspecifiedError
	}
}

// reasonText returns the reason string sent with rc for err (MQTT 5): the
// error's own text where the client caused it (a broken rule it can fix),
// else the reason code's name, so that no internal detail leaks. It is
// at most 256 bytes.
func reasonText(rc packet.ReasonCode, err error) string {
	if err == nil || rc == packet.NormalDisconnection {
		return ""
	}
	msg := rc.String()
	switch rc {
	case packet.MalformedPacket, packet.ProtocolError, packet.TopicNameInvalid, packet.TopicFilterInvalid,
		packet.ReceiveMaximumExceeded, packet.TopicAliasInvalid, packet.PacketTooLarge,
		packet.PayloadFormatInvalid, packet.BadAuthenticationMethod, packet.ClientIdentifierNotValid,
		packet.QuotaExceeded:
		msg = err.Error()
	}
	if len(msg) > 256 {
		msg = strings.ToValidUTF8(msg[:256], "")
	}
	return msg
}

// isNetClose reports whether err is the ordinary end of a connection
// (EOF, reset, closed), which is logged at debug level only.
func isNetClose(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var oe *net.OpError
	if errors.As(err, &oe) && !errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	return false
}
