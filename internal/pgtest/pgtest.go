// Package pgtest gives tests a fresh, empty PostgreSQL database.
//
// Use it from a package's tests like this:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		url := pgtest.Start(t) // postgres://postgres@127.0.0.1:PORT/relay_test_…?sslmode=disable
//		…
//	}
//
// Every Start creates a new database (and drops it in t.Cleanup), so tests
// never see each other's rows and may run in parallel.
//
// Where the databases live:
//
//   - If RELAY_TEST_DATABASE_URL is set (a superuser's or a role with
//     CREATEDB, e.g. postgres://postgres:pw@db:5432/postgres), there.
//   - Otherwise on a private server that the first Start of a test binary
//     starts (sync.Once): initdb into a temporary directory, pg_ctl start on
//     127.0.0.1 and a free port, trust authentication from 127.0.0.1 only,
//     fsync off. As root it runs the PostgreSQL programs as the postgres OS
//     user (PostgreSQL refuses to run as root). The server and its
//     directory go when the test binary ends: Main stops it and waits; if
//     the binary dies first (a panic, a -timeout, SIGKILL), a small watchdog
//     process, which waits for the binary's end on a pipe, stops it.
//
// Missing PostgreSQL programs fail the test (never skip it): run
// ./scripts/deps.sh postgres.
package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	// The "pgx" database/sql driver.
	_ "github.com/jackc/pgx/v5/stdlib"
)

// EnvURL names the environment variable with an existing server's URL.
const EnvURL = "RELAY_TEST_DATABASE_URL"

// MinVersion is the oldest PostgreSQL major version Relay supports.
const MinVersion = 15

var (
	setupOnce sync.Once
	shared    *backend
	setupErr  error
)

// backend is where Start creates databases.
type backend struct {
	admin *sql.DB  // connected to an existing database of the server
	base  *url.URL // admin's URL; Start swaps the database name
	srv   *server  // the private server, if we started one
}

// Start returns the URL of a new, empty database and drops the database
// when t ends. It fails t if no server can be had.
func Start(t testing.TB) string {
	t.Helper()
	setupOnce.Do(func() { shared, setupErr = setup() })
	if setupErr != nil {
		t.Fatalf("pgtest: %v", setupErr)
	}
	name := "relay_test_" + randomHex(8)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := shared.admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// FORCE ends connections the test left open.
		if _, err := shared.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	u := *shared.base
	u.Path = "/" + name
	return u.String()
}

// Main runs the tests and then stops the private server, if Start started
// one, and waits for it to be gone. It returns m.Run's exit code (1 if the
// tests passed but the server would not stop).
func Main(m *testing.M) int {
	code := m.Run()
	if shared == nil {
		return code
	}
	_ = shared.admin.Close()
	if shared.srv != nil {
		if err := shared.srv.stop(); err != nil {
			slog.Error("pgtest: stopping PostgreSQL", "err", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// setup connects to RELAY_TEST_DATABASE_URL or starts the private server.
func setup() (*backend, error) {
	if raw := os.Getenv(EnvURL); raw != "" {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvURL, err)
		}
		admin, err := connect(u)
		if err != nil {
			return nil, fmt.Errorf("%s=%s: %w", EnvURL, u.Redacted(), err)
		}
		return &backend{admin: admin, base: u}, nil
	}
	srv, err := startServer()
	if err != nil {
		return nil, err
	}
	u := &url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(srv.port)),
		Path:     "/postgres",
		RawQuery: "sslmode=disable",
	}
	admin, err := connect(u)
	if err != nil {
		_ = srv.stop()
		return nil, fmt.Errorf("private server: %w (log: %s)", err, srv.logTail())
	}
	return &backend{admin: admin, base: u, srv: srv}, nil
}

func connect(u *url.URL) (*sql.DB, error) {
	db, err := sql.Open("pgx", u.String())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// ---------------------------------------------------------------------------
// The private server

// server is a PostgreSQL server in a temporary directory.
type server struct {
	bin      binaries
	root     string // temporary directory: data/, sock/, server.log
	port     int
	asUser   string // "postgres" when we are root, "" otherwise
	watchdog *exec.Cmd
	quit     *os.File // write end of the watchdog's stdin; closing it stops the server
	stopOnce sync.Once
	stopErr  error
}

func startServer() (*server, error) {
	bin, err := findBinaries()
	if err != nil {
		return nil, err
	}
	s := &server{bin: bin}
	base := os.TempDir()
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root, and PostgreSQL refuses to: need the postgres OS user to run it as (%v); run ./scripts/deps.sh postgres", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		s.asUser = "postgres"
		// The postgres user must reach the directory; $TMPDIR may be
		// under root's home.
		base = "/tmp"
	}
	if s.root, err = os.MkdirTemp(base, "relay-pgtest-"); err != nil {
		return nil, err
	}
	sock := filepath.Join(s.root, "sock")
	if err := os.Mkdir(sock, 0o700); err != nil {
		return nil, s.fail(err)
	}
	if uid >= 0 {
		for _, d := range []string{s.root, sock} {
			if err := os.Chown(d, uid, gid); err != nil {
				return nil, s.fail(err)
			}
		}
	}
	if err := s.startWatchdog(); err != nil {
		return nil, s.fail(err)
	}
	data := filepath.Join(s.root, "data")
	if out, err := s.run(bin.initdb, "-D", data, "-U", "postgres", "--auth=trust",
		"--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"); err != nil {
		return nil, s.fail(fmt.Errorf("initdb: %w: %s", err, out))
	}
	conf := fmt.Sprintf(`
# pgtest: a throw-away server for tests.
listen_addresses = '127.0.0.1'
unix_socket_directories = '%s'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
`, sock)
	if err := appendFile(filepath.Join(data, "postgresql.conf"), conf); err != nil {
		return nil, s.fail(err)
	}
	// Trust, from 127.0.0.1 only; no unix-socket or ::1 access.
	hba := "# pgtest\nhost all all 127.0.0.1/32 trust\n"
	if err := os.WriteFile(filepath.Join(data, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		return nil, s.fail(err)
	}
	// The free port can be taken between our probe and the server's
	// bind: try a few.
	var lastErr error
	for range 3 {
		if s.port, err = freePort(); err != nil {
			return nil, s.fail(err)
		}
		out, err := s.run(bin.pgCtl, "-D", data, "-l", filepath.Join(s.root, "server.log"),
			"-w", "-t", "60", "-o", "-p "+strconv.Itoa(s.port), "start")
		if err == nil {
			return s, nil
		}
		lastErr = fmt.Errorf("pg_ctl start: %w: %s (log: %s)", err, out, s.logTail())
	}
	return nil, s.fail(lastErr)
}

// startWatchdog starts a process (as the server's user) that waits for
// EOF on its stdin, then stops the server and removes its directory. Its
// stdin is a pipe whose only writer is this process, so EOF comes when
// stop closes it or when this process ends, however it ends. It has its
// own process group, so a Ctrl-C to `go test` does not kill it first.
func (s *server) startWatchdog() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	const script = `trap '' INT TERM HUP
cat >/dev/null
"$0" -D "$1/data" -m fast -w -t 30 stop >/dev/null 2>&1 || "$0" -D "$1/data" -m immediate stop >/dev/null 2>&1
rm -rf "$1"`
	cmd := s.command("/bin/sh", "-c", script, s.bin.pgCtl, s.root)
	cmd.Stdin = r
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = r.Close()
		_ = w.Close()
		return fmt.Errorf("start watchdog: %w", err)
	}
	_ = r.Close()
	s.watchdog, s.quit = cmd, w
	return nil
}

// stop stops the server, removes its directory and waits for both.
func (s *server) stop() error {
	s.stopOnce.Do(func() {
		if s.watchdog == nil {
			s.stopErr = os.RemoveAll(s.root)
			return
		}
		_ = s.quit.Close()
		done := make(chan error, 1)
		go func() { done <- s.watchdog.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				s.stopErr = fmt.Errorf("watchdog: %w", err)
			}
		case <-time.After(90 * time.Second):
			s.stopErr = errors.New("PostgreSQL did not stop within 90s; data in " + s.root)
		}
	})
	return s.stopErr
}

// fail stops what was started and returns err.
func (s *server) fail(err error) error {
	if serr := s.stop(); serr != nil {
		return fmt.Errorf("%w (and cleaning up: %v)", err, serr)
	}
	return err
}

// command returns a command that runs name as the server's user.
func (s *server) command(name string, args ...string) *exec.Cmd {
	if s.asUser == "" {
		return exec.Command(name, args...)
	}
	if p, err := exec.LookPath("runuser"); err == nil {
		return exec.Command(p, append([]string{"-u", s.asUser, "--", name}, args...)...)
	}
	return exec.Command("su", append([]string{"-s", "/bin/sh", "-c", `exec "$0" "$@"`, s.asUser, name}, args...)...)
}

// run runs name as the server's user and returns its combined output.
func (s *server) run(name string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := s.command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

// logTail returns the end of the server's log.
func (s *server) logTail() string {
	b, err := os.ReadFile(filepath.Join(s.root, "server.log"))
	if err != nil {
		return "(no log)"
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// ---------------------------------------------------------------------------
// Finding PostgreSQL

// binaries are the programs of one PostgreSQL installation.
type binaries struct {
	initdb, pgCtl, postgres string
	major                   int
}

// debianBinDirs is where Debian's packages put the server programs.
var debianBinDirs = "/usr/lib/postgresql/*/bin"

// findBinaries looks on PATH, then in /usr/lib/postgresql/<major>/bin
// (Debian's layout, not on PATH), newest first.
func findBinaries() (binaries, error) {
	var dirs []string
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	debian, _ := filepath.Glob(debianBinDirs)
	slices.SortFunc(debian, func(a, b string) int { return majorOf(b) - majorOf(a) })
	dirs = append(dirs, debian...)
	var found []string
	for _, d := range dirs {
		b := binaries{
			initdb:   filepath.Join(d, "initdb"),
			pgCtl:    filepath.Join(d, "pg_ctl"),
			postgres: filepath.Join(d, "postgres"),
		}
		if !executable(b.initdb) || !executable(b.pgCtl) || !executable(b.postgres) {
			continue
		}
		out, err := exec.Command(b.postgres, "--version").Output()
		if err != nil {
			continue
		}
		b.major = versionMajor(string(out))
		found = append(found, fmt.Sprintf("%s (%d)", d, b.major))
		if b.major >= MinVersion {
			return b, nil
		}
	}
	if len(found) > 0 {
		return binaries{}, fmt.Errorf("PostgreSQL %d or later needed, found only %s: run ./scripts/deps.sh postgres", MinVersion, strings.Join(found, ", "))
	}
	return binaries{}, fmt.Errorf("PostgreSQL server programs (initdb, pg_ctl, postgres) not found on PATH or in /usr/lib/postgresql/*/bin: run ./scripts/deps.sh postgres (or set %s to a server's URL)", EnvURL)
}

// majorOf returns N of /usr/lib/postgresql/N/bin, 0 if not a number.
func majorOf(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

var versionRE = regexp.MustCompile(`\(PostgreSQL\) ([0-9]+)`)

// versionMajor parses "postgres (PostgreSQL) 15.18 (Debian …)".
func versionMajor(s string) int {
	m := versionRE.FindStringSubmatch(s)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
