import CausewayConfig
import CausewayHTTP
import CausewayUpstream
import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// One WebSocket upgrade on a route with `websocket`: checks the client's handshake, opens a
/// connection of its own to the upstream (tunnels never use pooled connections), sends the
/// upgrade there, checks the 101 and its `Sec-WebSocket-Accept`, then switches both
/// connections to WebSocket frames and joins them (`WebSocketSession`).
///
/// ```
/// client ─GET Upgrade─▶ this ─connect─▶ upstream ─GET Upgrade─▶ ◀─101─ (checked)
/// client ◀─101─ this;  client ◀─frames─▶ WebSocketSession ◀─frames─▶ upstream
/// ```
final class WebSocketTunnel: ResponseProducer {
    private let exchange: Exchange
    private let route: CompiledRoute
    private let cluster: UpstreamCluster
    private let config: WebSocketConfig
    private let keeper: WebSocketKeeper
    private let drainTimeout: TimeAmount
    private var upstreamChannel: (any Channel)?
    private var finished = false
    private var offered: [String] = []
    /// What the upstream's 101 must carry (and what the client's 101 says).
    private var expectedAccept = ""
    /// Until the upstream's 101: the route's `timeout` (an upstream that accepts the TCP
    /// connection and never answers must not hold the client forever).
    private var handshakeTimer: Scheduled<Void>?

    init(exchange: Exchange, route: CompiledRoute, cluster: UpstreamCluster, config: WebSocketConfig, keeper: WebSocketKeeper,
         drainTimeout: TimeAmount) {
        self.exchange = exchange
        self.route = route
        self.cluster = cluster
        self.config = config
        self.keeper = keeper
        self.drainTimeout = drainTimeout
    }

    func start() {
        if let error = WebSocketHandshake.validate(exchange.request) {
            exchange.fail(error)
            return
        }
        let overHTTP2 = WebSocketHandshake.isExtendedConnect(exchange.request)
        // Bytes after the head belong to the tunnel; a body there could not be told from frames.
        // (Over HTTP/2 the stream's DATA is the tunnel.)
        guard overHTTP2 || exchange.requestBodyLength == 0 else {
            exchange.fail(.badRequest("a WebSocket upgrade has no body"))
            return
        }
        guard let index = cluster.pick() else {
            exchange.fail(.upstreamOverloaded("upstream \"\(cluster.name)\" has no endpoint"))
            return
        }
        exchange.responseProducer = self
        if let timeout = route.config.timeout {
            handshakeTimer = exchange.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout)) { [self] in
                finish(.upstreamTimeout("upstream \"\(cluster.name)\" did not answer the WebSocket upgrade within the route timeout"))
            }
        }
        let endpoint = cluster.pools[index].endpoint
        var request = ProxyTask.upstreamRequest(for: exchange, route: route)
        if request.authority == nil { request.authority = endpoint.label }
        // Always an HTTP/1.1 upgrade upstream; an RFC 8441 stream's CONNECT becomes a GET with
        // a key of the gateway's own (the client's stream has none).
        request.method = .get
        request.extendedConnectProtocol = nil
        request.headerFields[.connection] = "Upgrade"
        request.headerFields[.upgrade] = "websocket"
        if overHTTP2 { request.headerFields[WebSocketHandshake.key] = WebSocketHandshake.newKey() }
        let key = request.headerFields[WebSocketHandshake.key] ?? ""
        offered = WebSocketHandshake.offeredProtocols(exchange.request, allowed: config.subprotocols)
        request.headerFields[WebSocketHandshake.protocolField] = offered.isEmpty ? nil : offered.joined(separator: ", ")
        expectedAccept = WebSocketHandshake.acceptValue(for: key)
        let loop = exchange.eventLoop
        let tunnel = NIOLoopBound(self, eventLoop: loop)
        let upstreamName = cluster.name
        endpoint.connect(on: loop, config: cluster.poolConfig) { channel in
            try channel.pipeline.syncOperations.addHandler(HTTP1RequestWriter())
            try channel.pipeline.syncOperations.addHandler(
                ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .forwardBytes)))
            try channel.pipeline.syncOperations.addHandler(UpstreamUpgradeHandler(tunnel: tunnel.value))
        }
        .assumeIsolated()
        .whenComplete { [self] result in
            switch result {
            case .success(let channel):
                guard !finished else {
                    channel.close(promise: nil)
                    return
                }
                upstreamChannel = channel
                var bytes = channel.allocator.buffer(capacity: 512)
                HTTP1RequestWriter.writeHead(request, bodyLength: 0, to: &bytes)
                // The header-less head tells the response decoder the method; the bytes follow.
                channel.write(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: "")), promise: nil)
                channel.writeAndFlush(HTTPClientRequestPart.body(.byteBuffer(bytes)), promise: nil)
            case .failure(let error):
                let timedOut = (error as? ChannelError).map { if case .connectTimeout = $0 { true } else { false } } ?? false
                if timedOut || (error as? UpstreamError) == .connectTimeout {
                    finish(.upstreamTimeout("connecting to upstream \"\(upstreamName)\" (\(endpoint.label)) timed out"))
                } else {
                    finish(.upstreamUnavailable("cannot connect to upstream \"\(upstreamName)\" (\(endpoint.label)): \(error)"))
                }
            }
        }
    }


    /// The upstream answered the upgrade request.
    fileprivate func upstreamAnswered(_ head: HTTPResponseHead, upstream: ChannelHandlerContext) {
        guard !finished else { return }
        guard upstream.channel.isActive else {
            finish(.upstreamUnavailable("upstream \"\(cluster.name)\" closed the connection right after its answer to the upgrade"))
            return
        }
        guard head.status == .switchingProtocols else {
            // Refused (auth, no such socket): the client hears the upstream's status.
            let status = head.status.code >= 400 && head.status.code < 600 ? Int(head.status.code) : 502
            finish(GatewayError(status: .init(code: status), code: "websocket_refused",
                                message: "upstream \"\(cluster.name)\" refused the WebSocket upgrade with \(head.status.code)"))
            return
        }
        guard head.headers["sec-websocket-accept"].first == expectedAccept else {
            finish(.upstreamInvalidResponse("upstream \"\(cluster.name)\" answered the upgrade with a wrong Sec-WebSocket-Accept"))
            return
        }
        let chosen = head.headers["sec-websocket-protocol"].first
        if let chosen, !offered.contains(chosen) {
            finish(.upstreamInvalidResponse("upstream \"\(cluster.name)\" chose a subprotocol the client did not offer: \(chosen)"))
            return
        }
        var response = HTTPResponse(status: .switchingProtocols)
        response.headerFields[.upgrade] = "websocket"
        response.headerFields[WebSocketHandshake.accept] = expectedAccept
        if let chosen { response.headerFields[WebSocketHandshake.protocolField] = chosen }
        if let extensions = head.headers["sec-websocket-extensions"].first {
            response.headerFields[WebSocketHandshake.extensions] = extensions  // permessage-deflate: end to end
        }
        handshakeTimer?.cancel()
        handshakeTimer = nil
        let session = WebSocketSession(config: config, drainTimeout: drainTimeout, keeper: keeper)
        finished = true
        exchange.responseProducer = nil
        guard let clientTunnel = exchange.upgrade(response) else {
            upstream.close(promise: nil)
            exchange.fail(.badRequest("WebSocket over this connection is not offered"))
            return
        }
        // The upstream side: bytes from here on. The response decoder goes last and forwards
        // any frame bytes that came with the 101; until it is gone (it watches writes), the
        // tunnel holds what is written to it.
        let upstreamTunnel = ChannelByteTunnel(ready: false)
        do {
            let sync = upstream.pipeline.syncOperations
            let decoder = try sync.context(handlerType: ByteToMessageHandler<HTTPResponseDecoder>.self)
            _ = try sync.removeHandler(context: sync.context(handlerType: HTTP1RequestWriter.self))
            try sync.addHandler(upstreamTunnel, position: .last)
            sync.removeHandler(context: upstream, promise: nil)
            let removed = upstream.eventLoop.makePromise(of: Void.self)
            sync.removeHandler(context: decoder, promise: removed)
            removed.futureResult.assumeIsolated().whenComplete { result in
                guard case .success = result, upstreamTunnel.isActive else {
                    session.sideClosed(.upstream)  // gone while switching: the client hears 1011
                    return
                }
                upstreamTunnel.becameReady()
            }
        } catch {
            upstream.close(promise: nil)
        }
        session.attach(clientTunnel, as: .client)
        session.attach(upstreamTunnel, as: .upstream)
    }

    fileprivate func upstreamFailed(_ error: any Error) {
        finish(.upstreamUnavailable("upstream \"\(cluster.name)\" closed during the WebSocket upgrade: \(error)"))
    }

    /// The tunnel will not be built: stop waiting, drop the upstream connection. False when
    /// already stopped (or switched).
    private func stop() -> Bool {
        guard !finished else { return false }
        finished = true
        handshakeTimer?.cancel()
        handshakeTimer = nil
        upstreamChannel?.close(promise: nil)
        upstreamChannel = nil
        return true
    }

    private func finish(_ error: GatewayError) {
        if stop() { exchange.fail(error) }
    }

    // MARK: ResponseProducer (before the switch)

    func downstreamWritabilityChanged(_ writable: Bool) {}

    func cancel() {
        _ = stop()
    }
}

/// Reads the upstream's answer to the upgrade request.
private final class UpstreamUpgradeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    private let tunnel: WebSocketTunnel
    private var answered = false

    init(tunnel: WebSocketTunnel) {
        self.tunnel = tunnel
    }

    private var head: HTTPResponseHead?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break
        case .end:
            guard let head else { return }
            answered = true
            // Switched once the decoder has returned: it is removed then, and hands what came
            // after the 101 (the upstream's first frames) to the frame decoder.
            let tunnel = self.tunnel
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.eventLoop.assumeIsolated().execute { tunnel.upstreamAnswered(head, upstream: loopBound.value) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !answered { tunnel.upstreamFailed(error) }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !answered { tunnel.upstreamFailed(ChannelError.eof) }
        context.fireChannelInactive()
    }
}

@available(*, unavailable)
extension WebSocketTunnel: Sendable {}
