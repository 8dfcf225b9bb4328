#!/usr/bin/env bash
# netblame probe --kind rr against sockperf ping-pong (TCP) on loopback, in one run, same rate and
# message size. Medians on the same basis: netblame reports the round trip (from each probe's
# scheduled departure), sockperf the half round trip, so sockperf's median is doubled.
# Goal: netblame's median <= 1.2x sockperf's round trip. Also reports how well the scheduler held
# 10,000 probes/s (goal: mean schedule slip < 1% of the interval).
#
# Usage: bench/probe.sh [seconds]     (env: RATE=10000 SIZE=16 NETBLAME_BIN=path; needs sockperf, python3)
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=${1:-5}
RATE=${RATE:-10000}
SIZE=${SIZE:-16}
INTERVAL_NS=$((1000000000 / RATE))

command -v sockperf >/dev/null || { echo "bench/probe.sh: sockperf is not installed (apt-get install sockperf)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "bench/probe.sh: python3 is needed to read the JSON" >&2; exit 1; }

if [ -n "${NETBLAME_BIN:-}" ]; then
  BIN=$NETBLAME_BIN             # an already built release binary
else
  cargo build --release -q -p netblame
  BIN="${CARGO_TARGET_DIR:-target}/release/netblame"
fi

TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

PORT_SP=$((20000 + RANDOM % 10000))
PORT_NB=$((30000 + RANDOM % 10000))
sockperf server --tcp -i 127.0.0.1 -p "$PORT_SP" >"$TMP/sp-server.log" 2>&1 &
PIDS+=($!)
"$BIN" probe serve --listen "127.0.0.1:$PORT_NB" 2>"$TMP/nb-server.log" &
PIDS+=($!)
sleep 1

echo "== sockperf ping-pong --tcp -m $SIZE --mps $RATE -t $DUR"
sockperf ping-pong --tcp -i 127.0.0.1 -p "$PORT_SP" -m "$SIZE" --mps "$RATE" -t "$DUR" >"$TMP/sp.out" 2>&1
grep -E "Summary|percentile (50|99)\.000|<MAX>" "$TMP/sp.out" | sed 's/\x1b\[[0-9;]*m//g'

echo "== netblame probe --kind rr --interval ${INTERVAL_NS}ns --duration ${DUR}s --size $SIZE"
"$BIN" probe --kind rr --interval "${INTERVAL_NS}ns" --duration "${DUR}s" --size "$SIZE" --timeout 1s --json \
  "127.0.0.1:$PORT_NB" >"$TMP/nb.json"

python3 - "$TMP/sp.out" "$TMP/nb.json" <<'PY'
import json, re, sys
sp = open(sys.argv[1]).read()
m = re.search(r"percentile 50\.000 =\s*([0-9.]+)", sp)
if not m:
    sys.exit("could not read sockperf's median:\n" + sp)
sp_half = float(m.group(1))
sp_rtt = 2 * sp_half
doc = json.load(open(sys.argv[2]))
t = doc["targets"][0]
s, sch = t["summary"], t["schedule"]
nb = s["p50_us"]
ratio = nb / sp_rtt
print(f"netblame rr: sent {s['sent']} received {s['received']} loss {s['loss_percent']:.3f}%  "
      f"p50 {nb:.2f} us  p99 {s['p99_us']:.2f} us  max {s['max_us']:.1f} us")
print()
print(f"median round trip: netblame {nb:.2f} us vs sockperf 2 x {sp_half:.3f} = {sp_rtt:.2f} us "
      f"-> ratio {ratio:.2f}x (goal <= 1.20x: {'met' if ratio <= 1.2 else 'NOT met'})")
fs = t["from_send"]["p50_us"]
print(f"  (from each probe's actual departure, as sockperf measures: p50 {fs:.2f} us -> ratio {fs / sp_rtt:.2f}x)")
iv = sch["interval_ns"]
print(f"scheduler at {1e9/iv:,.0f} probes/s: achieved {sch['achieved_per_second']:,.1f}/s over {sch['probes']} probes: "
      f"rate slip {sch['rate_slip_percent']:.3f}% (goal < 1%: {'met' if sch['rate_slip_percent'] < 1 else 'NOT met'})")
print(f"  per-probe lateness: p50 {sch['late_p50_ns']/1000:.1f} us, p99 {sch['late_p99_ns']/1000:.1f} us, "
      f"max {sch['late_max_ns']/1000:.1f} us; mean {sch['slip_percent']:.1f}% of the interval; "
      f"{sch['late_by_more_than_interval']} of {sch['probes']} probes left more than one interval late "
      f"(each still measured from its scheduled time)")
PY
