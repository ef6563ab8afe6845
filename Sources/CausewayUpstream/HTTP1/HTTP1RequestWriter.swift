import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOHTTPTypesHTTP1

/// HTTP/1.1 request serialization from `HTTPFields`, and the one conversion of a decoded
/// response head. As a channel handler it sits under the response decoder: request parts
/// arrive pre-encoded as body bytes; the header-less head part (there only so the decoder
/// knows a HEAD request's response has no body) and the end part are dropped.
public final class HTTP1RequestWriter: ChannelOutboundHandler, RemovableChannelHandler {
    public typealias OutboundIn = HTTPClientRequestPart
    public typealias OutboundOut = ByteBuffer

    public init() {}

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .body(.byteBuffer(let bytes)):
            context.write(wrapOutboundOut(bytes), promise: promise)
        case .head, .end, .body(.fileRegion):
            promise?.succeed(())
        }
    }

    /// `METHOD path HTTP/1.1`, `Host`, the fields, then the framing the gateway chose.
    public static func writeHead(_ request: HTTPRequest, bodyLength: Int?, to buffer: inout ByteBuffer) {
        buffer.writeString(request.method.rawValue)
        buffer.writeInteger(UInt8(ascii: " "))
        buffer.writeString(request.path ?? "/")
        buffer.writeStaticString(" HTTP/1.1\r\nHost: ")
        buffer.writeString(request.authority ?? "")
        buffer.writeStaticString("\r\n")
        for field in request.headerFields {
            // TE is hop-by-hop on HTTP/1.1: a client's `TE: trailers` is kept for HTTP/2 upstreams only.
            if field.name == .te { continue }
            buffer.writeString(field.name.rawName)
            buffer.writeStaticString(": ")
            buffer.writeString(field.value)
            buffer.writeStaticString("\r\n")
        }
        switch bodyLength {
        case nil:
            buffer.writeStaticString("transfer-encoding: chunked\r\n")
        case 0?:
            // A POST, PUT or PATCH without a body still says so (some servers wait otherwise).
            if request.method == .post || request.method == .put || request.method == .patch {
                buffer.writeStaticString("content-length: 0\r\n")
            }
        case let length?:
            buffer.writeStaticString("content-length: ")
            buffer.writeString(String(length))
            buffer.writeStaticString("\r\n")
        }
        buffer.writeStaticString("\r\n")
    }

    /// The decoded head as the pipeline's one header type (llhttp checked the status; the
    /// fields convert with NIOHTTPTypesHTTP1's own mapping).
    public static func response(_ head: HTTPResponseHead) -> HTTPResponse {
        HTTPResponse(status: .init(code: Int(head.status.code)), headerFields: HTTPFields(head.headers, splitCookie: false))
    }
}

@available(*, unavailable)
extension HTTP1RequestWriter: Sendable {}
