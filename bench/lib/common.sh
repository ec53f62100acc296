# Shell helpers of the benchmark scripts (sourced; bash).

# A free loopback TCP port (bound and released: good enough on a quiet machine).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_http URL [SECONDS]: until URL answers 2xx, at most SECONDS (default 10); 1 if it never did.
wait_http() {
    local url=$1 tries=$(( ${2:-10} * 10 ))
    for _ in $(seq "$tries"); do curl -fs "$url" >/dev/null && return 0; sleep 0.1; done
    printf 'no answer from %s within %s s\n' "$url" "${2:-10}" >&2
    return 1
}

# The machine a result was measured on: CPU model and core count, on one line.
cpu_line() {
    printf '%s, %s cores\n' "$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)" "$(nproc)"
}

# "TOTAL STEAL": all CPU ticks and the hypervisor's stolen ones so far (/proc/stat). The steal
# over a run is the difference of two readings: steal_pct BEFORE AFTER.
cpu_ticks_all() { awk '/^cpu /{t=0; for (i=2; i<=NF; i++) t+=$i; print t, $9; exit}' /proc/stat; }
steal_pct() {
    local t0 s0 t1 s1
    read -r t0 s0 <<<"$1"; read -r t1 s1 <<<"$2"
    awk -v t="$((t1 - t0))" -v s="$((s1 - s0))" 'BEGIN{ printf "%.1f", (t > 0 ? 100 * s / t : 0) }'
}
