package services_test

// MQTT over WebSocket and secure WebSocket (issue 6): the tenant chosen by
// the Host header (ws) or SNI (wss), bad input, and MQTT.js (node) over
// both with MQTT 3.1.1 and 5.0.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/broker/packet"
)

// TestWebSocketTenantByHost: paho over ws:// picks the tenant from the Host
// header and over wss:// from SNI; messages cross transports within the
// tenant; another tenant's host name refuses the credential.
func TestWebSocketTenantByHost(t *testing.T) {
	e := startTransports(t)
	acme := e.setup(t, "acme")
	_, wsPort, _ := net.SplitHostPort(e.ws)
	acmeHost := net.JoinHostPort(hostOf("acme"), wsPort)
	globexHost := net.JoinHostPort(hostOf("globex"), wsPort)
	e.newTenant(t, "globex")

	wsIn, tcpIn := newInbox(), newInbox()
	wsSub := expectAccepted(t, "ws, tenant by Host", "ws-sub", overWS(e.ws, acmeHost), withLogin(userOf(acme), acme.Password))
	subscribe(t, wsSub, "ws/#", 1, wsIn)
	subscribe(t, connect(t, e.addr, "tcp-sub", withCred(acme)), "ws/#", 1, tcpIn)
	wssPub := expectAccepted(t, "wss, tenant by SNI", "wss-pub", overWSS(e.wss, clientTLS(e.ca, hostOf("acme"))), withLogin(userOf(acme), acme.Password))
	publish(t, wssPub, "ws/from-wss", 1, false, "over wss")
	publish(t, connect(t, e.addr, "ws-tcp-pub", withCred(acme)), "ws/from-tcp", 0, false, "over tcp")
	for _, in := range []*inbox{wsIn, tcpIn} {
		got := in.exactly(t, 2)
		if !in.has("ws/from-wss", "over wss") || !in.has("ws/from-tcp", "over tcp") {
			t.Errorf("got %v", got)
		}
	}
	expectAccepted(t, "ws, full username, no tenant host", "ws-plain", overWS(e.ws, ""), withCred(acme))

	expectRefused(t, "ws, acme username on globex's Host", 4, overWS(e.ws, globexHost), withLogin(userOf(acme), acme.Password))
	expectRefused(t, "ws, acme full username on globex's Host", 4, overWS(e.ws, globexHost), withCred(acme))
	expectRefused(t, "wss, acme username on globex's SNI", 4, overWSS(e.wss, clientTLS(e.ca, hostOf("globex"))), withLogin(userOf(acme), acme.Password))
}

// TestWebSocketBadInput: refusals at the HTTP level, oversize and text
// frames, an MQTT packet split across frames, plain MQTT on the WebSocket
// port; a client connected meanwhile is not affected.
func TestWebSocketBadInput(t *testing.T) {
	const maxPacket = 2048
	e := startTransports(t, withBroker(func(o *broker.Options) { o.MaxPacketSize = maxPacket }))
	acme := e.setup(t, "acme")
	lost := make(chan error, 1)
	in := newInbox()
	bystander := expectAccepted(t, "bystander", "ws-bystander", overWS(e.ws, ""), withCred(acme), onLost(lost))
	subscribe(t, bystander, "wsbad/#", 1, in)
	wsBase, wssBase := "ws://"+e.ws, "wss://"+e.wss
	wssTLS := clientTLS(e.ca, hostOf("acme"))

	connectBytes := func(version byte, id string) []byte {
		p := login(version, id, acme.Username, acme.Password)
		b, err := p.Encode(nil, version)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	for _, tc := range []struct {
		name   string
		base   string
		protos []string
		status int
	}{
		{"wrong subprotocol", wsBase, []string{"chat", "xmpp"}, http.StatusBadRequest},
		{"no subprotocol", wsBase, nil, http.StatusBadRequest},
		{"wrong subprotocol, wss", wssBase, []string{"chat"}, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cfg = wssTLS
			if tc.base == wsBase {
				cfg = nil
			}
			_, resp, err := dialWS(t, tc.base, cfg, nil, tc.protos...)
			if err == nil {
				t.Fatal("WebSocket upgrade succeeded")
			}
			if resp == nil || resp.StatusCode != tc.status {
				t.Fatalf("response %v (%v), want status %d", resp, err, tc.status)
			}
		})
	}
	t.Run("HTTP GET", func(t *testing.T) {
		for path, want := range map[string]int{"/mqtt": http.StatusUpgradeRequired, "/": http.StatusUpgradeRequired, "/index.html": http.StatusNotFound} {
			resp, err := http.Get("http://" + e.ws + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
			}
		}
	})
	t.Run("CONNECT split across frames", func(t *testing.T) {
		// [MQTT-6.0.0-2]: a packet may span frames, and one frame may
		// hold more than one packet.
		ws, _, err := dialWS(t, wsBase, nil, nil, "mqtt")
		if err != nil {
			t.Fatal(err)
		}
		b := append(connectBytes(packet.V311, "ws-split"), packet.AppendPingreq(nil)...)
		for _, part := range [][]byte{b[:3], b[3:10], b[10:]} {
			if err := ws.WriteMessage(websocket.BinaryMessage, part); err != nil {
				t.Fatal(err)
			}
		}
		var got []byte
		ws.SetReadDeadline(time.Now().Add(waitTimeout))
		for len(got) < 6 {
			_, m, err := ws.ReadMessage()
			if err != nil {
				t.Fatalf("read: %v (so far % x)", err, got)
			}
			got = append(got, m...)
		}
		if want := []byte{0x20, 2, 0, 0, 0xd0, 0}; !bytes.Equal(got, want) {
			t.Errorf("got % x, want CONNACK and PINGRESP % x", got, want)
		}
	})
	t.Run("oversize frame", func(t *testing.T) {
		// One frame (a large client write buffer): the limit applies when
		// its header arrives, before the broker sees any of it.
		d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: waitTimeout, WriteBufferSize: 128 << 10}
		ws, _, err := d.Dial(wsBase+"/mqtt", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		ws.WriteMessage(websocket.BinaryMessage, connectBytes(packet.V311, "ws-big"))
		ws.WriteMessage(websocket.BinaryMessage, bytes.Repeat([]byte{0x30}, maxPacket+64<<10))
		if code := wsCloseCode(t, ws); code != websocket.CloseMessageTooBig {
			t.Errorf("close code %d, want 1009 (message too big)", code)
		}
	})
	t.Run("text frame", func(t *testing.T) {
		ws, _, err := dialWS(t, wsBase, nil, nil, "mqtt")
		if err != nil {
			t.Fatal(err)
		}
		ws.WriteMessage(websocket.TextMessage, connectBytes(packet.V311, "ws-text"))
		if code := wsCloseCode(t, ws); code != websocket.CloseUnsupportedData {
			t.Errorf("close code %d, want 1003 (unsupported data) [MQTT-6.0.0-1]", code)
		}
	})
	t.Run("oversize MQTT packet over wss", func(t *testing.T) {
		// Within the WebSocket limit, beyond the broker's: the broker
		// closes (MQTT 5: DISCONNECT 0x95 first).
		_, port, _ := net.SplitHostPort(e.wss)
		ws, _, err := dialWS(t, wssBase, wssTLS, http.Header{"Host": {net.JoinHostPort(hostOf("acme"), port)}}, "mqtt")
		if err != nil {
			t.Fatal(err)
		}
		ws.WriteMessage(websocket.BinaryMessage, connectBytes(packet.V5, "wss-big"))
		p := packet.Publish{Topic: []byte("wsbad/big"), Payload: make([]byte, 2*maxPacket)}
		b, err := p.Encode(nil, packet.V5)
		if err != nil {
			t.Fatal(err)
		}
		ws.WriteMessage(websocket.BinaryMessage, b)
		// The broker stops reading, then writes DISCONNECT: the WebSocket
		// must still carry it (and then close normally).
		var got []byte
		ws.SetReadDeadline(time.Now().Add(waitTimeout))
		for {
			_, m, err := ws.ReadMessage()
			if err != nil {
				t.Logf("closed: %v", err)
				break
			}
			got = append(got, m...)
		}
		rc := rawOver(t, &bytesConn{Reader: bytes.NewReader(got)})
		rc.version = packet.V5
		rc.expect(packet.CONNACK)
		fh, body := rc.expect(packet.DISCONNECT)
		var d packet.Disconnect
		if err := d.Decode(packet.V5, fh, body); err != nil || d.ReasonCode != packet.PacketTooLarge {
			t.Errorf("DISCONNECT %+v (%v), want reason code 0x95 packet too large", d, err)
		}
	})
	t.Run("plain MQTT on the WebSocket port", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", e.ws, waitTimeout)
		if err != nil {
			t.Fatal(err)
		}
		rc := rawOver(t, c)
		rc.send(connectBytes(packet.V311, "ws-plain-mqtt"))
		if _, _, err := rc.read(waitTimeout); err == nil {
			t.Fatal("an MQTT packet came back")
		}
		if _, _, err := rc.read(waitTimeout); isTimeout(err) {
			t.Fatal("connection still open")
		}
	})

	publish(t, connect(t, e.addr, "wsbad-pub", withCred(acme)), "wsbad/after", 1, false, "still here")
	if got := in.exactly(t, 1); got[0].Payload != "still here" {
		t.Errorf("bystander got %v", got)
	}
	stillConnected(t, lost, "WebSocket client during bad input")
}

// TestMQTTJS runs MQTT.js (node, the npm package mqtt pinned in
// e2e/js/package-lock.json) against relay serve over ws:// and wss://,
// with MQTT 3.1.1 and 5.0: subscribe, publish QoS 0 and 1, receive.
func TestMQTTJS(t *testing.T) {
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed (scripts/deps.sh installs it)")
	}
	jsDir, err := filepath.Abs(filepath.Join("..", "e2e", "js"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(jsDir, "node_modules", "mqtt", "package.json")); err != nil {
		t.Fatalf("MQTT.js missing in %s/node_modules: run scripts/deps.sh (npm ci --prefix e2e/js): %v", jsDir, err)
	}
	e := startTransports(t)
	acme := e.setup(t, "acme")
	_, wsPort, _ := net.SplitHostPort(e.ws)
	_, wssPort, _ := net.SplitHostPort(e.wss)
	for _, tc := range []struct {
		name string
		cfg  map[string]any
	}{
		{"ws", map[string]any{"url": "ws://" + e.ws + "/mqtt", "username": acme.Username, "password": acme.Password}},
		{"ws by Host", map[string]any{"url": "ws://" + e.ws + "/mqtt", "username": userOf(acme), "password": acme.Password,
			"host": net.JoinHostPort(hostOf("acme"), wsPort)}},
		{"wss by SNI", map[string]any{"url": "wss://" + e.wss + "/mqtt", "username": userOf(acme), "password": acme.Password,
			"ca": e.caFile, "servername": hostOf("acme"), "host": net.JoinHostPort(hostOf("acme"), wssPort)}},
	} {
		for _, version := range []int{4, 5} {
			t.Run(fmt.Sprintf("%s/v%d", tc.name, version), func(t *testing.T) {
				tc.cfg["protocolVersion"] = version
				arg, _ := json.Marshal(tc.cfg)
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, nodeBin, filepath.Join(jsDir, "mqttjs-check.mjs"), string(arg))
				cmd.Dir = jsDir
				out, err := cmd.CombinedOutput()
				t.Logf("node mqttjs-check.mjs:\n%s", out)
				if err != nil || !strings.Contains(string(out), `{"step":"ok"}`) {
					t.Fatalf("MQTT.js over %s (protocolVersion %d) failed: %v", tc.name, version, err)
				}
			})
		}
	}
}

// bytesConn is a net.Conn that reads from a Reader (to parse bytes already
// received with rawClient).
type bytesConn struct {
	net.Conn
	*bytes.Reader
}

func (c *bytesConn) Read(p []byte) (int, error)      { return c.Reader.Read(p) }
func (c *bytesConn) SetReadDeadline(time.Time) error { return nil }
func (c *bytesConn) Close() error                    { return nil }
