#!/usr/bin/env bash
# bench/model-daemon.sh [N] — starts `sluice serve` on the N-message
# deferred spool that bench/model.sh builds (default 1000000) and
# measures, through the running daemon: how soon SMTP answers after the
# start, how long the queue model takes to load, the daemon's RSS
# (now and peak), the time of a summary and a qshape answered from the
# model over the control socket, and of two mailq listings (the first
# after a start reads every file), with the peak after them. Then it
# stops the daemon, which writes its model's snapshot, empties the page
# cache (as after a reboot) and starts it again: how long the stop took,
# and how soon the model is loaded from the snapshot, each message
# checked against its files' inode, size and change time (see
# internal/model/snapshot.go). Run as root (serve drops to
# mail_owner, postfix). Environment: BENCH_DIR (default
# /tmp/sluice-bench-model), GOMEMLIMIT (passed on to the daemon).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
WORK=${BENCH_DIR:-/tmp/sluice-bench-model}
SPOOL=$WORK/spool.$N
[ -f "$WORK/spool.$N.done" ] || { echo "bench: run bench/model.sh $N first" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "bench: run as root" >&2; exit 1; }
S=$WORK/sluice
go build -o "$S" ./cmd/sluice
# Next attempts three hours ahead, so the daemon leaves the mail alone.
future=$(($(date +%s) + 3 * 3600))
find "$SPOOL/deferred" -type f -print0 | xargs -0 -r touch -m -d "@$future"
# A spool the daemon's user owns, as a real one is (mkspool runs as
# root); giving root's files away is timed apart, at the start, by the
# privsep master, beside the running daemon.
chown -R postfix "$SPOOL"
# The touch and chown dirtied a million inodes: write them back now, not
# while the daemon loads.
sync
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ETC=$WORK/etc-model
mkdir -p "$ETC" "$WORK/log"
cat >"$ETC/main.cf" <<CF
queue_directory = $SPOOL
mail_owner = postfix
relayhost = [127.0.0.1]:9
smtpd_listen = 127.0.0.1:$PORT
maillog_file = $WORK/log/model-maillog
sluice_http_listen =
CF
now_ms() { date +%s%3N; }
SOCK=$SPOOL/public/sluice-control
q() { curl -s --unix-socket "$SOCK" "$@"; }
# start_serve starts the daemon (SERVE, and DAEMON, its working process)
# and waits for SMTP's greeting and for the model to load, setting smtp
# and loaded, in ms from the start.
start_serve() {
	local start
	start=$(now_ms)
	"$S" serve -c "$ETC" >>"$WORK/log/model-serve.out" 2>&1 &
	SERVE=$!
	smtp=""
	for _ in $(seq 2000); do
		if banner=$(timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT; head -c 3 <&3" 2>/dev/null) && [ "$banner" = 220 ]; then
			smtp=$(($(now_ms) - start))
			break
		fi
		sleep 0.01
	done
	loaded=""
	for _ in $(seq 6000); do
		if [ -S "$SOCK" ] && q http://sluice/v1/model/summary | grep -q '"loading":false'; then
			loaded=$(($(now_ms) - start))
			break
		fi
		sleep 0.1
	done
	# As root, serve's first process only waits; the daemon is its child.
	DAEMON=$(ps --ppid "$SERVE" -o pid= | head -1 | tr -d " ")
	[ -n "$DAEMON" ] || DAEMON=$SERVE
}
: >"$WORK/log/model-serve.out"
trap 'kill $SERVE 2>/dev/null; wait $SERVE 2>/dev/null' EXIT
start_serve
echo "SMTP answered 220 after ${smtp:-?} ms"
# The touch and chown above changed every file, so a snapshot left by a
# run before vouches for none: this start reads every file, from what
# the page cache holds (after a run before, nothing: it ends with a cold
# restart).
echo "model loaded after ${loaded:-?} ms (a scan of every file)"
grep -E 'VmRSS|VmHWM' "/proc/$DAEMON/status" | tr -s ' \t' ' '
sleep 5
echo "5 s later: $(grep -E 'VmRSS' "/proc/$DAEMON/status" | tr -s ' \t' ' ')"
t0=$(now_ms); for _ in $(seq 10); do q http://sluice/v1/model/summary >/dev/null; done
echo "summary over the socket: $(( ($(now_ms) - t0) / 10 )) ms"
t0=$(now_ms); for _ in $(seq 10); do q -X POST -d '{"queues":["deferred"]}' http://sluice/v1/model/qshape >/dev/null; done
echo "qshape deferred over the socket: $(( ($(now_ms) - t0) / 10 )) ms"
# The API's summary (the same handlers over HTTP and the socket) and
# sluice queue summary (a process, through the daemon), by every key.
for by in reason domain sender age queue; do
	t0=$(now_ms); for _ in $(seq 10); do q "http://sluice/api/v1/summary?by=$by" >/dev/null; done
	api=$(( ($(now_ms) - t0) / 10 ))
	t0=$(now_ms); for _ in $(seq 5); do "$S" queue summary -c "$ETC" --by "$by" >/dev/null; done
	cli=$(( ($(now_ms) - t0) / 5 ))
	groups=$(q "http://sluice/api/v1/summary?by=$by" | grep -o '"key":' | wc -l)
	echo "summary --by $by ($groups groups): GET /api/v1/summary over the socket $api ms, sluice queue summary $cli ms"
done
echo "daemon after the summaries: $(grep -E 'VmRSS' "/proc/$DAEMON/status" | tr -s ' \t' ' ')"
t0=$(now_ms); for _ in $(seq 5); do "$S" qshape -c "$ETC" deferred >/dev/null; done
echo "qshape deferred (a process, through the daemon): $(( ($(now_ms) - t0) / 5 )) ms"
# The listing: the first after a start reads every file (see
# showq.Lister), the next ones take what they can from the model.
for run in first second; do
	t0=$(now_ms); "$S" mailq -C "$ETC" >/dev/null
	echo "mailq (a process, through the daemon), $run: $(( $(now_ms) - t0 )) ms"
done
echo "daemon after the listings: $(grep -E 'VmRSS|VmHWM' "/proc/$DAEMON/status" | tr -s ' \t' ' ' | tr '\n' ' ')"
q "http://sluice/api/v1/summary?by=reason" | head -c 600; echo
q http://sluice/v1/model/summary; echo

# A clean stop writes the model's snapshot; the next start, from a cold
# page cache, loads it.
t0=$(now_ms)
kill -TERM "$SERVE"
wait "$SERVE" 2>/dev/null || true
echo "stop (with the snapshot written): $(( $(now_ms) - t0 )) ms; snapshot $(stat -c %s "$SPOOL/private/sluice-model-snapshot" 2>/dev/null || echo none) bytes"
sync
echo 3 >/proc/sys/vm/drop_caches
start_serve
echo "restart, cold page cache: SMTP answered 220 after ${smtp:-?} ms"
echo "restart, cold page cache: model loaded after ${loaded:-?} ms"
echo "restart: $(grep -E 'VmRSS|VmHWM' "/proc/$DAEMON/status" | tr -s ' \t' ' ' | tr '\n' ' ')"
q http://sluice/v1/model/summary; echo
