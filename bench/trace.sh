#!/usr/bin/env bash
# Overhead of `netblame trace`, side by side (issue 15), and its event-rate headroom.
# 1. Loopback `netblame bench` throughput without and with `netblame trace` running, alternated
#    RUNS times; prints the mean of each and the ratio. Goal: at most 5% lower with tracing.
# 2. 100,000 events/s: sockperf sends UDP at 100k msg/s into a namespace whose nftables drops
#    them (one skb:kfree_skb event each); prints what the tracer saw, what it lost (the ring
#    buffer was full) and the rate, once with events printed as JSON lines and once --quiet.
# Not run by CI (timings never go into tests). Usage: sudo bench/trace.sh [seconds] [runs]
set -euo pipefail
T=${1:-5}
RUNS=${2:-3}
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
[ "$(id -u)" -eq 0 ] || { echo "bench/trace.sh: needs root (eBPF, namespaces)" >&2; exit 1; }
command -v sockperf >/dev/null || { echo "sockperf not installed" >&2; exit 1; }
cargo build --release -q -p netblame
NB="$CARGO_TARGET_DIR/release/netblame"
WORK=$(mktemp -d)
NS="trace-bench-$$"
cleanup() {
  [ -n "${TRACER:-}" ] && kill "$TRACER" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_listen() { for _ in $(seq 100); do ss -Hltn "sport = :$1" | grep -q . && return 0; sleep 0.05; done; return 1; }

bench_once() { # prints the receiver's bits per second
  local p; p=$(free_port)
  "$NB" bench server -B 127.0.0.1 -p "$p" --one-off -J >/dev/null 2>&1 & local server=$!
  wait_listen "$p"
  "$NB" bench client 127.0.0.1 -p "$p" -t "$T" -J > "$WORK/bench.json"
  wait "$server" || true
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"])' "$WORK/bench.json"
}

start_tracer() { # args: extra trace flags; waits until the programs are attached
  "$NB" trace --duration "$((T + 30))s" "$@" > "$WORK/trace.out" 2> "$WORK/trace.err" & TRACER=$!
  for _ in $(seq 100); do grep -q "function tracing" "$WORK/trace.err" 2>/dev/null && return 0; sleep 0.1; done
  if ! grep -q "function tracing" "$WORK/trace.err"; then cat "$WORK/trace.err" >&2; exit 1; fi
}
stop_tracer() { kill -INT "$TRACER" 2>/dev/null || true; wait "$TRACER" 2>/dev/null || true; TRACER=; }

echo "1. loopback netblame bench, ${T}s per run, ${RUNS} runs each (alternated)"
without=(); with=()
for i in $(seq "$RUNS"); do
  without+=("$(bench_once)")
  start_tracer --quiet
  with+=("$(bench_once)")
  stop_tracer
done
python3 - "${without[*]}" "${with[*]}" <<'PY'
import sys
a=[float(x) for x in sys.argv[1].split()]; b=[float(x) for x in sys.argv[2].split()]
ma=sum(a)/len(a); mb=sum(b)/len(b)
print(f"  without trace: {ma/1e9:7.2f} Gbit/s  (runs: {', '.join(f'{x/1e9:.2f}' for x in a)})")
print(f"  with trace:    {mb/1e9:7.2f} Gbit/s  (runs: {', '.join(f'{x/1e9:.2f}' for x in b)})")
print(f"  ratio with/without: {mb/ma:.3f} (throughput {(mb/ma-1)*100:+.1f}% with tracing; goal: no worse than -5%)")
PY

echo "2. 100,000 events/s: UDP at 100k msg/s dropped by nftables in $NS"
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
printf 'table inet trace_bench {\n chain input {\n type filter hook input priority 0;\n udp dport 9999 drop\n }\n}\n' | ip netns exec "$NS" nft -f -
for mode in json quiet; do
  # The tracer exits on its own after the load; its last line is the summary (JSON).
  if [ "$mode" = json ]; then flags=(--json); else flags=(--json --quiet); fi
  "$NB" trace --duration "$((T + 4))s" --netns "$NS" "${flags[@]}" > "$WORK/rate.out" 2> "$WORK/rate.err" & TRACER=$!
  sleep 1.5
  ip netns exec "$NS" sockperf tp -i 127.0.0.1 -p 9999 --mps=100000 -t "$T" -m 64 > "$WORK/sockperf.out" 2>&1 || true
  wait "$TRACER"; TRACER=
  sent=$(sed -n 's/.*Total of \([0-9]*\) messages sent.*/\1/p' "$WORK/sockperf.out")
  python3 - "$WORK/rate.out" "$mode" "$T" "${sent:-0}" <<'PY'
import json,sys
lines=open(sys.argv[1]).read().splitlines()
s=json.loads(lines[-1])["summary"]
printed=sum(1 for l in lines[:-1] if '"event":"drop"' in l)
drop=[l for l in s["lost"] if l["kind"]=="drop"]
seen=drop[0]["seen"] if drop else 0; lost=drop[0]["lost"] if drop else 0
nf=sum(d["count"] for d in s["drops"] if d["reason"]=="NETFILTER_DROP")
t=float(sys.argv[3])
print(f"  {sys.argv[2]:<5}: kernel saw {seen} drop events (~{seen/t:,.0f}/s over the {t:.0f} s load), "
      f"lost {lost} ({lost/max(seen,1)*100:.2f}%), {nf} NETFILTER_DROP in this namespace "
      f"(sockperf sent {sys.argv[4]}), {printed} printed")
PY
done
