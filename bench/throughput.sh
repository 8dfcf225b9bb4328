#!/usr/bin/env bash
# netblame bench versus iperf3 3.12 on loopback, same duration, in one run: single stream, -P 2,
# and netblame with -Z --skip-rx-copy against iperf3's default. Prints throughput (receiver
# side), CPU (client + server, % of one core) and the ratios.
# Goals (issue 5): single >= 1.0x at no more CPU; -P 2 >= 1.3x; -Z --skip-rx-copy >= 1.3x.
# The bits/CPU column compares throughput per CPU percent (efficiency). Not run by CI. Usage: bench/throughput.sh [seconds]
set -euo pipefail
T=${1:-5}
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p netblame
NB="$CARGO_TARGET_DIR/release/netblame"
command -v iperf3 >/dev/null || { echo "iperf3 not installed" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT INT TERM
# Each run_* function runs in its own subshell ($(...)): its EXIT trap stops its server even
# when the client fails.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_listen() { for _ in $(seq 100); do ss -Hltn "sport = :$1" | grep -q . && return 0; sleep 0.05; done; return 1; }
# Prints "bits_per_second cpu_total" from a -J document (receiver rate, client + server CPU).
parse() { python3 -c '
import json,sys
d=json.load(open(sys.argv[1])); e=d["end"]; c=e["cpu_utilization_percent"]
print(e["sum_received"]["bits_per_second"], c["host_total"]+c["remote_total"])' "$1"; }

run_iperf3() { # args: extra client flags
  local p; p=$(free_port)
  iperf3 -s -1 -B 127.0.0.1 -p "$p" >/dev/null 2>&1 & SERVER=$!
  trap 'kill "$SERVER" 2>/dev/null || true' EXIT
  wait_listen "$p"
  iperf3 -c 127.0.0.1 -p "$p" -t "$T" -J "$@" > "$WORK/iperf3.json"
  wait "$SERVER" || true
  parse "$WORK/iperf3.json"
}

run_netblame() {
  local p; p=$(free_port)
  "$NB" bench server -B 127.0.0.1 -p "$p" --one-off -J >/dev/null 2>&1 & SERVER=$!
  trap 'kill "$SERVER" 2>/dev/null || true' EXIT
  wait_listen "$p"
  "$NB" bench client 127.0.0.1 -p "$p" -t "$T" -J "$@" > "$WORK/netblame.json"
  wait "$SERVER" || true
  parse "$WORK/netblame.json"
}

row() { # name, iperf3 "bps cpu", netblame "bps cpu"
  python3 -c '
import sys
name=sys.argv[1]; ib,ic=map(float,sys.argv[2].split()); nb,nc=map(float,sys.argv[3].split())
eff=(nb/max(nc,1e-9))/(ib/max(ic,1e-9))
print(f"{name:<28} {ib/1e9:8.2f} {ic:7.1f}%  {nb/1e9:8.2f} {nc:7.1f}%  {nb/ib:6.2f}x  {nc/max(ic,1e-9):6.2f}x  {eff:6.2f}x")' "$@"
}

printf "%-28s %8s %8s  %8s %8s  %7s %7s %8s\n" "loopback, ${T}s" "iperf3" "CPU" "netblame" "CPU" "rate" "CPU" "bits/CPU"
printf "%-28s %8s %8s  %8s %8s  %7s %7s %8s\n" "" "Gbit/s" "" "Gbit/s" "" "ratio" "ratio" "ratio"
i1=$(run_iperf3); n1=$(run_netblame); row "single stream" "$i1" "$n1"
i2=$(run_iperf3 -P 2); n2=$(run_netblame -P 2); row "-P 2" "$i2" "$n2"
n3=$(run_netblame -Z --skip-rx-copy); row "-Z --skip-rx-copy vs default" "$i1" "$n3"
n4=$(run_netblame --skip-rx-copy); row "--skip-rx-copy vs default" "$i1" "$n4"
