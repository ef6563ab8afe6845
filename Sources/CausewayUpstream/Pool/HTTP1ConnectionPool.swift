import CausewayConfig
import NIOCore
import NIOHTTP1
import NIOPosix

/// Who waits for a connection that is not there yet.
public protocol PoolWaiter: AnyObject {
    func poolLeased(_ channel: any UpstreamRequestChannel)
    func poolFailed(_ error: UpstreamError)
}

public enum PoolLeaseResult {
    case leased(any UpstreamRequestChannel)
    /// Queued; keep the id to cancel.
    case pending(Int)
    case rejected
}

/// A per-loop, per-endpoint pool of upstream connections (HTTP/1.1 or HTTP/2).
public protocol UpstreamPool: AnyObject {
    var endpoint: UpstreamEndpoint { get }
    func lease(_ waiter: any PoolWaiter) -> PoolLeaseResult
    func cancel(waiter id: Int)
    /// The upstream left the config (or changed): idle connections close now, busy ones once
    /// their exchange ends. Leases still work, for exchanges that began before the reload.
    func retire()
}

/// HTTP/1.1 keep-alive connections to one endpoint, owned by one event loop.
///
/// Only the owning loop touches it: connections come up on that loop (the bootstrap's group is
/// the loop itself), so an exchange and its upstream socket always share a thread and no lock
/// or hop is needed. Decisions are `HTTP1PoolStateMachine`'s; this class runs its actions.
public final class HTTP1ConnectionPool: UpstreamPool {
    public let endpoint: UpstreamEndpoint
    public let eventLoop: any EventLoop
    let config: PoolConfig
    private var state: HTTP1PoolStateMachine
    private var connections: [Int: UpstreamHTTP1Connection] = [:]
    private var waiters: [Int: any PoolWaiter] = [:]
    private var nextWaiterID = 0
    private var idleTimers: [Int: Scheduled<Void>] = [:]
    /// Connections opened over the pool's life, for tests and metrics.
    public private(set) var connectionsOpened = 0
    private var retired = false

    public init(endpoint: UpstreamEndpoint, config: PoolConfig, eventLoop: any EventLoop) {
        self.endpoint = endpoint
        self.config = config
        self.eventLoop = eventLoop
        self.state = HTTP1PoolStateMachine(maxConnections: config.maxConnections, maxPending: config.maxPending)
    }

    public var openConnections: Int { state.openConnections }

    public func lease(_ waiter: any PoolWaiter) -> PoolLeaseResult {
        nextWaiterID &+= 1
        let waiterID = nextWaiterID
        switch state.lease(waiterID) {
        case .use(let id):
            guard let connection = connections[id] else { return .rejected }
            return .leased(connection)
        case .connect(let id):
            waiters[waiterID] = waiter
            connect(id)
            return .pending(waiterID)
        case .wait:
            waiters[waiterID] = waiter
            return .pending(waiterID)
        case .reject:
            return .rejected
        }
    }

    public func cancel(waiter id: Int) {
        if state.cancel(id) { waiters[id] = nil }
    }

    public func retire() {
        retired = true
        for connection in connections.values where !connection.isActive { connection.cancel() }
    }

    func connectionReleased(_ connection: UpstreamHTTP1Connection, reusable: Bool) {
        if !reusable { connections[connection.id] = nil }
        run(state.released(connection.id, reusable: reusable))
    }

    func connectionClosed(_ connection: UpstreamHTTP1Connection, previousState: UpstreamHTTP1Connection.State) {
        guard connections.removeValue(forKey: connection.id) != nil else { return }
        idleTimers.removeValue(forKey: connection.id)?.cancel()
        switch previousState {
        case .idle: run(state.idleClosed(connection.id))
        case .active: run(state.released(connection.id, reusable: false))
        case .closed: break
        }
    }

    private func run(_ action: HTTP1PoolStateMachine.Action) {
        switch action {
        case .none:
            break
        case .use(let id, let waiterID):
            guard let connection = connections[id], let waiter = waiters.removeValue(forKey: waiterID) else { return }
            waiter.poolLeased(connection)
        case .park(let id):
            if retired {
                connections[id]?.cancel()
            } else {
                armIdleTimer(id)
            }
        case .connect(let id):
            connect(id)
        case .fail(let waiterID):
            waiters.removeValue(forKey: waiterID)?.poolFailed(lastConnectError)
        }
    }

    private var lastConnectError = UpstreamError.connectFailed("connection failed")

    private func connect(_ id: Int) {
        connectionsOpened += 1
        let loopBoundSelf = NIOLoopBound(self, eventLoop: eventLoop)
        endpoint.connect(on: eventLoop, config: config) { channel in
            let pool = loopBoundSelf.value
            // Headers reaching here were parsed and validated on the way in; validating again costs ~5%.
            // Requests are serialized by the connection itself (from HTTPFields); llhttp decodes responses.
            try channel.pipeline.syncOperations.addHandler(HTTP1RequestWriter())
            try channel.pipeline.syncOperations.addHandler(
                ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes)))
            try channel.pipeline.syncOperations.addHandler(UpstreamHTTP1Connection(id: id, pool: pool))
        }
            .assumeIsolated()
            .whenComplete { result in
                let pool = loopBoundSelf.value
                switch result {
                case .success(let channel):
                    // Registered only now: a connection that dies in its TLS handshake was never the pool's.
                    guard let connection = try? channel.pipeline.syncOperations.handler(type: UpstreamHTTP1Connection.self),
                        channel.isActive
                    else {
                        pool.lastConnectError = .connectFailed("the connection closed while it was being set up")
                        pool.run(pool.state.connectFailed())
                        return
                    }
                    pool.connections[id] = connection
                    pool.run(pool.state.connected(id))
                case .failure(let error):
                    pool.connections[id] = nil
                    pool.lastConnectError = UpstreamError(connecting: error)
                    pool.run(pool.state.connectFailed())
                }
            }
    }

    /// Idle connections close after `idle_timeout`. The timer is re-armed lazily: a connection
    /// that is reused keeps its timer, which looks again when it fires.
    private func armIdleTimer(_ id: Int) {
        guard idleTimers[id] == nil, let connection = connections[id] else { return }
        let timeout = TimeAmount(config.idleTimeout)
        idleTimers[id] = eventLoop.assumeIsolated().scheduleTask(deadline: connection.idleSince + timeout) { [self] in
            idleTimers[id] = nil
            guard let connection = connections[id] else { return }
            if connection.isActive { return }  // re-armed when it is parked again
            if NIODeadline.now() >= connection.idleSince + timeout {
                connection.cancel()
            } else {
                armIdleTimer(id)
            }
        }
    }
}

@available(*, unavailable)
extension HTTP1ConnectionPool: Sendable {}
