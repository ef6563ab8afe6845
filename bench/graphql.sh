#!/usr/bin/env bash
# GraphQL benchmark: one query for 50 users with their orders (1 + 50 REST calls naively)
# through Causeway's GraphQL route, against plain REST proxying on the same worker.
#
# Method
#   * One upstream (nginx, 1 worker) on 127.0.0.1:18490 serving static JSON: /users (50
#     users) and /orders (150 orders, 3 per user), whatever the query string. Its access log
#     counts the calls it receives.
#   * Causeway (one worker, CPU 0; admin 18494) on 18493 with two routes:
#       graphql  POST /graphql  {users(limit: 50) {id name orders {id item total}}}
#                (User.orders has a batch mapping: /orders?userIds=...)
#       rest     GET /rest/users?limit=50, proxied to the upstream's /users
#   * wrk -t1 -c CONNECTIONS -d DURATION on CPU 1 with the upstream, `rounds` interleaved
#     rounds; the figure is Causeway's own CPU time per request (utime+stime from /proc), as
#     in bench/http1.sh, and upstream calls per request (access-log lines / wrk requests).
#   * The GraphQL answer is checked first: 50 users, 150 orders, 2 upstream calls.
#
# Usage: bench/graphql.sh [--duration 10] [--rounds 3] [--connections 20] [--causeway PATH] [--no-build]
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

UPSTREAM_PORT=18490
CAUSEWAY_PORT=18493
CAUSEWAY_ADMIN_PORT=18494
declare -A PORT=([graphql]=$CAUSEWAY_PORT [rest]=$CAUSEWAY_PORT)
PROXIES=(rest graphql)

DURATION=10
ROUNDS=3
CONNECTIONS=20
CAUSEWAY_BIN="$REPO_ROOT/.build/release/causeway"
BUILD=1
QUERY='{ users(limit: 50) { id name orders { id item total } } }'

declare -A MAIN_PID=()
declare -A MEASURE_PID=()

usage() {
    script_help
}

parse_args() {
    while (($#)); do
        if parse_common_arg "$@"; then shift "$SHIFT_BY"; continue; fi
        case "$1" in
            *)             usage >&2; die "unknown argument: $1" ;;
        esac
    done
    check_positive "$DURATION" "$ROUNDS" "$CONNECTIONS"
    absolute_causeway
}

write_files() {
    mkdir -p "$TMP/www"
    python3 - "$TMP/www" <<'PY'
import json, sys
users = [{"id": str(i), "name": f"User {i}", "email": f"user{i}@example.com"} for i in range(1, 51)]
orders = [{"id": str(1000 + i), "userId": str(i % 50 + 1), "item": f"Item {i}", "total": round(i * 1.25, 2)}
          for i in range(150)]
open(f"{sys.argv[1]}/users.json", "w").write(json.dumps(users))
open(f"{sys.argv[1]}/orders.json", "w").write(json.dumps(orders))
PY
    cat >"$TMP/bench.graphql" <<'GQL'
type Query {
  users(limit: Int = 20): [User!]! @rest(upstream: "api", path: "/users?limit={$args.limit}")
}
type User {
  id: ID!
  name: String!
  orders: [Order!]! @rest(upstream: "api", path: "/orders?userId={$parent.id}",
                          batch: {path: "/orders?userIds={$batch.id}", key: "userId"})
}
type Order { id: ID!, item: String!, total: Float! }
GQL
    {
        nginx_common upstream
        cat <<CONF
http {
    access_log $TMP/upstream-access.log;
    keepalive_requests 1000000;
$(nginx_temp_paths upstream)
    server {
        listen 127.0.0.1:$UPSTREAM_PORT;
        default_type application/json;
        location = / { return 200 "ok\n"; }
        location /users { alias $TMP/www/users.json; }
        location /orders { alias $TMP/www/orders.json; }
    }
}
CONF
    } >"$TMP/upstream.conf"
    cat >"$TMP/causeway.yaml" <<CONF
server: {workers: 1, admin: {address: 127.0.0.1:$CAUSEWAY_ADMIN_PORT}}
listeners: [{name: bench, address: 127.0.0.1:$CAUSEWAY_PORT}]
upstreams: {api: {endpoints: [{address: 127.0.0.1:$UPSTREAM_PORT}], pool: {max_connections: 256}}}
routes:
  - {name: graphql, match: {path: /graphql}, graphql: {schema: $TMP/bench.graphql, debug: true}}
  - {name: rest, match: {path_prefix: /rest/}, upstream: api, rewrite: {path_prefix: /}}
CONF
    python3 - "$TMP/graphql.lua" "$QUERY" <<'PY'
import json, sys
body = json.dumps({"query": sys.argv[2]})
open(sys.argv[1], "w").write('wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n'
                             % json.dumps(body))
PY
}

start_all() {
    run_nginx upstream 1
    wait_ready upstream "$LAST_PID" "$UPSTREAM_PORT"
    start causeway 0 "$CAUSEWAY_BIN" run --config "$TMP/causeway.yaml" --log-level warning
    local p
    for p in "${PROXIES[@]}"; do MAIN_PID[$p]=$LAST_PID; MEASURE_PID[$p]=$LAST_PID; done
    wait_url causeway "$LAST_PID" "http://127.0.0.1:$CAUSEWAY_PORT/rest/users?limit=50"
}

verify() {
    curl -s --max-time 5 -D "$TMP/verify.h" -o "$TMP/verify.json" -H 'content-type: application/json' \
        --data-binary @<(python3 -c 'import json,sys; print(json.dumps({"query": sys.argv[1]}))' "$QUERY") \
        "http://127.0.0.1:$CAUSEWAY_PORT/graphql" || die "GraphQL request failed"
    python3 - "$TMP/verify.json" "$TMP/verify.h" <<'PY' >&2
import json, sys
data = json.load(open(sys.argv[1]))["data"]["users"]
calls = [l.split(":", 1)[1].strip() for l in open(sys.argv[2]) if l.lower().startswith("x-causeway-upstream-calls")]
orders = sum(len(u["orders"]) for u in data)
if len(data) != 50 or orders != 150 or calls != ["2"]:
    sys.exit(f"[bench] unexpected answer: {len(data)} users, {orders} orders, upstream calls {calls}")
print(f"[bench] graphql: 50 users, 150 orders, 2 upstream calls per request")
PY
}

run_wrk() {  # PROXY SECONDS OUTFILE
    if [[ $1 == graphql ]]; then
        run_loadgen "$3" wrk -t1 -c "$CONNECTIONS" -d "${2}s" --latency -s "$TMP/graphql.lua" \
            "http://127.0.0.1:$CAUSEWAY_PORT/graphql" || { cat "$3" >&2; die "wrk failed ($1)"; }
    else
        run_loadgen "$3" wrk -t1 -c "$CONNECTIONS" -d "${2}s" --latency \
            "http://127.0.0.1:$CAUSEWAY_PORT/rest/users?limit=50" || { cat "$3" >&2; die "wrk failed ($1)"; }
    fi
}

upstream_calls() { wc -l <"$TMP/upstream-access.log"; }

main() {
    parse_args "$@"
    install_missing nginx wrk taskset curl python3
    check_cpus wrk
    build_causeway
    check_ports_free "$UPSTREAM_PORT" "$CAUSEWAY_PORT" "$CAUSEWAY_ADMIN_PORT"
    CLK_TCK=$(getconf CLK_TCK)
    setup_tmp
    write_files
    start_all
    verify
    local p r before after calls=()
    for p in "${PROXIES[@]}"; do log "warming up $p (2 s)"; run_wrk "$p" 2 "$TMP/warmup-$p.txt"; done
    printf 'proxy\tround\tcpu_ticks\trequests\trps\tp99_ms\terrors\n' >"$TMP/results.tsv"
    for ((r = 1; r <= ROUNDS; r++)); do
        for p in "${PROXIES[@]}"; do
            before=$(upstream_calls)
            measure "$p" "$r"
            after=$(upstream_calls)
            calls+=("$p $r $((after - before)) $(tail -n 1 "$TMP/results.tsv" | cut -f4)")
        done
    done
    local stamp md header
    stamp=$(date +%Y-%m-%d-%H%M%S)
    mkdir -p "$BENCH_DIR/results"
    md="$BENCH_DIR/results/graphql-$stamp.md"
    header="# GraphQL benchmark (50 users with their orders), $stamp\\n"
    header+="\\n- duration ${DURATION}s, rounds $ROUNDS, connections $CONNECTIONS, wrk -t1; Causeway on CPU 0, wrk + nginx upstream on CPU 1"
    header+="\\n- causeway $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)\\n"
    echo
    python3 "$BENCH_DIR/wrk_report.py" report "$TMP/results.tsv" "$CLK_TCK" "$md" "$header"
    {
        echo
        echo "### Upstream calls per request (upstream access log / wrk requests)"
        echo
        echo "| route | round | upstream calls | requests | calls per request |"
        echo "|---|---:|---:|---:|---:|"
        local line
        for line in "${calls[@]}"; do
            read -r p r c n <<<"$line"
            printf '| %s | %s | %s | %s | %s |\n' "$p" "$r" "$c" "$n" "$(python3 -c "print(f'{$c / max($n, 1):.3f}')")"
        done
    } | tee -a "$md"
    log "markdown written to ${md#"$REPO_ROOT"/}"
}

main "$@"
