import NIOCore
import Synchronization

/// One direction of one content coding over a stream of chunks: an encoder (identity → gzip/br)
/// or a decoder (gzip/br → identity).
///
/// Noncopyable values own their native state (a zlib or brotli stream). `finish` frees it the
/// moment the stream ends; `deinit` frees it if the stream is abandoned.
public protocol StreamCodec: ~Copyable {
    /// Feeds `input` and appends whatever output is ready. With `flush`, everything fed so far
    /// comes out decodable (a sync point: an SSE event must not wait for the next one).
    mutating func process(_ input: ByteBuffer, flush: Bool, into output: inout ByteBuffer) throws(CodecError)
    /// Ends the stream, appends the remaining output and frees the native state.
    mutating func finish(into output: inout ByteBuffer) throws(CodecError)
}

public enum CodecError: Error, Equatable, Sendable {
    /// The input is not valid for the coding (or ends before it is complete).
    case corrupt(String)
    /// Decoded output passed `maxOutput` bytes.
    case tooLarge
    /// Decoded output passed `maxRatio` times the input (a decompression bomb).
    case ratioExceeded
    /// The native library could not start (out of memory).
    case unavailable
}

/// Bounds on what a decoder may produce, checked as it goes, so one small input cannot
/// expand without limit before anyone looks.
public struct DecodeLimits: Sendable {
    public var maxOutput: Int
    public var maxRatio: Int

    public init(maxOutput: Int = .max, maxRatio: Int = .max) {
        self.maxOutput = maxOutput
        self.maxRatio = maxRatio
    }

    /// Ratio bombs are judged once there is enough output to matter (64 KiB), so a tiny
    /// well-compressed body is never refused for its ratio alone.
    func check(input: Int, output: Int) throws(CodecError) {
        if output > maxOutput { throw .tooLarge }
        if output > 65536 && output / max(input, 1) > maxRatio { throw .ratioExceeded }
    }
}

/// The codings Causeway speaks, by their HTTP names.
public enum ContentCoding: String, Sendable, CaseIterable {
    case gzip
    case br

    /// The `Content-Encoding` token, lower-cased ("x-gzip" is gzip's old alias).
    public init?(token: String) {
        switch token.lowercased() {
        case "gzip", "x-gzip": self = .gzip
        case "br": self = .br
        default: return nil
        }
    }
}

/// How much output space to offer per native call: enough that a flush of a typical chunk
/// completes in one call, small enough not to waste memory per stream.
let outputStep = 16 * 1024

/// Encoded output is rarely larger than the input: a small SSE event gets a small buffer.
func encoderOutputStep(inputBytes: Int) -> Int {
    min(outputStep, inputBytes + 256)
}

/// Codecs whose native state is allocated right now, for tests and metrics: it must return to
/// zero when the streams using them are over. One relaxed atomic add per stream start and end.
public enum CodecStatistics {
    static let live = Atomic<Int>(0)

    public static var liveCodecs: Int { live.load(ordering: .relaxed) }

    static func allocated() { live.add(1, ordering: .relaxed) }
    static func freed() { live.subtract(1, ordering: .relaxed) }
}
