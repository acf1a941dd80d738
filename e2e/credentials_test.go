package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBulkCredentials: `relay credential create --count` issues a
// credential per device (shown once, JSON lines or "username password"
// lines), and `relay bench --credentials` logs every client in with its
// own against a running `relay serve`; one tenant's credentials never log
// in on another's host name, and a revoked one no longer logs in.
func TestBulkCredentials(t *testing.T) {
	dir := t.TempDir()
	cli := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(relayBin, append(args[:2:2], append([]string{"--data-dir", dir}, args[2:]...)...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("relay %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	cli("tenant", "create", "acme")
	cli("tenant", "create", "beta")
	cli("app", "create", "--tenant", "acme", "devices")
	cli("app", "create", "--tenant", "beta", "devices")
	acme := filepath.Join(dir, "acme.jsonl")
	if err := os.WriteFile(acme, []byte(cli("credential", "create", "--tenant", "acme", "--app", "devices", "--count", "40", "--json")), 0o600); err != nil {
		t.Fatal(err)
	}
	beta := filepath.Join(dir, "beta.txt")
	if err := os.WriteFile(beta, []byte(cli("credential", "create", "--tenant", "beta", "--app", "devices", "--count", "3")), 0o600); err != nil {
		t.Fatal(err)
	}
	users := map[string]bool{}
	f, _ := os.Open(acme)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var c struct{ Username, Password, Tenant string }
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil || !strings.HasSuffix(c.Username, "@acme") || len(c.Password) < 26 || c.Tenant != "acme" {
			t.Fatalf("credential line %q: %v", sc.Text(), err)
		}
		users[c.Username] = true
	}
	f.Close()
	if len(users) != 40 {
		t.Fatalf("%d distinct usernames of 40", len(users))
	}
	if out, err := exec.Command(relayBin, "credential", "create", "--data-dir", dir, "--tenant", "acme", "--app", "devices", "--count", "0").CombinedOutput(); err == nil || !strings.Contains(string(out), "--count 0") {
		t.Errorf("--count 0: err %v, output %q; want a refusal naming --count", err, out)
	}

	p := startProc(t, "serve", "serve", "--data-dir", dir,
		"--mqtt-addr", "127.0.0.1:0", "--mqtts-addr", "", "--ws-addr", "", "--wss-addr", "", "--http-addr", "")
	rest, err := p.waitLine("  MQTT  mqtt://", 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.Fields(rest)[0]
	bench := func(credFile string) (connected, failed int, errs []string) {
		t.Helper()
		out, err := exec.Command(relayBin, "bench", "conn", "--addr", addr, "-n", "80", "--concurrency", "10",
			"--duration", "100ms", "--quiet", "--json", "--credentials", credFile).Output()
		var res struct {
			Conn struct {
				Connected, Failed int
			} `json:"conn"`
			Errors []string `json:"errors"`
		}
		if jerr := json.Unmarshal(out, &res); jerr != nil {
			t.Fatalf("relay bench conn: %v / %v\n%s", err, jerr, out)
		}
		return res.Conn.Connected, res.Conn.Failed, res.Errors
	}
	if c, f, errs := bench(acme); c != 80 || f != 0 {
		t.Errorf("80 clients over 40 credentials: connected %d, failed %d (%q); want 80, 0", c, f, errs)
	}
	if c, f, _ := bench(beta); c != 80 || f != 0 {
		t.Errorf("80 clients over beta's 3 credentials: connected %d, failed %d; want 80, 0", c, f)
	}

	// beta's usernames and secrets with acme's suffix: refused, every one
	// (random usernames, so this checks the secrets are not acme's; the
	// same username in two tenants is authsvc's TestLookupCache*).
	var swapped strings.Builder
	b, _ := os.ReadFile(beta)
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		user, pass, _ := strings.Cut(line, " ")
		swapped.WriteString(strings.TrimSuffix(user, "@beta") + "@acme " + pass + "\n")
	}
	cross := filepath.Join(dir, "cross.txt")
	if err := os.WriteFile(cross, []byte(swapped.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, _, _ := bench(cross); c != 0 {
		t.Errorf("beta's credentials named as acme's: %d of 80 connected, want 0", c)
	}

	// Revoke one of acme's: its clients are refused, the others log in.
	var first struct{ Username string }
	line, _, _ := strings.Cut(mustRead(t, acme), "\n")
	json.Unmarshal([]byte(line), &first)
	cli("credential", "revoke", "--tenant", "acme", strings.TrimSuffix(first.Username, "@acme"))
	if !eventually(10*time.Second, func() bool { c, f, _ := bench(acme); return c == 78 && f == 2 }) {
		c, f, errs := bench(acme)
		t.Errorf("after revoking one of 40 credentials: connected %d, failed %d (%q); want 78, 2", c, f, errs)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
