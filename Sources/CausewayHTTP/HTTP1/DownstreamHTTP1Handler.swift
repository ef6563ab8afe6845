import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOHTTPTypesHTTP1

/// Turns an HTTP/1.1 connection into a sequence of `Exchange`s and writes their responses.
///
/// ```
/// socket ─▶ ByteArrivalObserver ─▶ HTTPRequestDecoder ─▶ this ─▶ Exchange
/// ```
/// Pipelined requests are held here until the current response ends, so responses leave in
/// request order; socket reads stop meanwhile. Reads are also held back while the exchange does
/// not want more request body (its upstream is full or not yet connected): that is the
/// backpressure toward the client. (NIO's HTTPServerPipelineHandler does the first job but
/// forbids answering before a request is complete, which 413, 408 and early upstream answers
/// need.) Errors in the request's framing are answered with a JSON error, then the connection closes.
public final class DownstreamHTTP1Handler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = HTTPServerRequestPart
    public typealias OutboundIn = HTTPServerResponsePart
    public typealias OutboundOut = HTTPServerResponsePart

    public struct Configuration: Sendable {
        public var idleTimeout: TimeAmount
        public var headerTimeout: TimeAmount
        /// No request-body progress for this long, while the body is wanted → 408 and close.
        public var bodyTimeout: TimeAmount
        public var secure: Bool

        public init(idleTimeout: TimeAmount, headerTimeout: TimeAmount, bodyTimeout: TimeAmount = .seconds(30),
                    secure: Bool = false) {
            self.idleTimeout = idleTimeout
            self.headerTimeout = headerTimeout
            self.bodyTimeout = bodyTimeout
            self.secure = secure
        }
    }

    private let handler: any ExchangeHandler
    private let configuration: Configuration
    private var context: ChannelHandlerContext?
    private var clientInfo = ClientInfo(address: "", scheme: "http")

    private var exchange: Exchange?
    private var requestVersion = HTTPVersion.http1_1
    /// The current response's framing (HTTP1ResponseWriter writes its head).
    private var framing = HTTP1ResponseWriter.Framing.length
    private var keepAlive = true
    private var requestEnded = true
    private var expectContinue = false
    private var continueSent = false
    private var wantsBody = true
    private var readPending = false
    private var closing = false
    /// Parts (and errors) of requests that arrived while a response was still pending.
    private var held = CircularBuffer<HeldEvent>()
    private var heldBytes = 0
    private var replaying = false
    /// Beyond this much held pipelined input, the socket is not read until responses catch up.
    private static let maxHeldBytes = 64 * 1024

    private enum HeldEvent {
        case part(HTTPServerRequestPart)
        case error(any Error)
    }

    private var timer: ConnectionTimer
    private var timerTask: Scheduled<Void>?
    private var timerDeadline: NIODeadline?

    /// Switches this connection to HTTP/2 after a `101` (RFC 7540 §3.2): given the request that
    /// asked and its decoded HTTP2-Settings. nil when the listener does not offer h2c.
    public typealias H2CUpgrade = (ChannelHandlerContext, HTTPRequest, [UInt8]) throws -> Void
    private let h2cUpgrade: H2CUpgrade?
    private var pendingUpgrade: (HTTPRequest, [UInt8])?

    public init(handler: any ExchangeHandler, configuration: Configuration, h2cUpgrade: H2CUpgrade? = nil) {
        self.handler = handler
        self.configuration = configuration
        self.h2cUpgrade = h2cUpgrade
        self.timer = ConnectionTimer(now: .now(), idleTimeout: configuration.idleTimeout,
                                     headerTimeout: configuration.headerTimeout)
    }

    /// The observer to put in front of the decoder; it reports byte arrival to this handler.
    public func makeByteObserver() -> some ChannelInboundHandler {
        ByteArrivalObserver(onBytes: { [unowned self] in
            self.timer.bytesArrived(now: .now())
        }, onReadComplete: { [unowned self] in
            self.headMayBeIncomplete()
        })
    }

    /// A head is still being read after a read cycle: make sure the timer fires at its
    /// deadline, not at the idle deadline it was armed with (slowloris is cut at
    /// `header_timeout`, on a fresh connection as after a keep-alive request).
    private func headMayBeIncomplete() {
        guard let deadline = timer.headDeadline, let scheduled = timerDeadline, scheduled > deadline,
            let context else { return }
        timerTask?.cancel()
        schedule(at: deadline, context: context)
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let address = context.channel.remoteAddress?.ipAddress ?? ""
        clientInfo = ClientInfo(address: address, scheme: configuration.secure ? "https" : "http")
        if context.channel.isActive { armTimer(context: context) }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        timerTask?.cancel()
        timerTask = nil
        self.context = nil
    }

    public func channelActive(context: ChannelHandlerContext) {
        armTimer(context: context)
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        timerTask?.cancel()
        timerTask = nil
        if let exchange {
            self.exchange = nil
            exchange.downstreamClosed()
        }
        context.fireChannelInactive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if isHoldingNextRequest {
            if case .body(let chunk) = part { heldBytes += chunk.readableBytes } else { heldBytes += 256 }
            held.append(.part(part))
        } else {
            receive(part, context: context)
        }
    }

    /// While a response is pending and its request has fully arrived, what comes next belongs
    /// to the next request.
    private var isHoldingNextRequest: Bool {
        (exchange != nil && requestEnded) || !held.isEmpty
    }

    private func receive(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        switch part {
        case .head(let head):
            receiveHead(head, context: context)
        case .body(let chunk):
            exchange?.receiveRequestBody(chunk)
        case .end(let trailers):
            requestEnded = true
            if let (request, settings) = pendingUpgrade, let h2cUpgrade {
                pendingUpgrade = nil
                upgrade(to: h2cUpgrade, request: request, settings: settings, context: context)
                return
            }
            exchange?.receiveRequestEnd(trailers.map { HTTPFields($0, splitCookie: false) })
        }
    }

    /// After a response ends: run the held parts until one of them starts a new exchange that
    /// must wait, then let the socket be read again.
    private func replayHeld(context: ChannelHandlerContext) {
        guard !replaying else { return }
        replaying = true
        defer { replaying = false }
        while exchange == nil || !requestEnded, let event = held.popFirst() {
            if case .part(.body(let chunk)) = event { heldBytes -= chunk.readableBytes } else { heldBytes -= 256 }
            switch event {
            case .part(let part): receive(part, context: context)
            case .error(let error): handleError(error, context: context)
            }
            if self.context == nil { return }
        }
        if readPending && mayRead {
            readPending = false
            context.read()
        }
    }

    private func receiveHead(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        timer.headReceived()
        requestVersion = head.version
        keepAlive = head.isKeepAlive
        requestEnded = false
        continueSent = false
        wantsBody = true
        let framing = HTTP1Framing.check(head)
        let request: HTTPRequest
        do {
            request = try HTTPRequest(head, secure: configuration.secure, splitCookie: false)
        } catch {
            rejectHead(.badRequest("invalid request line"), context: context)
            return
        }
        let exchange = Exchange(request: request, requestBodyLength: framing.bodyLength, client: clientInfo,
                                eventLoop: context.eventLoop, allocator: context.channel.allocator, downstream: self)
        self.exchange = exchange
        if framing.bodyLength == 0 { requestEnded = true }
        if let error = framing.error {
            keepAlive = false
            exchange.requestID = RequestID.generate()
            exchange.fail(error)
            return
        }
        if head.method == .CONNECT {
            // A tunnel is not offered: what follows a CONNECT is tunnel bytes, not a request,
            // so the connection closes after the answer.
            keepAlive = false
            exchange.requestID = RequestID.generate()
            exchange.fail(.connectNotSupported)
            return
        }
        if h2cUpgrade != nil, framing.bodyLength == 0, keepAlive, let settings = Self.h2cUpgradeSettings(head) {
            // Switched at the request's end, once the decoder is done with it.
            self.exchange = nil
            requestEnded = false
            pendingUpgrade = (request, settings)
            return
        }
        // `Upgrade` first: the Connection tokens are only split for the rare request that has it.
        if head.headers.contains(name: "upgrade"),
            head.headers[canonicalForm: "connection"].contains(where: { $0.caseInsensitiveEquals("upgrade") })
        {
            // What follows an upgrade request may be another protocol's bytes (the decoder stops
            // there): unless the connection is switched, it closes after the answer.
            keepAlive = false
        }
        expectContinue = head.headers.contains(name: "expect")
            && head.headers["expect"].contains { $0.lowercased() == "100-continue" }
        if expectContinue { exchange.request.headerFields[.expect] = nil }
        exchange.enforceBodyTimeout(configuration.bodyTimeout)
        handler.handle(exchange)
    }

    /// The HTTP2-Settings payload of a well-formed `Upgrade: h2c` request, or nil. Requests with
    /// a body are served over HTTP/1.1 instead (the upgrade is optional for the server).
    static func h2cUpgradeSettings(_ head: HTTPRequestHead) -> [UInt8]? {
        guard head.headers["upgrade"].contains(where: { $0.lowercased().split(separator: ",").contains { $0.trimmingSpaces() == "h2c" } }),
            let encoded = head.headers["http2-settings"].first,
            head.headers[canonicalForm: "connection"].contains(where: { $0.lowercased() == "http2-settings" })
        else { return nil }
        return Base64.decode(encoded)
    }

    private func upgrade(to install: H2CUpgrade, request: HTTPRequest, settings: [UInt8], context: ChannelHandlerContext) {
        let head = HTTPResponseHead(version: .http1_1, status: .switchingProtocols,
                                    headers: ["connection": "Upgrade", "upgrade": "h2c"])
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        exchange = nil
        do {
            try install(context, request, settings)
        } catch {
            context.close(promise: nil)
        }
    }

    /// A request so broken no exchange can carry it.
    private func rejectHead(_ error: GatewayError, context: ChannelHandlerContext) {
        keepAlive = false
        let exchange = Exchange(request: HTTPRequest(method: .get, scheme: nil, authority: nil, path: "/"),
                                requestBodyLength: 0, client: clientInfo, eventLoop: context.eventLoop,
                                allocator: context.channel.allocator, downstream: self)
        exchange.requestID = RequestID.generate()
        self.exchange = exchange
        exchange.fail(error)
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if isHoldingNextRequest && error is HTTPParserError {
            held.append(.error(error))
        } else {
            handleError(error, context: context)
        }
    }

    private func handleError(_ error: any Error, context: ChannelHandlerContext) {
        guard let parserError = error as? HTTPParserError else {
            // I/O errors: the connection is gone or going; the exchange hears it on close.
            context.close(promise: nil)
            return
        }
        held.removeAll()
        heldBytes = 0
        if exchange == nil || exchange?.responseState == .pending {
            let gatewayError: GatewayError =
                parserError == .headerOverflow ? .headersTooLarge : .badRequest("malformed request: \(parserError)")
            if let exchange {
                keepAlive = false
                exchange.fail(gatewayError)
            } else {
                rejectHead(gatewayError, context: context)
            }
        } else {
            context.close(promise: nil)
        }
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        exchange?.downstreamWritabilityChanged(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    /// Reading goes on while a response is pending (pipelined input is held, and bounded) so
    /// the socket's epoll interest is not toggled per request; it stops while a request body
    /// is unwanted (backpressure) or too much pipelined input is held.
    private var mayRead: Bool {
        if heldBytes > Self.maxHeldBytes { return false }
        if let exchange, !requestEnded, !wantsBody, exchange.responseState != .complete { return false }
        return true
    }

    public func read(context: ChannelHandlerContext) {
        if mayRead {
            context.read()
        } else {
            readPending = true
        }
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            // Shutdown: an idle connection closes now, a busy one after its response.
            closing = true
            if exchange == nil && timer.isIdle { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    // MARK: Timers

    private func armTimer(context: ChannelHandlerContext) {
        guard timerTask == nil else { return }
        schedule(at: timer.nextDeadline, context: context)
    }

    private func schedule(at deadline: NIODeadline, context: ChannelHandlerContext) {
        timerDeadline = deadline
        timerTask = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            self.timerTask = nil
            self.timerDeadline = nil
            self.timerFired()
        }
    }

    private func timerFired() {
        guard let context else { return }
        switch timer.check(now: .now()) {
        case .rearm(let deadline):
            schedule(at: deadline, context: context)
        case .closeIdle:
            context.close(promise: nil)
        case .requestTimeout:
            rejectHead(.requestTimeout, context: context)
        }
    }
}

extension DownstreamHTTP1Handler: ExchangeDownstream {
    public var isWritable: Bool { context?.channel.isWritable ?? false }

    public func writeResponseHead(_ response: HTTPResponse) {
        guard let context else { return }
        if !requestEnded && exchange?.responseState != .pending {
            // Answered before the body was read (an error, or an upstream that did not wait):
            // the rest of the body cannot be told apart from the next request, so close after.
            keepAlive = false
        }
        let bodiless = exchange?.request.method == .head
        if requestVersion.minor == 0 && response.headerFields[.contentLength] == nil && !bodiless {
            keepAlive = false  // HTTP/1.0 cannot chunk: the body ends when the connection does
        }
        let connection: String? = !keepAlive || closing ? "close" : requestVersion.minor == 0 ? "keep-alive" : nil
        var bytes = context.channel.allocator.buffer(capacity: 256)
        framing = HTTP1ResponseWriter.writeHead(response, version: requestVersion, bodiless: bodiless,
                                                connection: connection, to: &bytes)
        context.write(wrapOutboundOut(.body(.byteBuffer(bytes))), promise: nil)
    }

    public func writeResponseBody(_ chunk: ByteBuffer) {
        guard let context, chunk.readableBytes > 0 else { return }
        switch framing {
        case .none:
            return
        case .length, .untilClose:
            context.write(wrapOutboundOut(.body(.byteBuffer(chunk))), promise: nil)
        case .chunked:
            let (first, body) = HTTP1ResponseWriter.chunkParts(chunk, allocator: context.channel.allocator)
            context.write(wrapOutboundOut(.body(.byteBuffer(first))), promise: nil)
            if let body {
                context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
                context.write(wrapOutboundOut(.body(.byteBuffer(HTTP1ResponseWriter.crlf))), promise: nil)
            }
        }
    }

    public func flushResponse() {
        context?.flush()
    }

    public func writeResponseEnd(_ trailers: HTTPFields?) {
        guard let context else { return }
        exchange = nil
        let close = !keepAlive || !requestEnded || closing
        timer.exchangeCompleted(now: .now())
        if framing == .chunked {
            var last = context.channel.allocator.buffer(capacity: 5)
            HTTP1ResponseWriter.writeLastChunk(trailers: trailers, to: &last)
            context.write(wrapOutboundOut(.body(.byteBuffer(last))), promise: nil)
        }
        if close {
            held.removeAll()
            heldBytes = 0
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                loopBound.value.close(promise: nil)
            }
            return
        }
        context.flush()  // nothing more to write: the bytes went with the head and body
        wantsBody = true
        requestEnded = true
        replayHeld(context: context)
    }

    public func abortResponse() {
        exchange = nil
        context?.close(promise: nil)
    }

    public func takeOver(_ response: HTTPResponse) -> (any ByteTunnel)? {
        // The request's own end part may be held (a bodyless request ended with its head); the
        // decoder passes nothing after an upgrade request, so anything else means no switch.
        guard let context, requestEnded,
            held.allSatisfy({ if case .part(.end) = $0 { true } else { false } })
        else { return nil }
        held.removeAll()
        heldBytes = 0
        var bytes = context.channel.allocator.buffer(capacity: 256)
        _ = HTTP1ResponseWriter.writeHead(response, version: requestVersion, bodiless: true, connection: "Upgrade", to: &bytes)
        context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(bytes))), promise: nil)
        exchange = nil
        timerTask?.cancel()
        timerTask = nil
        // The HTTP handlers leave; the tunnel goes in after this one. The request decoder goes
        // last: it forwards what the client sent after its request (its first frames).
        let tunnel = ChannelByteTunnel()
        let sync = context.pipeline.syncOperations
        do {
            try sync.removeHandler(context: sync.context(handlerType: HTTP1ResponseWriter.self))
            try sync.removeHandler(context: sync.context(handlerType: ByteArrivalObserver.self))
            try sync.addHandler(tunnel, position: .after(context.handler))
            let decoder = try sync.context(handlerType: ByteToMessageHandler<HTTPRequestDecoder>.self)
            sync.removeHandler(context: context, promise: nil)
            sync.removeHandler(context: decoder, promise: nil)
        } catch {
            context.close(promise: nil)
        }
        return tunnel
    }

    public func setRequestBodyDemand(_ demand: Bool) {
        guard let context, demand != wantsBody || (demand && expectContinue && !continueSent) else { return }
        wantsBody = demand
        if demand {
            if expectContinue && !continueSent && !requestEnded {
                continueSent = true
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: requestVersion, status: .continue))),
                                      promise: nil)
            }
            if readPending {
                readPending = false
                context.read()
            }
        }
    }
}

@available(*, unavailable)
extension DownstreamHTTP1Handler: Sendable {}
