#!/usr/bin/env python3
"""Edge policies: what JWT verification and a local rate limit add to a proxied request.

Method
  * Upstream: nginx answering a 2-byte body itself, one worker on CPU 1.
  * Causeway: `workers: 1`, pinned to CPU 0, HTTP/1.1 keep-alive, routes on the same upstream:
    /plain (no policy), /es256 and /rs256 (a JWT provider each, keys from a JWKS file),
    /bucket (a local token bucket whose limit is never reached).
  * Load: wrk -t1 -c32 on CPU 1. Warm JWT: one token for every request (the per-loop cache
    answers). Cold JWT: 20,000 distinct tokens in turn (more than the 10,000 a loop caches, so
    every request verifies a signature).
  * Figure: Causeway's CPU time (utime+stime) per request; the policy's cost is its route's
    figure minus /plain's. Medians over ROUNDS interleaved rounds.
  * Redis: a token bucket with scope: redis (limit never reached) on a redis-server pinned to
    CPU 1; decisions per second are that route's requests per second, and the p99 it adds is
    its p99 latency (wrk --latency) minus /plain's.
  * Targets (issue 14): warm JWT adds <= 2 us; a cold ES256 verification <= 60 us; a local rate
    limit decision adds <= 0.5 us; a Redis decision adds <= 1 ms p99 on loopback.

Usage: bench/policies.py [--causeway .build/release/causeway] [--duration 8] [--rounds 3]
Needs nginx, wrk, joserfc (scripts/setup.sh installs them).
"""
import argparse, json, os, re, statistics, subprocess, sys, tempfile, time, warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import start_causeway, stop, ticks  # noqa: E402

UPSTREAM, CAUSEWAY, ADMIN, REDIS = 18790, 18791, 18792, 18793

LUA = """
tokens = {}
for line in io.lines(os.getenv("TOKENS")) do tokens[#tokens + 1] = line end
i = 0
request = function()
  i = i % #tokens + 1
  return wrk.format("GET", os.getenv("ROUTE"), {["Authorization"] = "Bearer " .. tokens[i]})
end
"""


def wrk(args, route, tokens=None, script=None):
    env = {**os.environ, "ROUTE": route, "TOKENS": tokens or ""}
    command = ["taskset", "-c", "1", "wrk", "-t1", "-c32", f"-d{args.duration}s", "--latency"]
    if script:
        command += ["-s", script]
    out = subprocess.run(command + [f"http://127.0.0.1:{CAUSEWAY}{route}"], capture_output=True, text=True, env=env).stdout
    total = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    LAST_P99[0] = float(p99.group(1)) * scale[p99.group(2)] if p99 else 0.0
    return int(total.group(1)) if total else 0, int(bad.group(1)) if bad else 0


LAST_P99 = [0.0]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--causeway", default=".build/release/causeway")
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from joserfc import jwt
    from joserfc.jwk import ECKey, RSAKey
    tmp = tempfile.mkdtemp(prefix="causeway-policybench-")
    es, rs = ECKey.generate_key("P-256", parameters={"kid": "es"}), RSAKey.generate_key(2048, parameters={"kid": "rs"})
    with open(f"{tmp}/jwks.json", "w") as f:
        json.dump({"keys": [es.as_dict(private=False), rs.as_dict(private=False)]}, f)
    now = int(time.time())

    def mint(key, alg, kid, n):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [jwt.encode({"alg": alg, "kid": kid}, {"sub": f"user-{i}", "aud": "api", "exp": now + 3600}, key, algorithms=[alg])
                    for i in range(n)]

    files = {}
    for name, key, alg, kid in [("es256", es, "ES256", "es"), ("rs256", rs, "RS256", "rs")]:
        for kind, n in [("warm", 1), ("cold", 20_000)]:
            files[(name, kind)] = f"{tmp}/{name}-{kind}.txt"
            with open(files[(name, kind)], "w") as f:
                f.write("\n".join(mint(key, alg, kid, n)) + "\n")
    with open(f"{tmp}/tokens.lua", "w") as f:
        f.write(LUA)
    processes = []
    try:
        with open(f"{tmp}/nginx.conf", "w") as f:
            f.write(f"""worker_processes 1; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/error.log;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 10000000;
  server {{ listen 127.0.0.1:{UPSTREAM}; location / {{ return 200 "ok"; }} }} }}
""")
        processes.append(subprocess.Popen(["taskset", "-c", "1", "nginx", "-c", f"{tmp}/nginx.conf", "-p", tmp]))
        processes.append(subprocess.Popen(["taskset", "-c", "1", "redis-server", "--port", str(REDIS), "--bind", "127.0.0.1", "--save", "",
                                           "--appendonly", "no"], stdout=subprocess.DEVNULL))
        route = lambda name, extra: f'  - {{name: {name}, match: {{path_prefix: /{name}}}, upstream: up{extra}}}\n'
        causeway = start_causeway(args.causeway, tmp, "causeway", f"""server: {{workers: 1, admin: {{address: "127.0.0.1:{ADMIN}"}}}}
listeners: [{{name: bench, address: "127.0.0.1:{CAUSEWAY}"}}]
upstreams: {{up: {{endpoints: [{{address: "127.0.0.1:{UPSTREAM}"}}]}}}}
auth:
  jwt:
    es: {{algorithms: [ES256], audiences: [api], jwks: {{file: "{tmp}/jwks.json"}}}}
    rs: {{algorithms: [RS256], audiences: [api], jwks: {{file: "{tmp}/jwks.json"}}}}
redis: {{address: "127.0.0.1:{REDIS}", pool_size: 2, timeout: 50ms}}
rate_limits:
  unlimited: {{algorithm: token_bucket, requests: 100000000, window: 1s, key: ip}}
  shared: {{algorithm: token_bucket, requests: 100000000, window: 1s, key: ip, scope: redis, on_redis_error: deny}}
routes:
""" + route("plain", "") + route("es256", ", auth: {providers: [es]}") + route("rs256", ", auth: {providers: [rs]}")
            + route("bucket", ", rate_limit: [unlimited]") + route("redis", ", rate_limit: [shared]"))
        processes.append(causeway)
        time.sleep(2)
        cases = {
            "plain": ("/plain", None),
            "token bucket": ("/bucket", None),
            "Redis bucket": ("/redis", None),
            "ES256 warm": ("/es256", files[("es256", "warm")]),
            "RS256 warm": ("/rs256", files[("rs256", "warm")]),
            "ES256 cold": ("/es256", files[("es256", "cold")]),
            "RS256 cold": ("/rs256", files[("rs256", "cold")]),
        }
        per_request = {name: [] for name in cases}
        p99s = {name: [] for name in cases}
        rates = {name: [] for name in cases}
        for name, (path, tokens) in cases.items():  # warm-up and a check that requests pass
            _, bad = wrk(argparse.Namespace(duration=1), path, tokens, f"{tmp}/tokens.lua" if tokens else None)
            if bad:
                raise SystemExit(f"{name}: {bad} requests were refused")
        for round_ in range(args.rounds):
            for name, (path, tokens) in cases.items():
                before = ticks(causeway.pid)
                done, bad = wrk(args, path, tokens, f"{tmp}/tokens.lua" if tokens else None)
                cpu = (ticks(causeway.pid) - before) / os.sysconf("SC_CLK_TCK") * 1e6 / max(done, 1)
                per_request[name].append(cpu)
                p99s[name].append(LAST_P99[0])
                rates[name].append(done / args.duration)
                print(f"[bench] round {round_ + 1} {name:13} {done / args.duration:9.0f} req/s  cpu {cpu:7.2f} us/req  non-2xx {bad}",
                      file=sys.stderr)
        base = statistics.median(per_request["plain"])
        print(f"\nEdge policies through Causeway, HTTP/1.1, 32 connections ({args.duration} s x {args.rounds} rounds, medians)\n")
        base_p99 = statistics.median(p99s["plain"])
        print("route          CPU us/req   added    req/s   p99 ms  p99 added")
        for name in cases:
            cpu = statistics.median(per_request[name])
            p99 = statistics.median(p99s[name])
            print(f"{name:13} {cpu:11.2f} {cpu - base:+8.2f} {statistics.median(rates[name]):8.0f} {p99:8.2f} {p99 - base_p99:+9.2f}")
    finally:
        stop(processes, tmp)


if __name__ == "__main__":
    main()
