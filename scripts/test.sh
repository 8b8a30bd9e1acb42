#!/usr/bin/env bash
# scripts/test.sh — run every sluice test, the way CI does.
#
# Installs what the tests need and is missing (Go modules; Postfix 3.7,
# whose own tools are the oracle, and swaks), then checks gofmt, runs
# go vet and go test -race ./... . Oracle tests start throwaway Postfix
# instances on loopback ports; nothing is left running afterwards.
#
# It never skips silently: without Postfix (and not root to install it)
# it fails, unless SLUICE_NO_POSTFIX=1 is set, which skips the oracle
# tests with a loud message.
#
# Environment: SLUICE_NO_POSTFIX=1 (see above); GOFLAGS and the usual Go
# variables pass through.
set -euo pipefail

cd "$(dirname "$0")/.."
top=$(pwd)

say() { printf '==> %s\n' "$*"; }
die() { printf 'scripts/test.sh: FAIL: %s\n' "$*" >&2; exit 1; }

start=$(date +%s)

# --- Go ----------------------------------------------------------------------
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"
# Go's build cache lives under $HOME; CI may start us without one.
if [ -z "${HOME:-}" ]; then
	HOME=$(getent passwd "$(id -u)" | cut -d: -f6)
	export HOME
fi
command -v go >/dev/null || die "Go is not installed (need Go $(sed -n 's/^go //p' go.mod) or newer at /usr/local/go or on PATH)"
want=$(sed -n 's/^go //p' go.mod)
have=$(go env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n1)" != "$want" ]; then
	die "Go $have is too old; go.mod wants $want"
fi
say "Go $have"

# --- Postfix (the oracle), swaks, a C compiler ---------------------------------
. scripts/deps.sh
# COMMAND=PACKAGE for everything the tests run.
wanted=(postfix=postfix postconf=postfix postqueue=postfix postcat=postfix postsuper=postfix
	postdrop=postfix qshape=postfix sendmail=postfix smtp-sink=postfix smtp-source=postfix
	user:postfix=postfix swaks=swaks
	doveadm=dovecot-core file:/usr/share/doc/libnet-ssleay-perl/copyright=libnet-ssleay-perl # AUTH tests: Dovecot, swaks --tls
	python3=python3 bsd-mailx=bsd-mailx # read back local mailboxes as real readers do
	pflogsumm=pflogsumm # Postfix's log summarizer reads our mail log (test/e2e)
	gcc=gcc file:/usr/include/stdio.h=libc6-dev # go test -race needs cgo
	file:/etc/ssl/certs/ca-certificates.crt=ca-certificates # go mod download over HTTPS
	opendkim=opendkim opendkim-genkey=opendkim-tools # the milter test's DKIM signer
	file:/usr/lib/python3/dist-packages/dkim/__init__.py=python3-dkim # and its verifier
	chromium=chromium # the dashboard's browser test (test/dashboard)
)
missing_tools() { deps_missing "${wanted[@]}"; }
missing=$(missing_tools)
if [ -n "$missing" ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		deps_install $missing || die "could not install $(echo $missing)"
		missing=$(missing_tools)
		[ -z "$missing" ] || die "still missing after apt-get: $(echo $missing)"
	elif [ "${SLUICE_NO_POSTFIX:-}" = 1 ]; then
		printf '\n!!! SLUICE_NO_POSTFIX=1: missing %s; the oracle tests will be SKIPPED and prove nothing.\n\n' "$(echo $missing)" >&2
	else
		die "missing $(echo $missing) and I cannot install it (need root and apt-get). Install them, or set SLUICE_NO_POSTFIX=1 to skip the oracle tests explicitly."
	fi
fi
if [ -z "$(missing_tools)" ]; then
	say "$(postconf -d -h mail_version 2>/dev/null | sed 's/^/Postfix /')"
fi

# --- Go modules ------------------------------------------------------------------
say "go mod download"
go mod download

# --- gofmt, vet ------------------------------------------------------------------
say "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*'))
[ -z "$unformatted" ] || die "gofmt would change: $(echo $unformatted)"
say "go vet ./..."
go vet ./...

# --- tests -----------------------------------------------------------------------
# A private TMPDIR: the oracle's Postfix instances live under it, so any
# master a crashed test left behind can be found and stopped below.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sluice-test.XXXXXX")
chmod 755 "$tmp"
stop_strays() {
	local pidfile pid
	for pidfile in $(find "$tmp" -path '*/pid/master.pid' 2>/dev/null); do
		pid=$(awk '{print $1; exit}' "$pidfile" 2>/dev/null || true)
		if [ -n "$pid" ] && [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$(dirname "$(dirname "$pidfile")")" ]; then
			echo "scripts/test.sh: stopping a Postfix master ($pid) a test left running" >&2
			kill -TERM "$pid" 2>/dev/null || true
			sleep 1
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
	# And sluice daemons a killed test process could not stop.
	pkill -KILL -f "^$tmp/.*sluice serve " 2>/dev/null || true
	rm -rf "$tmp"
}
trap stop_strays EXIT
# Unix sockets (the spool's public/ ones, Postfix's and sluice's) allow
# paths of 108 bytes; tests put spools a good 80 bytes below TMPDIR. A long
# TMPDIR is reached through a short link, which keeps the files where
# TMPDIR says and the paths short.
testtmp=$tmp
if [ ${#tmp} -gt 28 ]; then
	testtmp=$(mktemp -u /tmp/sluice-t.XXXXXX)
	ln -s "$tmp" "$testtmp"
	trap 'rm -f "$testtmp"; stop_strays' EXIT
	say "TMPDIR $tmp, reached as $testtmp"
fi

say "go test -race ./..."
status=0
TMPDIR="$testtmp" go test -race -count=1 -timeout 15m ./... || status=$?

end=$(date +%s)
say "scripts/test.sh took $((end - start)) s"
[ "$status" = 0 ] || die "go test failed (status $status)"
say "all tests passed"
