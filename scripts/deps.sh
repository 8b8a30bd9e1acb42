# scripts/deps.sh — sourced by scripts/test.sh and the benchmarks: finds the
# Debian packages whose commands are missing and installs them with apt-get
# (as root), so every script runs on a fresh Debian machine.
#
#   . scripts/deps.sh
#   missing=$(deps_missing postqueue=postfix hyperfine=hyperfine bc=bc)
#   [ -z "$missing" ] || deps_install $missing || exit 1
#
# A SPEC is COMMAND=PACKAGE: PACKAGE is wanted when COMMAND is neither on
# PATH nor in /usr/sbin or /sbin. COMMAND may be user:NAME (a system user
# the package creates) or file:PATH (a file the package installs).

deps_missing() {
	local spec cmd pkg seen=" "
	for spec in "$@"; do
		cmd=${spec%%=*} pkg=${spec#*=}
		case $cmd in
		user:*) getent passwd "${cmd#user:}" >/dev/null && continue ;;
		file:*) [ -e "${cmd#file:}" ] && continue ;;
		*) { command -v "$cmd" || [ -x "/usr/sbin/$cmd" ] || [ -x "/sbin/$cmd" ]; } >/dev/null 2>&1 && continue ;;
		esac
		case $seen in *" $pkg "*) continue ;; esac
		seen="$seen$pkg "
		echo "$pkg"
	done
}

# deps_install PACKAGE...: apt-get install, non-interactive. Postfix is
# preseeded to "No configuration" (no main.cf is written, nothing starts,
# nothing asks), and a policy-rc.d keeps every service from starting during
# the install. Fails, saying why, when not root or without apt-get.
deps_install() {
	[ $# -gt 0 ] || return 0
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
		echo "missing Debian packages: $*; install them as root (apt-get install $*)" >&2
		return 1
	fi
	echo "==> apt-get install $*" >&2
	export DEBIAN_FRONTEND=noninteractive
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	local made_policy= log status=0
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		made_policy=1
	fi
	log=$(mktemp)
	{ apt-get update -q && apt-get install -y -q --no-install-recommends "$@"; } </dev/null >"$log" 2>&1 || status=$?
	[ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
	if [ "$status" != 0 ]; then
		tail -n 40 "$log" >&2
		echo "apt-get could not install $* (log above)" >&2
	fi
	rm -f "$log"
	return "$status"
}
