#!/usr/bin/env python3
"""Unary gRPC proxying: Causeway against nginx `grpc_pass`, same upstream, same load.

Method
  * Upstream: a grpcio server (raw bytes, a 16-byte reply) on CPU 1, over h2c.
  * Proxies, one worker each, pinned to CPU 0: nginx (`listen ... http2`, `grpc_pass`) and
    Causeway (`workers: 1`, an h2c listener, an h2c upstream).
  * Load: h2load on CPU 1 posting one fixed framed 32-byte message per call
    (`content-type: application/grpc`, `te: trailers`), CLIENTS connections x STREAMS streams,
    for DURATION seconds. The figure is the proxy's CPU time (utime+stime, /proc/PID/stat) per
    completed call; medians over ROUNDS interleaved rounds. The upstream is the bottleneck, so
    calls/s compares little; both run near the same rate.
  * Target (issue 13): unary CPU per call <= nginx's.
  * Transcoding: the same upstream also serves demo.v1.Greeter/SayHello (protos/demo.pb) with a
    fixed HelloReply; Causeway's CPU per call is measured for that method called as gRPC (POST,
    framed HelloRequest) and as REST/JSON (`GET /v1/greetings/bench`, answered as JSON), same
    connections and streams. Target: a transcoded call costs <= 2x a proxied one.

Usage: bench/grpc.py [--causeway .build/release/causeway] [--duration 10] [--rounds 3]
                     [--clients 4] [--streams 16]
Build first with scripts/build-release.sh (bench/grpc.sh does). Needs nginx, h2load, grpcio.
"""
import argparse, os, re, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import nginx_worker, start_causeway, stop, ticks  # noqa: E402

UPSTREAM, NGINX, CAUSEWAY, ADMIN = 18590, 18591, 18593, 18594

UPSTREAM_CODE = f"""
import grpc, time
from concurrent import futures
server = grpc.server(futures.ThreadPoolExecutor(8))
reply = b"r" * 16
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
    "demo.Echo", {{"Unary": grpc.unary_unary_rpc_method_handler(lambda request, context: reply)}}),))
# demo.v1.HelloReply {{message: "Hello, bench!", sequence: 1}}, hand-encoded.
hello = bytes.fromhex("0a0d") + b"Hello, bench!" + bytes.fromhex("1801")
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
    "demo.v1.Greeter", {{"SayHello": grpc.unary_unary_rpc_method_handler(lambda request, context: hello)}}),))
server.add_insecure_port("127.0.0.1:{UPSTREAM}")
server.start()
server.wait_for_termination()
"""


def h2load(port, args, payload, path="/demo.Echo/Unary"):
    body = ["-d", payload, "-H", "content-type: application/grpc", "-H", "te: trailers"] if payload else []
    out = subprocess.run(["taskset", "-c", "1", "h2load", "-c", str(args.clients), "-m", str(args.streams), "-D", str(args.duration)]
                         + body + [f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True).stdout
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    return (int(done.group(2)) if done else 0), out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--causeway", default=".build/release/causeway")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--streams", type=int, default=16)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="causeway-grpcbench-")
    payload = os.path.join(tmp, "call.bin")
    with open(payload, "wb") as f:
        f.write(b"\x00\x00\x00\x00\x20" + b"m" * 32)
    hello = os.path.join(tmp, "hello.bin")
    with open(hello, "wb") as f:
        f.write(b"\x00\x00\x00\x00\x07\x0a\x05bench")  # demo.v1.HelloRequest {name: "bench"}
    processes = []
    try:
        processes.append(subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", UPSTREAM_CODE]))
        with open(f"{tmp}/nginx.conf", "w") as f:
            f.write(f"""worker_processes 1; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off; client_body_temp_path {tmp}/b; proxy_temp_path {tmp}/p; fastcgi_temp_path {tmp}/f;
  uwsgi_temp_path {tmp}/u; scgi_temp_path {tmp}/s;
  # nginx ends a client connection after 1,000 requests by default (h2load then stalls):
  # raised on both sides so every proxy serves the whole run on its first connections.
  keepalive_requests 10000000;
  upstream grpcs {{ server 127.0.0.1:{UPSTREAM}; keepalive 128; keepalive_requests 10000000; }}
  server {{ listen 127.0.0.1:{NGINX} http2; location / {{ grpc_pass grpc://grpcs; }} }}
}}
""")
        nginx = subprocess.Popen(["taskset", "-c", "0", "nginx", "-c", f"{tmp}/nginx.conf", "-p", tmp])
        processes.append(nginx)
        causeway = start_causeway(args.causeway, tmp, "causeway", f"""server: {{workers: 1, admin: {{address: "127.0.0.1:{ADMIN}"}}}}
listeners: [{{name: bench, address: "127.0.0.1:{CAUSEWAY}", protocols: [h2c]}}]
upstreams: {{grpc: {{protocol: h2c, endpoints: [{{address: "127.0.0.1:{UPSTREAM}"}}]}}}}
routes:
  - {{name: greeter, match: {{path_prefix: /demo.v1.}}, upstream: grpc,
      grpc: {{transcode: {{descriptors: "{os.path.abspath("protos/demo.pb")}", services: [demo.v1.Greeter]}}}}}}
  - {{name: grpc, match: {{path_prefix: /}}, upstream: grpc}}
""")
        processes.append(causeway)
        time.sleep(2)
        pids = {"nginx": nginx_worker(nginx.pid), "causeway": causeway.pid}
        ports = {"nginx": NGINX, "causeway": CAUSEWAY}
        per_call = {name: [] for name in pids}
        for name in pids:  # warm-up, and a check that calls succeed at all
            done, out = h2load(ports[name], argparse.Namespace(**{**vars(args), "duration": 2}), payload)
            if done == 0:
                raise SystemExit(f"{name}: no call succeeded\n{out}")
        for round_ in range(args.rounds):
            for name, pid in pids.items():
                before = ticks(pid)
                done, _ = h2load(ports[name], args, payload)
                cpu = (ticks(pid) - before) / os.sysconf("SC_CLK_TCK") * 1e6 / max(done, 1)
                per_call[name].append(cpu)
                print(f"[bench] round {round_ + 1} {name:9} {done / args.duration:8.0f} calls/s  cpu {cpu:6.2f} us/call",
                      file=sys.stderr)
        print(f"\nUnary gRPC, {args.clients} connections x {args.streams} streams, 32-byte messages "
              f"({args.duration} s x {args.rounds} rounds, medians)\n")
        print("proxy     CPU us/call  vs nginx")
        base = statistics.median(per_call["nginx"])
        for name in pids:
            cpu = statistics.median(per_call[name])
            print(f"{name:9} {cpu:11.2f}  {cpu / base:8.2f}")

        # Transcoding: one method, called as gRPC and as REST/JSON, through Causeway alone.
        kinds = {"gRPC": (hello, "/demo.v1.Greeter/SayHello"), "REST/JSON": (None, "/v1/greetings/bench")}
        per_kind = {kind: [] for kind in kinds}
        for kind, (body, path) in kinds.items():
            done, out = h2load(CAUSEWAY, argparse.Namespace(**{**vars(args), "duration": 2}), body, path)
            if done == 0:
                raise SystemExit(f"{kind}: no call succeeded\n{out}")
        for round_ in range(args.rounds):
            for kind, (body, path) in kinds.items():
                before = ticks(causeway.pid)
                done, _ = h2load(CAUSEWAY, args, body, path)
                cpu = (ticks(causeway.pid) - before) / os.sysconf("SC_CLK_TCK") * 1e6 / max(done, 1)
                per_kind[kind].append(cpu)
                print(f"[bench] round {round_ + 1} {kind:9} {done / args.duration:8.0f} calls/s  cpu {cpu:6.2f} us/call",
                      file=sys.stderr)
        print(f"\ndemo.v1.Greeter/SayHello through Causeway, as gRPC and transcoded (medians)\n")
        print("call       CPU us/call  vs gRPC")
        base = statistics.median(per_kind["gRPC"])
        for kind in kinds:
            cpu = statistics.median(per_kind[kind])
            print(f"{kind:10} {cpu:11.2f}  {cpu / base:7.2f}")
    finally:
        stop(processes, tmp)


if __name__ == "__main__":
    main()
