#!/usr/bin/env bash
# `netblame sockets --watch 1` at about 54,000 established loopback sockets: does each round
# keep the asked interval, what does one round cost next to one `ss -tinm`, and how much JSON
# does a round write (all connections, and with --problems)?
#   - round cost: `--watch 0.001 --count N` runs rounds back to back; (its time - one --once
#     run) / N is the cost of one refresh (dump, judge, JSON), set beside `ss -tinm`;
#   - schedule: `--watch 1 --count 5 --json`, the intervals between samples the lines report
#     (goal: 1.00 s each, the asked interval, not interval + round cost).
# Removes every process it started.
#
# Usage: bench/sockets_watch.sh [SOCKETS] [RUNS]   (defaults 54000 and 3). Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."

SOCKETS=${1:-54000}
RUNS=${2:-3}
PROCS=4
PER_PROC=$(( SOCKETS / 2 / PROCS ))
BASE_PORT=${BASE_PORT:-47500}
ROUNDS=5

for t in ss python3 bc; do
    command -v "$t" >/dev/null || { echo "$t is needed" >&2; exit 1; }
done
. bench/lib/holders.sh
BIN=${NETBLAME:-${CARGO_TARGET_DIR:-target}/release/netblame}
if [[ -z ${NETBLAME:-} ]]; then
    cargo build --release -q -p netblame
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "opening $(( PER_PROC * 2 * PROCS )) established loopback sockets in $PROCS processes..."
start_holders "$PROCS" "$PER_PROC" "$BASE_PORT" "$WORK"
established=$(ss -Htn state established | wc -l)
echo "established TCP sockets on this host: $established"

once() {
    local s e
    s=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    e=$(date +%s.%N)
    echo "$e - $s" | bc -l
}
min() { if [[ -z $1 ]] || (( $(echo "$2 < $1" | bc -l) )); then echo "$2"; else echo "$1"; fi; }

ss_t="" once_t="" burst_t="" burst_p=""
for _ in $(seq 1 "$RUNS"); do
    ss_t=$(min "$ss_t" "$(once ss -tinm)")
    once_t=$(min "$once_t" "$(once "$BIN" sockets --once --json)")
    burst_t=$(min "$burst_t" "$(once "$BIN" sockets --watch 0.001 --count "$ROUNDS" --json)")
    burst_p=$(min "$burst_p" "$(once "$BIN" sockets --watch 0.001 --count "$ROUNDS" --json --problems)")
done
round=$(echo "($burst_t - $once_t) / $ROUNDS" | bc -l)
round_p=$(echo "($burst_p - $once_t) / $ROUNDS" | bc -l)

# The schedule: intervals between samples as the JSON lines report them, and bytes per line.
schedule() {
    "$BIN" sockets --watch 1 --count "$ROUNDS" --json "$@" | python3 -c '
import sys
iv, size = [], []
for line in sys.stdin.buffer:
    size.append(len(line))
    i = line.find(b"\"interval_us\":")
    iv.append(int(line[i + 14:line.index(b",", i)]) / 1e6)
print(" ".join(f"{v:.3f}" for v in iv), "s;", f"{sum(size) / len(size) / 1e6:.1f} MB per line")'
}
sched_all=$(schedule)
sched_p=$(schedule --problems)

fmt() { printf '%.3f' "$1"; }
echo
printf '%-62s %8s s\n' "ss -tinm (one listing)" "$(fmt "$ss_t")" \
    "netblame sockets --once --json (first sample, /proc scan)" "$(fmt "$once_t")" \
    "netblame --watch refresh, all connections as JSON (per round)" "$(fmt "$round")" \
    "netblame --watch refresh, --problems JSON lines (per round)" "$(fmt "$round_p")"
echo
echo "--watch 1 --json, intervals between samples: $sched_all"
echo "--watch 1 --json --problems:                 $sched_p"
echo
printf 'ratio refresh (all JSON) / ss -tinm    : %.2f\n' "$(echo "$round / $ss_t" | bc -l)"
printf 'ratio refresh (--problems) / ss -tinm  : %.2f\n' "$(echo "$round_p / $ss_t" | bc -l)"
printf 'round cost (all JSON) / asked interval : %.2f  (goal < 1: the interval is kept)\n' "$round"
