package natsbus

import (
	"encoding/binary"
	"errors"
	"sync"
	"time"
	"unsafe"

	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/broker/packet"
	"github.com/relaymq/relay/broker/topic"
)

// The envelope is the NATS message body of every MQTT message on the
// backbone. The topic travels in the subject (see subjects.go); the body is
//
//	byte 0     envelope version (1)
//	byte 1     flags: bits 0-1 QoS, bit 2 retain, bit 3 expiry, bit 4 properties
//	uvarint    length of origin node ID, then its bytes
//	uvarint    length of publisher client ID, then its bytes
//	[8 bytes]  expiry, Unix nanoseconds, big endian (flag bit 3)
//	[uvarint   length of the properties block, then the block (flag bit 4)]
//	[uvarint   length of the topic, then the topic (flag bit 5: session
//	           queue messages, whose subject names the session)]
//	rest       payload
//
// A binary envelope instead of NATS headers keeps the per-message path free
// of header parsing and map allocations.

const envelopeVersion = 1

const (
	flagRetain = 1 << 2
	flagExpiry = 1 << 3
	flagProps  = 1 << 4
	flagTopic  = 1 << 5
)

var errBadEnvelope = errors.New("natsbus: malformed envelope")

// appendEnvelope appends m's envelope to dst; withTopic includes the topic
// (for subjects that do not carry it).
func appendEnvelope(dst []byte, m *broker.Message, withTopic bool) []byte {
	flags := m.QoS & 3
	if withTopic {
		flags |= flagTopic
	}
	if m.Retain {
		flags |= flagRetain
	}
	if !m.Expiry.IsZero() {
		flags |= flagExpiry
	}
	if m.Props != nil {
		flags |= flagProps
	}
	dst = append(dst, envelopeVersion, flags)
	dst = binary.AppendUvarint(dst, uint64(len(m.Origin)))
	dst = append(dst, m.Origin...)
	dst = binary.AppendUvarint(dst, uint64(len(m.ClientID)))
	dst = append(dst, m.ClientID...)
	if !m.Expiry.IsZero() {
		dst = binary.BigEndian.AppendUint64(dst, uint64(m.Expiry.UnixNano()))
	}
	if m.Props != nil {
		var tmp [512]byte
		block := appendProps(tmp[:0], m.Props)
		dst = binary.AppendUvarint(dst, uint64(len(block)))
		dst = append(dst, block...)
	}
	if withTopic {
		dst = binary.AppendUvarint(dst, uint64(len(m.Topic)))
		dst = append(dst, m.Topic...)
	}
	return append(dst, m.Payload...)
}

// decodeEnvelope fills m from an envelope; m's byte slices alias data.
// Node IDs are interned in origins (nil: not interned).
func decodeEnvelope(m *broker.Message, data []byte, origins *originTable) error {
	return decodeEnvelopeRoom(m, data, origins, nil)
}

// decodeEnvelopeRoom is decodeEnvelope, with the client ID copied into
// room's spare capacity if it fits (room's bytes are never written again,
// so the string may share them).
func decodeEnvelopeRoom(m *broker.Message, data []byte, origins *originTable, room []byte) error {
	if len(data) < 2 || data[0] != envelopeVersion {
		return errBadEnvelope
	}
	flags := data[1]
	m.QoS = flags & 3
	m.Retain = flags&flagRetain != 0
	b := data[2:]
	var s []byte
	var ok bool
	if s, b, ok = readBytes(b); !ok {
		return errBadEnvelope
	}
	m.Origin = origins.intern(s)
	if s, b, ok = readBytes(b); !ok {
		return errBadEnvelope
	}
	if len(s) > 0 && len(s) <= cap(room)-len(room) {
		room = append(room, s...)
		m.ClientID = unsafe.String(&room[len(room)-len(s)], len(s))
	} else {
		m.ClientID = string(s)
	}
	if flags&flagExpiry != 0 {
		if len(b) < 8 {
			return errBadEnvelope
		}
		m.Expiry = time.Unix(0, int64(binary.BigEndian.Uint64(b)))
		b = b[8:]
	}
	if flags&flagProps != 0 {
		if s, b, ok = readBytes(b); !ok {
			return errBadEnvelope
		}
		p, err := decodeProps(s)
		if err != nil {
			return err
		}
		m.Props = p
	}
	if flags&flagTopic != 0 {
		if s, b, ok = readBytes(b); !ok {
			return errBadEnvelope
		}
		m.Topic = s
	}
	m.Payload = b
	return nil
}

func readBytes(b []byte) (v, rest []byte, ok bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, false
	}
	return b[k : k+int(n)], b[k+int(n):], true
}

// Properties block: a sequence of (tag byte, value), values as uvarint
// length-prefixed bytes, except payload format (one byte).
const (
	tagPayloadFormat = 1
	tagContentType   = 2
	tagResponseTopic = 3
	tagCorrelation   = 4
	tagUserProperty  = 5 // key, then value
)

func appendProps(dst []byte, p *packet.Properties) []byte {
	str := func(dst []byte, s string) []byte {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		return append(dst, s...)
	}
	if p.Has(packet.PropPayloadFormat) {
		dst = append(dst, tagPayloadFormat, p.PayloadFormat)
	}
	if p.Has(packet.PropContentType) {
		dst = str(append(dst, tagContentType), p.ContentType)
	}
	if p.Has(packet.PropResponseTopic) {
		dst = str(append(dst, tagResponseTopic), p.ResponseTopic)
	}
	if p.Has(packet.PropCorrelationData) {
		dst = str(append(dst, tagCorrelation), string(p.CorrelationData))
	}
	for _, u := range p.UserProperties {
		dst = str(str(append(dst, tagUserProperty), u.Key), u.Value)
	}
	return dst
}

func decodeProps(b []byte) (*packet.Properties, error) {
	p := &packet.Properties{}
	for len(b) > 0 {
		tag := b[0]
		b = b[1:]
		var s []byte
		var ok bool
		switch tag {
		case tagPayloadFormat:
			if len(b) < 1 {
				return nil, errBadEnvelope
			}
			p.Set(packet.PropPayloadFormat)
			p.PayloadFormat = b[0]
			b = b[1:]
			continue
		case tagContentType, tagResponseTopic, tagCorrelation:
			if s, b, ok = readBytes(b); !ok {
				return nil, errBadEnvelope
			}
			switch tag {
			case tagContentType:
				p.Set(packet.PropContentType)
				p.ContentType = string(s)
			case tagResponseTopic:
				p.Set(packet.PropResponseTopic)
				p.ResponseTopic = string(s)
			default:
				p.Set(packet.PropCorrelationData)
				p.CorrelationData = append([]byte(nil), s...)
			}
		case tagUserProperty:
			var k, v []byte
			if k, b, ok = readBytes(b); !ok {
				return nil, errBadEnvelope
			}
			if v, b, ok = readBytes(b); !ok {
				return nil, errBadEnvelope
			}
			p.UserProperties = append(p.UserProperties, packet.UserProperty{Key: string(k), Value: string(v)})
		default:
			return nil, errBadEnvelope
		}
	}
	return p, nil
}

// Subjects. Every subject starts with "rly." so that Relay can share a NATS
// account with other users; the tenant is always the third token, so that
// no wildcard an MQTT client can express ever crosses tenants.
//
//	rly.msg.<tenant>.<c>.<topic…>   live messages; c is "0" for QoS 0 and
//	                                "1" for QoS 1 and 2
//	rly.ret.<tenant>.<topic…>       retained messages (RELAY_RETAINED)
//	rly.q.<tenant>.<session>        a persistent session's queue (RELAY_QUEUE)
//	rly.ctl.kicks                   client-ID takeover broadcasts, batched
//	                                (cluster.go); rly.ctl.kick.<tenant>
//	                                from older edges
//	rly.ctl.node.<node>.kick        takeover request to one node
//
// <topic…> is the MQTT topic mapped by topic.AppendSubject: one token per
// level, with '.', '*', '>', '%', whitespace escaped and "%" for an empty
// level.
const (
	prefixMsg   = "rly.msg."
	prefixRet   = "rly.ret."
	prefixQueue = "rly.q."
)

// msgSubject appends the live subject of topic t to dst.
func msgSubject(dst []byte, tenant string, stored bool, t []byte) []byte {
	dst = append(dst, prefixMsg...)
	dst = append(dst, tenant...)
	if stored {
		dst = append(dst, ".1."...)
	} else {
		dst = append(dst, ".0."...)
	}
	return topic.AppendSubject(dst, t)
}

// retSubject appends the retained-store subject of topic t to dst.
func retSubject(dst []byte, tenant string, t []byte) []byte {
	dst = append(dst, prefixRet...)
	dst = append(dst, tenant...)
	dst = append(dst, '.')
	return topic.AppendSubject(dst, t)
}

// splitMsgSubject returns the tenant and topic-token tail of a live or
// stored message subject.
func splitMsgSubject(subj string) (tenant, tail string, ok bool) {
	if len(subj) < len(prefixMsg) || subj[:len(prefixMsg)] != prefixMsg {
		return "", "", false
	}
	rest := subj[len(prefixMsg):]
	i := indexByte(rest, '.')
	if i <= 0 || len(rest) < i+4 || rest[i+2] != '.' {
		return "", "", false
	}
	return rest[:i], rest[i+3:], true
}

// splitRetSubject returns the topic-token tail of a retained subject.
func splitRetSubject(subj string) (tenant, tail string, ok bool) {
	if len(subj) < len(prefixRet) || subj[:len(prefixRet)] != prefixRet {
		return "", "", false
	}
	rest := subj[len(prefixRet):]
	i := indexByte(rest, '.')
	if i <= 0 || i+1 >= len(rest) {
		return "", "", false
	}
	return rest[:i], rest[i+1:], true
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// decodeMessage builds a Message from a subject tail and envelope.
func decodeMessage(tenant, tail string, data []byte, origins *originTable) (*broker.Message, error) {
	d := new(decodedMessage)
	m := &d.m
	m.Tenant = tenant
	t, err := topic.DecodeSubject(d.room[:0], tail)
	if err != nil {
		return nil, err
	}
	// The rest of the room may hold the client ID: the topic must not
	// grow into it.
	m.Topic = t[:len(t):len(t)]
	var room []byte
	if len(t) <= len(d.room) {
		room = d.room[len(t):len(t)]
	}
	if err := decodeEnvelopeRoom(m, data, origins, room); err != nil {
		return nil, err
	}
	return m, nil
}

// decodedMessage is a message decoded from the backbone with room for its
// topic and publisher client ID, which are usually short: one allocation
// per message a route receives instead of three (the message, the topic,
// the client ID). Longer ones are allocated on their own.
type decodedMessage struct {
	m    broker.Message
	room [112]byte
}

// originTable interns node IDs: every message carries its origin, and
// there are only as many distinct ones as edges, so decoding need not
// allocate a string for it each time.
type originTable struct {
	mu sync.RWMutex
	m  map[string]string
}

// maxOrigins bounds the table (edges restarted with new IDs add entries).
const maxOrigins = 4096

func (o *originTable) intern(b []byte) string {
	if o == nil {
		return string(b)
	}
	o.mu.RLock()
	s, ok := o.m[string(b)] // no allocation for the lookup
	o.mu.RUnlock()
	if ok {
		return s
	}
	s = string(b)
	o.mu.Lock()
	if o.m == nil || len(o.m) >= maxOrigins {
		o.m = make(map[string]string)
	}
	o.m[s] = s
	o.mu.Unlock()
	return s
}
