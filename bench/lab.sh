#!/usr/bin/env bash
# bench/lab.sh — netblame's userspace WAN emulator side by side with a plain veth pair.
#
# Prints, in one run:
#   - bulk TCP (iperf3, one stream) through a plain veth pair between two namespaces (reference),
#   - through the emulator at 0 ms with no rate limit,
#   - through the emulator at 100 ms RTT with a 1 Gbit/s rate (goal: 1 Gbit/s sustained),
#   - the delay error of the 100 ms lab: request/response RTTs measured by sockperf minus the
#     configured 100 ms (p50/p99), and the emulator's own departure lateness p50/p99.
# Needs root, iperf3, sockperf, jq. Not run by CI. Usage: bench/lab.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p netblame
NB="$CARGO_TARGET_DIR/release/netblame"
TAG=$$
VA=nbv-a-$TAG VB=nbv-b-$TAG L0=bl0-$TAG L1=bl1-$TAG

cleanup() {
  "$NB" lab down "$L0" >/dev/null 2>&1 || true
  "$NB" lab down "$L1" >/dev/null 2>&1 || true
  ip netns del "$VA" 2>/dev/null || true
  ip netns del "$VB" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# iperf3 -c from namespace A to B; prints bits per second (receiver side, omitting slow start).
iperf_ns() { # client-ns server-ns server-addr
  ip netns exec "$2" iperf3 -s -1 -B "$3" >/dev/null 2>&1 &
  local spid=$!
  sleep 0.5
  ip netns exec "$1" iperf3 -c "$3" -t "$DUR" -O 3 -J | jq '.end.sum_received.bits_per_second'
  wait "$spid" || true
}

gbit() { awk -v v="$1" 'BEGIN { printf "%.2f Gbit/s", v / 1e9 }'; }

echo "== reference: plain veth pair"
ip netns add "$VA"; ip netns add "$VB"
ip link add "va$TAG" netns "$VA" type veth peer name "vb$TAG" netns "$VB"
ip -n "$VA" addr add 198.18.1.1/24 dev "va$TAG"; ip -n "$VB" addr add 198.18.1.2/24 dev "vb$TAG"
ip -n "$VA" link set "va$TAG" up; ip -n "$VB" link set "vb$TAG" up
VETH=$(iperf_ns "$VA" "$VB" 198.18.1.2)
echo "veth: $(gbit "$VETH")"

echo "== emulator, 0 ms, no rate limit"
"$NB" lab up "$L0" --rtt 0ms >/dev/null
E0=$(iperf_ns "nbl-$L0-c" "nbl-$L0-s" 198.19.0.1)
echo "emulator 0 ms: $(gbit "$E0")"
sleep 1.2
"$NB" lab list --json | jq -r --arg n "$L0" '.[] | select(.state.name == $n) | .counters |
  "  emulator drops up/down: \(.uplink.dropped_queue + .uplink.dropped_overflow + .uplink.dropped_write)/\(.downlink.dropped_queue + .downlink.dropped_overflow + .downlink.dropped_write), tun kernel drops \(.client_tun_tx_dropped)/\(.server_tun_tx_dropped)"'
"$NB" lab down "$L0" >/dev/null

echo "== emulator, 100 ms RTT, 1 Gbit/s"
BUF="4096 131072 67108864"
"$NB" lab up "$L1" --rtt 100ms --rate 1gbit \
  --client-sysctl "net.ipv4.tcp_wmem=$BUF" --client-sysctl "net.ipv4.tcp_rmem=$BUF" \
  --server-sysctl "net.ipv4.tcp_wmem=$BUF" --server-sysctl "net.ipv4.tcp_rmem=$BUF" >/dev/null
E1=$(iperf_ns "nbl-$L1-c" "nbl-$L1-s" 198.19.0.1)
echo "emulator 100 ms, 1 Gbit/s: $(gbit "$E1") (goal 1 Gbit/s)"

# Delay error: sockperf ping-pong (reports half the round trip) against the configured 100 ms.
ip netns exec "nbl-$L1-s" sockperf sr --tcp -i 198.19.0.1 -p 11111 >/dev/null 2>&1 &
SP=$!
sleep 0.5
OUT=$(ip netns exec "nbl-$L1-c" sockperf pp --tcp -i 198.19.0.1 -p 11111 -t 5 --mps 100 2>&1 || true)
kill "$SP" 2>/dev/null || true; wait "$SP" 2>/dev/null || true
P50=$(echo "$OUT" | awk '/percentile 50.000 =/ { print $NF }')
P99=$(echo "$OUT" | awk '/percentile 99.000 =/ { print $NF }')
if [ -n "$P50" ]; then
  awk -v a="$P50" -v b="$P99" 'BEGIN { printf "delay error (sockperf RTT - 100 ms): p50 %.0f us, p99 %.0f us\n", 2*a - 100000, 2*b - 100000 }'
else
  echo "sockperf gave no percentiles:"; echo "$OUT" | tail -5
fi
sleep 1.2
"$NB" lab list --json | jq -r --arg n "$L1" '.[] | select(.state.name == $n) | .counters |
  "emulator departure lateness: up p50 \(.uplink.lateness_p50_us) us p99 \(.uplink.lateness_p99_us) us; down p50 \(.downlink.lateness_p50_us) us p99 \(.downlink.lateness_p99_us) us (10 us buckets)",
  "emulator drops up/down: queue \(.uplink.dropped_queue)/\(.downlink.dropped_queue), own \(.uplink.dropped_overflow + .uplink.dropped_write)/\(.downlink.dropped_overflow + .downlink.dropped_write), tun kernel drops \(.client_tun_tx_dropped)/\(.server_tun_tx_dropped)"'

awk -v v="$VETH" -v a="$E0" -v b="$E1" 'BEGIN {
  printf "\nratio emulator(0 ms) / veth: %.2f\nratio emulator(100 ms, 1 Gbit/s) / 1 Gbit/s: %.2f\n", a / v, b / 1e9 }'
