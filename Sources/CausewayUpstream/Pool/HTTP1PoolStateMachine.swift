import NIOCore

/// The decisions of one HTTP/1.1 connection pool (one endpoint, one event loop), as a value.
///
/// It owns no sockets and no timers: callers report events (a lease is wanted, a connection
/// came up, failed, was released or closed) and run the action it returns. One pool serves one
/// event loop, so no lock is involved; the pool class around it only maps ids to objects.
public struct HTTP1PoolStateMachine: Sendable {
    public typealias ConnectionID = Int
    public typealias WaiterID = Int

    public enum LeaseAction: Equatable, Sendable {
        /// Hand this idle connection to the caller now.
        case use(ConnectionID)
        /// The waiter is queued; open this new connection for it.
        case connect(ConnectionID)
        /// The waiter is queued for the next released connection.
        case wait
        /// Pool and queue are full: answer 503.
        case reject
    }

    public enum Action: Equatable, Sendable {
        case none
        /// Give this connection to this waiter.
        case use(ConnectionID, WaiterID)
        /// Keep this connection idle (arm its idle timer).
        case park(ConnectionID)
        /// Open a replacement connection for queued waiters.
        case connect(ConnectionID)
        /// A queued waiter cannot be served (its connection attempt failed).
        case fail(WaiterID)
    }

    public let maxConnections: Int
    public let maxPending: Int
    public private(set) var idle: [ConnectionID] = []
    public private(set) var leased = 0
    public private(set) var connecting = 0
    public private(set) var waiters = CircularBuffer<WaiterID>()
    private var nextConnectionID = 0

    public init(maxConnections: Int, maxPending: Int) {
        self.maxConnections = maxConnections
        self.maxPending = maxPending
    }

    public var openConnections: Int { idle.count + leased + connecting }

    /// Without an idle connection, a lease opens a new one while under `maxConnections`;
    /// `maxPending` bounds only the waiters that no connection is coming up for.
    public mutating func lease(_ waiter: WaiterID) -> LeaseAction {
        if let connection = idle.popLast() {  // most recently used first: warm, and lets the rest idle out
            leased += 1
            return .use(connection)
        }
        if openConnections < maxConnections {
            waiters.append(waiter)
            return .connect(newConnection())
        }
        // Every connection is busy or coming up: queue, up to max_pending beyond those coming up.
        guard waiters.count - connecting < maxPending else { return .reject }
        waiters.append(waiter)
        return .wait
    }

    public mutating func connected(_ connection: ConnectionID) -> Action {
        connecting -= 1
        return assign(connection)
    }

    public mutating func connectFailed() -> Action {
        connecting -= 1
        // Fail one waiter only when no other connection is on its way to serve it.
        if waiters.count > connecting, let waiter = waiters.popFirst() {
            return .fail(waiter)
        }
        return .none
    }

    public mutating func released(_ connection: ConnectionID, reusable: Bool) -> Action {
        leased -= 1
        if reusable { return assign(connection) }
        return replaceIfNeeded()
    }

    /// An idle connection closed (timeout or the upstream hung up).
    public mutating func idleClosed(_ connection: ConnectionID) -> Action {
        if let index = idle.firstIndex(of: connection) { idle.remove(at: index) }
        return .none
    }

    /// A waiter gave up (timeout, client gone). Returns whether it was still queued.
    public mutating func cancel(_ waiter: WaiterID) -> Bool {
        guard let index = waiters.firstIndex(of: waiter) else { return false }
        waiters.remove(at: index)
        return true
    }

    private mutating func assign(_ connection: ConnectionID) -> Action {
        if let waiter = waiters.popFirst() {
            leased += 1
            return .use(connection, waiter)
        }
        idle.append(connection)
        return .park(connection)
    }

    private mutating func replaceIfNeeded() -> Action {
        if waiters.count > connecting && openConnections < maxConnections {
            return .connect(newConnection())
        }
        return .none
    }

    private mutating func newConnection() -> ConnectionID {
        connecting += 1
        nextConnectionID += 1
        return nextConnectionID
    }
}
