#!/usr/bin/env bash
# netblame probe --kind http https://... against curl -w on the same local TLS server (openssl
# s_server -www, a CA and a server certificate made here), phase by phase: name lookup, TCP
# connect, TLS handshake, first byte (request sent -> first response byte) and total. Medians of
# N probes each; prints netblame/curl ratios. Goal: the TLS handshake and total within 1.5x of
# curl's (both pay one handshake per request; curl's OpenSSL and netblame's rustls/ring differ).
#
# Usage: bench/https.sh [count]     (env: NETBLAME_BIN=path; needs openssl, curl, python3)
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-50}
for c in openssl curl python3; do
  command -v "$c" >/dev/null || { echo "bench/https.sh: $c is not installed" >&2; exit 1; }
done

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

EC=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${EC[@]}" -keyout "$TMP/ca.key" -out "$TMP/ca.pem" -days 2 -subj "/CN=bench CA" 2>/dev/null
openssl req "${EC[@]}" -keyout "$TMP/key.pem" -out "$TMP/req.csr" -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$TMP/ext.cnf"
openssl x509 -req -in "$TMP/req.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" -CAcreateserial \
  -out "$TMP/cert.pem" -days 2 -extfile "$TMP/ext.cnf" 2>/dev/null

PORT=$((20000 + RANDOM % 10000))
openssl s_server -accept "127.0.0.1:$PORT" -cert "$TMP/cert.pem" -key "$TMP/key.pem" -www -quiet \
  >/dev/null 2>&1 &
PIDS+=($!)
sleep 1
URL="https://localhost:$PORT/"

echo "== curl -w (x$N, one process each, --cacert)"
for _ in $(seq "$N"); do
  curl -s -o /dev/null --cacert "$TMP/ca.pem" \
    -w '%{time_namelookup} %{time_connect} %{time_appconnect} %{time_starttransfer} %{time_total}\n' "$URL"
done >"$TMP/curl.txt"

echo "== netblame probe --kind http --count $N --interval 100ms --cacert"
"$BIN" probe --kind http --count "$N" --interval 100ms --cacert "$TMP/ca.pem" --json "$URL" >"$TMP/nb.json"

python3 - "$TMP/curl.txt" "$TMP/nb.json" <<'PY'
import json, statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
# curl's times are cumulative seconds from its start: turn them into each phase's own length.
curl = {"dns": [], "connect": [], "tls": [], "first_byte": [], "total": []}
for dns, conn, app, start, total in rows:
    curl["dns"].append(dns * 1e6)
    curl["connect"].append((conn - dns) * 1e6)
    curl["tls"].append((app - conn) * 1e6)
    curl["first_byte"].append((start - app) * 1e6)
    curl["total"].append(total * 1e6)
t = json.load(open(sys.argv[2]))["targets"][0]
nb = {p["phase"]: p["p50_us"] for p in t["http"]["phases"]}
print(f"netblame: {t['summary']['received']} of {t['summary']['sent']} replies, {t['http'].get('tls_version')} {t['http'].get('cipher')}")
print(f"{'phase':<11} {'netblame p50':>13} {'curl p50':>10} {'ratio':>7}")
ok = True
for phase in ["dns", "connect", "tls", "first_byte", "total"]:
    c = statistics.median(curl[phase])
    n = nb.get(phase)
    if n is None:
        print(f"{phase:<11} {'-':>13} {c:>8.0f}us")
        continue
    r = n / c if c > 0 else float("inf")
    print(f"{phase:<11} {n:>11.0f}us {c:>8.0f}us {r:>6.2f}x")
    if phase in ("tls", "total") and r > 1.5:
        ok = False
print("goal (tls and total <= 1.5x curl):", "met" if ok else "NOT met")
PY
