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

    init(limit: Int) {
        self.limit = Atomic(limit)
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
        child.closeFuture.whenComplete { [self] _ in
            open.subtract(1, ordering: .relaxed)
        }
        context.fireChannelRead(data)
    }
}
