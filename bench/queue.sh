#!/usr/bin/env bash
# bench/queue.sh [N] — times sluice's queue tools against Postfix's own on
# the same N-message deferred spool (default 100000), side by side in one
# run, and prints the ratios (Postfix time / sluice time; > 1 means sluice
# is faster). Run as root on a machine with Postfix installed
# (scripts/test.sh installs it). Timings are warm-cache, taken by
# hyperfine. Environment: BENCH_DIR (default /tmp/sluice-bench), RUNS
# (default 5).
#
# Compared: mailq, postqueue -j, qshape deferred, qshape -s deferred (each
# also through a running `sluice serve`, which answers from its live model
# of the queue: mailq and postqueue -j in the queue directories' order,
# reading the files of messages the model cannot give, see showq.Lister),
# `sluice queue summary`
# against Postfix's qshape (the nearest Postfix has to "why is it stuck"),
# postcat -q ID, and deleting the mail of one recipient (sluice queue
# delete rcpt=… against the man page's mailq|awk|postsuper -d - pipeline).
# Baseline: reading every queue file once with cat.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
WORK=${BENCH_DIR:-/tmp/sluice-bench}
RUNS=${RUNS:-5}
export TZ=UTC
[ "$(id -u)" = 0 ] || { echo "bench: run as root (Postfix's tools read a stopped spool only as root)" >&2; exit 1; }
. bench/lib.sh
bench_need curl=curl hyperfine=hyperfine postqueue=postfix postcat=postfix qshape=postfix postsuper=postfix mailq=postfix user:postfix=postfix

mkdir -p "$WORK"
S=$WORK/sluice
go build -o "$S" ./cmd/sluice

# The spool: built once per N, then reused.
if [ ! -f "$WORK/spool.$N.done" ]; then
	rm -rf "$WORK/spool" "$WORK"/spool.*.done
	echo "building a $N-message spool in $WORK/spool ..." >&2
	go run ./bench/mkspool -dir "$WORK/spool" -n "$N"
	touch "$WORK/spool.$N.done"
fi

# A configuration through which both Postfix's tools and sluice's read it.
config() { # config DIR SPOOL
	mkdir -p "$1" "$WORK/data" "$WORK/log"
	# sluice serve (below) and Postfix's postsuper both append to it.
	postfix_log "$WORK/log/maillog"
	cp /usr/share/postfix/master.cf.dist "$1/master.cf"
	cat >"$1/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $2
data_directory = $WORK/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = $WORK/log/maillog
maillog_file_prefixes = $WORK/log
CF
}
ETC=$WORK/etc
config "$ETC" "$WORK/spool"
chown -R postfix "$WORK/data" "$WORK/log"
chmod 755 "$WORK/spool"
for d in maildrop incoming active deferred hold defer bounce trace; do
	[ -d "$WORK/spool/$d" ] && chown -R postfix:postfix "$WORK/spool/$d"
done

# The same spool with a running sluice daemon: its own configuration
# directory (no master.cf, so the tools use the daemon), relaying to a
# closed port on loopback (nothing leaves the machine; mkspool's next
# attempts are hours away, so the daemon leaves the spool alone).
# A spool built hours ago has its next attempts in the past, which the
# daemon would start delivering: put them three hours ahead again.
future=$(( $(date +%s) + 3 * 3600 ))
find "$WORK/spool/deferred" -type f -print0 | xargs -0 -r touch -m -d "@$future"
ETC_SLUICE=$WORK/etc-sluice
mkdir -p "$ETC_SLUICE"
PORT=$(freeport)
cat >"$ETC_SLUICE/main.cf" <<CF
queue_directory = $WORK/spool
mail_owner = postfix
relayhost = [127.0.0.1]:9
smtpd_listen = 127.0.0.1:$PORT
maillog_file = $WORK/log/maillog
sluice_http_listen =
CF
"$S" serve -c "$ETC_SLUICE" >"$WORK/log/serve.out" 2>&1 &
SERVE=$!
trap 'kill $SERVE 2>/dev/null; wait $SERVE 2>/dev/null' EXIT
for _ in $(seq 100); do [ -S "$WORK/spool/public/sluice-control" ] && break; sleep 0.1; done
[ -S "$WORK/spool/public/sluice-control" ] || { echo "bench: sluice serve did not start" >&2; cat "$WORK/log/serve.out" >&2; exit 1; }
# The daemon answers from its model once that has loaded.
for _ in $(seq 1200); do
	curl -s --unix-socket "$WORK/spool/public/sluice-control" http://sluice/v1/model/summary | grep -q '"loading":false' && break
	sleep 0.1
done

echo "warming the page cache ..." >&2
find "$WORK/spool" -type f -print0 | xargs -0 cat >/dev/null
ID=$(basename "$(find "$WORK/spool/deferred" -type f -print -quit)")

results=$WORK/results.txt
: >"$results"
compare() { # compare LABEL POSTFIX-COMMAND SLUICE-COMMAND [hyperfine options]
	# Options given here replace the default runs and warmup.
	local label=$1 pf=$2 sl=$3
	shift 3
	local opts=(--runs "$RUNS" --warmup 1)
	[ $# -eq 0 ] || opts=("$@")
	hyperfine --style basic "${opts[@]}" --export-csv "$WORK/h.csv" \
		-n "postfix: $label" "$pf" -n "sluice: $label" "$sl" >&2
	awk -F, -v label="$label" 'NR==2{pf=$2} NR==3{sl=$2} END{printf "%-28s postfix %8.3f s   sluice %8.3f s   ratio %6.1fx\n", label, pf, sl, pf/sl}' "$WORK/h.csv" | tee -a "$results"
}

# compare3 LABEL POSTFIX-COMMAND SLUICE-COMMAND SLUICE-DAEMON-COMMAND: as
# compare, with a third column: the same tool answered by the daemon.
compare3() {
	local label=$1 pf=$2 sl=$3 sd=$4
	cmp -s <(eval "$sl" 2>&1) <(eval "$sd" 2>&1) || echo "bench: $label: the daemon's output differs from sluice's own read" >&2
	hyperfine --style basic --runs "$RUNS" --warmup 1 --export-csv "$WORK/h.csv" \
		-n "postfix: $label" "$pf >/dev/null 2>&1" -n "sluice: $label" "$sl >/dev/null" -n "sluice (daemon): $label" "$sd >/dev/null" >&2
	awk -F, -v label="$label" 'NR==2{pf=$2} NR==3{sl=$2} NR==4{sd=$2} END{printf "%-28s postfix %8.3f s   sluice %8.3f s   ratio %6.1fx   sluice (daemon) %8.3f s   ratio %6.1fx\n", label, pf, sl, pf/sl, sd, pf/sd}' "$WORK/h.csv" | tee -a "$results"
}

compare3 "mailq" "postqueue -c $ETC -p" "$S mailq -C $ETC" "$S mailq -C $ETC_SLUICE"
compare3 "postqueue -j" "postqueue -c $ETC -j" "$S postqueue -c $ETC -j" "$S postqueue -c $ETC_SLUICE -j"
compare3 "qshape deferred" "qshape -c $ETC deferred" "$S qshape -c $ETC deferred" "$S qshape -c $ETC_SLUICE deferred"
compare3 "qshape -s deferred" "qshape -c $ETC -s deferred" "$S qshape -c $ETC -s deferred" "$S qshape -c $ETC_SLUICE -s deferred"
compare3 "queue summary (vs qshape)" "qshape -c $ETC deferred" "$S queue summary -c $ETC" "$S queue summary -c $ETC_SLUICE"
# -N runs without a shell (hyperfine discards the output itself).
compare "postcat -q ID" "postcat -c $ETC -q $ID" "$S postcat -c $ETC -q $ID" --runs 50 --warmup 3 -N

# Deleting one recipient's mail changes the spool: each run gets a fresh
# hard-linked copy (both sides only unlink files, so the original stays).
DEL=$WORK/del
config "$DEL/etc" "$DEL/spool"
# The copy must not share the running daemon's pid lock and sockets
# (hard links to them would lead a tool on the copy to that daemon).
prep="rm -rf $DEL/spool && cp -al $WORK/spool $DEL/spool && rm -f $DEL/spool/pid/master.pid $DEL/spool/public/*"
compare "delete by recipient" \
	"MAIL_CONFIG=$DEL/etc mailq 2>/dev/null | tail -n +2 | grep -v '^ *(' | awk 'BEGIN { RS = \"\" } { if (\$8 == \"user@example.com\" && \$9 == \"\") print \$1 }' | tr -d '*!' | postsuper -c $DEL/etc -d - 2>/dev/null" \
	"$S queue delete -c $DEL/etc rcpt=user@example.com --yes >/dev/null" \
	--runs 3 --warmup 0 --prepare "$prep"

# The same deletion with a sluice daemon running on the copy, as the
# issue's measure has it: the daemon's model selects, its queue manager
# coordinates. Each run gets a fresh copy and a freshly loaded daemon
# (started in --prepare, outside the timing).
DELD=$WORK/deld
mkdir -p "$DELD/etc"
cat >"$DELD/etc/main.cf" <<CF
queue_directory = $DELD/spool
mail_owner = postfix
relayhost = [127.0.0.1]:9
smtpd_listen = 127.0.0.1:$(freeport)
maillog_file = $WORK/log/maillog
sluice_http_listen =
CF
cat >"$DELD/restart" <<SH
#!/usr/bin/env bash
# Stop the last run's daemon, copy the spool afresh, start a daemon on
# it and wait until its model has loaded.
set -e
# (As root the daemon is a master and its child: wait for both.)
pkill -f "serve -c $DELD/etc" || true
while pgrep -f "serve -c $DELD/etc" >/dev/null; do sleep 0.1; done
rm -rf $DELD/spool && cp -al $WORK/spool $DELD/spool && rm -f $DELD/spool/pid/master.pid $DELD/spool/public/*
$S serve -c $DELD/etc >$WORK/log/deld.out 2>&1 &
for _ in \$(seq 1200); do
	curl -s --unix-socket $DELD/spool/public/sluice-control http://sluice/v1/model/summary 2>/dev/null | grep -q '"loading":false' && exit 0
	sleep 0.1
done
echo "bench: the daemon on the copy did not load" >&2; exit 1
SH
chmod +x "$DELD/restart"
trap 'kill $SERVE 2>/dev/null; wait $SERVE 2>/dev/null; pkill -f "serve -c $DELD/etc"; true' EXIT
compare "delete by recipient (daemon)" \
	"MAIL_CONFIG=$DEL/etc mailq 2>/dev/null | tail -n +2 | grep -v '^ *(' | awk 'BEGIN { RS = \"\" } { if (\$8 == \"user@example.com\" && \$9 == \"\") print \$1 }' | tr -d '*!' | postsuper -c $DEL/etc -d - 2>/dev/null" \
	"$S queue delete -c $DELD/etc rcpt=user@example.com --yes >/dev/null" \
	--runs 3 --warmup 0 --prepare "$prep; $DELD/restart"

# Both sides must have had mail to delete.
n=$("$S" queue count -c "$ETC" rcpt=user@example.com | awk '{print $1}')
[ "$n" -gt 0 ] || { echo "bench: the spool has no mail to user@example.com left to delete" >&2; exit 1; }
echo "delete by recipient: $n messages to user@example.com in each copy" | tee -a "$results"

TIMEFORMAT=%R
base=$( { time find "$WORK/spool" -type f -print0 | xargs -0 cat >/dev/null; } 2>&1 )
printf '%-28s %s s (cat of every queue file, warm cache)\n' "baseline: read all files" "$base" | tee -a "$results"
echo >&2
echo "== ratios (Postfix time / sluice time), $N messages ==" >&2
cat "$results"
