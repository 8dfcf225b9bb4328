#!/usr/bin/env bash
# `netblame doctor` with many connections must finish within its window plus one second.
# Opens CONNECTIONS loopback connections (2 established sockets each) inside a network namespace
# this script creates, held by several processes (the per-process fd limit), then times
# `netblame doctor --duration WINDOW --json` there, and `ss -tinmp` (the anchor: one dump with
# processes; doctor does one with processes and one without) in the same namespace. Prints times, the overhead over the
# window and the ratio overhead / ss. Needs root (namespace). Not run by CI.
#
# Usage: bench/doctor.sh [CONNECTIONS] [WINDOW_SECONDS]   (defaults 36000 and 5)
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${1:-36000}
WINDOW=${2:-5}
PROCS=8
PER_PROC=$(( CONNS / PROCS ))
NS=nbbench$$

command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 1; }
[[ $(id -u) == 0 ]] || { echo "needs root (creates a network namespace)" >&2; exit 1; }
. bench/lib/holders.sh
BIN=${NETBLAME:-${CARGO_TARGET_DIR:-target}/release/netblame}
[[ -n ${NETBLAME:-} ]] || cargo build --release -q -p netblame

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
ip netns add "$NS"
ip -n "$NS" link set lo up

echo "opening $(( PER_PROC * PROCS )) connections ($(( PER_PROC * PROCS * 2 )) sockets) in $PROCS processes in namespace $NS..."
start_holders "$PROCS" "$PER_PROC" 20000 "$WORK" "$NS"

now() { date +%s.%N; }
s=$(now); ip netns exec "$NS" ss -tinmp >/dev/null; e=$(now)
ss_t=$(echo "$e - $s" | bc -l)
s=$(now); ip netns exec "$NS" "$BIN" doctor --duration "${WINDOW}s" --json >"$WORK/doctor.json"; e=$(now)
doc_t=$(echo "$e - $s" | bc -l)
sampled=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); c=d["connections"]; print(c["sampled"], c["judged_over_window"])' "$WORK/doctor.json")

echo "sockets sampled, judged over the window: $sampled"
printf '%-40s %8.3f s\n' "ss -tinmp (one dump with processes)" "$ss_t" "netblame doctor --duration ${WINDOW}s" "$doc_t"
over=$(echo "$doc_t - $WINDOW" | bc -l)
printf 'doctor overhead over its window: %.3f s (goal < 1 s): %s\n' "$over" "$( (( $(echo "$over < 1" | bc -l) )) && echo met || echo MISSED)"
printf 'ratio doctor overhead / ss -tinmp: %.2f\n' "$(echo "$over / $ss_t" | bc -l)"
