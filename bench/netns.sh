#!/usr/bin/env bash
# Speed of `netblame sockets --all-netns --once --json` over many network namespaces, side by
# side with what a user would do instead:
#   1. the same number of sockets in ONE namespace, listed by `ss -tinm` (run there with
#      nsenter, which adds only a setns and an exec): goal, netblame at most 1.5x that time;
#   2. `ip netns exec NS ss -tinm` over every namespace, one after another: goal, netblame at
#      most 0.2x that loop.
# Every namespace holds CONNS established loopback connections (2 sockets each), held by a few
# Python processes that enter the namespaces with setns. Needs root, ip, ss, nsenter, python3.
# Removes every namespace and process it created, also on Ctrl-C or failure.
#
# The kernel keeps every namespace's TCP sockets in one host-wide table unless
# net.ipv4.tcp_child_ehash_entries gives new namespaces their own: then each namespace's dump
# (netblame's and ss's alike) walks the whole host's table. CHILD_EHASH=N runs the bench with
# that sysctl at N for the namespaces it creates (restored afterwards), to show both.
#
# Usage: bench/netns.sh [NAMESPACES] [CONNS] [RUNS]   (defaults 200, 50 and 5). Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."

NAMESPACES=${1:-200}
CONNS=${2:-50}
RUNS=${3:-5}
HOLDERS=4 # processes holding the sockets (the fd limit here is 20,000 per process)
PORT=${BASE_PORT:-47300}
PREFIX="nbb$$-"

[[ $(id -u) == 0 ]] || { echo "needs root (namespaces, setns)" >&2; exit 1; }
for t in ip ss nsenter python3 bc; do
    command -v "$t" >/dev/null || { echo "$t is needed" >&2; exit 1; }
done
HOLDER_PY=bench/lib/netns_holder.py
BIN=${NETBLAME:-${CARGO_TARGET_DIR:-target}/release/netblame}
if [[ -z ${NETBLAME:-} ]]; then
    cargo build --release -q -p netblame
fi

WORK=$(mktemp -d)
PIDS=()
CREATED=()
kill_holders() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}
delete_namespaces() {
    for ns in "${CREATED[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    CREATED=()
}
EHASH_SYSCTL=/proc/sys/net/ipv4/tcp_child_ehash_entries
EHASH_WAS=""
cleanup() {
    kill_holders
    delete_namespaces
    if [[ -n $EHASH_WAS ]]; then echo "$EHASH_WAS" > "$EHASH_SYSCTL"; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# make_namespaces N: creates N namespaces with loopback up; their names go to NS_LIST.
make_namespaces() {
    NS_LIST=()
    local i ns
    for i in $(seq 1 "$1"); do
        ns="${PREFIX}$i"
        ip netns add "$ns"
        CREATED+=("$ns")
        ip -n "$ns" link set lo up
        NS_LIST+=("$ns")
    done
}

# hold CONNS_PER_NS: spreads NS_LIST over HOLDERS processes, waits until all are established.
hold() {
    local per=$1 n=${#NS_LIST[@]} h i=0 chunk
    ulimit -n "$(ulimit -Hn)"
    chunk=$(( (n + HOLDERS - 1) / HOLDERS ))
    for h in $(seq 0 $(( HOLDERS - 1 ))); do
        local slice=("${NS_LIST[@]:$(( h * chunk )):$chunk}")
        (( ${#slice[@]} > 0 )) || continue
        python3 "$HOLDER_PY" $(( PORT + h )) "$per" "$WORK/ready.$h" "${slice[@]}" &
        PIDS+=("$!")
        i=$(( i + 1 ))
    done
    for h in $(seq 0 $(( i - 1 ))); do
        for _ in $(seq 1 1200); do
            [[ -s $WORK/ready.$h ]] && break
            sleep 0.1
        done
        [[ -s $WORK/ready.$h ]] || { echo "holder $h not ready after 120 s" >&2; exit 1; }
    done
    rm -f "$WORK"/ready.*
}

# Wall time in seconds of one run of a command, output discarded.
once() {
    local s e
    s=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    e=$(date +%s.%N)
    echo "$e - $s" | bc -l
}
min() { if [[ -z $1 ]] || (( $(echo "$2 < $1" | bc -l) )); then echo "$2"; else echo "$1"; fi; }
exec_loop() {
    local ns
    for ns in "${NS_LIST[@]}"; do ip netns exec "$ns" ss -tinm; done
}

if [[ -n ${CHILD_EHASH:-} ]]; then
    [[ -w $EHASH_SYSCTL ]] || { echo "this kernel has no tcp_child_ehash_entries" >&2; exit 1; }
    EHASH_WAS=$(cat "$EHASH_SYSCTL")
    echo "$CHILD_EHASH" > "$EHASH_SYSCTL"
    echo "new namespaces get their own TCP table of $CHILD_EHASH buckets (tcp_child_ehash_entries)"
fi
SOCKETS=$(( NAMESPACES * CONNS * 2 ))
host_sockets=$(ss -Htn | wc -l)

# Phase 1: every socket in one namespace, for ss -tinm.
echo "phase 1: $SOCKETS established sockets in one namespace..."
make_namespaces 1
ONE=${NS_LIST[0]}
# One holder process per port, all in the same namespace (one process cannot hold them all).
NS_LIST=()
for _ in $(seq 1 "$HOLDERS"); do NS_LIST+=("$ONE"); done
hold $(( NAMESPACES * CONNS / HOLDERS ))
one_count=$(nsenter --net="/run/netns/$ONE" ss -Htn state established | wc -l)
ss_one=""
for _ in $(seq 1 "$RUNS"); do
    ss_one=$(min "$ss_one" "$(once nsenter --net="/run/netns/$ONE" ss -tinm)")
done
kill_holders
delete_namespaces
echo "  ss -tinm saw $one_count sockets"

# Phase 2: NAMESPACES namespaces with CONNS connections each.
echo "phase 2: $NAMESPACES namespaces x $CONNS connections ($SOCKETS sockets)..."
make_namespaces "$NAMESPACES"
hold "$CONNS"
nb="" loop=""
for _ in $(seq 1 "$RUNS"); do
    nb=$(min "$nb" "$(once "$BIN" sockets --all-netns --once --json)")
    loop=$(min "$loop" "$(once exec_loop)")
done
seen=$("$BIN" sockets --all-netns --once --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
mine = [n for n in d["namespaces"] if n.get("name", "").startswith(sys.argv[1])]
print(len(d["namespaces"]), "namespaces,", len(mine), "of them the bench'"'"'s,",
      sum(n["connections"] for n in mine), "sockets in them,", len(d["connections"]), "in all,",
      sum(1 for c in d["connections"] if c["owners"]), "with a process")' "$PREFIX")
rss=$(/usr/bin/time -f '%M' "$BIN" sockets --all-netns --once --json 2>&1 >/dev/null | tail -1)

fmt() { printf '%.3f' "$1"; }
echo
echo "host namespace had $host_sockets TCP sockets besides the bench's"
echo "netblame: $seen"
printf '%-58s %8s s\n' "ss -tinm, $one_count sockets in one namespace" "$(fmt "$ss_one")" \
    "ip netns exec NS ss -tinm, $NAMESPACES namespaces in turn" "$(fmt "$loop")" \
    "netblame sockets --all-netns --once --json" "$(fmt "$nb")"
echo "netblame max RSS: ${rss} KiB"
echo
printf 'ratio netblame / ss -tinm (one namespace)     : %.2f  (goal <= 1.5)\n' "$(echo "$nb / $ss_one" | bc -l)"
printf 'ratio netblame / ip netns exec ss -tinm loop : %.2f  (goal <= 0.2)\n' "$(echo "$nb / $loop" | bc -l)"
