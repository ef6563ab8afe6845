import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// The demo's real-time upstream on :3004: `GET /ticks`, an endless event stream (one `tick`
/// a second, resuming after `Last-Event-ID`), and `/echo`, a WebSocket that echoes every message.
public enum RealtimeService {
    public static func start(on loop: any EventLoop, host: String = "127.0.0.1", port: Int = 3004) async throws -> any Channel {
        try await ServerBootstrap(group: loop)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                let upgrader = NIOWebSocketServerUpgrader(
                    shouldUpgrade: { channel, head in
                        channel.eventLoop.makeSucceededFuture(head.uri.hasSuffix("/echo") ? HTTPHeaders() : nil)
                    },
                    upgradePipelineHandler: { channel, _ in
                        channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(EchoHandler()) }
                    })
                // Once upgraded, the HTTP-only tick handler leaves too (frames are not its business).
                let upgraded: @Sendable (ChannelHandlerContext) -> Void = { context in
                    if let tick = try? context.pipeline.syncOperations.context(handlerType: TickHandler.self) {
                        context.pipeline.syncOperations.removeHandler(context: tick, promise: nil)
                    }
                }
                return channel.pipeline.configureHTTPServerPipeline(
                    withServerUpgrade: (upgraders: [upgrader], completionHandler: upgraded)
                ).flatMap {
                    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(TickHandler()) }
                }
            }
            .bind(host: host, port: port)
            .get()
    }
}

/// `GET /ticks`: one event a second, for as long as the client stays.
private final class TickHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    private var timer: RepeatedTask?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data) else { return }
        guard head.uri.split(separator: "?").first?.hasSuffix("/ticks") == true else {
            let body = ByteBuffer(string: "try /ticks (event stream) or /echo (WebSocket)\n")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .notFound,
                                                                 headers: ["content-length": "\(body.readableBytes)"]))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            return
        }
        var count = (head.headers["last-event-id"].first.flatMap(Int.init) ?? 0) + 1
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: [
            "content-type": "text/event-stream", "cache-control": "no-cache",
        ]))), promise: nil)
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .seconds(1)) { _ in
            let context = loopBound.value
            let event = "id: \(count)\nevent: tick\ndata: {\"n\":\(count),\"time\":\"\(Date().formatted(.iso8601))\"}\n\n"
            count += 1
            context.writeAndFlush(NIOAny(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(string: event)))), promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        context.fireChannelInactive()
    }
}

/// Echoes text and binary messages, answers pings, and closes when asked.
private final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary, .continuation:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: frame.fin, opcode: frame.opcode, data: frame.unmaskedData)),
                                  promise: nil)
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: frame.unmaskedData)))
                .whenComplete { _ in channel.close(promise: nil) }
        default:
            break
        }
    }
}
