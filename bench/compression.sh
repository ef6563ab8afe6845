#!/usr/bin/env bash
# Response compression benchmark: gzip through nginx (`gzip on`) vs Causeway, same level.
#
# Method
#   * One upstream (nginx, 1 worker) serving a 100 KB JSON document (made in the
#     temporary directory, deterministic) on 127.0.0.1:18290, never compressed by it.
#   * Each proxy forwards to it over keep-alive and compresses for the client:
#       nginx    18291  gzip on; gzip_comp_level LEVEL; gzip_types application/json
#       Causeway 18293  compression: {algorithms: [gzip, br], gzip_level: LEVEL}
#                       (admin 18294)
#     Both run with a single worker, pinned to CPU 0; wrk and the upstream share CPU 1.
#   * Rows: nginx and causeway with `Accept-Encoding: gzip`, and causeway-br with
#     `Accept-Encoding: br` (brotli quality QUALITY; Debian's nginx has no brotli
#     module, so that row has no nginx counterpart).
#   * The figure to compare is the proxy's own CPU time per request, as in
#     bench/http1.sh: (utime+stime after - before) / requests, medians over
#     `rounds` interleaved rounds of `wrk -t1 -c CONNECTIONS -d DURATION`.
#   * Before measuring, each proxy's answer is decoded (Python zlib/brotli) and
#     compared with the document, and its compressed size is printed.
#   * Then a table of the codings themselves: compressed size and compression
#     time of the same document for gzip levels 1/6/9 and brotli qualities
#     1/4/6/9/11 (Python's zlib and brotli bindings, best of 20 runs).
#
# Usage: bench/compression.sh [--duration 10] [--rounds 3] [--connections 50]
#                             [--level 6] [--quality 4] [--causeway PATH] [--no-build]
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

UPSTREAM_PORT=18290
declare -A PORT=([nginx]=18291 [causeway]=18293 [causeway-br]=18293)
declare -A ENCODING=([nginx]=gzip [causeway]=gzip [causeway-br]=br)
CAUSEWAY_ADMIN_PORT=18294
PROXIES=(nginx causeway causeway-br)

DURATION=10
ROUNDS=3
CONNECTIONS=50
LEVEL=6
QUALITY=4
CAUSEWAY_BIN="$REPO_ROOT/.build/release/causeway"
BUILD=1

declare -A MAIN_PID=()
declare -A MEASURE_PID=()

usage() {
    script_help
}

parse_args() {
    while (($#)); do
        if parse_common_arg "$@"; then shift "$SHIFT_BY"; continue; fi
        case "$1" in
            --level)       LEVEL="${2:?--level needs a value}"; shift 2 ;;
            --quality)     QUALITY="${2:?--quality needs a value}"; shift 2 ;;
            *)             usage >&2; die "unknown argument: $1" ;;
        esac
    done
    check_positive "$DURATION" "$ROUNDS" "$CONNECTIONS" "$LEVEL"
    absolute_causeway
}

# A deterministic JSON document of about 100 KB: an order list, as APIs send.
write_document() {
    python3 - "$TMP/www/data.json" <<'PY'
import json, random, sys
rnd = random.Random(7)
words = "alpha beta gamma delta proxy stream header window order user item price status".split()
items, size = [], 0
while size < 100_000:
    item = {"id": len(items), "name": " ".join(rnd.choice(words) for _ in range(3)),
            "price": round(rnd.random() * 100, 2), "tags": rnd.sample(words, 3),
            "status": rnd.choice(["open", "paid", "shipped"])}
    items.append(item)
    size += len(json.dumps(item)) + 2
open(sys.argv[1], "w").write(json.dumps({"items": items}))
PY
}

write_confs() {
    {
        nginx_common upstream
        cat <<CONF
http {
    access_log off;
    keepalive_requests 1000000;
$(nginx_temp_paths upstream)
    server {
        listen 127.0.0.1:$UPSTREAM_PORT;
        root $TMP/www;
        location / { default_type application/json; try_files /data.json =404; }
    }
}
CONF
    } >"$TMP/upstream.conf"
    {
        nginx_common nginx
        cat <<CONF
http {
    access_log off;
    keepalive_requests 1000000;
$(nginx_temp_paths nginx)
    upstream origin { server 127.0.0.1:$UPSTREAM_PORT; keepalive 64; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:${PORT[nginx]};
        gzip on;
        gzip_comp_level $LEVEL;
        gzip_types application/json;
        gzip_min_length 1024;
        gzip_proxied any;
        gzip_vary on;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
    } >"$TMP/nginx.conf"
    cat >"$TMP/causeway.yaml" <<CONF
server: {workers: 1, admin: {address: 127.0.0.1:$CAUSEWAY_ADMIN_PORT}}
listeners: [{name: bench, address: 127.0.0.1:${PORT[causeway]}}]
upstreams: {origin: {endpoints: [{address: 127.0.0.1:$UPSTREAM_PORT}], pool: {max_connections: 256}}}
routes:
  - {name: all, match: {path_prefix: /}, upstream: origin,
     compression: {algorithms: [gzip, br], gzip_level: $LEVEL, brotli_quality: $QUALITY}}
CONF
}

start_all() {
    run_nginx upstream 1
    wait_ready upstream "$LAST_PID" "$UPSTREAM_PORT"
    run_nginx nginx 0
    local master=$LAST_PID
    wait_ready nginx "$master" "${PORT[nginx]}"
    MAIN_PID[nginx]=$master
    MEASURE_PID[nginx]=$(nginx_worker nginx "$master")
    start causeway 0 "$CAUSEWAY_BIN" run --config "$TMP/causeway.yaml" --log-level warning
    MAIN_PID[causeway]=$LAST_PID
    MEASURE_PID[causeway]=$LAST_PID
    MAIN_PID[causeway-br]=$LAST_PID
    MEASURE_PID[causeway-br]=$LAST_PID
    wait_ready causeway "$LAST_PID" "${PORT[causeway]}"
}

# Every proxy's answer decodes to the document, in the coding asked for.
verify() {
    local p
    for p in "${PROXIES[@]}"; do
        curl -s --max-time 5 -D "$TMP/verify-$p.h" -o "$TMP/verify-$p.body" \
            -H "Accept-Encoding: ${ENCODING[$p]}" "http://127.0.0.1:${PORT[$p]}/" || die "$p: request failed"
        python3 - "$TMP/verify-$p.h" "$TMP/verify-$p.body" "$TMP/www/data.json" "${ENCODING[$p]}" "$p" <<'PY' >&2
import sys, zlib, brotli
headers = open(sys.argv[1]).read().lower()
body, doc, want, name = open(sys.argv[2], "rb").read(), open(sys.argv[3], "rb").read(), sys.argv[4], sys.argv[5]
if f"content-encoding: {want}" not in headers:
    sys.exit(f"[bench] {name}: no Content-Encoding: {want}")
decoded = zlib.decompress(body, 16 + zlib.MAX_WBITS) if want == "gzip" else brotli.decompress(body)
if decoded != doc:
    sys.exit(f"[bench] {name}: decoded body differs from the document")
print(f"[bench] {name}: {len(doc)} -> {len(body)} bytes ({want}), decodes to the document")
PY
    done
}

run_wrk() {  # PROXY SECONDS OUTFILE
    run_loadgen "$3" wrk -t1 -c "$CONNECTIONS" -d "${2}s" --latency -H "Accept-Encoding: ${ENCODING[$1]}" \
        "http://127.0.0.1:${PORT[$1]}/" || { cat "$3" >&2; die "wrk failed against $1"; }
}

library_table() {
    python3 - "$TMP/www/data.json" <<'PY'
import sys, time, zlib, brotli
doc = open(sys.argv[1], "rb").read()
def best(f):
    times = []
    for _ in range(20):
        t = time.perf_counter(); out = f(); times.append(time.perf_counter() - t)
    return out, min(times) * 1e6
def gzip(level):
    c = zlib.compressobj(level, zlib.DEFLATED, 31)
    return c.compress(doc) + c.flush()
print("| coding | size (bytes) | ratio | compress µs |")
print("|---|---:|---:|---:|")
for level in (1, 6, 9):
    out, us = best(lambda: gzip(level))
    print(f"| gzip {level} | {len(out)} | {len(doc) / len(out):.1f} | {us:.0f} |")
for quality in (1, 4, 6, 9, 11):
    out, us = best(lambda: brotli.compress(doc, quality=quality))
    print(f"| br {quality} | {len(out)} | {len(doc) / len(out):.1f} | {us:.0f} |")
PY
}

main() {
    parse_args "$@"
    install_missing nginx wrk taskset curl python3
    python3 -c "import brotli" 2>/dev/null || die "python3 brotli missing: pip install -r scripts/requirements.txt"
    check_cpus wrk
    build_causeway
    check_ports_free "$UPSTREAM_PORT" "${PORT[nginx]}" "${PORT[causeway]}" "$CAUSEWAY_ADMIN_PORT"
    CLK_TCK=$(getconf CLK_TCK)
    setup_tmp
    mkdir -p "$TMP/www"
    write_document
    write_confs
    start_all
    verify
    local p r
    for p in "${PROXIES[@]}"; do log "warming up $p (2 s)"; run_wrk "$p" 2 "$TMP/warmup-$p.txt"; done
    printf 'proxy\tround\tcpu_ticks\trequests\trps\tp99_ms\terrors\n' >"$TMP/results.tsv"
    for ((r = 1; r <= ROUNDS; r++)); do
        for p in "${PROXIES[@]}"; do measure "$p" "$r"; done
    done
    local stamp md header
    stamp=$(date +%Y-%m-%d-%H%M%S)
    mkdir -p "$BENCH_DIR/results"
    md="$BENCH_DIR/results/compression-$stamp.md"
    header="# Compression benchmark (100 KB JSON, gzip level $LEVEL; br quality $QUALITY), $stamp\\n"
    header+="\\n- duration ${DURATION}s, rounds $ROUNDS, connections $CONNECTIONS, wrk -t1; proxy on CPU 0, wrk + upstream on CPU 1"
    header+="\\n- nginx $( (nginx -v 2>&1 || true) | sed 's/.*nginx\///'), causeway $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)\\n"
    echo
    python3 "$BENCH_DIR/wrk_report.py" report "$TMP/results.tsv" "$CLK_TCK" "$md" "$header"
    echo
    { echo; echo "### The codings themselves (Python zlib/brotli, same document)"; echo; library_table; } | tee -a "$md"
    log "markdown written to ${md#"$REPO_ROOT"/}"
}

main "$@"
