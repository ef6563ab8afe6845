import CausewayConfig
import CausewayHTTP
import Logging
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOPosix
import Synchronization

/// The running gateway: one event loop per worker, every listener on all of them, the admin
/// listener beside them, and graceful drain on shutdown.
///
/// ```
/// MultiThreadedEventLoopGroup (workers) ── listener sockets accept onto any loop
///   loop N: downstream connections ─▶ LoopContext N (router snapshot, upstream pools of loop N)
/// ```
public final class GatewayServer: Sendable {
    public let snapshot: RuntimeSnapshot
    private let group: MultiThreadedEventLoopGroup
    private let contexts: LoopContexts
    private let quiesce: ServerQuiescingHelper
    private let adminState = AdminState()
    private let logger: Logger
    private let channels: Mutex<[any Channel]> = Mutex([])
    private let adminChannel: Mutex<(any Channel)?> = Mutex(nil)
    private let limiters: Mutex<[String: ConnectionLimiter]> = Mutex([:])

    public init(config: GatewayConfig, logger: Logger = Logger(label: "causeway")) throws {
        self.snapshot = try RuntimeSnapshot(config: config)
        self.logger = logger
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: config.server.workers ?? System.coreCount)
        self.contexts = LoopContexts(group: group, snapshot: snapshot)
        // The helper settles its bookkeeping promise when it is released, after the workers have
        // stopped, so it lives on a loop that outlives them. It hops there once per connection.
        self.quiesce = ServerQuiescingHelper(group: MultiThreadedEventLoopGroup.singleton)
    }

    public var workerCount: Int { contexts.count }

    /// Bound addresses by listener name (the real port when the config said port 0).
    public var listenerAddresses: [String: SocketAddress] {
        var result: [String: SocketAddress] = [:]
        for (listener, channel) in zip(snapshot.config.listeners, channels.withLock { $0 }) {
            result[listener.name] = channel.localAddress
        }
        return result
    }

    public var adminAddress: SocketAddress? { adminChannel.withLock { $0?.localAddress } }

    public func start() async throws {
        do {
            for listener in snapshot.config.listeners {
                let channel = try await bind(listener)
                channels.withLock { $0.append(channel) }
                logger.info("listening", metadata: ["listener": "\(listener.name)", "address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
            }
            if let admin = snapshot.config.server.adminAddress {
                let channel = try await bindAdmin(admin)
                adminChannel.withLock { $0 = channel }
                logger.info("admin listening", metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
            }
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    private func bind(_ listener: ListenerConfig) async throws -> any Channel {
        let limiter = ConnectionLimiter(limit: listener.limits.maxConnections)
        limiters.withLock { $0[listener.name] = limiter }
        let quiesce = self.quiesce
        let pipeline = DownstreamPipeline(listener: listener, contexts: contexts, tls: snapshot.tlsContexts[listener.name])
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(limiter)
                    try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try pipeline.configure(channel)
                }
            }
            .bind(host: listener.address.host, port: listener.address.port)
            .get()
    }

    private func bindAdmin(_ address: HostPort) async throws -> any Channel {
        let state = adminState
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(AdminHandler(state: state))
                }
            }
            .bind(host: address.host, port: address.port)
            .get()
    }

    /// Graceful shutdown: /ready turns 503, listeners stop accepting, idle keep-alive
    /// connections close, in-flight exchanges get until `drain_timeout`, then everything closes.
    /// Returns whether every exchange finished in time.
    @discardableResult
    public func shutdown() async -> Bool {
        adminState.startDraining()
        logger.info("draining", metadata: ["drain_timeout": "\(snapshot.config.server.drainTimeout)"])
        let promise = group.next().makePromise(of: Void.self)
        quiesce.initiateShutdown(promise: promise)
        let drained = group.next().makePromise(of: Bool.self)
        promise.futureResult.whenComplete { _ in drained.succeed(true) }
        let timer = group.next().scheduleTask(in: TimeAmount(snapshot.config.server.drainTimeout)) {
            drained.succeed(false)
        }
        let completed = (try? await drained.futureResult.get()) ?? false
        timer.cancel()
        if !completed { logger.warning("drain timeout reached; closing remaining connections") }
        if let admin = adminChannel.withLock({ $0 }) { try? await admin.close() }
        try? await group.shutdownGracefully()
        logger.info("stopped")
        return completed
    }

    /// Re-reads every listener's certificate and key files, and every TLS upstream's CA bundle
    /// and client certificate (SIGHUP). New handshakes use them; open connections keep the ones
    /// they started with. On any error nothing changes.
    public func reloadCertificates() throws(ConfigErrors) {
        let fresh = try RuntimeSnapshot.loadTLS(snapshot.config.listeners)
        let freshUpstreams = try RuntimeSnapshot.loadUpstreamTLS(snapshot.config.upstreams)
        for (name, context) in fresh { snapshot.tlsContexts[name]?.replace(context) }
        for (name, context) in freshUpstreams { snapshot.upstreamTLSContexts[name]?.replace(context) }
        logger.info("certificates reloaded", metadata: ["listeners": "\(fresh.keys.sorted())",
                                                        "upstreams": "\(freshUpstreams.keys.sorted())"])
    }

    /// Open downstream connections on a listener (for tests and, later, metrics).
    public func openConnections(listener: String) -> Int {
        limiters.withLock { $0[listener]?.openConnections ?? 0 }
    }
}

/// Each loop's context, found by the loop a new connection landed on. Built before any
/// connection is accepted and never changed; each context's state is touched only on its loop.
final class LoopContexts: @unchecked Sendable {
    private let byLoop: [ObjectIdentifier: LoopContext]

    init(group: MultiThreadedEventLoopGroup, snapshot: RuntimeSnapshot) {
        var byLoop: [ObjectIdentifier: LoopContext] = [:]
        for loop in group.makeIterator() {
            byLoop[ObjectIdentifier(loop)] = LoopContext(eventLoop: loop, snapshot: snapshot)
        }
        self.byLoop = byLoop
    }

    var count: Int { byLoop.count }

    func context(for loop: any EventLoop) -> LoopContext {
        loop.preconditionInEventLoop()
        return byLoop[ObjectIdentifier(loop)]!
    }
}
