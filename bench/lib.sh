# bench/lib.sh — sourced by the benchmarks: installs what they need on a
# fresh Debian machine and offers the helpers they share.
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/deps.sh"

# bench_need SPEC...: as deps_missing's specs; installs what is missing
# (as root) or exits saying what is.
bench_need() {
	local missing
	missing=$(deps_missing "$@")
	[ -z "$missing" ] || deps_install $missing || exit 1
	PATH=$PATH:/usr/sbin:/sbin
}

# freeport: a TCP port on which nothing listens now, from the kernel's
# socket tables (no python needed).
freeport() {
	local p hex
	while :; do
		p=$((20000 + RANDOM % 40000))
		hex=$(printf ':%04X ' "$p")
		grep -qi -- "$hex" /proc/net/tcp /proc/net/tcp6 2>/dev/null || { echo "$p"; return; }
	done
}

# postfix_log FILE: makes FILE (a mail log that Postfix's tools may write)
# owned by postfix before anything else creates it: with Postfix stopped,
# postsuper writes its log itself as the mail owner and dies if it cannot.
postfix_log() {
	mkdir -p "$(dirname "$1")"
	touch "$1"
	chown postfix "$1"
}
