import CBrotli
import NIOCore

/// br (RFC 7932) encoding with libbrotlienc.
public struct BrotliEncoder: ~Copyable, StreamCodec {
    private var state: OpaquePointer?

    /// `windowBits` 10–24: the sliding window (memory per stream grows up to 2^windowBits as
    /// data arrives). `sizeHint`: the body length when known, so small bodies cost less.
    public init(quality: Int, windowBits: Int = 22, sizeHint: Int? = nil) throws(CodecError) {
        guard let state = BrotliEncoderCreateInstance(nil, nil, nil) else { throw .unavailable }
        BrotliEncoderSetParameter(state, BROTLI_PARAM_QUALITY, UInt32(quality))
        BrotliEncoderSetParameter(state, BROTLI_PARAM_LGWIN, UInt32(windowBits))
        if let sizeHint { BrotliEncoderSetParameter(state, BROTLI_PARAM_SIZE_HINT, UInt32(min(sizeHint, 1 << 30))) }
        self.state = state
        CodecStatistics.allocated()
    }

    deinit {
        if let state {
            BrotliEncoderDestroyInstance(state)
            CodecStatistics.freed()
        }
    }

    public mutating func process(_ input: ByteBuffer, flush: Bool, into output: inout ByteBuffer) throws(CodecError) {
        guard let state else { return }
        try run(state, input: input, operation: flush ? BROTLI_OPERATION_FLUSH : BROTLI_OPERATION_PROCESS, into: &output)
    }

    public mutating func finish(into output: inout ByteBuffer) throws(CodecError) {
        guard let state else { return }
        defer {
            BrotliEncoderDestroyInstance(state)
            self.state = nil
            CodecStatistics.freed()
        }
        try run(state, input: ByteBuffer(), operation: BROTLI_OPERATION_FINISH, into: &output)
    }

    private func run(_ state: OpaquePointer, input: ByteBuffer, operation: BrotliEncoderOperation,
                     into output: inout ByteBuffer) throws(CodecError) {
        var ok = true
        input.withUnsafeReadableBytes { raw in
            var availableIn = raw.count
            var nextIn = raw.bindMemory(to: UInt8.self).baseAddress
            let step = encoderOutputStep(inputBytes: raw.count)
            repeat {
                output.writeWithUnsafeMutableBytes(minimumWritableBytes: step) { target in
                    var availableOut = target.count
                    var nextOut = target.bindMemory(to: UInt8.self).baseAddress
                    ok = BrotliEncoderCompressStream(state, operation, &availableIn, &nextIn, &availableOut, &nextOut, nil) != 0
                    return target.count - availableOut
                }
            } while ok && (availableIn > 0 || BrotliEncoderHasMoreOutput(state) != 0
                           || (operation == BROTLI_OPERATION_FINISH && BrotliEncoderIsFinished(state) == 0))
        }
        if !ok { throw .corrupt("brotli encoding failed") }
    }
}

/// br decoding with libbrotlidec.
public struct BrotliDecoder: ~Copyable, StreamCodec {
    private var state: OpaquePointer?
    private let limits: DecodeLimits
    private var consumed = 0
    private var produced = 0
    private var ended = false

    public init(limits: DecodeLimits = DecodeLimits()) throws(CodecError) {
        guard let state = BrotliDecoderCreateInstance(nil, nil, nil) else { throw .unavailable }
        self.state = state
        self.limits = limits
        CodecStatistics.allocated()
    }

    deinit {
        if let state {
            BrotliDecoderDestroyInstance(state)
            CodecStatistics.freed()
        }
    }

    public mutating func process(_ input: ByteBuffer, flush: Bool, into output: inout ByteBuffer) throws(CodecError) {
        guard let state, input.readableBytes > 0 else { return }
        if ended { throw .corrupt("data after the end of the brotli stream") }
        var result = BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT
        var failure: CodecError?
        let before = output.writerIndex
        var left = 0
        input.withUnsafeReadableBytes { raw in
            var availableIn = raw.count
            var nextIn = raw.bindMemory(to: UInt8.self).baseAddress
            repeat {
                output.writeWithUnsafeMutableBytes(minimumWritableBytes: outputStep) { target in
                    var availableOut = target.count
                    var nextOut = target.bindMemory(to: UInt8.self).baseAddress
                    result = BrotliDecoderDecompressStream(state, &availableIn, &nextIn, &availableOut, &nextOut, nil)
                    return target.count - availableOut
                }
                do throws(CodecError) {
                    try limits.check(input: consumed + raw.count - availableIn, output: produced + output.writerIndex - before)
                } catch {
                    failure = error
                    break
                }
            } while result == BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT
            left = availableIn
        }
        consumed += input.readableBytes
        produced += output.writerIndex - before
        if let failure { throw failure }
        switch result {
        case BROTLI_DECODER_RESULT_SUCCESS:
            ended = true
            if left > 0 { throw .corrupt("data after the end of the brotli stream") }
        case BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT:
            break
        default:
            throw .corrupt(String(cString: BrotliDecoderErrorString(BrotliDecoderGetErrorCode(state))))
        }
    }

    public mutating func finish(into output: inout ByteBuffer) throws(CodecError) {
        guard let state else { return }
        BrotliDecoderDestroyInstance(state)
        self.state = nil
        CodecStatistics.freed()
        if !ended { throw .corrupt("the brotli stream ends early") }
    }
}
