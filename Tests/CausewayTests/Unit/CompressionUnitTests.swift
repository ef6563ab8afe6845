import CausewayCompression
import NIOCore
import Testing

/// Codecs and negotiation without sockets.
@Suite struct CompressionUnitTests {
    static let text = ByteBuffer(string: TestUpstream.text(100_000))

    /// Runs `codec` over `chunks` (flushing each when asked), then finishes: the output per
    /// chunk, and everything including the end.
    func run<Codec: StreamCodec & ~Copyable>(_ codec: consuming Codec, _ chunks: [ByteBuffer], flush: Bool = false,
                                             finish: Bool = true) throws(CodecError) -> (whole: ByteBuffer, perChunk: [ByteBuffer]) {
        var perChunk: [ByteBuffer] = []
        var whole = ByteBuffer()
        for chunk in chunks {
            var out = ByteBuffer()
            try codec.process(chunk, flush: flush, into: &out)
            perChunk.append(out)
            whole.writeImmutableBuffer(out)
        }
        if finish { try codec.finish(into: &whole) }
        return (whole, perChunk)
    }

    func encode(_ coding: ContentCoding, _ chunks: [ByteBuffer], flush: Bool) throws -> (whole: ByteBuffer, perChunk: [ByteBuffer]) {
        switch coding {
        case .gzip: try run(GzipEncoder(level: 6), chunks, flush: flush)
        case .br: try run(BrotliEncoder(quality: 4), chunks, flush: flush)
        }
    }

    func decode(_ coding: ContentCoding, _ chunks: [ByteBuffer], limits: DecodeLimits = DecodeLimits()) throws(CodecError) -> [ByteBuffer] {
        switch coding {
        case .gzip: try run(GzipDecoder(limits: limits), chunks).perChunk
        case .br: try run(BrotliDecoder(limits: limits), chunks).perChunk
        }
    }

    @Test(arguments: ContentCoding.allCases)
    func roundTripsInPieces(_ coding: ContentCoding) throws {
        let chunks = stride(from: 0, to: Self.text.readableBytes, by: 7_000).map {
            Self.text.getSlice(at: $0, length: min(7_000, Self.text.readableBytes - $0))!
        }
        let encoded = try encode(coding, chunks, flush: false).whole
        #expect(encoded.readableBytes < Self.text.readableBytes / 5)
        // Fed back in odd-sized pieces.
        let pieces = stride(from: 0, to: encoded.readableBytes, by: 333).map {
            encoded.getSlice(at: $0, length: min(333, encoded.readableBytes - $0))!
        }
        var decoded = ByteBuffer()
        for out in try decode(coding, pieces) { decoded.writeImmutableBuffer(out) }
        #expect(decoded == Self.text)
    }

    /// A flushed chunk decodes completely before the next one exists: what SSE needs.
    @Test(arguments: ContentCoding.allCases)
    func aFlushedChunkDecodesOnItsOwn(_ coding: ContentCoding) throws {
        let events = (0..<5).map { ByteBuffer(string: "id: \($0)\ndata: event number \($0)\n\n") }
        let encoded = try encode(coding, events, flush: true).perChunk
        #expect(encoded.allSatisfy { $0.readableBytes > 0 }, "each event produced output at once")
        // Fed one flushed piece at a time (no end of stream yet), each decodes to its event.
        let decoded = switch coding {
        case .gzip: try run(GzipDecoder(), encoded, finish: false).perChunk
        case .br: try run(BrotliDecoder(), encoded, finish: false).perChunk
        }
        #expect(decoded == events)
    }

    @Test(arguments: ContentCoding.allCases)
    func decodersStopBombsAndRejectGarbage(_ coding: ContentCoding) throws {
        let zeros = ByteBuffer(repeating: 0, count: 20_000_000)
        let bomb = try encode(coding, [zeros], flush: false).whole
        #expect(throws: CodecError.ratioExceeded) { _ = try decode(coding, [bomb], limits: DecodeLimits(maxRatio: 100)) }
        #expect(throws: CodecError.tooLarge) { _ = try decode(coding, [bomb], limits: DecodeLimits(maxOutput: 1 << 20)) }
        #expect(throws: CodecError.self) { _ = try decode(coding, [ByteBuffer(string: "definitely not compressed data")]) }
        let whole = try encode(coding, [Self.text], flush: false).whole
        #expect(throws: CodecError.self, "a truncated stream is an error at the end") {
            _ = try decode(coding, [whole.getSlice(at: 0, length: whole.readableBytes / 2)!])
        }
    }

    @Test func acceptEncodingFollowsRFC9110() {
        let offered: [ContentCoding] = [.br, .gzip]
        func choose(_ header: String?) -> String { AcceptEncoding(header).choose(from: offered)?.rawValue ?? "identity" }
        #expect(choose("gzip, br") == "br", "server preference breaks the tie")
        #expect(choose("gzip;q=1, br;q=0.999") == "gzip")
        #expect(choose("br;q=0.001") == "br")
        #expect(choose("br;q=0") == "identity")
        #expect(choose("*;q=0.3, gzip;q=0.4") == "gzip")
        #expect(choose("*") == "br")
        #expect(choose("identity;q=1, gzip;q=0.5") == "identity")
        #expect(choose("gzip;q=1.5") == "identity", "an invalid q excludes")
        #expect(choose(" GZip ; Q=0.7 ") == "gzip")
        #expect(choose("") == "identity")
        #expect(choose(nil) == "identity")
        #expect(AcceptEncoding("gzip;q=0").accepts(.gzip) == false)
        #expect(AcceptEncoding("*").accepts(.br))
        #expect(AcceptEncoding("x-gzip").accepts(.gzip))
    }

    @Test func mediaTypePatterns() {
        let types = MediaTypeSet(["text/*", "application/json"])
        #expect(types.contains(contentType: "text/html; charset=utf-8"))
        #expect(types.contains(contentType: "TEXT/Event-Stream"))
        #expect(types.contains(contentType: "application/json"))
        #expect(!types.contains(contentType: "application/jsonx"))
        #expect(!types.contains(contentType: "image/png"))
        #expect(!types.contains(contentType: ""))
        #expect(MediaTypeSet(["*/*"]).contains(contentType: "image/png"))
    }
}
