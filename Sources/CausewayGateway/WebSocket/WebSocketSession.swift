import CausewayConfig
import NIOCore
import NIOWebSocket

/// One proxied WebSocket: the client's connection and the upstream's, joined frame by frame.
/// Both live on one event loop, so the session needs no lock.
///
/// Frames are parsed both ways (NIOWebSocket's codec) so the gateway can hold the line:
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
/// negotiated end to end works); nothing is reassembled.
final class WebSocketSession {
    enum Side {
        case client, upstream
        var other: Side { self == .client ? .upstream : .client }
    }

    private let config: WebSocketConfig
    private let drainTimeout: TimeAmount
    private let eventLoop: any EventLoop
    private var utf8: [Side: UTF8Validator] = [:]
    /// The current message of a side is text and must be checked.
    private var checkingText: [Side: Bool] = [:]
    private var lastHeard: [Side: NIODeadline] = [:]
    private var pingOutstanding: Set<Side> = []
    private var pingTimer: Scheduled<Void>?
    private var drainTimer: Scheduled<Void>?
    static let pingPayload = ByteBuffer(string: "causeway")
    private var relays: [Side: WebSocketRelay] = [:]
    /// Frames for a side whose relay is not installed yet (the first frames of the switch).
    private var pending: [Side: [WebSocketFrame]] = [:]
    private var messageBytes: [Side: Int] = [.client: 0, .upstream: 0]
    private var closeSeen: Set<Side> = []
    private var closed = false
    private var lastFrame = NIODeadline.now()
    private var idleTimer: Scheduled<Void>?

    init(config: WebSocketConfig, drainTimeout: TimeAmount, eventLoop: any EventLoop) {
        self.config = config
        self.drainTimeout = drainTimeout
        self.eventLoop = eventLoop
        let now = NIODeadline.now()
        lastHeard = [.client: now, .upstream: now]
        armIdleTimer()
        armPingTimer()
    }

    func attach(_ relay: WebSocketRelay) {
        relays[relay.side] = relay
        for frame in pending.removeValue(forKey: relay.side) ?? [] { relay.write(frame) }
        relay.flush()
    }

    // MARK: From the relays

    func received(_ frame: WebSocketFrame, from side: Side) {
        guard !closed else { return }
        lastFrame = .now()
        lastHeard[side] = lastFrame
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
            messageBytes[side, default: 0] += frame.length
            if messageBytes[side, default: 0] > config.maxMessageSize {
                return fail(code: .messageTooLarge, reason: "message larger than \(config.maxMessageSize) bytes")
            }
            if frame.opcode != .continuation {
                // Compressed text (permessage-deflate sets RSV1) is checked by the endpoints.
                checkingText[side] = frame.opcode == .text && !frame.rsv1
                utf8[side] = UTF8Validator()
            }
            if checkingText[side] == true {
                let payload = side == .client ? frame.unmaskedData : frame.data
                if !utf8[side, default: UTF8Validator()].feed(payload) || (frame.fin && !utf8[side]!.isComplete) {
                    return fail(code: .dataInconsistentWithMessage, reason: "text message is not valid UTF-8")
                }
            }
            if frame.fin { messageBytes[side] = 0 }
        case .connectionClose:
            closeSeen.insert(side)
        case .pong where pingOutstanding.contains(side) && frame.unmaskedData == Self.pingPayload:
            pingOutstanding.remove(side)  // the answer to the gateway's own ping: not passed on
            return
        default:
            break
        }
        forward(frame, to: side.other)
        if closeSeen.count == 2 { closeBoth() }
    }

    func readComplete(from side: Side) {
        relays[side.other]?.flush()
    }

    /// After the switch: frames that came with the handshakes were forwarded outside a read
    /// cycle, so nothing else would flush them.
    func flushAll() {
        for relay in relays.values { relay.flush() }
    }

    /// A side's connection ended (or failed) without a close handshake.
    func sideClosed(_ side: Side) {
        guard !closed else { return }
        relays[side] = nil
        if closeSeen.contains(side) && closeSeen.contains(side.other) { return closeBoth() }
        // The client left: the upstream hears "going away"; the upstream failed: the client
        // hears "internal error".
        let code: WebSocketErrorCode = side == .client ? .goingAway : .unexpectedServerError
        sendClose(code: code, reason: side == .client ? "client went away" : "upstream connection lost", to: side.other)
        closeBoth()
    }

    /// The decoder refused a frame (too large, malformed).
    func protocolError(_ error: any Error, from side: Side) {
        if let error = error as? NIOWebSocketError, error == .invalidFrameLength {
            fail(code: .messageTooLarge, reason: "frame larger than \(config.maxMessageSize) bytes")
        } else {
            fail(code: .protocolError, reason: "malformed frame")
        }
    }

    func writabilityChanged(of side: Side, writable: Bool) {
        relays[side.other]?.setReading(writable)
    }

    // MARK: Sending

    private func forward(_ frame: WebSocketFrame, to side: Side) {
        var frame = frame
        if side == .upstream {
            // The encoder masks what it sends: give it the client's payload unmasked, with a
            // key of the gateway's own (a client's frames stay masked on the wire, RFC 6455 §5.3).
            frame = WebSocketFrame(fin: frame.fin, rsv1: frame.rsv1, rsv2: frame.rsv2, rsv3: frame.rsv3, opcode: frame.opcode,
                                   maskKey: .random(), data: frame.unmaskedData, extensionData: frame.unmaskedExtensionData)
        }
        guard let relay = relays[side] else {
            pending[side, default: []].append(frame)
            return
        }
        relay.write(frame)
        if !relay.isWritable { relays[side.other]?.setReading(false) }
    }

    private func sendClose(code: WebSocketErrorCode, reason: String, to side: Side) {
        guard let relay = relays[side] else { return }
        var data = relay.allocator.buffer(capacity: 2 + reason.utf8.count)
        data.write(webSocketErrorCode: code)
        data.writeString(String(reason.utf8.prefix(123))!)
        relay.write(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: side == .upstream ? .random() : nil, data: data))
        relay.flush()
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
        idleTimer?.cancel()
        idleTimer = nil
        pingTimer?.cancel()
        pingTimer = nil
        drainTimer?.cancel()
        drainTimer = nil
        for relay in relays.values { relay.closeAfterFlush() }
        relays = [:]
        pending = [:]
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

    // MARK: Pings

    private func armPingTimer() {
        guard let interval = config.pingInterval.map(TimeAmount.init) else { return }
        pingTimer = eventLoop.assumeIsolated().scheduleTask(in: interval) { [self] in
            pingTimer = nil
            guard !closed else { return }
            let now = NIODeadline.now()
            for side in [Side.client, .upstream] {
                if pingOutstanding.contains(side) {
                    // No pong for a whole interval: that side is gone. Dropped without a close
                    // (1006, abnormal); the other side hears "going away".
                    return lost(side)
                }
                if now - lastHeard[side, default: now] >= interval, let relay = relays[side] {
                    pingOutstanding.insert(side)
                    relay.write(WebSocketFrame(fin: true, opcode: .ping, maskKey: side == .upstream ? .random() : nil,
                                               data: Self.pingPayload))
                }
            }
            armPingTimer()
        }
    }

    private func lost(_ side: Side) {
        guard !closed else { return }
        let dead = relays.removeValue(forKey: side)
        sendClose(code: .goingAway, reason: "peer did not answer pings", to: side.other)
        closeBoth()
        dead?.closeAfterFlush()
    }

    // MARK: Idle

    private func armIdleTimer() {
        guard let timeout = config.idleTimeout.map(TimeAmount.init) else { return }
        idleTimer = eventLoop.assumeIsolated().scheduleTask(deadline: lastFrame + timeout) { [self] in
            idleTimer = nil
            guard !closed else { return }
            if NIODeadline.now() >= lastFrame + timeout {
                fail(code: .goingAway, reason: "idle for \(config.idleTimeout!)")
            } else {
                armIdleTimer()
            }
        }
    }
}

/// Incremental UTF-8 check (RFC 3629: no overlongs, no surrogates, nothing past U+10FFFF),
/// fed a message's fragments in order.
struct UTF8Validator {
    private var needed = 0
    private var lower: UInt8 = 0x80
    private var upper: UInt8 = 0xBF

    var isComplete: Bool { needed == 0 }

    mutating func feed(_ bytes: ByteBuffer) -> Bool {
        for byte in bytes.readableBytesView {
            if needed == 0 {
                switch byte {
                case 0x00...0x7F: continue
                case 0xC2...0xDF: needed = 1
                case 0xE0: (needed, lower) = (2, 0xA0)
                case 0xE1...0xEC, 0xEE...0xEF: needed = 2
                case 0xED: (needed, upper) = (2, 0x9F)
                case 0xF0: (needed, lower) = (3, 0x90)
                case 0xF1...0xF3: needed = 3
                case 0xF4: (needed, upper) = (3, 0x8F)
                default: return false
                }
            } else {
                guard byte >= lower && byte <= upper else { return false }
                (lower, upper) = (0x80, 0xBF)
                needed -= 1
            }
        }
        return true
    }
}

/// The session's hands on one connection: frames in, frames out.
final class WebSocketRelay: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let side: WebSocketSession.Side
    private let session: WebSocketSession
    private var context: ChannelHandlerContext?
    private let attachWhenAdded: Bool

    /// `attachWhenAdded` false: the caller attaches it once nothing between it and the socket
    /// would choke on a frame (the upstream's HTTP response decoder, which watches writes, is
    /// removed a tick later). Frames for it wait in the session until then.
    init(side: WebSocketSession.Side, session: WebSocketSession, attachWhenAdded: Bool = true) {
        self.side = side
        self.session = session
        self.attachWhenAdded = attachWhenAdded
    }

    var allocator: ByteBufferAllocator { context?.channel.allocator ?? ByteBufferAllocator() }
    var isWritable: Bool { context?.channel.isWritable ?? true }
    var isActive: Bool { context?.channel.isActive ?? false }

    private var flushScheduled = false

    /// Written now, flushed once per loop tick (or at the source's read-complete, if sooner):
    /// a burst of frames leaves in one write, and frames that arrive outside a read cycle (the
    /// ones that came with a handshake) are not left waiting.
    func write(_ frame: WebSocketFrame) {
        guard let context else { return }
        context.write(wrapOutboundOut(frame), promise: nil)
        guard !flushScheduled else { return }
        flushScheduled = true
        context.eventLoop.assumeIsolated().execute { [self] in flush() }
    }

    func flush() {
        flushScheduled = false
        context?.flush()
    }

    func setReading(_ reading: Bool) {
        guard let context else { return }
        _ = context.channel.setOption(ChannelOptions.autoRead, value: reading)
        if reading { context.read() }
    }

    func closeAfterFlush() {
        guard let context else { return }
        context.flush()
        context.close(promise: nil)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if attachWhenAdded { session.attach(self) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        session.received(unwrapInboundIn(data), from: side)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        session.readComplete(from: side)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        session.writabilityChanged(of: side, writable: context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.context = nil
        session.sideClosed(side)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        session.protocolError(error, from: side)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent { session.drain() }
        context.fireUserInboundEventTriggered(event)
    }
}

@available(*, unavailable)
extension WebSocketSession: Sendable {}

@available(*, unavailable)
extension WebSocketRelay: Sendable {}
