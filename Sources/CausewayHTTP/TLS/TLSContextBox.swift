import Synchronization

/// A TLS context (a listener's server context or an upstream's client context), replaceable at
/// run time when SIGHUP re-reads certificate files. Read once per new connection, never per
/// request, so the lock is off the request path.
public final class TLSContextBox<Context: AnyObject & Sendable>: Sendable {
    private let context: Mutex<Context>

    public init(_ context: Context) {
        self.context = Mutex(context)
    }

    public var current: Context { context.withLock { $0 } }

    public func replace(_ context: Context) {
        self.context.withLock { $0 = context }
    }
}
