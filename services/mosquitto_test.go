package services_test

// Interoperability with Eclipse Mosquitto's command-line clients (Debian's
// mosquitto-clients). Their -d output shows each packet, so the tests also
// check QoS and RETAIN flags and the QoS 2 handshake as the clients saw
// them.

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// mosquittoTimeout bounds every mosquitto_sub / mosquitto_pub process.
const mosquittoTimeout = 15 * time.Second

// mosquittoTool returns the path of a mosquitto client. A missing client
// fails the test: the suite must not pass without running these checks.
func mosquittoTool(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	p := "/usr/bin/" + name
	if _, err := exec.LookPath(p); err != nil {
		t.Fatalf("%s not found on PATH or in /usr/bin: run ./scripts/deps.sh (make deps), which installs Debian's mosquitto-clients (stdbuf comes with coreutils)", name)
	}
	return p
}

// hostPort splits addr for the -h and -p flags.
func hostPort(t testing.TB, addr string) []string {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return []string{"-h", h, "-p", p}
}

// mosqPub runs mosquitto_pub -d and returns its debug output.
func mosqPub(t testing.TB, addr string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), mosquittoTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, mosquittoTool(t, "mosquitto_pub"), append(append([]string{"-d"}, hostPort(t, addr)...), args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub %q: %v\n%s", args, err, out)
	}
	return string(out)
}

// mosqSub is a running mosquitto_sub -d -v.
type mosqSub struct {
	t    testing.TB
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, after done

	mu         sync.Mutex
	out        []string   // every stdout line
	msgs       []received // parsed deliveries
	subscribed bool
	notify     chan struct{} // cap 1
}

// publishLine is mosquitto's debug line for a received PUBLISH.
var publishLine = regexp.MustCompile(`received PUBLISH \(d(\d), q(\d), r(\d), m\d+, '([^']*)', \.\.\. \((\d+) bytes\)\)`)

// startMosqSub starts mosquitto_sub and waits for its SUBACK. The process
// is killed when the test ends if still running.
func startMosqSub(t testing.TB, addr string, args ...string) *mosqSub {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), mosquittoTimeout)
	// mosquitto_sub's stdout is block-buffered into a pipe; stdbuf
	// (coreutils) makes it line-buffered so that SUBACK is seen at once.
	all := append(append([]string{"-oL", mosquittoTool(t, "mosquitto_sub"), "-d", "-v"}, hostPort(t, addr)...), args...)
	cmd := exec.CommandContext(ctx, mosquittoTool(t, "stdbuf"), all...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	s := &mosqSub{t: t, cmd: cmd, done: make(chan struct{}), notify: make(chan struct{}, 1)}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting mosquitto_sub: %v", err)
	}
	go func() {
		defer close(s.done)
		defer cancel()
		s.read(stdout)
		s.err = cmd.Wait()
		if stderr.Len() > 0 {
			s.mu.Lock()
			s.out = append(s.out, "stderr: "+stderr.String())
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-s.done
	})
	s.waitFor(t, "SUBACK", func() bool { return s.subscribed })
	return s
}

// read parses the output: a "received PUBLISH" debug line gives the flags
// and topic of the next message line ("<topic> <payload>", from -v).
func (s *mosqSub) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	var pending []received
	for sc.Scan() {
		line := sc.Text()
		s.mu.Lock()
		s.out = append(s.out, line)
		switch {
		case strings.HasSuffix(line, "received SUBACK"):
			s.subscribed = true
		case publishLine.MatchString(line):
			m := publishLine.FindStringSubmatch(line)
			q, _ := strconv.Atoi(m[2])
			pending = append(pending, received{Topic: m[4], QoS: byte(q), Retained: m[3] == "1"})
		case strings.HasPrefix(line, "Client ") || strings.HasPrefix(line, "Subscribed "):
		case len(pending) > 0 && strings.HasPrefix(line, pending[0].Topic+" "):
			m := pending[0]
			pending = pending[1:]
			m.Payload = strings.TrimPrefix(line, m.Topic+" ")
			s.msgs = append(s.msgs, m)
		}
		s.mu.Unlock()
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
}

// waitFor waits until cond (called with s.mu held) holds.
func (s *mosqSub) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		ok := cond()
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-s.notify:
		case <-s.done:
			s.mu.Lock()
			ok := cond()
			s.mu.Unlock()
			if !ok {
				t.Fatalf("mosquitto_sub exited (%v) before %s; output:\n%s", s.err, what, s.output())
			}
			return
		case <-timer.C:
			t.Fatalf("mosquitto_sub: no %s after %v; output:\n%s", what, waitTimeout, s.output())
		}
	}
}

func (s *mosqSub) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.out, "\n")
}

// messages waits for n messages and for the process to exit (it runs with
// -C n), and returns them.
func (s *mosqSub) messages(t testing.TB, n int) []received {
	t.Helper()
	s.waitFor(t, strconv.Itoa(n)+" messages", func() bool { return len(s.msgs) >= n })
	select {
	case <-s.done:
	case <-time.After(waitTimeout):
		t.Fatalf("mosquitto_sub still running after %d messages; output:\n%s", n, s.output())
	}
	if s.err != nil {
		t.Fatalf("mosquitto_sub: %v; output:\n%s", s.err, s.output())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

// TestMosquittoQoS: mosquitto_pub to mosquitto_sub at each QoS pair; the
// message arrives at the lower QoS [MQTT-3.8.4-6], and the publisher's
// flow is PUBACK for QoS 1 and PUBREC / PUBREL / PUBCOMP for QoS 2.
func TestMosquittoQoS(t *testing.T) {
	t.Parallel()
	mosquittoTool(t, "mosquitto_sub")
	mosquittoTool(t, "mosquitto_pub")
	_, addr := startServer(t)
	tests := []struct {
		pub, sub, want byte
		flow           []string // mosquitto_pub debug lines, in order
	}{
		{pub: 0, sub: 0, want: 0, flow: []string{"sending PUBLISH (d0, q0"}},
		{pub: 1, sub: 1, want: 1, flow: []string{"sending PUBLISH (d0, q1", "received PUBACK"}},
		{pub: 2, sub: 2, want: 2, flow: []string{"sending PUBLISH (d0, q2", "received PUBREC", "sending PUBREL", "received PUBCOMP"}},
		{pub: 2, sub: 1, want: 1, flow: []string{"sending PUBLISH (d0, q2", "received PUBREC", "sending PUBREL", "received PUBCOMP"}},
		{pub: 1, sub: 2, want: 1, flow: []string{"sending PUBLISH (d0, q1", "received PUBACK"}},
		{pub: 2, sub: 0, want: 0, flow: []string{"sending PUBLISH (d0, q2", "received PUBREC", "sending PUBREL", "received PUBCOMP"}},
	}
	for _, tt := range tests {
		name := "pub" + strconv.Itoa(int(tt.pub)) + "_sub" + strconv.Itoa(int(tt.sub))
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			topic := "mq/" + name
			sub := startMosqSub(t, addr, "-i", "mosq-sub-"+name, "-t", topic, "-q", strconv.Itoa(int(tt.sub)), "-C", "1")
			out := mosqPub(t, addr, "-i", "mosq-pub-"+name, "-t", topic, "-q", strconv.Itoa(int(tt.pub)), "-m", "hello "+name)
			rest := out
			for _, step := range tt.flow {
				i := strings.Index(rest, step)
				if i < 0 {
					t.Fatalf("mosquitto_pub: no %q in order; output:\n%s", step, out)
				}
				rest = rest[i+len(step):]
			}
			got := sub.messages(t, 1)
			want := []received{{Topic: topic, Payload: "hello " + name, QoS: tt.want}}
			if !slices.Equal(got, want) {
				t.Fatalf("got %v, want %v; output:\n%s", got, want, sub.output())
			}
			if tt.want == 2 && !strings.Contains(sub.output(), "received PUBREL") {
				t.Fatalf("mosquitto_sub saw no PUBREL; output:\n%s", sub.output())
			}
		})
	}
}

// TestMosquittoRetained: a retained message reaches a later mosquitto_sub
// with RETAIN=1 [MQTT-3.3.1-8]; a null retained message clears it
// [MQTT-3.3.1-10].
func TestMosquittoRetained(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t)
	mosqPub(t, addr, "-t", "mr/t", "-q", "1", "-r", "-m", "kept")
	sub := startMosqSub(t, addr, "-t", "mr/t", "-q", "1", "-C", "1")
	got := sub.messages(t, 1)
	if want := []received{{Topic: "mr/t", Payload: "kept", QoS: 1, Retained: true}}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}

	mosqPub(t, addr, "-t", "mr/t", "-q", "1", "-r", "-n")
	// -W 1: give up after one second without a message.
	empty := startMosqSub(t, addr, "-t", "mr/t", "-q", "1", "-C", "1", "-W", "1")
	<-empty.done
	empty.mu.Lock()
	n := len(empty.msgs)
	empty.mu.Unlock()
	if n != 0 || strings.Contains(empty.output(), "received PUBLISH") {
		t.Fatalf("cleared retained message still delivered; output:\n%s", empty.output())
	}
}

// TestMosquittoWill: mosquitto_sub killed with SIGKILL has its will
// published [MQTT-3.1.2-8], live with RETAIN=0 [MQTT-3.3.1-9] and, as a
// retained will, to later subscribers with RETAIN=1 [MQTT-3.1.2-17].
func TestMosquittoWill(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t)
	watch := startMosqSub(t, addr, "-t", "mw/will", "-q", "2", "-C", "1")
	victim := startMosqSub(t, addr, "-i", "mosq-victim", "-t", "mw/other",
		"--will-topic", "mw/will", "--will-payload", "victim died", "--will-qos", "1", "--will-retain")
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	got := watch.messages(t, 1)
	if want := []received{{Topic: "mw/will", Payload: "victim died", QoS: 1}}; !slices.Equal(got, want) {
		t.Fatalf("live: got %v, want %v", got, want)
	}
	later := startMosqSub(t, addr, "-t", "mw/will", "-q", "2", "-C", "1")
	got = later.messages(t, 1)
	if want := []received{{Topic: "mw/will", Payload: "victim died", QoS: 1, Retained: true}}; !slices.Equal(got, want) {
		t.Fatalf("retained: got %v, want %v", got, want)
	}
}

// TestMosquittoWildcard: mosquitto_sub with + and # filters receives the
// matching topics only, in publishing order.
func TestMosquittoWildcard(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t)
	plus := startMosqSub(t, addr, "-t", "mwc/+/temp", "-q", "1", "-C", "2")
	hash := startMosqSub(t, addr, "-t", "mwc/#", "-q", "1", "-C", "4")
	for _, m := range [][2]string{
		{"mwc/a/temp", "21"},
		{"mwc/a/humidity", "40"},
		{"mwc/b/c/temp", "deep"},
		{"mwc/b/temp", "19"},
	} {
		mosqPub(t, addr, "-t", m[0], "-q", "1", "-m", m[1])
	}
	if got, want := plus.messages(t, 2), []received{
		{Topic: "mwc/a/temp", Payload: "21", QoS: 1},
		{Topic: "mwc/b/temp", Payload: "19", QoS: 1},
	}; !slices.Equal(got, want) {
		t.Fatalf("mwc/+/temp: got %v, want %v", got, want)
	}
	if got, want := hash.messages(t, 4), []received{
		{Topic: "mwc/a/temp", Payload: "21", QoS: 1},
		{Topic: "mwc/a/humidity", Payload: "40", QoS: 1},
		{Topic: "mwc/b/c/temp", Payload: "deep", QoS: 1},
		{Topic: "mwc/b/temp", Payload: "19", QoS: 1},
	}; !slices.Equal(got, want) {
		t.Fatalf("mwc/#: got %v, want %v", got, want)
	}
}
