#!/usr/bin/env bash
# deps.sh — install what Relay's tests need, if it is missing.
#
#   ./scripts/deps.sh            check/install every dependency
#   ./scripts/deps.sh go mosquitto   only the named ones
#
# Idempotent and quiet: prints nothing when everything is already there
# (or was installed cleanly); prints what failed, and why, otherwise.
# Debian packages are installed with apt-get, through sudo when not root.
#
# Adding a dependency: write a dep_<name> function that returns 0 when the
# thing is usable (installing it first if need be) and calls die otherwise,
# then add <name> to DEPS. Coming: dep_postgres (start a throw-away server
# on loopback; its binaries refuse to run as root, so start it with
# `runuser -u postgres` when root), dep_node, dep_chromium (Debian's
# chromium + chromium-driver through apt_install).
set -euo pipefail

# Order matters: later entries may rely on earlier ones.
DEPS=(go mosquitto)

# ---------------------------------------------------------------------------
# helpers

die() {
	echo "deps.sh: $*" >&2
	exit 1
}

have() { command -v "$1" >/dev/null 2>&1; }

# root_prefix prints the command prefix that runs a command as root: nothing
# when we are root, "sudo -n" otherwise; it dies when neither works. Call it
# before redirecting output, so that its error reaches the terminal.
root_prefix() {
	if [ "$(id -u)" -eq 0 ]; then
		return 0
	fi
	have sudo || die "need root to install packages (not root and no sudo); install them by hand"
	echo "sudo -n"
}

# apt_install PKG... installs Debian packages. It tries without refreshing
# the package lists first (fast when the lists are fresh enough) and
# runs apt-get update only when that fails. Output goes to a log that is
# shown only on failure.
apt_install() {
	have apt-get || die "apt-get not found: install $* by hand"
	local prefix log
	prefix=$(root_prefix) || exit 1
	log=$(mktemp "${TMPDIR:-/tmp}/relay-deps.XXXXXX")
	# shellcheck disable=SC2206 # prefix is "" or "sudo -n": split on purpose
	local apt=($prefix env DEBIAN_FRONTEND=noninteractive apt-get -y -q
		-o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0)
	if "${apt[@]}" install --no-install-recommends "$@" >"$log" 2>&1 ||
		{ "${apt[@]}" update >>"$log" 2>&1 &&
			"${apt[@]}" install --no-install-recommends "$@" >>"$log" 2>&1; }; then
		rm -f "$log"
		return 0
	fi
	echo "deps.sh: apt-get install $* failed; last lines of $log:" >&2
	tail -n 20 "$log" >&2
	exit 1
}

# ---------------------------------------------------------------------------
# dependencies: one dep_<name> function each

# go: the Go toolchain. Not installed here (CI machines have it at
# /usr/local/go); we only check that it runs.
dep_go() {
	if ! have go && [ -x /usr/local/go/bin/go ]; then
		die "go is at /usr/local/go/bin/go but not on PATH; add /usr/local/go/bin to PATH"
	fi
	have go || die "go not found; install Go (see go.mod for the version) and put it on PATH"
	go version >/dev/null 2>&1 || die "'go version' failed: $(go version 2>&1 | head -n 3)"
}

# mosquitto: mosquitto_pub and mosquitto_sub, used as independent MQTT
# clients by interoperability tests.
dep_mosquitto() {
	if have mosquitto_pub && have mosquitto_sub; then
		return 0
	fi
	apt_install mosquitto-clients
	if ! have mosquitto_pub || ! have mosquitto_sub; then
		die "mosquitto-clients installed but mosquitto_pub/mosquitto_sub not on PATH"
	fi
}

# ---------------------------------------------------------------------------

main() {
	local want=("$@")
	[ ${#want[@]} -gt 0 ] || want=("${DEPS[@]}")
	local d
	for d in "${want[@]}"; do
		declare -F "dep_$d" >/dev/null || die "unknown dependency '$d' (known: ${DEPS[*]})"
		"dep_$d"
	done
}

# Run main unless sourced (sourcing gives other scripts the helpers).
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	main "$@"
fi
