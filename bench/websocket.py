#!/usr/bin/env python3
"""WebSocket proxying: Causeway against nginx and Caddy on this machine, same upstream, same load.

Method
  * Upstream: a Python `websockets` echo server (CPU 1). Proxies, one worker each, pinned to
    CPU 0: nginx (`proxy_http_version 1.1` + Upgrade/Connection headers) and Causeway
    (`workers: 1`, a `websocket` route). The load generator (Python, asyncio) shares CPU 1.
  * Messages: CONNECTIONS connections each send a 128-byte text message and wait for its echo,
    in a loop, for DURATION seconds. The figure to compare is the proxy's own CPU time
    (utime+stime from /proc/PID/stat) per echoed message; medians over ROUNDS interleaved
    rounds. The load generator is the bottleneck, not the proxies, so messages/s is not a
    comparison; CPU per message is.
  * Idle: IDLE connections opened and held; the proxy's RSS growth per connection.
  * Ratios are printed against nginx.

Usage: bench/websocket.py [--causeway .build/release/causeway] [--duration 10] [--rounds 3]
                          [--connections 100] [--idle 2000]
Build first with scripts/build-release.sh (bench/websocket.sh does). Needs nginx, caddy (skipped
when absent) and `pip install websockets`.
"""
import argparse, asyncio, os, resource, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import nginx_config, nginx_worker, rss, start_causeway, stop, ticks  # noqa: E402

from websockets.asyncio.client import connect

UPSTREAM, NGINX, CADDY, CAUSEWAY, ADMIN = 18390, 18391, 18392, 18393, 18394




async def echo_load(port, connections, duration):
    message = "m" * 128
    count = 0
    stop = time.monotonic() + duration

    async def one():
        nonlocal count
        async with connect(f"ws://127.0.0.1:{port}/echo", compression=None, ping_interval=None) as ws:
            while time.monotonic() < stop:
                await ws.send(message)
                await ws.recv()
                count += 1

    await asyncio.gather(*(one() for _ in range(connections)))
    return count


async def hold_idle(port, count, pid):
    before = rss(pid)
    sockets = []
    for start in range(0, count, 200):
        sockets += await asyncio.gather(*(connect(f"ws://127.0.0.1:{port}/echo", compression=None, ping_interval=None)
                                          for _ in range(min(200, count - start))))
    await asyncio.sleep(1)
    grown = rss(pid) - before
    await asyncio.gather(*(ws.close() for ws in sockets))
    return grown / count


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--causeway", default=".build/release/causeway")
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--idle", type=int, default=2000)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = tempfile.mkdtemp(prefix="causeway-wsbench-")
    processes = []
    try:
        upstream_code = (
            "import asyncio\nfrom websockets.asyncio.server import serve\n"
            "async def echo(ws):\n    async for m in ws:\n        await ws.send(m)\n"
            f"async def main():\n    async with serve(echo, '127.0.0.1', {UPSTREAM}, compression=None, ping_interval=None):\n"
            "        await asyncio.Future()\nasyncio.run(main())\n")
        processes.append(subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", upstream_code]))
        with open(f"{tmp}/nginx.conf", "w") as f:
            f.write(nginx_config(tmp, NGINX, UPSTREAM, 'proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade";'))
        nginx = subprocess.Popen(["taskset", "-c", "0", "nginx", "-c", f"{tmp}/nginx.conf", "-p", tmp])
        processes.append(nginx)
        causeway = start_causeway(args.causeway, tmp, "causeway", f"""server: {{workers: 1, admin: {{address: "127.0.0.1:{ADMIN}"}}}}
listeners: [{{name: bench, address: "127.0.0.1:{CAUSEWAY}", limits: {{max_connections: 65536}}}}]
upstreams: {{echo: {{endpoints: [{{address: "127.0.0.1:{UPSTREAM}"}}]}}}}
routes: [{{name: ws, match: {{path_prefix: /}}, upstream: echo, websocket: {{}}}}]
""")
        processes.append(causeway)
        caddy = None
        if shutil.which("caddy"):
            with open(f"{tmp}/Caddyfile", "w") as f:
                f.write(f"{{\n  admin off\n  auto_https off\n}}\nhttp://127.0.0.1:{CADDY} {{\n"
                        f"  reverse_proxy 127.0.0.1:{UPSTREAM}\n}}\n")
            caddy = subprocess.Popen(["taskset", "-c", "0", "caddy", "run", "--config", f"{tmp}/Caddyfile", "--adapter", "caddyfile"],
                                     env=dict(os.environ, GOMAXPROCS="1", HOME=tmp, XDG_DATA_HOME=tmp, XDG_CONFIG_HOME=tmp),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            processes.append(caddy)
        time.sleep(2)
        pids = {"nginx": nginx_worker(nginx.pid), "causeway": causeway.pid}
        ports = {"nginx": NGINX, "causeway": CAUSEWAY}
        if caddy:
            pids["caddy"], ports["caddy"] = caddy.pid, CADDY
        # The load generator on CPU 1, beside the upstream.
        os.sched_setaffinity(0, {1})
        for name in pids:
            asyncio.run(echo_load(ports[name], 10, 1))  # warm-up
        per_message = {name: [] for name in pids}
        for round_ in range(args.rounds):
            for name, pid in pids.items():
                before = ticks(pid)
                count = asyncio.run(echo_load(ports[name], args.connections, args.duration))
                cpu = (ticks(pid) - before) / os.sysconf("SC_CLK_TCK") * 1e6 / max(count, 1)
                per_message[name].append(cpu)
                print(f"[bench] round {round_ + 1} {name:9} {count / args.duration:8.0f} msg/s  cpu {cpu:6.2f} us/msg", file=sys.stderr)
        idle = {name: asyncio.run(hold_idle(ports[name], args.idle, pid)) for name, pid in pids.items()}
        print(f"\nWebSocket echo, {args.connections} connections, 128-byte messages "
              f"({args.duration:.0f} s x {args.rounds} rounds, medians); idle: {args.idle} connections\n")
        print("proxy     CPU us/message  vs nginx  RSS per idle WebSocket  vs nginx")
        base_cpu = statistics.median(per_message["nginx"])
        for name in pids:
            cpu = statistics.median(per_message[name])
            print(f"{name:9} {cpu:14.2f}  {cpu / base_cpu:8.2f}  {idle[name] / 1024:18.1f} KiB  {idle[name] / max(idle['nginx'], 1):8.2f}")
    finally:
        stop(processes, tmp)


if __name__ == "__main__":
    main()
