package packet

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeFixtures(t *testing.T) {
	for _, f := range fixtures {
		t.Run(fixtureName(f), func(t *testing.T) {
			got, err, next := decodeRaw(f.version, f.raw, f.maxSize)
			if f.wantErr != nil {
				if !errors.Is(err, f.wantErr) {
					t.Fatalf("decode error = %v, want %v", err, f.wantErr)
				}
				var rc ReasonCode
				if _, isRC := f.wantErr.(ReasonCode); isRC && (!errors.As(err, &rc) || rc != f.wantErr) {
					t.Fatalf("errors.As(%v) = %v, want %v", err, rc, f.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if next != io.EOF {
				t.Fatalf("after the packet: %v, want io.EOF", next)
			}
			if !reflect.DeepEqual(got, f.pkt) {
				t.Fatalf("decode mismatch\n got %#v\nwant %#v", got, f.pkt)
			}
		})
	}
}

func TestEncodeFixtures(t *testing.T) {
	for _, f := range fixtures {
		if f.wantErr != nil || f.decodeOnly {
			continue
		}
		t.Run(fixtureName(f), func(t *testing.T) {
			got, err := f.pkt.Encode(nil, f.version)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if !bytes.Equal(got, f.raw) {
				t.Fatalf("encode mismatch\n got % x\nwant % x", got, f.raw)
			}
			// Encode appends: a prefix in dst is kept.
			prefixed, err := f.pkt.Encode([]byte("prefix"), f.version)
			if err != nil || !bytes.Equal(prefixed, append([]byte("prefix"), f.raw...)) {
				t.Fatalf("encode after a prefix = % x, %v", prefixed, err)
			}
		})
	}
}

// TestDecodeResetsReceiver checks that decoding into a used struct leaves
// nothing of the previous packet behind.
func TestDecodeResetsReceiver(t *testing.T) {
	for _, f := range fixtures {
		if f.wantErr != nil {
			continue
		}
		t.Run(fixtureName(f), func(t *testing.T) {
			r := NewReader(bufioReader(f.raw), f.maxSize)
			fh, body, err := r.ReadPacket()
			if err != nil {
				t.Fatal(err)
			}
			// Decode a rich packet of the same type first, then this one.
			p := newCodec(fh.Type)
			for _, g := range fixtures {
				if g.wantErr == nil && g.pkt != nil && reflect.TypeOf(g.pkt) == reflect.TypeOf(p) && g.version == V5 {
					rr := NewReader(bufioReader(g.raw), 0)
					gfh, gbody, _ := rr.ReadPacket()
					_ = p.Decode(V5, gfh, gbody)
				}
			}
			if err := p.Decode(f.version, fh, body); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(p, f.pkt) {
				t.Fatalf("decode into used struct\n got %#v\nwant %#v", p, f.pkt)
			}
		})
	}
}

func TestEncodeDropsNewerFields(t *testing.T) {
	withProps := Properties{Present: present(PropReasonString), ReasonString: "why"}
	tests := []struct {
		name    string
		version byte
		pkt     codec
		want    []byte
	}{
		{"connack/v5 reason code mapped for 3.1.1", V311, &Connack{ReasonCode: BadUsernameOrPassword, Properties: withProps},
			bs(0x20, 2, 0, 4)},
		{"connack/v5 reason code mapped for 3.1", V31, &Connack{ReasonCode: ServerBusy}, bs(0x20, 2, 0, 3)},
		{"connack/session present not in 3.1", V31, &Connack{SessionPresent: true}, bs(0x20, 2, 0, 0)},
		{"publish/properties dropped for 3.1.1", V311,
			&Publish{QoS: 1, PacketID: 1, Topic: []byte("t"), Properties: publishV5Props, Payload: []byte("p")},
			frame(0x32, str("t"), u16(1), []byte("p"))},
		{"puback/reason code and properties dropped for 3.1.1", V311,
			&Ack{Type: PUBACK, PacketID: 1, ReasonCode: NotAuthorized, Properties: withProps}, frame(0x40, u16(1))},
		{"subscribe/options dropped for 3.1.1", V311,
			&Subscribe{PacketID: 1, Properties: Properties{SubscriptionIdentifiers: []int{1}},
				Subscriptions: []Subscription{{Filter: "a", QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2}}},
			frame(0x82, u16(1), str("a"), bs(1))},
		{"suback/failure codes become 0x80 for 3.1.1", V311,
			&Suback{PacketID: 1, ReasonCodes: []ReasonCode{GrantedQoS1, NotAuthorized, QuotaExceeded}},
			frame(0x90, u16(1), bs(1, 0x80, 0x80))},
		{"unsuback/reason codes dropped for 3.1.1", V311,
			&Unsuback{PacketID: 1, ReasonCodes: []ReasonCode{NoSubscriptionExisted}}, frame(0xB0, u16(1))},
		{"disconnect/reason code dropped for 3.1.1", V311, &Disconnect{ReasonCode: ServerShuttingDown}, bs(0xE0, 0)},
		{"connect/will properties dropped for 3.1.1", V311,
			&Connect{ProtocolVersion: V311, ClientID: "c", WillFlag: true, WillTopic: "w", WillProperties: willV5Props, Properties: connectV5Props},
			frame(0x10, str("MQTT"), bs(4, 0x04), u16(0), str("c"), str("w"), str(""))},
		{"connect/version and name from argument", V31, &Connect{ClientID: "c"},
			frame(0x10, str("MQIsdp"), bs(3, 0), u16(0), str("c"))},
		{"connect/will fields ignored without will flag", V311, &Connect{ClientID: "c", WillQoS: 2, WillRetain: true, WillTopic: "x"},
			frame(0x10, str("MQTT"), bs(4, 0), u16(0), str("c"))},
		// Properties not allowed on the packet are dropped, so a will's
		// properties can be reused for its PUBLISH.
		{"publish/will delay dropped", V5, &Publish{Topic: []byte("t"), Properties: willV5Props},
			frame(0x30, str("t"), propBlock(bs(0x01, 1), bs(0x02), u32(60), bs(0x03), str("text/plain"), bs(0x08), str("dev/1/resp"),
				bs(0x09), str("\xCA\xFE"), bs(0x26), str("a"), str("b")))},
		{"puback/scalar property not allowed dropped", V5,
			&Ack{Type: PUBACK, PacketID: 1, Properties: Properties{Present: present(PropTopicAlias), TopicAlias: 1}}, frame(0x40, u16(1))},
		{"disconnect/5 code without properties", V5, &Disconnect{ReasonCode: ServerBusy}, frame(0xE0, bs(0x89))},
		{"auth/5 code keeps property length", V5, &Auth{ReasonCode: ContinueAuthentication}, frame(0xF0, bs(0x18, 0))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.pkt.Encode(nil, tc.version)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("encode\n got % x\nwant % x", got, tc.want)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	long := strings.Repeat("x", 0x10000)
	// 2100 user properties of 2×65535 bytes: over MaxRemainingLength while
	// holding only one 64 KiB string in memory.
	huge := strings.Repeat("y", 0xFFFF)
	many := make([]UserProperty, 2100)
	for i := range many {
		many[i] = UserProperty{huge, huge}
	}
	tests := []struct {
		name    string
		version byte
		pkt     codec
		want    ReasonCode
	}{
		{"publish/unknown version", 9, &Publish{Topic: []byte("t")}, UnsupportedProtocolVersion},
		{"publish/QoS 3", V311, &Publish{QoS: 3, PacketID: 1, Topic: []byte("t")}, ProtocolError},
		{"publish/packet id 0", V311, &Publish{QoS: 1, Topic: []byte("t")}, ProtocolError},
		{"publish/DUP on QoS 0", V311, &Publish{Dup: true, Topic: []byte("t")}, ProtocolError},
		{"publish/3.1.1 empty topic", V311, &Publish{Properties: Properties{Present: present(PropTopicAlias), TopicAlias: 1}}, ProtocolError},
		{"publish/5 empty topic without alias", V5, &Publish{}, ProtocolError},
		{"publish/topic too long", V311, &Publish{Topic: []byte(long)}, MalformedPacket},
		{"publish/content type too long", V5, &Publish{Topic: []byte("t"),
			Properties: Properties{Present: present(PropContentType), ContentType: long}}, MalformedPacket},
		{"publish/subscription identifier 0", V5, &Publish{Topic: []byte("t"),
			Properties: Properties{SubscriptionIdentifiers: []int{0}}}, ProtocolError},
		{"publish/over maximum remaining length", V5, &Publish{Topic: []byte("t"),
			Properties: Properties{UserProperties: many}}, PacketTooLarge},
		{"connect/will QoS 3", V311, &Connect{ClientID: "c", WillFlag: true, WillQoS: 3, WillTopic: "w"}, ProtocolError},
		{"connect/3.1.1 password without user name", V311, &Connect{ClientID: "c", PasswordFlag: true}, ProtocolError},
		{"connect/unknown version", 2, &Connect{ClientID: "c"}, UnsupportedProtocolVersion},
		{"connect/client id too long", V311, &Connect{ClientID: long}, MalformedPacket},
		{"connect/password too long", V5, &Connect{PasswordFlag: true, Password: []byte(long)}, MalformedPacket},
		{"connack/session present on refusal", V311, &Connack{SessionPresent: true, ReasonCode: NotAuthorized}, ProtocolError},
		{"connack/5 reason code not for CONNACK", V5, &Connack{ReasonCode: GrantedQoS1}, ProtocolError},
		{"ack/not an ack type", V311, &Ack{Type: PUBLISH, PacketID: 1}, ProtocolError},
		{"ack/packet id 0", V5, &Ack{Type: PUBACK}, ProtocolError},
		{"ack/5 reason code not for PUBREL", V5, &Ack{Type: PUBREL, PacketID: 1, ReasonCode: QuotaExceeded}, ProtocolError},
		{"subscribe/no filters", V311, &Subscribe{PacketID: 1}, ProtocolError},
		{"subscribe/packet id 0", V311, &Subscribe{Subscriptions: []Subscription{{Filter: "a"}}}, ProtocolError},
		{"subscribe/QoS 3", V311, &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a", QoS: 3}}}, ProtocolError},
		{"subscribe/5 retain handling 3", V5, &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a", RetainHandling: 3}}}, ProtocolError},
		{"subscribe/5 two subscription identifiers", V5, &Subscribe{PacketID: 1,
			Properties: Properties{SubscriptionIdentifiers: []int{1, 2}}, Subscriptions: []Subscription{{Filter: "a"}}}, ProtocolError},
		{"subscribe/filter too long", V311, &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: long}}}, MalformedPacket},
		{"suback/no reason codes", V311, &Suback{PacketID: 1}, ProtocolError},
		{"suback/5 reason code not for SUBACK", V5, &Suback{PacketID: 1, ReasonCodes: []ReasonCode{NoSubscriptionExisted}}, ProtocolError},
		{"unsubscribe/no filters", V5, &Unsubscribe{PacketID: 1}, ProtocolError},
		{"unsubscribe/packet id 0", V5, &Unsubscribe{Filters: []string{"a"}}, ProtocolError},
		{"unsuback/5 no reason codes", V5, &Unsuback{PacketID: 1}, ProtocolError},
		{"unsuback/packet id 0", V311, &Unsuback{}, ProtocolError},
		{"disconnect/5 reason code not for DISCONNECT", V5, &Disconnect{ReasonCode: GrantedQoS1}, ProtocolError},
		{"auth/3.1.1", V311, &Auth{}, MalformedPacket},
		{"auth/5 reason code not for AUTH", V5, &Auth{ReasonCode: NotAuthorized}, ProtocolError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := []byte("keep")
			got, err := tc.pkt.Encode(dst, tc.version)
			var rc ReasonCode
			if !errors.As(err, &rc) || rc != tc.want {
				t.Fatalf("encode error = %v, want %v", err, tc.want)
			}
			if string(got) != "keep" {
				t.Fatalf("dst changed on error: %q", got)
			}
		})
	}
}

// TestConnectVersionOnError checks that a CONNECT with a bad version still
// reports the version it asked for, so the broker can choose the CONNACK
// format [MQTT-3.1.2-2].
func TestConnectVersionOnError(t *testing.T) {
	var c Connect
	raw := frame(0x10, str("MQTT"), bs(7, 0x02), u16(0), str("id"))
	_, err, _ := decodeRaw(V311, raw, 0)
	if !errors.Is(err, UnsupportedProtocolVersion) {
		t.Fatalf("err = %v", err)
	}
	r := NewReader(bufioReader(raw), 0)
	fh, body, _ := r.ReadPacket()
	_ = c.Decode(0, fh, body)
	if c.ProtocolName != "MQTT" || c.ProtocolVersion != 7 {
		t.Fatalf("after error: name %q version %d", c.ProtocolName, c.ProtocolVersion)
	}
}

// TestPublishAliasesBody documents that a decoded Publish points into the
// body, capacity-limited so appends cannot overwrite the next field.
func TestPublishAliasesBody(t *testing.T) {
	raw := frame(0x30, str("t"), propBlock(bs(0x09), str("cd")), []byte("payload"))
	r := NewReader(bufioReader(raw), 0)
	fh, body, err := r.ReadPacket()
	if err != nil {
		t.Fatal(err)
	}
	var p Publish
	if err := p.Decode(V5, fh, body); err != nil {
		t.Fatal(err)
	}
	if &p.Payload[0] != &body[len(body)-len("payload")] {
		t.Error("Payload does not alias the body")
	}
	if cap(p.Topic) != len(p.Topic) || cap(p.Properties.CorrelationData) != 2 {
		t.Errorf("aliases not capacity-limited: cap(Topic)=%d cap(CorrelationData)=%d", cap(p.Topic), cap(p.Properties.CorrelationData))
	}
	// Every other packet copies: decoded CONNECT fields survive the buffer.
	raw = frame(0x10, connectV5(0xC4, propBlock(bs(0x15), str("m"), bs(0x16), str("ad"))), str("id"), bs(0),
		str("w"), str("wp"), str("u"), str("pw"))
	r = NewReader(bufioReader(raw), 0)
	fh, body, _ = r.ReadPacket()
	var c Connect
	if err := c.Decode(0, fh, body); err != nil {
		t.Fatal(err)
	}
	clear(body)
	if string(c.WillPayload) != "wp" || string(c.Password) != "pw" || string(c.Properties.AuthData) != "ad" {
		t.Fatalf("CONNECT fields alias the body: %q %q %q", c.WillPayload, c.Password, c.Properties.AuthData)
	}
}

func TestPublishAllocs(t *testing.T) {
	for _, tc := range benchPublishes() {
		t.Run(tc.name, func(t *testing.T) {
			fh, body := readOne(t, tc.raw)
			var p Publish
			decode := testing.AllocsPerRun(100, func() {
				if err := p.Decode(tc.version, fh, body); err != nil {
					t.Fatal(err)
				}
			})
			buf := make([]byte, 0, 1024)
			encode := testing.AllocsPerRun(100, func() {
				var err error
				if buf, err = p.Encode(buf[:0], tc.version); err != nil {
					t.Fatal(err)
				}
			})
			size := testing.AllocsPerRun(100, func() {
				if n, err := p.Size(tc.version); err != nil || n != len(tc.raw) {
					t.Fatalf("Size = %d, %v; want %d", n, err, len(tc.raw))
				}
			})
			if decode != 0 || encode != 0 || size != 0 {
				t.Fatalf("allocs: decode %v, encode %v, size %v; want 0", decode, encode, size)
			}
		})
	}
}

func TestDecodeWrongType(t *testing.T) {
	fh := FixedHeader{Type: PINGREQ}
	for _, p := range []codec{new(Connect), new(Connack), new(Publish), new(Ack), new(Subscribe), new(Suback),
		new(Unsubscribe), new(Unsuback), new(Disconnect), new(Auth)} {
		if err := p.Decode(V5, fh, nil); !errors.Is(err, MalformedPacket) {
			t.Errorf("%T.Decode(PINGREQ) = %v, want MalformedPacket", p, err)
		}
	}
	if err := DecodePing(FixedHeader{Type: PUBLISH}, nil); !errors.Is(err, MalformedPacket) {
		t.Errorf("DecodePing(PUBLISH) = %v", err)
	}
	if err := new(Publish).Decode(0, FixedHeader{Type: PUBLISH}, nil); !errors.Is(err, UnsupportedProtocolVersion) {
		t.Errorf("Decode with version 0 = %v", err)
	}
}

func TestProperties(t *testing.T) {
	var p Properties
	if p.Has(PropTopicAlias) {
		t.Fatal("zero Properties has topic alias")
	}
	p.Set(PropTopicAlias)
	p.Set(PropUserProperty)
	if !p.Has(PropTopicAlias) || !p.Has(PropUserProperty) || p.Has(PropContentType) {
		t.Fatalf("Present = %b", p.Present)
	}
	p.Clear(PropTopicAlias)
	if p.Has(PropTopicAlias) || !p.Has(PropUserProperty) {
		t.Fatalf("after Clear: Present = %b", p.Present)
	}
	p.Set(200) // out of range: ignored
	if p.Has(200) {
		t.Fatal("Has(200)")
	}
	if allowedProps[ctxPublish]&^knownProps != 0 || knownProps != present(0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x11, 0x12,
		0x13, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1C, 0x1F, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A) {
		t.Fatalf("knownProps = %b", knownProps)
	}
}
