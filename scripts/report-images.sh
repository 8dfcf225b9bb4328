#!/usr/bin/env bash
# Regenerates docs/img/: one `netblame doctor --report` made on a real transfer across an
# emulated WAN, with the pictures of the same run attached, screenshotted by headless Chromium.
#
#   sudo scripts/report-images.sh
#
# Needs root (a lab: network namespaces), tcpdump and chromium (apt-get install tcpdump
# chromium). The lab: 40 ms RTT, 50 Mbit/s, 2% loss on the data direction; the server reads
# with SO_RCVBUF 64 KiB, so the window (not the path) bounds the transfer. Everything it starts
# is stopped and removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "report-images.sh: run as root (the lab needs network namespaces)" >&2
  exit 1
fi
for t in tcpdump chromium; do
  command -v "$t" >/dev/null || { echo "report-images.sh: $t is missing (apt-get install $t)" >&2; exit 1; }
done

cargo build -q -p netblame
nb="$PWD/target/debug/netblame"
out="$PWD/docs/img"
mkdir -p "$out"
tmp=$(mktemp -d)
chmod 755 "$tmp"
lab="nb-img-$$"
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$nb" lab down "$lab" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# A browser screenshot of FILE into PNG at WIDTHxHEIGHT, with a profile of its own.
shot() {
  local profile
  profile=$(mktemp -d)
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --user-data-dir="$profile" --window-size="$3" \
    --screenshot="$2" "file://$1" >/dev/null 2>&1
  rm -rf "$profile"
  echo "wrote $2"
}

"$nb" lab up "$lab" --rtt 40ms --rate 50mbit --loss 2 --loss-direction up >/dev/null

"$nb" lab exec "$lab" server -- "$nb" bench server -p 5201 >/dev/null 2>&1 &
pids+=($!)
"$nb" lab exec "$lab" server -- "$nb" probe serve --listen 0.0.0.0:5202 >/dev/null 2>&1 &
pids+=($!)
until "$nb" lab exec "$lab" server -- ss -Hltn 'sport = :5201' | grep -q 5201; do sleep 0.1; done
until "$nb" lab exec "$lab" server -- ss -Hltn 'sport = :5202' | grep -q 5202; do sleep 0.1; done

dev=$("$nb" lab exec "$lab" client -- sh -c 'ip -o route get "$NETBLAME_PEER"' |
  sed -n 's/.* dev \([^ ]*\).*/\1/p')
"$nb" lab exec "$lab" client -- tcpdump -i "$dev" -U -n -s 128 -w "$tmp/wan.pcap" tcp port 5201 \
  2>"$tmp/tcpdump.err" &
pids+=($!)
until grep -q "listening on" "$tmp/tcpdump.err"; do sleep 0.1; done

# The transfer, and latency probes beside it (they queue behind it at the bottleneck).
"$nb" lab exec "$lab" client -- sh -c \
  "\"$nb\" bench client \"\$NETBLAME_PEER\" -t 8 -i 0.5 --rcvbuf 64k --plot \"$tmp/bench.svg\"" \
  >/dev/null &
bench=$!
sleep 2
"$nb" lab exec "$lab" client -- sh -c \
  "\"$nb\" probe --kind rr \"\$NETBLAME_PEER:5202\" -c 100 --interval 50ms --plot \"$tmp/probe.svg\"" \
  >/dev/null &
probe=$!
wait "$bench" "$probe"

# tcpdump has written every packet once the connection's close is in the file.
conn=""
for _ in $(seq 100); do
  conn=$("$nb" pcap "$tmp/wan.pcap" --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
c = [c for c in d["connections"] if c["close"]["closer"] is not None]
c.sort(key=lambda c: -c["from_client"]["payload_bytes"])
print(c[0]["id"] if c and c[0]["from_client"]["payload_bytes"] > 1000000 else "")')
  [ -n "$conn" ] && break
  sleep 0.1
done
[ -n "$conn" ] || { "$nb" pcap "$tmp/wan.pcap" >&2; echo "report-images.sh: no complete transfer in the capture" >&2; exit 1; }
"$nb" pcap "$tmp/wan.pcap" --conn "$conn" --plot "$tmp/timeseq.svg" >/dev/null

# The report: a second doctor run during a second transfer, with the pictures attached.
"$nb" lab exec "$lab" client -- sh -c \
  "\"$nb\" bench client \"\$NETBLAME_PEER\" -t 6 --rcvbuf 8k" >/dev/null &
bench=$!
sleep 1.5
"$nb" lab exec "$lab" client -- "$nb" doctor --duration 3s --report "$tmp/report.html" \
  --attach "$tmp/bench.svg" --attach "$tmp/timeseq.svg" --attach "$tmp/probe.svg" >/dev/null
wait "$bench"

shot "$tmp/report.html" "$out/report.png" 1200,1500
shot "$tmp/probe.svg" "$out/probe.png" 1200,360
shot "$tmp/bench.svg" "$out/bench.png" 1100,1070
shot "$tmp/timeseq.svg" "$out/timeseq.png" 1200,720
