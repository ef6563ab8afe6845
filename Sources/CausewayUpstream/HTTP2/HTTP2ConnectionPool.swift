import CausewayConfig
import NIOCore
import NIOPosix

/// HTTP/2 connections (h2c, or h2 over TLS) to one endpoint, owned by one event loop. Exchanges share a
/// connection as streams; when every connection is at the upstream's SETTINGS_MAX_CONCURRENT_STREAMS
/// (or going away), another is opened, up to `max_connections`; beyond that requests queue up
/// to `max_pending`.
public final class HTTP2ConnectionPool: UpstreamPool {
    public let endpoint: UpstreamEndpoint
    let config: PoolConfig
    let eventLoop: any EventLoop
    private var connections: [HTTP2UpstreamConnection] = []
    private var connecting = 0
    private var waiters = CircularBuffer<(id: Int, waiter: any PoolWaiter)>()
    private var nextWaiterID = 0
    public private(set) var connectionsOpened = 0
    private var retired = false

    public init(endpoint: UpstreamEndpoint, config: PoolConfig, eventLoop: any EventLoop) {
        self.endpoint = endpoint
        self.config = config
        self.eventLoop = eventLoop
    }

    public func lease(_ waiter: any PoolWaiter) -> PoolLeaseResult {
        if waiters.isEmpty, let connection = connections.first(where: { $0.availableStreams > 0 }) {
            return .leased(connection.makeStream())
        }
        guard waiters.count < max(config.maxPending, 1) || connecting == 0 else { return .rejected }
        if connections.count + connecting >= config.maxConnections && waiters.count >= config.maxPending {
            return .rejected
        }
        nextWaiterID &+= 1
        waiters.append((nextWaiterID, waiter))
        if connecting == 0 && connections.count < config.maxConnections { connect() }
        return .pending(nextWaiterID)
    }

    public func cancel(waiter id: Int) {
        if let index = waiters.firstIndex(where: { $0.id == id }) { waiters.remove(at: index) }
    }

    public func retire() {
        retired = true
        for connection in connections where connection.streams.isEmpty { connection.closeGracefully() }
    }

    func streamClosed(on connection: HTTP2UpstreamConnection) {
        serveWaiters()
        if retired && connection.streams.isEmpty { connection.closeGracefully() }
    }

    func connectionClosed(_ connection: HTTP2UpstreamConnection) {
        connections.removeAll { $0 === connection }
        serveWaiters()
    }

    private func serveWaiters() {
        while let first = waiters.first, let connection = connections.first(where: { $0.availableStreams > 0 }) {
            _ = waiters.popFirst()
            first.waiter.poolLeased(connection.makeStream())
        }
        if !waiters.isEmpty && connecting == 0 && connections.count < config.maxConnections { connect() }
    }

    private func connect() {
        connecting += 1
        connectionsOpened += 1
        let loopBoundSelf = NIOLoopBound(self, eventLoop: eventLoop)
        endpoint.connect(on: eventLoop, config: config) { channel in
            try channel.pipeline.syncOperations.addHandler(HTTP2UpstreamConnection(pool: loopBoundSelf.value))
        }
            .assumeIsolated()
            .whenComplete { result in
                let pool = loopBoundSelf.value
                pool.connecting -= 1
                switch result {
                case .success(let channel):
                    if let connection = try? channel.pipeline.syncOperations.handler(type: HTTP2UpstreamConnection.self),
                        channel.isActive
                    {
                        pool.connections.append(connection)
                    }
                    pool.serveWaiters()
                case .failure(let error):
                    let failure = UpstreamError(connecting: error)
                    if pool.connecting == 0 && !pool.connections.contains(where: { $0.availableStreams > 0 }) {
                        let waiting = pool.waiters
                        pool.waiters.removeAll()
                        for entry in waiting { entry.waiter.poolFailed(failure) }
                    }
                }
            }
    }
}

@available(*, unavailable)
extension HTTP2ConnectionPool: Sendable {}
