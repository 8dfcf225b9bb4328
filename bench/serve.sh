#!/usr/bin/env bash
# Cost of `netblame serve` (issue 16), side by side with prometheus-node-exporter.
# 1. A namespace holds SOCKETS TCP sockets (established loopback pairs, default 36,000).
# 2. `netblame serve --netns` scans it every INTERVAL (default 15s) for SECONDS (default 120),
#    scraped once per interval as Prometheus would; prints the agent's CPU (% of one core, the
#    average over the window from /proc/PID/stat), its RSS (now and peak), and its scan time.
#    Goals: <= 2% CPU, < 100 MB RSS.
# 3. SCRAPES scrapes of the agent's /metrics, one after another, then the same of
#    prometheus-node-exporter (Debian package, default collectors) on the same host: the median
#    and p90 of each (curl's time_total) and the ratio. Goal: agent median < 100 ms.
# Not run by CI (timings never go into tests).
# Usage: sudo bench/serve.sh [sockets] [interval_s] [seconds] [scrapes]
set -euo pipefail
SOCKETS=${1:-36000}
INTERVAL=${2:-15}
SECONDS_RUN=${3:-120}
SCRAPES=${4:-200}
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
[ "$(id -u)" -eq 0 ] || { echo "bench/serve.sh: needs root (namespaces)" >&2; exit 1; }
command -v prometheus-node-exporter >/dev/null || { echo "prometheus-node-exporter not installed (apt-get install prometheus-node-exporter)" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl not installed" >&2; exit 1; }
cargo build --release -q -p netblame
NB="$CARGO_TARGET_DIR/release/netblame"
WORK=$(mktemp -d)
NS="serve-bench-$$"
HOLDER= AGENT= NODE=
cleanup() {
  for p in $AGENT $NODE $HOLDER; do kill "$p" 2>/dev/null || true; done
  for p in $AGENT $NODE $HOLDER; do wait "$p" 2>/dev/null || true; done
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
# Enough ports and descriptors for SOCKETS/2 connections from one process.
ip netns exec "$NS" sysctl -qw net.ipv4.ip_local_port_range="1024 65000"
PAIRS=$((SOCKETS / 2))
# Several holder processes of at most 8,000 connections (16,000 descriptors) each: the
# descriptor limit of one process may be lower than SOCKETS here.
HOLDERS=$(( (PAIRS + 7999) / 8000 ))
echo "1. $SOCKETS sockets ($PAIRS established loopback connections, $HOLDERS holder processes) in namespace $NS"
for h in $(seq "$HOLDERS"); do
  n=$(( PAIRS / HOLDERS + (h <= PAIRS % HOLDERS ? 1 : 0) ))
  ip netns exec "$NS" python3 - "$n" "$WORK/ready.$h" <<'PY' & HOLDER="$HOLDER $!"
import resource, socket, sys, time
pairs, ready = int(sys.argv[1]), sys.argv[2]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
keep = []
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(4096)
for _ in range(pairs):
    c = socket.create_connection(l.getsockname())
    s, _ = l.accept()
    keep += [c, s]
open(ready, "w").write(str(len(keep)))
time.sleep(1 << 30)
PY
done
held=0
for h in $(seq "$HOLDERS"); do
  for _ in $(seq 1200); do [ -s "$WORK/ready.$h" ] && break; sleep 0.25; done
  [ -s "$WORK/ready.$h" ] || { echo "socket holder $h did not finish" >&2; exit 1; }
  held=$(( held + $(cat "$WORK/ready.$h") ))
done
echo "   held: $held sockets; the namespace has $(ip netns exec "$NS" ss -Htan | wc -l) TCP sockets"

PORT=$(free_port)
printf 'interval = "%ss"\n' "$INTERVAL" > "$WORK/serve.toml"
"$NB" serve --listen "127.0.0.1:$PORT" --config "$WORK/serve.toml" --netns "$NS" \
  --events "$WORK/events.jsonl" 2> "$WORK/serve.err" & AGENT=$!
for _ in $(seq 600); do grep -q '"started"' "$WORK/events.jsonl" 2>/dev/null && break; sleep 0.2; done
grep -q '"started"' "$WORK/events.jsonl" || { cat "$WORK/serve.err" >&2; exit 1; }
URL="http://127.0.0.1:$PORT/metrics"

ticks() { awk '{print $14 + $15}' "/proc/$AGENT/stat"; }
HZ=$(getconf CLK_TCK)
echo "2. netblame serve, interval ${INTERVAL}s, ${SECONDS_RUN}s window, one scrape per interval"
t0=$(date +%s.%N); c0=$(ticks)
end=$(( $(date +%s) + SECONDS_RUN ))
while [ "$(date +%s)" -lt "$end" ]; do
  curl -s -o /dev/null -H 'Accept: application/openmetrics-text; version=1.0.0' "$URL"
  sleep "$INTERVAL"
done
t1=$(date +%s.%N); c1=$(ticks)
rss=$(awk '/^VmRSS/ {print $2}' "/proc/$AGENT/status")
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$AGENT/status")
curl -s "$URL" > "$WORK/metrics.txt"
curl -s "http://127.0.0.1:$PORT/findings" > "$WORK/findings.json"
python3 - "$c0" "$c1" "$t0" "$t1" "$HZ" "$rss" "$hwm" "$WORK/metrics.txt" "$WORK/findings.json" <<'PY'
import sys
c0, c1, t0, t1, hz, rss, hwm = (float(x) for x in sys.argv[1:8])
m = {}
for line in open(sys.argv[8]):
    if line and not line.startswith("#") and " " in line:
        k, v = line.rsplit(" ", 1); m[k] = v.strip()
cpu = (c1 - c0) / hz / (t1 - t0) * 100
print(f"   CPU: {cpu:.2f}% of one core on average over {t1 - t0:.0f} s (goal <= 2%)")
print(f"   RSS: {rss / 1024:.1f} MB now, {hwm / 1024:.1f} MB peak (goal < 100 MB)")
est = m.get('netblame_connections{state="established"}', '?')
scan_ms = float(m.get('netblame_scan_duration_seconds', 'nan')) * 1000
print(f"   scans: {m.get('netblame_scans_total', '?')}, last scan took {scan_ms:.0f} ms; established sockets seen: {est}")
import json
f = json.load(open(sys.argv[9]))
ph = ", ".join(f"{k} {v / 1000:.0f} ms" for k, v in f.get("scan_phases_us", {}).items())
print(f"   last scan's parts: {ph} (/proc read this scan: {f.get('processes_refreshed')})")
PY

scrape_times() { # url -> one time_total per line
  for _ in $(seq "$SCRAPES"); do curl -s -o /dev/null -w '%{time_total}\n' "$1"; done
}
echo "3. $SCRAPES scrapes each, one after another"
scrape_times "$URL" > "$WORK/agent.times"
NPORT=$(free_port)
prometheus-node-exporter --web.listen-address="127.0.0.1:$NPORT" > "$WORK/node.log" 2>&1 & NODE=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$NPORT/metrics" && break; sleep 0.1; done
scrape_times "http://127.0.0.1:$NPORT/metrics" > "$WORK/node.times"
abytes=$(curl -s "$URL" | wc -c); nbytes=$(curl -s "http://127.0.0.1:$NPORT/metrics" | wc -c)
python3 - "$WORK/agent.times" "$WORK/node.times" "$abytes" "$nbytes" <<'PY'
import sys
def q(f, p):
    v = sorted(float(x) for x in open(f) if x.strip())
    return v[min(len(v) - 1, int(p * len(v)))] * 1000
a50, a90, n50, n90 = q(sys.argv[1], .5), q(sys.argv[1], .9), q(sys.argv[2], .5), q(sys.argv[2], .9)
print(f"   netblame serve:           median {a50:7.2f} ms  p90 {a90:7.2f} ms  ({int(sys.argv[3]):,} bytes; goal: median < 100 ms)")
print(f"   prometheus-node-exporter: median {n50:7.2f} ms  p90 {n90:7.2f} ms  ({int(sys.argv[4]):,} bytes)")
print(f"   ratio netblame/node-exporter (median): {a50 / n50:.2f}")
PY
