#!/usr/bin/env bash
# auth-connects.sh — connects/s of `relay serve` for 10,000 clients, best of
# RUNS, each run on a fresh server pinned to CPU $BROKER_CPU with the
# generator on CPU $GEN_CPU, in three modes:
#   anonymous      no credentials
#   authenticated  one credential shared by every client (devices of one app)
#   distinct       a credential of its own for every client (CLIENTS of them,
#                  `relay credential create --count`): no login is answered
#                  from the edge's cache, each asks the control plane
# Loopback only; everything stops on exit.
#
#   bench/compare/auth-connects.sh            # RUNS=3 CLIENTS=10000 CONCURRENCY=100
#   RELAY=/path/to/relay bench/compare/auth-connects.sh
set -euo pipefail
RUNS=${RUNS:-3}
CLIENTS=${CLIENTS:-10000}
CONCURRENCY=${CONCURRENCY:-100}
PORT=${PORT:-19883}
BROKER_CPU=${BROKER_CPU:-0}
GEN_CPU=${GEN_CPU:-1}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/relay-authconn.XXXXXX")
SP=
cleanup() {
	[ -n "$SP" ] && kill "$SP" 2>/dev/null && wait "$SP" 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT
RELAY=${RELAY:-}
if [ -z "$RELAY" ]; then
	(cd "$ROOT" && go build -o "$WORK/relay" ./cmd/relay)
	RELAY=$WORK/relay
fi
D=$WORK/data
"$RELAY" tenant create --data-dir "$D" acme >/dev/null
"$RELAY" app create --data-dir "$D" --tenant acme devices >/dev/null
"$RELAY" credential create --data-dir "$D" --tenant acme --app devices --json >"$WORK/cred.json"
USER=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['username'])" "$WORK/cred.json")
PASS=$(python3 -c "import json,sys;d=json.load(open(sys.argv[1]));print(d.get('password') or d.get('secret'))" "$WORK/cred.json")
MODES=${MODES:-anonymous authenticated distinct}
case " $MODES " in *" distinct "*)
	"$RELAY" credential create --data-dir "$D" --tenant acme --app devices --count "$CLIENTS" --json >"$WORK/creds.jsonl"
	# A server started within a minute of these re-reads their audit
	# records at start: let that minute pass before the first run.
	sleep 61
	;;
esac
for mode in $MODES; do
	best=0
	for n in $(seq "$RUNS"); do
		taskset -c "$BROKER_CPU" "$RELAY" serve --data-dir "$D" --allow-anonymous --mqtt-addr "127.0.0.1:$PORT" \
			--mqtts-addr "" --ws-addr "" --wss-addr "" --http-addr "" --log-level warn >"$WORK/serve.log" 2>&1 &
		SP=$!
		for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
		sleep 1
		args=()
		case $mode in
		authenticated) args=(--username "$USER" --password "$PASS") ;;
		distinct) args=(--credentials "$WORK/creds.jsonl") ;;
		esac
		timeout 300 taskset -c "$GEN_CPU" "$RELAY" bench conn --addr "127.0.0.1:$PORT" -n "$CLIENTS" \
			--concurrency "$CONCURRENCY" --duration 2s --quiet --json "${args[@]}" >"$WORK/$mode.$n.json" || true
		rate=$(python3 -c "import json,sys
try: d=json.load(open(sys.argv[1]))['conn']; print(int(d.get('connects_per_s', 0)))
except Exception: print(0)" "$WORK/$mode.$n.json")
		failed=$(python3 -c "import json,sys
try: d=json.load(open(sys.argv[1]))['conn']; print(d.get('failed', '?'))
except Exception: print('?')" "$WORK/$mode.$n.json")
		echo "$mode run $n: $rate connects/s ($failed failed)"
		[ "$rate" -gt "$best" ] && best=$rate
		kill "$SP"; wait "$SP" 2>/dev/null || true
		SP=
	done
	echo "$mode: best of $RUNS: $best connects/s"
done
