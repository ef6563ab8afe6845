import HTTPTypes
import NIOCore
import NIOHTTP1

/// HTTP/1.1 response serialization straight from `HTTPResponse` (no NIOHTTP1 header
/// conversion), with the framing decided here: `Content-Length` as given, else chunked (HTTP/1.1)
/// or close-delimited (HTTP/1.0); nothing for HEAD, 204, 304 and 1xx.
///
/// As a channel handler it takes the place of NIO's `HTTPResponseEncoder`: `DownstreamHTTP1Handler`
/// sends pre-encoded bytes as `.body` parts, which pass through; `.end` parts carry only the
/// write's promise (a zero-length write, so "flushed, then close" still works).
public final class HTTP1ResponseWriter: ChannelOutboundHandler, RemovableChannelHandler {
    public typealias OutboundIn = HTTPServerResponsePart
    public typealias OutboundOut = ByteBuffer

    public init() {}

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .body(.byteBuffer(let bytes)):
            context.write(wrapOutboundOut(bytes), promise: promise)
        case .body(.fileRegion):
            promise?.fail(ChannelError.operationUnsupported)
        case .head(let head):
            // Interim heads (100 Continue, 101 Switching Protocols) from code that builds them.
            var bytes = context.channel.allocator.buffer(capacity: 64)
            bytes.writeString("HTTP/\(head.version.major).\(head.version.minor) \(head.status.code) \(head.status.reasonPhrase)\r\n")
            for (name, value) in head.headers {
                bytes.writeString(name)
                bytes.writeStaticString(": ")
                bytes.writeString(value)
                bytes.writeStaticString("\r\n")
            }
            bytes.writeStaticString("\r\n")
            context.write(wrapOutboundOut(bytes), promise: promise)
        case .end:
            context.write(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)), promise: promise)
        }
    }

    /// How a response's body is delimited on the wire.
    public enum Framing {
        /// No body at all (HEAD, 204, 304, 1xx).
        case none
        /// `Content-Length` given: the bytes as they are.
        case length
        /// `Transfer-Encoding: chunked`, trailers after the last chunk.
        case chunked
        /// HTTP/1.0 without a length: the body ends when the connection closes.
        case untilClose
    }

    /// Writes the status line and fields; returns the framing chosen. `connection` is the
    /// `Connection` value to send (nil: none).
    static func writeHead(_ response: HTTPResponse, version: HTTPVersion, bodiless: Bool, connection: String?,
                          to buffer: inout ByteBuffer) -> Framing {
        let code = response.status.code
        let noBody = bodiless || code == 204 || code == 304 || code < 200
        var hasLength = false
        buffer.writeStaticString(version.minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ")
        buffer.writeString(String(code))
        buffer.writeInteger(UInt8(ascii: " "))
        let reason = response.status.reasonPhrase
        buffer.writeString(reason.isEmpty ? HTTPResponseStatus(statusCode: code).reasonPhrase : reason)
        buffer.writeStaticString("\r\n")
        for field in response.headerFields {
            // The framing and the connection's fate are this writer's to say.
            let name = field.name
            if name == .transferEncoding || name == .connection { continue }
            if name == .contentLength { hasLength = true }
            buffer.writeString(name.rawName)
            buffer.writeStaticString(": ")
            buffer.writeString(field.value)
            buffer.writeStaticString("\r\n")
        }
        let framing: Framing = noBody ? .none : hasLength ? .length : version.minor == 0 ? .untilClose : .chunked
        if framing == .chunked { buffer.writeStaticString("transfer-encoding: chunked\r\n") }
        if let connection {
            buffer.writeStaticString("connection: ")
            buffer.writeString(connection)
            buffer.writeStaticString("\r\n")
        }
        buffer.writeStaticString("\r\n")
        return framing
    }

    /// One chunk's framing around `chunk`: small chunks are copied into one buffer (one iovec),
    /// large ones get a separate size line so the body is never copied.
    public static func chunkParts(_ chunk: ByteBuffer, allocator: ByteBufferAllocator) -> (ByteBuffer, ByteBuffer?) {
        let size = chunk.readableBytes
        if size <= 4096 {
            var framed = allocator.buffer(capacity: size + 12)
            writeChunkSize(size, to: &framed)
            var chunk = chunk
            framed.writeBuffer(&chunk)
            framed.writeStaticString("\r\n")
            return (framed, nil)
        }
        var line = allocator.buffer(capacity: 20)
        writeChunkSize(size, to: &line)
        return (line, chunk)
    }

    /// `size` in hex and CRLF, written digit by digit (a String per chunk cost an allocation).
    static func writeChunkSize(_ size: Int, to buffer: inout ByteBuffer) {
        var digits = 1
        while digits < 16 && size >> (4 * digits) != 0 { digits += 1 }
        var shift = 4 * (digits - 1)
        while shift >= 0 {
            let nibble = UInt8(truncatingIfNeeded: size >> shift) & 0xF
            buffer.writeInteger(nibble < 10 ? nibble + 0x30 : nibble + 0x57)  // 0-9, a-f
            shift -= 4
        }
        buffer.writeStaticString("\r\n")
    }

    /// The last chunk and trailers, for requests (upstream) and responses alike.
    public static func writeLastChunk(trailers: HTTPFields?, to buffer: inout ByteBuffer) {
        buffer.writeStaticString("0\r\n")
        for field in trailers ?? [:] {
            buffer.writeString(field.name.rawName)
            buffer.writeStaticString(": ")
            buffer.writeString(field.value)
            buffer.writeStaticString("\r\n")
        }
        buffer.writeStaticString("\r\n")
    }

    public static let crlf: ByteBuffer = ByteBuffer(string: "\r\n")
}

@available(*, unavailable)
extension HTTP1ResponseWriter: Sendable {}
