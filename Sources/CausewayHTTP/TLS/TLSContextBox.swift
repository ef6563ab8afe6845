import Synchronization

/// The current TLS context of a listener, replaceable at run time (certificate reload). Read
/// once per new connection, never per request.
public final class TLSContextBox: Sendable {
    private let context: Mutex<TLSServerContext>

    public init(_ context: TLSServerContext) {
        self.context = Mutex(context)
    }

    public var current: TLSServerContext { context.withLock { $0 } }

    public func replace(_ context: TLSServerContext) {
        self.context.withLock { $0 = context }
    }
}
