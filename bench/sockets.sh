#!/usr/bin/env bash
# Speed of `netblame sockets --once --json` against `ss -tinm`, and with process mapping
# against `ss -tinmp`, with about 36,000 established loopback sockets held by several
# processes (the per-process fd limit here is 20,000). Prints times and ratios.
# Goal: netblame no slower than `ss -tinm`; with processes at most half the time of `ss -tinmp`.
#
# Usage: bench/sockets.sh [SOCKETS] [RUNS]     (defaults 36000 and 5). Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."

SOCKETS=${1:-36000}
RUNS=${2:-5}
PROCS=4
PER_PROC=$(( SOCKETS / 2 / PROCS ))   # connections per holder process (2 sockets each)
BASE_PORT=${BASE_PORT:-47100}

command -v ss >/dev/null || { echo "ss (iproute2) is needed" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 1; }
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
trap cleanup EXIT INT TERM

echo "opening $(( PER_PROC * 2 * PROCS )) established loopback sockets in $PROCS processes..."
start_holders "$PROCS" "$PER_PROC" "$BASE_PORT" "$WORK"
established=$(ss -Htn state established | wc -l)
echo "established TCP sockets on this host: $established"

# Wall time in seconds of one run of a command, output discarded.
once() {
    local s e
    s=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    e=$(date +%s.%N)
    echo "$e - $s" | bc -l
}
min() { if [[ -z $1 ]] || (( $(echo "$2 < $1" | bc -l) )); then echo "$2"; else echo "$1"; fi; }

# The machine is shared and noisy: the four commands take turns in each round, and each keeps
# its best time over RUNS rounds.
ss_tinm="" ss_tinmp="" nb="" nb_noproc=""
for _ in $(seq 1 "$RUNS"); do
    ss_tinm=$(min "$ss_tinm" "$(once ss -tinm)")
    nb_noproc=$(min "$nb_noproc" "$(once "$BIN" sockets --once --json --no-processes)")
    ss_tinmp=$(min "$ss_tinmp" "$(once ss -tinmp)")
    nb=$(min "$nb" "$(once "$BIN" sockets --once --json)")
done
fmt() { printf '%.3f' "$1"; }
ss_tinm=$(fmt "$ss_tinm"); ss_tinmp=$(fmt "$ss_tinmp"); nb=$(fmt "$nb"); nb_noproc=$(fmt "$nb_noproc")
lines=$("$BIN" sockets --once --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d["connections"]), "listed,", sum(1 for c in d["connections"] if c["owners"]), "with a process")')
rss=$(/usr/bin/time -f '%M' "$BIN" sockets --once --json 2>&1 >/dev/null | tail -1)

echo
echo "netblame: $lines"
printf '%-44s %8s s\n' "ss -tinm" "$ss_tinm" "ss -tinmp (with processes)" "$ss_tinmp" \
    "netblame sockets --once --json --no-processes" "$nb_noproc" \
    "netblame sockets --once --json (processes)" "$nb"
echo "netblame max RSS: ${rss} KiB"
echo
printf 'ratio netblame (no processes) / ss -tinm : %.2f  (goal <= 1)\n' "$(echo "$nb_noproc / $ss_tinm" | bc -l)"
printf 'ratio netblame (processes) / ss -tinm    : %.2f\n' "$(echo "$nb / $ss_tinm" | bc -l)"
printf 'ratio netblame (processes) / ss -tinmp   : %.2f  (goal <= 0.5)\n' "$(echo "$nb / $ss_tinmp" | bc -l)"
