#!/usr/bin/env bash
# A fixed, bounded abuse mix against `netblame bench server` for 60 s (garbage, slowloris,
# probe-magic flood, drip senders, large blocks, vanished clients; see bench/lib/abuse.py),
# with the server limited to 512 file descriptors. Prints the server's RSS, fds and threads
# before and after, and whether a real `iperf3 -c` and `netblame bench client` are served
# during (every 5 s) and after the abuse.
# Goal (issue 18): served every time, the server never exits, RSS back within 10 MB of the start.
# Not run by CI. Usage: bench/abuse.sh [seconds] (NB=/path/to/netblame to try another build)
set -euo pipefail
T=${1:-60}
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
if [ -z "${NB:-}" ]; then
  cargo build --release -q -p netblame
  NB="$CARGO_TARGET_DIR/release/netblame"
fi
command -v iperf3 >/dev/null || { echo "iperf3 not installed" >&2; exit 1; }
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(ulimit -n 512; exec "$NB" bench server -B 127.0.0.1 -p "$PORT" --idle-timeout 10s >/dev/null 2>&1) &
SERVER=$!
ABUSE=
trap 'kill "$SERVER" ${ABUSE:+"$ABUSE"} 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 100); do ss -Hltn "sport = :$PORT" | grep -q . && break; sleep 0.05; done

figures() { # RSS (KiB), open fds, threads of the server
  if [ -d "/proc/$SERVER" ]; then
    printf 'RSS %s KiB, fds %s, threads %s' "$(awk '/^VmRSS/{print $2}' "/proc/$SERVER/status")" \
      "$(ls "/proc/$SERVER/fd" | wc -l)" "$(awk '/^Threads/{print $2}' "/proc/$SERVER/status")"
  else
    printf 'server gone'
  fi
}
ok=0; bad=0
serve_both() { # one iperf3 -c and one netblame bench client, 1 s each
  if timeout 20 iperf3 -c 127.0.0.1 -p "$PORT" -t 1 >/dev/null 2>&1; then ok=$((ok+1)); else bad=$((bad+1)); echo "  $(date +%T) iperf3 -c NOT served"; fi
  if timeout 20 "$NB" bench client 127.0.0.1 -p "$PORT" -t 1 >/dev/null 2>&1; then ok=$((ok+1)); else bad=$((bad+1)); echo "  $(date +%T) netblame bench client NOT served"; fi
}

serve_both
sleep 1
echo "before: $(figures)"
RSS0=$(awk '/^VmRSS/{print $2}' "/proc/$SERVER/status")
python3 bench/lib/abuse.py "$PORT" "$T" > "${TMPDIR:-/tmp}/abuse.$$" & ABUSE=$!
sleep 2
echo "during: $(figures)"
while kill -0 "$ABUSE" 2>/dev/null; do
  serve_both
  sleep 4
done
wait "$ABUSE" || true; ABUSE=
echo "abuse mix ($T s):"; cat "${TMPDIR:-/tmp}/abuse.$$"; rm -f "${TMPDIR:-/tmp}/abuse.$$"
during_ok=$ok; during_bad=$bad; ok=0; bad=0
sleep 12   # longer than --idle-timeout: what the abuse left open times out
serve_both
sleep 1
echo "after:  $(figures)"
if [ -d "/proc/$SERVER" ]; then
  RSS1=$(awk '/^VmRSS/{print $2}' "/proc/$SERVER/status")
  echo "RSS change: $(( (RSS1 - RSS0) / 1024 )) MB (goal: within 10 MB)"
fi
echo "served during the abuse: $during_ok of $((during_ok + during_bad)); after: $ok of $((ok + bad))"
