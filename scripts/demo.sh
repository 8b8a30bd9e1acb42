#!/usr/bin/env bash
# scripts/demo.sh — build sluice and show its queue tools at work.
#
# Runs on sluice's embedded defaults, except that the spool is a
# temporary directory instead of /var/spool/sluice: a config directory
# whose main.cf says only "queue_directory = ...". It writes a small
# deferred queue with `sluice inject` (no daemon needed) and shows it
# with mailq, postqueue -j, qshape and postcat, which print what
# Postfix's tools of the same names print for that spool.
#
# SLUICE_DEMO_KEEP=1 keeps the temporary directory (its path is printed)
# so you can point other tools at it (MAIL_CONFIG=DIR/etc).
#
# Later, when the daemon is the demo: replace the "inject" section with
# `sluice serve -c "$etc" &`, a few messages over SMTP to its listener,
# and a wait until they are deferred; the "show" section stays.
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "scripts/demo.sh: Go is not installed (see README.md)" >&2; exit 1; }

work=$(mktemp -d /tmp/sluice-demo.XXXXXX)
if [ "${SLUICE_DEMO_KEEP:-}" = 1 ]; then
	echo "keeping $work"
else
	trap 'rm -rf "$work"' EXIT
fi
bin=$work/bin etc=$work/etc
mkdir -p "$bin" "$etc"

echo "==> go build -o $bin/sluice ./cmd/sluice"
go build -o "$bin/sluice" ./cmd/sluice
# One binary; it is each tool by the name it runs as.
for tool in mailq postqueue postcat qshape postsuper; do
	ln -s sluice "$bin/$tool"
done
echo "queue_directory = $work/spool" >"$etc/main.cf"
export MAIL_CONFIG=$etc PATH="$bin:$PATH"

run() {
	printf '\n$ %s\n' "$*"
	"$@"
}

# --- inject: a small queue, as a real one looks after a bad hour ----------------
msg() { printf 'Subject: %s\nFrom: %s\nTo: %s\n\n%s\n' "$1" "$2" "$3" "${4:-Hello.}"; }
refused="connect to mx.example.com[192.0.2.10]:25: Connection refused"
greylist="host mx.example.org[198.51.100.7] said: 450 4.2.0 <bob@example.org>: Recipient address rejected: Greylisted, please try again in 300 seconds (in reply to RCPT TO command)"
sluice inject -T -7m -f alice@shop.test -r "$refused" carol@example.com dave@example.com \
	< <(msg "Your order" alice@shop.test carol@example.com) >/dev/null
sluice inject -T -42m -f news@shop.test -R "bob@example.org=$greylist" -r "$refused" bob@example.org erin@example.com \
	< <(msg "Newsletter" news@shop.test bob@example.org) >/dev/null
sluice inject -T -3h -f "" -r "$refused" frank@example.com \
	< <(msg "Undelivered Mail Returned to Sender" MAILER-DAEMON frank@example.com) >/dev/null
sluice inject -q hold -T -26h -f billing@shop.test -r "$refused" grace@example.com \
	< <(msg "Invoice" billing@shop.test grace@example.com) >/dev/null
sluice inject -n 4 -T -95m -f bulk@shop.test -s 4.7.0 -r "host mx.example.net[203.0.113.5] said: 421 4.7.0 Too many connections, try again later" \
	user@example.net < <(msg "Bulk" bulk@shop.test user@example.net) >/dev/null
id=$(sluice inject -f alice@shop.test -F "Alice Example" heidi@example.com \
	< <(msg "Just arrived" alice@shop.test heidi@example.com "Not tried yet."))

# --- show ---------------------------------------------------------------------------
run mailq
run postqueue -j
run qshape deferred
run qshape -s deferred hold
run postcat -q "$id"
