#!/usr/bin/env python3
"""gRPC proxying through the gateway with real grpcio clients and servers (docs/grpc.md).

Usage: grpc_suite.py path/to/causeway

A grpcio server (generic handlers on raw bytes, so no generated code) behind the gateway over
h2c, and another over TLS (h2); clients over h2c and TLS. Checks: the four call kinds with
metadata, trailers and binary metadata, 1 MiB messages, gzip-compressed messages, upstream
statuses, deadlines (the caller's, forwarded reduced; grpc.default_timeout enforced by the
gateway with the upstream's call cancelled), cancellation by the client reaching the upstream,
grpc.max_message_size both ways, an upstream down (UNAVAILABLE), no route (UNIMPLEMENTED), a
non-gRPC upstream answer (mapped by the gRPC HTTP table), and a gRPC request over HTTP/1.1.
Hostile calls by hand (h2): grpc-timeout overflowing or malformed, a prefix claiming 4 GiB, a
message one byte at a time, 20,000 empty messages; others are served throughout.
"""
import os, subprocess, sys, tempfile, threading, time
from concurrent import futures

import base64, http.client

import grpc
import httpx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from h2_websocket import H2WebSocketConnection  # noqa: E402
from suite_support import Results, free_port, running_gateway  # noqa: E402

CAUSEWAY = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".build/debug/causeway")
results = Results()
check = results.check
SEEN = {"remaining": None, "cancelled": threading.Event(), "slow_cancelled": threading.Event()}


def unary(request, context):
    metadata = dict(context.invocation_metadata())
    SEEN["remaining"] = context.time_remaining()
    context.set_trailing_metadata((("x-trailer", "t1"), ("x-raw-bin", b"\x00\x01\xff")))
    if request.startswith(b"big:"):
        return b"x" * int(request[4:])
    return b"echo:" + request + metadata.get("x-hello", "").encode() + (metadata.get("x-key-bin") or b"")


def server_stream(request, context):
    for index in range(5):
        yield b"item%d" % index


def endless(request, context):
    context.add_callback(SEEN["cancelled"].set)
    while context.is_active():
        yield b"tick"
        time.sleep(0.05)


def client_stream(iterator, context):
    return b"+".join(iterator)


def bidi(iterator, context):
    for message in iterator:
        yield b"re:" + message


def fail(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


def slow(request, context):
    context.add_callback(SEEN["slow_cancelled"].set)
    time.sleep(2)
    return b"late"


HANDLERS = {
    "Unary": grpc.unary_unary_rpc_method_handler(unary),
    "Server": grpc.unary_stream_rpc_method_handler(server_stream),
    "Endless": grpc.unary_stream_rpc_method_handler(endless),
    "Client": grpc.stream_unary_rpc_method_handler(client_stream),
    "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
    "Fail": grpc.unary_unary_rpc_method_handler(fail),
    "Slow": grpc.unary_unary_rpc_method_handler(slow),
}


def start_server(credentials=None):
    server = grpc.server(futures.ThreadPoolExecutor(16), options=[("grpc.max_receive_message_length", 8 << 20)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("demo.Echo", HANDLERS),))
    port = server.add_secure_port("127.0.0.1:0", credentials) if credentials else server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def code_of(call):
    try:
        call()
        return None, ""
    except grpc.RpcError as error:
        return error.code(), error.details() or ""


def kinds(channel, name):
    response, call = channel.unary_unary("/demo.Echo/Unary").with_call(
        b"hi", metadata=(("x-hello", "world"), ("x-key-bin", b"\x00\xfe")), timeout=5)
    trailers = dict(call.trailing_metadata())
    check(f"{name}: unary with metadata, binary metadata and trailers passed intact",
          response == b"echo:hiworld\x00\xfe" and trailers.get("x-trailer") == "t1" and trailers.get("x-raw-bin") == b"\x00\x01\xff",
          f"{response!r} {trailers}")
    check(f"{name}: server streaming", list(channel.unary_stream("/demo.Echo/Server")(b"x", timeout=5))
          == [b"item%d" % i for i in range(5)])
    check(f"{name}: client streaming", channel.stream_unary("/demo.Echo/Client")(iter([b"a", b"b", b"c"]), timeout=5) == b"a+b+c")
    replies = list(channel.stream_stream("/demo.Echo/Bidi")(iter([b"1", b"2", b"3"]), timeout=5))
    check(f"{name}: bidirectional streaming", replies == [b"re:1", b"re:2", b"re:3"], f"{replies}")
    big = channel.unary_unary("/demo.Echo/Unary")(b"big:1048576", timeout=10)
    check(f"{name}: a 1 MiB response message", big == b"x" * 1048576, f"{len(big)} bytes")
    code, details = code_of(lambda: channel.unary_unary("/demo.Echo/Fail")(b"x", timeout=5))
    check(f"{name}: the upstream's status passes", code == grpc.StatusCode.NOT_FOUND and details == "no such thing",
          f"{code} {details}")


def raw_call(conn, path, timeout=None, data=None, end=True):
    """A hand-made gRPC call on `conn`; returns its stream id."""
    sid = conn.conn.get_next_available_stream_id()
    headers = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "127.0.0.1"),
               ("content-type", "application/grpc"), ("te", "trailers")]
    if timeout is not None:
        headers.append(("grpc-timeout", timeout))
    conn.conn.send_headers(sid, headers)
    if data is not None:
        conn.send_raw(sid, data)
    if end:
        conn.end(sid)
    conn.flush()
    return sid


def grpc_status(conn, sid, wait=5):
    conn.pump(lambda: sid in conn.trailers or (sid in conn.status and "grpc-status" in conn.status[sid])
              or sid in conn.resets, wait)
    fields = conn.trailers.get(sid) or conn.status.get(sid) or {}
    return fields.get("grpc-status")


def hostile(port, channel):
    """The worst a caller can send: each gets its documented answer, and others go on."""
    def still_serving():
        started = time.monotonic()
        ok = channel.unary_unary("/demo.Echo/Unary")(b"ok", timeout=5) == b"echo:ok"
        return ok and time.monotonic() - started < 1.0

    message = b"\x00\x00\x00\x00\x02hi"
    conn = H2WebSocketConnection(port)
    statuses = {value: grpc_status(conn, raw_call(conn, "/demo.Echo/Unary", value, message))
                for value in ["99999999H", "123456789S", "abcS", "-5S", "5", "1x", ""]}
    # Nothing caps it here (route timeout 0): the largest timeout must not overflow a deadline.
    statuses["99999999H, no route timeout"] = grpc_status(conn, raw_call(conn, "/untimed.Echo/Unary", "99999999H", message))
    check("grpc-timeout overflowing (saturated) or malformed (no timeout): the call still answers 0",
          all(status == "0" for status in statuses.values()) and still_serving(), f"{statuses}")
    # A prefix claiming a 4 GiB message: refused from its five bytes, nothing waited for.
    started = time.monotonic()
    huge = grpc_status(conn, raw_call(conn, "/demo.Echo/Unary", data=b"\x00\xff\xff\xff\xff", end=False))
    limited = grpc_status(conn, raw_call(conn, "/limited.Echo/Unary", data=b"\x01\x00\x00\x04\x01", end=False))
    check("a message prefix claiming 4 GiB (and 1025 bytes on a 1 KiB route): RESOURCE_EXHAUSTED at once",
          (huge, limited) == ("8", "8") and time.monotonic() - started < 2 and still_serving(), f"{huge} {limited}")
    # One byte at a time, slowly: the call is answered when its message is whole; others are
    # served meanwhile from the same loops.
    sid = raw_call(conn, "/demo.Echo/Unary", end=False)
    fast = True
    for byte in message:
        conn.send_raw(sid, bytes([byte]))
        fast = fast and still_serving()
        time.sleep(0.2)
    conn.end(sid)
    check("a message sent one byte per 200 ms is answered, others served meanwhile",
          grpc_status(conn, sid) == "0" and fast)
    # Thousands of empty messages in one body: counted, not buffered, answered by the upstream.
    sid = raw_call(conn, "/demo.Echo/Client", data=b"\x00\x00\x00\x00\x00" * 20000)
    check("20,000 empty messages in one client stream pass, others still served",
          grpc_status(conn, sid, wait=15) == "0" and still_serving())
    conn.close()


# gRPC-Web: a test client of its own (no package does both modes over HTTP/1.1 and h2).
def web_frame(message, flag=0):
    return bytes([flag]) + len(message).to_bytes(4, "big") + message


def web_decode_text(body):
    """grpc-web-text bodies come as base64 pieces, each padded: decode 4 characters at a time."""
    out = b""
    for index in range(0, len(body), 4):
        out += base64.b64decode(body[index:index + 4])
    return out


def web_frames(data):
    """(messages, trailers dict) from a gRPC-Web response body."""
    messages, trailers, index = [], {}, 0
    while index + 5 <= len(data):
        flag, length = data[index], int.from_bytes(data[index + 1:index + 5], "big")
        payload = data[index + 5:index + 5 + length]
        index += 5 + length
        if flag & 0x80:
            for line in payload.decode().split("\r\n"):
                if line:
                    name, _, value = line.partition(":")
                    trailers[name.strip().lower()] = value.strip()
        else:
            messages.append(payload)
    return messages, trailers, index == len(data)


def web_call_h1(port, path, message, text=False, chunked=False, headers=None, raw_body=None):
    """One gRPC-Web call over HTTP/1.1: (status, response headers, messages, trailers, well framed)."""
    body = web_frame(message)
    if text:
        body = base64.b64encode(body)
    if raw_body is not None:
        body = raw_body
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    kind = "application/grpc-web-text+proto" if text else "application/grpc-web+proto"
    all_headers = {"content-type": kind, "x-grpc-web": "1", **(headers or {})}
    if chunked:
        # Odd-sized pieces: the gateway decodes base64 across them.
        pieces = [body[i:i + 7] for i in range(0, len(body), 7)]
        conn.request("POST", path, body=iter(pieces), headers=all_headers, encode_chunked=True)
    else:
        conn.request("POST", path, body=body, headers=all_headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    if text:
        data = web_decode_text(data)
    messages, trailers, whole = web_frames(data)
    return response.status, {k.lower(): v for k, v in response.getheaders()}, messages, trailers, whole


def grpc_web(port, tls_port, cert):
    for text in (False, True):
        mode = "text" if text else "binary"
        status, headers, messages, trailers, whole = web_call_h1(port, "/web.Echo/Unary", b"hi", text=text, headers={"x-hello": "!"})
        check(f"gRPC-Web {mode} over HTTP/1.1: unary message and trailers as the 0x80 frame",
              status == 200 and messages == [b"echo:hi!"] and trailers.get("grpc-status") == "0"
              and trailers.get("x-trailer") == "t1" and whole, f"{status} {messages} {trailers}")
        # The upstream's codec suffix (none from grpcio) carries over.
        expected = "application/grpc-web-text" if text else "application/grpc-web"
        check(f"gRPC-Web {mode}: response content type {expected}", headers.get("content-type") == expected, f"{headers}")
        status, headers, messages, trailers, whole = web_call_h1(port, "/web.Echo/Server", b"s", text=text, chunked=True)
        check(f"gRPC-Web {mode} over HTTP/1.1: server streaming (request body chunked in odd pieces)",
              messages == [b"item%d" % i for i in range(5)] and trailers.get("grpc-status") == "0" and whole,
              f"{status} {messages} {trailers}")
        status, headers, messages, trailers, whole = web_call_h1(port, "/web.Echo/Fail", b"x", text=text)
        code = headers.get("grpc-status") or trailers.get("grpc-status")
        check(f"gRPC-Web {mode}: an upstream status (NOT_FOUND) reaches the browser", status == 200 and code == "5",
              f"{status} {headers} {trailers}")
    # Each streamed message is flushed: the first arrives while the stream goes on.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("POST", "/web.Echo/Endless", body=web_frame(b"x"), headers={"content-type": "application/grpc-web+proto"})
    response = conn.getresponse()
    first = response.read1(64) if hasattr(response, "read1") else response.read(9)
    check("gRPC-Web server streaming: each message flushed as it comes", first.startswith(web_frame(b"tick")), f"{first!r}")
    conn.close()
    status, headers, _, _, _ = web_call_h1(port, "/webdown.Echo/Unary", b"x")
    check("gRPC-Web: upstream down is UNAVAILABLE in the head, gRPC-Web content type",
          status == 200 and headers.get("grpc-status") == "14" and headers.get("content-type") == "application/grpc-web+proto"
          and headers.get("x-request-id"), f"{status} {headers}")
    status, headers, _, _, _ = web_call_h1(port, "/web.Echo/Unary", b"", text=True, raw_body=b"AAAAAAJoaQ=!")
    check("gRPC-Web text: a body that is not base64 gets a gRPC status, not a crash",
          status == 200 and headers.get("grpc-status") not in (None, "0"), f"{status} {headers}")
    # HTTP/2 (TLS, as browsers use it), binary and text.
    with httpx.Client(http2=True, verify=cert) as client:
        for text in (False, True):
            mode = "text" if text else "binary"
            body = web_frame(b"h2")
            response = client.post(f"https://localhost:{tls_port}/web.Echo/Server" if text else f"https://localhost:{tls_port}/web.Echo/Unary",
                                   content=base64.b64encode(body) if text else body,
                                   headers={"content-type": "application/grpc-web-text" if text else "application/grpc-web"})
            data = web_decode_text(response.content) if text else response.content
            messages, trailers, whole = web_frames(data)
            expected = [b"item%d" % i for i in range(5)] if text else [b"echo:h2"]
            check(f"gRPC-Web {mode} over HTTP/2 (TLS): {'server streaming' if text else 'unary'}",
                  response.http_version == "HTTP/2" and messages == expected and trailers.get("grpc-status") == "0" and whole,
                  f"{response.http_version} {messages} {trailers}")


def main():
    tmp = tempfile.mkdtemp(prefix="causeway-grpc-")
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    cert_pem, key_pem = open(cert, "rb").read(), open(key, "rb").read()
    plain_server, plain_port = start_server()
    tls_server, tls_port = start_server(grpc.ssl_server_credentials([(key_pem, cert_pem)]))
    not_grpc = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "h2_upstream.py"),
                                 os.path.join(tmp, "h2.port")], stdin=subprocess.PIPE)
    for _ in range(100):
        if os.path.exists(os.path.join(tmp, "h2.port")) and open(os.path.join(tmp, "h2.port")).read().strip():
            break
        time.sleep(0.05)
    h2_port = int(open(os.path.join(tmp, "h2.port")).read())
    port, gw_tls, admin, dead = free_port(), free_port(), free_port(), free_port()
    config = f"""
server: {{workers: 2, admin: {{address: "127.0.0.1:{admin}"}}}}
listeners:
  - {{name: plain, address: "127.0.0.1:{port}", protocols: [http1, h2c]}}
  - {{name: tls, address: "127.0.0.1:{gw_tls}", protocols: [h2, http1], tls: {{certificates: [{{cert: "{cert}", key: "{key}"}}]}}}}
upstreams:
  plain: {{protocol: h2c, endpoints: [{{address: "127.0.0.1:{plain_port}"}}]}}
  secure: {{protocol: h2, endpoints: [{{address: "127.0.0.1:{tls_port}"}}], tls: {{ca: "{cert}", server_name: localhost}}}}
  down: {{protocol: h2c, endpoints: [{{address: "127.0.0.1:{dead}"}}]}}
  notgrpc: {{protocol: h2c, endpoints: [{{address: "127.0.0.1:{h2_port}"}}]}}
routes:
  - {{name: down, match: {{path_prefix: /down.}}, upstream: down, rewrite: {{path_prefix: /demo.}}}}
  - {{name: notgrpc, match: {{path_prefix: /notgrpc.}}, upstream: notgrpc}}
  - {{name: limited, match: {{path_prefix: /limited.}}, upstream: plain, rewrite: {{path_prefix: /demo.}},
      grpc: {{default_timeout: 300ms, max_message_size: 1KiB}}}}
  - {{name: untimed, match: {{path_prefix: /untimed.}}, upstream: plain, rewrite: {{path_prefix: /demo.}}, timeout: 0}}
  - {{name: secure, match: {{path_prefix: /secure.}}, upstream: secure, rewrite: {{path_prefix: /demo.}}}}
  - {{name: web, match: {{path_prefix: /web.}}, upstream: plain, rewrite: {{path_prefix: /demo.}}, grpc: {{web: true}}}}
  - {{name: webdown, match: {{path_prefix: /webdown.}}, upstream: down, grpc: {{web: true}}}}
  - {{name: grpc, match: {{path_prefix: /demo.}}, upstream: plain}}
"""
    try:
        with running_gateway(CAUSEWAY, config, tmp, port) as gateway:
            plain = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 8 << 20)])
            kinds(plain, "h2c")
            tls = grpc.secure_channel(f"127.0.0.1:{gw_tls}", grpc.ssl_channel_credentials(cert_pem),
                                      options=[("grpc.ssl_target_name_override", "localhost"),
                                               ("grpc.max_receive_message_length", 8 << 20)])
            kinds(tls, "TLS")
            reply = tls.unary_unary("/secure.Echo/Unary")(b"s", timeout=5)
            check("TLS client to a TLS (h2) upstream", reply == b"echo:s", f"{reply!r}")
            gzip = grpc.insecure_channel(f"127.0.0.1:{port}", compression=grpc.Compression.Gzip)
            check("gzip-compressed messages pass through",
                  gzip.unary_unary("/demo.Echo/Unary")(b"z" * 5000, timeout=5) == b"echo:" + b"z" * 5000)

            # Deadlines.
            plain.unary_unary("/demo.Echo/Unary")(b"t", timeout=5)
            remaining = SEEN["remaining"]
            # grpcio rounds the timeout it sends up a little; the gateway's own is exact.
            check("the caller's grpc-timeout reaches the upstream", remaining is not None and 3.5 < remaining <= 5.1,
                  f"{remaining}")
            plain.unary_unary("/limited.Echo/Unary")(b"t")
            remaining = SEEN["remaining"]
            check("grpc.default_timeout (300ms) reaches the upstream, less the time spent in the gateway",
                  remaining is not None and 0.1 < remaining <= 0.3, f"{remaining}")
            started = time.monotonic()
            code, details = code_of(lambda: plain.unary_unary("/limited.Echo/Slow")(b"x"))
            took = time.monotonic() - started
            check("grpc.default_timeout 300ms enforced by the gateway: DEADLINE_EXCEEDED",
                  code == grpc.StatusCode.DEADLINE_EXCEEDED and took < 1.5, f"{code} {details!r} after {took:.2f} s")
            check("... and the upstream's call is cancelled", SEEN["slow_cancelled"].wait(3))

            # Cancellation by the client reaches the upstream.
            stream = plain.unary_stream("/demo.Echo/Endless")(b"x", timeout=10)
            next(stream)
            stream.cancel()
            check("a client's cancel resets the upstream's call", SEEN["cancelled"].wait(3))

            # Message size limit (1 KiB on /limited.), both ways.
            code, details = code_of(lambda: plain.unary_unary("/limited.Echo/Unary")(b"y" * 2048, timeout=5))
            check("a 2 KiB request message over max_message_size: RESOURCE_EXHAUSTED",
                  code == grpc.StatusCode.RESOURCE_EXHAUSTED, f"{code} {details!r}")
            code, details = code_of(lambda: plain.unary_unary("/limited.Echo/Unary")(b"big:2048", timeout=5))
            check("a 2 KiB response message over max_message_size: RESOURCE_EXHAUSTED",
                  code == grpc.StatusCode.RESOURCE_EXHAUSTED, f"{code} {details!r}")

            # The gateway's own errors as gRPC statuses.
            code, details = code_of(lambda: plain.unary_unary("/down.Echo/Unary")(b"x", timeout=5))
            check("upstream down: UNAVAILABLE", code == grpc.StatusCode.UNAVAILABLE, f"{code} {details!r}")
            code, details = code_of(lambda: plain.unary_unary("/nothing.Here/X")(b"x", timeout=5))
            check("no route: UNIMPLEMENTED", code == grpc.StatusCode.UNIMPLEMENTED, f"{code} {details!r}")
            code, details = code_of(lambda: plain.unary_unary("/notgrpc.Echo/X")(b"x", timeout=5))
            check("a non-gRPC answer (200 text/plain): UNKNOWN, saying so", code == grpc.StatusCode.UNKNOWN and "not gRPC" in details,
                  f"{code} {details!r}")
            answer = subprocess.run(["curl", "-s", "--http1.1", "-o", "-", "-w", "%{http_code}", "-H", "content-type: application/grpc",
                                     "--data-binary", "@/dev/null", f"http://127.0.0.1:{port}/demo.Echo/Unary"],
                                    capture_output=True, text=True).stdout
            check("gRPC over HTTP/1.1: 505 with a JSON error", answer.endswith("505") and "grpc_needs_http2" in answer, answer[-120:])
            grpc_web(port, gw_tls, cert)
            hostile(port, plain)
            check("gateway still running", gateway.poll() is None)
    finally:
        plain_server.stop(0)
        tls_server.stop(0)
        not_grpc.kill()
    results.finish("grpc")


if __name__ == "__main__":
    main()
