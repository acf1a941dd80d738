#!/usr/bin/env bash
# compare.sh — Relay against Mosquitto and nats-server's MQTT, side by side,
# on this machine, and the generator's ceiling against the trivial forwarder.
#
#   bench/compare/compare.sh                       # full run: median of 3, 10 s windows
#   RUNS=1 DURATION=3s bench/compare/compare.sh    # quick run (a few minutes)
#
# Each broker runs alone, pinned to CPU $BROKER_CPU (taskset), the generator
# ("relay bench") to CPU $GEN_CPU; everything listens on 127.0.0.1 only.
# Throughput and connection scenarios run broker by broker; latency runs in
# rounds that take every broker in turn (see below).
# It prints a markdown table (medians, Relay/peer ratios) and keeps every
# JSON result under $OUT. Everything it starts is stopped on exit, and every
# step has a time limit.
#
# Brokers (BROKERS, default all):
#   relay      `relay serve` built from this repository, data in a temp dir
#   mosquitto  Debian's mosquitto (installed with apt-get if missing)
#   nats       nats-server's MQTT (the go.mod version, bench/compare/natsmqtt)
#   forwarder  `relay bench forward`: no broker logic, the generator's ceiling
#
# Settings (environment):
#   RUNS=3 DURATION=10s CLIENTS=10 SIZE=64 RATE=1000 (latency msg/s)
#   LATENCY_RUNS=$RUNS (latency rounds: every broker, in turn, each round)
#   CONNS=10000 CONCURRENCY=100 HOLD=5s (conn scenario)
#   SCENARIOS="fanin fanout pairs latency conn" BROKERS="relay mosquitto nats forwarder"
#   PORT=18830 (brokers use PORT..PORT+3)  BROKER_CPU=0 GEN_CPU=1
#   OUT=dir (results; default a new /tmp/relay-compare.* kept at the end)
#   RELAY=path (a relay binary to use instead of building one)
#   TIME_LIMIT=3600 (seconds for the whole run; later steps are skipped)
set -euo pipefail

RUNS=${RUNS:-3}
LATENCY_RUNS=${LATENCY_RUNS:-$RUNS}
DURATION=${DURATION:-10s}
CLIENTS=${CLIENTS:-10}
SIZE=${SIZE:-64}
RATE=${RATE:-1000}
CONNS=${CONNS:-10000}
CONCURRENCY=${CONCURRENCY:-100}
HOLD=${HOLD:-5s}
SCENARIOS=${SCENARIOS:-fanin fanout pairs latency conn}
BROKERS=${BROKERS:-relay mosquitto nats forwarder}
PORT=${PORT:-18830}
BROKER_CPU=${BROKER_CPU:-0}
GEN_CPU=${GEN_CPU:-1}
TIME_LIMIT=${TIME_LIMIT:-3600}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/relay-compare-work.XXXXXX")
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/relay-compare.XXXXXX")}
mkdir -p "$OUT"
BROKER_PID=
BROKER_NAME=

# ---------------------------------------------------------------------------
# helpers

die() {
	echo "compare.sh: $*" >&2
	exit 1
}
say() { echo "compare.sh: $*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }

cleanup() {
	stop_broker
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# seconds DURATION prints whole seconds of a Go-style duration (10s, 2m, 500ms).
seconds() {
	case $1 in
	*ms) echo $((${1%ms} / 1000 + 1)) ;;
	*s) echo "${1%s}" ;;
	*m) echo $((${1%m} * 60)) ;;
	*h) echo $((${1%h} * 3600)) ;;
	*[!0-9]*) die "duration '$1': use e.g. 10s, 2m" ;;
	*) echo "$1" ;;
	esac
}

# install_mosquitto installs Debian's mosquitto broker if it is missing
# (the pattern of scripts/deps.sh: no refresh first, apt-get update only
# if that fails, output shown only on failure).
install_mosquitto() {
	have mosquitto && return 0
	[ -x /usr/sbin/mosquitto ] && return 0
	have apt-get || die "mosquitto not found and no apt-get: install it by hand"
	local prefix="" log
	if [ "$(id -u)" -ne 0 ]; then
		have sudo || die "need root or sudo to install mosquitto"
		prefix="sudo -n"
	fi
	log=$(mktemp "${TMPDIR:-/tmp}/relay-compare-apt.XXXXXX")
	# shellcheck disable=SC2206 # prefix is "" or "sudo -n": split on purpose
	local apt=($prefix env DEBIAN_FRONTEND=noninteractive apt-get -y -q
		-o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0)
	say "installing mosquitto (apt-get)"
	if timeout 600 "${apt[@]}" install --no-install-recommends mosquitto >"$log" 2>&1 ||
		{ timeout 600 "${apt[@]}" update >>"$log" 2>&1 &&
			timeout 600 "${apt[@]}" install --no-install-recommends mosquitto >>"$log" 2>&1; }; then
		rm -f "$log"
		return 0
	fi
	tail -n 20 "$log" >&2
	die "apt-get install mosquitto failed (log: $log)"
}

mosquitto_bin() {
	if have mosquitto; then command -v mosquitto; else echo /usr/sbin/mosquitto; fi
}

# mosquitto_version prints e.g. 2.0.11 ("mosquitto -h" exits non-zero).
mosquitto_version() {
	{ "$(mosquitto_bin)" -h 2>&1 || true; } | sed -n '1s/.*version \([^ ]*\).*/\1/p'
}

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

broker_port() {
	case $1 in
	relay) echo "$PORT" ;;
	mosquitto) echo $((PORT + 1)) ;;
	nats) echo $((PORT + 2)) ;;
	forwarder) echo $((PORT + 3)) ;;
	esac
}

# start_broker NAME starts a fresh broker pinned to BROKER_CPU and waits
# until it accepts connections; it sets BROKER_PID.
start_broker() {
	local name=$1 port dir log
	port=$(broker_port "$name")
	port_open "$port" && die "127.0.0.1:$port is already in use (set PORT)"
	dir="$WORK/$name-data"
	rm -rf "$dir"
	mkdir -p "$dir"
	log="$OUT/$name.log"
	case $name in
	relay)
		taskset -c "$BROKER_CPU" "$RELAY" serve --allow-anonymous --data-dir "$dir" \
			--mqtt-addr "127.0.0.1:$port" --http-addr "" --log-level warn >>"$log" 2>&1 &
		;;
	mosquitto)
		cat >"$dir/mosquitto.conf" <<-EOF
			listener $port 127.0.0.1
			allow_anonymous true
			persistence false
			set_tcp_nodelay true
			log_dest stderr
			log_type error
			log_type warning
		EOF
		# Without set_tcp_nodelay, Nagle's algorithm puts tens of ms on
		# Mosquitto's latency tail; Relay and nats-server (Go) disable it.
		chmod 755 "$dir"
		chmod 644 "$dir/mosquitto.conf"
		taskset -c "$BROKER_CPU" "$(mosquitto_bin)" -c "$dir/mosquitto.conf" >>"$log" 2>&1 &
		;;
	nats)
		taskset -c "$BROKER_CPU" "$WORK/natsmqtt" -addr "127.0.0.1:$port" -store "$dir" >>"$log" 2>&1 &
		;;
	forwarder)
		taskset -c "$BROKER_CPU" "$RELAY" bench forward --addr "127.0.0.1:$port" >>"$log" 2>&1 &
		;;
	*) die "unknown broker '$name' (relay, mosquitto, nats, forwarder)" ;;
	esac
	BROKER_PID=$! BROKER_NAME=$name

	for _ in $(seq 300); do
		kill -0 "$BROKER_PID" 2>/dev/null || {
			tail -n 20 "$log" >&2
			die "$name exited at start (log: $log)"
		}
		port_open "$port" && return 0
		sleep 0.1
	done
	die "$name does not accept connections on 127.0.0.1:$port after 30 s (log: $log)"
}

# stop_broker stops the broker started last: SIGTERM, then SIGKILL after 15 s.
stop_broker() {
	[ -n "$BROKER_PID" ] || return 0
	local pid=$BROKER_PID
	BROKER_PID=
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 150); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		say "$BROKER_NAME did not stop in 15 s; killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

# bench NAME KEY RUN ARGS... runs the generator against broker NAME and keeps
# its JSON result as $OUT/NAME/KEY.RUN.json.
bench() {
	local name=$1 key=$2 n=$3
	shift 3
	if [ "$SECONDS" -ge "$TIME_LIMIT" ]; then
		say "time limit ($TIME_LIMIT s) reached: skipping $name $key run $n"
		return 0
	fi
	local port res limit
	port=$(broker_port "$name")
	res="$OUT/$name/$key.$n.json"
	mkdir -p "$OUT/$name"
	limit=$(($(seconds "$DURATION") + $(seconds "$HOLD") + 120))
	if ! timeout -k 5 "$limit" taskset -c "$GEN_CPU" "$RELAY" bench "$@" --addr "127.0.0.1:$port" \
		--json --quiet >"$res.tmp" 2>"$OUT/$name/$key.$n.err"; then
		say "$name $key run $n failed: $(tail -n 3 "$OUT/$name/$key.$n.err" | tr '\n' ' ')"
		rm -f "$res.tmp"
		return 0
	fi
	mv "$res.tmp" "$res"
	say "$name $key run $n: $(headline "$res")"
}

# headline prints a result's main number (without jq: grep the JSON).
headline() {
	local f=$1 v
	case $f in
	*/conn.*) v=$(grep -o '"connects_per_s": [0-9.]*' "$f" | head -n1) ;;
	*/latency-*) v=$(grep -o '"p99_us": [0-9.]*' "$f" | head -n1) ;;
	*) v="$(grep -o '"delivered_per_s": [0-9.]*' "$f") $(grep -o '"lost": [0-9]*' "$f")" ;;
	esac
	echo "$v"
}

# ---------------------------------------------------------------------------
# setup

have taskset || die "taskset not found (Debian package util-linux)"
have timeout || die "timeout not found (coreutils)"
have go || die "go not found"
[ "$(nproc --all)" -ge 2 ] || die "need at least 2 CPUs (broker and generator are pinned apart)"
for b in $BROKERS; do
	case $b in relay | mosquitto | nats | forwarder) ;; *) die "unknown broker '$b'" ;; esac
done
case " $BROKERS " in *" relay "*) ;; *) die "BROKERS must include relay (the ratios are Relay/peer)" ;; esac

# Open files: the generator holds CONNS connections, and so does the broker.
want=$((CONNS + 1024))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then
	CONNS=$((hard - 1024))
	say "open files limited to $hard: conn uses $CONNS clients"
	want=$hard
fi
ulimit -n "$want"

case " $BROKERS " in *" mosquitto "*) install_mosquitto ;; esac

cd "$ROOT"
if [ -z "${RELAY:-}" ]; then
	say "building relay and natsmqtt"
	timeout 600 go build -o "$WORK/relay" ./cmd/relay
	RELAY="$WORK/relay"
fi
"$RELAY" bench help >/dev/null 2>&1 ||
	die "$RELAY has no bench command (cmd/relay/main.go needs: case \"bench\": return runBench(...))"
timeout 600 go build -o "$WORK/natsmqtt" ./bench/compare/natsmqtt
timeout 600 go build -o "$WORK/table" ./bench/compare/table

# Machine and versions, for the record.
{
	echo "- machine: $(nproc --all) vCPU ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r), $(sed -n "s/^PRETTY_NAME=//p" /etc/os-release | tr -d \")"
	echo "- relay: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes'), $(go version | cut -d' ' -f3)"
	case " $BROKERS " in *" mosquitto "*) echo "- mosquitto: $(mosquitto_version) (Debian package; set_tcp_nodelay true, otherwise defaults)" ;; esac
	case " $BROKERS " in *" nats "*) echo "- nats-server: $("$WORK/natsmqtt" -version) (MQTT, in process, JetStream on disk)" ;; esac
	echo "- pinning: broker on CPU $BROKER_CPU, generator on CPU $GEN_CPU (taskset); loopback; $SIZE-byte payloads; $CLIENTS clients; $DURATION windows; median of $RUNS (latency: median of $LATENCY_RUNS rounds, every broker in turn each round)"
} >"$OUT/machine.md"
cat "$OUT/machine.md" >&2

: >"$OUT/brokers.tsv"
for b in $BROKERS; do
	case $b in
	relay) title="Relay" ;;
	mosquitto) title="Mosquitto $(mosquitto_version)" ;;
	nats) title="nats-server $("$WORK/natsmqtt" -version) MQTT" ;;
	forwarder) title="forwarder (generator ceiling)" ;;
	esac
	printf '%s\t%s\n' "$b" "$title" >>"$OUT/brokers.tsv"
done
printf 'clients\t%s\nconns\t%s\nrate\t%s\nruns\t%s\nduration\t%s\n' \
	"$CLIENTS" "$CONNS" "$(printf "%'d" "$RATE" 2>/dev/null || echo "$RATE")" "$RUNS" "$DURATION" >"$OUT/params.tsv"

# ---------------------------------------------------------------------------
# runs

for s in $SCENARIOS; do
	case $s in fanin | fanout | pairs | latency | conn) ;; *) die "unknown scenario '$s'" ;; esac
done
has() { case " $SCENARIOS " in *" $1 "*) return 0 ;; esac; return 1; }

for b in $BROKERS; do
	if has fanin || has fanout || has pairs; then
		start_broker "$b"
		for s in $SCENARIOS; do
			case $s in fanin | fanout | pairs) ;; *) continue ;; esac
			for q in 0 1; do
				for n in $(seq "$RUNS"); do
					bench "$b" "$s-q$q" "$n" "$s" --qos "$q" --clients "$CLIENTS" --size "$SIZE" --duration "$DURATION"
				done
			done
		done
		stop_broker
	fi
	if has conn; then
		# A fresh broker for every run: memory per connection is measured
		# from its start.
		for n in $(seq "$RUNS"); do
			start_broker "$b"
			sleep 1
			bench "$b" conn "$n" conn --clients "$CONNS" --concurrency "$CONCURRENCY" --duration "$HOLD" --pid "$BROKER_PID"
			stop_broker
		done
	fi
done

# Latency in rounds: each round starts every broker afresh, alone, in turn,
# so that all of them are measured within the same minute or two rather
# than tens of minutes apart, after different loads. The p99 at 1,000
# msg/s moves with the host from run to run: the forwarder against itself,
# alternating, gave ratios of medians of 3 from 0.79 to 1.41
# (bench/RESULTS.md). Rounds keep a slow drift from favouring whichever
# broker happened to run at a quiet time; LATENCY_RUNS=9 narrows the rest.
if has latency; then
	for n in $(seq "$LATENCY_RUNS"); do
		for b in $BROKERS; do
			start_broker "$b"
			sleep 2 # let it settle: start-up work is not the tail under test
			for q in 0 1; do
				bench "$b" "latency-q$q" "$n" latency --qos "$q" --rate "$RATE" --size "$SIZE" --duration "$DURATION"
			done
			stop_broker
		done
	done
fi

# ---------------------------------------------------------------------------
# table

{
	cat "$OUT/machine.md"
	echo
	"$WORK/table" "$OUT"
} | tee "$OUT/table.md"
say "results in $OUT (table.md, one JSON file per run)"
