package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Timings every edge of the suite runs with: short, so that crash handling
// (dead-node wills, redelivery of unacknowledged messages) fits in a test.
const (
	nodeTTL = 2 * time.Second
	ackWait = 3 * time.Second
)

// ---------------------------------------------------------------------------
// NATS server with JetStream, in the test process.

// natsServer is a NATS server with JetStream that can be stopped and started
// again on the same port with the same store directory.
type natsServer struct {
	t        testing.TB
	storeDir string
	port     int // -1 until the first start picked one

	mu  sync.Mutex
	srv *server.Server
}

// startNATS starts a NATS server with JetStream on a random 127.0.0.1 port;
// it is shut down when the test ends.
func startNATS(t testing.TB) *natsServer {
	t.Helper()
	n := &natsServer{t: t, storeDir: t.TempDir(), port: server.RANDOM_PORT}
	n.Start()
	t.Cleanup(n.Stop)
	return n
}

// URL returns the server's client URL (stable across restarts).
func (n *natsServer) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// Start starts the server (again), on the port of the first start.
func (n *natsServer) Start() {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		n.t.Fatal("nats: already running")
	}
	opts := &server.Options{
		ServerName:     "e2e-nats",
		Host:           "127.0.0.1",
		Port:           n.port,
		JetStream:      true,
		StoreDir:       n.storeDir,
		NoSigs:         true,
		NoLog:          true,
		MaxControlLine: 256 << 10,
		MaxPayload:     8 << 20,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		n.t.Fatalf("nats: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		n.t.Fatal("nats: not ready after 15s")
	}
	if n.port == server.RANDOM_PORT {
		n.port = s.Addr().(*net.TCPAddr).Port
	}
	n.srv = s
}

// Stop shuts the server down and waits for it; it is a no-op when stopped.
func (n *natsServer) Stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv == nil {
		return
	}
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	n.srv = nil
}

// ---------------------------------------------------------------------------
// Child processes.

// proc is a running relay child process. Its stdout lines are kept in
// memory; its stderr (the log) goes to a file that is dumped on failure.
type proc struct {
	t       testing.TB
	name    string
	cmd     *exec.Cmd
	logPath string

	mu    sync.Mutex
	lines []string

	done  chan struct{} // closed when the process has exited
	state *os.ProcessState
}

// startProc starts relay with args. The process is SIGKILLed (if still
// running) when the test ends, and its log is dumped if the test failed.
func startProc(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	dir := t.TempDir() // removed after our cleanup below has run
	p := &proc{t: t, name: name, logPath: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(relayBin, args...)
	p.cmd.Stdout, p.cmd.Stderr = w, logf
	if err := p.cmd.Start(); err != nil {
		r.Close()
		w.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	w.Close()
	go func() {
		defer r.Close()
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
		}
	}()
	go func() {
		p.cmd.Wait()
		p.state = p.cmd.ProcessState
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			p.cmd.Process.Kill()
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				t.Errorf("%s: still running 10s after SIGKILL", name)
			}
		}
		if t.Failed() {
			p.dumpLog()
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitLine waits for a stdout line starting with prefix and returns the
// rest of it.
func (p *proc) waitLine(prefix string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		p.mu.Lock()
		for _, l := range p.lines {
			if rest, ok := strings.CutPrefix(l, prefix); ok {
				p.mu.Unlock()
				return rest, nil
			}
		}
		p.mu.Unlock()
		if p.exited() {
			return "", fmt.Errorf("%s exited (%v) before printing %q", p.name, p.state, prefix)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s did not print %q within %v", p.name, prefix, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// log returns the process's log so far.
func (p *proc) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// logLines returns the log lines containing every one of substrs.
func (p *proc) logLines(substrs ...string) []string {
	var out []string
	for _, l := range strings.Split(p.log(), "\n") {
		ok := l != ""
		for _, s := range substrs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// waitLog waits until the log has a line containing substr, counting only
// lines after the first skip of them.
func (p *proc) waitLog(substr string, skip int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if len(p.logLines(substr)) > skip {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// Kill crashes the process with SIGKILL and waits for it. It may be called
// from any goroutine (it reports problems with Errorf).
func (p *proc) Kill() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !p.exited() {
		p.t.Errorf("SIGKILL %s: %v", p.name, err)
		return
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.t.Errorf("%s still running 10s after SIGKILL", p.name)
	}
}

// Term sends SIGTERM and waits up to timeout for the process to exit. It
// returns the exit code (-1: killed by a signal or still running) and how
// long the exit took.
func (p *proc) Term(timeout time.Duration) (code int, took time.Duration, exited bool) {
	p.t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Errorf("SIGTERM %s: %v", p.name, err)
		return -1, 0, p.exited()
	}
	select {
	case <-p.done:
		return p.state.ExitCode(), time.Since(start), true
	case <-time.After(timeout):
		return -1, time.Since(start), false
	}
}

// dumpLog writes the tail of the log to the test log and keeps the whole
// file under the system temp directory.
func (p *proc) dumpLog() {
	const tail = 150
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		p.t.Logf("%s: reading log: %v", p.name, err)
		return
	}
	keep := filepath.Join(os.TempDir(), "relay-e2e-logs", strings.NewReplacer("/", "_", " ", "_").Replace(p.t.Name()))
	kept := filepath.Join(keep, p.name+".log")
	if os.MkdirAll(keep, 0o755) != nil || os.WriteFile(kept, data, 0o644) != nil {
		kept = "(not kept)"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	from := max(0, len(lines)-tail)
	p.t.Logf("---- %s log: last %d of %d lines (full log: %s) ----\n%s\n---- end of %s log ----",
		p.name, len(lines)-from, len(lines), kept, strings.Join(lines[from:], "\n"), p.name)
}

// ---------------------------------------------------------------------------
// Edges and the all-in-one server.

// edge is a `relay edge` child process.
type edge struct {
	*proc
	ID   string // node ID
	Addr string // MQTT host:port
}

// startEdge starts `relay edge` against natsURL and waits until it prints
// its MQTT address.
func startEdge(t testing.TB, natsURL, id string, extra ...string) *edge {
	t.Helper()
	args := append([]string{
		"edge",
		"--nats-url", natsURL,
		"--mqtt-addr", "127.0.0.1:0",
		// Not the fixed default ports: several edges run at once.
		"--mqtts-addr", "127.0.0.1:0", "--ws-addr", "127.0.0.1:0", "--wss-addr", "127.0.0.1:0",
		"--node-id", id,
		"--allow-anonymous",
		"--node-ttl", nodeTTL.String(),
		"--ack-wait", ackWait.String(),
		"--log-level", "debug",
	}, extra...)
	p := startProc(t, id, args...)
	addr, err := p.waitLine("  MQTT  mqtt://", 20*time.Second)
	if err != nil {
		p.dumpLog()
		t.Fatal(err)
	}
	return &edge{proc: p, ID: id, Addr: strings.TrimSpace(addr)}
}

// startEdges starts one edge per ID on the same NATS.
func startEdges(t testing.TB, natsURL string, ids ...string) []*edge {
	t.Helper()
	out := make([]*edge, len(ids))
	for i, id := range ids {
		out[i] = startEdge(t, natsURL, id)
	}
	return out
}

// ---------------------------------------------------------------------------
// Small helpers.

// eventually polls cond every 20 ms until it holds or timeout passes.
func eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// errUnacked marks a publish the broker did not acknowledge in time.
var errUnacked = errors.New("no acknowledgement in time")
