#!/usr/bin/env python3
"""Event-stream fan-out: CPU per delivered event, Causeway's `sse.fanout` against the same
clients on independently proxied streams (Causeway without fan-out, and nginx).

Method
  * Upstream: an asyncio SSE server (CPU 1) that writes one 100-byte event every INTERVAL ms
    to every open stream (one ticker for all, so every setup sees the same events).
  * Proxies, one worker each, pinned to CPU 0: Causeway with `sse: {fanout: true}` (one
    upstream subscription for all clients), Causeway without it, and nginx
    (`proxy_buffering off`), each serving CLIENTS streams; every client opens its own stream.
  * Clients: asyncio raw sockets on CPU 1 counting event bytes. For DURATION seconds the
    proxy's own CPU time (utime+stime from /proc/PID/stat) is read and divided by the events
    delivered to clients. Medians over ROUNDS interleaved rounds.
  * Target (issue 12): fan-out CPU per delivered event <= 0.25 x independently proxied.

Usage: bench/sse.py [--causeway .build/release/causeway] [--clients 1000] [--duration 10]
                    [--rounds 3] [--interval-ms 100]
Build first with scripts/build-release.sh (bench/sse.sh does). Needs nginx.
"""
import argparse, asyncio, os, resource, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import nginx_config, nginx_worker, start_causeway, stop, ticks  # noqa: E402

UPSTREAM, NGINX, FANOUT, PLAIN, ADMIN1, ADMIN2 = 18490, 18491, 18492, 18493, 18494, 18495
EVENT = b"data: " + b"x" * 92 + b"\n\n"  # 100 bytes


UPSTREAM_CODE = f"""
import asyncio
writers = set()
CHUNK = b"%x\\r\\n%s\\r\\n" % ({len(EVENT)}, {EVENT!r})
async def handle(reader, writer):
    try:
        await reader.readuntil(b"\\r\\n\\r\\n")
    except Exception:
        writer.close(); return
    writer.write(b"HTTP/1.1 200 OK\\r\\ncontent-type: text/event-stream\\r\\ncache-control: no-cache\\r\\n"
                 b"transfer-encoding: chunked\\r\\n\\r\\n")
    writers.add(writer)
    try:
        await reader.read()
    except Exception:
        pass
    writers.discard(writer)
    writer.close()
async def ticker(interval):
    while True:
        await asyncio.sleep(interval)
        for w in list(writers):
            w.write(CHUNK)
async def main():
    import sys
    server = await asyncio.start_server(handle, "127.0.0.1", {UPSTREAM}, backlog=4096)
    await ticker(float(sys.argv[1]) / 1000)
asyncio.run(main())
"""


async def measure(port, clients, duration, pid):
    received = [0]
    readers, writers = [], []
    semaphore = asyncio.Semaphore(200)

    async def open_one():
        async with semaphore:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
            await reader.readuntil(b"\r\n\r\n")
            readers.append(reader)
            writers.append(writer)

    await asyncio.gather(*(open_one() for _ in range(clients)))
    stop = [False]

    async def drain(reader):
        while not stop[0]:
            data = await reader.read(65536)
            if not data:
                return
            received[0] += data.count(b"data: ")

    tasks = [asyncio.create_task(drain(r)) for r in readers]
    await asyncio.sleep(2)  # every stream flowing
    before_events, before_cpu = received[0], ticks(pid)
    await asyncio.sleep(duration)
    events, cpu = received[0] - before_events, ticks(pid) - before_cpu
    stop[0] = True
    for writer in writers:
        writer.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(1)
    return cpu / os.sysconf("SC_CLK_TCK") * 1e6 / max(events, 1), events / duration


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--causeway", default=".build/release/causeway")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--interval-ms", type=float, default=100)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = tempfile.mkdtemp(prefix="causeway-ssebench-")
    processes = []
    try:
        processes.append(subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", UPSTREAM_CODE, str(args.interval_ms)]))
        with open(f"{tmp}/nginx.conf", "w") as f:
            f.write(nginx_config(tmp, NGINX, UPSTREAM, 'proxy_set_header Connection ""; proxy_buffering off;'))
        nginx = subprocess.Popen(["taskset", "-c", "0", "nginx", "-c", f"{tmp}/nginx.conf", "-p", tmp])
        processes.append(nginx)
        pids = {"nginx": None}
        for name, port, admin, fanout in [("causeway", PLAIN, ADMIN2, "false"), ("fan-out", FANOUT, ADMIN1, "true")]:
            process = start_causeway(args.causeway, tmp, name, f"""server: {{workers: 1, admin: {{address: "127.0.0.1:{admin}"}}}}
listeners: [{{name: bench, address: "127.0.0.1:{port}", limits: {{max_connections: 65536}}}}]
upstreams: {{events: {{endpoints: [{{address: "127.0.0.1:{UPSTREAM}"}}], pool: {{max_connections: 65536}}}}}}
routes: [{{name: events, match: {{path_prefix: /}}, upstream: events, sse: {{fanout: {fanout}}}}}]
""")
            processes.append(process)
            pids[name] = process.pid
        time.sleep(2)
        pids["nginx"] = nginx_worker(nginx.pid)
        ports = {"nginx": NGINX, "causeway": PLAIN, "fan-out": FANOUT}
        os.sched_setaffinity(0, {1})
        results = {name: [] for name in pids}
        for round_ in range(args.rounds):
            for name, pid in pids.items():
                cpu, rate = asyncio.run(measure(ports[name], args.clients, args.duration, pid))
                results[name].append(cpu)
                print(f"[bench] round {round_ + 1} {name:9} {rate:8.0f} events/s delivered  cpu {cpu:6.2f} us/event",
                      file=sys.stderr)
        print(f"\nSSE, {args.clients} clients, one {len(EVENT)}-byte event every {args.interval_ms:.0f} ms to each "
              f"({args.duration:.0f} s x {args.rounds} rounds, medians)\n")
        print("proxy                         CPU us/delivered event  vs independent Causeway  vs nginx")
        plain = statistics.median(results["causeway"])
        base = statistics.median(results["nginx"])
        labels = {"nginx": "nginx (independent streams)", "causeway": "Causeway (independent)", "fan-out": "Causeway sse.fanout"}
        for name in ["nginx", "causeway", "fan-out"]:
            cpu = statistics.median(results[name])
            print(f"{labels[name]:29} {cpu:22.2f}  {cpu / plain:23.2f}  {cpu / base:8.2f}")
    finally:
        stop(processes, tmp)


if __name__ == "__main__":
    main()
