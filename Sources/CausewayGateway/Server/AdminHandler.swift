import NIOCore
import NIOHTTP1
import Synchronization

/// The admin listener:
/// - `GET /health`: the process is up;
/// - `GET /ready`: it takes traffic (503 once draining, so load balancers stop sending before
///   connections close);
/// - `POST /admin/reload`: read the config file again and apply it (as SIGHUP does), answering
///   with the new version or every error;
/// - `GET /admin/config`: the running config's version, when it was loaded, what it holds.
final class AdminHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let state: AdminState
    private let actions: AdminActions
    private var keepAlive = true
    private var pending: (HTTPMethod, String)?

    init(state: AdminState, actions: AdminActions) {
        self.state = state
        self.actions = actions
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data) else {
            if case .end = unwrapInboundIn(data) { respond(context: context) }
            return
        }
        keepAlive = head.isKeepAlive
        pending = (head.method, head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? "/")
    }

    private func respond(context: ChannelHandlerContext) {
        guard let (method, path) = pending else { return }
        pending = nil
        let answer: AdminAnswer
        switch (method, path) {
        case (.GET, "/health"), (.HEAD, "/health"):
            answer = .init(status: .ok, body: #"{"status":"ok"}"#)
        case (.GET, "/ready"), (.HEAD, "/ready"):
            answer = state.isDraining ? .init(status: .serviceUnavailable, body: #"{"status":"draining"}"#)
                : .init(status: .ok, body: #"{"status":"ready"}"#)
        case (.GET, "/admin/config"), (.HEAD, "/admin/config"):
            answer = .init(status: .ok, body: actions.config())
        case (.POST, "/admin/reload"):
            // The reload reads files and resolves names: off the loop, answered when done.
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let reload = actions.reload
            let eventLoop = context.eventLoop
            Task {
                let answer = await reload()
                eventLoop.execute {
                    let (handler, context) = loopBound.value
                    handler.write(answer, method: .POST, context: context)
                }
            }
            return
        case (_, "/health"), (_, "/ready"), (_, "/admin/config"):
            answer = .init(status: .methodNotAllowed, body: #"{"error":{"status":405,"code":"method_not_allowed","message":"use GET"}}"#)
        case (_, "/admin/reload"):
            answer = .init(status: .methodNotAllowed, body: #"{"error":{"status":405,"code":"method_not_allowed","message":"use POST"}}"#)
        default:
            answer = .init(status: .notFound, body: #"{"error":{"status":404,"code":"not_found","message":"admin endpoints: /health, /ready, /admin/config, /admin/reload"}}"#)
        }
        write(answer, method: method, context: context)
    }

    private func write(_ answer: AdminAnswer, method: HTTPMethod, context: ChannelHandlerContext) {
        var headers = HTTPHeaders([("content-type", "application/json"), ("content-length", String(answer.body.utf8.count + 1))])
        if !keepAlive { headers.add(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: answer.status, headers: headers))), promise: nil)
        if method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: answer.body + "\n")))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}

/// One admin answer: a status and a JSON body.
struct AdminAnswer: Sendable {
    var status: HTTPResponseStatus
    var body: String
}

/// What the admin endpoints can ask of the server.
struct AdminActions: Sendable {
    var reload: @Sendable () async -> AdminAnswer
    var config: @Sendable () -> String
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
