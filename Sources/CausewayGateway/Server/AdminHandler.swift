import NIOCore
import NIOHTTP1
import Synchronization

/// The admin listener: `GET /health` (the process is up) and `GET /ready` (it takes traffic;
/// 503 once draining, so load balancers stop sending before connections close).
final class AdminHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let state: AdminState
    private var keepAlive = true

    init(state: AdminState) {
        self.state = state
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data) else {
            if case .end = unwrapInboundIn(data) { respond(context: context) }
            return
        }
        keepAlive = head.isKeepAlive
        pending = (head.method, head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? "/")
    }

    private var pending: (HTTPMethod, String)?

    private func respond(context: ChannelHandlerContext) {
        guard let (method, path) = pending else { return }
        pending = nil
        let status: HTTPResponseStatus
        let body: String
        switch (method, path) {
        case (.GET, "/health"), (.HEAD, "/health"):
            (status, body) = (.ok, #"{"status":"ok"}"#)
        case (.GET, "/ready"), (.HEAD, "/ready"):
            (status, body) = state.isDraining ? (.serviceUnavailable, #"{"status":"draining"}"#) : (.ok, #"{"status":"ready"}"#)
        case (_, "/health"), (_, "/ready"):
            (status, body) = (.methodNotAllowed, #"{"error":{"status":405,"code":"method_not_allowed","message":"use GET"}}"#)
        default:
            (status, body) = (.notFound, #"{"error":{"status":404,"code":"not_found","message":"admin endpoints: /health, /ready"}}"#)
        }
        var headers = HTTPHeaders([("content-type", "application/json"), ("content-length", String(body.utf8.count + 1))])
        if !keepAlive { headers.add(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        if method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body + "\n")))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}

/// What the admin endpoints report, flipped once by shutdown.
final class AdminState: Sendable {
    private let draining = Atomic<Bool>(false)

    var isDraining: Bool { draining.load(ordering: .relaxed) }

    func startDraining() {
        draining.store(true, ordering: .relaxed)
    }
}

@available(*, unavailable)
extension AdminHandler: Sendable {}
