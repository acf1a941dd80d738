#!/usr/bin/env bash
# test.sh — Relay's whole test run, the one CI runs (via .ci/run).
#
#   ./scripts/test.sh
#   FUZZTIME=1m ./scripts/test.sh     longer fuzzing per target (default 20s)
#   FUZZTIME=0 ./scripts/test.sh      skip fuzzing
#
# Steps: deps (install/check tools), go vet, go test on every package,
# go test -race -short on the broker, backbone, services and dashboard (the
# concurrent code; -short keeps the scale test small), then every Fuzz* target for FUZZTIME.
# A failing step does not stop the later ones (so one run shows every
# problem), except deps: without the tools nothing else is meaningful.
# Prints a summary with each step's time; exits 1 if any step failed.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
export FUZZTIME=${FUZZTIME:-20s}

names=() results=() times=()
failures=0
start_all=$EPOCHREALTIME

# elapsed START prints the seconds since START (an $EPOCHREALTIME), 0.1s precision.
elapsed() {
	awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'
}

# step NAME CMD... runs CMD, records its result and time.
step() {
	local name=$1
	shift
	echo
	echo "=== step: $name: $*"
	local t0=$EPOCHREALTIME rc=0
	"$@" || rc=$?
	local dt
	dt=$(elapsed "$t0")
	names+=("$name")
	times+=("$dt")
	if [ "$rc" -eq 0 ]; then
		results+=(ok)
	else
		results+=("FAIL (exit $rc)")
		failures=$((failures + 1))
	fi
	echo "=== step: $name: ${results[-1]} in $dt"
	return "$rc"
}

summary() {
	echo
	echo "=== summary"
	local i
	for i in "${!names[@]}"; do
		printf '  %-6s %-16s %8s\n' "${names[$i]}" "${results[$i]}" "${times[$i]}"
	done
	printf '  %-6s %-16s %8s\n' total "$([ "$failures" -eq 0 ] && echo ok || echo "$failures step(s) failed")" "$(elapsed "$start_all")"
}

if ! step deps bash scripts/deps.sh; then
	summary
	exit 1
fi
step vet go vet ./...
# The 10,000-session scale test runs on its own, so that its numbers are
# not taken on a machine busy with the other packages' tests.
step test go test -count=1 -timeout 20m -skip '^TestPersistentSessionsScale$' ./...
step scale go test -count=1 -timeout 10m -run '^TestPersistentSessionsScale$' -v ./services/
step race go test -race -short -count=1 -timeout 20m ./broker/... ./natsbus/... ./services/... ./dashboard/...
if [ "$FUZZTIME" != 0 ]; then
	step fuzz bash scripts/fuzz.sh
fi
summary
[ "$failures" -eq 0 ]
