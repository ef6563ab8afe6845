import CausewayHTTP
import HTTPTypes
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOHTTPTypesHTTP1

// HTTP/1.1 request heads as the gateway reads them: NIO's decoder (llhttp) with the
// listener's header limits, then the gateway's framing checks and the conversion to
// swift-http-types, for every head in the input (pipelined requests included).
final class Checker: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data) else { return }
        let verdict = HTTP1Framing.check(head)
        if verdict.error == nil {
            _ = try? HTTPRequest(head, secure: false, splitCookie: false)
        }
    }

    // A parser error ends the input; `finish()` closes the channel (closing it here would leave
    // the embedded channel's pipeline uncollected).
    func errorCaught(context: ChannelHandlerContext, error: any Error) {}
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let channel = EmbeddedChannel()
    var limits = NIOHTTPDecoderLimitConfiguration()
    limits.maxHeaderListSize = 64 << 10
    limits.maxHeaderFieldSize = 64 << 10
    try! channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes, limitConfiguration: limits)))
    try! channel.pipeline.syncOperations.addHandler(Checker())
    var buffer = channel.allocator.buffer(capacity: size)
    buffer.writeBytes(UnsafeBufferPointer(start: data, count: size))
    _ = try? channel.writeInbound(buffer)
    _ = try? channel.finish()
    return 0
}
