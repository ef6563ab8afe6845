#!/usr/bin/env python3
"""A scriptable HTTP/2 (h2c) upstream built on the Python h2 library, for behaviours nginx
cannot show: trailers both ways, what happens to a stream the client gave up on, GOAWAY and
REFUSED_STREAM.

Usage: h2_upstream.py PORT_FILE [CERT KEY]
Listens on 127.0.0.1 (a free port, written to PORT_FILE once ready); with CERT and KEY, h2 over
TLS (ALPN h2) instead of h2c. Paths:
  /headers   the request's header fields, pseudo-headers first, as a JSON list of pairs
  /trailers  echoes the request's trailers back as response trailers (prefixed "echo-"), after
             headers, a DATA frame and grpc-status: 0
  /hang      sends headers and one DATA frame, then never finishes
  /goaway    the first time: GOAWAY(last_stream_id=0) instead of an answer (the stream was not
             processed, so the client may retry it elsewhere); later: 200
  /refuse    the first time: RST_STREAM(REFUSED_STREAM); later: 200
  /events    a JSON list of what happened so far: "reset <path> <code>", "connection <n>"
  anything else: 200 "ok <path>"
"""
import json
import os
import socket
import ssl
import sys
import threading

import h2.config
import h2.connection
import h2.events
import h2.errors
import h2.exceptions

events = []
lock = threading.Lock()
once = set()
connections = 0


def record(entry):
    with lock:
        events.append(entry)


def first_time(key):
    with lock:
        if key in once:
            return False
        once.add(key)
        return True


def serve(sock):
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    paths, trailers, heads = {}, {}, {}
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    paths[event.stream_id] = dict(event.headers)[":path"]
                    heads[event.stream_id] = event.headers
                elif isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.TrailersReceived):
                    trailers[event.stream_id] = event.headers
                elif isinstance(event, h2.events.StreamReset):
                    record(f"reset {paths.get(event.stream_id)} {int(event.error_code)}")
                # /hang answers at once; the rest once the request (and its trailers) is in.
                hang = paths.get(event.stream_id) == "/hang" if hasattr(event, "stream_id") else False
                if (isinstance(event, h2.events.RequestReceived) and hang) or (
                        isinstance(event, h2.events.StreamEnded) and not hang):
                    respond(conn, event.stream_id, paths[event.stream_id], trailers.pop(event.stream_id, []),
                            heads.pop(event.stream_id, []))
            sock.sendall(conn.data_to_send())
    except (OSError, h2.exceptions.ProtocolError):
        return
    finally:
        sock.close()


def respond(conn, stream_id, path, request_trailers, request_headers):
    if path == "/goaway" and first_time("goaway"):
        conn.close_connection(error_code=h2.errors.ErrorCodes.NO_ERROR, last_stream_id=0)
        return
    if path == "/refuse" and first_time("refuse"):
        conn.reset_stream(stream_id, error_code=h2.errors.ErrorCodes.REFUSED_STREAM)
        return
    if path == "/trailers":
        conn.send_headers(stream_id, [(":status", "200"), ("content-type", "text/plain")])
        conn.send_data(stream_id, b"body before trailers\n")
        echoed = [("echo-" + name, value) for name, value in request_trailers]
        conn.send_headers(stream_id, [("grpc-status", "0")] + echoed, end_stream=True)
        return
    if path == "/hang":
        conn.send_headers(stream_id, [(":status", "200")])
        conn.send_data(stream_id, b"started\n")
        return
    if path == "/headers":
        body = json.dumps([list(pair) for pair in request_headers]).encode()
    else:
        body = json.dumps(events).encode() if path == "/events" else f"ok {path}\n".encode()
    conn.send_headers(stream_id, [(":status", "200"), ("content-length", str(len(body)))])
    conn.send_data(stream_id, body, end_stream=True)


def exit_with_parent():
    """The test that started us holds our stdin open; if it goes away without stopping us, so do we."""
    sys.stdin.read()
    os._exit(0)


def main():
    global connections
    threading.Thread(target=exit_with_parent, daemon=True).start()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    tls = None
    if len(sys.argv) > 3:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(sys.argv[2], sys.argv[3])
        tls.set_alpn_protocols(["h2"])
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(listener.getsockname()[1]))
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    while True:
        sock, _ = listener.accept()
        if tls:
            try:
                sock = tls.wrap_socket(sock, server_side=True)
            except (OSError, ssl.SSLError):
                sock.close()
                continue
        with lock:
            connections += 1
            events.append(f"connection {connections}")
        threading.Thread(target=serve, args=(sock,), daemon=True).start()


if __name__ == "__main__":
    main()
