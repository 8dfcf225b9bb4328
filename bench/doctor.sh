#!/usr/bin/env bash
# `netblame doctor` with many connections must finish within its window plus one second.
# Opens CONNECTIONS loopback connections (2 established sockets each) inside a network namespace
# this script creates, held by several processes (the per-process fd limit), then times
# `netblame doctor --duration WINDOW --json` there, and `ss -tinmp` (the anchor: one dump with
# processes, what doctor does twice) in the same namespace. Prints times, the overhead over the
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
ulimit -n "$(ulimit -Hn)"
need_fds=$(( 2 * PER_PROC + 16 ))
(( $(ulimit -n) >= need_fds )) || { echo "fd limit $(ulimit -n) < $need_fds per holder" >&2; exit 1; }

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

cat >"$WORK/holder.py" <<'PY'
import socket, sys, time, os
port, n, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
l = socket.socket()
l.bind(("127.0.0.1", port))
l.listen(4096)
held = []
while len(held) < 2 * n:
    batch = min(1000, n - len(held) // 2)
    cs = [socket.create_connection(("127.0.0.1", port)) for _ in range(batch)]
    held.extend(l.accept()[0] for _ in range(batch))
    held.extend(cs)
open(ready, "w").write(str(os.getpid()))
time.sleep(3600)
PY

echo "opening $(( PER_PROC * PROCS )) connections ($(( PER_PROC * PROCS * 2 )) sockets) in $PROCS processes in namespace $NS..."
for i in $(seq 0 $(( PROCS - 1 ))); do
    ip netns exec "$NS" python3 "$WORK/holder.py" $(( 20000 + i )) "$PER_PROC" "$WORK/ready.$i" &
    PIDS+=("$!")
done
for i in $(seq 0 $(( PROCS - 1 ))); do
    for _ in $(seq 1 1200); do
        [[ -s "$WORK/ready.$i" ]] && break
        kill -0 "${PIDS[$i]}" 2>/dev/null || { echo "holder $i died" >&2; exit 1; }
        sleep 0.1
    done
    [[ -s "$WORK/ready.$i" ]] || { echo "holder $i not ready" >&2; exit 1; }
done

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
