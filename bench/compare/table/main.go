// Command table prints the markdown comparison table of a bench/compare
// run: the median of each broker's runs per scenario, with Relay/peer
// ratios.
//
//	go run ./bench/compare/table DIR
//
// DIR holds brokers.tsv (one "key<TAB>column title" line per broker, Relay
// first, the forwarder last if present) and DIR/<key>/<scenario>.<run>.json,
// the JSON results of "relay bench".
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/relaymq/relay/bench"
)

// row is one line of the table.
type row struct {
	title string
	key   string // result files: <key>.<run>.json
	// metric extracts the number compared; lowerBetter flips the sense of
	// the ratio's label.
	metric      func(*bench.Result) (float64, bool)
	format      func(float64) string
	lowerBetter bool
	// lossy rows note the lost share of the median run.
	lossy bool
}

func delivered(r *bench.Result) (float64, bool) { return r.DeliveredRate, true }

func p99(r *bench.Result) (float64, bool) {
	if r.Latency == nil {
		return 0, false
	}
	return r.Latency.P99Us, true
}

func p50(r *bench.Result) (float64, bool) {
	if r.Latency == nil {
		return 0, false
	}
	return r.Latency.P50Us, true
}

func connects(r *bench.Result) (float64, bool) {
	if r.Conn == nil || r.Conn.Connected == 0 {
		return 0, false
	}
	return r.Conn.ConnectsPerSec, true
}

func rssPerConn(r *bench.Result) (float64, bool) {
	if r.Conn == nil || r.Conn.PID == 0 || r.Conn.Connected == 0 {
		return 0, false
	}
	return r.Conn.RSSPerConnKiB, true
}

func rate(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.0fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func micros(v float64) string { return fmt.Sprintf("%.0f µs", v) }
func kib(v float64) string    { return fmt.Sprintf("%.1f KiB", v) }

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: table DIR")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "table:", err)
		os.Exit(1)
	}
}

type broker struct{ key, title string }

func run(dir string, w io.Writer) error {
	brokers, err := readBrokers(filepath.Join(dir, "brokers.tsv"))
	if err != nil {
		return err
	}
	meta := map[string]string{}
	if b, err := os.ReadFile(filepath.Join(dir, "params.tsv")); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(strings.TrimSpace(line), "\t"); ok {
				meta[k] = v
			}
		}
	}
	clients, conns, lrate := or(meta["clients"], "10"), or(meta["conns"], "10000"), or(meta["rate"], "1000")
	var rows []row
	for _, s := range []struct{ name, key, shape string }{
		{"fan-in", "fanin", clients + "→1"},
		{"fan-out", "fanout", "1→" + clients},
		{clients + " pairs", "pairs", ""},
	} {
		for _, q := range []string{"0", "1"} {
			title := fmt.Sprintf("%s %s, QoS %s", s.name, s.shape, q)
			if s.shape == "" {
				title = fmt.Sprintf("%s, QoS %s", s.name, q)
			}
			rows = append(rows, row{title: strings.TrimSpace(title) + " (delivered msg/s)", key: s.key + "-q" + q,
				metric: delivered, format: rate, lossy: true})
		}
	}
	for _, q := range []string{"0", "1"} {
		rows = append(rows, row{title: fmt.Sprintf("p50 latency at %s msg/s, QoS %s", lrate, q), key: "latency-q" + q,
			metric: p50, format: micros, lowerBetter: true})
		rows = append(rows, row{title: fmt.Sprintf("p99 latency at %s msg/s, QoS %s", lrate, q), key: "latency-q" + q,
			metric: p99, format: micros, lowerBetter: true})
	}
	rows = append(rows,
		row{title: fmt.Sprintf("connects/s, %s clients", conns), key: "conn", metric: connects, format: rate},
		row{title: "RSS per idle connection", key: "conn", metric: rssPerConn, format: kib, lowerBetter: true},
	)

	// Peers are every broker but Relay (first); the forwarder's column
	// comes last, with ratios for the latency rows only (the target there
	// is Relay's p99 against the generator's floor; its throughput is the
	// generator's ceiling, not a peer's).
	peers := brokers[1:]
	head := []string{"scenario"}
	for _, b := range brokers {
		head = append(head, b.title)
	}
	for _, p := range peers {
		head = append(head, brokers[0].title+"/"+short(p.title))
	}
	fmt.Fprintln(w, "| "+strings.Join(head, " | ")+" |")
	fmt.Fprintln(w, "|"+strings.Repeat("---|", len(head)))
	notes, daggers := 0, 0
	for _, r := range rows {
		cells := []string{r.title}
		vals := map[string]float64{}
		lossy := map[string]bool{}
		for _, b := range brokers {
			v, lost, ok := median(dir, b.key, r)
			if !ok {
				cells = append(cells, "–")
				continue
			}
			vals[b.key] = v
			lossy[b.key] = r.lossy && lost > 0
			cell := r.format(v)
			switch {
			case !r.lossy || lost == 0:
			case lost < 1:
				cell += fmt.Sprintf(" (%.2f%% lost)", lost)
			default:
				cell += fmt.Sprintf(" (%.0f%% lost)", lost)
			}
			if r.lossy && lost > 0 {
				notes++
			}
			cells = append(cells, cell)
		}
		for _, p := range peers {
			rv, ok1 := vals[brokers[0].key]
			pv, ok2 := vals[p.key]
			if p.key == "forwarder" && !strings.HasPrefix(r.key, "latency") {
				ok2 = false
			}
			if !ok1 || !ok2 || pv == 0 {
				cells = append(cells, "–")
				continue
			}
			cell := fmt.Sprintf("%.2f×", rv/pv)
			if r.lowerBetter {
				cell += " ↓"
			}
			if lossy[brokers[0].key] || lossy[p.key] {
				cell += " †"
				daggers++
			}
			cells = append(cells, cell)
		}
		fmt.Fprintln(w, "| "+strings.Join(cells, " | ")+" |")
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Median of each broker's runs. Ratios are Relay/peer: above 1× is better for Relay, except rows marked ↓ (latency, memory), where below 1× is better.")
	if notes > 0 {
		fmt.Fprintln(w, "\"lost\": messages the subscribers never received (the broker dropped them), as a share of those expected.")
	}
	if daggers > 0 {
		fmt.Fprintln(w, "†: at least one side dropped messages, so the ratio compares deliveries under unequal promises (at QoS 1, a broker that drops breaks at-least-once).")
	}
	return nil
}

// median returns the median over the runs of broker key of r's metric,
// with the lost percentage of that median run (the lower middle one for an
// even number of runs).
func median(dir, key string, r row) (v, lost float64, ok bool) {
	files, _ := filepath.Glob(filepath.Join(dir, key, r.key+".*.json"))
	type sample struct{ v, lost float64 }
	var s []sample
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var res bench.Result
		if json.Unmarshal(b, &res) != nil {
			continue
		}
		if v, ok := r.metric(&res); ok {
			s = append(s, sample{v, res.LostPercent()})
		}
	}
	if len(s) == 0 {
		return 0, 0, false
	}
	slices.SortFunc(s, func(a, b sample) int {
		switch {
		case a.v < b.v:
			return -1
		case a.v > b.v:
			return 1
		}
		return 0
	})
	m := s[(len(s)-1)/2]
	return m.v, m.lost, true
}

func readBrokers(path string) ([]broker, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []broker
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, t, ok := strings.Cut(sc.Text(), "\t")
		if ok {
			out = append(out, broker{k, t})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no brokers", path)
	}
	return out, sc.Err()
}

// short is a column title's first word ("Mosquitto 2.0.11" → "Mosquitto").
func short(title string) string {
	if f := strings.Fields(title); len(f) > 0 {
		return f[0]
	}
	return title
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
