#!/usr/bin/env python3
"""Rate limits shared through Redis (scope: redis, docs/security.md) with a real redis-server
(password set, so AUTH is used) and two gateway processes: together they admit exactly the
limit; each algorithm counts in Redis; Redis killed mid-test gets on_redis_error (allow and
deny, within redis.timeout, logged once); Redis back, counting resumes; a flushed script is
loaded again. Then a hostile "Redis" (huge lengths, deep nesting, one byte a second, silence,
garbage): on_redis_error applies, other routes on the loop are served, the process stays up.

Usage: redis_suite.py path/to/causeway
"""
import os, socket, subprocess, sys, tempfile, threading, time, uuid
import http.client
from concurrent import futures
from http.server import ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from policy_suite import Echo, request, reset_in  # noqa: E402
from suite_support import Results, free_port, running_gateway  # noqa: E402

CAUSEWAY = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".build/debug/causeway")
results = Results()
check = results.check
PASSWORD = "r3dis-pw"


def start_redis(port):
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--requirepass", PASSWORD,
                                "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


def redis_command(port, *args):
    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    command = b""
    for parts in (("AUTH", PASSWORD), args):
        command += b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p.encode()), p.encode()) for p in parts)
    sock.sendall(command)
    time.sleep(0.1)
    reply = sock.recv(65536)
    sock.close()
    return reply


def fresh(ports, path, header, at_least):
    """A new key whose window has more than `at_least` seconds left (Redis's clock decides)."""
    while True:
        key = uuid.uuid4().hex
        status, headers, body = request(ports[0], "GET", path, {header: key})
        if reset_in(headers) > at_least:
            return key, (status, headers, body)
        time.sleep(reset_in(headers))


class HostileRedis:
    """A TCP server that speaks broken RESP to whatever it is sent: a bulk string claiming
    99,999,999,999 bytes, replies nested 100 deep, one byte a second, or nothing at all."""

    def __init__(self):
        self.mode = "huge"
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        try:
            while conn.recv(65536):
                if self.mode == "huge":
                    conn.sendall(b"$99999999999\r\n")
                elif self.mode == "deep":
                    conn.sendall(b"*1\r\n" * 100 + b":1\r\n")
                elif self.mode == "slow":
                    for byte in b"*3\r\n:1\r\n:5\r\n:1000\r\n":
                        conn.sendall(bytes([byte]))
                        time.sleep(1)
                elif self.mode == "garbage":
                    conn.sendall(b"?" * 70000)
        except OSError:
            pass
        finally:
            conn.close()


def hostile_redis(upstream):
    fake = HostileRedis()
    tmp = tempfile.mkdtemp(prefix="causeway-redis-hostile-")
    port = free_port()
    config = f"""
server: {{workers: 1, admin: {{address: "127.0.0.1:{free_port()}"}}}}
listeners: [{{name: plain, address: "127.0.0.1:{port}"}}]
upstreams: {{echo: {{endpoints: [{{address: "127.0.0.1:{upstream.server_address[1]}"}}]}}}}
redis: {{address: "127.0.0.1:{fake.port}", pool_size: 2, timeout: 100ms}}
rate_limits:
  strict: {{algorithm: fixed_window, requests: 100, window: 1s, key: global, scope: redis, on_redis_error: deny}}
  lenient: {{algorithm: fixed_window, requests: 100, window: 1s, key: global, scope: redis, on_redis_error: allow}}
routes:
  - {{name: strict, match: {{path_prefix: /strict/}}, upstream: echo, rate_limit: [strict]}}
  - {{name: lenient, match: {{path_prefix: /lenient/}}, upstream: echo, rate_limit: [lenient]}}
  - {{name: plain, match: {{path_prefix: /plain/}}, upstream: echo}}
"""
    with running_gateway(CAUSEWAY, config, tmp, port) as gateway:
        for mode in ["huge", "deep", "slow", "silent", "garbage"]:
            fake.mode = mode
            started = time.monotonic()
            lenient = [request(port, "GET", "/lenient/x")[0] for _ in range(5)]
            strict = request(port, "GET", "/strict/x")[0]
            plain = request(port, "GET", "/plain/x")[0]
            took = time.monotonic() - started
            check(f"a Redis answering {mode}: allow passes, deny is 429, other routes served, all within the timeout's reach",
                  lenient == [200] * 5 and strict == 429 and plain == 200 and took < 3, f"{lenient} {strict} {plain} in {took:.2f} s")
        check("gateway still running after a hostile Redis", gateway.poll() is None)
    fake.server.close()


def main():
    tmp_a, tmp_b = tempfile.mkdtemp(prefix="causeway-redis-a-"), tempfile.mkdtemp(prefix="causeway-redis-b-")
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    redis_port = free_port()
    redis = start_redis(redis_port)
    ports = [free_port(), free_port()]

    def config(port):
        return f"""
server: {{workers: 2, admin: {{address: "127.0.0.1:{free_port()}"}}}}
listeners: [{{name: plain, address: "127.0.0.1:{port}"}}]
upstreams: {{echo: {{endpoints: [{{address: "127.0.0.1:{upstream.server_address[1]}"}}]}}}}
redis: {{address: "127.0.0.1:{redis_port}", password: "{PASSWORD}", pool_size: 2, timeout: 100ms}}
rate_limits:
  shared: {{algorithm: fixed_window, requests: 50, window: 30s, key: "header:x-run", scope: redis}}
  slide: {{algorithm: sliding_window, requests: 5, window: 10s, key: "header:x-k", scope: redis}}
  bucket: {{algorithm: token_bucket, requests: 2, window: 1s, burst: 5, key: "header:x-tenant", scope: redis}}
  strict: {{algorithm: fixed_window, requests: 100000, window: 1s, key: global, scope: redis, on_redis_error: deny}}
  lenient: {{algorithm: fixed_window, requests: 100000, window: 1s, key: global, scope: redis, on_redis_error: allow}}
  once: {{algorithm: fixed_window, requests: 1, window: 60s, key: "header:x-once", scope: redis}}
routes:
  - {{name: shared, match: {{path_prefix: /shared/}}, upstream: echo, rate_limit: [shared]}}
  - {{name: slide, match: {{path_prefix: /slide/}}, upstream: echo, rate_limit: [slide]}}
  - {{name: bucket, match: {{path_prefix: /bucket/}}, upstream: echo, rate_limit: [bucket]}}
  - {{name: strict, match: {{path_prefix: /strict/}}, upstream: echo, rate_limit: [strict]}}
  - {{name: lenient, match: {{path_prefix: /lenient/}}, upstream: echo, rate_limit: [lenient]}}
  - {{name: once, match: {{path_prefix: /once/}}, upstream: echo, rate_limit: [once]}}
"""
    try:
        with running_gateway(CAUSEWAY, config(ports[0]), tmp_a, ports[0]) as a, running_gateway(CAUSEWAY, config(ports[1]), tmp_b, ports[1]) as b:
            time.sleep(0.5)  # the loops' connections to Redis
            # Two replicas, one limit: 100 requests split over both gateways, 50 admitted.
            key, first = fresh(ports, "/shared/x", "x-run", 8)
            def burst(index):
                port = ports[index % 2]
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                codes = []
                for _ in range(5):
                    conn.request("GET", "/shared/x", headers={"x-run": key})
                    response = conn.getresponse()
                    response.read()
                    codes.append(response.status)
                conn.close()
                return codes
            with futures.ThreadPoolExecutor(20) as pool:
                codes = [first[0]] + [c for batch in pool.map(burst, range(20)) for c in batch][:99]
            check("two gateways on one Redis, fixed_window 50: exactly 50 of 100 admitted",
                  codes.count(200) == 50 and codes.count(429) == 50, f"{codes.count(200)} admitted, {codes.count(429)} refused")
            status, headers, body = request(ports[1], "GET", "/shared/x", {"x-run": key})
            check("429 from Redis: Retry-After, RateLimit-Policy and RateLimit",
                  status == 429 and headers.get("retry-after", "").isdigit() and headers.get("ratelimit-policy") == '"shared";q=50;w=30'
                  and headers.get("ratelimit", "").startswith('"shared";r=0;'), f"{status} {headers}")
            key, first = fresh(ports, "/slide/x", "x-k", 3)
            statuses = [first[0]] + [request(ports[i % 2], "GET", "/slide/x", {"x-k": key})[0] for i in range(6)]
            check("sliding_window 5 in Redis, across both gateways: 5 admitted", statuses == [200] * 5 + [429] * 2, f"{statuses}")
            tenant = uuid.uuid4().hex
            statuses = [request(ports[i % 2], "GET", "/bucket/x", {"x-tenant": tenant})[0] for i in range(7)]
            check("token_bucket burst 5 in Redis: 5 at once, then 429", statuses == [200] * 5 + [429] * 2, f"{statuses}")
            time.sleep(1.1)
            statuses = [request(ports[0], "GET", "/bucket/x", {"x-tenant": tenant})[0] for _ in range(3)]
            check("... refilled at 2/s by Redis's clock: 2 more after 1.1 s", statuses == [200, 200, 429], f"{statuses}")
            # A flushed script cache: EVALSHA answers NOSCRIPT, the script is loaded again.
            redis_command(redis_port, "SCRIPT", "FLUSH")
            once = uuid.uuid4().hex
            statuses = [request(ports[0], "GET", "/once/x", {"x-once": once})[0] for _ in range(2)]
            check("after SCRIPT FLUSH the script is loaded again (NOSCRIPT handled)", statuses == [200, 429], f"{statuses}")
            ttl = redis_command(redis_port, "KEYS", "causeway:rl:{once}*")
            check("counters are Redis keys that expire with their window", b"causeway:rl:{once}" in ttl, f"{ttl[:200]!r}")
            # Redis down.
            redis.terminate()
            redis.wait(timeout=5)
            started = time.monotonic()
            lenient = [request(ports[i % 2], "GET", "/lenient/x")[0] for i in range(20)]
            took = (time.monotonic() - started) / 20
            check("Redis down, on_redis_error allow: requests pass", lenient == [200] * 20, f"{lenient}")
            check("... each decided fast (well within a second)", took < 0.5, f"{took * 1000:.0f} ms per request")
            status, _, body = request(ports[0], "GET", "/strict/x")
            check("Redis down, on_redis_error deny: 429 saying so", status == 429 and b"cannot be checked" in body, f"{status} {body[:160]!r}")
            logs = open(os.path.join(tmp_a, "gateway.log")).read()
            outage = "apply on_redis_error until it is back"
            check("the outage is logged once, not per request", logs.count(outage) == 1, f"{logs.count(outage)} lines")
            redis = start_redis(redis_port)
            once = uuid.uuid4().hex
            deadline, statuses = time.monotonic() + 8, []
            while time.monotonic() < deadline:
                statuses = [request(ports[0], "GET", "/once/x", {"x-once": once})[0] for _ in range(2)]
                if statuses == [200, 429]:
                    break
                once = uuid.uuid4().hex
                time.sleep(0.3)
            check("Redis back: counting resumes (reconnect with backoff, AUTH again)", statuses == [200, 429], f"{statuses}")
            time.sleep(0.2)
            request(ports[0], "GET", "/lenient/x")
            logs = open(os.path.join(tmp_a, "gateway.log")).read()
            check("... and the recovery is logged", "reachable again" in logs)
            check("both gateways still running", a.poll() is None and b.poll() is None)
        hostile_redis(upstream)
    finally:
        redis.terminate()
        upstream.shutdown()
    results.finish("redis")


if __name__ == "__main__":
    main()
