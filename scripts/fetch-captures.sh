#!/usr/bin/env bash
# Fetches a corpus of real public packet captures (not made by this project) into
# test-data/captures/ (git-ignored), for crates/netblame-pcap/tests/corpus.rs:
#   tcpdump/    the tcpdump project's test captures (Debian source package `tcpdump`)
#   wireshark/  Wireshark's test/captures (Debian source package `wireshark`)
#   pcapfix/    pcapfix's examples, intact and damaged (Debian package `pcapfix`)
#   dpkt/       dpkt's example captures (Debian package `python3-dpkt`)
# Source packages come through apt with a private deb-src list (the system's apt sources are not
# touched). Nothing is committed: the files keep their projects' licences.
#
#   scripts/fetch-captures.sh [DIR]     (default: test-data/captures; idempotent)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/test-data/captures}
mkdir -p "$OUT"
APT=$(mktemp -d /tmp/netblame-fetch-captures.XXXXXX)
trap 'rm -rf "$APT"' EXIT

mkdir -p "$APT/parts" "$APT/lists/partial" "$APT/src"
# Same suite as the system's Debian sources.
SUITE=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
cat >"$APT/parts/src.sources" <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
APTO=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$APT/parts"
      -o "Dir::State::Lists=$APT/lists" -o APT::Sandbox::User=root)

# Unpacks the capture files of a source package's upstream tarball under $OUT/$2.
from_source() { # package, dir, path pattern inside the tarball
    local pkg=$1 dir=$2 pattern=$3
    if [ -n "$(ls -A "$OUT/$dir" 2>/dev/null)" ]; then return; fi
    (cd "$APT/src" && apt-get "${APTO[@]}" source --download-only -qq "$pkg" >/dev/null)
    local tarball
    tarball=$(ls "$APT"/src/"${pkg}"_*.orig.tar.* | head -1)
    mkdir -p "$OUT/$dir"
    tar -xf "$tarball" -C "$OUT/$dir" --strip-components=1 --wildcards --no-anchored \
        "$pattern" 2>/dev/null || true
    # Keep the licence notice next to the files.
    tar -xf "$tarball" -C "$OUT/$dir" --strip-components=1 --wildcards --no-anchored \
        'LICENSE' 'COPYING' 2>/dev/null || true
    rm -f "$APT"/src/"${pkg}"_*
}

apt-get "${APTO[@]}" update -qq
from_source tcpdump tcpdump '*tests/*.pcap*'
from_source wireshark wireshark '*test/captures/*'

# Installed Debian packages (.ci/run installs them).
copy_doc() { # dir, source dir
    [ -d "$2" ] || { echo "fetch-captures: $2 missing (install its package)" >&2; return 0; }
    mkdir -p "$OUT/$1"
    find "$2" -type f \( -name '*.pcap*' -o -name '*.cap*' -o -name 'copyright' \) \
        -exec cp -n {} "$OUT/$1/" \;
}
copy_doc pcapfix /usr/share/doc/pcapfix
copy_doc dpkt /usr/share/doc/python3-dpkt
cp -n /usr/share/doc/pcapfix/copyright "$OUT/pcapfix/" 2>/dev/null || true
cp -n /usr/share/doc/python3-dpkt/copyright "$OUT/dpkt/" 2>/dev/null || true

find "$OUT" -type f \( -name '*.pcap*' -o -name '*.cap*' -o -name '*.gz' \) | wc -l |
    xargs printf "fetch-captures: %s capture files under $OUT\n"
