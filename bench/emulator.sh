#!/usr/bin/env bash
# bench/emulator.sh — the name issue 6 uses; the script is bench/lab.sh.
exec "$(dirname "$0")/lab.sh" "$@"
