import CausewayConfig
import CausewayHTTP
import NIOCore
import NIOPosix

/// An endpoint with its address resolved once, at start-up, off the request path.
public struct UpstreamEndpoint: Sendable {
    public var address: SocketAddress
    /// "host:port" as configured, for logs and errors.
    public var label: String
    public var weight: Int
    /// Present when connections to this endpoint speak TLS.
    public var tls: UpstreamTLS?

    public init(address: SocketAddress, label: String, weight: Int, tls: UpstreamTLS? = nil) {
        self.address = address
        self.label = label
        self.weight = weight
        self.tls = tls
    }
}

/// TLS towards one endpoint: the upstream's shared client context (boxed: SIGHUP swaps in
/// re-read files for new connections) and the name used for SNI and certificate verification.
public struct UpstreamTLS: Sendable {
    public var context: TLSContextBox<TLSClientContext>
    public var serverName: String

    public init(context: TLSContextBox<TLSClientContext>, serverName: String) {
        self.context = context
        self.serverName = serverName
    }
}

extension UpstreamEndpoint {
    /// Opens one connection on the pool's own loop: TCP within `connect_timeout`, then (with TLS)
    /// the handshake within another `connect_timeout`, with ALPN checked. `initialize` adds the
    /// protocol handlers. The future completes when the connection can carry requests, so a
    /// handshake failure is a connect failure with OpenSSL's reason, not a broken request.
    public func connect(on eventLoop: any EventLoop, config: PoolConfig,
                 initialize: @escaping @Sendable (any Channel) throws -> Void) -> EventLoopFuture<any Channel> {
        let tls = self.tls
        let timeout = TimeAmount(config.connectTimeout)
        let connected = ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(
                            OpenSSLHandler(client: tls.context.current, serverName: tls.serverName))
                    }
                    try initialize(channel)
                }
            }
            .connect(to: address)
        guard tls != nil else { return connected }
        return connected.flatMap { channel in
            let ready = channel.eventLoop.makePromise(of: (any Channel).self)
            let timer = channel.eventLoop.scheduleTask(in: timeout) {
                ready.fail(UpstreamError.connectTimeout)  // like nginx: the handshake is part of connecting
                channel.close(promise: nil)
            }
            do {
                let handler = try channel.pipeline.syncOperations.handler(type: OpenSSLHandler.self)
                handler.handshakeResult.whenComplete { result in
                    timer.cancel()
                    switch result {
                    case .success: ready.succeed(channel)
                    case .failure(let error): ready.fail(UpstreamError.tlsFailed("\(error)"))
                    }
                }
            } catch {
                timer.cancel()
                ready.fail(error)
            }
            return ready.futureResult
        }
    }
}

extension UpstreamError {
    init(connecting error: any Error) {
        if let error = error as? UpstreamError {
            self = error
        } else if case ChannelError.connectTimeout = error {
            self = .connectTimeout
        } else {
            self = .connectFailed("\(error)")
        }
    }
}
