import CausewayCompression
import CausewayConfig
import CausewayHTTP
import HTTPTypes
import NIOCore

/// A route's `compression`: encodes responses the client accepts (br, gzip) as they stream,
/// decodes upstream-encoded responses for clients that do not accept them, and optionally
/// decodes request bodies for the upstream.
///
/// Immutable, so one instance serves every loop (it is its own factory); each response gets
/// its own codec, freed when it ends.
public final class CompressionFilter: HTTPFilter, FilterFactory {
    let offered: [ContentCoding]
    let minSize: Int
    let gzipLevel: Int
    let brotliQuality: Int
    let types: MediaTypeSet
    let requestDecompression: Bool
    let requestLimits: DecodeLimits

    public init(config: CompressionConfig, maxBodySize: Int?) {
        offered = config.algorithms.compactMap { ContentCoding(rawValue: $0) }
        minSize = config.minSize
        gzipLevel = config.gzipLevel
        brotliQuality = config.brotliQuality
        types = MediaTypeSet(config.contentTypes)
        requestDecompression = config.requestDecompression
        requestLimits = DecodeLimits(maxOutput: maxBodySize ?? .max, maxRatio: config.maxDecompressionRatio)
    }

    // MARK: Request bodies

    public func makeFilter(on eventLoop: any EventLoop) -> any HTTPFilter { self }

    public func filterRequest(_ exchange: Exchange) -> FilterOutcome {
        guard requestDecompression, let header = exchange.request.headerFields[.contentEncoding] else { return .continue }
        let codings = header.split(separator: ",").map { $0.trimmingSpaces().lowercased() }
            .filter { $0 != "identity" && !$0.isEmpty }
        guard !codings.isEmpty else {
            exchange.request.headerFields[.contentEncoding] = nil
            return .continue
        }
        guard codings.count == 1, let coding = ContentCoding(token: codings[0]) else {
            // RFC 7694: say which codings we take.
            var error = GatewayError(status: .unsupportedMediaType, code: "unsupported_content_encoding",
                                     message: "request Content-Encoding \"\(header)\" is not supported (gzip or br)")
            error.headers[.acceptEncoding] = "gzip, br"
            return .fail(error)
        }
        exchange.request.headerFields[.contentEncoding] = nil
        exchange.request.headerFields[.contentLength] = nil
        do {
            let decoder: any RequestBodyTransform = switch coding {
            case .gzip: try RequestDecoding(GzipDecoder(limits: requestLimits), name: "gzip", allocator: exchange.allocator)
            case .br: try RequestDecoding(BrotliDecoder(limits: requestLimits), name: "br", allocator: exchange.allocator)
            }
            exchange.decodeRequestBody(with: decoder)
        } catch {
            return .fail(.upstreamOverloaded("cannot start a \(coding.rawValue) decoder"))
        }
        return .continue
    }

    // MARK: Responses

    public func makeResponseBodyTransform(for response: inout HTTPResponse, exchange: Exchange) -> (any ResponseBodyTransform)? {
        let status = response.status.code
        // No body, or a body whose bytes must stay as they are (ranges, not-modified).
        guard status >= 200, status != 204, status != 206, status != 304, exchange.request.method != .connect else { return nil }
        let fields = response.headerFields
        if let cacheControl = fields[.cacheControl], cacheControl.lowercased().contains("no-transform") { return nil }
        let contentType = fields[.contentType] ?? ""
        if contentType.caseInsensitiveHasPrefix("application/grpc") { return nil }
        let accept = AcceptEncoding(exchange.request.headerFields[.acceptEncoding])
        let isHead = exchange.request.method == .head

        if let existing = fields[.contentEncoding], existing.lowercased() != "identity" {
            // Already encoded: pass it on, or decode it for a client that does not take it (like nginx's gunzip).
            guard let coding = ContentCoding(token: existing.trimmingSpaces()), !accept.accepts(coding) else {
                return nil
            }
            response.headerFields[.contentEncoding] = nil
            Self.bodyChanged(&response)
            if isHead { return nil }
            do {
                return switch coding {
                case .gzip: try CodecTransform(GzipDecoder(), flushEachChunk: false, allocator: exchange.allocator)
                case .br: try CodecTransform(BrotliDecoder(), flushEachChunk: false, allocator: exchange.allocator)
                }
            } catch {
                return nil
            }
        }

        guard types.contains(contentType: contentType) else { return nil }
        let length = fields[.contentLength].flatMap { Int($0) }
        if let length, length < minSize { return nil }
        if exchange.request.headerFields[.range] != nil { return nil }
        // The answer depends on Accept-Encoding from here on, whichever variant this one is.
        Self.addVary(&response)
        let isEventStream = EventStream.isEventStream(contentType)
        // Event streams prefer gzip when the client takes it as gladly as br: gzip keeps 8 KiB of
        // history between events; brotli, for streams, runs in its one-pass mode (below), which
        // keeps none.
        guard let coding = accept.choose(from: isEventStream ? offered.sorted { $0 == .gzip && $1 != .gzip } : offered)
        else { return nil }
        response.headerFields[.contentEncoding] = coding.rawValue
        Self.bodyChanged(&response)
        if isHead { return nil }
        // A stream (events, or a body of unknown length) is flushed chunk by chunk; a body of
        // known length is compressed in large blocks.
        let isStream = length == nil || isEventStream
        do {
            switch coding {
            case .gzip:
                let (windowBits, memLevel) = Self.gzipWindow(length: length)
                return try CodecTransform(GzipEncoder(level: gzipLevel, windowBits: windowBits, memLevel: memLevel),
                                          flushEachChunk: isStream, allocator: exchange.allocator)
            case .br where isEventStream:
                // Thousands of event streams stay open. Brotli keeps history between flushes only
                // from quality 2 up, with a hash table of 256 KiB or more per stream (quality 4:
                // 512 KiB; 10,000 streams: 5 GiB); its one-pass mode (quality 0) keeps none, so
                // each event is compressed alone, for ~7 KiB per stream in all.
                return try CodecTransform(BrotliEncoder(quality: 0, windowBits: 10),
                                          flushEachChunk: true, allocator: exchange.allocator)
            case .br:
                return try CodecTransform(BrotliEncoder(quality: brotliQuality, windowBits: Self.brotliWindow(length: length),
                                                        sizeHint: length),
                                          flushEachChunk: isStream, allocator: exchange.allocator)
            }
        } catch {
            // Out of memory for a codec: the head already says the coding, so fail the response.
            return FailedTransform()
        }
    }

    /// The body's bytes change: its length is unknown and a strong validator no longer holds
    /// (RFC 9110 §8.8.1: the variant is only weakly equivalent).
    static func bodyChanged(_ response: inout HTTPResponse) {
        response.headerFields[.contentLength] = nil
        if let etag = response.headerFields[.eTag], etag.hasPrefix("\"") {
            response.headerFields[.eTag] = "W/" + etag
        }
        addVary(&response)
    }

    static func addVary(_ response: inout HTTPResponse) {
        guard let vary = response.headerFields[.vary] else {
            response.headerFields[.vary] = "Accept-Encoding"
            return
        }
        let names = vary.split(separator: ",").map { $0.trimmingSpaces().lowercased() }
        if !names.contains("accept-encoding") && !names.contains("*") {
            response.headerFields[.vary] = vary + ", Accept-Encoding"
        }
    }

    /// Streams get a small window: thousands may be open at once and their events are small.
    /// Known bodies get a window just large enough for them, like nginx's gzip_window tuning.
    static func gzipWindow(length: Int?) -> (windowBits: Int, memLevel: Int) {
        guard let length else { return (13, 6) }
        var bits = 9
        while bits < 15 && (1 << bits) < length { bits += 1 }
        return (bits, max(1, min(8, bits - 7)))
    }

    static func brotliWindow(length: Int?) -> Int {
        guard let length else { return 16 }
        var bits = 10
        while bits < 22 && (1 << bits) < length { bits += 1 }
        return bits
    }
}

/// Runs one codec over a response body.
final class CodecTransform<Codec: StreamCodec & ~Copyable>: ResponseBodyTransform {
    private var codec: Codec
    private let flushEachChunk: Bool
    private let allocator: ByteBufferAllocator

    init(_ codec: consuming Codec, flushEachChunk: Bool, allocator: ByteBufferAllocator) {
        self.codec = codec
        self.flushEachChunk = flushEachChunk
        self.allocator = allocator
    }

    func transform(_ chunk: ByteBuffer) throws -> ByteBuffer? {
        var output = allocator.buffer(capacity: 0)
        try codec.process(chunk, flush: flushEachChunk, into: &output)
        return output.readableBytes > 0 ? output : nil
    }

    func finish(trailers: inout HTTPFields?) throws -> ByteBuffer? {
        var output = allocator.buffer(capacity: 0)
        try codec.finish(into: &output)
        return output.readableBytes > 0 ? output : nil
    }
}

/// A response whose codec could not be created: aborted rather than sent mislabelled.
final class FailedTransform: ResponseBodyTransform {
    struct Unavailable: Error {}
    func transform(_ chunk: ByteBuffer) throws -> ByteBuffer? { throw Unavailable() }
    func finish(trailers: inout HTTPFields?) throws -> ByteBuffer? { throw Unavailable() }
}

/// Decodes a request body: the same codec run as for responses, its failures mapped to the
/// answers a client can act on.
final class RequestDecoding<Codec: StreamCodec & ~Copyable>: RequestBodyTransform {
    private let decoder: CodecTransform<Codec>
    private let name: String

    init(_ codec: consuming Codec, name: String, allocator: ByteBufferAllocator) {
        self.decoder = CodecTransform(codec, flushEachChunk: false, allocator: allocator)
        self.name = name
    }

    func transform(_ chunk: ByteBuffer) throws(GatewayError) -> ByteBuffer? {
        do {
            return try decoder.transform(chunk)
        } catch {
            throw map(error)
        }
    }

    func finish() throws(GatewayError) -> ByteBuffer? {
        var noTrailers: HTTPFields?
        do {
            return try decoder.finish(trailers: &noTrailers)
        } catch {
            throw map(error)
        }
    }

    private func map(_ error: any Error) -> GatewayError {
        switch error as? CodecError ?? .unavailable {
        case .tooLarge:
            GatewayError(status: .contentTooLarge, code: "body_too_large",
                         message: "decoded request body exceeds the route's max_body_size")
        case .ratioExceeded:
            GatewayError(status: .contentTooLarge, code: "decompression_ratio_exceeded",
                         message: "decoded request body is too large for its compressed size")
        case .corrupt(let reason):
            .badRequest("request body is not valid \(name): \(reason)")
        case .unavailable:
            .upstreamOverloaded("cannot decode the request body now")
        }
    }
}
