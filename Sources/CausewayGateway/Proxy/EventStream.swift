import CausewayConfig
import CausewayHTTP
import NIOCore

/// What keeps a proxied event stream (`text/event-stream`) alive and honest, as a value: when
/// to send a heartbeat comment, when the upstream has been silent too long, and whether the
/// bytes forwarded so far end between two events (the only place a comment may go in, or the
/// stream may end without cutting an event in half).
///
/// `ProxyTask` feeds it the upstream's bytes and runs one timer at `nextCheck`.
struct EventStream {
    enum Action: Equatable {
        case none
        /// Send `: keep-alive` now (upstream silent for `heartbeat`, at an event boundary).
        case heartbeat
        /// The upstream said nothing for `idle_timeout`: end the stream.
        case idleTimeout
    }

    static let heartbeatComment = ": keep-alive\n\n"

    let heartbeat: TimeAmount?
    let idleTimeout: TimeAmount?
    private(set) var lastUpstreamBytes: NIODeadline
    /// The last bytes sent to the client: an event's, or a heartbeat.
    private var lastSent: NIODeadline
    /// The last (up to) four bytes forwarded, oldest first in the high byte.
    private var tail: UInt32 = 0
    private var tailCount = 0

    init(config: SSEConfig, now: NIODeadline) {
        heartbeat = config.heartbeat.map(TimeAmount.init)
        idleTimeout = config.idleTimeout.map(TimeAmount.init)
        lastUpstreamBytes = now
        lastSent = now
    }

    mutating func received(_ chunk: ByteBuffer, now: NIODeadline) {
        lastUpstreamBytes = now
        lastSent = now
        for byte in chunk.readableBytesView.suffix(4) {
            tail = tail << 8 | UInt32(byte)
            tailCount = min(tailCount + 1, 4)
        }
    }

    /// Nothing forwarded yet, or what was ends with a blank line (CRLF, LF or CR line ends, in
    /// any mix): a comment inserted here, or an end here, cuts no event.
    var atEventBoundary: Bool {
        if tailCount == 0 { return true }
        var bytes: [UInt8] = []
        for shift in stride(from: (tailCount - 1) * 8, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: tail >> UInt32(shift))) }
        // Drop the last line ending (CRLF counts as one), then another must be right before it.
        func isEnd(_ byte: UInt8) -> Bool { byte == 0x0A || byte == 0x0D }
        guard let last = bytes.last, isEnd(last) else { return false }
        bytes.removeLast()
        if last == 0x0A, bytes.last == 0x0D { bytes.removeLast() }
        guard let previous = bytes.last else { return false }
        return isEnd(previous)
    }

    /// When the timer should look next; nil when nothing is configured.
    var nextCheck: NIODeadline? {
        let beat = heartbeat.map { lastSent + $0 }
        let idle = idleTimeout.map { lastUpstreamBytes + $0 }
        switch (beat, idle) {
        case (let beat?, let idle?): return min(beat, idle)
        case (let beat?, nil): return beat
        case (nil, let idle?): return idle
        case (nil, nil): return nil
        }
    }

    mutating func check(now: NIODeadline) -> Action {
        if let idleTimeout, now >= lastUpstreamBytes + idleTimeout { return .idleTimeout }
        guard let heartbeat, now >= lastSent + heartbeat else { return .none }
        // Mid-event (the upstream stopped inside one): a comment here would corrupt it; wait.
        lastSent = now
        return atEventBoundary ? .heartbeat : .none
    }

    /// A response is an event stream by its content type.
    static func isEventStream(_ contentType: String?) -> Bool {
        contentType?.caseInsensitiveHasPrefix("text/event-stream") ?? false
    }
}
