import CausewayConfig
import CausewayHTTP
import NIOCore
import NIOHTTP1

/// How a listener's accepted connection is set up: HTTP/1.1; or, when the listener offers
/// h2c, whichever of HTTP/1.1 and HTTP/2 the first bytes announce; or, with TLS, whichever ALPN
/// chose.
///
/// ```
/// http1 only:  ByteArrivalObserver ─▶ HTTP1ResponseWriter, HTTPRequestDecoder ─▶ DownstreamHTTP1Handler
/// with h2c:    ProtocolSniffer ─┬─▶ (the HTTP/1.1 handlers above)
///                               └─▶ HTTP2ServerHandler (nghttp2)
/// with tls:    OpenSSLHandler (handshake_timeout) ─▶ ALPNProtocolSelector ─┬─▶ HTTP/1.1 handlers
///                                                            └─▶ HTTP2ServerHandler
/// ```
struct DownstreamPipeline: Sendable {
    let http1: DownstreamHTTP1Handler.Configuration
    let http2: HTTP2ServerHandler.Configuration?
    let decoderLimits: NIOHTTPDecoderLimitConfiguration
    let contexts: LoopContexts
    let tls: TLSContextBox<TLSServerContext>?
    let handshakeTimeout: TimeAmount

    init(listener: ListenerConfig, contexts: LoopContexts, tls: TLSContextBox<TLSServerContext>?) {
        self.contexts = contexts
        self.tls = tls
        let secure = tls != nil
        http1 = DownstreamHTTP1Handler.Configuration(
            idleTimeout: TimeAmount(listener.limits.idleTimeout), headerTimeout: TimeAmount(listener.limits.headerTimeout),
            bodyTimeout: TimeAmount(listener.limits.bodyTimeout), secure: secure)
        handshakeTimeout = TimeAmount(listener.limits.handshakeTimeout)
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = listener.limits.maxHeaderSize
        limits.maxHeaderFieldSize = listener.limits.maxHeaderSize
        decoderLimits = limits
        http2 = listener.protocols.contains(secure ? "h2" : "h2c")
            ? HTTP2ServerHandler.Configuration(
                maxConcurrentStreams: listener.http2.maxConcurrentStreams,
                initialWindowSize: listener.http2.initialWindowSize,
                maxHeaderListSize: listener.http2.maxHeaderListSize,
                idleTimeout: TimeAmount(listener.limits.idleTimeout), bodyTimeout: TimeAmount(listener.limits.bodyTimeout),
                secure: secure)
            : nil
    }

    func configure(_ channel: any Channel) throws {
        let handler = contexts.context(for: channel.eventLoop).exchangeHandler
        let sync = channel.pipeline.syncOperations
        let pipeline = self
        let install: (ChannelHandlerContext, ProtocolSniffer.Choice) throws -> Void = { context, choice in
            let sync = context.pipeline.syncOperations
            switch (choice, pipeline.http2) {
            case (.http2, let http2?): try sync.addHandler(HTTP2ServerHandler(handler: handler, configuration: http2))
            default: try pipeline.addHTTP1(sync, handler: handler)
            }
        }
        if let tls {
            // ALPN decides; a client that offers nothing gets HTTP/1.1.
            let openSSL = OpenSSLHandler(context: tls.current)
            try sync.addHandler(openSSL)
            try sync.addHandler(ALPNProtocolSelector(configure: install))
            // A connection that never finishes its handshake holds a socket and an SSL: cut it.
            let timer = channel.eventLoop.scheduleTask(in: handshakeTimeout) { channel.close(promise: nil) }
            openSSL.handshakeResult.whenComplete { _ in timer.cancel() }
        } else if http2 != nil {
            try sync.addHandler(ProtocolSniffer(timeout: http1.idleTimeout, configure: install))
        } else {
            try addHTTP1(sync, handler: handler)
        }
    }

    private func addHTTP1(_ sync: ChannelPipeline.SynchronousOperations, handler: any ExchangeHandler) throws {
        var upgrade: DownstreamHTTP1Handler.H2CUpgrade?
        if tls == nil, let http2 {
            // Upgrade: h2c — the HTTP/1.1 handlers leave and nghttp2 takes over the connection.
            upgrade = { context, request, settings in
                let sync = context.pipeline.syncOperations
                try sync.removeHandler(context: sync.context(handlerType: HTTP1ResponseWriter.self))
                try sync.removeHandler(context: sync.context(handlerType: ByteArrivalObserver.self))
                try sync.addHandler(HTTP2ServerHandler(handler: handler, configuration: http2,
                                                       upgrade: .init(request: request, settings: settings)),
                                    position: .after(context.handler))
                // The decoder last: it forwards the bytes after the upgrade request to nghttp2.
                let decoder = try sync.context(handlerType: ByteToMessageHandler<HTTPRequestDecoder>.self)
                sync.removeHandler(context: context, promise: nil)
                sync.removeHandler(context: decoder, promise: nil)
            }
        }
        let downstream = DownstreamHTTP1Handler(handler: handler, configuration: http1, h2cUpgrade: upgrade)
        try sync.addHandler(downstream.makeByteObserver())
        // Responses are serialized by the downstream handler from HTTPFields (HTTP1ResponseWriter
        // passes the bytes); llhttp decodes requests.
        try sync.addHandler(HTTP1ResponseWriter())
        try sync.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes,
                                                                    limitConfiguration: decoderLimits)))
        try sync.addHandler(downstream)
    }
}
