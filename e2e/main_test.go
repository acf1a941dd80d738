package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// relayBin is the relay binary built once for the whole run, or the one
// RELAY_E2E_BIN names.
var relayBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped in -short mode")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "relay-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	code := 1
	if bin := os.Getenv("RELAY_E2E_BIN"); bin != "" {
		relayBin = bin // a binary built elsewhere (CI, or a snapshot)
		code = m.Run()
	} else if relayBin, err = buildRelay(dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building relay:", err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildRelay builds ./cmd/relay of the module this package belongs to.
func buildRelay(dir string) (string, error) {
	root := ".."
	if out, err := exec.Command("go", "env", "GOMOD").Output(); err == nil {
		if gomod := strings.TrimSpace(string(out)); gomod != "" && gomod != os.DevNull {
			root = filepath.Dir(gomod)
		}
	}
	bin := filepath.Join(dir, "relay")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/relay")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%w\n%s", err, out)
	}
	return bin, nil
}
