#!/usr/bin/env bash
# HTTP/2 and TLS reverse-proxy benchmark: nginx vs Causeway.
#
# Method
#   * One upstream (nginx, 1 worker, fixed 20-byte body) on 127.0.0.1:18196,
#     spoken to over HTTP/1.1 keep-alive by every proxy.
#   * Each proxy has two listeners:
#       nginx    h2c 18191 (`listen ... http2`)   TLS 18192 (`ssl http2`)
#       Causeway h2c 18193 ([http1, h2c])         TLS 18194 ([h2, http1])
#                admin 18195
#     Both run with a single worker; the TLS listeners use the same
#     self-signed ECDSA P-256 certificate, made in the temporary directory.
#   * Three scenarios:
#       h2c        h2load -c CLIENTS -m STREAMS -D DURATION http://...
#                  (cleartext HTTP/2 by prior knowledge)
#       h2-tls     the same h2load over TLS (ALPN h2)
#       handshake  openssl s_time -new -time DURATION: full TLS handshakes
#                  one after the other (TLS 1.3, default suites), no request
#   * CPU placement: every proxy is pinned to CPU 0; h2load / s_time and the
#     upstream share CPU 1 (taskset). The figure to compare is the proxy's
#     OWN CPU time per request or per handshake:
#         (utime+stime of the proxy process after - before) / operations
#     read from /proc/PID/stat (fields 14+15, clock ticks, summed over all
#     threads by the kernel). For nginx that is the worker process, for
#     Causeway the main process. Operations are the requests h2load
#     completed ("done"), or the connections s_time reports.
#   * Each proxy is warmed up for 2 s per scenario, then measured in
#     `rounds` interleaved rounds (h2c nginx, h2c causeway, h2-tls nginx,
#     ..., then round 2). Medians are reported.
#   * Efficiency vs nginx = cost(nginx) / cost(proxy): > 1 means the proxy
#     needs less CPU per operation than nginx.
#
# Usage: bench/http2.sh [--duration 10] [--rounds 3] [--clients 10]
#                       [--streams 100] [--causeway PATH] [--no-build]
#                       [--only LIST] [--scenarios LIST]
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

UPSTREAM_PORT=18196
declare -A H2C_PORT=([nginx]=18191 [causeway]=18193)
declare -A TLS_PORT=([nginx]=18192 [causeway]=18194)
CAUSEWAY_ADMIN_PORT=18195
ALL_PROXIES=(nginx causeway)
SCENARIOS=(h2c h2-tls handshake)

DURATION=10
ROUNDS=3
CLIENTS=10
STREAMS=100
NGINX_KEEPALIVE=64
CAUSEWAY_BIN="$REPO_ROOT/.build/release/causeway"
BUILD=1
PROXIES=("${ALL_PROXIES[@]}")
ONLY=""

declare -A MAIN_PID=()    # proxy name -> process launched
declare -A MEASURE_PID=() # proxy name -> process whose CPU time is measured
declare -A TLS_INFO=()    # proxy name -> negotiated version, suite, group

usage() {
    script_help
    cat <<EOF

Options:
  --duration SECONDS     length of each measurement (default $DURATION)
  --rounds N             interleaved rounds per proxy and scenario (default $ROUNDS)
  --clients N            h2load connections, -c (default $CLIENTS)
  --streams N            h2load concurrent streams per connection, -m (default $STREAMS)
  --nginx-keepalive N    idle upstream connections nginx keeps (default $NGINX_KEEPALIVE)
  --causeway PATH        causeway binary (default .build/release/causeway)
  --no-build             never run 'swift build'; fail if the binary is missing
  --only LIST            comma list of proxies to run (default nginx,causeway)
  --scenarios LIST       comma list of scenarios (default h2c,h2-tls,handshake)
EOF
}

# ---------------------------------------------------------------- arguments

parse_args() {
    while (($#)); do
        if parse_common_arg "$@"; then shift "$SHIFT_BY"; continue; fi
        case "$1" in
            --clients)     CLIENTS="${2:?--clients needs a value}"; shift 2 ;;
            --streams)     STREAMS="${2:?--streams needs a value}"; shift 2 ;;
            --nginx-keepalive) NGINX_KEEPALIVE="${2:?--nginx-keepalive needs a value}"; shift 2 ;;
            --only)        ONLY="${2:?--only needs a value}"; shift 2 ;;
            --scenarios)
                IFS=, read -r -a SCENARIOS <<< "${2:?--scenarios needs a value}"
                for s in "${SCENARIOS[@]}"; do
                    [[ "$s" =~ ^(h2c|h2-tls|handshake)$ ]] || die "--scenarios: unknown scenario '$s'"
                done
                shift 2 ;;
            *)             usage >&2; die "unknown argument: $1" ;;
        esac
    done
    check_positive "$DURATION" "$ROUNDS" "$CLIENTS" "$STREAMS" "$NGINX_KEEPALIVE"
    [[ -n "$ONLY" ]] && parse_only "$ONLY"
    absolute_causeway
}

# ---------------------------------------------------------------- setup

install_tools() {
    install_missing nginx h2load openssl timeout taskset curl python3
}

check_ports() {
    local ports=("$UPSTREAM_PORT") p
    for p in "${PROXIES[@]}"; do ports+=("${H2C_PORT[$p]}" "${TLS_PORT[$p]}"); done
    selected causeway && ports+=("$CAUSEWAY_ADMIN_PORT")
    check_ports_free "${ports[@]}"
}

make_certificate() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$TMP/key.pem" -out "$TMP/cert.pem" -days 2 -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost,IP:127.0.0.1 >"$TMP/openssl-req.log" 2>&1 \
        || { cat "$TMP/openssl-req.log" >&2; die "cannot make a self-signed certificate"; }
}

# ---------------------------------------------------------------- configs

write_nginx_proxy_conf() {
    local location
    location=$(cat <<EOF
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
EOF
)
    {
        nginx_common nginx
        cat <<EOF
http {
    access_log off;
    keepalive_requests 1000000;  # also caps requests per HTTP/2 connection
$(nginx_temp_paths nginx)
    upstream origin {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive $NGINX_KEEPALIVE;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:${H2C_PORT[nginx]} http2;
$location
    }
    server {
        listen 127.0.0.1:${TLS_PORT[nginx]} ssl http2;
        ssl_certificate     $TMP/cert.pem;
        ssl_certificate_key $TMP/key.pem;
        ssl_protocols       TLSv1.2 TLSv1.3;
$location
    }
}
EOF
    } >"$TMP/nginx.conf"
}

write_causeway_conf() {
    cat >"$TMP/causeway.yaml" <<EOF
server: {workers: 1, admin: {address: 127.0.0.1:$CAUSEWAY_ADMIN_PORT}}
listeners:
  - {name: h2c, address: 127.0.0.1:${H2C_PORT[causeway]}, protocols: [http1, h2c]}
  - {name: tls, address: 127.0.0.1:${TLS_PORT[causeway]}, protocols: [h2, http1], tls: {certificates: [{cert: $TMP/cert.pem, key: $TMP/key.pem}]}}
upstreams: {origin: {endpoints: [{address: 127.0.0.1:$UPSTREAM_PORT}], pool: {max_connections: 256}}}
routes: [{name: all, match: {path_prefix: /}, upstream: origin}]
EOF
}

# ---------------------------------------------------------------- launching

# wait_h2 NAME PID: both listeners answer 2xx over HTTP/2.
wait_h2() {
    local name=$1 pid=$2
    wait_url "$name" "$pid" "http://127.0.0.1:${H2C_PORT[$name]}/" --http2-prior-knowledge
    wait_url "$name" "$pid" "https://127.0.0.1:${TLS_PORT[$name]}/" --http2 -k
}

start_nginx() {
    write_nginx_proxy_conf
    run_nginx nginx 0
    local master=$LAST_PID
    wait_h2 nginx "$master"
    MAIN_PID[nginx]=$master
    MEASURE_PID[nginx]=$(nginx_worker nginx "$master")
}

start_causeway() {
    write_causeway_conf
    start causeway 0 "$CAUSEWAY_BIN" run --config "$TMP/causeway.yaml" --log-level warning
    MAIN_PID[causeway]=$LAST_PID
    MEASURE_PID[causeway]=$LAST_PID
    wait_h2 causeway "$LAST_PID"
}

# tls_info PORT: "TLSv1.3 TLS_AES_256_GCM_SHA384 X25519" as s_client sees it.
tls_info() {
    timeout 10 openssl s_client -brief -connect "127.0.0.1:$1" </dev/null 2>&1 | awk -F': ' '
        /^Protocol version/ {v = $2} /^Ciphersuite/ {c = $2}
        /^(Server|Negotiated) Temp Key/ {split($2, k, ","); g = k[1]}
        END {print (v ? v : "?") " " (c ? c : "?") " " (g ? g : "?")}' || true
}

start_proxies() {
    local p
    for p in "${PROXIES[@]}"; do
        "start_$p"
        TLS_INFO[$p]=$(tls_info "${TLS_PORT[$p]}")
        log "$p ready on h2c :${H2C_PORT[$p]}, TLS :${TLS_PORT[$p]} (${TLS_INFO[$p]})" \
            "(pid ${MAIN_PID[$p]}, measuring pid ${MEASURE_PID[$p]}, CPU 0)"
    done
}

# ---------------------------------------------------------------- measuring

# load SCENARIO PROXY SECONDS OUTFILE: run the scenario's load generator on
# CPU 1 (with a generous timeout in case the proxy stalls).
load() {
    local scenario=$1 p=$2 secs=$3 out=$4 url cmd
    case "$scenario" in
        h2c)       url="http://127.0.0.1:${H2C_PORT[$p]}/" ;;
        h2-tls)    url="https://127.0.0.1:${TLS_PORT[$p]}/" ;;
        handshake) url="" ;;
    esac
    if [[ -n "$url" ]]; then
        cmd=(h2load -t 1 -c "$CLIENTS" -m "$STREAMS" -D "$secs" "$url")
    else
        cmd=(openssl s_time -connect "127.0.0.1:${TLS_PORT[$p]}" -new -time "$secs")
    fi
    run_loadgen "$out" timeout -k 5 $((secs + 60)) "${cmd[@]}" \
        || { tail -n 30 "$out" >&2; die "${cmd[0]} failed against $p ($scenario)"; }
}

# parse SCENARIO OUTFILE WALL_SECONDS:
# "operations<TAB>rate<TAB>errors<TAB>unfinished requests".
parse() {
    local scenario=$1 out=$2 wall=$3 proto
    case "$scenario" in
        h2c)    proto=h2c ;;
        h2-tls) proto=h2 ;;
        *)      proto="" ;;
    esac
    python3 "$TMP/bench.py" parse "$scenario" "$out" "$wall" "$proto" \
        || { tail -n 30 "$out" >&2; die "cannot parse the $scenario output"; }
}

warm_up() {
    local s p
    for s in "${SCENARIOS[@]}"; do
        for p in "${PROXIES[@]}"; do
            log "warming up $p, $s (2 s)"
            load "$s" "$p" 2 "$TMP/warmup-$s-$p.txt"
            parse "$s" "$TMP/warmup-$s-$p.txt" 2 >/dev/null
        done
    done
}

now() { date +%s.%N; }

# measure SCENARIO PROXY ROUND: appends one TSV row to $TMP/results.tsv
measure() {
    local s=$1 p=$2 round=$3 pid=${MEASURE_PID[$2]} out="$TMP/load-$1-$2-$3.txt"
    local before after t0 t1 row line
    alive "${MAIN_PID[$p]}" || proxy_failed "$p" "process died before round $round"
    before=$(cpu_ticks "$pid")
    t0=$(now)
    load "$s" "$p" "$DURATION" "$out"
    t1=$(now)
    after=$(cpu_ticks "$pid")
    row=$(parse "$s" "$out" "$(python3 -c "print($t1 - $t0)")")
    line=$(printf '%s\t%s\t%s\t%s\t%s' "$s" "$p" "$round" "$((after - before))" "$row")
    echo "$line" >>"$TMP/results.tsv"
    python3 "$TMP/bench.py" progress "$CLK_TCK" <<<"$line" >&2
}

run_rounds() {
    local r s p
    printf 'scenario\tproxy\tround\tcpu_ticks\toperations\trate\terrors\tunfinished\n' >"$TMP/results.tsv"
    for ((r = 1; r <= ROUNDS; r++)); do
        for s in "${SCENARIOS[@]}"; do
            for p in "${PROXIES[@]}"; do
                measure "$s" "$p" "$r"
            done
        done
    done
}

# ---------------------------------------------------------------- python helpers

write_helpers() {
    cat >"$TMP/bench.py" <<'PY'
import re, statistics, sys

TITLES = {
    "h2c": "h2c (cleartext HTTP/2, prior knowledge)",
    "h2-tls": "h2 over TLS",
    "handshake": "TLS handshakes (openssl s_time -new)",
}
UNIT = {"h2c": "request", "h2-tls": "request", "handshake": "handshake"}
RATE = {"h2c": "req/s", "h2-tls": "req/s", "handshake": "handshakes/s"}

def parse(scenario, path, wall, proto):
    text = open(path).read()
    if scenario == "handshake":
        m = re.search(r"^(\d+) connections in [\d.]+s", text, re.M)
        if not m:
            sys.exit("unparseable s_time output")
        n = int(m.group(1))
        errors = len(re.findall(r"^ERROR", text, re.M))
        print(f"{n}\t{n / float(wall):.1f}\t{errors}\t0")
        return
    app = re.search(r"^Application protocol: (\S+)", text, re.M)
    if not app or app.group(1) != proto:
        sys.exit(f"h2load did not negotiate {proto} "
                 f"(got {app.group(1) if app else 'nothing'})")
    fin = re.search(r"^finished in [\d.]+\w*, ([\d.]+) req/s", text, re.M)
    req = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                    r"(\d+) failed, (\d+) errored, (\d+) timeout", text, re.M)
    st = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
    if not (fin and req and st):
        sys.exit("unparseable h2load output")
    done = int(req.group(3))
    unfinished = int(req.group(2)) - done  # in flight when h2load stopped
    errors = sum(int(req.group(i)) for i in (5, 6, 7)) + sum(int(st.group(i)) for i in (2, 3, 4))
    print(f"{done}\t{fin.group(1)}\t{errors}\t{unfinished}")

def cost_us(ticks, ops, clk_tck):
    return ticks / clk_tck / ops * 1e6 if ops else float("nan")

def progress(clk_tck):
    s, p, rnd, ticks, ops, rate, err, unfinished = sys.stdin.read().split("\t")
    c = cost_us(int(ticks), int(ops), clk_tck)
    extra = f", {err.strip()} errors" if int(err) else ""
    unit = "hs" if s == "handshake" else "req"
    print(f"[bench] round {rnd} {s:<9} {p:<9} {float(rate):>10.0f} {unit}/s"
          f"  cpu {c:8.2f} us/{unit}{extra}")

def fmt(x, spec):
    return "n/a" if x is None or x != x else format(x, spec)

def report(tsv, clk_tck, md_path, header, setups):
    rows = [l.rstrip("\n").split("\t") for l in open(tsv)][1:]
    scenarios, runs = [], {}
    for s, p, rnd, ticks, ops, rate, err, unfinished in rows:
        if s not in runs:
            scenarios.append(s); runs[s] = {}
        runs[s].setdefault(p, []).append(
            dict(round=int(rnd), ticks=int(ticks), ops=int(ops), rate=float(rate), err=int(err),
                 unfinished=int(unfinished), cost=cost_us(int(ticks), int(ops), clk_tck)))
    setups = dict(x.split("=", 1) for x in setups.split("|"))

    md = [header.replace("\\n", "\n")]
    for s in scenarios:
        med = {p: dict(rate=statistics.median(r["rate"] for r in rs),
                       cost=statistics.median(r["cost"] for r in rs),
                       err=sum(r["err"] for r in rs)) for p, rs in runs[s].items()}
        ref = med.get("nginx", {}).get("cost")
        cols = ["proxy", f"{RATE[s]} (median)", f"CPU µs/{UNIT[s]} (median)", "efficiency vs nginx"]
        table = [[p, fmt(m["rate"], ".0f"), fmt(m["cost"], ".2f"),
                  fmt(ref / m["cost"] if ref and m["cost"] else None, ".2f")]
                 for p, m in med.items()]
        widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(cols)]
        line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w)
                                       for i, (c, w) in enumerate(zip(cells, widths)))
        print(f"{TITLES[s]}: {setups[s]}")
        print(line(cols)); print(line(["-" * w for w in widths]))
        for r in table:
            print(line(r))
        what = "h2load errors (failed/errored/timeout or non-2xx)" if s != "handshake" \
            else "s_time errors"
        warnings = [f"{s}, {p}: {m['err']} {what} over all rounds" for p, m in med.items() if m["err"]]
        # Requests in flight when h2load stopped cost proxy CPU but are not
        # counted; say so when that could move the figure by over 2 %.
        warnings += [f"{s}, {p}, round {r['round']}: {r['unfinished']} requests unfinished at the end, "
                     f"{100 * r['unfinished'] / r['ops']:.1f} % of those completed; CPU µs/request "
                     f"may be overstated by up to that much (use a longer --duration)"
                     for p, rs in runs[s].items() for r in rs
                     if r["ops"] and r["unfinished"] > 0.02 * r["ops"]]
        for w in warnings:
            print("WARNING: " + w)
        print()
        md.append(f"## {TITLES[s]}\n\n{setups[s]}\n")
        md.append("| " + " | ".join(cols) + " |")
        md.append("|" + "|".join(["---"] + ["---:"] * (len(cols) - 1)) + "|")
        md += ["| " + " | ".join(r) + " |" for r in table]
        md += [f"\n**Warning:** {w}" for w in warnings]
        md.append("")

    md.append("Efficiency = cost(nginx) / cost(proxy); > 1 means less CPU per request "
              "(or handshake) than nginx. Unfinished = requests h2load had started but not "
              "completed when it stopped (not counted).\n")
    md.append("## Per-round data\n\n| scenario | proxy | round | operations | rate/s | CPU ticks | "
              "CPU µs/op | errors | unfinished |\n|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for rnd in sorted({r["round"] for ps in runs.values() for rs in ps.values() for r in rs}):
        for s in scenarios:
            for p, rs in runs[s].items():
                for r in rs:
                    if r["round"] == rnd:
                        md.append(f"| {s} | {p} | {rnd} | {r['ops']} | {r['rate']:.0f} | "
                                  f"{r['ticks']} | {fmt(r['cost'], '.2f')} | {r['err']} | {r['unfinished']} |")
    with open(md_path, "w") as f:
        f.write("\n".join(md) + "\n")

cmd = sys.argv[1]
if cmd == "parse":
    parse(*sys.argv[2:6])
elif cmd == "progress":
    progress(int(sys.argv[2]))
elif cmd == "report":
    report(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6])
PY
}

# ---------------------------------------------------------------- report

versions() {
    local v
    v="nginx $( (nginx -v 2>&1 || true) | sed 's/.*nginx\///')"
    v+=", $( (h2load --version 2>&1 || true) | awk 'NR == 1')"
    v+=", $( (openssl version 2>&1 || true) | awk 'NR == 1 {print $1, $2}')"
    selected causeway && v+=", causeway $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown) ($CAUSEWAY_BIN)"
    echo "$v"
}

report() {
    local stamp md cpu header setups p tls=""
    stamp=$(date +%Y-%m-%d-%H%M%S)
    mkdir -p "$BENCH_DIR/results"
    md="$BENCH_DIR/results/http2-$stamp.md"
    cpu=$(cpu_model)
    for p in "${PROXIES[@]}"; do tls+="${tls:+; }$p ${TLS_INFO[$p]}"; done
    header="# HTTP/2 and TLS proxy benchmark, $stamp\\n"
    header+="\\n- duration ${DURATION}s, rounds $ROUNDS"
    header+="\\n- proxy on CPU 0; load generator + upstream nginx on CPU 1 ($(nproc --all) CPUs: ${cpu:-unknown})"
    header+="\\n- upstream: nginx over HTTP/1.1 keep-alive (nginx proxy: \`keepalive $NGINX_KEEPALIVE\`); certificate: self-signed ECDSA P-256"
    header+="\\n- TLS as negotiated by s_client: $tls"
    header+="\\n- $(versions)"
    header+="\\n- kernel $(uname -r), CLK_TCK $CLK_TCK\\n"
    setups="h2c=\`h2load -t1 -c $CLIENTS -m $STREAMS -D $DURATION http://...\`"
    setups+="|h2-tls=\`h2load -t1 -c $CLIENTS -m $STREAMS -D $DURATION https://...\` (ALPN h2)"
    setups+="|handshake=\`openssl s_time -new -time $DURATION\` (full handshakes, no request)"
    echo
    python3 "$TMP/bench.py" report "$TMP/results.tsv" "$CLK_TCK" "$md" "$header" "$setups"
    log "markdown written to ${md#"$REPO_ROOT"/}"
}

# ---------------------------------------------------------------- main

main() {
    parse_args "$@"
    install_tools
    check_cpus "h2load/s_time"
    build_causeway
    check_ports

    CLK_TCK=$(getconf CLK_TCK)
    setup_tmp

    write_helpers
    make_certificate
    start_upstream
    start_proxies
    warm_up
    run_rounds
    report
}

main "$@"
