#!/usr/bin/env bash
# bench/lab.sh — netblame's userspace WAN emulator side by side with a plain veth pair.
#
# Prints, in one run:
#   - bulk TCP (iperf3, one stream) through a plain veth pair between two namespaces (reference),
#   - through the emulator at 0 ms with no rate limit (goal: at least 3 Gbit/s),
#   - through the emulator at 100 ms RTT with a 1 Gbit/s rate (goal: 1 Gbit/s sustained):
#     iperf3's goodput (TCP payload) and the IP rate the emulator's counters saw at the
#     bottleneck over the measured seconds. The rate counts IP bytes (a TUN link has no layer 2),
#     so at 1500 MTU a TCP flow with timestamps carries at most 1448/1500 of it as payload:
#     0.965 Gbit/s of goodput is a full 1 Gbit/s link,
#   - the delay error of the 100 ms lab: request/response RTTs measured by sockperf minus the
#     configured 100 ms (p50/p99), and the emulator's own departure lateness p50/p99; next to
#     it the same ping-pong over the veth pair, whose tail is the machine's own scheduling
#     noise (a shared machine's neighbours show up in both).
# The emulator uses TUN offload (TCP super-packets) when the kernel grants it; the mode in use
# is printed. Needs root, iperf3, sockperf, jq. Not run by CI. Usage: bench/lab.sh [SECONDS]
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

# sockperf ping-pong from namespace A to B for 10 s at 100 messages/s; prints the round trip's
# p50 and p99 in microseconds (sockperf reports half the round trip), or nothing.
pingpong() { # client-ns server-ns server-addr
  ip netns exec "$2" sockperf sr --tcp -i "$3" -p 11111 >/dev/null 2>&1 &
  local sp=$!
  sleep 0.5
  local out
  out=$(ip netns exec "$1" sockperf pp --tcp -i "$3" -p 11111 -t 10 --mps 100 2>&1 || true)
  kill "$sp" 2>/dev/null || true; wait "$sp" 2>/dev/null || true
  echo "$out" | awk '/percentile 50.000 =/ { a = $NF } /percentile 99.000 =/ { b = $NF }
    END { if (a != "") printf "%.0f %.0f\n", 2 * a, 2 * b }'
}

gbit() { awk -v v="$1" 'BEGIN { printf "%.2f Gbit/s", v / 1e9 }'; }

# Uplink IP bytes the lab's emulator forwarded, and when (the lab publishes its counters every
# second; the file's mtime is the moment of that snapshot).
sample() { # lab
  local f="/run/netblame/labs/$1/counters.json"
  echo "$(jq '.uplink.bytes_out' "$f") $(stat -c '%.9Y' "$f")"
}

echo "== reference: plain veth pair"
ip netns add "$VA"; ip netns add "$VB"
ip link add "va$TAG" netns "$VA" type veth peer name "vb$TAG" netns "$VB"
ip -n "$VA" addr add 198.18.1.1/24 dev "va$TAG"; ip -n "$VB" addr add 198.18.1.2/24 dev "vb$TAG"
ip -n "$VA" link set "va$TAG" up; ip -n "$VB" link set "vb$TAG" up
VETH=$(iperf_ns "$VA" "$VB" 198.18.1.2)
echo "veth: $(gbit "$VETH")"
VPP=$(pingpong "$VA" "$VB" 198.18.1.2)
[ -n "$VPP" ] && echo "$VPP" | awk '{ printf "veth ping-pong RTT: p50 %d us, p99 %d us (the noise floor of this machine)\n", $1, $2 }'

echo "== emulator, 0 ms, no rate limit"
"$NB" lab up "$L0" --rtt 0ms >/dev/null
E0=$(iperf_ns "nbl-$L0-c" "nbl-$L0-s" 198.19.0.1)
echo "emulator 0 ms: $(gbit "$E0") (goal 3 Gbit/s)"
sleep 1.2
"$NB" lab list --json | jq -r --arg n "$L0" '.[] | select(.state.name == $n) | .counters |
  "  tun mode: \(.tun_mode // "plain"); uplink \(.uplink.packets_out) segments in \(.uplink.superpackets_in // 0) super-packets",
  "  emulator drops up/down: \(.uplink.dropped_queue + .uplink.dropped_overflow + .uplink.dropped_write)/\(.downlink.dropped_queue + .downlink.dropped_overflow + .downlink.dropped_write), tun kernel drops \(.client_tun_tx_dropped)/\(.server_tun_tx_dropped)"'
"$NB" lab down "$L0" >/dev/null

echo "== emulator, 100 ms RTT, 1 Gbit/s"
BUF="4096 131072 67108864"
"$NB" lab up "$L1" --rtt 100ms --rate 1gbit \
  --client-sysctl "net.ipv4.tcp_wmem=$BUF" --client-sysctl "net.ipv4.tcp_rmem=$BUF" \
  --server-sysctl "net.ipv4.tcp_wmem=$BUF" --server-sysctl "net.ipv4.tcp_rmem=$BUF" >/dev/null
# iperf3 in the background; the bottleneck's IP rate is sampled inside its measured seconds.
ip netns exec "nbl-$L1-s" iperf3 -s -1 -B 198.19.0.1 >/dev/null 2>&1 &
SPID=$!
sleep 0.5
ip netns exec "nbl-$L1-c" iperf3 -c 198.19.0.1 -t "$DUR" -O 3 -J >"/tmp/nb-lab-bench-$TAG.json" &
CPID=$!
sleep 3.5
S0=$(sample "$L1")
sleep "$(awk -v d="$DUR" 'BEGIN { print (d > 2 ? d - 1.5 : 1) }')"
S1=$(sample "$L1")
wait "$CPID"; wait "$SPID" || true
E1=$(jq '.end.sum_received.bits_per_second' "/tmp/nb-lab-bench-$TAG.json")
rm -f "/tmp/nb-lab-bench-$TAG.json"
IPR=$(echo "$S0 $S1" | awk '{ if ($4 > $2) printf "%.0f", ($3 - $1) * 8 / ($4 - $2); else print 0 }')
echo "emulator 100 ms, 1 Gbit/s: goodput $(gbit "$E1") (ceiling 0.965 Gbit/s: 1448 payload bytes per 1500-byte packet); IP rate at the bottleneck $(gbit "$IPR") (goal 1 Gbit/s)"

# Delay error: sockperf ping-pong against the configured 100 ms.
PP=$(pingpong "nbl-$L1-c" "nbl-$L1-s" 198.19.0.1)
if [ -n "$PP" ]; then
  echo "$PP" | awk '{ printf "delay error (sockperf RTT - 100 ms): p50 %d us, p99 %d us\n", $1 - 100000, $2 - 100000 }'
  # The RTT includes the two kernels and sockperf themselves: what veth's RTT already shows.
  [ -n "$VPP" ] && echo "$PP $VPP" | awk '{ printf "  beyond the veth round trip: p50 %d us, p99 %d us\n", $1 - 100000 - $3, $2 - 100000 - $4 }'
else
  echo "sockperf gave no percentiles"
fi
sleep 1.2
"$NB" lab list --json | jq -r --arg n "$L1" '.[] | select(.state.name == $n) | .counters |
  "emulator departure lateness: up p50 \(.uplink.lateness_p50_us) us p99 \(.uplink.lateness_p99_us) us; down p50 \(.downlink.lateness_p50_us) us p99 \(.downlink.lateness_p99_us) us (10 us buckets)",
  "emulator drops up/down: queue \(.uplink.dropped_queue)/\(.downlink.dropped_queue), own \(.uplink.dropped_overflow + .uplink.dropped_write)/\(.downlink.dropped_overflow + .downlink.dropped_write), tun kernel drops \(.client_tun_tx_dropped)/\(.server_tun_tx_dropped)"'

awk -v v="$VETH" -v a="$E0" -v b="$E1" -v r="$IPR" 'BEGIN {
  printf "\nratio emulator(0 ms) / veth: %.2f\nratio emulator(0 ms) / 3 Gbit/s goal: %.2f\n", a / v, a / 3e9
  printf "ratio emulator(100 ms) IP rate / 1 Gbit/s: %.3f\nratio emulator(100 ms) goodput / 0.965 Gbit/s ceiling: %.3f\n", r / 1e9, b / 0.9653e9 }'
