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
