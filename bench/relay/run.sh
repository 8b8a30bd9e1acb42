#!/usr/bin/env bash
# Relay throughput: smtp-source -> MTA -> smtp-sink, for sluice and for
# Postfix on the same machine in one run, plus smtp-source -> smtp-sink
# as the baseline. Prints msg/s, CPU per message and the ratios.
#
#   [ROUNDS=3] [EVENTS=1] bench/relay/run.sh [MESSAGES] [SESSIONS] [SIZE]   (defaults 5000 20 4096, 1 round)
#
# Needs root (smtp-sink -u postfix, a private Postfix instance) and
# Postfix 3.7's smtp-source, smtp-sink and postfix commands.
#
# Throughput is messages divided by the time from smtp-source's start
# until the MTA has logged the last "status=sent" (every message
# relayed, not only accepted). CPU is that of the MTA's whole process
# tree — sluice's one process; Postfix's master and every daemon it ran
# (live ones read from /proc, exited ones through master's child times)
# — user plus system, divided by messages; smtp-source and smtp-sink are
# not counted for either. Both MTAs have each message on disk before
# saying 250 (Postfix: fsync per file; sluice: by default one syncfs(2)
# shared by the messages received concurrently, file and directory entry
# included; sluice_commit_method = fsync syncs each file and shares
# directory syncs).
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "bench/relay: run as root (smtp-sink -u postfix, a private Postfix)" >&2; exit 1; }
. "$(dirname "$0")/../lib.sh"
bench_need postfix=postfix smtp-source=postfix smtp-sink=postfix user:postfix=postfix bc=bc pgrep=procps getconf=libc-bin curl=curl

N=${1:-5000}
S=${2:-20}
L=${3:-4096}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=$(mktemp -d /tmp/sluice-bench.XXXXXX)
chmod 755 "$WORK" # Postfix daemons run as postfix and must reach their directories
TICK=$(getconf CLK_TCK)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	[ -f "$WORK/pf/etc/main.cf" ] && postfix -c "$WORK/pf/etc" stop >/dev/null 2>&1 || true
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

waitport() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "nothing on port $1" >&2; return 1; }
now() { date +%s.%N; }

# cputree PID: user+system ticks of PID and its live descendants, plus
# the child times of reaped ones.
cputree() {
	local total=0 p
	for p in $1 $(pgrep -P "$1" 2>/dev/null || true); do
		[ -r /proc/$p/stat ] || continue
		# fields after the ')' : state=1 ... utime=12 stime=13 cutime=14 cstime=15
		total=$((total + $(sed 's/.*) //' /proc/$p/stat | awk '{print $12+$13+$14+$15}')))
	done
	echo $total
}

# waitsent LOG COUNT: until LOG has COUNT status=sent lines.
waitsent() {
	for _ in $(seq 6000); do
		local n; n=$(grep -c 'status=sent' "$1" 2>/dev/null || true)
		[ "${n:-0}" -ge "$2" ] && return 0
		sleep 0.05
	done
	echo "only ${n:-0} of $2 sent in $1" >&2; return 1
}

sink() { # port
	smtp-sink -u postfix "127.0.0.1:$1" 256 >/dev/null 2>&1 &
	PIDS+=($!)
	waitport "$1"
}

echo "building sluice..." >&2
(cd "$ROOT" && go build -o "$WORK/sluice" ./cmd/sluice)

ROUNDS=${ROUNDS:-1}
# EVENTS=1: a client follows sluice's live event stream (GET
# /api/v1/events) through each sluice run; the bench then says whether
# it received every "sent" event and how far it lagged behind the log.
EVENTS=${EVENTS:-0}

baseline() {
	local P0 t0 t1
	P0=$(freeport); sink "$P0"
	t0=$(now); smtp-source -s "$S" -m "$N" -l "$L" -f from@src.test -t to@dest.test "127.0.0.1:$P0"; t1=$(now)
	BASE=$(echo "$N / ($t1 - $t0)" | bc -l)
}

run_sluice() { # round
	local P1 SP HP c0 c1 t0 t1 t2 got tok EV D=$WORK/sl$1
	P1=$(freeport); sink "$P1"
	SP=$(freeport)
	HP=""
	[ "$EVENTS" = 1 ] && HP=127.0.0.1:$(freeport)
	mkdir -p "$D"
	cat >"$D/main.cf" <<CF
queue_directory = $D/spool
maillog_file = $D/mail.log
myhostname = sluice.bench
smtpd_listen = 127.0.0.1:$SP
relayhost = [127.0.0.1]:$P1
sluice_http_listen = $HP
CF
	"$WORK/sluice" serve -c "$D" 2>/dev/null &
	SLPID=$!; PIDS+=($SLPID)
	waitport "$SP"
	if [ "$EVENTS" = 1 ]; then
		# A live-event client, as an operator's `sluice queue watch` or a
		# dashboard tab: every event of the run over Server-Sent Events.
		tok=$(cat "$D/spool/private/sluice-http-token")
		curl -sN -H "Authorization: Bearer $tok" "http://$HP/api/v1/events" >"$D/events" &
		EV=$!; PIDS+=($EV)
		sleep 0.2
	fi
	c0=$(cputree $SLPID)
	t0=$(now)
	smtp-source -s "$S" -m "$N" -l "$L" -f from@src.test -t to@dest.test "127.0.0.1:$SP"
	waitsent "$D/mail.log" "$N"
	t1=$(now)
	c1=$(cputree $SLPID)
	SL_RATE=$(echo "$N / ($t1 - $t0)" | bc -l)
	SL_CPU=$(echo "($c1 - $c0) * 1000 / $TICK / $N" | bc -l)
	if [ "$EVENTS" = 1 ]; then
		# How far the stream is behind the mail log when the last
		# message is logged as sent.
		got=0
		for _ in $(seq 200); do
			got=$(grep -c '"type":"sent"' "$D/events" || true)
			[ "${got:-0}" -ge "$N" ] && break
			sleep 0.05
		done
		t2=$(now)
		printf 'event stream (round %s): %s of %s sent events received; the last %.0f ms after the mail log'"'"'s; %s events in all; %s lost\n' \
			"$1" "$got" "$N" "$(echo "($t2 - $t1) * 1000" | bc -l)" "$(grep -c '^data: {"type"' "$D/events" || true)" \
			"$(grep -c '^event: lost' "$D/events" || true)" >&2
		kill "$EV" 2>/dev/null || true
	fi
	kill -TERM $SLPID; wait $SLPID || true
}

setup_postfix() {
	PF=$WORK/pf
	mkdir -p "$PF/etc" "$PF/spool" "$PF/data"
	cp /usr/share/postfix/master.cf.dist "$PF/etc/master.cf"
	cp /etc/postfix/dynamicmaps.cf "$PF/etc/" 2>/dev/null || true
	[ -d /etc/postfix/dynamicmaps.cf.d ] && cp -r /etc/postfix/dynamicmaps.cf.d "$PF/etc/"
	postfix_log "$PF/maillog"; chown postfix "$PF/data"
	PP=$(freeport)
	P2=$(freeport); sink "$P2"
	cat >"$PF/etc/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $PF/spool
data_directory = $PF/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
relayhost = [127.0.0.1]:$P2
default_transport = smtp
relay_transport = relay
maillog_file = $PF/maillog
maillog_file_prefixes = $PF
CF
	postconf -c "$PF/etc" -M# smtp/inet >/dev/null
	postconf -c "$PF/etc" -Me "127.0.0.1:$PP/inet=127.0.0.1:$PP inet n - y - - smtpd"
	postfix -c "$PF/etc" check >/dev/null 2>&1 || true
}

run_postfix() {
	local c0 c1 t0 t1 before
	postfix -c "$PF/etc" start >"$WORK/pfstart.log" 2>&1 || { cat "$WORK/pfstart.log" "$PF/maillog" >&2; exit 1; }
	waitport "$PP"
	PFPID=$(tr -d ' ' <"$PF/spool/pid/master.pid")
	sleep 1
	before=$(grep -c 'status=sent' "$PF/maillog" || true)
	c0=$(cputree $PFPID)
	t0=$(now)
	smtp-source -s "$S" -m "$N" -l "$L" -f from@src.test -t to@dest.test "127.0.0.1:$PP"
	waitsent "$PF/maillog" $((N + before))
	t1=$(now)
	c1=$(cputree $PFPID)
	PF_RATE=$(echo "$N / ($t1 - $t0)" | bc -l)
	PF_CPU=$(echo "($c1 - $c0) * 1000 / $TICK / $N" | bc -l)
	postfix -c "$PF/etc" stop >/dev/null 2>&1 || true
	sleep 1
}

setup_postfix
echo "Postfix $(postconf -d -h mail_version); $N messages of $L bytes over $S sessions; $ROUNDS round(s)" >&2
printf '%-6s %12s %12s %12s %14s %14s\n' round baseline/s postfix/s sluice/s "postfix ms" "sluice ms"
RESULTS=()
for r in $(seq "$ROUNDS"); do
	baseline
	run_sluice "$r"
	run_postfix
	printf '%-6s %12.0f %12.0f %12.0f %14.3f %14.3f\n' "$r" "$BASE" "$PF_RATE" "$SL_RATE" "$PF_CPU" "$SL_CPU"
	RESULTS+=("$BASE $PF_RATE $SL_RATE $PF_CPU $SL_CPU")
done
# Medians over the rounds.
med() { printf '%s\n' "${RESULTS[@]}" | awk -v f="$1" '{print $f}' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
BASE=$(med 1); PF_RATE=$(med 2); SL_RATE=$(med 3); PF_CPU=$(med 4); SL_CPU=$(med 5)
printf '\n%-28s %10s %14s   (median of %s)\n' "path ($N msgs, $S sessions, ${L} B)" "msg/s" "CPU ms/msg" "$ROUNDS"
printf '%-28s %10.0f %14s\n' "smtp-source -> smtp-sink" "$BASE" "-"
printf '%-28s %10.0f %14.3f\n' "via Postfix" "$PF_RATE" "$PF_CPU"
printf '%-28s %10.0f %14.3f\n' "via sluice" "$SL_RATE" "$SL_CPU"
printf '\nsluice/Postfix throughput: %.2fx   CPU per message: %.2fx (target >= 4x and <= 0.25x)\n' \
	"$(echo "$SL_RATE / $PF_RATE" | bc -l)" "$(echo "$SL_CPU / $PF_CPU" | bc -l)"
printf 'sluice/baseline throughput: %.2f   Postfix/baseline: %.2f\n' \
	"$(echo "$SL_RATE / $BASE" | bc -l)" "$(echo "$PF_RATE / $BASE" | bc -l)"
