"""A small RFC 8441 client on the Python `h2` library: WebSockets as HTTP/2 streams opened by
an extended CONNECT. Used by websocket_suite.py (h2c with prior knowledge, and TLS with ALPN h2),
and by grpc_suite.py for hand-made hostile calls (any headers, raw DATA).

Frames are written and read by hand (client frames masked, as RFC 8441 keeps RFC 6455's
framing), so tests can send exactly what they mean, hostile frames included.
"""
import os, socket, ssl, struct

import h2.config, h2.connection, h2.events
from h2.settings import SettingCodes


def ws_frame(opcode, payload, masked=True, fin=True):
    head = bytes([(0x80 if fin else 0) | opcode])
    length = len(payload)
    bit = 0x80 if masked else 0
    if length < 126:
        head += bytes([bit | length])
    elif length < 65536:
        head += bytes([bit | 126]) + struct.pack(">H", length)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", length)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def parse_frame(data):
    """(opcode, payload, rest), or None when `data` holds no whole frame yet (server frames:
    unmasked)."""
    if len(data) < 2:
        return None
    length, offset = data[1] & 0x7F, 2
    if length == 126:
        if len(data) < 4:
            return None
        length, offset = struct.unpack(">H", data[2:4])[0], 4
    elif length == 127:
        if len(data) < 10:
            return None
        length, offset = struct.unpack(">Q", data[2:10])[0], 10
    if len(data) < offset + length:
        return None
    return data[0] & 0x0F, bytes(data[offset:offset + length]), data[offset + length:]


class H2WebSocketConnection:
    def __init__(self, port, tls_context=None, timeout=5):
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls_context is not None:
            tls_context.set_alpn_protocols(["h2"])
            sock = tls_context.wrap_socket(sock, server_hostname="127.0.0.1")
            assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
        self.sock = sock
        self.goaway = False
        self.pending = bytearray()
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.flush()
        self.status = {}
        self.trailers = {}
        self.data = {}
        self.ended = set()
        self.resets = {}
        self.settings = None
        self.closed = False
        self.pump(lambda: self.settings is not None)

    def flush(self):
        if self.goaway:
            return
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def pump(self, done, timeout=5):
        self.sock.settimeout(timeout)
        while not done():
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            if not chunk:
                self.closed = True
                return done()
            self.pending += chunk
            while len(self.pending) >= 9 and len(self.pending) >= 9 + int.from_bytes(self.pending[:3], "big"):
                size = 9 + int.from_bytes(self.pending[:3], "big")
                frame, self.pending = bytes(self.pending[:size]), self.pending[size:]
                self.receive_frame(frame)
            self.flush()
        return True

    def receive_frame(self, frame):
        if self.goaway:
            # Python h2 treats GOAWAY as the end of everything; RFC 9113 §6.8 lets streams up to
            # its last id finish, so what follows is read by hand (DATA, RST_STREAM).
            kind, flags, sid = frame[3], frame[4], int.from_bytes(frame[5:9], "big") & 0x7FFFFFFF
            payload = frame[9:]
            if kind == 0:
                if flags & 0x8:
                    payload = payload[1:len(payload) - payload[0]]
                self.data.setdefault(sid, bytearray()).extend(payload)
                if flags & 0x1:
                    self.ended.add(sid)
            elif kind == 3:
                self.resets[sid] = int.from_bytes(payload[:4], "big")
            return
        for event in self.conn.receive_data(frame):
            if isinstance(event, h2.events.RemoteSettingsChanged):
                self.settings = {code: value.new_value for code, value in event.changed_settings.items()}
            elif isinstance(event, h2.events.ResponseReceived):
                self.status[event.stream_id] = dict(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                self.data.setdefault(event.stream_id, bytearray()).extend(event.data)
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.TrailersReceived):
                self.trailers[event.stream_id] = dict(event.headers)
            elif isinstance(event, h2.events.StreamEnded):
                self.ended.add(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self.resets[event.stream_id] = event.error_code
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.goaway = True

    @property
    def enables_connect_protocol(self):
        return bool(self.settings and self.settings.get(SettingCodes.ENABLE_CONNECT_PROTOCOL) == 1)

    def open(self, path, headers=None, scheme="http"):
        """Sends the extended CONNECT; returns (stream id, response headers or None)."""
        sid = self.conn.get_next_available_stream_id()
        fields = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", scheme), (":path", path),
                  (":authority", "127.0.0.1"), ("sec-websocket-version", "13")]
        fields = [f for f in fields if f[0] not in (headers or {})] + list((headers or {}).items())
        self.conn.send_headers(sid, fields)
        self.flush()
        self.pump(lambda: sid in self.status or sid in self.resets)
        return sid, self.status.get(sid)

    def send(self, sid, opcode, payload, masked=True, fin=True):
        self.send_raw(sid, ws_frame(opcode, payload, masked, fin))

    def send_raw(self, sid, data):
        """As DATA frames no larger than the peer allows (its windows are far larger than
        anything the tests send)."""
        step = self.conn.max_outbound_frame_size
        for offset in range(0, len(data), step):
            self.conn.send_data(sid, data[offset:offset + step])
        self.flush()

    def recv(self, sid, timeout=5):
        """The next frame on `sid`: (opcode, payload), or None when none came."""
        got = {}

        def ready():
            parsed = parse_frame(self.data.get(sid, b""))
            if parsed:
                got["frame"] = parsed
                return True
            return sid in self.ended or sid in self.resets or self.closed

        self.pump(ready, timeout)
        if "frame" not in got:
            return None
        opcode, payload, rest = got["frame"]
        self.data[sid] = bytearray(rest)
        return opcode, payload

    def wait_end(self, sid, timeout=5):
        self.pump(lambda: sid in self.ended or sid in self.resets or self.closed, timeout)
        return sid in self.ended or sid in self.resets

    def reset(self, sid):
        self.conn.reset_stream(sid, error_code=8)  # CANCEL
        self.flush()

    def end(self, sid):
        self.conn.end_stream(sid)
        self.flush()

    def close(self):
        self.sock.close()


def close_code(frame):
    if frame and frame[0] == 8 and len(frame[1]) >= 2:
        return struct.unpack(">H", frame[1][:2])[0]
    return None
