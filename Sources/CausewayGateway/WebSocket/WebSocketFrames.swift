import NIOCore
import NIOWebSocket

/// RFC 6455 §5.2 framing over a byte tunnel, both ways, as NIOWebSocket's `WebSocketFrame`.
///
/// NIOWebSocket's decoder and encoder are channel handlers; a WebSocket over an HTTP/2 stream
/// (RFC 8441) has no channel of its own, so the session parses and writes frames itself, the
/// same way for both kinds of tunnel. Writing is where the gateway saves work: a client frame
/// goes upstream re-masked in one pass (XOR with both keys) straight into the output buffer.
struct WebSocketFrameReader {
    enum Failure: Error {
        /// A frame larger than the limit, refused from its header before it is buffered.
        case tooLarge
        /// A reserved opcode, a fragmented or oversized control frame, a length's top bit set.
        case malformed
    }

    let maxFrameSize: Int
    private var buffer: ByteBuffer?

    init(maxFrameSize: Int) {
        self.maxFrameSize = maxFrameSize
    }

    mutating func append(_ bytes: ByteBuffer) {
        if buffer == nil || buffer!.readableBytes == 0 {
            buffer = bytes
        } else {
            // Only the partial frame is kept: what was read before it goes (a stream that never
            // ends on a frame boundary must not grow this buffer forever).
            buffer!.discardReadBytes()
            buffer!.writeImmutableBuffer(bytes)
        }
    }

    /// The next whole frame, nil when more bytes are needed. Its payload is a slice of what
    /// was read (still masked, for a client's frame).
    mutating func next() throws(Failure) -> WebSocketFrame? {
        guard var input = buffer, input.readableBytes >= 2 else { return nil }
        let first = input.readInteger(as: UInt8.self)!
        let second = input.readInteger(as: UInt8.self)!
        guard let opcode = WebSocketOpcode(encodedWebSocketOpcode: first & 0x0F), opcode.isKnown else { throw .malformed }
        let masked = second & 0x80 != 0
        var length = Int(second & 0x7F)
        if length == 126 {
            guard let extended = input.readInteger(as: UInt16.self) else { return nil }
            length = Int(extended)
        } else if length == 127 {
            guard let extended = input.readInteger(as: UInt64.self) else { return nil }
            guard extended >> 63 == 0 else { throw .malformed }
            guard extended <= UInt64(maxFrameSize) else { throw .tooLarge }
            length = Int(extended)
        }
        let fin = first & 0x80 != 0
        if opcode.isControlOpcode {
            guard fin, length <= 125 else { throw .malformed }
        }
        guard length <= maxFrameSize else { throw .tooLarge }
        var maskKey: WebSocketMaskingKey?
        if masked {
            guard let key = input.readBytes(length: 4) else { return nil }
            maskKey = WebSocketMaskingKey(key)
        }
        guard let payload = input.readSlice(length: length) else { return nil }
        // Nothing left over: the storage goes with the frame (an idle WebSocket holds no buffer).
        buffer = input.readableBytes == 0 ? nil : input
        return WebSocketFrame(fin: fin, rsv1: first & 0x40 != 0, rsv2: first & 0x20 != 0, rsv3: first & 0x10 != 0,
                              opcode: opcode, maskKey: maskKey, data: payload)
    }
}

enum WebSocketFrameWriter {
    /// `frame` as bytes, its payload XORed with `frame.maskKey` (unmasking it) and then with
    /// `mask` (masking it anew): one copy, one pass. The header carries `mask`.
    static func encode(_ frame: WebSocketFrame, mask: WebSocketMaskingKey?, allocator: ByteBufferAllocator) -> ByteBuffer {
        let payload = frame.data
        let length = payload.readableBytes
        var out = allocator.buffer(capacity: 14 + length)
        var first = UInt8(webSocketOpcode: frame.opcode)
        if frame.fin { first |= 0x80 }
        if frame.rsv1 { first |= 0x40 }
        if frame.rsv2 { first |= 0x20 }
        if frame.rsv3 { first |= 0x10 }
        out.writeInteger(first)
        let maskBit: UInt8 = mask == nil ? 0 : 0x80
        if length < 126 {
            out.writeInteger(maskBit | UInt8(length))
        } else if length <= Int(UInt16.max) {
            out.writeInteger(maskBit | 126)
            out.writeInteger(UInt16(length))
        } else {
            out.writeInteger(maskBit | 127)
            out.writeInteger(UInt64(length))
        }
        if let mask { out.writeBytes(mask) }
        let headerLength = out.readableBytes
        out.writeImmutableBuffer(payload)
        let key = combined(frame.maskKey, mask)
        if key != 0 {
            out.withUnsafeMutableReadableBytes { bytes in
                xor(UnsafeMutableRawBufferPointer(rebasing: bytes[headerLength...]), key: key)
            }
        }
        return out
    }

    /// The two 4-byte keys XORed, as a 32-bit pattern in memory order (0: nothing to do).
    private static func combined(_ a: WebSocketMaskingKey?, _ b: WebSocketMaskingKey?) -> UInt32 {
        func word(_ key: WebSocketMaskingKey?) -> UInt32 {
            guard let key else { return 0 }
            return withUnsafeBytes(of: (key[0], key[1], key[2], key[3])) { $0.loadUnaligned(as: UInt32.self) }
        }
        return word(a) ^ word(b)
    }

    /// XORs `bytes` with the 4-byte pattern `key`, eight bytes at a time.
    private static func xor(_ bytes: UnsafeMutableRawBufferPointer, key: UInt32) {
        let wide = UInt64(key) | UInt64(key) << 32
        var index = 0
        while index + 8 <= bytes.count {
            let word = bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            bytes.storeBytes(of: word ^ wide, toByteOffset: index, as: UInt64.self)
            index += 8
        }
        withUnsafeBytes(of: key) { keyBytes in
            while index < bytes.count {
                bytes[index] ^= keyBytes[index & 3]
                index += 1
            }
        }
    }
}

extension WebSocketOpcode {
    /// RFC 6455 §5.2: 0x3–0x7 and 0xB–0xF are reserved (a frame with one fails the connection).
    var isKnown: Bool {
        switch self {
        case .continuation, .text, .binary, .connectionClose, .ping, .pong: true
        default: false
        }
    }
}
