import NIOCore

/// The timeouts of one route's upstream exchanges on one loop, without a timer per request.
///
/// Every exchange here has the same timeout and is added when it starts, so the list is in
/// deadline order: a doubly linked list through the exchanges themselves (adding and removing
/// are O(1) and allocate nothing), and one scheduled task for the oldest deadline. When it
/// fires, the exchanges past their deadline time out and the task is re-armed for the next; an
/// exchange that finishes simply leaves the list. (A `scheduleTask` per request, cancelled at
/// its end, cost ~1 µs of the proxy's CPU per request.)
public final class UpstreamDeadlines {
    public let timeout: TimeAmount
    private let eventLoop: any EventLoop
    private var head: UpstreamExchange?
    private unowned(unsafe) var tail: UpstreamExchange?
    private var timer: Scheduled<Void>?
    /// Exchanges in the list, for tests.
    public private(set) var count = 0

    public init(timeout: TimeAmount, eventLoop: any EventLoop) {
        self.timeout = timeout
        self.eventLoop = eventLoop
    }

    func add(_ exchange: UpstreamExchange) {
        exchange.deadline = .now() + timeout
        exchange.deadlineList = self
        exchange.deadlinePrevious = tail
        exchange.deadlineNext = nil
        if let tail { tail.deadlineNext = exchange } else { head = exchange }
        tail = exchange
        count += 1
        if timer == nil { arm(at: exchange.deadline) }
    }

    func remove(_ exchange: UpstreamExchange) {
        guard exchange.deadlineList === self else { return }
        let next = exchange.deadlineNext
        let previous = exchange.deadlinePrevious
        if let previous { previous.deadlineNext = next } else { head = next }
        if let next { next.deadlinePrevious = previous } else { tail = previous }
        exchange.deadlineNext = nil
        exchange.deadlinePrevious = nil
        exchange.deadlineList = nil
        count -= 1
    }

    private func arm(at deadline: NIODeadline) {
        timer = eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            timer = nil
            let now = NIODeadline.now()
            while let oldest = head, oldest.deadline <= now {
                remove(oldest)
                oldest.deadlinePassed()
            }
            if let oldest = head { arm(at: oldest.deadline) }
        }
    }

    deinit {
        timer?.cancel()
    }
}

@available(*, unavailable)
extension UpstreamDeadlines: Sendable {}
