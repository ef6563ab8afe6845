import CNghttp2
import NIOCore
import CausewayHTTP
import HTTPTypes

/// One HTTP/2 connection to an upstream (h2c by prior knowledge, or h2 over TLS), many exchanges
/// at once: an `NGHTTP2Session` in the client role (the same wrapper the server uses) whose
/// streams are handed out by `HTTP2ConnectionPool`.
///
/// As on the server side, nghttp2 calls back only inside `receive`/`drain`; sends that
/// callbacks cause are deferred until they return, and each read cycle leaves in one write.
/// Response window is returned only as the downstream takes the bytes.
public final class HTTP2UpstreamConnection: ChannelInboundHandler, NGHTTP2SessionDelegate {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// Strong: a reload can drop a pool (its upstream retired) while its connections are still
    /// closing; each keeps the pool alive until it has reported its close.
    let pool: HTTP2ConnectionPool
    private var session: NGHTTP2Session?
    private var context: ChannelHandlerContext?
    var streams: [Int32: HTTP2UpstreamStream] = [:]
    private var touched: [HTTP2UpstreamStream] = []
    /// A GOAWAY arrived (or the connection is closing): no new streams here.
    private(set) var draining = false
    /// A write of what nghttp2 has queued is scheduled for the end of this loop iteration.
    private var flushScheduled = false
    /// Streams ever opened here, for `isReused`.
    private(set) var streamsOpened = 0
    /// When the last stream closed; a connection with none for `idle_timeout` is closed.
    private var idleSince = NIODeadline.now()
    private var idleTimer: Scheduled<Void>?

    init(pool: HTTP2ConnectionPool) {
        self.pool = pool
    }

    /// Streams this connection can still open, as the upstream's SETTINGS allow.
    var availableStreams: Int {
        guard let session, !draining, context != nil else { return 0 }
        return max(0, min(session.remoteMaxConcurrentStreams, 1 << 20) - streams.count)
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        do {
            let session = try NGHTTP2Session(role: .client(initialWindowSize: 1 << 20))
            session.attach(self)
            self.session = session
        } catch {
            context.close(promise: nil)
            return
        }
        armIdleTimer(context: context)
        flushNow()
    }

    /// Re-armed lazily, like the HTTP/1.1 pool's: one scheduled task per connection.
    private func armIdleTimer(context: ChannelHandlerContext) {
        let timeout = TimeAmount(pool.config.idleTimeout)
        idleTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: idleSince + timeout) { [self] in
            guard let context = self.context else { return }
            if streams.isEmpty && NIODeadline.now() >= idleSince + timeout {
                closeGracefully()
            } else {
                if !streams.isEmpty { idleSince = .now() }
                armIdleTimer(context: context)
            }
        }
    }

    /// GOAWAY(NO_ERROR), then close: no stream is open, none may start.
    func closeGracefully() {
        guard let context else { return }
        if session?.isReceiving == true {  // never close under nghttp2's feet: after receive returns
            context.eventLoop.assumeIsolated().execute { [self] in closeGracefully() }
            return
        }
        draining = true
        session?.terminate()
        flushNow()
        context.close(promise: nil)
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        idleTimer?.cancel()
        self.context = nil
        session = nil
    }

    public func channelActive(context: ChannelHandlerContext) {
        flushNow()
        context.fireChannelActive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let session else { return }
        let error = session.receive(unwrapInboundIn(data))
        flushNow()
        if error != nil { context.close(promise: nil) }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        let streams = touched
        touched = []
        for stream in streams { stream.sink?.upstreamReadComplete() }
        context.fireChannelReadComplete()
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            for stream in streams.values { stream.sink?.upstreamWritabilityChanged(true) }
        }
        context.fireChannelWritabilityChanged()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        draining = true
        let open = streams.values
        streams = [:]
        for stream in open { stream.failed(.closedEarly) }
        pool.connectionClosed(self)
        context.fireChannelInactive()
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    var isChannelWritable: Bool { context?.channel.isWritable ?? false }

    /// What nghttp2 has to send, written once this loop iteration's events are handled: the
    /// requests, bodies and window updates of every exchange served in one read leave in one
    /// write, not one syscall each (most of a unary gRPC call's CPU was those syscalls).
    func flush() {
        guard !flushScheduled, let context else { return }
        flushScheduled = true
        context.eventLoop.assumeIsolated().execute { [self] in
            flushScheduled = false
            flushNow()
        }
    }

    /// Everything nghttp2 has to send, in one write now (deferred while it is calling back: the
    /// read path flushes once `receive` returns).
    func flushNow() {
        guard let session, let context, !session.isReceiving else { return }
        if let out = session.drain(allocator: context.channel.allocator) {
            context.writeAndFlush(wrapOutboundOut(out), promise: nil)
        }
        if !session.wantsIO || session.failure != nil {
            draining = true
            context.close(promise: nil)
        }
    }

    // MARK: Streams

    func makeStream() -> HTTP2UpstreamStream {
        HTTP2UpstreamStream(connection: self, reused: streamsOpened > 0)
    }

    func submit(_ stream: HTTP2UpstreamStream, request: HTTPRequest, bodyLength: Int?) -> Bool {
        guard let session else { return false }
        // The scheme of the connection the request travels on (RFC 9113 §8.3.1).
        var fields: [(String, String)] = [(":method", request.method.rawValue), (":scheme", pool.endpoint.tls == nil ? "http" : "https"),
                                          (":authority", request.authority ?? pool.endpoint.label),
                                          (":path", request.path ?? "/")]
        fields.reserveCapacity(request.headerFields.count + 5)
        for field in request.headerFields {
            // `te: trailers` is the one TE HTTP/2 allows, and gRPC servers require it.
            if Self.connectionSpecific.contains(field.name) && !(field.name == .te && field.value == "trailers") { continue }
            fields.append((field.name.canonicalName, field.value))
        }
        if let bodyLength, bodyLength > 0 { fields.append(("content-length", String(bodyLength))) }
        guard let id = session.submitRequest(fields: fields, hasBody: bodyLength != 0) else { return false }
        stream.streamID = id
        streams[id] = stream
        streamsOpened += 1
        flush()
        return true
    }

    func resume(_ stream: HTTP2UpstreamStream) {
        guard let session, stream.streamID > 0 else { return }
        session.resume(streamID: stream.streamID)
        flush()
    }

    func consume(_ stream: HTTP2UpstreamStream, bytes: Int) {
        guard let session, stream.streamID > 0, bytes > 0 else { return }
        session.consume(streamID: stream.streamID, bytes: bytes)
        flush()
    }

    func reset(_ stream: HTTP2UpstreamStream) {
        guard let session, stream.streamID > 0 else { return }
        session.reset(streamID: stream.streamID, code: NGHTTP2_CANCEL)  // RST_STREAM(CANCEL)
        flush()
    }

    // MARK: NGHTTP2SessionDelegate (called inside receive/drain)

    public func sessionFrameReceived(type: UInt8, streamID: Int32, length: Int, flags: UInt8) -> nghttp2_error_code? {
        if type == UInt8(NGHTTP2_GOAWAY.rawValue) { draining = true }
        return nil
    }

    public func sessionHeader(streamID: Int32, name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) -> Bool {
        streams[streamID]?.receiveHeader(name: String(decoding: name, as: UTF8.self), value: String(decoding: value, as: UTF8.self))
        return true
    }

    public func sessionHeadersComplete(streamID: Int32, endStream: Bool) {
        guard let stream = streams[streamID] else { return }
        touched.append(stream)
        stream.headersComplete(endStream: endStream)
    }

    public func sessionLaterHeadersComplete(streamID: Int32, endStream: Bool) {
        sessionHeadersComplete(streamID: streamID, endStream: endStream)  // the stream tells a final head from trailers
    }

    public func sessionData(streamID: Int32, bytes: UnsafeBufferPointer<UInt8>) {
        guard let stream = streams[streamID], let context else { return }
        var buffer = context.channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        touched.append(stream)
        stream.receiveData(buffer)
    }

    public func sessionEndStream(streamID: Int32) {
        streams[streamID]?.ended(trailers: nil)
    }

    public func sessionStreamClosed(streamID: Int32, errorCode: UInt32) {
        guard let stream = streams.removeValue(forKey: streamID) else { return }
        if streams.isEmpty { idleSince = .now() }
        stream.closed(errorCode: errorCode)
        pool.streamClosed(on: self)
    }

    public func sessionReadData(streamID: Int32, into target: UnsafeMutableRawBufferPointer) -> (count: Int, end: Bool, trailers: Bool)? {
        guard let stream = streams[streamID] else { return (0, true, false) }
        let result = stream.readBody(into: target)
        if let result, result.end, let trailers = stream.requestTrailers, let session,
            session.submitTrailers(streamID: streamID, fields: trailers.map { ($0.name.canonicalName, $0.value) })
        {
            return (result.count, true, true)
        }
        return result.map { ($0.count, $0.end, false) }
    }

    static let connectionSpecific: Set<HTTPField.Name> = [
        .connection, HTTPField.Name("keep-alive")!, HTTPField.Name("proxy-connection")!, .transferEncoding, .upgrade,
        HTTPField.Name("host")!, .te, .contentLength,
    ]
}

@available(*, unavailable)
extension HTTP2UpstreamConnection: Sendable {}
