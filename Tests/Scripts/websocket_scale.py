#!/usr/bin/env python3
"""WebSocket at scale through the gateway (docs/websocket.md): memory, not speed.

Usage: websocket_scale.py path/to/causeway [--idle N] [--flood-mib M]   (defaults 10000, 1024)

A raw asyncio upstream (101 with the right accept; echo, or a flood of 64 KiB frames) and raw
asyncio clients, so neither side costs much per connection. Checks:
  * N idle WebSockets held open through one worker: all switched, a sample still echoes, and
    the gateway's RSS growth per connection is printed (target: <= 16 KiB);
  * M MiB pushed by the upstream through one WebSocket to a client reading at a fraction of
    that rate: every byte arrives and the gateway's RSS grows by less than 64 MiB (backpressure:
    a full client stops reads from the upstream).
Prints one line per check and 'N passed, N failed'.
"""
import asyncio, base64, hashlib, os, re, signal, struct, sys, tempfile, threading, time

from suite_support import Results, free_port, raise_file_limit, rss_kib, running_gateway

CAUSEWAY = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".build/debug/causeway")
IDLE = int(sys.argv[sys.argv.index("--idle") + 1]) if "--idle" in sys.argv else 10000
FLOOD_MIB = int(sys.argv[sys.argv.index("--flood-mib") + 1]) if "--flood-mib" in sys.argv else 1024
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
results = Results()
check = results.check


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


async def read_frame(reader):
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack(">H", await reader.readexactly(2))[0]
    elif length == 127:
        length = struct.unpack(">Q", await reader.readexactly(8))[0]
    key = await reader.readexactly(4) if second & 0x80 else None
    payload = await reader.readexactly(length)
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return first & 0x0F, payload


def frame(opcode, payload, mask):
    length = len(payload)
    head = bytes([0x80 | opcode])
    bit = 0x80 if mask else 0
    head += bytes([bit | length]) if length < 126 else bytes([bit | 126]) + struct.pack(">H", length) if length < 65536 \
        else bytes([bit | 127]) + struct.pack(">Q", length)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def upstream(reader, writer):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        key = re.search(rb"(?i)sec-websocket-key:\s*(\S+)", head).group(1)
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept_for(key) + b"\r\n\r\n")
        if b"/flood" in head.split(b"\r\n", 1)[0]:
            block = frame(2, os.urandom(65536), mask=False)
            for _ in range(FLOOD_MIB * 16):
                writer.write(block)
                await writer.drain()
            writer.write(frame(8, struct.pack(">H", 1000), mask=False))
            await writer.drain()
            await reader.read()
            return
        while True:
            opcode, payload = await read_frame(reader)
            if opcode == 8:
                writer.write(frame(8, payload, mask=False))
                await writer.drain()
                return
            # The gateway's keep-alive pings (ping_interval) are answered; the rest echoed.
            writer.write(frame(10 if opcode == 9 else opcode, payload, mask=False))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def open_ws(port, path):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    key = base64.b64encode(os.urandom(16))
    writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101") or accept_for(key) not in head:
        raise RuntimeError(head[:60])
    return reader, writer


async def idle_check(port, pid):
    before = rss_kib(pid)
    semaphore = asyncio.Semaphore(400)
    sockets = []

    async def one():
        async with semaphore:
            sockets.append(await open_ws(port, "/ws/echo"))

    started = time.monotonic()
    outcomes = await asyncio.gather(*(one() for _ in range(IDLE)), return_exceptions=True)
    failures = [o for o in outcomes if isinstance(o, Exception)]
    await asyncio.sleep(2)
    after = rss_kib(pid)
    per = (after - before) / max(len(sockets), 1)
    check(f"{IDLE} idle WebSockets switched through one worker", not failures,
          f"{len(failures)} failed {failures[:1]}, opened in {time.monotonic() - started:.1f} s")
    print(f"  gateway RSS {before} KiB -> {after} KiB: {per:.1f} KiB per idle WebSocket (client and upstream side)",
          flush=True)
    sample = sockets[:: max(len(sockets) // 50, 1)]
    ok = 0
    for reader, writer in sample:
        writer.write(frame(1, b"still here", mask=True))
        opcode, payload = await asyncio.wait_for(read_frame(reader), 10)
        while opcode == 9:  # the gateway's keep-alive ping, sent while the others opened
            writer.write(frame(10, payload, mask=True))
            opcode, payload = await asyncio.wait_for(read_frame(reader), 10)
        ok += opcode == 1 and payload == b"still here"
    check("a sample of 50 spread across them still echoes", ok == len(sample), f"{ok} of {len(sample)}")
    if IDLE >= 5000:  # fewer, and the gateway's fixed costs blur the figure
        check("memory per idle WebSocket <= 16 KiB", per <= 16, f"{per:.1f} KiB")
    for _, writer in sockets:
        writer.close()
    await asyncio.gather(*(w.wait_closed() for _, w in sockets), return_exceptions=True)


async def flood_check(port, pid):
    await asyncio.sleep(2)  # the idle connections' memory settles
    reader, writer = await open_ws(port, "/ws/flood")
    before = rss_kib(pid)
    peak = [before]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(pid))
            time.sleep(0.1)

    threading.Thread(target=sample, daemon=True).start()
    total = 0
    rate = 48 << 20  # bytes per second the client takes: well below what the upstream pushes
    started = time.monotonic()
    closed = False
    while True:
        chunk = await reader.read(1 << 18)
        if not chunk:
            break
        total += len(chunk)
        if chunk.endswith(b"\x88\x02\x03\xe8"):
            closed = True
            break
        ahead = total / rate - (time.monotonic() - started)
        if ahead > 0:
            await asyncio.sleep(ahead)
    took = time.monotonic() - started
    stop.set()
    writer.close()
    expected = FLOOD_MIB * 16 * (65536 + 10)
    growth = (peak[0] - before) / 1024
    check(f"{FLOOD_MIB} MiB to a client reading at 48 MiB/s: every byte arrives", closed and total >= expected,
          f"{total} of {expected + 4} bytes in {took:.1f} s")
    check("gateway RSS growth under 64 MiB meanwhile (backpressure)", growth < 64, f"peak growth {growth:.1f} MiB")


def main():
    # Each proxied WebSocket holds two sockets in the gateway: N of them need 2N files and more.
    limit = raise_file_limit(4 * IDLE)
    if limit < 2 * IDLE + 100:
        print(f"note: open file limit {limit}: only {(limit - 100) // 2} WebSockets fit", flush=True)
        globals()["IDLE"] = (limit - 100) // 2
    port, admin = free_port(), free_port()
    tmp = tempfile.mkdtemp(prefix="causeway-ws-scale-")
    ready = threading.Event()
    holder = {}

    def serve():
        loop = asyncio.new_event_loop()

        async def run():
            server = await asyncio.start_server(upstream, "127.0.0.1", 0, backlog=4096)
            holder["port"] = server.sockets[0].getsockname()[1]
            ready.set()
            await asyncio.Future()

        loop.run_until_complete(run())

    # The upstream runs in a process of its own: each side then has the file descriptors it needs.
    child = os.fork()
    if child == 0:
        threading.Thread(target=serve, daemon=True).start()
        ready.wait()
        with open(os.path.join(tmp, "upstream.port"), "w") as f:
            f.write(str(holder["port"]))
        while True:
            time.sleep(3600)
    for _ in range(100):
        if os.path.exists(os.path.join(tmp, "upstream.port")) and open(os.path.join(tmp, "upstream.port")).read():
            break
        time.sleep(0.05)
    upstream_port = int(open(os.path.join(tmp, "upstream.port")).read())
    config = f"""
server: {{workers: 1, admin: {{address: "127.0.0.1:{admin}"}}}}
listeners:
  - {{name: plain, address: "127.0.0.1:{port}", protocols: [http1], limits: {{max_connections: 30000}}}}
upstreams:
  ws: {{endpoints: [{{address: "127.0.0.1:{upstream_port}"}}]}}
routes:
  - {{name: ws, match: {{path_prefix: /ws/}}, upstream: ws, websocket: {{}}}}
"""
    try:
        with running_gateway(CAUSEWAY, config, tmp, port) as gateway:
            asyncio.run(idle_check(port, gateway.pid))
            asyncio.run(flood_check(port, gateway.pid))
            check("gateway still running", gateway.poll() is None)
    finally:
        os.kill(child, signal.SIGKILL)
    results.finish("websocket scale")


if __name__ == "__main__":
    main()
