import CZlib
import NIOCore

/// gzip (RFC 1952) encoding with zlib's deflate.
public struct GzipEncoder: ~Copyable, StreamCodec {
    private var stream: UnsafeMutablePointer<z_stream>?

    /// `windowBits` 9–15 and `memLevel` 1–9 trade ratio for memory (deflate keeps about
    /// 2^(windowBits+2) + 2^(memLevel+9) bytes per stream).
    public init(level: Int, windowBits: Int = 15, memLevel: Int = 8) throws(CodecError) {
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        // +16: a gzip header and trailer instead of zlib's.
        guard causeway_deflateInit2(stream, Int32(level), Int32(16 + windowBits), Int32(memLevel)) == Z_OK else {
            stream.deallocate()
            throw .unavailable
        }
        self.stream = stream
        CodecStatistics.allocated()
    }

    deinit {
        if let stream {
            deflateEnd(stream)
            stream.deallocate()
            CodecStatistics.freed()
        }
    }

    public mutating func process(_ input: ByteBuffer, flush: Bool, into output: inout ByteBuffer) throws(CodecError) {
        guard let stream else { return }
        try run(stream, input: input, mode: flush ? Z_SYNC_FLUSH : Z_NO_FLUSH, into: &output)
    }

    public mutating func finish(into output: inout ByteBuffer) throws(CodecError) {
        guard let stream else { return }
        defer {
            deflateEnd(stream)
            stream.deallocate()
            self.stream = nil
            CodecStatistics.freed()
        }
        try run(stream, input: ByteBuffer(), mode: Z_FINISH, into: &output)
    }

    private func run(_ stream: UnsafeMutablePointer<z_stream>, input: ByteBuffer, mode: Int32,
                     into output: inout ByteBuffer) throws(CodecError) {
        var status = Z_OK
        input.withUnsafeReadableBytes { raw in
            stream.pointee.next_in = UnsafeMutablePointer(mutating: raw.bindMemory(to: Bytef.self).baseAddress)
            stream.pointee.avail_in = uInt(raw.count)
            // Until the input is taken and, for a flush or finish, no output is left inside.
            let step = encoderOutputStep(inputBytes: raw.count)
            repeat {
                output.writeWithUnsafeMutableBytes(minimumWritableBytes: step) { target in
                    stream.pointee.next_out = target.bindMemory(to: Bytef.self).baseAddress
                    stream.pointee.avail_out = uInt(target.count)
                    status = deflate(stream, mode)
                    return target.count - Int(stream.pointee.avail_out)
                }
            } while status == Z_OK && (stream.pointee.avail_in > 0 || stream.pointee.avail_out == 0 || mode == Z_FINISH)
            stream.pointee.next_in = nil
        }
        // Z_BUF_ERROR only means "no progress possible", which a flush with nothing new gives.
        if status == Z_STREAM_ERROR { throw .corrupt("deflate failed") }
    }
}

/// gzip decoding with zlib's inflate; also takes a zlib-wrapped stream (automatic header detection).
/// Members that follow one another are decoded as one body, as gzip(1) does; work is linear in
/// input and output, and the output is bounded by `DecodeLimits`.
public struct GzipDecoder: ~Copyable, StreamCodec {
    private var stream: UnsafeMutablePointer<z_stream>?
    private let limits: DecodeLimits
    private var consumed = 0
    private var produced = 0
    private var ended = false

    public init(limits: DecodeLimits = DecodeLimits()) throws(CodecError) {
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        guard causeway_inflateInit2(stream, 32 + 15) == Z_OK else {  // +32: gzip or zlib header
            stream.deallocate()
            throw .unavailable
        }
        self.stream = stream
        self.limits = limits
        CodecStatistics.allocated()
    }

    deinit {
        if let stream {
            inflateEnd(stream)
            stream.deallocate()
            CodecStatistics.freed()
        }
    }

    public mutating func process(_ input: ByteBuffer, flush: Bool, into output: inout ByteBuffer) throws(CodecError) {
        guard let stream, input.readableBytes > 0 else { return }
        if ended {
            // A gzip file may hold several members, one after another (RFC 1952 §2.2).
            inflateReset(stream)
            ended = false
        }
        var status = Z_OK
        var failure: CodecError?
        let before = output.writerIndex
        input.withUnsafeReadableBytes { raw in
            stream.pointee.next_in = UnsafeMutablePointer(mutating: raw.bindMemory(to: Bytef.self).baseAddress)
            stream.pointee.avail_in = uInt(raw.count)
            repeat {
                output.writeWithUnsafeMutableBytes(minimumWritableBytes: outputStep) { target in
                    stream.pointee.next_out = target.bindMemory(to: Bytef.self).baseAddress
                    stream.pointee.avail_out = uInt(target.count)
                    status = inflate(stream, Z_NO_FLUSH)
                    return target.count - Int(stream.pointee.avail_out)
                }
                if status == Z_STREAM_END && stream.pointee.avail_in > 0 {
                    inflateReset(stream)  // the next member; what is not gzip fails its header check
                    status = Z_OK
                }
                do throws(CodecError) {
                    try limits.check(input: consumed + raw.count - Int(stream.pointee.avail_in),
                                     output: produced + output.writerIndex - before)
                } catch {
                    failure = error
                    break
                }
            } while status == Z_OK && (stream.pointee.avail_in > 0 || stream.pointee.avail_out == 0)
            stream.pointee.next_in = nil
        }
        consumed += input.readableBytes
        produced += output.writerIndex - before
        if let failure { throw failure }
        switch status {
        case Z_STREAM_END:
            ended = true
        case Z_OK, Z_BUF_ERROR:
            break
        default:
            throw .corrupt(stream.pointee.msg.map { String(cString: $0) } ?? "invalid gzip data")
        }
    }

    public mutating func finish(into output: inout ByteBuffer) throws(CodecError) {
        guard let stream else { return }
        inflateEnd(stream)
        stream.deallocate()
        self.stream = nil
        CodecStatistics.freed()
        if !ended { throw .corrupt("the gzip stream ends early") }
    }
}
