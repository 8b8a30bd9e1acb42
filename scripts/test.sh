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

# --- Postfix (the oracle), swaks ------------------------------------------------
postfix_tools=(postfix postconf postqueue postcat postsuper postdrop qshape sendmail smtp-sink smtp-source)
missing_tools() {
	local t
	for t in "${postfix_tools[@]}"; do
		[ -x "/usr/sbin/$t" ] || command -v "$t" >/dev/null 2>&1 || echo "$t"
	done
	command -v swaks >/dev/null 2>&1 || echo swaks
	getent passwd postfix >/dev/null || echo "user:postfix"
	command -v gcc >/dev/null 2>&1 || echo gcc # go test -race needs cgo
}
missing=$(missing_tools)
if [ -n "$missing" ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		say "installing Postfix, swaks and gcc (missing: $(echo $missing))"
		export DEBIAN_FRONTEND=noninteractive
		# "No configuration": the package writes no main.cf and its
		# postinst starts nothing; our tests run their own instances.
		echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
		made_policy=
		if [ ! -e /usr/sbin/policy-rc.d ]; then
			# Belt and braces: no service may start during the install.
			printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
			chmod 755 /usr/sbin/policy-rc.d
			made_policy=1
		fi
		aptlog=$(mktemp)
		if ! { apt-get update -q && apt-get install -y -q --no-install-recommends postfix swaks gcc libc6-dev; } </dev/null >"$aptlog" 2>&1; then
			tail -n 40 "$aptlog" >&2
			[ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
			die "apt-get could not install postfix, swaks and gcc (log above)"
		fi
		rm -f "$aptlog"
		[ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
		missing=$(missing_tools)
		[ -z "$missing" ] || die "still missing after installing Postfix: $(echo $missing)"
	elif [ "${SLUICE_NO_POSTFIX:-}" = 1 ]; then
		printf '\n!!! SLUICE_NO_POSTFIX=1: Postfix is missing (%s); the oracle tests will be SKIPPED and prove nothing.\n\n' "$(echo $missing)" >&2
	else
		die "Postfix is missing ($(echo $missing)) and I cannot install it (need root and apt-get). Install postfix and swaks, or set SLUICE_NO_POSTFIX=1 to skip the oracle tests explicitly."
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
tmp=$(mktemp -d /tmp/sluice-test.XXXXXX)
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
	rm -rf "$tmp"
}
trap stop_strays EXIT

say "go test -race ./..."
status=0
TMPDIR="$tmp" go test -race -count=1 -timeout 15m ./... || status=$?

end=$(date +%s)
say "scripts/test.sh took $((end - start)) s"
[ "$status" = 0 ] || die "go test failed (status $status)"
say "all tests passed"
