#!/usr/bin/env python3
"""HTTP/2 conformance cases in the manner of h2spec (generic, RFC 7540/9113 and HPACK sections),
each on a fresh connection, with frames built byte by byte so nothing is "corrected" on the way.

Usage: h2_conformance.py HOST PORT [CA_FILE]   (with CA_FILE: h2 over TLS with ALPN, else h2c)
Prints a JSON list: {"case", "expected": [outcomes], "got": outcome}. Outcomes: "goaway:CODE",
"rst:CODE", "status:N", "ping_ack", "closed", "alive" (nothing wrong happened and a following PING
was answered). Where h2spec accepts a stream error or a connection error, both are listed.
"""
import json
import socket
import ssl
import struct
import sys
import time

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIO = 0x1, 0x1, 0x4, 0x8, 0x20
NO_ERROR, PROTOCOL, INTERNAL, FLOW, TIMEOUT, CLOSED, FRAME_SIZE, REFUSED, CANCEL, COMPRESSION = range(10)


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def block(headers=None, path="/api/x", method="GET"):
    encoder = hpack.Encoder()
    base = [(":method", method), (":scheme", SCHEME), (":authority", "localhost"), (":path", path)]
    return encoder.encode(base if headers is None else headers)


def request(stream, end_stream=True, **kwargs):
    return frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), stream, block(**kwargs))


def settings(*pairs, flags=0, stream=0):
    return frame(SETTINGS, flags, stream, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


PING_PROBE = frame(PING, 0, 0, b"probe!!!")


class Connection:
    def __init__(self):
        sock = socket.create_connection((HOST, PORT), timeout=5)
        if CA_FILE:
            context = ssl.create_default_context(cafile=CA_FILE)
            context.set_alpn_protocols(["h2"])
            sock = context.wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.buffer = b""
        self.decoder = hpack.Decoder()

    def send(self, data):
        try:
            self.sock.sendall(data)
        except OSError:
            pass

    def frames(self, timeout):
        """Yields (kind, flags, stream, payload) until the peer closes (yields None) or time is up."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            while len(self.buffer) >= 9:
                length = int.from_bytes(self.buffer[:3], "big")
                if len(self.buffer) < 9 + length:
                    break
                kind, flags = self.buffer[3], self.buffer[4]
                stream = int.from_bytes(self.buffer[5:9], "big") & 0x7FFFFFFF
                payload = self.buffer[9:9 + length]
                self.buffer = self.buffer[9 + length:]
                if kind == SETTINGS and not flags & ACK:
                    self.send(settings(flags=ACK))
                yield kind, flags, stream, payload
            try:
                self.sock.settimeout(max(0.05, deadline - time.time()))
                data = self.sock.recv(65536)
            except (socket.timeout, ssl.SSLError):
                return
            except OSError:
                data = b""
            if not data:
                yield None
                return
            self.buffer += data

    def outcome(self, timeout=2.0, probe=True):
        """The first decisive thing the server does; with `probe`, a PING sent after the case tells
        "nothing happened" (alive) from a stall."""
        if probe:
            self.send(PING_PROBE)
        for item in self.frames(timeout):
            if item is None:
                return "closed"
            kind, flags, stream, payload = item
            if kind == GOAWAY:
                return "goaway:%d" % struct.unpack(">I", payload[4:8])[0]
            if kind == RST_STREAM:
                return "rst:%d" % struct.unpack(">I", payload[:4])[0]
            if kind == HEADERS and stream:
                status = dict(self.decoder.decode(payload if not flags & PRIO else payload[5:])).get(":status")
                if status:
                    return "status:%s" % status
            if kind == PING and flags & ACK:
                return "alive" if payload == b"probe!!!" else "ping_ack:" + payload.decode(errors="replace")
        return "timeout"

    def start(self):
        self.send(PREFACE + settings())
        # Wait for the server's SETTINGS so later frames are not mistaken for the preface.
        for item in self.frames(2.0):
            if item is None or (item[0] == SETTINGS and not item[1] & ACK):
                break
        return self


CASES = []


def case(name, *expected):
    def register(function):
        CASES.append((name, list(expected), function))
        return function
    return register


# --- generic and connection preface (3.5, 4.x) ---
@case("3.5 invalid connection preface", "closed", "goaway:1")
def _(c):
    c.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + settings())
    return c.outcome(probe=False)


@case("4.1 unknown frame type is ignored", "alive")
def _(c):
    c.start().send(frame(0x20, 0, 0, b"unknown"))
    return c.outcome()


@case("4.2 DATA larger than SETTINGS_MAX_FRAME_SIZE", "goaway:6", "rst:6")
def _(c):
    c.start().send(request(1, end_stream=False) + frame(DATA, 0, 1, b"x" * 16385))
    return c.outcome(probe=False)


@case("4.3 invalid header block (HPACK garbage)", "goaway:9")
def _(c):
    c.start().send(frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\xff\xff\xff\xff\xff\xff"))
    return c.outcome(probe=False)


# --- streams (5.x) ---
@case("5.1 DATA on an idle stream", "goaway:1")
def _(c):
    c.start().send(frame(DATA, END_STREAM, 1, b"x"))
    return c.outcome(probe=False)


@case("5.1 DATA on a half-closed (remote) stream", "rst:5", "goaway:5")
def _(c):
    c.start().send(request(1, path="/api/slow?ms=500") + frame(DATA, END_STREAM, 1, b"x"))
    return c.outcome(probe=False)


@case("5.1 RST_STREAM on an idle stream", "goaway:1")
def _(c):
    c.start().send(frame(RST_STREAM, 0, 1, struct.pack(">I", CANCEL)))
    return c.outcome(probe=False)


@case("5.1 WINDOW_UPDATE on an idle stream", "goaway:1")
def _(c):
    c.start().send(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 1)))
    return c.outcome(probe=False)


@case("5.1.1 even-numbered stream id from a client", "goaway:1")
def _(c):
    c.start().send(request(2))
    return c.outcome(probe=False)


@case("5.1.1 stream id lower than one already used", "goaway:1")
def _(c):
    c.start().send(request(5))
    c.outcome(probe=False)
    c.send(request(3))
    return c.outcome(probe=False)


@case("5.3.1 stream depending on itself", "rst:1", "goaway:1")
def _(c):
    c.start().send(frame(HEADERS, END_HEADERS | END_STREAM | PRIO, 1, struct.pack(">IB", 1, 15) + block()))
    return c.outcome(probe=False)


@case("5.4.1 request after GOAWAY from the client is still answered or ignored, never a crash", "alive", "closed")
def _(c):
    c.start().send(frame(GOAWAY, 0, 0, struct.pack(">II", 0, NO_ERROR)))
    return c.outcome()


@case("5.5 unknown frame inside a stream is ignored", "status:200")
def _(c):
    c.start().send(request(1, end_stream=False) + frame(0x21, 0, 1, b"?") + frame(DATA, END_STREAM, 1, b""))
    return c.outcome(probe=False)


# --- frame definitions (6.x) ---
@case("6.1 DATA on stream 0", "goaway:1")
def _(c):
    c.start().send(frame(DATA, 0, 0, b"x"))
    return c.outcome(probe=False)


@case("6.1 DATA with padding longer than the payload", "goaway:1")
def _(c):
    c.start().send(request(1, end_stream=False) + frame(DATA, PADDED | END_STREAM, 1, b"\x09abc"))
    return c.outcome(probe=False)


@case("6.2 HEADERS on stream 0", "goaway:1")
def _(c):
    c.start().send(frame(HEADERS, END_HEADERS | END_STREAM, 0, block()))
    return c.outcome(probe=False)


@case("6.2 HEADERS followed by something other than CONTINUATION", "goaway:1")
def _(c):
    c.start().send(frame(HEADERS, END_STREAM, 1, block()) + PING_PROBE)
    return c.outcome(probe=False)


@case("6.3 PRIORITY of the wrong length", "rst:6", "goaway:6")
def _(c):
    c.start().send(frame(PRIORITY, 0, 1, b"\x00\x00\x00"))
    return c.outcome(probe=False)


@case("6.3 PRIORITY on stream 0", "goaway:1")
def _(c):
    c.start().send(frame(PRIORITY, 0, 0, struct.pack(">IB", 1, 15)))
    return c.outcome(probe=False)


@case("6.4 RST_STREAM on stream 0", "goaway:1")
def _(c):
    c.start().send(frame(RST_STREAM, 0, 0, struct.pack(">I", CANCEL)))
    return c.outcome(probe=False)


@case("6.4 RST_STREAM of the wrong length", "goaway:6")
def _(c):
    c.start().send(request(1, end_stream=False) + frame(RST_STREAM, 0, 1, b"\x00\x00\x08"))
    return c.outcome(probe=False)


@case("6.5 SETTINGS ACK with a payload", "goaway:6")
def _(c):
    c.start().send(settings((4, 65535), flags=ACK))
    return c.outcome(probe=False)


@case("6.5 SETTINGS on a stream", "goaway:1")
def _(c):
    c.start().send(settings((4, 65535), stream=1))
    return c.outcome(probe=False)


@case("6.5 SETTINGS whose length is not a multiple of 6", "goaway:6")
def _(c):
    c.start().send(frame(SETTINGS, 0, 0, b"\x00\x04\x00\x00\xff"))
    return c.outcome(probe=False)


@case("6.5.2 ENABLE_PUSH other than 0 or 1", "goaway:1")
def _(c):
    c.start().send(settings((2, 2)))
    return c.outcome(probe=False)


@case("6.5.2 INITIAL_WINDOW_SIZE above 2^31-1", "goaway:3")
def _(c):
    c.start().send(settings((4, 2**31)))
    return c.outcome(probe=False)


@case("6.5.2 MAX_FRAME_SIZE below 16384", "goaway:1")
def _(c):
    c.start().send(settings((5, 16383)))
    return c.outcome(probe=False)


@case("6.5.2 unknown setting is ignored", "alive")
def _(c):
    c.start().send(settings((0xFF, 1)))
    return c.outcome()


@case("6.7 PING is answered with the same payload", "ping_ack:12345678")
def _(c):
    c.start().send(frame(PING, 0, 0, b"12345678"))
    return c.outcome(probe=False)


@case("6.7 PING ACK is not answered", "alive")
def _(c):
    c.start().send(frame(PING, ACK, 0, b"unasked!"))
    return c.outcome()


@case("6.7 PING on a stream", "goaway:1")
def _(c):
    c.start().send(frame(PING, 0, 1, b"12345678"))
    return c.outcome(probe=False)


@case("6.7 PING of the wrong length", "goaway:6")
def _(c):
    c.start().send(frame(PING, 0, 0, b"123456"))
    return c.outcome(probe=False)


@case("6.8 GOAWAY on a stream", "goaway:1")
def _(c):
    c.start().send(frame(GOAWAY, 0, 1, struct.pack(">II", 0, NO_ERROR)))
    return c.outcome(probe=False)


@case("6.9 WINDOW_UPDATE of 0 on the connection", "goaway:1")
def _(c):
    c.start().send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0)))
    return c.outcome(probe=False)


@case("6.9 WINDOW_UPDATE of 0 on a stream", "rst:1", "goaway:1")
def _(c):
    c.start().send(request(1, end_stream=False) + frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 0)))
    return c.outcome(probe=False)


@case("6.9 WINDOW_UPDATE of the wrong length", "goaway:6")
def _(c):
    c.start().send(frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x01"))
    return c.outcome(probe=False)


@case("6.9.1 stream window above 2^31-1", "rst:3", "goaway:3")
def _(c):
    c.start().send(request(1, end_stream=False) + frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 2**31 - 1)))
    return c.outcome(probe=False)


@case("6.9.2 INITIAL_WINDOW_SIZE change overflowing an open stream", "rst:3", "goaway:3")
def _(c):
    c.start().send(request(1, path="/api/slow?ms=500") + frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 2**31 - 65536)))
    c.send(settings((4, 2**31 - 1)))
    return c.outcome(probe=False)


@case("6.10 CONTINUATION without HEADERS", "goaway:1")
def _(c):
    c.start().send(frame(CONTINUATION, END_HEADERS, 1, block()))
    return c.outcome(probe=False)


@case("6.10 CONTINUATION on another stream", "goaway:1")
def _(c):
    whole = block()
    c.start().send(frame(HEADERS, END_STREAM, 1, whole[:3]) + frame(CONTINUATION, END_HEADERS, 3, whole[3:]))
    return c.outcome(probe=False)


# --- HTTP semantics (8.x) ---
def bad_request(name, headers, path_base=True):
    @case(name, "rst:1", "goaway:1", "status:400")
    def _(c):
        c.start().send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block(headers=headers)))
        return c.outcome(probe=False)


GOOD = [(":method", "GET"), (":scheme", "http"), (":authority", "localhost"), (":path", "/api/x")]
bad_request("8.1.2 upper-case header name", GOOD + [("X-Upper", "1")])
bad_request("8.1.2.1 unknown pseudo-header", GOOD + [(":custom", "1")])
bad_request("8.1.2.1 response pseudo-header in a request", GOOD + [(":status", "200")])
bad_request("8.1.2.1 pseudo-header after a regular header", GOOD[:3] + [("x-a", "1"), (":path", "/api/x")])
bad_request("8.1.2.1 duplicate :path", GOOD + [(":path", "/api/y")])
bad_request("8.1.2.2 connection-specific header field", GOOD + [("connection", "keep-alive")])
bad_request("8.1.2.2 TE other than trailers", GOOD + [("te", "gzip")])
bad_request("8.1.2.3 missing :method", GOOD[1:])
bad_request("8.1.2.3 missing :path", GOOD[:3])
bad_request("8.1.2.3 empty :path", GOOD[:3] + [(":path", "")])
bad_request("8.1.2.3 missing :scheme", [GOOD[0]] + GOOD[2:])


@case("8.1.2.6 content-length that the DATA does not match", "rst:1", "goaway:1")
def _(c):
    headers = [(":method", "POST")] + GOOD[1:] + [("content-length", "10")]
    c.start().send(frame(HEADERS, END_HEADERS, 1, block(headers=headers)) + frame(DATA, END_STREAM, 1, b"short"))
    return c.outcome(probe=False)


@case("8.1 trailers with a pseudo-header", "rst:1", "goaway:1")
def _(c):
    headers = [(":method", "POST")] + GOOD[1:]
    encoder = hpack.Encoder()
    head = encoder.encode(headers)
    trailer = encoder.encode([(":path", "/x")])
    c.start().send(frame(HEADERS, END_HEADERS, 1, head) + frame(DATA, 0, 1, b"x")
                   + frame(HEADERS, END_HEADERS | END_STREAM, 1, trailer))
    return c.outcome(probe=False)


@case("8.1 trailers without END_STREAM", "rst:1", "goaway:1")
def _(c):
    headers = [(":method", "POST")] + GOOD[1:]
    encoder = hpack.Encoder()
    head = encoder.encode(headers)
    trailer = encoder.encode([("x-trailer", "1")])
    c.start().send(frame(HEADERS, END_HEADERS, 1, head) + frame(HEADERS, END_HEADERS, 1, trailer))
    return c.outcome(probe=False)


# --- HPACK ---
@case("hpack: index 0", "goaway:9")
def _(c):
    c.start().send(frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x80"))
    return c.outcome(probe=False)


@case("hpack: index past the tables", "goaway:9")
def _(c):
    c.start().send(frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\xff\x7f"))  # index 254
    return c.outcome(probe=False)


@case("hpack: dynamic table size update above the limit", "goaway:9")
def _(c):
    c.start().send(frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x3f\xe1\xff\x03" + block()))  # size 65536+
    return c.outcome(probe=False)


@case("hpack: table size update after a header field", "goaway:9")
def _(c):
    c.start().send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block() + b"\x20"))
    return c.outcome(probe=False)


@case("a well-formed request is served", "status:200")
def _(c):
    c.start().send(request(1))
    return c.outcome(probe=False)


def main():
    global HOST, PORT, CA_FILE, SCHEME
    HOST, PORT = sys.argv[1], int(sys.argv[2])
    CA_FILE = sys.argv[3] if len(sys.argv) > 3 else None
    SCHEME = "https" if CA_FILE else "http"
    results = []
    for name, expected, run in CASES:
        try:
            got = run(Connection())
        except Exception as error:  # a refused connection or a TLS failure is a result, not a crash
            got = "error: %s" % error
        results.append({"case": name, "expected": expected, "got": got})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
