#!/usr/bin/env bash
# Fuzzes netblame-pcap's capture reader and TCP reconstruction (crates/netblame-pcap/fuzz,
# libFuzzer through cargo-fuzz) for a fixed time, seeded with the real captures of the test
# corpus when scripts/fetch-captures.sh has fetched them. Not run by CI.
#
#   scripts/fuzz-pcap.sh [SECONDS]        (default 60)
#
# cargo-fuzz needs nightly compiler flags; on a stable-only machine RUSTC_BOOTSTRAP=1 enables
# them for this build alone. Prints libFuzzer's final stats; a crash leaves its input under
# crates/netblame-pcap/fuzz/artifacts/ and exits non-zero.
set -euo pipefail
SECONDS_TO_RUN=${1:-60}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
CORPUS=$(mktemp -d /tmp/netblame-fuzz-corpus.XXXXXX)
trap 'rm -rf "$CORPUS"' EXIT
# Seeds: up to 200 small real captures (the fuzzer mutates them).
if [ -d "$ROOT/test-data/captures" ]; then
    n=0
    while IFS= read -r f; do
        cp "$f" "$CORPUS/$n-$(basename "$f" | tr -c 'A-Za-z0-9._-' _)" 2>/dev/null || true
        n=$((n + 1))
        [ "$n" -ge 200 ] && break
    done < <(find "$ROOT/test-data/captures" -type f -size -64k)
fi
cd "$ROOT/crates/netblame-pcap"
RUSTC_BOOTSTRAP=1 cargo fuzz run reader --sanitizer none "$CORPUS" -- \
    -max_total_time="$SECONDS_TO_RUN" -max_len=65536 -print_final_stats=1
