import NIOCore

/// When a downstream HTTP/1.1 connection must be cut for lack of progress.
///
/// Idle keep-alive connections get `idleTimeout`; once the first byte of a request arrives the
/// head must be complete within `headerTimeout` (slowloris); while an exchange runs, the
/// route's own timeout applies instead. One scheduled task per connection is re-armed lazily,
/// so a request costs a clock read, not a timer schedule and cancel.
struct ConnectionTimer {
    enum Phase: Equatable {
        case idle(since: NIODeadline)
        case readingHead(since: NIODeadline)
        case busy
    }

    enum Action: Equatable {
        case closeIdle
        case requestTimeout
        case rearm(at: NIODeadline)
    }

    private(set) var phase: Phase
    let idleTimeout: TimeAmount
    let headerTimeout: TimeAmount

    init(now: NIODeadline, idleTimeout: TimeAmount, headerTimeout: TimeAmount) {
        self.phase = .idle(since: now)
        self.idleTimeout = idleTimeout
        self.headerTimeout = headerTimeout
    }

    var isIdle: Bool {
        if case .idle = phase { return true }
        return false
    }

    mutating func bytesArrived(now: @autoclosure () -> NIODeadline) {
        if case .idle = phase { phase = .readingHead(since: now()) }
    }

    mutating func headReceived() {
        phase = .busy
    }

    mutating func exchangeCompleted(now: NIODeadline) {
        phase = .idle(since: now)
    }

    /// When the head being read must be complete, while one is being read.
    var headDeadline: NIODeadline? {
        if case .readingHead(let since) = phase { return since + headerTimeout }
        return nil
    }

    /// The first deadline, for arming the timer when the connection opens.
    var nextDeadline: NIODeadline {
        switch phase {
        case .idle(let since): return since + idleTimeout
        case .readingHead(let since): return since + headerTimeout
        case .busy: return .now() + min(idleTimeout, headerTimeout)
        }
    }

    func check(now: NIODeadline) -> Action {
        switch phase {
        case .idle(let since):
            return now >= since + idleTimeout ? .closeIdle : .rearm(at: since + idleTimeout)
        case .readingHead(let since):
            return now >= since + headerTimeout ? .requestTimeout : .rearm(at: since + headerTimeout)
        case .busy:
            return .rearm(at: now + min(idleTimeout, headerTimeout))
        }
    }
}

/// Sits before the HTTP/1.1 decoder and tells the connection handler that bytes arrived, so a
/// request head's clock starts at its first byte. It passes the bytes on untouched.
///
/// At the end of a read cycle it reports again, after the decoder has seen every byte: a head
/// still incomplete then is the moment to bring the timer's deadline forward. A head that
/// arrives whole in one read (the common case) costs no timer schedule.
public final class ByteArrivalObserver: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer

    private let onBytes: () -> Void
    private let onReadComplete: () -> Void
    private var sawBytes = false

    init(onBytes: @escaping () -> Void, onReadComplete: @escaping () -> Void) {
        self.onBytes = onBytes
        self.onReadComplete = onReadComplete
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        sawBytes = true
        onBytes()
        context.fireChannelRead(data)
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        if sawBytes {
            sawBytes = false
            onReadComplete()
        }
        context.fireChannelReadComplete()
    }
}

@available(*, unavailable)
extension ByteArrivalObserver: Sendable {}
