#!/usr/bin/env bash
# Speed, side by side: netblame pcap vs tcptrace -l vs tshark -q -z conv,tcp on one capture of a
# loopback bulk transfer (iperf3). Prints wall time, peak RSS and ratios. Not run by CI.
#
#   sudo bench/pcap.sh [SIZE_MB]     (default 1024: a ~1 GB capture; needs root for tcpdump)
#
# Goals (issue 7): >= 2x faster than tcptrace, >= 50x faster than tshark, < 100 MB resident.
set -euo pipefail
SIZE_MB=${1:-1024}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
: "${CARGO_TARGET_DIR:=$ROOT/target}"
BIN="$CARGO_TARGET_DIR/release/netblame"
WORK=$(mktemp -d /tmp/netblame-bench-pcap.XXXXXX)
PORT=$((20000 + RANDOM % 20000))
NS=nbbench$$
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

for t in tcpdump iperf3 tshark tcptrace /usr/bin/time; do
    command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }
done
(cd "$ROOT" && cargo build --release -q -p netblame)

# A namespace of our own, whose loopback has segmentation offloads off: MTU-sized packets like a
# real link (the host's lo is left alone).
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
ip netns exec "$NS" ip link set lo mtu 1500
ip netns exec "$NS" ethtool -K lo tso off gso off gro off >/dev/null 2>&1 || true
IN="ip netns exec $NS"
CAP="$WORK/bulk.pcap"
echo "capturing ~${SIZE_MB} MB of a loopback iperf3 transfer on port $PORT ..."
$IN tcpdump -i lo -n -U -B 262144 -Z root -w "$CAP" "tcp port $PORT" 2>"$WORK/tcpdump.err" &
PIDS+=($!)
TCPDUMP=$!
for _ in $(seq 100); do grep -q "listening on" "$WORK/tcpdump.err" && break; sleep 0.1; done
$IN iperf3 -s -1 -p "$PORT" >/dev/null 2>&1 &
PIDS+=($!)
sleep 0.5
# Rate-limited so tcpdump keeps up.
$IN iperf3 -c 127.0.0.1 -p "$PORT" -b 2G -n "$((SIZE_MB * 1024 * 1024 * 94 / 100))" >/dev/null
sleep 1
kill -INT "$TCPDUMP"; wait "$TCPDUMP" 2>/dev/null || true
grep -E "captured|dropped" "$WORK/tcpdump.err" || true
ls -l "$CAP" | awk '{printf "capture: %.0f MB\n", $5/1e6}'
capinfos -c "$CAP" 2>/dev/null | tail -1 || true
sync

measure() { # name, command...: prints "name seconds rss_kb"
    local name=$1; shift
    cat "$CAP" >/dev/null # warm the page cache equally for everyone
    /usr/bin/time -v "$@" >"$WORK/$name.out" 2>"$WORK/$name.time" || { echo "$name failed" >&2; cat "$WORK/$name.time" >&2; }
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$WORK/$name.time" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/$name.time")
    echo "$name $wall $rss"
}

R1=$(measure netblame "$BIN" pcap "$CAP")
R2=$(measure tcptrace tcptrace -l "$CAP")
R3=$(measure tshark tshark -n -q -z conv,tcp -r "$CAP")
echo
printf "%-10s %10s %12s\n" tool seconds peak_RSS_MB
for r in "$R1" "$R2" "$R3"; do
    set -- $r
    printf "%-10s %10.2f %12.1f\n" "$1" "$2" "$(echo "$3/1024" | bc -l)"
done
set -- $R1; NB=$2; NBRSS=$3
set -- $R2; TT=$2
set -- $R3; TS=$2
echo
echo "tcptrace / netblame = $(echo "scale=2; $TT / $NB" | bc -l)x   (goal >= 2x)"
echo "tshark   / netblame = $(echo "scale=2; $TS / $NB" | bc -l)x   (goal >= 50x)"
echo "netblame peak RSS   = $(echo "scale=1; $NBRSS / 1024" | bc -l) MB  (goal < 100 MB)"
echo
head -5 "$WORK/netblame.out"
