#!/usr/bin/env python3
"""Sends one HTTP/2 request with a body and request trailers, as gRPC clients do, and prints
the answer as JSON: {"status": int, "body": str, "trailers": {name: value}}.

Usage: h2_trailers_client.py HOST PORT PATH [CA_FILE]   (with CA_FILE: h2 over TLS, else h2c)
"""
import json
import socket
import ssl
import sys

import h2.config
import h2.connection
import h2.events

host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sock = socket.create_connection((host, port), timeout=10)
if len(sys.argv) > 4:
    context = ssl.create_default_context(cafile=sys.argv[4])
    context.set_alpn_protocols(["h2"])
    sock = context.wrap_socket(sock, server_hostname="localhost")
    assert sock.selected_alpn_protocol() == "h2"
conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
conn.initiate_connection()
conn.send_headers(1, [(":method", "POST"), (":scheme", "https" if len(sys.argv) > 4 else "http"),
                      (":authority", "localhost"), (":path", path), ("te", "trailers")])
conn.send_data(1, b"request body")
conn.send_headers(1, [("x-checksum", "abc123")], end_stream=True)
sock.sendall(conn.data_to_send())
result = {"status": None, "body": "", "trailers": {}}
done = False
while not done:
    data = sock.recv(65536)
    if not data:
        break
    for event in conn.receive_data(data):
        if isinstance(event, h2.events.ResponseReceived):
            result["status"] = int(dict(event.headers)[":status"])
        elif isinstance(event, h2.events.DataReceived):
            result["body"] += event.data.decode()
            conn.acknowledge_received_data(event.flow_controlled_length, 1)
        elif isinstance(event, h2.events.TrailersReceived):
            result["trailers"] = dict(event.headers)
        elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
            done = True
    sock.sendall(conn.data_to_send())
print(json.dumps(result))
