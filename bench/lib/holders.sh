# Sourced by bench scripts: processes that hold many established loopback connections.
#
# start_holders PROCS PER_PROC BASE_PORT WORK_DIR [NETNS]
#   Starts PROCS holders (bench/lib/holder.py), holder i on port BASE_PORT+i with PER_PROC
#   connections, inside NETNS when given; appends their pids to the caller's PIDS array (the
#   caller's cleanup kills them) and returns once every holder is ready. Raises the fd limit to
#   the hard limit and fails early when one holder's sockets would not fit.
HOLDER_PY="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/holder.py"

start_holders() {
    local procs=$1 per=$2 base=$3 dir=$4 ns=${5:-} i
    ulimit -n "$(ulimit -Hn)"
    local need=$(( 2 * per + 16 ))
    if (( $(ulimit -n) < need )); then
        echo "fd limit $(ulimit -n) < $need per holder: raise ulimit -n or use more processes" >&2
        return 1
    fi
    for i in $(seq 0 $(( procs - 1 ))); do
        if [[ -n $ns ]]; then
            ip netns exec "$ns" python3 "$HOLDER_PY" $(( base + i )) "$per" "$dir/ready.$i" &
        else
            python3 "$HOLDER_PY" $(( base + i )) "$per" "$dir/ready.$i" &
        fi
        PIDS+=("$!")
    done
    for i in $(seq 0 $(( procs - 1 ))); do
        for _ in $(seq 1 1200); do
            [[ -s "$dir/ready.$i" ]] && break
            kill -0 "${PIDS[-$(( procs - i ))]}" 2>/dev/null || { echo "holder $i died" >&2; return 1; }
            sleep 0.1
        done
        [[ -s "$dir/ready.$i" ]] || { echo "holder $i not ready after 120 s" >&2; return 1; }
    done
}
