import CausewayConfig
import CausewayHTTP
import NIOCore
import COpenSSL
import NIOWebSocket

/// One proxied WebSocket: the client's connection and the upstream's, joined frame by frame.
/// Both live on one event loop, so the session needs no lock.
///
/// Frames are parsed both ways so the gateway can hold the line:
/// - client frames must be masked and upstream frames must not be (1002 otherwise);
/// - a message larger than `max_message_size`, across its fragments, closes both sides with
///   1009; a single frame larger than that is refused by the decoder before it is buffered;
/// - text messages must be UTF-8 (1007), checked across fragments (compressed ones, RSV1, pass);
/// - no frame either way for `idle_timeout` closes both sides with 1001;
/// - a side silent for `ping_interval` gets a ping; one that has not answered by the next tick
///   is dropped without a close (1006, abnormal) and the other side gets 1001;
/// - a drain (SIGTERM) closes the tunnel with 1001 to both sides just before `drain_timeout`;
/// - a side that goes away gets its peer a close: 1001 to the upstream when the client left,
///   1011 to the client when the upstream failed; a close frame is passed on, then both close;
/// - a full peer stops reads on the other side (backpressure), so memory stays bounded.
/// Frames pass one by one (RSV bits and extension data untouched, so permessage-deflate
/// negotiated end to end works); nothing is reassembled. Each side is a `ByteTunnel`: an
/// HTTP/1.1 connection after its 101, or an HTTP/2 stream (RFC 8441); frames are parsed and
/// written here (`WebSocketFrames.swift`), the same for both.
final class WebSocketSession {
    enum Side {
        case client, upstream
        var other: Side { self == .client ? .upstream : .client }
    }

    private let config: WebSocketConfig
    private let drainTimeout: TimeAmount
    private let eventLoop: any EventLoop
    private let client: WebSocketEndpoint
    private let upstream: WebSocketEndpoint
    /// Runs `tick` for idle and ping checks (one sweep per route per loop, no timer of its own).
    private let keeper: WebSocketKeeper
    /// This session's place in the keeper's list.
    var keeperIndex: Int?
    private var drainTimer: Scheduled<Void>?
    private var lastFrame = NIODeadline.now()
    private(set) var closed = false
    static let pingPayload = ByteBuffer(string: "causeway")

    init(config: WebSocketConfig, drainTimeout: TimeAmount, keeper: WebSocketKeeper) {
        self.config = config
        self.drainTimeout = drainTimeout
        self.eventLoop = keeper.eventLoop
        self.keeper = keeper
        client = WebSocketEndpoint(side: .client, maxFrameSize: config.maxMessageSize)
        upstream = WebSocketEndpoint(side: .upstream, maxFrameSize: config.maxMessageSize)
        client.session = self
        upstream.session = self
        keeper.add(self)
    }

    private func endpoint(_ side: Side) -> WebSocketEndpoint { side == .client ? client : upstream }

    /// Joins `tunnel` as `side`: bytes it already read are parsed now.
    func attach(_ tunnel: any ByteTunnel, as side: Side) {
        let endpoint = endpoint(side)
        endpoint.tunnel = tunnel
        tunnel.attach(endpoint)
    }

    // MARK: From the endpoints

    /// Bytes came from `endpoint`. Only flagged: the keeper's sweep turns flags into times, so
    /// a message costs no clock read (idle and ping checks are as precise as the sweep).
    func heard(from endpoint: WebSocketEndpoint) {
        endpoint.heardSinceSweep = true
    }

    func received(_ frame: WebSocketFrame, from source: WebSocketEndpoint) {
        guard !closed else { return }
        let side = source.side
        switch side {
        case .client where frame.maskKey == nil:
            return fail(code: .protocolError, reason: "client frames must be masked")
        case .upstream where frame.maskKey != nil:
            return fail(code: .protocolError, reason: "server frames must not be masked")
        default:
            break
        }
        switch frame.opcode {
        case .text, .binary, .continuation:
            source.messageBytes += frame.length
            if source.messageBytes > config.maxMessageSize {
                return fail(code: .messageTooLarge, reason: "message larger than \(config.maxMessageSize) bytes")
            }
            if frame.opcode != .continuation {
                // Compressed text (permessage-deflate sets RSV1) is checked by the endpoints.
                source.checkingText = frame.opcode == .text && !frame.rsv1
                source.utf8 = UTF8Validator()
            }
            if source.checkingText {
                if !source.utf8.feed(frame.data, mask: frame.maskKey) || (frame.fin && !source.utf8.isComplete) {
                    return fail(code: .dataInconsistentWithMessage, reason: "text message is not valid UTF-8")
                }
            }
            if frame.fin { source.messageBytes = 0 }
        case .connectionClose:
            source.closeSeen = true
        case .pong where source.pingSent != nil && frame.unmaskedData == Self.pingPayload:
            source.pingSent = nil  // the answer to the gateway's own ping: not passed on
            return
        default:
            break
        }
        forward(frame, to: endpoint(side.other))
        if client.closeSeen && upstream.closeSeen { closeBoth() }
    }

    func readComplete(from side: Side) {
        endpoint(side.other).tunnel?.flush()
    }

    /// A side's connection (or stream) ended without a close handshake.
    func sideClosed(_ side: Side) {
        guard !closed else { return }
        let source = endpoint(side)
        source.tunnel = nil
        // A side that sent its close frame has said goodbye: the other side has it already.
        // Otherwise the upstream hears "going away" when the client left, and the client hears
        // "internal error" when the upstream failed.
        if !source.closeSeen {
            let code: WebSocketErrorCode = side == .client ? .goingAway : .unexpectedServerError
            sendClose(code: code, reason: side == .client ? "client went away" : "upstream connection lost", to: side.other)
        }
        closeBoth()
    }

    /// The reader refused a frame (too large, malformed).
    func protocolError(_ failure: WebSocketFrameReader.Failure) {
        switch failure {
        case .tooLarge: fail(code: .messageTooLarge, reason: "frame larger than \(config.maxMessageSize) bytes")
        case .malformed: fail(code: .protocolError, reason: "malformed frame")
        }
    }

    func writabilityChanged(of side: Side, writable: Bool) {
        endpoint(side.other).tunnel?.setReading(writable)
    }

    // MARK: Sending

    private func forward(_ frame: WebSocketFrame, to target: WebSocketEndpoint) {
        guard let tunnel = target.tunnel else { return }
        // Toward the upstream a frame is masked with a key of the gateway's own (a client's
        // frames must not reach the wire as the client masked them, RFC 6455 §10.3).
        let mask: WebSocketMaskingKey? = target.side == .upstream ? keeper.nextMask() : nil
        tunnel.write(WebSocketFrameWriter.encode(frame, mask: mask, allocator: tunnel.allocator))
        if !tunnel.isWritable { endpoint(target.side.other).tunnel?.setReading(false) }
    }

    private func send(_ opcode: WebSocketOpcode, _ payload: ByteBuffer, to side: Side) {
        guard let tunnel = endpoint(side).tunnel else { return }
        let frame = WebSocketFrame(fin: true, opcode: opcode, data: payload)
        tunnel.write(WebSocketFrameWriter.encode(frame, mask: side == .upstream ? keeper.nextMask() : nil, allocator: tunnel.allocator))
    }

    private func sendClose(code: WebSocketErrorCode, reason: String, to side: Side) {
        var data = ByteBuffer()
        data.write(webSocketErrorCode: code)
        data.writeString(String(reason.utf8.prefix(123))!)
        send(.connectionClose, data, to: side)
        endpoint(side).tunnel?.flush()
    }

    /// A policy violation: both sides get a close with `code`, then both connections end.
    private func fail(code: WebSocketErrorCode, reason: String) {
        guard !closed else { return }
        sendClose(code: code, reason: reason, to: .client)
        sendClose(code: code, reason: reason, to: .upstream)
        closeBoth()
    }

    private func closeBoth() {
        guard !closed else { return }
        closed = true
        keeper.remove(self)
        drainTimer?.cancel()
        drainTimer = nil
        for endpoint in [client, upstream] {
            let tunnel = endpoint.tunnel
            endpoint.tunnel = nil
            endpoint.session = nil
            tunnel?.close()
        }
    }

    // MARK: Drain

    /// The gateway is draining: tunnels get until just before `drain_timeout`, then a close
    /// 1001 to both sides (never a bare reset when the process ends).
    func drain() {
        guard !closed, drainTimer == nil else { return }
        let grace = max(drainTimeout - .milliseconds(500), .zero)
        drainTimer = eventLoop.assumeIsolated().scheduleTask(in: grace) { [self] in
            drainTimer = nil
            fail(code: .goingAway, reason: "the gateway is shutting down")
        }
    }

    // MARK: Idle and pings (from the keeper's sweep)

    func tick(now: NIODeadline) {
        guard !closed else { return }
        for endpoint in [client, upstream] where endpoint.heardSinceSweep {
            endpoint.heardSinceSweep = false
            endpoint.lastHeard = now
            lastFrame = now
        }
        if let idle = config.idleTimeout.map(TimeAmount.init), now - lastFrame >= idle {
            return fail(code: .goingAway, reason: "idle for \(config.idleTimeout!)")
        }
        guard let interval = config.pingInterval.map(TimeAmount.init) else { return }
        for endpoint in [client, upstream] {
            if let sent = endpoint.pingSent {
                // No pong for a whole interval: that side is gone. Dropped without a close
                // (1006, abnormal); the other side hears "going away".
                if now - sent >= interval { return lost(endpoint.side) }
            } else if now - endpoint.lastHeard >= interval, endpoint.tunnel != nil {
                endpoint.pingSent = now
                send(.ping, Self.pingPayload, to: endpoint.side)
                endpoint.tunnel?.flush()
            }
        }
    }

    private func lost(_ side: Side) {
        guard !closed else { return }
        let dead = endpoint(side).tunnel
        endpoint(side).tunnel = nil
        sendClose(code: .goingAway, reason: "peer did not answer pings", to: side.other)
        closeBoth()
        dead?.close()
    }
}

/// The timers of every WebSocket of one route on one loop: one sweep every `period` calls
/// each open session's `tick`, instead of each session holding scheduled tasks. (Cancelling a
/// NIO scheduled task searches the loop's whole task list, so per-session timers made each new
/// session slower as thousands stayed open.) Sessions join and leave in O(1).
final class WebSocketKeeper {
    let eventLoop: any EventLoop
    /// A quarter of the route's shortest interval, between 100 ms and 1 s: checks land within
    /// that of their due time.
    let period: TimeAmount
    private var sessions: [WebSocketSession] = []
    private var sweep: Scheduled<Void>?
    /// Masking keys from OpenSSL's CSPRNG (RFC 6455 §10.3 wants strong entropy), 4 KiB at a
    /// time: Swift's `.random()` made a getrandom system call for every frame.
    private var masks = [UInt32](repeating: 0, count: 1024)
    private var nextMaskIndex = 1024

    func nextMask() -> WebSocketMaskingKey {
        if nextMaskIndex == masks.count {
            let filled = masks.withUnsafeMutableBytes { RAND_bytes($0.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32($0.count)) }
            if filled != 1 {  // not expected; never leave a key predictable
                var generator = SystemRandomNumberGenerator()
                for index in masks.indices { masks[index] = generator.next() }
            }
            nextMaskIndex = 0
        }
        let word = masks[nextMaskIndex]
        nextMaskIndex += 1
        return WebSocketMaskingKey([UInt8(truncatingIfNeeded: word), UInt8(truncatingIfNeeded: word >> 8),
                                    UInt8(truncatingIfNeeded: word >> 16), UInt8(truncatingIfNeeded: word >> 24)])!
    }

    init(config: WebSocketConfig, eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
        let shortest = [config.idleTimeout, config.pingInterval].compactMap { $0.map(TimeAmount.init) }.min() ?? .seconds(4)
        period = min(max(.nanoseconds(shortest.nanoseconds / 4), .milliseconds(100)), .seconds(1))
    }

    func add(_ session: WebSocketSession) {
        session.keeperIndex = sessions.count
        sessions.append(session)
        if sweep == nil { armSweep() }
    }

    func remove(_ session: WebSocketSession) {
        guard let index = session.keeperIndex, index < sessions.count, sessions[index] === session else { return }
        session.keeperIndex = nil
        let last = sessions.removeLast()
        if index < sessions.count {
            sessions[index] = last
            last.keeperIndex = index
        }
    }

    private func armSweep() {
        sweep = eventLoop.assumeIsolated().scheduleTask(in: period) { [self] in
            sweep = nil
            let now = NIODeadline.now()
            // Backwards: a session that closes is swapped out of its slot without skipping one.
            var index = sessions.count - 1
            while index >= 0 {
                if index < sessions.count { sessions[index].tick(now: now) }
                index -= 1
            }
            if !sessions.isEmpty { armSweep() }  // none left: no wakeups until the next one
        }
    }
}

/// One side of a session: its tunnel, its frame reader, and what the session tracks per side.
final class WebSocketEndpoint: ByteTunnelDelegate {
    let side: WebSocketSession.Side
    /// The tunnels hold their endpoints and the endpoints the session, until it closes.
    var session: WebSocketSession?
    var tunnel: (any ByteTunnel)?
    private var reader: WebSocketFrameReader
    var utf8 = UTF8Validator()
    /// The current message is text and must be checked.
    var checkingText = false
    var messageBytes = 0
    var lastHeard = NIODeadline.now()
    /// Bytes arrived since the keeper's last sweep.
    var heardSinceSweep = false
    /// When the gateway's ping went to this side, until its pong.
    var pingSent: NIODeadline?
    var closeSeen = false

    init(side: WebSocketSession.Side, maxFrameSize: Int) {
        self.side = side
        self.reader = WebSocketFrameReader(maxFrameSize: maxFrameSize)
    }

    func tunnelRead(_ bytes: ByteBuffer) {
        guard let session, !session.closed else { return }
        session.heard(from: self)
        reader.append(bytes)
        do {
            while !session.closed, let frame = try reader.next() {
                session.received(frame, from: self)
            }
        } catch {
            session.protocolError(error)
        }
    }

    func tunnelReadComplete() {
        session?.readComplete(from: side)
    }

    func tunnelWritabilityChanged(_ writable: Bool) {
        session?.writabilityChanged(of: side, writable: writable)
    }

    func tunnelClosed() {
        session?.sideClosed(side)
    }

    func tunnelDraining() {
        session?.drain()
    }
}

/// Incremental UTF-8 check (RFC 3629: no overlongs, no surrogates, nothing past U+10FFFF),
/// fed a message's fragments in order, masked or not: a client's payload is unmasked here as
/// it is read, not copied first. Runs of ASCII go eight bytes at a time.
struct UTF8Validator {
    private var needed = 0
    private var lower: UInt8 = 0x80
    private var upper: UInt8 = 0xBF

    var isComplete: Bool { needed == 0 }

    mutating func feed(_ bytes: ByteBuffer, mask: WebSocketMaskingKey? = nil) -> Bool {
        let key = mask.map { UInt32($0[0]) | UInt32($0[1]) << 8 | UInt32($0[2]) << 16 | UInt32($0[3]) << 24 } ?? 0
        let wideKey = UInt64(key) | UInt64(key) << 32
        return bytes.withUnsafeReadableBytes { raw in
            var index = 0
            let count = raw.count
            while index < count {
                if needed == 0 && index & 3 == 0 {
                    // ASCII fast path (index a multiple of 4 keeps the key aligned).
                    while index + 8 <= count,
                        (raw.loadUnaligned(fromByteOffset: index, as: UInt64.self) ^ wideKey) & 0x8080_8080_8080_8080 == 0
                    {
                        index += 8
                    }
                    if index == count { break }
                }
                let byte = raw[index] ^ UInt8(truncatingIfNeeded: key >> (UInt32(index & 3) * 8))
                index += 1
                if !step(byte) { return false }
            }
            return true
        }
    }

    private mutating func step(_ byte: UInt8) -> Bool {
        if needed == 0 {
            switch byte {
            case 0x00...0x7F: return true
            case 0xC2...0xDF: needed = 1
            case 0xE0: (needed, lower) = (2, 0xA0)
            case 0xE1...0xEC, 0xEE...0xEF: needed = 2
            case 0xED: (needed, upper) = (2, 0x9F)
            case 0xF0: (needed, lower) = (3, 0x90)
            case 0xF1...0xF3: needed = 3
            case 0xF4: (needed, upper) = (3, 0x8F)
            default: return false
            }
            return true
        }
        guard byte >= lower && byte <= upper else { return false }
        (lower, upper) = (0x80, 0xBF)
        needed -= 1
        return true
    }
}

@available(*, unavailable)
extension WebSocketSession: Sendable {}

@available(*, unavailable)
extension WebSocketEndpoint: Sendable {}
