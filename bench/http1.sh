#!/usr/bin/env bash
# HTTP/1.1 reverse-proxy benchmark: nginx vs HAProxy vs Causeway.
#
# Method
#   * One upstream (nginx, 1 worker, fixed 20-byte body) on 127.0.0.1:18090.
#   * Each proxy listens on its own port and forwards everything to the
#     upstream over keep-alive connections:
#       nginx    18091   HAProxy  18092   Causeway 18093 (admin 18094)
#     All proxies run with a single worker / thread.
#   * CPU placement: every proxy is pinned to CPU 0; wrk and the upstream
#     share CPU 1 (taskset). On a 2-core machine wrk and the upstream are
#     what caps throughput, so req/s and latency are only indicative. The
#     figure to compare is the proxy's OWN CPU time per request:
#         (utime+stime of the proxy process after - before) / requests
#     read from /proc/PID/stat (fields 14+15, clock ticks, summed over all
#     threads by the kernel). For nginx that is the worker process, for
#     HAProxy and Causeway the main process.
#   * Each proxy is warmed up for 2 s, then measured in `rounds`
#     interleaved rounds (nginx, haproxy, causeway, nginx, ...) of
#     `wrk -t1 -c CONNECTIONS -d DURATION --latency`. Medians are reported.
#   * Efficiency vs X = cost(X) / cost(proxy): > 1 means the proxy needs
#     less CPU per request than X.
#
# Usage: bench/http1.sh [--duration 10] [--rounds 3] [--connections 50]
#                       [--causeway PATH] [--no-build] [--only LIST]
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

UPSTREAM_PORT=18090
declare -A PORT=([nginx]=18091 [haproxy]=18092 [causeway]=18093)
CAUSEWAY_ADMIN_PORT=18094
ALL_PROXIES=(nginx haproxy causeway)

DURATION=10
ROUNDS=3
CONNECTIONS=50
CAUSEWAY_BIN="$REPO_ROOT/.build/release/causeway"
BUILD=1
PROXIES=("${ALL_PROXIES[@]}")
ONLY=""

declare -A MAIN_PID=()    # proxy name -> process launched
declare -A MEASURE_PID=() # proxy name -> process whose CPU time is measured

usage() {
    script_help
    cat <<EOF

Options:
  --duration SECONDS     length of each measurement (default $DURATION)
  --rounds N             interleaved rounds per proxy (default $ROUNDS)
  --connections N        wrk connections (default $CONNECTIONS)
  --causeway PATH        causeway binary (default .build/release/causeway)
  --no-build             never run 'swift build'; fail if the binary is missing
  --only LIST            comma list of proxies to run (default nginx,haproxy,causeway)
EOF
}

# ---------------------------------------------------------------- arguments

parse_args() {
    while (($#)); do
        if parse_common_arg "$@"; then shift "$SHIFT_BY"; continue; fi
        case "$1" in
            --only)        ONLY="${2:?--only needs a value}"; shift 2 ;;
            *)             usage >&2; die "unknown argument: $1" ;;
        esac
    done
    check_positive "$DURATION" "$ROUNDS" "$CONNECTIONS"
    [[ -n "$ONLY" ]] && parse_only "$ONLY"
    absolute_causeway
}

# ---------------------------------------------------------------- setup

install_tools() {
    local tools=(nginx wrk taskset curl python3)
    selected haproxy && tools+=(haproxy)
    install_missing "${tools[@]}"
}

check_ports() {
    local ports=("$UPSTREAM_PORT") p
    for p in "${PROXIES[@]}"; do ports+=("${PORT[$p]}"); done
    selected causeway && ports+=("$CAUSEWAY_ADMIN_PORT")
    check_ports_free "${ports[@]}"
}

# ---------------------------------------------------------------- configs

write_nginx_proxy_conf() {
    {
        nginx_common nginx
        cat <<EOF
http {
    access_log off;
    keepalive_requests 1000000;
$(nginx_temp_paths nginx)
    upstream origin {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:${PORT[nginx]};
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    } >"$TMP/nginx.conf"
}

write_haproxy_conf() {
    cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096  # needs ~2x FDs; keep under common hard limits

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s

frontend bench
    bind 127.0.0.1:${PORT[haproxy]}
    default_backend origin

backend origin
    server upstream 127.0.0.1:$UPSTREAM_PORT
EOF
}

write_causeway_conf() {
    cat >"$TMP/causeway.yaml" <<EOF
server: {workers: 1, admin: {address: 127.0.0.1:$CAUSEWAY_ADMIN_PORT}}
listeners: [{name: bench, address: 127.0.0.1:${PORT[causeway]}}]
upstreams: {origin: {endpoints: [{address: 127.0.0.1:$UPSTREAM_PORT}], pool: {max_connections: 256}}}
routes: [{name: all, match: {path_prefix: /}, upstream: origin}]
EOF
}

# ---------------------------------------------------------------- launching

start_nginx() {
    write_nginx_proxy_conf
    run_nginx nginx 0
    local master=$LAST_PID
    wait_ready nginx "$master" "${PORT[nginx]}"
    MAIN_PID[nginx]=$master
    MEASURE_PID[nginx]=$(nginx_worker nginx "$master")
}

start_haproxy() {
    write_haproxy_conf
    haproxy -c -q -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 \
        || proxy_failed haproxy "configuration check failed"
    start haproxy 0 haproxy -db -f "$TMP/haproxy.cfg"
    MAIN_PID[haproxy]=$LAST_PID
    MEASURE_PID[haproxy]=$LAST_PID
    wait_ready haproxy "$LAST_PID" "${PORT[haproxy]}"
}

start_causeway() {
    write_causeway_conf
    start causeway 0 "$CAUSEWAY_BIN" run --config "$TMP/causeway.yaml" --log-level warning
    MAIN_PID[causeway]=$LAST_PID
    MEASURE_PID[causeway]=$LAST_PID
    wait_ready causeway "$LAST_PID" "${PORT[causeway]}"
}

start_proxies() {
    local p
    for p in "${PROXIES[@]}"; do
        "start_$p"
        log "$p ready on :${PORT[$p]} (pid ${MAIN_PID[$p]}, measuring pid ${MEASURE_PID[$p]}, CPU 0)"
    done
}

# ---------------------------------------------------------------- measuring

# run_wrk PROXY SECONDS OUTFILE: wrk pinned to CPU 1.
run_wrk() {
    run_loadgen "$3" wrk -t1 -c "$CONNECTIONS" -d "${2}s" --latency "http://127.0.0.1:${PORT[$1]}/" \
        || { cat "$3" >&2; die "wrk failed against $1"; }
}

warm_up() {
    local p
    for p in "${PROXIES[@]}"; do
        log "warming up $p (2 s)"
        run_wrk "$p" 2 "$TMP/warmup-$p.txt"
    done
}

run_rounds() {
    local r p
    printf 'proxy\tround\tcpu_ticks\trequests\trps\tp99_ms\terrors\n' >"$TMP/results.tsv"
    for ((r = 1; r <= ROUNDS; r++)); do
        for p in "${PROXIES[@]}"; do
            measure "$p" "$r"
        done
    done
}

# ---------------------------------------------------------------- python helpers

# ---------------------------------------------------------------- report

versions() {
    local v
    # wrk -v exits 1, so none of these may fail the script.
    v="nginx $( (nginx -v 2>&1 || true) | sed 's/.*nginx\///')"
    selected haproxy && v+=", $( (haproxy -v || true) | awk 'NR == 1 {print "HAProxy " $3}')"
    v+=", $( (wrk -v 2>&1 || true) | awk 'NR == 1 {print $1, $2}')"
    selected causeway && v+=", causeway $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "$v"
}

report() {
    local stamp md cpu header
    stamp=$(date +%Y-%m-%d-%H%M%S)
    mkdir -p "$BENCH_DIR/results"
    md="$BENCH_DIR/results/http1-$stamp.md"
    cpu=$(cpu_model)
    header="# HTTP/1.1 proxy benchmark, $stamp\\n"
    header+="\\n- duration ${DURATION}s, rounds $ROUNDS, connections $CONNECTIONS, wrk -t1"
    header+="\\n- proxy on CPU 0; wrk + upstream nginx on CPU 1 ($(nproc --all) CPUs: ${cpu:-unknown})"
    header+="\\n- $(versions)"
    header+="\\n- kernel $(uname -r), CLK_TCK $CLK_TCK\\n"
    echo
    python3 "$BENCH_DIR/wrk_report.py" report "$TMP/results.tsv" "$CLK_TCK" "$md" "$header"
    echo
    log "markdown written to ${md#"$REPO_ROOT"/}"
}

# ---------------------------------------------------------------- main

main() {
    parse_args "$@"
    install_tools
    check_cpus wrk
    build_causeway
    check_ports

    CLK_TCK=$(getconf CLK_TCK)
    setup_tmp

    start_upstream
    start_proxies
    warm_up
    run_rounds
    report
}

main "$@"
