import NIOCore
import Synchronization

/// Enforces a listener's `max_connections`: past the limit a new connection is closed as soon
/// as it is accepted, until others close. The count is shared by every loop's connections of
/// this listener, so it is an atomic, touched once per connection, never per request.
final class ConnectionLimiter: ChannelInboundHandler, Sendable {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel

    private let limit: Atomic<Int>
    private let open = Atomic<Int>(0)
    /// `server.limits.max_connections_per_ip`, shared by every listener.
    private let perAddress: PerAddressConnections

    init(limit: Int, perAddress: PerAddressConnections) {
        self.limit = Atomic(limit)
        self.perAddress = perAddress
    }

    /// A reload changed `max_connections`: connections already open stay.
    func setLimit(_ limit: Int) {
        self.limit.store(limit, ordering: .relaxed)
    }

    var openConnections: Int { open.load(ordering: .relaxed) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let child = unwrapInboundIn(data)
        let (_, now) = open.add(1, ordering: .relaxed)
        if now > limit.load(ordering: .relaxed) {
            open.subtract(1, ordering: .relaxed)
            child.close(promise: nil)
            return
        }
        let address = child.remoteAddress?.ipAddress
        guard perAddress.admit(address) else {
            open.subtract(1, ordering: .relaxed)
            child.close(promise: nil)
            return
        }
        child.closeFuture.whenComplete { [self] _ in
            open.subtract(1, ordering: .relaxed)
            perAddress.release(address)
        }
        context.fireChannelRead(data)
    }
}

/// Open connections by client address, for `server.limits.max_connections_per_ip`: one client
/// cannot take every socket. Touched once when a connection is accepted and once when it
/// closes (a lock on the accept path, never on the request path).
final class PerAddressConnections: Sendable {
    private let limit: Atomic<Int>
    private let counts = Mutex<[String: Int]>([:])

    /// `limit`: nil or 0 = unlimited.
    init(limit: Int?) {
        self.limit = Atomic(limit ?? 0)
    }

    func setLimit(_ limit: Int?) {
        self.limit.store(limit ?? 0, ordering: .relaxed)
    }

    func admit(_ address: String?) -> Bool {
        guard let address else { return true }
        let limit = self.limit.load(ordering: .relaxed)
        return counts.withLock { counts in
            let now = counts[address, default: 0]
            // Counted even when unlimited, so lowering the limit by reload counts what is open.
            if limit > 0 && now >= limit { return false }
            counts[address] = now + 1
            return true
        }
    }

    func release(_ address: String?) {
        guard let address else { return }
        counts.withLock { counts in
            if let now = counts[address], now > 1 { counts[address] = now - 1 } else { counts[address] = nil }
        }
    }
}
