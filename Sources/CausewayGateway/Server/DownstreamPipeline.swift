import CausewayConfig
import CausewayHTTP
import NIOCore
import NIOHTTP1

/// How a listener's accepted connection is set up: HTTP/1.1, or — when the listener offers
/// h2c — whichever of HTTP/1.1 and HTTP/2 the first bytes announce.
///
/// ```
/// http1 only:  ByteArrivalObserver ─▶ HTTP/1.1 codec ─▶ DownstreamHTTP1Handler
/// with h2c:    ProtocolSniffer ─┬─▶ (the HTTP/1.1 handlers above)
///                               └─▶ HTTP2ServerHandler (nghttp2)
/// ```
struct DownstreamPipeline: Sendable {
    let http1: DownstreamHTTP1Handler.Configuration
    let http2: HTTP2ServerHandler.Configuration?
    let decoderLimits: NIOHTTPDecoderLimitConfiguration
    let contexts: LoopContexts

    init(listener: ListenerConfig, contexts: LoopContexts) {
        self.contexts = contexts
        http1 = DownstreamHTTP1Handler.Configuration(
            idleTimeout: TimeAmount(listener.limits.idleTimeout), headerTimeout: TimeAmount(listener.limits.headerTimeout))
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = listener.limits.maxHeaderSize
        limits.maxHeaderFieldSize = listener.limits.maxHeaderSize
        decoderLimits = limits
        http2 = listener.protocols.contains("h2c")
            ? HTTP2ServerHandler.Configuration(
                maxConcurrentStreams: listener.http2.maxConcurrentStreams,
                initialWindowSize: listener.http2.initialWindowSize,
                maxHeaderListSize: listener.http2.maxHeaderListSize,
                idleTimeout: TimeAmount(listener.limits.idleTimeout))
            : nil
    }

    func configure(_ channel: any Channel) throws {
        let handler = contexts.context(for: channel.eventLoop).exchangeHandler
        let sync = channel.pipeline.syncOperations
        guard let http2 else {
            try addHTTP1(sync, handler: handler)
            return
        }
        let http1Pipeline = self
        try sync.addHandler(ProtocolSniffer(timeout: http1.idleTimeout) { context, choice in
            let sync = context.pipeline.syncOperations
            switch choice {
            case .http1: try http1Pipeline.addHTTP1(sync, handler: handler)
            case .http2: try sync.addHandler(HTTP2ServerHandler(handler: handler, configuration: http2))
            }
        })
    }

    private func addHTTP1(_ sync: ChannelPipeline.SynchronousOperations, handler: any ExchangeHandler) throws {
        let downstream = DownstreamHTTP1Handler(handler: handler, configuration: http1)
        try sync.addHandler(downstream.makeByteObserver())
        try sync.configureHTTPServerPipeline(
            withPipeliningAssistance: false, withErrorHandling: false, withOutboundHeaderValidation: false,
            withEncoderConfiguration: .init(), withDecoderLimitConfiguration: decoderLimits)
        try sync.addHandler(downstream)
    }
}
