package packet

import (
	"errors"
	"fmt"
	"io"
	"testing"
)

func TestVarint(t *testing.T) {
	tests := []struct {
		v   int
		raw []byte
	}{
		{0, bs(0x00)},
		{127, bs(0x7F)},
		{128, bs(0x80, 0x01)},
		{16383, bs(0xFF, 0x7F)},
		{16384, bs(0x80, 0x80, 0x01)},
		{2097151, bs(0xFF, 0xFF, 0x7F)},
		{2097152, bs(0x80, 0x80, 0x80, 0x01)},
		{MaxRemainingLength, bs(0xFF, 0xFF, 0xFF, 0x7F)},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.v), func(t *testing.T) {
			if got := AppendVarint(nil, tc.v); string(got) != string(tc.raw) {
				t.Fatalf("AppendVarint = % x, want % x", got, tc.raw)
			}
			if varintLen(tc.v) != len(tc.raw) {
				t.Fatalf("varintLen = %d", varintLen(tc.v))
			}
			v, n, err := DecodeVarint(append(tc.raw, 0xAA))
			if err != nil || v != tc.v || n != len(tc.raw) {
				t.Fatalf("DecodeVarint = %d, %d, %v", v, n, err)
			}
		})
	}
}

func TestDecodeVarintErrors(t *testing.T) {
	tests := []struct {
		name string
		raw  []byte
		eof  bool
	}{
		{"empty", nil, true},
		{"truncated", bs(0x80, 0x80), true},
		{"five bytes", bs(0xFF, 0xFF, 0xFF, 0xFF, 0x01), false},
		{"not minimal", bs(0x81, 0x00), false}, // [MQTT-1.5.5-1]
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := DecodeVarint(tc.raw)
			if !errors.Is(err, MalformedPacket) {
				t.Fatalf("err = %v, want MalformedPacket", err)
			}
			if errors.Is(err, io.ErrUnexpectedEOF) != tc.eof {
				t.Fatalf("errors.Is(%v, io.ErrUnexpectedEOF) = %v", err, !tc.eof)
			}
		})
	}
}

func TestAppendVarintPanicsOutOfRange(t *testing.T) {
	for _, v := range []int{-1, MaxRemainingLength + 1} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("AppendVarint(%d) did not panic", v)
				}
			}()
			AppendVarint(nil, v)
		}()
	}
}

func TestReasonCode(t *testing.T) {
	if got := MalformedPacket.Error(); got != "malformed packet (0x81)" {
		t.Errorf("Error() = %q", got)
	}
	if got := ReasonCode(0x07).Error(); got != "reason code 0x07" {
		t.Errorf("unknown code Error() = %q", got)
	}
	if got := QoSNotSupported.String(); got != "QoS not supported" {
		t.Errorf("String() = %q", got)
	}
	if !UnspecifiedError.IsError() || NoMatchingSubscribers.IsError() {
		t.Error("IsError")
	}
	err := fmt.Errorf("read: %w", fmt.Errorf("%w: remaining length over 4 bytes", MalformedPacket))
	var rc ReasonCode
	if !errors.As(err, &rc) || rc != MalformedPacket {
		t.Errorf("errors.As = %v", rc)
	}
}

func TestV3ConnackCode(t *testing.T) {
	tests := []struct{ in, want ReasonCode }{
		{Success, ConnAccepted},
		{ConnRefusedNotAuthorized, ConnRefusedNotAuthorized},
		{ConnRefusedServerUnavailable, ConnRefusedServerUnavailable},
		{UnsupportedProtocolVersion, ConnRefusedProtocol},
		{ClientIdentifierNotValid, ConnRefusedIdentifier},
		{BadUsernameOrPassword, ConnRefusedBadCredentials},
		{BadAuthenticationMethod, ConnRefusedBadCredentials},
		{NotAuthorized, ConnRefusedNotAuthorized},
		{Banned, ConnRefusedNotAuthorized},
		{ServerUnavailable, ConnRefusedServerUnavailable},
		{ServerBusy, ConnRefusedServerUnavailable},
		{QuotaExceeded, ConnRefusedServerUnavailable},
		{MalformedPacket, ConnRefusedServerUnavailable},
	}
	for _, tc := range tests {
		if got := V3ConnackCode(tc.in); got != tc.want {
			t.Errorf("V3ConnackCode(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestTypeString(t *testing.T) {
	if PUBLISH.String() != "PUBLISH" || AUTH.String() != "AUTH" || Type(0).String() != "Type(0)" || Type(16).String() != "Type(16)" {
		t.Errorf("got %v %v %v %v", PUBLISH, AUTH, Type(0), Type(16))
	}
}
