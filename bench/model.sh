#!/usr/bin/env bash
# bench/model.sh [N...] — builds an N-message deferred spool with
# bench/mkspool (default: 100000 and 1000000) and measures the queue
# model on it with bench/modelbuild: start-up scan time, RSS, and the
# time of a summary and of qshape answered from the model. Needs no
# root and no Postfix. Environment: BENCH_DIR (default
# /tmp/sluice-bench-model).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${BENCH_DIR:-/tmp/sluice-bench-model}
mkdir -p "$WORK"
go build -o "$WORK/mkspool" ./bench/mkspool
go build -o "$WORK/modelbuild" ./bench/modelbuild
for N in "${@:-100000 1000000}"; do
	for n in $N; do
		if [ ! -f "$WORK/spool.$n.done" ]; then
			rm -rf "$WORK/spool.$n"
			echo "building a $n-message spool in $WORK/spool.$n ..." >&2
			"$WORK/mkspool" -dir "$WORK/spool.$n" -n "$n"
			touch "$WORK/spool.$n.done"
		fi
		sync
		echo "== $n messages (warm cache)"
		"$WORK/modelbuild" -dir "$WORK/spool.$n"
	done
done
