#!/usr/bin/env python3
"""WebSocket through the gateway, end to end, with Python `websockets` clients and upstream
(docs/websocket.md).

Usage: websocket_suite.py path/to/causeway

Over HTTP/2 (RFC 8441, h2c and TLS) with a Python `h2` client: the SETTINGS, echo, many
WebSockets on one connection, the close handshake, RST_STREAM -> 1001 upstream, upstream lost ->
1011 and END_STREAM, 1009/1002, and the handshake's refusals.

Starts a `websockets` upstream (paths: /echo, /hold, /die, /proto, /stat?id=X), the gateway
with WebSocket routes (ws and wss), and checks: echo both ways over HTTP/1.1 and TLS, frames
sent with the handshake, message size limits (one frame, and across fragments) -> 1009 both
ways, idle -> 1001, upstream gone -> 1011, client gone -> 1001 upstream, subprotocol filtering,
unmasked client frames -> 1002, bad handshakes (400, 426), and upgrades on a route without
`websocket` refused before the upstream. Prints one line per check and 'N passed, N failed'.
"""
import asyncio, base64, json, os, signal, socket, ssl, struct, subprocess, sys, tempfile, threading, time

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from h2_websocket import H2WebSocketConnection, close_code  # noqa: E402
from suite_support import Results, free_port, running_gateway  # noqa: E402

CAUSEWAY = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".build/debug/causeway")
results = Results()
check = results.check
CLOSES = {}
HANDSHAKES = {"count": 0}


# ---------------------------------------------------------------------------------------------
# Upstream

async def handler(ws):
    path, _, query = ws.request.path.partition("?")
    name = path.rsplit("/", 1)[-1]
    params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
    try:
        if name == "echo":
            async for message in ws:
                await ws.send(message)
        elif name == "hold":
            await asyncio.sleep(30)
        elif name == "die":
            await asyncio.sleep(0.3)  # after the switch: mid-session
            ws.transport.abort()
        elif name == "proto":
            await ws.send(json.dumps({"chosen": ws.subprotocol,
                                      "offered": ws.request.headers.get("Sec-WebSocket-Protocol")}))
            async for message in ws:
                pass
        elif name == "stat":
            await ws.send(json.dumps(CLOSES.get(params.get("id"))))
    except ConnectionClosed:
        pass
    finally:
        if "id" in params and name != "stat":
            CLOSES[params["id"]] = ws.close_code


def count_handshake(connection, request):
    HANDSHAKES["count"] += 1
    return None


def choose_protocol(connection, offered):
    return offered[0] if offered else None


def start_upstream():
    ready = threading.Event()
    holder = {}

    def run():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)

        async def main():
            server = await serve(handler, "127.0.0.1", 0, process_request=count_handshake, compression=None,
                                 select_subprotocol=choose_protocol, max_size=8 << 20, ping_interval=None)
            holder["port"] = list(server.sockets)[0].getsockname()[1]
            ready.set()
            await asyncio.Future()

        loop.run_until_complete(main())

    threading.Thread(target=run, daemon=True).start()
    ready.wait()
    return holder["port"]


# ---------------------------------------------------------------------------------------------
# Checks

async def expect_close(ws, code, within=5.0):
    try:
        await asyncio.wait_for(ws.recv(), within)
        return False, "got a message instead of a close"
    except ConnectionClosed as closed:
        got = closed.rcvd.code if closed.rcvd else None
        return got == code, f"close {got}"
    except asyncio.TimeoutError:
        return False, "no close"


async def upstream_close(base, cid):
    for _ in range(40):
        async with connect(f"{base}/ws/stat?id={cid}", compression=None) as ws:
            code = json.loads(await ws.recv())
        if code is not None:
            return code
        await asyncio.sleep(0.05)
    return None


def raw_upgrade(port, path, headers, extra=b""):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sock.sendall(request.encode() + extra)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return sock, data


def frame(opcode, payload, masked=True):
    head = bytes([0x80 | opcode])
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    head += bytes([mask_bit | length]) if length < 126 else bytes([mask_bit | 126]) + struct.pack(">H", length)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_frame(sock, data=b""):
    while len(data) < 2:
        data += sock.recv(65536)
    length = data[1] & 0x7F
    offset = 2
    if length == 126:
        while len(data) < 4:
            data += sock.recv(65536)
        length = struct.unpack(">H", data[2:4])[0]
        offset = 4
    while len(data) < offset + length:
        data += sock.recv(65536)
    return data[0] & 0x0F, data[offset:offset + length]


KEY_HEADERS = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}


async def run_checks(port, tls_port, upstream_port, cafile):
    base = f"ws://127.0.0.1:{port}"
    context = ssl.create_default_context(cafile=cafile)
    context.check_hostname = False

    for name, url, kw in [("ws", base, {}), ("wss", f"wss://127.0.0.1:{tls_port}", {"ssl": context})]:
        async with connect(f"{url}/ws/echo", compression=None, max_size=8 << 20, **kw) as ws:
            await ws.send("hello")
            text = await ws.recv()
            await ws.send(b"\x00\x01" * 30000)
            binary = await ws.recv()
        check(f"{name}: text and 60 KB binary echoed", text == "hello" and binary == b"\x00\x01" * 30000)

    # A frame that arrives in the same packet as the handshake reaches the upstream.
    sock, answer = raw_upgrade(port, "/ws/echo", KEY_HEADERS, extra=frame(1, b"early"))
    status_ok = answer.startswith(b"HTTP/1.1 101")
    accept_ok = base64.b64encode(__import__("hashlib").sha1((KEY_HEADERS["Sec-WebSocket-Key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()) in answer
    opcode, payload = read_frame(sock, answer.split(b"\r\n\r\n", 1)[1])
    check("frame sent with the handshake is echoed; 101 with the right Sec-WebSocket-Accept",
          status_ok and accept_ok and opcode == 1 and payload == b"early", f"{answer[:40]!r} {payload!r}")
    # An unmasked client frame is a protocol error: close 1002.
    sock.sendall(frame(1, b"bare", masked=False))
    opcode, payload = read_frame(sock)
    code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
    check("unmasked client frame -> close 1002", opcode == 8 and code == 1002, f"opcode {opcode} code {code}")
    sock.close()

    # Text must be UTF-8, across fragments: 1007.
    sock, answer = raw_upgrade(port, "/ws/echo?id=utf", KEY_HEADERS)
    sock.sendall(frame(1, "é".encode()[:1], masked=True))  # a lone lead byte, message ends
    opcode, payload = read_frame(sock, answer.split(b"\r\n\r\n", 1)[1])
    code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
    sock.close()
    upstream = await upstream_close(base, "utf")
    check("invalid UTF-8 in a text message -> 1007 to both sides", opcode == 8 and code == 1007 and upstream == 1007,
          f"opcode {opcode} code {code}, upstream {upstream}")

    # Pings: every 500 ms of silence on /ping/. A client that answers stays; one that does not
    # is dropped and the upstream hears 1001.
    async with connect(f"{base}/ping/hold", compression=None) as ws:
        try:
            await asyncio.wait_for(ws.recv(), 1.8)
            stayed = False
        except asyncio.TimeoutError:
            stayed = True
    check("a client that answers the gateway's pings stays connected", stayed)
    sock, answer = raw_upgrade(port, "/ping/echo?id=mute", KEY_HEADERS)
    started = time.monotonic()
    opcode, payload = read_frame(sock, answer.split(b"\r\n\r\n", 1)[1])
    pinged = opcode == 9 and time.monotonic() - started < 1.0
    sock.settimeout(3)
    dropped = False
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                dropped = True
                break
    except (socket.timeout, ConnectionResetError):
        dropped = not isinstance(sys.exc_info()[1], socket.timeout)
    sock.close()
    upstream = await upstream_close(base, "mute")
    check("a client that ignores pings is dropped; the upstream hears 1001", pinged and dropped and upstream == 1001,
          f"pinged {pinged}, dropped {dropped}, upstream {upstream}")

    # Message size: 64 KiB on /ws/.
    async with connect(f"{base}/ws/echo?id=big", compression=None, max_size=8 << 20) as ws:
        await ws.send(b"x" * 100_000)
        ok, detail = await expect_close(ws, 1009)
    upstream = await upstream_close(base, "big")
    check("a 100 KB frame (limit 64 KiB) -> 1009 to the client and the upstream", ok and upstream == 1009,
          f"{detail}, upstream {upstream}")
    async with connect(f"{base}/ws/echo?id=frag", compression=None, max_size=8 << 20) as ws:
        await ws.send(["y" * 30_000, "y" * 30_000, "y" * 30_000])
        ok, detail = await expect_close(ws, 1009)
    upstream = await upstream_close(base, "frag")
    check("3 fragments of 30 KB (limit 64 KiB per message) -> 1009 both ways", ok and upstream == 1009,
          f"{detail}, upstream {upstream}")

    # Idle: 1 s on /idle/.
    started = time.monotonic()
    async with connect(f"{base}/idle/hold", compression=None) as ws:
        ok, detail = await expect_close(ws, 1001, within=4)
    check("no frame for idle_timeout -> close 1001", ok and time.monotonic() - started < 3, f"{detail}")

    # The upstream dies: the client hears 1011.
    async with connect(f"{base}/ws/die", compression=None) as ws:
        ok, detail = await expect_close(ws, 1011)
    check("upstream connection lost -> close 1011 to the client", ok, detail)

    # The client dies: the upstream hears 1001.
    ws = await connect(f"{base}/ws/echo?id=gone", compression=None)
    await ws.send("x")
    await ws.recv()
    ws.transport.abort()
    upstream = await upstream_close(base, "gone")
    check("client connection lost -> close 1001 to the upstream", upstream == 1001, f"upstream {upstream}")

    # Subprotocols: /proto/ allows chat.v1 only.
    async with connect(f"{base}/proto/proto", compression=None, subprotocols=["evil", "chat.v1"]) as ws:
        info = json.loads(await ws.recv())
        chosen = ws.subprotocol
    check("subprotocols filtered by the route's list", info["offered"] == "chat.v1" and chosen == "chat.v1", f"{info}")

    # Bad handshakes and routes without websocket: answered by the gateway, never upstream.
    before = HANDSHAKES["count"]
    sock, answer = raw_upgrade(port, "/plain/echo", KEY_HEADERS)
    sock.close()
    check("upgrade on a route without websocket -> 400", answer.startswith(b"HTTP/1.1 400"), f"{answer[:40]!r}")
    sock, answer = raw_upgrade(port, "/ws/echo", dict(KEY_HEADERS, **{"Sec-WebSocket-Version": "8"}))
    sock.close()
    check("version 8 -> 426 with Sec-WebSocket-Version: 13",
          answer.startswith(b"HTTP/1.1 426") and b"sec-websocket-version: 13" in answer.lower(), f"{answer[:60]!r}")
    sock, answer = raw_upgrade(port, "/ws/echo", dict(KEY_HEADERS, **{"Sec-WebSocket-Key": "c2hvcnQ="}))
    sock.close()
    check("a key that is not 16 bytes -> 400", answer.startswith(b"HTTP/1.1 400"), f"{answer[:40]!r}")
    check("none of those reached the upstream", HANDSHAKES["count"] == before, f"{HANDSHAKES['count'] - before} did")

    # Hostile frames and handshakes: each gets its answer, and others on the gateway go on.
    def attack(extra_headers=None, send=b"", read_close=True):
        sock, answer = raw_upgrade(port, "/ws/echo", dict(KEY_HEADERS, **(extra_headers or {})))
        if not answer.startswith(b"HTTP/1.1 101"):
            sock.close()
            return answer, None
        sock.sendall(send)
        code = None
        if read_close:
            opcode, payload = read_frame(sock, answer.split(b"\r\n\r\n", 1)[1])
            code = struct.unpack(">H", payload[:2])[0] if opcode == 8 and len(payload) >= 2 else (opcode, payload[:20])
        sock.close()
        return answer, code

    async def still_serving():
        started = time.monotonic()
        async with connect(f"{base}/ws/echo", compression=None) as ws:
            await ws.send("still")
            ok = await ws.recv() == "still"
        return ok and time.monotonic() - started < 1.0

    # A frame header claiming 2^63-1 bytes: refused before anything is buffered.
    _, code = attack(send=bytes([0x82, 0xFF]) + struct.pack(">Q", (1 << 63) - 1) + os.urandom(4))
    check("frame length 2^63-1 -> 1009, others still served", code == 1009 and await still_serving(), f"{code}")
    # A control frame over 125 bytes is a protocol error.
    _, code = attack(send=frame(9, b"p" * 126))
    check("ping with a 126-byte payload -> 1002, others still served", code == 1002 and await still_serving(), f"{code}")
    # 20,000 empty fragments of one message: no memory held, the loop keeps up.
    flood = bytes([0x01, 0x80]) + os.urandom(4) + (bytes([0x00, 0x80]) + b"\0\0\0\0") * 20000
    attack(send=flood, read_close=False)
    check("20,000 empty fragments: others still served", await still_serving())
    # Headers named in Connection are stripped toward the upstream: here the key itself, so
    # the upstream refuses and the client hears it, cleanly.
    answer, _ = attack({"Connection": "Upgrade, Sec-WebSocket-Key"})
    check("Connection naming Sec-WebSocket-Key -> a clean 4xx/5xx, others still served",
          answer[:10] in (b"HTTP/1.1 4", b"HTTP/1.1 5") and await still_serving(), f"{answer[:30]!r}")
    # A body where none belongs.
    answer, _ = attack({"Content-Length": "5"}, read_close=False)
    check("an upgrade with a body -> 400", answer.startswith(b"HTTP/1.1 400"), f"{answer[:30]!r}")

    # An upstream that never answers the upgrade: 504 at the route's timeout (1 s).
    started = time.monotonic()
    sock, answer = raw_upgrade(port, "/silent/x", KEY_HEADERS)
    sock.close()
    took = time.monotonic() - started
    check("an upstream silent after connect -> 504 at the route timeout", answer.startswith(b"HTTP/1.1 504") and took < 3,
          f"{answer[:30]!r} after {took:.1f} s")

    await h2_checks(port, tls_port, base, cafile)

    # The route's timeout (1 s) bounds the handshake only: tunnels outlive it, both protocols.
    h2 = H2WebSocketConnection(port)
    sid, _ = h2.open("/brief/echo")
    async with connect(f"{base}/brief/echo", compression=None, ping_interval=None) as ws:
        await asyncio.sleep(2.5)
        await ws.send("later")
        h1_ok = await ws.recv() == "later"
    h2.send(sid, 1, b"later")
    h2_ok = h2.recv(sid) == (1, b"later")
    h2.close()
    check("a WebSocket outlives the route's 1 s timeout (HTTP/1.1 and HTTP/2)", h1_ok and h2_ok, f"h1 {h1_ok} h2 {h2_ok}")


async def h2_checks(port, tls_port, base, cafile):
    for name, kw in [("h2c", {}), ("h2 over TLS", {"tls_context": tls_client_context(cafile)})]:
        conn = H2WebSocketConnection(tls_port if kw else port, **kw)
        scheme = "https" if kw else "http"
        check(f"{name}: SETTINGS_ENABLE_CONNECT_PROTOCOL = 1", conn.enables_connect_protocol, f"{conn.settings}")
        sid, head = conn.open("/ws/echo", scheme=scheme)
        status_ok = head is not None and head.get(":status") == "200" and "sec-websocket-accept" not in head
        conn.send(sid, 1, b"hello")
        text = conn.recv(sid)
        conn.send(sid, 2, b"\x00\x01" * 30000)
        binary = conn.recv(sid)
        check(f"{name}: extended CONNECT -> 200, text and 60 KB binary echoed",
              status_ok and text == (1, b"hello") and binary == (2, b"\x00\x01" * 30000), f"{head} {text}")
        conn.send(sid, 8, struct.pack(">H", 1000) + b"bye")
        reply = conn.recv(sid)
        check(f"{name}: close 1000 answered with close 1000, then the stream ends",
              close_code(reply) == 1000 and conn.wait_end(sid), f"{reply} ended={sid in conn.ended}")
        conn.close()

    # Many WebSockets share one connection, each with its own flow.
    conn = H2WebSocketConnection(port)
    sids = [conn.open(f"/ws/echo?n={i}")[0] for i in range(100)]
    for i, sid in enumerate(sids):
        conn.send(sid, 1, f"stream {i}".encode())
    echoes = [conn.recv(sid) for sid in sids]
    check("h2c: 100 WebSockets on one connection, each echoes its own",
          all(echo == (1, f"stream {i}".encode()) for i, echo in enumerate(echoes)),
          f"{sum(1 for i, e in enumerate(echoes) if e == (1, f'stream {i}'.encode()))} of 100")
    # RST_STREAM from the client: the upstream hears "going away"; the others go on.
    sid, _ = conn.open("/ws/echo?id=h2rst")
    conn.send(sid, 1, b"x")
    conn.recv(sid)
    conn.reset(sid)
    upstream = await upstream_close(base, "h2rst")
    conn.send(sids[0], 1, b"after")
    check("h2c: RST_STREAM -> 1001 to the upstream, other streams unaffected",
          upstream == 1001 and conn.recv(sids[0]) == (1, b"after"), f"upstream {upstream}")
    # The upstream dies mid-session: close 1011, then END_STREAM.
    sid, _ = conn.open("/ws/die")
    reply = conn.recv(sid)
    check("h2c: upstream lost -> close 1011 and the stream ends", close_code(reply) == 1011 and conn.wait_end(sid),
          f"{reply}")
    # The limits hold per stream.
    sid, _ = conn.open("/ws/echo")
    conn.send(sid, 2, b"x" * 100_000)
    code_big = close_code(conn.recv(sid))
    sid, _ = conn.open("/ws/echo")
    conn.send(sid, 1, b"bare", masked=False)
    code_bare = close_code(conn.recv(sid))
    check("h2c: a 100 KB frame -> 1009, an unmasked frame -> 1002", (code_big, code_bare) == (1009, 1002),
          f"{code_big} {code_bare}")
    # Refusals: they answer the stream, never the upstream.
    _, head_version = conn.open("/ws/echo", headers={"sec-websocket-version": "8"})
    _, head_plain = conn.open("/plain/echo")
    sid = conn.conn.get_next_available_stream_id()
    conn.conn.send_headers(sid, [(":method", "CONNECT"), (":authority", "127.0.0.1:1")])
    conn.flush()
    conn.pump(lambda: sid in conn.status or sid in conn.resets)
    statuses = [h.get(":status") if h else None for h in (head_version, head_plain, conn.status.get(sid))]
    check("h2c: version 8 -> 426, no websocket on the route -> 400, plain CONNECT -> 405",
          statuses == ["426", "400", "405"], f"{statuses}")
    conn.send(sids[-1], 1, b"still")
    check("h2c: the connection still serves its WebSockets", conn.recv(sids[-1]) == (1, b"still"))

    # Hostile streams: each gets its answer; the other WebSockets on the connection go on.
    sid, _ = conn.open("/ws/echo")
    conn.send_raw(sid, bytes([0x82, 0xFF]) + struct.pack(">Q", (1 << 63) - 1) + os.urandom(4))
    code = close_code(conn.recv(sid))
    conn.send(sids[1], 1, b"after")
    check("h2c: a frame header claiming 2^63-1 bytes -> 1009, other streams unaffected",
          code == 1009 and conn.recv(sids[1]) == (1, b"after"), f"{code}")
    sid, _ = conn.open("/ws/echo")
    whole = __import__("h2_websocket").ws_frame(1, b"slowly")
    for byte in whole:  # one byte per DATA frame, 50 ms apart
        conn.send_raw(sid, bytes([byte]))
        time.sleep(0.05)
    check("h2c: a frame sent one byte per DATA frame is echoed whole", conn.recv(sid) == (1, b"slowly"))
    sid = conn.conn.get_next_available_stream_id()
    conn.conn.send_headers(sid, [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"), (":path", "/ws/echo"),
                                 (":authority", "127.0.0.1"), ("sec-websocket-version", "13")], end_stream=True)
    conn.flush()
    conn.pump(lambda: sid in conn.status or sid in conn.resets)
    ended = conn.status.get(sid, {}).get(":status")
    conn.send(sids[2], 1, b"again")
    check("h2c: an extended CONNECT that ends its stream at once -> 405, others unaffected",
          ended == "405" and conn.recv(sids[2]) == (1, b"again"), f"{ended}")
    conn.close()


def tls_client_context(cafile):
    context = ssl.create_default_context(cafile=cafile)
    context.check_hostname = False
    return context


async def drain_check(port, gateway):
    """SIGTERM with tunnels open (HTTP/1.1 and an HTTP/2 stream): each client gets close 1001
    before the drain ends (2 s)."""
    h2 = H2WebSocketConnection(port)
    sid, _ = h2.open("/ws/echo")
    async with connect(f"ws://127.0.0.1:{port}/ws/echo", compression=None, ping_interval=None) as ws:
        await ws.send("x")
        await ws.recv()
        started = time.monotonic()
        gateway.send_signal(signal.SIGTERM)
        ok, detail = await expect_close(ws, 1001, within=4)
    check("SIGTERM: an open WebSocket gets close 1001 before drain_timeout", ok and time.monotonic() - started < 2.2,
          f"{detail} after {time.monotonic() - started:.2f} s")
    reply = h2.recv(sid, timeout=3)
    check("SIGTERM: a WebSocket on an HTTP/2 stream gets close 1001 too", close_code(reply) == 1001, f"{reply}")


def main():
    upstream_port = start_upstream()
    # An upstream that accepts connections and never answers.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    silent_port = silent.getsockname()[1]
    port, tls_port, admin = free_port(), free_port(), free_port()
    tmp = tempfile.mkdtemp(prefix="causeway-ws-")
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    config = f"""
server: {{workers: 2, drain_timeout: 2s, admin: {{address: "127.0.0.1:{admin}"}}}}
listeners:
  - {{name: plain, address: "127.0.0.1:{port}", protocols: [http1, h2c]}}
  - {{name: tls, address: "127.0.0.1:{tls_port}", protocols: [http1, h2], tls: {{certificates: [{{cert: "{cert}", key: "{key}"}}]}}}}
upstreams:
  ws: {{endpoints: [{{address: "127.0.0.1:{upstream_port}"}}]}}
  silent: {{endpoints: [{{address: "127.0.0.1:{silent_port}"}}]}}
routes:
  - {{name: silent, match: {{path_prefix: /silent/}}, upstream: silent, timeout: 1s, websocket: {{}}}}
  - {{name: ws, match: {{path_prefix: /ws/}}, upstream: ws, websocket: {{max_message_size: 64KiB, idle_timeout: 10s}}}}
  - {{name: idle, match: {{path_prefix: /idle/}}, upstream: ws, websocket: {{idle_timeout: 1s}}}}
  - {{name: proto, match: {{path_prefix: /proto/}}, upstream: ws, websocket: {{subprotocols: [chat.v1]}}}}
  - {{name: ping, match: {{path_prefix: /ping/}}, upstream: ws, websocket: {{ping_interval: 500ms}}}}
  - {{name: plain, match: {{path_prefix: /plain/}}, upstream: ws}}
  - {{name: brief, match: {{path_prefix: /brief/}}, upstream: ws, timeout: 1s, websocket: {{}}}}
"""
    try:
        with running_gateway(CAUSEWAY, config, tmp, port) as gateway:
            asyncio.run(run_checks(port, tls_port, upstream_port, cert))
            check("gateway still running", gateway.poll() is None)
            asyncio.run(drain_check(port, gateway))
    finally:
        silent.close()
    results.finish("websocket")


if __name__ == "__main__":
    main()
