#!/usr/bin/env python3
"""Event-stream fan-out (`sse.fanout`) through the gateway, end to end (docs/sse.md).

Usage: sse_fanout_suite.py path/to/causeway [--clients N]   (default 10000)

Starts an asyncio SSE upstream that counts its subscriptions and publishes events on command,
and the gateway (two workers, so clients land on both event loops) with a fan-out route. Checks: clients of one URL share one
subscription and each gets every event; another Authorization gets its own; Last-Event-ID
replays from the buffer; a client that stops reading is dropped with a comment while the
others go on; heartbeats; the upstream dropping is reconnected with Last-Event-ID and clients
stay; the last client leaving closes the subscription; the upstream refusing reaches clients;
and N clients on one subscription, with the gateway's memory per client printed.
Prints one line per check and 'N passed, N failed'.
"""
import asyncio, os, socket, sys, tempfile, threading, time

from suite_support import Results, free_port, raise_file_limit, rss_kib, running_gateway

CAUSEWAY = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".build/debug/causeway")
CLIENTS = int(sys.argv[sys.argv.index("--clients") + 1]) if "--clients" in sys.argv else 10000
results = Results()
check = results.check


# ---------------------------------------------------------------------------------------------
# Upstream: GET /feed/<name> subscribes; publish() sends an event to every subscriber of a path.

class Upstream:
    def __init__(self):
        self.subscribers = {}   # path -> set of writers
        self.subscriptions = []  # (path, headers) per subscription ever made
        self.loop = None
        ready = threading.Event()
        threading.Thread(target=self.run, args=(ready,), daemon=True).start()
        ready.wait()

    def run(self, ready):
        self.loop = asyncio.new_event_loop()

        async def main():
            server = await asyncio.start_server(self.handle, "127.0.0.1", 0, limit=1 << 20)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            await asyncio.Future()

        self.loop.run_until_complete(main())

    async def handle(self, reader, writer):
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        except Exception:
            writer.close()
            return
        path = head.split(" ", 2)[1]
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head.split("\r\n")[1:] if line)}
        self.subscriptions.append((path, headers))
        if "refuse" in path:
            writer.write(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\n\r\nno")
            await writer.drain()
            writer.close()
            return
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        await writer.drain()
        self.subscribers.setdefault(path, set()).add(writer)
        try:
            await reader.read()  # until the gateway closes the subscription
        except Exception:
            pass
        self.subscribers.get(path, set()).discard(writer)
        writer.close()

    def _publish(self, path, event):
        for writer in list(self.subscribers.get(path, ())):
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))

    def publish(self, path, event_id, data):
        event = (f"id: {event_id}\n" if event_id is not None else "").encode() + b"data: " + data + b"\n\n"
        self.loop.call_soon_threadsafe(self._publish, path, event)

    def publish_raw(self, path, data):
        def send():
            for writer in list(self.subscribers.get(path, ())):
                writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.loop.call_soon_threadsafe(send)

    def drop(self, path):
        def close_all():
            for writer in list(self.subscribers.get(path, ())):
                writer.transport.abort()
        self.loop.call_soon_threadsafe(close_all)

    def open_count(self, path):
        return len(self.subscribers.get(path, ()))

    def count(self, path):
        return sum(1 for p, _ in self.subscriptions if p == path)


# ---------------------------------------------------------------------------------------------
# Clients: raw HTTP/1.1 sockets; events are searched in the (chunked) bytes as they arrive.

class Client:
    def __init__(self, port, path, headers=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{extra}\r\n".encode())
        self.data = b""

    def read_until(self, needle, timeout=5):
        """Reads until `needle` arrived (looking only at new bytes, so megabytes stay cheap)."""
        deadline = time.monotonic() + timeout
        data = bytearray(self.data)
        found = needle in data
        while not found and time.monotonic() < deadline:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                chunk = self.sock.recv(1 << 20)
            except (socket.timeout, OSError):
                break
            if not chunk:
                break
            start = max(len(data) - len(needle), 0)
            data += chunk
            found = data.find(needle, start) >= 0
        self.data = bytes(data[-65536:]) if len(data) > 1 << 20 else bytes(data)
        return found

    def close(self):
        self.sock.close()


def wait_for(predicate, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def checks(port, upstream):
    # One subscription for three clients; each gets every event.
    clients = [Client(port, "/fan/feed/a") for _ in range(3)]
    check("three clients (on both event loops), one upstream subscription", wait_for(lambda: upstream.open_count("/feed/a") == 1)
          and upstream.count("/feed/a") == 1, f"{upstream.count('/feed/a')} subscriptions")
    time.sleep(0.2)
    for i in range(1, 6):
        upstream.publish("/feed/a", i, f"a{i}".encode())
    got = [all(c.read_until(f"data: a{i}\n\n".encode()) for i in range(1, 6)) for c in clients]
    check("each client gets every event, in order", all(got) and all(
        c.data.index(b"data: a1") < c.data.index(b"data: a5") for c in clients), f"{got}")
    # Another identity: its own subscription.
    other = Client(port, "/fan/feed/a", {"Authorization": "Bearer other"})
    check("another Authorization gets its own subscription", wait_for(lambda: upstream.open_count("/feed/a") == 2),
          f"{upstream.open_count('/feed/a')} open")
    other.close()
    # Last-Event-ID: the events after it come from the replay buffer, then live ones.
    late = Client(port, "/fan/feed/a", {"Last-Event-ID": "2"})
    replayed = late.read_until(b"data: a5\n\n")
    upstream.publish("/feed/a", 6, b"a6")
    live = late.read_until(b"data: a6\n\n")
    check("Last-Event-ID 2 replays events 3 to 5, then live ones",
          replayed and live and b"data: a2\n" not in late.data and b"data: a3\n" in late.data, f"{late.data[-80:]!r}")
    check("no new subscription for a resuming client", upstream.count("/feed/a") == 2, f"{upstream.count('/feed/a')}")
    # Heartbeats (route heartbeat: 1 s).
    check("a keep-alive comment after a second of upstream silence", clients[0].read_until(b": keep-alive\n\n", timeout=3))

    # A client that stops reading is dropped; the others are not held back.
    for c in clients[1:] + [late]:
        c.close()
    clients = clients[:1]
    slow = Client(port, "/fan/feed/a")
    time.sleep(0.2)
    big = b"x" * 65536
    started = time.monotonic()
    # 16 MiB: more than the kernel's socket buffers can hide.
    for i in range(100, 356):
        upstream.publish("/feed/a", i, big)
    fast_ok = clients[0].read_until(b"id: 355\n", timeout=20)
    took = time.monotonic() - started
    tail = bytearray()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not tail.endswith(b"0\r\n\r\n"):
        slow.sock.settimeout(2)
        try:
            chunk = slow.sock.recv(1 << 20)
        except socket.timeout:
            break
        if not chunk:
            break
        tail += chunk
    check("a client that stopped reading is dropped with a comment saying why",
          b": dropped:" in tail[-1024:] and tail.endswith(b"0\r\n\r\n"), f"{len(tail)} bytes, tail {bytes(tail[-40:])!r}")
    check("the other clients got all 16 MiB meanwhile", fast_ok, f"{took:.2f} s")
    slow.close()

    # The upstream drops: the subscription comes back with Last-Event-ID; clients stay.
    before = upstream.count("/feed/a")
    upstream.drop("/feed/a")
    back = wait_for(lambda: upstream.count("/feed/a") > before and upstream.open_count("/feed/a") == 1, timeout=5)
    last = upstream.subscriptions[-1][1].get("last-event-id")
    time.sleep(0.1)
    upstream.publish("/feed/a", 200, b"after-reconnect")
    delivered = all(c.read_until(b"data: after-reconnect\n\n") for c in clients)
    check("upstream dropped: reconnected with Last-Event-ID 355, clients kept their streams",
          back and last == "355" and delivered, f"back={back} last-event-id={last} delivered={delivered}")
    # A hostile upstream: 2 MiB without a blank line. Never buffered past 1 MiB: the
    # subscription drops it and comes back; the clients keep their streams.
    before = upstream.count("/feed/a")
    upstream.publish_raw("/feed/a", b"data: " + b"y" * (2 << 20))
    back = wait_for(lambda: upstream.count("/feed/a") > before and upstream.open_count("/feed/a") == 1, timeout=5)
    time.sleep(0.1)
    upstream.publish("/feed/a", 201, b"after-flood")
    delivered = all(c.read_until(b"data: after-flood\n\n") for c in clients)
    check("an upstream event over 1 MiB with no end: subscription renewed, clients keep their streams",
          back and delivered and all(b"yyyyyyyy" not in c.data for c in clients), f"back={back} delivered={delivered}")
    # The last client leaving closes the subscription.
    for c in clients:
        c.close()
    check("the last client leaving closes the upstream subscription", wait_for(lambda: upstream.open_count("/feed/a") == 0))
    # The upstream refuses the subscription: the clients hear its status.
    refused = Client(port, "/fan/feed/refuse")
    refused.read_until(b"\r\n\r\n")
    check("an upstream 403 reaches the waiting client", refused.data.startswith(b"HTTP/1.1 403"), f"{refused.data[:30]!r}")
    refused.close()


async def many(port, upstream, gateway_pid, count):
    """`count` clients on one subscription: one event reaches all; memory per client."""
    before = rss_kib(gateway_pid)
    writers, readers = [], []
    semaphore = asyncio.Semaphore(500)

    async def open_one():
        async with semaphore:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /fan/feed/many HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")
            readers.append(reader)
            writers.append(writer)

    started = time.monotonic()
    await asyncio.gather(*(open_one() for _ in range(count)))
    opened = time.monotonic() - started
    await asyncio.sleep(1)
    after = rss_kib(gateway_pid)
    per_client = (after - before) / count
    check(f"{count} clients connected, one upstream subscription", upstream.count("/feed/many") == 1,
          f"{upstream.count('/feed/many')} subscriptions, opened in {opened:.1f} s")
    print(f"  gateway RSS {before} KiB -> {after} KiB: {per_client:.1f} KiB per fan-out client", flush=True)
    upstream.publish("/feed/many", 1, b"to-everyone")
    started = time.monotonic()

    async def got(reader):
        try:
            await asyncio.wait_for(reader.readuntil(b"data: to-everyone\n\n"), 30)
            return True
        except Exception:
            return False

    delivered = sum(await asyncio.gather(*(got(r) for r in readers)))
    took = time.monotonic() - started
    check(f"one event reaches all {count} clients", delivered == count, f"{delivered} in {took:.2f} s")
    for writer in writers:
        writer.close()
    await asyncio.gather(*(writer.wait_closed() for writer in writers), return_exceptions=True)
    for _ in range(150):
        if upstream.open_count("/feed/many") == 0:
            break
        await asyncio.sleep(0.1)
    check("all left: the subscription closes", upstream.open_count("/feed/many") == 0)


def main():
    raise_file_limit(3 * CLIENTS)
    upstream = Upstream()
    port, admin = free_port(), free_port()
    config = f"""
server: {{workers: 2, admin: {{address: "127.0.0.1:{admin}"}}}}
listeners:
  - {{name: plain, address: "127.0.0.1:{port}", protocols: [http1, h2c], limits: {{max_connections: 30000}}}}
upstreams:
  feeds: {{endpoints: [{{address: "127.0.0.1:{upstream.port}"}}]}}
routes:
  - {{name: fan, match: {{path_prefix: /fan/}}, upstream: feeds, rewrite: {{path_prefix: /}}, timeout: 2s,
      sse: {{fanout: true, replay: 50, heartbeat: 1s}}}}
"""
    with running_gateway(CAUSEWAY, config, tempfile.mkdtemp(prefix="causeway-fanout-"), port) as gateway:
        checks(port, upstream)
        asyncio.run(many(port, upstream, gateway.pid, CLIENTS))
        check("gateway still running", gateway.poll() is None)
    results.finish("sse fan-out")


if __name__ == "__main__":
    main()
