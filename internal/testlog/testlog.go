// Package testlog gives tests a *slog.Logger that writes to t.Log: shown
// for failing tests and with -v. RELAY_TEST_LOG=debug lowers every such
// logger to Debug.
package testlog

import (
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
)

// New returns a logger of level (Debug if RELAY_TEST_LOG=debug) writing to
// t.Log. Lines logged after t's cleanup are dropped, since t.Log panics
// then: call it before starting what logs, so that its cleanup runs after
// theirs.
func New(t testing.TB, level slog.Level) *slog.Logger {
	if os.Getenv("RELAY_TEST_LOG") == "debug" {
		level = slog.LevelDebug
	}
	w := &writer{t: t}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type writer struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *writer) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}
