#!/usr/bin/env bash
# fuzz.sh — run every Fuzz* target in the module for a bounded time each.
#
#   ./scripts/fuzz.sh                 all targets, FUZZTIME each (default 20s)
#   FUZZTIME=2m ./scripts/fuzz.sh ./broker/packet   only that package
#
# Targets are found with `go test -list '^Fuzz'` per package and run one at
# a time (go test -fuzz takes one target in one package). A failure leaves
# its input under <pkg>/testdata/fuzz/<Target>/: commit it as a regression
# case together with the fix. Exits non-zero if any target failed.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
FUZZTIME=${FUZZTIME:-20s}

pkgs=("$@")
if [ ${#pkgs[@]} -eq 0 ]; then
	# Only packages with test files can hold fuzz targets.
	mapfile -t pkgs < <(go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' ./...)
fi

ran=0
failed=()
for pkg in "${pkgs[@]}"; do
	[ -n "$pkg" ] || continue
	if ! list=$(go test -list '^Fuzz' "$pkg" 2>&1); then
		echo "fuzz: listing targets in $pkg failed:" >&2
		echo "$list" >&2
		failed+=("$pkg (list)")
		continue
	fi
	while read -r target; do
		echo "=== fuzz $pkg $target ($FUZZTIME)"
		ran=$((ran + 1))
		if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg" </dev/null; then
			failed+=("$pkg.$target")
		fi
	done < <(grep -E '^Fuzz[A-Za-z0-9_]*$' <<<"$list")
done

echo "fuzz: $ran targets run, ${#failed[@]} failed${failed:+: ${failed[*]}}"
[ ${#failed[@]} -eq 0 ]
