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
# then add <name> to DEPS.
set -euo pipefail

# Order matters: later entries may rely on earlier ones.
DEPS=(go mosquitto postgres node chromium)

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

# postgres: the PostgreSQL server programs (initdb, pg_ctl, postgres; 15 or
# later) for internal/pgtest, which starts a throw-away server per test
# binary (nothing is started here), and the postgres OS user it runs them
# as when the tests run as root (PostgreSQL refuses to run as root).
# pgtest looks on PATH, then in /usr/lib/postgresql/<major>/bin (Debian's
# place, not on PATH), newest first; so does pg_bindir.
pg_bindir() {
	local d onpath
	onpath=$(command -v pg_ctl 2>/dev/null) || onpath=/nonexistent/pg_ctl
	# An unmatched glob stays literal and fails the -x tests below.
	for d in "${onpath%/*}" $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k5,5nr); do
		if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then
			echo "$d"
			return 0
		fi
	done
	return 1
}

dep_postgres() {
	local bindir prefix
	if ! bindir=$(pg_bindir); then
		prefix=$(root_prefix) || exit 1
		# No distribution-managed cluster: the tests start their own
		# servers. (Debian's postgresql-common reads this drop-in when the
		# package creates its main cluster.)
		$prefix mkdir -p /etc/postgresql-common/createcluster.d
		echo "create_main_cluster = false" |
			$prefix tee /etc/postgresql-common/createcluster.d/relay-no-main-cluster.conf >/dev/null
		apt_install postgresql
		bindir=$(pg_bindir) ||
			die "postgresql installed but initdb/pg_ctl/postgres not found on PATH or in /usr/lib/postgresql/*/bin"
	fi
	local version major
	version=$("$bindir/postgres" --version 2>&1) || die "'$bindir/postgres --version' failed: $version"
	major=$(echo "$version" | sed -n 's/.*(PostgreSQL) \([0-9][0-9]*\).*/\1/p')
	if [ -z "$major" ] || [ "$major" -lt 15 ]; then
		die "PostgreSQL 15 or later needed, found '$version' in $bindir"
	fi
	if [ "$(id -u)" -eq 0 ] && ! id -u postgres >/dev/null 2>&1; then
		# Debian's package creates it; binaries from elsewhere may not.
		useradd --system --user-group --home-dir /var/lib/postgresql --shell /usr/sbin/nologin postgres ||
			die "could not create the postgres OS user"
	fi
}

# node: Node.js and npm, for tests that drive real JavaScript MQTT clients
# (MQTT.js). The packages they use are pinned in e2e/js/package-lock.json
# and installed into e2e/js/node_modules (from the npm registry) when that
# lock file is newer than the installed tree.
dep_node() {
	if ! have node || ! have npm; then
		apt_install nodejs npm
	fi
	have node || die "nodejs installed but node not on PATH"
	local dir=e2e/js
	[ -f "$dir/package-lock.json" ] || return 0
	if [ ! -f "$dir/node_modules/.package-lock.json" ] ||
		[ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
		local log
		log=$(mktemp "${TMPDIR:-/tmp}/relay-deps.XXXXXX")
		if ! npm ci --prefix "$dir" --no-audit --no-fund >"$log" 2>&1; then
			echo "deps.sh: npm ci in $dir failed; last lines of $log:" >&2
			tail -n 20 "$log" >&2
			exit 1
		fi
		rm -f "$log"
	fi
}

# chromium: Debian's headless Chromium, driven by the dashboard's browser
# tests (chromedp). Tests find it at /usr/bin/chromium or $RELAY_CHROMIUM.
dep_chromium() {
	if have chromium || [ -n "${RELAY_CHROMIUM:-}" ]; then
		return 0
	fi
	apt_install chromium
	have chromium || die "chromium installed but not on PATH"
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
