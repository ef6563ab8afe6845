import NIOCore
import NIOWebSocket
import Testing

@testable import CausewayGateway
@testable import CausewayHTTP

@Suite struct EventSplitterTests {
    /// Feeds `chunks` and returns every event's text and id.
    func split(_ chunks: [String]) throws -> [(String, String?, Bool)] {
        var splitter = EventSplitter()
        var out: [(String, String?, Bool)] = []
        for chunk in chunks {
            for event in try splitter.feed(ByteBuffer(string: chunk)) {
                out.append((String(buffer: event.bytes), event.id, event.isComment))
            }
        }
        return out
    }

    @Test func eventsEndAtABlankLineInEveryLineEndingAndAnySplit() throws {
        let stream = "id: 1\ndata: a\n\n: ping\r\n\r\nid: 2\r\ndata: b\r\rdata: no id\n\n"
        let whole = try split([stream])
        #expect(whole.map(\.0) == ["id: 1\ndata: a\n\n", ": ping\r\n\r", "\nid: 2\r\ndata: b\r\r", "data: no id\n\n"])
        #expect(whole.map(\.0).joined() == stream, "every byte passed on, in order")
        #expect(whole.map(\.1) == ["1", nil, "2", nil])
        #expect(whole.map(\.2) == [false, true, false, false])
        // One byte at a time: the same events (a CRLF split across chunks is one line end).
        let bytewise = try split(stream.map { String($0) })
        #expect(bytewise.map(\.1) == whole.map(\.1))
        #expect(bytewise.map(\.0).joined() == stream)
        #expect(try split(["data: half"]).isEmpty, "no blank line yet: no event")
        #expect(try split(["\n\n\r\n"]).isEmpty, "blank lines alone are not events")
    }

    @Test func anEventLargerThanTheLimitIsRefusedNotBuffered() throws {
        var splitter = EventSplitter()
        let big = ByteBuffer(repeating: UInt8(ascii: "x"), count: EventSplitter.maxEventSize + 1)
        #expect(throws: EventSplitter.Failure.self) { try splitter.feed(big) }
    }
}

@Suite struct WebSocketFrameTests {
    func read(_ bytes: [UInt8], max: Int = 1 << 20) throws -> [WebSocketFrame] {
        var reader = WebSocketFrameReader(maxFrameSize: max)
        var frames: [WebSocketFrame] = []
        for byte in bytes {  // one byte at a time: every partial state is exercised
            reader.append(ByteBuffer(bytes: [byte]))
            while let frame = try reader.next() { frames.append(frame) }
        }
        return frames
    }

    @Test func aClientFrameGoesUpstreamRemaskedWithTheSamePayload() throws {
        for length in [0, 5, 125, 126, 65535, 65536, 70000] {
            let payload = ByteBuffer(bytes: (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 7) })
            let clientKey = WebSocketMaskingKey.random()
            var masked = payload
            masked.webSocketMask(clientKey)
            let frame = WebSocketFrame(fin: true, rsv1: true, opcode: .binary, maskKey: clientKey, data: masked)
            let gatewayKey = WebSocketMaskingKey.random()
            let wire = WebSocketFrameWriter.encode(frame, mask: gatewayKey, allocator: ByteBufferAllocator())
            let parsed = try #require(try read(Array(wire.readableBytesView)).first)
            #expect(parsed.maskKey == gatewayKey && parsed.rsv1 && parsed.fin && parsed.opcode == .binary)
            #expect(parsed.unmaskedData == payload, "length \(length)")
            // Toward a client: unmasked, as the server sent it.
            let down = WebSocketFrameWriter.encode(WebSocketFrame(fin: false, opcode: .text, data: payload), mask: nil,
                                                   allocator: ByteBufferAllocator())
            let back = try #require(try read(Array(down.readableBytesView)).first)
            #expect(back.maskKey == nil && !back.fin && back.data == payload)
        }
    }

    @Test func hostileHeadersAreRefusedFromTheHeader() {
        // 2^63 and more: the top bit of a 64-bit length is not allowed.
        #expect(throws: WebSocketFrameReader.Failure.malformed) { try read([0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]) }
        // Larger than the limit: refused before the payload is waited for.
        #expect(throws: WebSocketFrameReader.Failure.tooLarge) { try read([0x82, 0x7F, 0, 0, 0, 1, 0, 0, 0, 0], max: 1024) }
        #expect(throws: WebSocketFrameReader.Failure.tooLarge) { try read([0x82, 0x7E, 0x04, 0x01], max: 1024) }
        // A control frame that is fragmented, or longer than 125 bytes.
        #expect(throws: WebSocketFrameReader.Failure.malformed) { try read([0x09, 0x00]) }
        #expect(throws: WebSocketFrameReader.Failure.malformed) { try read([0x89, 0x7E, 0x00, 0x7E]) }
        // Reserved opcodes.
        #expect(throws: WebSocketFrameReader.Failure.malformed) { try read([0x83, 0x00]) }
        #expect(throws: WebSocketFrameReader.Failure.malformed) { try read([0x8B, 0x00]) }
    }
}

@Suite struct UTF8ValidatorTests {
    /// `text` split at every position into two masked fragments (each with its own key, as two
    /// frames have) must be judged as the whole is.
    func judge(_ bytes: [UInt8]) -> Bool {
        var verdicts: Set<Bool> = []
        for cut in 0...bytes.count {
            var validator = UTF8Validator()
            var ok = true
            for part in [Array(bytes[..<cut]), Array(bytes[cut...])] {
                let key = WebSocketMaskingKey.random()
                var buffer = ByteBuffer(bytes: part)
                buffer.webSocketMask(key)
                ok = ok && validator.feed(buffer, mask: key)
            }
            verdicts.insert(ok && validator.isComplete)
            var plain = UTF8Validator()
            verdicts.insert(plain.feed(ByteBuffer(bytes: bytes)) && plain.isComplete)
        }
        #expect(verdicts.count == 1, "split and masked fragments agree with the whole: \(bytes)")
        return verdicts.first!
    }

    @Test func validTextPassesMaskedAndSplitAnywhere() {
        for text in ["", "plain ascii long enough for the eight-byte path", "é", "κόσμε", "€ and 𝄞 mixed with ascii text"] {
            #expect(judge(Array(text.utf8)), "\(text)")
        }
    }

    @Test func invalidSequencesFail() {
        let bad: [[UInt8]] = [
            [0xC0, 0xAF], [0xE0, 0x80, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xFF],
            Array("abcdefghij".utf8) + [0xE2, 0x82],  // ends mid-character
        ]
        for bytes in bad { #expect(!judge(bytes), "\(bytes)") }
    }
}

@Suite struct ChunkSizeTests {
    @Test func chunkSizesAreLowercaseHexWithoutLeadingZeros() {
        for size in [0, 9, 10, 15, 16, 255, 256, 4096, 65535, 1 << 20, Int(Int32.max)] {
            var buffer = ByteBuffer()
            HTTP1ResponseWriter.writeChunkSize(size, to: &buffer)
            #expect(String(buffer: buffer) == String(size, radix: 16) + "\r\n", "\(size)")
        }
    }
}

@Suite struct GRPCRuleTests {
    @Test func timeoutsParseInEveryUnitAndRefuseWhatTheSpecRefuses() {
        #expect(GRPC.parseTimeout("1H") == .hours(1))
        #expect(GRPC.parseTimeout("2M") == .minutes(2))
        #expect(GRPC.parseTimeout("3S") == .seconds(3))
        #expect(GRPC.parseTimeout("250m") == .milliseconds(250))
        #expect(GRPC.parseTimeout("7u") == .microseconds(7))
        #expect(GRPC.parseTimeout("99999999n") == .nanoseconds(99_999_999))
        #expect(GRPC.parseTimeout("99999999H") == .nanoseconds(.max))  // 11,415 years: saturates
        for bad in ["", "S", "123456789S", "1x", "-1S", "1.5S", " 1S"] {
            #expect(GRPC.parseTimeout(bad) == nil, "\(bad)")
        }
    }

    @Test func formattedTimeoutsFitEightDigitsAndNeverGrow() {
        for nanoseconds: Int64 in [0, 1, 999, 1_000_001, 299_600_000, 5_000_000_000, 3_600_000_000_000 * 30, .max - 1, .max] {
            let text = GRPC.formatTimeout(.nanoseconds(nanoseconds))
            let back = GRPC.parseTimeout(text)!
            #expect(text.count <= 9 && (back.nanoseconds >= nanoseconds || text == "99999999H"), "\(nanoseconds) -> \(text)")
        }
    }

    @Test func theMeterFindsAnOversizedMessageFromItsPrefixAcrossChunks() {
        func frame(_ length: Int) -> [UInt8] {
            [0, UInt8(length >> 24 & 0xFF), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)]
                + [UInt8](repeating: 7, count: min(length, 64))
        }
        var meter = GRPCMessageMeter(limit: 100)
        let ok = frame(10) + [UInt8](repeating: 7, count: 0)
        #expect(meter.oversized(in: ByteBuffer(bytes: ok)) == nil)
        // A 100-byte message split anywhere, then a 101-byte one whose prefix straddles chunks.
        let hundred = [0, 0, 0, 0, 100] + [UInt8](repeating: 1, count: 100)
        for byte in hundred { #expect(meter.oversized(in: ByteBuffer(bytes: [byte])) == nil) }
        let next: [UInt8] = [0, 0, 0, 0, 101]
        #expect(meter.oversized(in: ByteBuffer(bytes: Array(next[..<3]))) == nil)
        #expect(meter.oversized(in: ByteBuffer(bytes: Array(next[3...]))) == 101)
        var huge = GRPCMessageMeter(limit: 4 << 20)
        #expect(huge.oversized(in: ByteBuffer(bytes: [1, 0xFF, 0xFF, 0xFF, 0xFF])) == Int(UInt32.max))
    }
}
