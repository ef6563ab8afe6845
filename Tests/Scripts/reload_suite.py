#!/usr/bin/env python3
"""Reload under load, end to end, against the real binary (docs/operations.md).

Usage: reload_suite.py path/to/causeway

Starts an upstream (asyncio: `/events?n=N&ms=M` is an event stream, anything else a small
200), the gateway from a config file in a temporary directory, then, while `wrk` runs 20 s
of keep-alive load:
  * 100 reloads, alternately SIGHUP and POST /admin/reload, each changing the route's
    `x-config-version` response header; after each, a new request must see the new version
    within 1 s;
  * an event stream over HTTP/1.1 and one over HTTP/2 (h2c) stay open through all of them and
    must arrive whole;
and then asserts that wrk saw no failed request (no socket error, no non-2xx). Last, a broken
config is refused (SIGHUP and admin) with its errors, and traffic goes on.
"""
import asyncio, json, os, re, shutil, signal, socket, subprocess, sys, tempfile, threading, time, urllib.request

CAUSEWAY = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".build/debug/causeway")
RELOADS = 100
LOAD_SECONDS = 20
failures = []


def check(condition, message):
    print(("ok   " if condition else "FAIL ") + message, flush=True)
    if not condition:
        failures.append(message)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# Upstream

async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b" ", 2)[1].decode()
            if target.startswith("/events"):
                query = dict(part.split("=") for part in target.split("?", 1)[1].split("&"))
                count, interval = int(query.get("n", "3")), int(query.get("ms", "100")) / 1000
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
                for index in range(count):
                    event = b"id: %d\ndata: tick %d\n\n" % (index, index)
                    writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                    await writer.drain()
                    await asyncio.sleep(interval)
                writer.write(b"0\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\n\r\nok\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def start_upstream():
    ready = threading.Event()
    holder = {}

    def run():
        loop = asyncio.new_event_loop()
        server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096))
        holder["port"] = server.sockets[0].getsockname()[1]
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    ready.wait()
    return holder["port"]


# ---------------------------------------------------------------------------------------------
# Gateway

def config(version, port, admin, upstream):
    return f"""
server: {{workers: 2, drain_timeout: 2s, admin: {{address: "127.0.0.1:{admin}"}}}}
listeners:
  - {{name: main, address: "127.0.0.1:{port}", protocols: [http1, h2c]}}
upstreams:
  origin: {{endpoints: [{{address: "127.0.0.1:{upstream}"}}]}}
routes:
  - name: main
    match: {{path_prefix: /}}
    upstream: origin
    timeout: 0
    headers: {{response: {{set: {{x-config-version: "{version}"}}}}}}
"""


def version_of(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v", timeout=2) as response:
        return response.headers.get("x-config-version")


def admin(admin_port, method, path):
    request = urllib.request.Request(f"http://127.0.0.1:{admin_port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def main():
    upstream = start_upstream()
    port, admin_port = free_port(), free_port()
    directory = tempfile.mkdtemp(prefix="causeway-reload-")
    path = os.path.join(directory, "causeway.yaml")
    with open(path, "w") as f:
        f.write(config(0, port, admin_port, upstream))
    log = open(os.path.join(directory, "gateway.log"), "w+")
    gateway = subprocess.Popen([CAUSEWAY, "run", "-c", path], stdout=log, stderr=log)
    try:
        for _ in range(100):
            try:
                if version_of(port) == "0":
                    break
            except OSError:
                time.sleep(0.1)
        check(version_of(port) == "0", "gateway up with version 0")

        # Two event streams, 30 s each (one event every 100 ms), open across every reload.
        events = 300
        streams = {
            "http1": subprocess.Popen(["curl", "-sN", "--http1.1", f"http://127.0.0.1:{port}/events?n={events}&ms=100"],
                                      stdout=subprocess.PIPE),
            "h2c": subprocess.Popen(["curl", "-sN", "--http2-prior-knowledge", f"http://127.0.0.1:{port}/events?n={events}&ms=100"],
                                    stdout=subprocess.PIPE),
        }
        time.sleep(0.3)
        wrk = subprocess.Popen(["wrk", "-t2", "-c16", f"-d{LOAD_SECONDS}s", f"http://127.0.0.1:{port}/load"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(0.5)

        slowest = 0.0
        late = []
        gap = (LOAD_SECONDS - 2.0) / RELOADS
        for version in range(1, RELOADS + 1):
            started = time.monotonic()
            with open(path + ".tmp", "w") as f:
                f.write(config(version, port, admin_port, upstream))
            os.rename(path + ".tmp", path)
            if version % 2:
                gateway.send_signal(signal.SIGHUP)
            else:
                status, body = admin(admin_port, "POST", "/admin/reload")
                if status != 200:
                    late.append(f"reload {version}: {status} {body}")
            seen = None
            while time.monotonic() - started < 1.0:
                seen = version_of(port)
                if seen == str(version):
                    break
                time.sleep(0.01)
            took = time.monotonic() - started
            slowest = max(slowest, took)
            if seen != str(version):
                late.append(f"reload {version}: still {seen} after {took:.2f} s")
            time.sleep(max(0.0, gap - took))
        check(not late, f"{RELOADS} reloads (SIGHUP and POST /admin/reload), each served within 1 s "
                        f"(slowest {slowest * 1000:.0f} ms) {late[:3]}")

        output, _ = wrk.communicate(timeout=LOAD_SECONDS + 30)
        requests = re.search(r"(\d+) requests in", output)
        total = int(requests.group(1)) if requests else 0
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
        socket_errors = re.search(r"Socket errors: (.*)", output)
        check(total > 1000 and not bad and not socket_errors,
              f"wrk under reloads: {total} requests, non-2xx {bad.group(1) if bad else 0}, "
              f"socket errors {socket_errors.group(1) if socket_errors else 'none'}")

        for name, stream in streams.items():
            body, _ = stream.communicate(timeout=60)
            received = body.count(b"data: tick ")
            check(stream.returncode == 0 and received == events and f"data: tick {events - 1}".encode() in body,
                  f"{name} event stream open across {RELOADS} reloads: {received}/{events} events, curl exit {stream.returncode}")

        status, body = admin(admin_port, "GET", "/admin/config")
        check(status == 200 and body.get("version") == RELOADS + 1, f"GET /admin/config: version {body.get('version')}")

        # A broken config: refused, every error reported, traffic goes on.
        with open(path, "w") as f:
            f.write("listeners: [{name: main, address: nowhere}]\nroutes: [{upstream: ghost}]\n")
        status, body = admin(admin_port, "POST", "/admin/reload")
        errors = body.get("errors", [])
        check(status == 422 and len(errors) >= 2 and all(e.startswith(path + ":") for e in errors),
              f"broken config refused by POST /admin/reload with {len(errors)} errors: {errors[:2]}")
        gateway.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        log.flush()
        log.seek(0)
        text = log.read()
        check("reload refused" in text and path + ":" in text, "broken config refused on SIGHUP, errors logged")
        check(version_of(port) == str(RELOADS), "traffic goes on with the running config")
    finally:
        gateway.send_signal(signal.SIGTERM)
        try:
            gateway.wait(timeout=10)
        except subprocess.TimeoutExpired:
            gateway.kill()
        log.close()
        shutil.rmtree(directory, ignore_errors=True)
    print(f"reload: {'all passed' if not failures else f'{len(failures)} failed'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
