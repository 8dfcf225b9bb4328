#!/usr/bin/env bash
# Rebuilds netblame.bpf.o from netblame.bpf.c (needs clang, llvm-strip and libbpf's headers:
# Debian packages clang, llvm, libbpf-dev). `build.sh --check` builds into a temp dir and fails
# when the committed object differs (what .ci/run does).
#
# Determinism: the object is built with -fdebug-prefix-map (no absolute paths) and stripped of
# DWARF (-g is only there to emit .BTF/.BTF.ext, which stay). clang's BPF output is byte-for-byte
# stable for one clang version, not across versions, so the version that built the committed
# object is pinned in clang.version; --check compares bytes only with that same version and
# otherwise says which version it needs (and fails under CI=true).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

clang_version() { clang --version | head -1; }

build() { # $1 = output object
  local arch_inc
  arch_inc="/usr/include/$(uname -m)-linux-gnu"
  clang -target bpfel -O2 -g -Wall -Werror \
    -fdebug-prefix-map="$here"=. -fno-ident \
    -I"$here" -I"$arch_inc" \
    -c netblame.bpf.c -o "$1"
  llvm-strip -g "$1" 2>/dev/null || "llvm-strip-$(clang --version | sed -n 's/.*clang version \([0-9]*\).*/\1/p;q')" -g "$1"
}

if [ "${1:-}" = "--check" ]; then
  pinned="$(cat clang.version)"
  if [ "$(clang_version)" != "$pinned" ]; then
    echo "bpf/build.sh --check: committed object was built by '$pinned', this is '$(clang_version)'; cannot compare bytes" >&2
    [ "${CI:-}" = "true" ] && exit 1
    exit 0
  fi
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  build "$tmp/netblame.bpf.o"
  if ! cmp -s "$tmp/netblame.bpf.o" netblame.bpf.o; then
    echo "bpf/build.sh --check: crates/netblame-trace/bpf/netblame.bpf.o is stale: run crates/netblame-trace/bpf/build.sh and commit it" >&2
    exit 1
  fi
  echo "bpf/build.sh --check: netblame.bpf.o matches its source"
  exit 0
fi

build netblame.bpf.o
clang_version > clang.version
echo "built $here/netblame.bpf.o ($(stat -c %s netblame.bpf.o) bytes) with $(cat clang.version)"
