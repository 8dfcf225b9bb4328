#!/usr/bin/env bash
# netblame bench versus iperf3 loopback throughput, side by side (see throughput.sh).
exec "$(dirname "$0")/throughput.sh" "$@"
