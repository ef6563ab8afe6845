# Shared helpers for the bench/*.sh scripts. Source it; do not run it.
#
# The including script defines, before calling these helpers:
#   BENCH_DIR REPO_ROOT     directories
#   UPSTREAM_PORT           port of the upstream nginx
#   ALL_PROXIES PROXIES     known / selected proxy names (arrays)
#   CAUSEWAY_BIN BUILD      causeway binary, 1 = may run 'swift build'
# and these helpers maintain:
#   TMP                     temporary directory (configs, logs, outputs)
#   STARTED_PIDS            every long-running process started (array)
#   LOADGEN_PID             the load generator run in progress, if any
#   LAST_PID                PID of the last process started with `start`
# shellcheck shell=bash

export PATH="$PATH:/usr/sbin:/sbin"

TMP=""
STARTED_PIDS=()
LOADGEN_PID=""
LAST_PID=""

log() { printf '[bench] %s\n' "$*" >&2; }
# parse_common_arg ARGS...: the options every benchmark takes (--duration, --rounds,
# --connections, --causeway, --no-build, --help). Sets SHIFT_BY and returns 0 when it took
# one; returns 1 to leave the argument to the script.
parse_common_arg() {
    case "$1" in
        --duration)    DURATION="${2:?--duration needs a value}"; SHIFT_BY=2 ;;
        --rounds)      ROUNDS="${2:?--rounds needs a value}"; SHIFT_BY=2 ;;
        --connections) [[ -n "${CONNECTIONS+set}" ]] || return 1  # only where the script has the option
                       CONNECTIONS="${2:?--connections needs a value}"; SHIFT_BY=2 ;;
        --causeway)    CAUSEWAY_BIN="${2:?--causeway needs a value}"; SHIFT_BY=2 ;;
        --no-build)    BUILD=0; SHIFT_BY=1 ;;
        -h|--help)     usage; exit 0 ;;
        *)             return 1 ;;
    esac
}

# A relative --causeway is relative to the caller's directory.
absolute_causeway() { [[ "$CAUSEWAY_BIN" == /* ]] || CAUSEWAY_BIN="$PWD/$CAUSEWAY_BIN"; }

# The running script's header comment (line 2 up to `set -euo`), as its --help.
script_help() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

selected() { [[ " ${PROXIES[*]} " == *" $1 "* ]]; }

# check_positive VALUE...: every value is a positive integer.
check_positive() {
    local n
    for n in "$@"; do
        [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "expected a positive integer, got '$n'"
    done
}

# parse_only LIST: set PROXIES from a comma list, validated against
# ALL_PROXIES and kept in ALL_PROXIES order whatever order LIST used.
parse_only() {
    IFS=',' read -ra PROXIES <<<"$1"
    ((${#PROXIES[@]})) || die "--only: empty list"
    local p ordered=()
    for p in "${PROXIES[@]}"; do
        [[ " ${ALL_PROXIES[*]} " == *" $p "* ]] \
            || die "--only: unknown proxy '$p' (known: ${ALL_PROXIES[*]})"
    done
    for p in "${ALL_PROXIES[@]}"; do
        [[ " ${PROXIES[*]} " == *" $p "* ]] && ordered+=("$p")
    done
    PROXIES=("${ordered[@]}")
}

# ---------------------------------------------------------------- setup

as_root() { if ((EUID == 0)); then "$@"; else sudo "$@"; fi; }

# install_missing COMMAND...: apt-get install the packages providing the
# commands that are not on PATH.
install_missing() {
    local missing=() tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    ((${#missing[@]})) || return 0
    local pkgs=() t
    for t in "${missing[@]}"; do
        case "$t" in
            taskset) pkgs+=(util-linux) ;;
            h2load)  pkgs+=(nghttp2-client) ;;
            timeout) pkgs+=(coreutils) ;;
            *)       pkgs+=("$t") ;;
        esac
    done
    log "installing: ${pkgs[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
}

check_cpus() {  # $1 = what shares CPU 1 with the upstream (for messages)
    local n load=${1:-the load generator}
    n=$(nproc --all)
    ((n >= 2)) || die "need at least 2 CPUs (proxy on CPU 0, $load+upstream on CPU 1); have $n"
    ((n == 2)) || log "note: $n CPUs present; still using only CPU 0 (proxy) and CPU 1 ($load+upstream)"
}

build_causeway() {
    selected causeway || return 0
    [[ -x "$CAUSEWAY_BIN" ]] && return 0
    ((BUILD)) || die "causeway binary not found at $CAUSEWAY_BIN (and --no-build given)"
    [[ "$CAUSEWAY_BIN" == "$REPO_ROOT/.build/release/causeway" ]] \
        || die "causeway binary not found at $CAUSEWAY_BIN"
    log "building causeway (scripts/build-release.sh)"
    "$REPO_ROOT/scripts/build-release.sh"
    [[ -x "$CAUSEWAY_BIN" ]] || die "build finished but $CAUSEWAY_BIN is missing"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

check_ports_free() {  # PORT...
    local p
    for p in "$@"; do
        ! port_in_use "$p" || die "port $p is already in use"
    done
}

# setup_tmp: create $TMP and install the cleanup traps.
setup_tmp() {
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/causeway-bench.XXXXXX")
    chmod 755 "$TMP"  # nginx workers may run as 'nobody' when started as root
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# ---------------------------------------------------------------- processes

# All descendants of a PID (children first level, then theirs, ...).
descendants() {
    local child
    for child in $(pgrep -P "$1" || true); do
        echo "$child"
        descendants "$child"
    done
}

# True if PID exists and is not a zombie (an exited child we have not
# reaped yet still answers kill -0).
alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ "${stat:0:1}" != Z ]]
}

any_alive() {
    local v
    for v in "$@"; do alive "$v" && return 0; done
    return 1
}

kill_tree() {
    local pid=$1 victims v i
    alive "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
    victims=("$pid" $(descendants "$pid"))
    kill -TERM "${victims[@]}" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        any_alive "${victims[@]}" || break
        sleep 0.1
    done
    for v in "${victims[@]}"; do
        alive "$v" && kill -KILL "$v" 2>/dev/null || true
    done
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    [[ -n "$LOADGEN_PID" ]] && kill_tree "$LOADGEN_PID"
    for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
        kill_tree "${STARTED_PIDS[i]}"
    done
    [[ -n "$TMP" && -d "$TMP" ]] && rm -rf "$TMP"
    exit "$rc"
}

# start NAME CPU CMD... : run CMD in the background pinned to CPU, output to
# $TMP/NAME.log. Sets LAST_PID (taskset execs, so it is the command's PID).
start() {
    local name=$1 cpu=$2; shift 2
    taskset -c "$cpu" "$@" >"$TMP/$name.log" 2>&1 &
    LAST_PID=$!
    STARTED_PIDS+=("$LAST_PID")
}

# run_loadgen OUTFILE CMD...: run CMD pinned to CPU 1, output to OUTFILE;
# returns its exit status. Backgrounded so the EXIT trap can kill it if we
# are interrupted.
run_loadgen() {
    local out=$1 rc=0; shift
    taskset -c 1 "$@" >"$out" 2>&1 &
    LOADGEN_PID=$!
    wait "$LOADGEN_PID" || rc=$?
    LOADGEN_PID=""
    return "$rc"
}

proxy_failed() {
    local name=$1 why=$2 f
    log "$name failed: $why"
    for f in "$TMP/$name".log "$TMP/$name"-error.log; do
        [[ -s "$f" ]] || continue
        printf -- '----- %s -----\n' "${f##*/}" >&2
        tail -n 50 "$f" >&2
    done
    exit 1
}

# wait_url NAME PID URL [CURL_OPTION...]: poll until URL answers 2xx.
wait_url() {
    local name=$1 pid=$2 url=$3 i; shift 3
    for ((i = 0; i < 200; i++)); do
        alive "$pid" || proxy_failed "$name" "process exited"
        curl -sf -o /dev/null --max-time 1 "$@" "$url" && return 0
        sleep 0.1
    done
    proxy_failed "$name" "no 2xx answer from $url within 20 s"
}

# wait_ready NAME PID PORT: poll until http://127.0.0.1:PORT/ answers 2xx.
wait_ready() { wait_url "$1" "$2" "http://127.0.0.1:$3/"; }

# nginx_worker NAME MASTER: print the PID of the (single) worker of an nginx
# master process.
nginx_worker() {
    local name=$1 master=$2 worker i
    for ((i = 0; i < 50; i++)); do
        worker=$(pgrep -P "$master" | awk 'NR == 1' || true)
        [[ -n "$worker" ]] && break
        sleep 0.1
    done
    [[ -n "$worker" ]] || proxy_failed "$name" "no worker process under master $master"
    echo "$worker"
}

# ---------------------------------------------------------------- nginx configs

nginx_common() {  # $1 = instance name
    cat <<EOF
worker_processes 1;
daemon off;
pid $TMP/$1.pid;
error_log $TMP/$1-error.log warn;
events { worker_connections 4096; }
EOF
}

nginx_temp_paths() {  # $1 = instance name
    local t="$TMP/$1-temp"
    cat <<EOF
    client_body_temp_path $t/client_body;
    proxy_temp_path       $t/proxy;
    fastcgi_temp_path     $t/fastcgi;
    uwsgi_temp_path       $t/uwsgi;
    scgi_temp_path        $t/scgi;
EOF
}

write_upstream_conf() {
    {
        nginx_common upstream
        cat <<EOF
http {
    access_log off;
    keepalive_requests 1000000;
$(nginx_temp_paths upstream)
    server {
        listen 127.0.0.1:$UPSTREAM_PORT;
        location / {
            default_type text/plain;
            return 200 "hello from upstream\n";
        }
    }
}
EOF
    } >"$TMP/upstream.conf"
}

# nginx -e makes even pre-config errors go to our log, not /var/log/nginx.
run_nginx() {  # $1 = instance name, $2 = cpu
    mkdir -p "$TMP/$1-temp"  # nginx creates the leaf temp dirs, not parents
    start "$1" "$2" nginx -p "$TMP/" -e "$TMP/$1-error.log" -c "$TMP/$1.conf"
}

start_upstream() {
    write_upstream_conf
    run_nginx upstream 1
    local pid=$LAST_PID
    wait_ready upstream "$pid" "$UPSTREAM_PORT"
    log "upstream nginx ready on :$UPSTREAM_PORT (pid $pid, CPU 1)"
}

# ---------------------------------------------------------------- measuring

# utime + stime of a process in clock ticks. The comm field (2) may contain
# spaces, so split after the last ')': field 3 is then index 0, so fields
# 14 and 15 are indexes 11 and 12.
cpu_ticks() {
    local stat rest f
    stat=$(<"/proc/$1/stat") || die "process $1 is gone"
    rest=${stat##*) }
    read -ra f <<<"$rest"
    echo $((f[11] + f[12]))
}

cpu_model() { awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo || true; }

# measure PROXY ROUND: one wrk run (the script's `run_wrk PROXY SECONDS OUTFILE`) with the
# proxy's CPU ticks around it; appends a TSV row to $TMP/results.tsv and prints progress.
measure() {
    local p=$1 round=$2 pid=${MEASURE_PID[$1]} out="$TMP/wrk-$1-$2.txt" before after row line
    alive "${MAIN_PID[$p]}" || proxy_failed "$p" "process died before round $round"
    before=$(cpu_ticks "$pid")
    run_wrk "$p" "$DURATION" "$out"
    after=$(cpu_ticks "$pid")
    row=$(python3 "$BENCH_DIR/wrk_report.py" parse "$out") || { cat "$out" >&2; die "cannot parse wrk output"; }
    line=$(printf '%s\t%s\t%s\t%s' "$p" "$round" "$((after - before))" "$row")
    echo "$line" >>"$TMP/results.tsv"
    python3 "$BENCH_DIR/wrk_report.py" progress "$CLK_TCK" <<<"$line" >&2
}
