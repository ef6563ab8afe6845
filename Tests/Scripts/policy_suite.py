#!/usr/bin/env python3
"""Edge policies against a running gateway (docs/security.md): CORS, IP access rules with
trusted proxies, API-key auth (optional and required), local rate limits (fixed window, sliding
window, token bucket; keys by ip, header, consumer; exact across two event loops), per-IP
connection limits, and the gRPC and WebSocket forms of the refusals.

Usage: policy_suite.py path/to/causeway

A Python upstream echoes what it received (path and headers) as JSON and counts requests, so
the suite can tell what reached it (a preflight must not).
"""
import base64, hashlib, hmac, json, os, socket, subprocess, sys, tempfile, threading, time, uuid, warnings
import http.client
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from suite_support import Results, free_port, running_gateway  # noqa: E402

CAUSEWAY = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".build/debug/causeway")
results = Results()
check = results.check
HITS = {"count": 0}
HITS_LOCK = threading.Lock()
PARTNER_KEY = "k-acme-0123456789"
OTHER_KEY = "k-globex-abcdef"


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        with HITS_LOCK:
            HITS["count"] += 1
        body = json.dumps({"path": self.path, "method": self.command,
                           "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        # An upstream that sets its own CORS header: the gateway's policy decides.
        self.send_header("access-control-allow-origin", "https://upstream-says.example")
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = _answer

    def log_message(self, *args):
        pass


def request(port, method, path, headers=None, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


def all_headers(port, method, path, headers=None):
    """Like request, but keeps repeated response fields (WWW-Authenticate, Vary)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, headers=headers or {})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status, response.getheaders()


def hits():
    with HITS_LOCK:
        return HITS["count"]


def cors(port):
    origin = {"origin": "https://app.example.com"}
    before = hits()
    status, headers, _ = request(port, "OPTIONS", "/cors/x", {**origin, "access-control-request-method": "PUT",
                                                               "access-control-request-headers": "Content-Type, Authorization"})
    check("CORS preflight answered by the gateway: 204, origin, credentials, methods, headers, max-age",
          status == 204 and headers.get("access-control-allow-origin") == "https://app.example.com"
          and headers.get("access-control-allow-credentials") == "true"
          and "PUT" in headers.get("access-control-allow-methods", "")
          and headers.get("access-control-allow-headers") == "content-type, authorization"
          and headers.get("access-control-max-age") == "600" and "Origin" in headers.get("vary", ""), f"{status} {headers}")
    check("... and it never reached the upstream (nor was it refused by the route's methods: GET, PUT)", hits() == before,
          f"{hits() - before} upstream hits")
    for what, extra in [("an origin not listed", {"origin": "https://evil.example.net"}),
                        ("a method not allowed", {**origin, "access-control-request-method": "DELETE"}),
                        ("a header not allowed", {**origin, "access-control-request-headers": "x-secret"})]:
        asked = {"access-control-request-method": "PUT", **extra}
        status, headers, body = request(port, "OPTIONS", "/cors/x", asked)
        check(f"CORS preflight with {what}: 403, no CORS headers, JSON error",
              status == 403 and "access-control-allow-origin" not in headers and b"cors_refused" in body, f"{status} {headers} {body[:120]!r}")
    status, headers, _ = request(port, "GET", "/cors/x", origin)
    check("CORS actual request, allowed origin: Allow-Origin is the origin (the upstream's own replaced), credentials, exposed headers, Vary",
          status == 200 and headers.get("access-control-allow-origin") == "https://app.example.com"
          and headers.get("access-control-allow-credentials") == "true"
          and headers.get("access-control-expose-headers") == "x-request-id" and "Origin" in headers.get("vary", ""), f"{headers}")
    status, headers, _ = request(port, "GET", "/cors/x", {"origin": "https://evil.example.net"})
    check("CORS actual request, other origin: served, but no CORS headers at all (the upstream's removed)",
          status == 200 and not any(k.startswith("access-control-") for k in headers) and "Origin" in headers.get("vary", ""),
          f"{headers}")
    for origin_value, allowed in [("https://a.example.org", True), ("https://deep.a.example.org", True),
                                  ("http://a.example.org", False), ("https://example.org", False),
                                  ("https://a.example.org.evil.com", False), ("https://evilexample.org", False),
                                  ("https://a.example.org:8443", False), ("null", False)]:
        _, headers, _ = request(port, "GET", "/cors/x", {"origin": origin_value})
        got = headers.get("access-control-allow-origin") == origin_value
        check(f"CORS pattern https://*.example.org {'admits' if allowed else 'refuses'} {origin_value}", got == allowed, f"{headers}")
    _, headers, _ = request(port, "GET", "/star/x", {"origin": "https://anyone.example"})
    check("CORS \"*\" without credentials: Allow-Origin *, no Vary: Origin",
          headers.get("access-control-allow-origin") == "*" and "vary" not in headers, f"{headers}")
    status, headers, _ = request(port, "GET", "/cors/x")
    check("no Origin: not a CORS request, no CORS headers", status == 200 and "access-control-allow-origin" not in headers, f"{headers}")
    # The preflight of an authenticated route needs no credential; the actual request does.
    status, headers, _ = request(port, "OPTIONS", "/keys/x", {**origin, "access-control-request-method": "GET",
                                                             "access-control-request-headers": "x-api-key"})
    check("a preflight on an API-key route: 204 without any key (CORS runs before auth)", status == 204, f"{status} {headers}")
    status, headers, _ = request(port, "GET", "/keys/x", origin)
    check("... the actual request without a key: 401, readable by the page (CORS headers on the error)",
          status == 401 and headers.get("access-control-allow-origin") == "https://app.example.com", f"{status} {headers}")


def access(port):
    status, _, body = request(port, "GET", "/private/x")
    check("access.allow 10.0.0.0/8 from 127.0.0.1: 403 with a JSON error", status == 403 and b"access_denied" in body, f"{status} {body[:100]!r}")
    status, _, _ = request(port, "GET", "/denied/x")
    check("access: deny 127.0.0.1/32 wins over allow 127.0.0.0/8", status == 403, f"{status}")
    status, _, _ = request(port, "GET", "/loopback/x")
    check("access.allow 127.0.0.0/8 and ::1/128: 200", status == 200, f"{status}")
    # 127.0.0.1 is a trusted proxy: X-Forwarded-For names the client, read from the right.
    status, _, _ = request(port, "GET", "/xff/x", {"x-forwarded-for": "203.0.113.5"})
    check("trusted proxy: X-Forwarded-For 203.0.113.5 (denied network) is the client: 403", status == 403, f"{status}")
    status, _, _ = request(port, "GET", "/xff/x", {"x-forwarded-for": "203.0.113.5, 198.51.100.7"})
    check("... a spoofed left-hand entry is not believed: the rightmost untrusted hop (198.51.100.7) is the client: 200",
          status == 200, f"{status}")
    status, _, _ = request(port, "GET", "/xff/x", {"x-forwarded-for": "198.51.100.7, 203.0.113.9, 127.0.0.1"})
    check("... trusted hops are skipped from the right: 203.0.113.9 is the client: 403", status == 403, f"{status}")
    status, _, _ = request(port, "GET", "/xff/x", {"x-forwarded-for": "not-an-address"})
    check("... garbage in X-Forwarded-For: the peer itself is the client (allowed)", status == 200, f"{status}")


def api_keys(port):
    status, raw = all_headers(port, "GET", "/keys/x")
    challenges = [v for k, v in raw if k.lower() == "www-authenticate"]
    check("no API key: 401 with WWW-Authenticate naming where the key goes",
          status == 401 and challenges and 'header="x-api-key"' in challenges[0], f"{status} {challenges}")
    status, headers, body = request(port, "GET", "/keys/x", {"x-api-key": "wrong"})
    _, raw = all_headers(port, "GET", "/keys/x", {"x-api-key": "wrong"})
    challenges = [v for k, v in raw if k.lower() == "www-authenticate"]
    check("a wrong API key: 401, error=\"invalid_token\", JSON error with the request id",
          status == 401 and 'error="invalid_token"' in challenges[0] and json.loads(body)["error"]["request_id"], f"{status} {challenges} {body!r}")
    status, _, body = request(port, "GET", "/keys/x", {"x-api-key": PARTNER_KEY, "x-consumer": "spoofed"})
    seen = json.loads(body)["headers"] if status == 200 else {}
    check("the right API key: 200, the upstream sees x-consumer: acme (the client's spoofed copy removed)",
          status == 200 and seen.get("x-consumer") == "acme", f"{status} {seen}")
    status, _, body = request(port, "GET", "/keys/x?api_key=" + OTHER_KEY)
    check("the key in the query (second source): 200 as globex", status == 200 and json.loads(body)["headers"].get("x-consumer") == "globex",
          f"{status} {body[:200]!r}")
    status, _, body = request(port, "GET", "/keys/x", {"x-api-key": "x" * 100_000})
    check("a 100 KB API key: 401 (or 431), no crash", status in (401, 431), f"{status}")
    status, _, body = request(port, "GET", "/optional/x")
    check("auth optional, no key: 200 as anonymous (no x-consumer upstream)",
          status == 200 and "x-consumer" not in json.loads(body)["headers"], f"{status} {body[:200]!r}")
    status, _, _ = request(port, "GET", "/optional/x", {"x-api-key": "wrong"})
    check("auth optional, a wrong key: still 401", status == 401, f"{status}")
    # A WebSocket handshake gets the HTTP refusal before any upgrade.
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET /keys/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = sock.recv(4096)
    sock.close()
    check("a WebSocket handshake without a key: 401 before any upgrade", head.startswith(b"HTTP/1.1 401"), f"{head[:60]!r}")


def reset_in(headers):
    """Seconds until the first policy's quota resets, from the RateLimit header."""
    for part in headers.get("ratelimit", "").split(";"):
        if part.startswith("t="):
            return int(part[2:])
    return 0


def fresh(port, path, header, at_least):
    """A new key (header value) whose window has at least `at_least` seconds left, so a burst
    that follows cannot straddle a boundary; its first request is returned with it."""
    while True:
        key = uuid.uuid4().hex
        status, headers, body = request(port, "GET", path, {header: key})
        if reset_in(headers) > at_least:
            return key, (status, headers, body)
        time.sleep(reset_in(headers))


def limits(port):
    key, first = fresh(port, "/fixed/x", "x-k", 1)
    replies = [first] + [request(port, "GET", "/fixed/x", {"x-k": key}) for _ in range(7)]
    statuses = [status for status, _, _ in replies]
    check("fixed_window 5 per 2 s: exactly 5 of 8 admitted", statuses == [200] * 5 + [429] * 3, f"{statuses}")
    _, headers, body = replies[-1]
    check("429 with Retry-After, RateLimit-Policy, RateLimit and a JSON error (rate_limited)",
          headers.get("retry-after", "").isdigit() and headers.get("ratelimit-policy") == '"fixed5";q=5;w=2'
          and headers.get("ratelimit", "").startswith('"fixed5";r=0;t=') and b'"rate_limited"' in body, f"{headers} {body[:120]!r}")
    out = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null", "-D", "-", "-H", "content-type: application/grpc",
                          "-H", "te: trailers", "-H", f"x-k: {key}", "--data-binary", "@/dev/null",
                          f"http://127.0.0.1:{port}/fixed/demo.Svc/Call"], capture_output=True, text=True).stdout.lower()
    check("a gRPC call over the limit: HTTP 200, grpc-status 8 (RESOURCE_EXHAUSTED)",
          " 200" in out.splitlines()[0] and "grpc-status: 8" in out, out[:300])

    key, (status, headers, _) = fresh(port, "/sliding/x", "x-k", 2)
    check("admitted responses carry RateLimit-Policy and RateLimit (remaining counts down)",
          status == 200 and headers.get("ratelimit-policy") == '"slide5";q=5;w=10' and headers.get("ratelimit", "").startswith('"slide5";r=4;'),
          f"{status} {headers}")
    replies = [request(port, "GET", "/sliding/x", {"x-k": key}) for _ in range(6)]
    check("sliding_window 5 per 10 s: 4 more admitted, then refused", [r[0] for r in replies] == [200] * 4 + [429] * 2,
          f"{[r[0] for r in replies]}")
    # Just past the boundary the previous window (5) weighs 5 x (1 - elapsed): one request fits,
    # the next only once a fifth of the window has gone (a fixed window would take 5 at once).
    time.sleep(reset_in(replies[-1][1]))
    statuses = [request(port, "GET", "/sliding/x", {"x-k": key})[0] for _ in range(4)]
    check("sliding_window: after the boundary the previous window still weighs (1 admitted, then 429)",
          statuses == [200, 429, 429, 429], f"{statuses}")

    tenant = lambda name: request(port, "GET", "/bucket/x", {"x-tenant": name})[0]
    statuses = [tenant("a") for _ in range(7)]
    check("token_bucket burst 5 keyed by header x-tenant: 5 at once, then 429", statuses == [200] * 5 + [429] * 2, f"{statuses}")
    check("... another tenant has its own bucket", tenant("b") == 200)
    time.sleep(1.1)  # 2 per second: 2.2 tokens back
    statuses = [tenant("a") for _ in range(3)]
    check("... refilled at 2/s: 2 more after 1.1 s", statuses == [200, 200, 429], f"{statuses}")

    keyed = lambda key: request(port, "GET", "/consumer/x", {"x-api-key": key})[0]
    statuses = [keyed(PARTNER_KEY) for _ in range(4)] + [keyed(OTHER_KEY)]
    check("keyed by consumer: acme gets 3, globex its own", statuses == [200, 200, 200, 429, 200], f"{statuses}")

    # Exact across event loops: 400 requests on 40 connections (spread over both loops), 100 admitted.
    key, first = fresh(port, "/exact/x", "x-run", 10)
    def burst(index):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        codes = []
        for _ in range(10 if index else 9):  # the probe was one
            conn.request("GET", "/exact/x", headers={"x-run": key})
            response = conn.getresponse()
            response.read()
            codes.append(response.status)
        conn.close()
        return codes
    with futures.ThreadPoolExecutor(40) as pool:
        codes = [first[0]] + [code for batch in pool.map(burst, range(40)) for code in batch]
    check("fixed_window 100 per 30 s, 400 requests over 40 connections on 2 loops: exactly 100 admitted",
          codes.count(200) == 100 and codes.count(429) == 300, f"{codes.count(200)} admitted, {codes.count(429)} refused")


def connections(port):
    held = []
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET /loopback/x HTTP/1.1\r\nHost: x\r\n\r\n")
        held.append((sock, sock.recv(4096)))
    check("max_connections_per_ip 3: three connections served", all(reply.startswith(b"HTTP/1.1 200") for _, reply in held))
    extra = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        extra.sendall(b"GET /loopback/x HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = extra.recv(4096)
    except OSError:
        reply = b""
    extra.close()
    check("... a fourth from the same address is closed at accept", reply == b"", f"{reply[:60]!r}")
    held[0][0].close()
    time.sleep(0.2)
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET /loopback/x HTTP/1.1\r\nHost: x\r\n\r\n")
    reply = sock.recv(4096)
    check("... and one closing frees a place", reply.startswith(b"HTTP/1.1 200"), f"{reply[:60]!r}")
    sock.close()
    for s, _ in held[1:]:
        s.close()


def config_errors(tmp):
    bad = [
        ("routes:\n  - {name: r, match: {path_prefix: /}, upstream: u, cors: {allow_origins: ['*'], allow_credentials: true}}",
         "allow_credentials cannot be used with allow_origins"),
        ("routes:\n  - {name: r, match: {path_prefix: /}, upstream: u, auth: {providers: [nobody]}}", "unknown auth provider \"nobody\""),
        ("rate_limits: {x: {requests: 1, window: 1s, scope: redis}}\nroutes:\n  - {name: r, match: {path_prefix: /}, upstream: u}",
         "scope: redis needs the top-level redis block"),
        ("routes:\n  - {name: r, match: {path_prefix: /}, upstream: u, access: {allow: [10.0.0.0/33]}}", "expected an IPv4 or IPv6"),
        ("routes:\n  - {name: r, match: {path_prefix: /}, upstream: u, rate_limit: [nope]}", "unknown rate limit \"nope\""),
    ]
    for text, expected in bad:
        path = os.path.join(tmp, "bad.yaml")
        with open(path, "w") as f:
            f.write("listeners: [{name: l, address: '127.0.0.1:1'}]\nupstreams: {u: {endpoints: [{address: '127.0.0.1:2'}]}}\n" + text)
        out = subprocess.run([CAUSEWAY, "validate", path], capture_output=True, text=True)
        check(f"config error reported at its key: {expected}", out.returncode != 0 and expected in out.stderr + out.stdout,
              (out.stderr + out.stdout)[:300])


# JWT: keys and tokens made with joserfc (cryptography underneath).
def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_keys():
    from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey
    keys = {
        "rsa": RSAKey.generate_key(2048, parameters={"kid": "rsa-1"}),
        "p256": ECKey.generate_key("P-256", parameters={"kid": "ec-256"}),
        "p384": ECKey.generate_key("P-384", parameters={"kid": "ec-384"}),
        "ed": OKPKey.generate_key("Ed25519", parameters={"kid": "ed-1"}),
        "rotated": RSAKey.generate_key(2048, parameters={"kid": "rsa-2"}),
    }
    secret = OctKey.import_key(b"s" * 32, parameters={"kid": "hs-1"})
    return keys, secret


def mint(key, alg, kid, **claims):
    from joserfc import jwt
    now = int(time.time())
    body = {"sub": "user-7", "iss": "https://id.example.com/", "aud": "api", "exp": now + 300, "iat": now, **claims}
    body = {k: v for k, v in body.items() if v is not None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jwt.encode({"alg": alg, "kid": kid}, body, key, algorithms=[alg])


def jwt_checks(port, keys, secret, jwks_server):
    bearer = lambda token: {"authorization": "Bearer " + token}
    for alg, key, kid in [("RS256", keys["rsa"], "rsa-1"), ("RS384", keys["rsa"], "rsa-1"), ("RS512", keys["rsa"], "rsa-1"),
                          ("PS256", keys["rsa"], "rsa-1"), ("ES256", keys["p256"], "ec-256"), ("ES384", keys["p384"], "ec-384"),
                          ("EdDSA", keys["ed"], "ed-1")]:
        status, _, body = request(port, "GET", "/jwt/x", bearer(mint(key, alg, kid)))
        seen = json.loads(body)["headers"] if status == 200 else {}
        check(f"JWT {alg}: 200, the subject forwarded as x-user-id and x-consumer",
              status == 200 and seen.get("x-user-id") == "user-7" and seen.get("x-consumer") == "user-7", f"{status} {body[:160]!r}")
    status, _, _ = request(port, "GET", "/jwt-hs/x", bearer(mint(secret, "HS256", "hs-1")))
    check("JWT HS256 on a provider that lists it: 200", status == 200, f"{status}")
    status, _, _ = request(port, "GET", "/jwt/x", bearer(mint(secret, "HS256", "hs-1")))
    check("JWT HS256 on a provider that does not list it: 401", status == 401, f"{status}")
    good = mint(keys["rsa"], "RS256", "rsa-1")
    header, payload, _ = good.split(".")
    pem = keys["rsa"].as_pem(private=False)
    confused_input = (b64(json.dumps({"alg": "HS256", "kid": "rsa-1"}).encode()) + "." + payload).encode()
    attacks = [
        ("alg none", b64(b'{"alg":"none","typ":"JWT"}') + "." + payload + "."),
        ("alg none with the RS256 signature", b64(b'{"alg":"none"}') + "." + payload + "." + good.split(".")[2]),
        ("HS256 signed with the RSA public key (PEM) as the secret",
         confused_input.decode() + "." + b64(hmac.new(pem, confused_input, hashlib.sha256).digest())),
        ("HS256 signed with the RSA modulus as the secret",
         confused_input.decode() + "." + b64(hmac.new(base64.urlsafe_b64decode(keys["rsa"].as_dict(private=False)["n"] + "=="),
                                                      confused_input, hashlib.sha256).digest())),
        ("expired (beyond the 30 s leeway)", mint(keys["rsa"], "RS256", "rsa-1", exp=int(time.time()) - 120)),
        ("not valid yet", mint(keys["rsa"], "RS256", "rsa-1", nbf=int(time.time()) + 600)),
        ("issued in the future", mint(keys["rsa"], "RS256", "rsa-1", iat=int(time.time()) + 600)),
        ("wrong audience", mint(keys["rsa"], "RS256", "rsa-1", aud="other")),
        ("wrong issuer", mint(keys["rsa"], "RS256", "rsa-1", iss="https://evil.example/")),
        ("unknown kid", mint(keys["rotated"], "RS256", "nobody-knows")),
        ("a kid whose key does not match", mint(keys["rotated"], "RS256", "rsa-1")),
        ("a tampered payload", header + "." + b64(json.dumps({"sub": "admin", "aud": "api", "iss": "https://id.example.com/",
                                                              "exp": int(time.time()) + 300}).encode()) + "." + good.split(".")[2]),
        ("malformed base64", header + ".@@@." + good.split(".")[2]),
        ("padded base64", header + "=." + payload + "." + good.split(".")[2]),
        ("two parts", header + "." + payload),
        ("a 100 KB token", "a" * 50_000 + "." + "b" * 50_000 + ".c"),
        ("no subject", mint(keys["rsa"], "RS256", "rsa-1", sub=None)),
        ("a header that is not JSON", b64(b"not json") + "." + payload + "." + good.split(".")[2]),
        ("ES256 with a truncated signature", mint(keys["p256"], "ES256", "ec-256")[:-10]),
    ]
    for what, token in attacks:
        status, headers, body = request(port, "GET", "/jwt/x", bearer(token))
        check(f"JWT attack, {what}: 401 with a Bearer error, no crash",
              status in (401, 431) and (status == 431 or 'error="invalid_token"' in headers.get("www-authenticate", "")),
              f"{status} {headers.get('www-authenticate')} {body[:120]!r}")
    status, headers, _ = request(port, "GET", "/jwt/x")
    check("JWT, no token: 401 with WWW-Authenticate: Bearer (no error attribute)",
          status == 401 and headers.get("www-authenticate", "").startswith("Bearer") and "error=" not in headers.get("www-authenticate", ""),
          f"{status} {headers}")
    status, _, body = request(port, "GET", "/jwt/x", {**bearer(good), "x-user-id": "spoofed"})
    check("a client's own x-user-id is replaced by the claim", status == 200 and json.loads(body)["headers"].get("x-user-id") == "user-7")
    # Connection names fields as hop-by-hop: a client must not be able to name away what the
    # gateway adds after reading the request (the consumer, forwarded claims, route headers).
    status, _, body = request(port, "GET", "/jwt/x", {**bearer(good), "connection": "keep-alive, x-consumer, x-user-id, x-gateway"})
    seen = json.loads(body)["headers"] if status == 200 else {}
    check("Connection naming x-consumer and x-user-id cannot strip what the gateway adds",
          status == 200 and seen.get("x-consumer") == "user-7" and seen.get("x-user-id") == "user-7", f"{status} {seen}")
    status, _, body = request(port, "GET", "/hdr/x", {"connection": "x-gateway", "x-gateway": "client", "x-other": "kept"})
    seen = json.loads(body)["headers"] if status == 200 else {}
    check("Connection naming a route's request header: the route's value still reaches the upstream",
          status == 200 and seen.get("x-gateway") == "causeway", f"{status} {seen}")
    status, _, body = request(port, "GET", "/hdr/x", {"connection": "x-secret", "x-secret": "s"})
    seen = json.loads(body)["headers"] if status == 200 else {}
    check("a field the client names in Connection never reaches the upstream", status == 200 and "x-secret" not in seen, f"{seen}")
    status, _, body = request(port, "GET", "/jwt/x?access_token=" + good)
    check("the token from the query (second source)", status == 200, f"{status}")
    status, _, body = request(port, "GET", "/jwt/x", {"cookie": "theme=dark; session=" + good})
    check("the token from a cookie (third source)", status == 200, f"{status}")
    for _ in range(3):
        status, _, _ = request(port, "GET", "/jwt/x", bearer(good))
    check("a cached token keeps working", status == 200)
    # authorize: scopes and claims.
    scoped = mint(keys["p256"], "ES256", "ec-256", scope="orders:read profile", tenant="acme")
    check("authorize: the scope and claim present: 200", request(port, "GET", "/orders-read/x", bearer(scoped))[0] == 200)
    status, _, body = request(port, "GET", "/orders-read/x", bearer(mint(keys["p256"], "ES256", "ec-256", scope="profile", tenant="acme")))
    check("authorize: a missing scope: 403 forbidden", status == 403 and b'"forbidden"' in body, f"{status} {body[:100]!r}")
    status, _, _ = request(port, "GET", "/orders-read/x", bearer(mint(keys["p256"], "ES256", "ec-256", scp=["orders:read"], tenant="other")))
    check("authorize: scp as a list is read, a wrong claim value: 403", status == 403, f"{status}")
    out = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null", "-D", "-", "-H", "content-type: application/grpc",
                          "-H", "te: trailers", "--data-binary", "@/dev/null", f"http://127.0.0.1:{port}/jwt/demo.Svc/Call"],
                         capture_output=True, text=True).stdout.lower()
    check("a gRPC call without a token: grpc-status 16 (UNAUTHENTICATED)", "grpc-status: 16" in out, out[:200])
    # JWKS from a URL, refreshed every 2 s: rotation without restart, the last good set kept.
    rotated = mint(keys["rotated"], "RS256", "rsa-2")
    check("JWKS URL: a key the set does not have yet: 401", request(port, "GET", "/jwt-url/x", bearer(rotated))[0] == 401)
    jwks_server.keys = [keys["rsa"].as_dict(private=False), keys["rotated"].as_dict(private=False)]
    deadline, status = time.monotonic() + 10, 0
    while time.monotonic() < deadline and status != 200:
        time.sleep(0.5)
        status = request(port, "GET", "/jwt-url/x", bearer(rotated))[0]
    check("JWKS URL: the rotated key is fetched and accepted without a restart", status == 200, f"{status}")
    jwks_server.fail = True
    time.sleep(3)
    check("JWKS URL: the endpoint failing keeps the last good set", request(port, "GET", "/jwt-url/x", bearer(mint(keys["rotated"], "RS256", "rsa-2")))[0] == 200)
    jwks_server.fail = False


class JWKSHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    keys = []
    fail = False

    def do_GET(self):
        body = json.dumps({"keys": JWKSHandler.keys}).encode()
        self.send_response(500 if JWKSHandler.fail else 200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def key_checks(port, keys):
    statuses = [request(port, "GET", "/rk1/x")[0] for _ in range(3)] + [request(port, "GET", "/rk2/x")[0] for _ in range(3)]
    check("keyed by route: one policy on two routes counts each route apart", statuses == [200, 200, 429] * 2, f"{statuses}")
    # 127.0.0.1 is a trusted proxy here, so X-Forwarded-For names the client the limit counts.
    statuses = [request(port, "GET", "/ipk/x", {"x-forwarded-for": "198.51.100.1"})[0] for _ in range(4)]
    statuses += [request(port, "GET", "/ipk/x", {"x-forwarded-for": "198.51.100.2"})[0]]
    check("keyed by ip (after trusted proxies): each client address counted apart", statuses == [200, 200, 200, 429, 200], f"{statuses}")
    acme = mint(keys["p256"], "ES256", "ec-256", tenant="acme")
    other = mint(keys["p256"], "ES256", "ec-256", tenant="other", sub="user-9")
    bearer = lambda token: {"authorization": "Bearer " + token}
    statuses = [request(port, "GET", "/tenantk/x", bearer(acme))[0] for _ in range(3)] + [request(port, "GET", "/tenantk/x", bearer(other))[0]]
    check("keyed by claim:tenant: each tenant counted apart", statuses == [200, 200, 429, 200], f"{statuses}")


class IntrospectionHandler(BaseHTTPRequestHandler):
    """RFC 7662 endpoint: tokens "good-*" are active (scope orders:read), others not; the
    gateway's client credentials are checked; each answer waits 150 ms, so concurrent
    identical introspections can be seen to coalesce."""
    protocol_version = "HTTP/1.1"
    calls = []
    down = False

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        form = dict(pair.split("=", 1) for pair in self.rfile.read(length).decode().split("&") if "=" in pair)
        token = form.get("token", "")
        IntrospectionHandler.calls.append(token)
        time.sleep(0.15)
        if IntrospectionHandler.down:
            status, body = 500, b'{"error":"boom"}'
        elif self.headers.get("authorization") != "Basic " + base64.b64encode(b"gateway:s3cret").decode():
            status, body = 401, b'{"error":"invalid_client"}'
        elif token.startswith("good-"):
            status, body = 200, json.dumps({"active": True, "sub": "intro-" + token[5:], "scope": "orders:read",
                                            "exp": int(time.time()) + 600, "client_id": "app"}).encode()
        else:
            status, body = 200, b'{"active": false}'
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def introspection_checks(port):
    bearer = lambda token: {"authorization": "Bearer " + token}
    IntrospectionHandler.calls.clear()
    status, _, body = request(port, "GET", "/intro/x", bearer("good-alpha"))
    check("introspection: an active token: 200, sub as x-consumer", status == 200 and json.loads(body)["headers"].get("x-consumer") == "intro-alpha",
          f"{status} {body[:160]!r}")
    # One connection, so one event loop (each loop keeps its own cache).
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for _ in range(4):
        conn.request("GET", "/intro/x", headers=bearer("good-delta"))
        conn.getresponse().read()
    conn.close()
    check("introspection: the answer is cached (one call for four requests on a loop)", IntrospectionHandler.calls.count("good-delta") == 1,
          f"{IntrospectionHandler.calls}")
    with futures.ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(lambda _: request(port, "GET", "/intro/x", {"authorization": "Bearer good-burst", "connection": "close"})[0],
                              range(10)))
    # Two loops: at most one introspection per loop for the same token at once.
    check("introspection: 10 concurrent requests with one new token: coalesced (one call per loop)",
          codes == [200] * 10 and 1 <= IntrospectionHandler.calls.count("good-burst") <= 2, f"{codes} {IntrospectionHandler.calls.count('good-burst')} calls")
    status, headers, _ = request(port, "GET", "/intro/x", bearer("revoked-1"))
    check("introspection: active false: 401 with error=\"invalid_token\"",
          status == 401 and 'error="invalid_token"' in headers.get("www-authenticate", ""), f"{status} {headers}")
    check("introspection: scopes from the answer feed authorize (orders:read present): 200",
          request(port, "GET", "/intro-scoped/x", bearer("good-beta"))[0] == 200)
    IntrospectionHandler.down = True
    status, _, body = request(port, "GET", "/intro/x", bearer("good-gamma"))
    check("introspection: the endpoint failing: 503 auth_unavailable (not 401)", status == 503 and b"auth_unavailable" in body,
          f"{status} {body[:120]!r}")
    IntrospectionHandler.down = False
    check("introspection: recovers once the endpoint does", request(port, "GET", "/intro/x", bearer("good-gamma"))[0] == 200)


def main():
    tmp = tempfile.mkdtemp(prefix="causeway-policy-")
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    jwt_keys, secret = make_keys()
    jwks_path = os.path.join(tmp, "jwks.json")
    with open(jwks_path, "w") as f:
        json.dump({"keys": [k.as_dict(private=False) for name, k in jwt_keys.items() if name != "rotated"]
                   + [{"kty": "EC", "kid": "broken", "crv": "P-256", "x": "AAAA", "y": "AAAA"}]}, f)
    hs_path = os.path.join(tmp, "hs.json")
    with open(hs_path, "w") as f:
        json.dump({"keys": [secret.as_dict(private=True)]}, f)
    JWKSHandler.keys = [jwt_keys["rsa"].as_dict(private=False)]
    intro_server = ThreadingHTTPServer(("127.0.0.1", 0), IntrospectionHandler)
    threading.Thread(target=intro_server.serve_forever, daemon=True).start()
    jwks_server = ThreadingHTTPServer(("127.0.0.1", 0), JWKSHandler)
    threading.Thread(target=jwks_server.serve_forever, daemon=True).start()
    keys = os.path.join(tmp, "keys.yaml")
    with open(keys, "w") as f:
        f.write(f"acme: {hashlib.sha256(PARTNER_KEY.encode()).hexdigest()}\nglobex: {hashlib.sha256(OTHER_KEY.encode()).hexdigest()}\n")
    port, admin, limited = free_port(), free_port(), free_port()
    cors_block = ("{allow_origins: ['https://app.example.com', 'https://*.example.org'], allow_methods: [GET, PUT], "
                  "allow_headers: [content-type, authorization, x-api-key], expose_headers: [x-request-id], allow_credentials: true, max_age: 10m}")
    config = f"""
server:
  workers: 2
  admin: {{address: "127.0.0.1:{admin}"}}
  trusted_proxies: [127.0.0.1/32]
listeners:
  - {{name: plain, address: "127.0.0.1:{port}", protocols: [http1, h2c]}}
upstreams:
  echo: {{endpoints: [{{address: "127.0.0.1:{upstream.server_address[1]}"}}]}}
auth:
  jwt:
    main:
      issuer: https://id.example.com/
      audiences: [api]
      algorithms: [RS256, RS384, RS512, PS256, ES256, ES384, EdDSA]
      jwks: {{file: "{jwks_path}"}}
      leeway: 30s
      from: ["header:authorization", "query:access_token", "cookie:session"]
      forward_claims: {{sub: x-user-id}}
    shared-secret:
      algorithms: [HS256]
      jwks: {{file: "{hs_path}"}}
    remote:
      algorithms: [RS256]
      jwks: {{url: "http://127.0.0.1:{jwks_server.server_address[1]}/jwks.json", refresh: 2s}}
  introspection:
    idp: {{url: "http://127.0.0.1:{intro_server.server_address[1]}/introspect", client_id: gateway, client_secret: s3cret, cache_ttl: 60s}}
  api_keys:
    partners: {{from: ["header:x-api-key", "query:api_key"], keys_file: "{keys}"}}
rate_limits:
  fixed5: {{algorithm: fixed_window, requests: 5, window: 2s, key: "header:x-k"}}
  slide5: {{algorithm: sliding_window, requests: 5, window: 10s, key: "header:x-k"}}
  bucket: {{algorithm: token_bucket, requests: 2, window: 1s, burst: 5, key: "header:x-tenant"}}
  per-consumer: {{algorithm: fixed_window, requests: 3, window: 300s, key: consumer}}
  exact: {{algorithm: fixed_window, requests: 100, window: 30s, key: "header:x-run"}}
  per-route: {{algorithm: fixed_window, requests: 2, window: 300s, key: route}}
  per-ip: {{algorithm: fixed_window, requests: 3, window: 300s, key: ip}}
  per-tenant: {{algorithm: fixed_window, requests: 2, window: 300s, key: "claim:tenant"}}
routes:
  - {{name: cors, match: {{path_prefix: /cors/, methods: [GET, PUT]}}, upstream: echo, cors: {cors_block}}}
  - {{name: star, match: {{path_prefix: /star/}}, upstream: echo, cors: {{allow_origins: ["*"]}}}}
  - {{name: private, match: {{path_prefix: /private/}}, upstream: echo, access: {{allow: [10.0.0.0/8]}}}}
  - {{name: denied, match: {{path_prefix: /denied/}}, upstream: echo, access: {{allow: [127.0.0.0/8], deny: [127.0.0.1/32]}}}}
  - {{name: loopback, match: {{path_prefix: /loopback/}}, upstream: echo, access: {{allow: [127.0.0.0/8, "::1/128"]}}}}
  - {{name: xff, match: {{path_prefix: /xff/}}, upstream: echo, access: {{deny: [203.0.113.0/24]}}}}
  - {{name: keys, match: {{path_prefix: /keys/}}, upstream: echo, websocket: {{}}, cors: {cors_block}, auth: {{providers: [partners]}}}}
  - {{name: jwt, match: {{path_prefix: /jwt/}}, upstream: echo, auth: {{providers: [main]}}}}
  - {{name: jwt-hs, match: {{path_prefix: /jwt-hs/}}, upstream: echo, auth: {{providers: [shared-secret]}}}}
  - {{name: jwt-url, match: {{path_prefix: /jwt-url/}}, upstream: echo, auth: {{providers: [remote]}}}}
  - {{name: orders-read, match: {{path_prefix: /orders-read/}}, upstream: echo, auth: {{providers: [main]}},
      authorize: {{scopes: ["orders:read"], claims: {{tenant: acme}}}}}}
  - {{name: intro, match: {{path_prefix: /intro/}}, upstream: echo, auth: {{providers: [idp]}}}}
  - {{name: intro-scoped, match: {{path_prefix: /intro-scoped/}}, upstream: echo, auth: {{providers: [idp]}}, authorize: {{scopes: ["orders:read"]}}}}
  - {{name: hdr, match: {{path_prefix: /hdr/}}, upstream: echo, headers: {{request: {{set: {{x-gateway: causeway}}}}}}}}
  - {{name: rk1, match: {{path_prefix: /rk1/}}, upstream: echo, rate_limit: [per-route]}}
  - {{name: rk2, match: {{path_prefix: /rk2/}}, upstream: echo, rate_limit: [per-route]}}
  - {{name: ipk, match: {{path_prefix: /ipk/}}, upstream: echo, rate_limit: [per-ip]}}
  - {{name: tenantk, match: {{path_prefix: /tenantk/}}, upstream: echo, auth: {{providers: [main]}}, rate_limit: [per-tenant]}}
  - {{name: optional, match: {{path_prefix: /optional/}}, upstream: echo, auth: {{providers: [partners], optional: true}}}}
  - {{name: fixed, match: {{path_prefix: /fixed/}}, upstream: echo, rate_limit: [fixed5]}}
  - {{name: sliding, match: {{path_prefix: /sliding/}}, upstream: echo, rate_limit: [slide5]}}
  - {{name: bucket, match: {{path_prefix: /bucket/}}, upstream: echo, rate_limit: [bucket]}}
  - {{name: consumer, match: {{path_prefix: /consumer/}}, upstream: echo, auth: {{providers: [partners]}}, rate_limit: [per-consumer]}}
  - {{name: exact, match: {{path_prefix: /exact/}}, upstream: echo, rate_limit: [exact]}}
"""
    try:
        with running_gateway(CAUSEWAY, config, tmp, port) as gateway:
            cors(port)
            access(port)
            api_keys(port)
            limits(port)
            jwt_checks(port, jwt_keys, secret, JWKSHandler)
            introspection_checks(port)
            key_checks(port, jwt_keys)
            check("gateway still running", gateway.poll() is None)
        # Per-address connection limits, on a gateway of their own.
        config_limited = config.replace(f'"127.0.0.1:{port}"', f'"127.0.0.1:{limited}"').replace(
            f'"127.0.0.1:{admin}"', f'"127.0.0.1:{free_port()}"').replace("  trusted_proxies:", "  limits: {max_connections_per_ip: 3}\n  trusted_proxies:")
        with running_gateway(CAUSEWAY, config_limited, tmp, limited) as gateway:
            time.sleep(0.2)
            connections(limited)
            check("gateway still running (connection limits)", gateway.poll() is None)
        config_errors(tmp)
    finally:
        upstream.shutdown()
        jwks_server.shutdown()
        intro_server.shutdown()
    results.finish("policy")


if __name__ == "__main__":
    main()
