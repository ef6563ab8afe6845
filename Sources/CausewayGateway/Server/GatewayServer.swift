import CausewayConfig
import CausewayHTTP
import Foundation
import Logging
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOPosix
import Synchronization

/// The running gateway: one event loop per worker, every listener on all of them, the admin
/// listener beside them, reload without a restart, and graceful drain on shutdown.
///
/// ```
/// MultiThreadedEventLoopGroup (workers) ── listener sockets accept onto any loop
///   loop N: downstream connections ─▶ LoopContext N ─▶ current LoopGeneration (routes, pools)
/// reload: config ─▶ RuntimeSnapshot ─▶ listeners opened/closed ─▶ every loop installs it
/// ```
public final class GatewayServer: Sendable {
    /// The running config and what a reload compares against.
    struct Running {
        var snapshot: RuntimeSnapshot
        var version: Int
        var loadedAt: Date
        var listeners: [String: BoundListener]
    }

    private let running: Mutex<Running>
    private let group: MultiThreadedEventLoopGroup
    private let contexts: LoopContexts
    private let adminState = AdminState()
    private let logger: Logger
    /// The file a reload reads; nil when the config came from elsewhere (tests, `demo` without one).
    public let configPath: String?
    private let adminChannel: Mutex<(any Channel)?> = Mutex(nil)
    private let reloading = Mutex(false)
    /// `server.limits.max_connections_per_ip`, across listeners.
    private let perAddress: PerAddressConnections

    /// `onExchangeComplete` hears of every exchange once, however it ended, on its event loop
    /// (access logs and metrics hang here).
    public init(config: GatewayConfig, configPath: String? = nil, logger: Logger = Logger(label: "causeway"),
                onExchangeComplete: (@Sendable (CompletedExchange) -> Void)? = nil) throws {
        let snapshot = try RuntimeSnapshot(config: config)
        self.perAddress = PerAddressConnections(limit: config.server.maxConnectionsPerIP)
        self.logger = logger
        self.configPath = configPath
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: config.server.workers ?? System.coreCount)
        self.contexts = LoopContexts(group: group, snapshot: snapshot, onExchangeComplete: onExchangeComplete)
        self.running = Mutex(Running(snapshot: snapshot, version: 1, loadedAt: Date(), listeners: [:]))
    }

    /// The running snapshot (replaced by each reload).
    public var snapshot: RuntimeSnapshot { running.withLock { $0.snapshot } }
    public var configVersion: Int { running.withLock { $0.version } }
    public var workerCount: Int { contexts.count }

    /// Bound addresses by listener name (the real port when the config said port 0).
    public var listenerAddresses: [String: SocketAddress] {
        running.withLock { $0.listeners.compactMapValues { $0.channel?.localAddress } }
    }

    public var adminAddress: SocketAddress? { adminChannel.withLock { $0?.localAddress } }

    public func start() async throws {
        do {
            let config = snapshot.config
            for listener in config.listeners {
                let bound = try await bind(listener, snapshot: snapshot)
                running.withLock { $0.listeners[listener.name] = bound }
            }
            if let admin = config.server.adminAddress {
                let channel = try await bindAdmin(admin)
                adminChannel.withLock { $0 = channel }
                logger.info("admin listening", metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
            }
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    private func bind(_ listener: ListenerConfig, snapshot: RuntimeSnapshot) async throws -> BoundListener {
        let bound = BoundListener(config: listener, pipeline: DownstreamPipeline(
            listener: listener, contexts: contexts, tls: snapshot.tlsContexts[listener.name]), perAddress: perAddress)
        let quiesce = bound.quiesce
        let limiter = bound.limiter
        let channel = try await ServerBootstrap(group: group)
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
                    // Read per connection, so a reload's listener settings apply to the next one.
                    try bound.pipeline.configure(channel)
                }
            }
            .bind(host: listener.address.host, port: listener.address.port)
            .get()
        bound.channel = channel
        logger.info("listening", metadata: ["listener": "\(listener.name)", "address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
        return bound
    }

    private func bindAdmin(_ address: HostPort) async throws -> any Channel {
        let state = adminState
        let actions = AdminActions(
            reload: { [weak self] in
                guard let self else { return .init(status: .serviceUnavailable, body: #"{"status":"stopping"}"#) }
                return await self.reloadAnswer()
            },
            config: { [weak self] in self?.configSummary() ?? "{}" })
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(AdminHandler(state: state, actions: actions))
                }
            }
            .bind(host: address.host, port: address.port)
            .get()
    }

    // MARK: Reload

    public enum ReloadError: Error, CustomStringConvertible {
        /// The new config is invalid: every error, `file:line:column: key.path: message`.
        case invalid(ConfigErrors)
        /// Another reload is running.
        case busy
        /// There is no file to read (the config was given in memory).
        case noConfigFile
        /// A listener could not be opened; nothing changed.
        case bind(String)

        public var description: String {
            switch self {
            case .invalid(let errors): errors.description
            case .busy: "a reload is already in progress"
            case .noConfigFile: "the gateway was started without a config file, so there is nothing to reload"
            case .bind(let message): message
            }
        }
    }

    /// Reads the config file again and applies it (SIGHUP, `POST /admin/reload`).
    @discardableResult
    public func reloadFromFile() async throws(ReloadError) -> Int {
        guard let configPath else {
            logger.error("reload refused: \(ReloadError.noConfigFile)")
            throw .noConfigFile
        }
        let config: GatewayConfig
        do {
            config = try ConfigLoader.load(path: configPath)
        } catch {
            logger.error("reload refused; the running config stays", metadata: ["errors": "\(error.description)"])
            throw .invalid(error)
        }
        do {
            return try await reload(config)
        } catch .busy {
            logger.warning("reload skipped: \(ReloadError.busy)")
            throw .busy
        }
    }

    /// Applies `config`: compiled and checked first (a bad one changes nothing), new listeners
    /// opened, then every loop switched to it; removed listeners drain. Exchanges already
    /// running finish on the snapshot they started with. Returns the new version.
    @discardableResult
    public func reload(_ config: GatewayConfig) async throws(ReloadError) -> Int {
        let acquired = reloading.withLock { busy in
            if busy { return false }
            busy = true
            return true
        }
        guard acquired else { throw .busy }
        defer { reloading.withLock { $0 = false } }

        let current = running.withLock { $0 }
        let snapshot: RuntimeSnapshot
        do {
            snapshot = try RuntimeSnapshot(config: config, previous: current.snapshot)
        } catch let errors as ConfigErrors {
            logger.error("reload refused; the running config stays", metadata: ["errors": "\(errors.description)"])
            throw .invalid(errors)
        } catch {
            let errors = ConfigErrors([ConfigError(file: configPath ?? "config", line: 1, column: 1, path: "", message: "\(error)")])
            logger.error("reload refused; the running config stays", metadata: ["errors": "\(errors.description)"])
            throw .invalid(errors)
        }
        warnAboutRestartOnlyChanges(from: current.snapshot.config, to: config)

        // Listeners: kept ones (same name and address) take the new settings for their next
        // connection; new or re-addressed ones are bound before anything switches.
        var listeners: [String: BoundListener] = [:]
        var opened: [BoundListener] = []
        for listener in config.listeners {
            if let kept = current.listeners[listener.name], kept.config.address == listener.address {
                kept.update(config: listener, pipeline: DownstreamPipeline(
                    listener: listener, contexts: contexts, tls: snapshot.tlsContexts[listener.name]))
                listeners[listener.name] = kept
                continue
            }
            do {
                let bound = try await bind(listener, snapshot: snapshot)
                opened.append(bound)
                listeners[listener.name] = bound
            } catch {
                for bound in opened { bound.channel?.close(promise: nil) }
                logger.error("reload refused: cannot open listener", metadata: ["listener": "\(listener.name)", "error": "\(error)"])
                throw .bind("listener \"\(listener.name)\" cannot listen on \(listener.address): \(error)")
            }
        }

        let version = current.version + 1
        perAddress.setLimit(config.server.maxConnectionsPerIP)
        await contexts.install(snapshot, version: version)
        running.withLock { $0 = Running(snapshot: snapshot, version: version, loadedAt: Date(), listeners: listeners) }

        for (name, old) in current.listeners where listeners[name] !== old {
            logger.info("listener closing; its connections drain", metadata: ["listener": "\(name)"])
            old.quiesce.initiateShutdown(promise: nil)
        }
        logger.info("config reloaded", metadata: ["version": "\(version)", "routes": "\(config.routes.count)",
                                                  "upstreams": "\(config.upstreams.count)", "listeners": "\(listeners.count)"])
        return version
    }

    private func warnAboutRestartOnlyChanges(from old: GatewayConfig, to new: GatewayConfig) {
        if old.server.workers != new.server.workers {
            logger.warning("server.workers changes only on restart")
        }
        if old.server.adminAddress != new.server.adminAddress {
            logger.warning("server.admin.address changes only on restart")
        }
    }

    private func reloadAnswer() async -> AdminAnswer {
        do {
            let version = try await reloadFromFile()
            let loadedAt = running.withLock { $0.loadedAt }
            return .init(status: .ok, body: #"{"status":"reloaded","version":\#(version),"loaded_at":"\#(Self.timestamp(loadedAt))"}"#)
        } catch {
            var body = ByteBuffer()
            body.writeString(#"{"status":"refused","version":\#(configVersion),"errors":["#)
            let lines = error.description.split(separator: "\n", omittingEmptySubsequences: true)
            for (index, line) in lines.enumerated() {
                if index > 0 { body.writeString(",") }
                JSONText.writeString(String(line), to: &body)
            }
            body.writeString("]}")
            let status: HTTPResponseStatus = switch error {
            case .busy: .conflict
            case .noConfigFile: .conflict
            case .invalid, .bind: .unprocessableEntity
            }
            return .init(status: status, body: String(buffer: body))
        }
    }

    /// `GET /admin/config`: which config runs, since when, and what it holds.
    func configSummary() -> String {
        let running = running.withLock { $0 }
        let config = running.snapshot.config
        var body = ByteBuffer()
        body.writeString(#"{"version":\#(running.version),"loaded_at":"\#(Self.timestamp(running.loadedAt))","file":"#)
        if let configPath { JSONText.writeString(configPath, to: &body) } else { body.writeString("null") }
        func list(_ key: String, _ names: [String]) {
            body.writeString(",\"\(key)\":[")
            for (index, name) in names.enumerated() {
                if index > 0 { body.writeString(",") }
                JSONText.writeString(name, to: &body)
            }
            body.writeString("]")
        }
        list("listeners", config.listeners.map { "\($0.name) \($0.address)" })
        list("upstreams", config.upstreams.map(\.name))
        list("routes", config.routes.map(\.name))
        body.writeString("}")
        return String(buffer: body)
    }

    static func timestamp(_ date: Date) -> String {
        date.formatted(.iso8601)
    }

    // MARK: Shutdown

    /// Graceful shutdown: /ready turns 503, listeners stop accepting, idle keep-alive
    /// connections close, in-flight exchanges get until `drain_timeout`, then everything closes.
    /// Returns whether every exchange finished in time.
    @discardableResult
    public func shutdown() async -> Bool {
        adminState.startDraining()
        let (listeners, drainTimeout) = running.withLock { ($0.listeners.values, $0.snapshot.config.server.drainTimeout) }
        logger.info("draining", metadata: ["drain_timeout": "\(drainTimeout)"])
        let loop = group.next()
        let quiesced = listeners.map { listener in
            let promise = loop.makePromise(of: Void.self)
            listener.quiesce.initiateShutdown(promise: promise)
            return promise.futureResult
        }
        let drained = loop.makePromise(of: Bool.self)
        EventLoopFuture.andAllComplete(quiesced, on: loop).whenComplete { _ in drained.succeed(true) }
        let timer = loop.scheduleTask(in: TimeAmount(drainTimeout)) {
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
    /// and client certificate, keeping the rest of the config. New handshakes use them; open
    /// connections keep the ones they started with. On any error nothing changes.
    public func reloadCertificates() throws(ConfigErrors) {
        let snapshot = self.snapshot
        let fresh = try RuntimeSnapshot.loadTLS(snapshot.config.listeners)
        let freshUpstreams = try RuntimeSnapshot.loadUpstreamTLS(snapshot.config.upstreams)
        for (name, context) in fresh { snapshot.tlsContexts[name]?.replace(context) }
        for (name, context) in freshUpstreams { snapshot.upstreamTLSContexts[name]?.replace(context) }
        logger.info("certificates reloaded", metadata: ["listeners": "\(fresh.keys.sorted())",
                                                        "upstreams": "\(freshUpstreams.keys.sorted())"])
    }

    /// Open downstream connections on a listener (for tests and, later, metrics).
    public func openConnections(listener: String) -> Int {
        running.withLock { $0.listeners[listener]?.limiter.openConnections ?? 0 }
    }
}

/// One bound listener: its socket, its connection limit, its drain helper, and the pipeline
/// settings new connections get (replaced by a reload that keeps the listener).
final class BoundListener: Sendable {
    private let state: Mutex<(config: ListenerConfig, pipeline: DownstreamPipeline, channel: (any Channel)?)>
    let limiter: ConnectionLimiter
    /// Per listener, so a reload can drain one listener and shutdown all.
    let quiesce = ServerQuiescingHelper(group: MultiThreadedEventLoopGroup.singleton)

    init(config: ListenerConfig, pipeline: DownstreamPipeline, perAddress: PerAddressConnections) {
        state = Mutex((config, pipeline, nil))
        limiter = ConnectionLimiter(limit: config.limits.maxConnections, perAddress: perAddress)
    }

    var config: ListenerConfig { state.withLock { $0.config } }
    var pipeline: DownstreamPipeline { state.withLock { $0.pipeline } }
    var channel: (any Channel)? {
        get { state.withLock { $0.channel } }
        set { state.withLock { $0.channel = newValue } }
    }

    func update(config: ListenerConfig, pipeline: DownstreamPipeline) {
        state.withLock {
            $0.config = config
            $0.pipeline = pipeline
        }
        limiter.setLimit(config.limits.maxConnections)
    }
}

/// Each loop's context, found by the loop a new connection landed on. Built before any
/// connection is accepted; each context's state is touched only on its loop.
final class LoopContexts: @unchecked Sendable {
    private let byLoop: [ObjectIdentifier: LoopContext]
    private let loops: [any EventLoop]

    init(group: MultiThreadedEventLoopGroup, snapshot: RuntimeSnapshot,
         onExchangeComplete: (@Sendable (CompletedExchange) -> Void)?) {
        var byLoop: [ObjectIdentifier: LoopContext] = [:]
        var loops: [any EventLoop] = []
        for loop in group.makeIterator() {
            byLoop[ObjectIdentifier(loop)] = LoopContext(eventLoop: loop, snapshot: snapshot, version: 1,
                                                         onExchangeComplete: onExchangeComplete)
            loops.append(loop)
        }
        self.byLoop = byLoop
        self.loops = loops
    }

    var count: Int { byLoop.count }

    func context(for loop: any EventLoop) -> LoopContext {
        loop.preconditionInEventLoop()
        return byLoop[ObjectIdentifier(loop)]!
    }

    /// Each loop switches on its own thread, between two events: no lock on the request path.
    func install(_ snapshot: RuntimeSnapshot, version: Int) async {
        let installed = loops.map { loop in
            loop.submit { [self] in context(for: loop).install(snapshot, version: version) }
        }
        for future in installed { try? await future.get() }
    }
}
