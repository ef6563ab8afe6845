import CNghttp2
import HTTPTypes
import NIOCore

/// An HTTP/2 server connection: libnghttp2 underneath, one `Exchange` per request stream.
///
/// ```
/// socket ─bytes─▶ this ─mem_recv─▶ nghttp2 ─callbacks─▶ streams ─▶ Exchange ─▶ router, filters, proxy
/// socket ◀─one write per cycle── mem_send ◀── responses submitted by streams
/// ```
/// nghttp2 calls back only from inside `receive`/`drain`; anything those callbacks start that
/// would send is deferred until they return, and all pending frames leave in one write.
public final class HTTP2ServerHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    public struct Configuration: Sendable {
        public var maxConcurrentStreams: Int
        public var initialWindowSize: Int
        public var maxHeaderListSize: Int
        public var idleTimeout: TimeAmount
        /// No request-body progress on a stream for this long, while the body is wanted → 408.
        public var bodyTimeout: TimeAmount
        public var secure: Bool

        public init(maxConcurrentStreams: Int = 128, initialWindowSize: Int = 1 << 20, maxHeaderListSize: Int = 64 << 10,
                    idleTimeout: TimeAmount = .seconds(60), bodyTimeout: TimeAmount = .seconds(30), secure: Bool = false) {
            self.maxConcurrentStreams = maxConcurrentStreams
            self.initialWindowSize = initialWindowSize
            self.maxHeaderListSize = maxHeaderListSize
            self.idleTimeout = idleTimeout
            self.bodyTimeout = bodyTimeout
            self.secure = secure
        }
    }

    private let handler: any ExchangeHandler
    private let configuration: Configuration
    private var session: NGHTTP2Session?
    private var context: ChannelHandlerContext?
    private var streams: [Int32: HTTP2StreamDownstream] = [:]
    private var highestStreamID: Int32 = 0
    /// Closed streams nghttp2 still answers for itself (STREAM_CLOSED), bounded.
    private var recentlyClosed: Set<Int32> = []
    private var clientInfo = ClientInfo(address: "", scheme: "http")
    private var needsFlush = false
    /// A write of what nghttp2 has queued is scheduled for the end of this loop iteration.
    private var flushScheduled = false
    private var afterSendActions: [() -> Void] = []
    private var tunnelsRead: [HTTP2StreamDownstream] = []
    private var closing = false
    private var lastActivity = NIODeadline.now()
    private var resets = FloodMeter(burst: 200, perSecond: 50)
    private var emptyFrames = FloodMeter(burst: 100, perSecond: 20)
    private var idleTimer: Scheduled<Void>?

    /// The HTTP/1.1 request that asked for `Upgrade: h2c`; it becomes stream 1.
    public struct Upgrade {
        public var request: HTTPRequest
        public var settings: [UInt8]

        public init(request: HTTPRequest, settings: [UInt8]) {
            self.request = request
            self.settings = settings
        }
    }

    private var upgrade: Upgrade?

    public init(handler: any ExchangeHandler, configuration: Configuration, upgrade: Upgrade? = nil) {
        self.handler = handler
        self.configuration = configuration
        self.upgrade = upgrade
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        clientInfo = ClientInfo(address: context.channel.remoteAddress?.ipAddress ?? "",
                                scheme: configuration.secure ? "https" : "http")
        let role = NGHTTP2Session.Role.server(
            maxConcurrentStreams: UInt32(clamping: configuration.maxConcurrentStreams),
            initialWindowSize: UInt32(clamping: configuration.initialWindowSize),
            maxHeaderListSize: UInt32(clamping: configuration.maxHeaderListSize))
        do {
            let session = try NGHTTP2Session(role: role)
            session.attach(self)
            self.session = session
        } catch {
            context.close(promise: nil)
            return
        }
        armIdleTimer(context: context)
        if let upgrade {
            self.upgrade = nil
            startUpgradedStream(upgrade, context: context)
        }
        flushNow()
    }

    /// RFC 7540 §3.2: the upgrading request is stream 1, half-closed from the client's side.
    private func startUpgradedStream(_ upgrade: Upgrade, context: ChannelHandlerContext) {
        guard let session, session.upgrade(settings: upgrade.settings, isHead: upgrade.request.method == .head) else {
            context.close(promise: nil)
            return
        }
        highestStreamID = 1
        let stream = HTTP2StreamDownstream(streamID: 1, connection: self)
        streams[1] = stream
        let exchange = Exchange(request: upgrade.request, requestBodyLength: 0, client: clientInfo,
                                eventLoop: context.eventLoop, allocator: context.channel.allocator, downstream: stream)
        stream.exchange = exchange
        handler.handle(exchange)
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        idleTimer?.cancel()
        idleTimer = nil
        self.context = nil
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let session else { return }
        lastActivity = .now()
        let error = session.receive(unwrapInboundIn(data))
        // Tunnels that got DATA in this read: their protocol flushes what it produced.
        let tunnels = tunnelsRead
        tunnelsRead = []
        for stream in tunnels {
            stream.tunnelReadPending = false
            stream.tunnelDelegate?.tunnelReadComplete()
        }
        if let error {
            // A GOAWAY is queued where the protocol or our limits call for one (nghttp2's own
            // for flood limits it enforces): send it, then close. Only this connection ends.
            if error.code == NGHTTP2_ERR_FLOODED.rawValue { session.goAway(code: NGHTTP2_ENHANCE_YOUR_CALM) }
            flushNow()
            context.close(promise: nil)
            return
        }
        flushNow()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        idleTimer?.cancel()
        let open = streams.values
        streams = [:]
        for stream in open {
            if let exchange = stream.exchange {
                stream.exchange = nil
                exchange.downstreamClosed()
            }
            stream.tunnelEnded()
        }
        context.fireChannelInactive()
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            for stream in streams.values where !stream.reportedUnwritable {
                stream.notifyWritable()
            }
        }
        context.fireChannelWritabilityChanged()
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            // GOAWAY with the last stream id: open streams finish, new ones are refused.
            closing = true
            session?.goAway()
            flushNow()
            // Tunnels (WebSockets) close themselves with a goodbye before drain_timeout ends.
            for stream in streams.values { stream.tunnelDelegate?.tunnelDraining() }
            closeIfDone()
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    // MARK: Sending

    var isChannelWritable: Bool { context?.channel.isWritable ?? false }
    var allocator: ByteBufferAllocator { context?.channel.allocator ?? ByteBufferAllocator() }

    /// Sends what is pending once this loop iteration's events are handled: the responses of
    /// every stream that an upstream read completed leave in one write, not one syscall each.
    func flush() {
        guard !flushScheduled, let context else { return }
        flushScheduled = true
        context.eventLoop.assumeIsolated().execute { [self] in
            flushScheduled = false
            flushNow()
        }
    }

    /// Sends every pending frame in one write now, unless nghttp2 is mid-callback.
    func flushNow() {
        guard let session, let context else { return }
        if session.isReceiving {
            needsFlush = true
            return
        }
        needsFlush = false
        if let bytes = session.drain(allocator: context.channel.allocator) {
            context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
        }
        let actions = afterSendActions
        afterSendActions = []
        for action in actions { action() }
        if !session.wantsIO || session.failure != nil { context.close(promise: nil) }
    }

    func afterSend(_ action: @escaping () -> Void) {
        afterSendActions.append(action)
    }

    func submitResponse(_ stream: HTTP2StreamDownstream, status: Int, fields: [(String, String)], hasBody: Bool) {
        guard streams[stream.streamID] === stream else { return }
        guard let session else { return }
        // Refused (a header nghttp2 will not send, the stream gone): the stream cannot be
        // answered, so it is reset rather than left waiting.
        if !session.submitResponse(streamID: stream.streamID, status: status, fields: fields, hasBody: hasBody) {
            session.reset(streamID: stream.streamID, code: NGHTTP2_INTERNAL_ERROR)
        }
    }

    func resume(_ stream: HTTP2StreamDownstream) {
        session?.resume(streamID: stream.streamID)
    }

    func consume(_ stream: HTTP2StreamDownstream, bytes: Int) {
        session?.consume(streamID: stream.streamID, bytes: bytes)
        flush()
    }

    func reset(_ stream: HTTP2StreamDownstream, code: nghttp2_error_code) {
        session?.reset(streamID: stream.streamID, code: code)
        flush()
    }

    /// The exchange answered: send what is pending. Request DATA that still arrives for the
    /// stream is consumed and dropped (`sessionData`), so the connection window stays open.
    func exchangeEnded(_ stream: HTTP2StreamDownstream) {
        flush()
    }

    private func closeIfDone() {
        if closing && streams.isEmpty { context?.close(promise: nil) }
    }

    // MARK: Idle connections

    private func armIdleTimer(context: ChannelHandlerContext) {
        let deadline = lastActivity + configuration.idleTimeout
        idleTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            guard let context = self.context else { return }
            if streams.isEmpty && NIODeadline.now() >= lastActivity + configuration.idleTimeout {
                session?.goAway()
                flushNow()
                context.close(promise: nil)
            } else {
                if !streams.isEmpty { lastActivity = .now() }
                armIdleTimer(context: context)
            }
        }
    }
}

extension HTTP2ServerHandler: NGHTTP2SessionDelegate {
    public func sessionBeginFrame(type: UInt8, streamID: Int32) -> nghttp2_error_code? {
        // nghttp2 silently ignores HEADERS on a new stream id lower than one already used;
        // RFC 9113 §5.1.1 makes it a connection error (h2spec http2/5.1.1/2).
        if type == UInt8(NGHTTP2_HEADERS.rawValue), streams[streamID] == nil, streamID <= highestStreamID,
            !recentlyClosed.contains(streamID)
        {
            return NGHTTP2_PROTOCOL_ERROR
        }
        return nil
    }

    public func sessionFrameReceived(type: UInt8, streamID: Int32, length: Int, flags: UInt8) -> nghttp2_error_code? {
        let now = NIODeadline.now()
        switch type {
        case UInt8(NGHTTP2_RST_STREAM.rawValue):
            // Rapid reset (CVE-2023-44487): a client that cancels streams faster than any real
            // one would is told to calm down and cut off.
            if !resets.allow(now: now) { return NGHTTP2_ENHANCE_YOUR_CALM }
        case UInt8(NGHTTP2_DATA.rawValue), UInt8(NGHTTP2_HEADERS.rawValue), UInt8(NGHTTP2_CONTINUATION.rawValue):
            // Frames that carry nothing and end nothing only cost us work.
            if length == 0 && flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) == 0 && type == UInt8(NGHTTP2_DATA.rawValue),
                !emptyFrames.allow(now: now)
            {
                return NGHTTP2_ENHANCE_YOUR_CALM
            }
        default:
            break
        }
        return nil
    }

    public func sessionBeginHeaders(streamID: Int32) {
        highestStreamID = max(highestStreamID, streamID)
        streams[streamID] = HTTP2StreamDownstream(streamID: streamID, connection: self)
    }

    /// One decoded field (HPACK is nghttp2's, with its own table and size limits). Work per
    /// field is linear in its bytes; a stream's fields are bounded by `max_header_list_size`,
    /// counted here as they arrive, so an oversized list is refused before it is held.
    public func sessionHeader(streamID: Int32, name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let stream = streams[streamID] else { return true }
        stream.headerBytes += name.count + value.count + 32
        if stream.headerBytes > configuration.maxHeaderListSize {
            stream.oversized = true
            return true
        }
        let nameText = String(decoding: name, as: UTF8.self)
        let valueText = String(decoding: value, as: UTF8.self)
        if nameText.hasPrefix(":") {
            switch nameText {
            case ":method": stream.method = valueText
            case ":scheme": stream.scheme = valueText
            case ":authority": stream.authority = valueText
            case ":path": stream.path = valueText
            case ":protocol": stream.connectProtocol = valueText  // nghttp2 allows it only with CONNECT
            default: stream.invalid = true
            }
        } else if let fieldName = HTTPField.Name(nameText) {
            if stream.exchange != nil {
                stream.trailers.append(HTTPField(name: fieldName, value: valueText))
            } else {
                stream.fields.append(HTTPField(name: fieldName, value: valueText))
            }
        } else {
            stream.invalid = true
        }
        return true
    }

    public func sessionHeadersComplete(streamID: Int32, endStream: Bool) {
        guard let stream = streams[streamID], let context else { return }
        let host = HTTPField.Name("host")!
        let authority = stream.authority ?? stream.fields[host]
        stream.fields[host] = nil
        var bodyLength: Int? = endStream ? 0 : stream.fields[.contentLength].flatMap { Int($0) }
        if bodyLength == nil && endStream { bodyLength = 0 }
        let method = stream.method.flatMap { HTTPRequest.Method($0) } ?? .get
        let request = HTTPRequest(method: method, scheme: stream.scheme ?? clientInfo.scheme, authority: authority,
                                  path: stream.path ?? "/", headerFields: stream.fields)
        let exchange = Exchange(request: request, requestBodyLength: bodyLength, client: clientInfo,
                                eventLoop: context.eventLoop, allocator: context.channel.allocator, downstream: stream)
        stream.exchange = exchange
        stream.fields = [:]
        if stream.oversized || stream.invalid || stream.method == nil {
            exchange.requestID = RequestID.generate()
            exchange.fail(stream.oversized ? .headersTooLarge : .badRequest("malformed request headers"))
            return
        }
        if method == .connect {
            // RFC 8441: an extended CONNECT for a WebSocket opens a tunnel stream; its DATA is
            // the WebSocket's bytes, so no body timeout applies. Plain CONNECT is not offered.
            guard let name = stream.connectProtocol, name.lowercased() == "websocket", !endStream else {
                exchange.requestID = RequestID.generate()
                exchange.fail(.connectNotSupported)
                return
            }
            exchange.request.extendedConnectProtocol = name
            handler.handle(exchange)
            return
        }
        exchange.enforceBodyTimeout(configuration.bodyTimeout)
        handler.handle(exchange)
    }

    public func sessionLaterHeadersComplete(streamID: Int32, endStream: Bool) {
        // A request's later header block can only be its trailers (which end the stream).
        guard endStream else { return }
        guard let stream = streams[streamID] else { return }
        let trailers = stream.trailers
        stream.trailers = [:]
        stream.exchange?.receiveRequestEnd(trailers)
    }

    public func sessionData(streamID: Int32, bytes: UnsafeBufferPointer<UInt8>) {
        guard let stream = streams[streamID] else { return }
        if stream.connectProtocol != nil {
            var buffer = context!.channel.allocator.buffer(capacity: bytes.count)
            buffer.writeBytes(bytes)
            if stream.wantsBody && stream.tunnelled {
                session?.consume(streamID: streamID, bytes: bytes.count)
            } else {
                stream.unconsumed += bytes.count
            }
            stream.tunnelData(buffer)
            if !stream.tunnelReadPending {
                stream.tunnelReadPending = true
                tunnelsRead.append(stream)
            }
            return
        }
        if let exchange = stream.exchange, exchange.responseState != .complete {
            var buffer = context!.channel.allocator.buffer(capacity: bytes.count)
            buffer.writeBytes(bytes)
            exchange.receiveRequestBody(buffer)
        }
        if stream.wantsBody || stream.exchange == nil {
            session?.consume(streamID: streamID, bytes: bytes.count)
        } else {
            stream.unconsumed += bytes.count
        }
    }

    public func sessionEndStream(streamID: Int32) {
        guard let stream = streams[streamID] else { return }
        if stream.connectProtocol != nil {
            stream.tunnelEnded()  // END_STREAM on a tunnel is the peer's close (a TCP FIN)
        } else {
            stream.exchange?.receiveRequestEnd(nil)
        }
    }

    public func sessionStreamClosed(streamID: Int32, errorCode: UInt32) {
        guard let stream = streams.removeValue(forKey: streamID) else { return }
        if recentlyClosed.count >= 256 { recentlyClosed.removeAll(keepingCapacity: true) }
        recentlyClosed.insert(streamID)
        if let exchange = stream.exchange {
            stream.exchange = nil
            exchange.downstreamClosed()
        }
        stream.tunnelEnded()
        if closing && streams.isEmpty {
            afterSend { [weak self] in self?.closeIfDone() }
        }
    }

    public func sessionReadData(streamID: Int32, into target: UnsafeMutableRawBufferPointer) -> (count: Int, end: Bool, trailers: Bool)? {
        guard let stream = streams[streamID], let result = stream.read(into: target) else { return nil }
        if result.end && stream.tunnelled && !stream.remoteEnded {
            // The tunnel ended its side: once END_STREAM has left, the client's half is reset
            // with NO_ERROR, so a peer that never ends its own does not hold the stream.
            afterSend { [weak self, weak stream] in
                guard let self, let stream, streams[streamID] === stream else { return }
                reset(stream, code: NGHTTP2_NO_ERROR)
            }
        }
        // Trailers nghttp2 refuses must not leave the stream open waiting for them: END_STREAM
        // goes with the data instead.
        let trailersSent = result.trailers.map { trailers in
            session?.submitTrailers(streamID: streamID, fields: trailers.map { ($0.name.canonicalName, $0.value) }) ?? false
        } ?? false
        return (result.count, result.end, trailersSent)
    }
}

@available(*, unavailable)
extension HTTP2ServerHandler: Sendable {}

/// A token bucket: `burst` events at once, refilled at `perSecond`.
struct FloodMeter {
    let burst: Double
    let perSecond: Double
    private var tokens: Double
    private var last: NIODeadline?

    init(burst: Int, perSecond: Int) {
        self.burst = Double(burst)
        self.perSecond = Double(perSecond)
        self.tokens = Double(burst)
    }

    mutating func allow(now: NIODeadline) -> Bool {
        if let last {
            let elapsed = Double((now - last).nanoseconds) / 1e9
            tokens = min(burst, tokens + elapsed * perSecond)
        }
        last = now
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}
