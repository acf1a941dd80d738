#!/usr/bin/env bash
# scale.sh — many concurrent MQTT connections across several edge processes
# on one NATS backbone, on this machine.
#
#   bench/scale/scale.sh                       # 100,000 connections: 6 edges × 16,700
#   EDGES=2 PER_EDGE=5000 HOLD=10s bench/scale/scale.sh   # a quick run
#   AUTH=1 bench/scale/scale.sh                # authenticated (one credential, shared by all)
#
# One process here may hold at most 20,000 open files, so the connections
# are split: `relay serve` (embedded NATS + control plane + edge 1) and
# EDGES-1 `relay edge` processes, each with its own MQTT port, and one
# `relay bench conn` generator per edge. All on 127.0.0.1; every process is
# stopped on exit; every step has a time limit.
#
# It prints, per edge: connects/s, connected, dropped during the hold, and
# RSS per connection; and every SAMPLE seconds during the hold the RSS of
# every edge (steady memory means those samples stay flat), then a summary.
#
# Settings (environment): EDGES=6 PER_EDGE=16700 CONCURRENCY=200 HOLD=60s
# SAMPLE=10 PORT=19830 (edges use PORT.., NATS PORT+100, HTTP PORT+101)
# AUTH=0 RELAY=path (prebuilt binary) OUT=dir (JSON results; kept)
set -euo pipefail

EDGES=${EDGES:-6}
PER_EDGE=${PER_EDGE:-16700}
CONCURRENCY=${CONCURRENCY:-200}
HOLD=${HOLD:-60s}
SAMPLE=${SAMPLE:-10}
PORT=${PORT:-19830}
AUTH=${AUTH:-0}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/relay-scale.XXXXXX")}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/relay-scale-work.XXXXXX")
mkdir -p "$OUT"
PIDS=()

say() { echo "scale.sh: $*" >&2; }
die() {
	say "$*"
	exit 1
}

cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do
		timeout 20 tail --pid="$p" -f /dev/null 2>/dev/null || kill -9 "$p" 2>/dev/null || true
	done
	rm -rf "$WORK"
}
trap cleanup EXIT

hold_s=${HOLD%s}
[[ $hold_s =~ ^[0-9]+$ ]] || die "HOLD must be whole seconds, like 60s"
[ "$PER_EDGE" -le 18500 ] || die "PER_EDGE=$PER_EDGE: one process may hold at most 20,000 files"

if [ -z "${RELAY:-}" ]; then
	RELAY=$WORK/relay
	say "building relay"
	(cd "$ROOT" && go build -o "$RELAY" ./cmd/relay)
fi

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# wait_port PORT: until something listens on 127.0.0.1:PORT (30 s).
wait_port() {
	local i
	for i in $(seq 300); do
		if (: >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	die "nothing listens on port $1 after 30 s (logs in $OUT)"
}

nats_port=$((PORT + 100))
user= pass=
if [ "$AUTH" = 1 ]; then
	"$RELAY" tenant create --data-dir "$WORK/data" scale >/dev/null
	"$RELAY" app create --data-dir "$WORK/data" --tenant scale bench >/dev/null
	cred=$("$RELAY" credential create --data-dir "$WORK/data" --tenant scale --app bench --json)
	user=$(echo "$cred" | sed -n 's/.*"username": *"\([^"]*\)".*/\1/p')
	pass=$(echo "$cred" | sed -n 's/.*"password": *"\([^"]*\)".*/\1/p')
	[ -n "$user" ] && [ -n "$pass" ] || die "could not create a credential: $cred"
fi
anon=(--allow-anonymous)
[ "$AUTH" = 1 ] && anon=()
# No TLS or WebSocket listeners: they would collide between edges.
notls=()
edge_help=$("$RELAY" edge -h 2>&1 || true) # -h exits 2; pipefail would hide the match
if grep -q -- '-mqtts-addr' <<<"$edge_help"; then
	notls=(--mqtts-addr "" --ws-addr "" --wss-addr "")
fi

say "starting relay serve (NATS on $nats_port) and $((EDGES - 1)) more edges"
"$RELAY" serve "${anon[@]}" --data-dir "$WORK/data" --mqtt-addr "127.0.0.1:$PORT" \
	--nats-addr "127.0.0.1:$nats_port" --http-addr "127.0.0.1:$((PORT + 101))" \
	"${notls[@]}" \
	>"$OUT/edge-1.log" 2>&1 &
PIDS+=($!)
EDGE_PIDS=($!)
wait_port "$PORT"
wait_port "$nats_port"
for i in $(seq 2 "$EDGES"); do
	"$RELAY" edge "${anon[@]}" --nats-url "nats://127.0.0.1:$nats_port" --node-id "scale-$i" \
		--mqtt-addr "127.0.0.1:$((PORT + i - 1))" "${notls[@]}" \
		>"$OUT/edge-$i.log" 2>&1 &
	PIDS+=($!)
	EDGE_PIDS+=($!)
done
for i in $(seq 2 "$EDGES"); do wait_port $((PORT + i - 1)); done

say "opening $((EDGES * PER_EDGE)) connections ($PER_EDGE per edge, $CONCURRENCY at a time per generator), holding them $HOLD"
GEN_PIDS=()
t0=$EPOCHREALTIME
for i in $(seq 1 "$EDGES"); do
	creds=()
	[ "$AUTH" = 1 ] && creds=(--username "$user" --password "$pass")
	timeout $((hold_s + 600)) "$RELAY" bench conn --addr "127.0.0.1:$((PORT + i - 1))" \
		--clients "$PER_EDGE" --concurrency "$CONCURRENCY" --duration "$HOLD" \
		--pid "${EDGE_PIDS[$((i - 1))]}" --keepalive 300s --quiet --json "${creds[@]}" \
		>"$OUT/gen-$i.json" 2>"$OUT/gen-$i.log" &
	GEN_PIDS+=($!)
	PIDS+=($!)
done

# Sample every edge's RSS while the generators run.
{
	printf 't_s'
	for i in $(seq 1 "$EDGES"); do printf '\tedge%d_rss_mib' "$i"; done
	printf '\ttotal_rss_mib\n'
} >"$OUT/rss.tsv"
while :; do
	alive=0
	for p in "${GEN_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
	[ "$alive" = 1 ] || break
	total=0
	line=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.0f", b - a}')
	for p in "${EDGE_PIDS[@]}"; do
		r=$(rss_kib "$p")
		total=$((total + r))
		line+=$(printf '\t%d' $((r / 1024)))
	done
	line+=$(printf '\t%d' $((total / 1024)))
	echo "$line" >>"$OUT/rss.tsv"
	sleep "$SAMPLE"
done
fail=0
for p in "${GEN_PIDS[@]}"; do wait "$p" || fail=1; done
[ "$fail" = 0 ] || say "a generator failed (see $OUT/gen-*.log)"

echo
echo "| edge | connected | failed | connects/s | dropped during hold | RSS held (MiB) | RSS per conn (KiB) |"
echo "|---|---|---|---|---|---|---|"
sum_conn=0 sum_rate=0
for i in $(seq 1 "$EDGES"); do
	j=$OUT/gen-$i.json
	get() { sed -n "s/.*\"$1\": *\([0-9.]*\).*/\1/p" "$j" | head -1; }
	c=$(get connected) f=$(get failed) r=$(get connects_per_s) d=$(get dropped) h=$(get rss_held_kib) pc=$(get rss_per_conn_kib)
	printf '| %d | %s | %s | %.0f | %s | %d | %.1f |\n' "$i" "${c:-?}" "${f:-?}" "${r:-0}" "${d:-?}" $((${h:-0} / 1024)) "${pc:-0}"
	sum_conn=$((sum_conn + ${c:-0}))
	sum_rate=$(awk -v a="$sum_rate" -v b="${r:-0}" 'BEGIN {print a + b}')
done
echo
echo "total connected: $sum_conn of $((EDGES * PER_EDGE)); sum of generators' connects/s: $(printf '%.0f' "$sum_rate") (they ran at the same time)"
echo
echo "RSS of the edges during the run (MiB, every ${SAMPLE}s; edge 1 includes NATS and the control plane):"
column -t "$OUT/rss.tsv"
echo
say "results in $OUT"
