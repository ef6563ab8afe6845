import CNghttp2
import NIOCore
import NIOHTTP1
import CausewayHTTP
import HTTPTypes

/// One HTTP/2 connection to an upstream (h2c by prior knowledge, or h2 over TLS), many exchanges at once: an
/// nghttp2 client session whose streams are handed out by `HTTP2ConnectionPool`.
///
/// As on the server side, nghttp2 calls back only inside `mem_recv`/`mem_send`; sends that
/// callbacks cause are deferred until they return, and each read cycle leaves in one write.
/// Response window is returned only as the downstream takes the bytes.
public final class HTTP2UpstreamConnection: ChannelInboundHandler {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    unowned(unsafe) let pool: HTTP2ConnectionPool
    private(set) var session: OpaquePointer?
    private var context: ChannelHandlerContext?
    var streams: [Int32: HTTP2UpstreamStream] = [:]
    private var receiving = false
    private var needsFlush = false
    private var touched: [HTTP2UpstreamStream] = []
    /// A GOAWAY arrived (or the connection is closing): no new streams here.
    private(set) var draining = false
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
        let limit = Int(nghttp2_session_get_remote_settings(session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS))
        return max(0, min(limit, 1 << 20) - streams.count)
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        var callbacks: OpaquePointer?
        nghttp2_session_callbacks_new(&callbacks)
        guard let callbacks else { return }
        defer { nghttp2_session_callbacks_del(callbacks) }
        installClientCallbacks(callbacks)
        var option: OpaquePointer?
        nghttp2_option_new(&option)
        nghttp2_option_set_no_auto_window_update(option, 1)
        var session: OpaquePointer?
        nghttp2_session_client_new2(&session, callbacks, Unmanaged.passUnretained(self).toOpaque(), option)
        nghttp2_option_del(option)
        self.session = session
        var entries = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: 1 << 20),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0),
        ]
        nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &entries, entries.count)
        nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, 1 << 20)
        armIdleTimer(context: context)
        flush()
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
        if receiving {  // never close under nghttp2's feet: after mem_recv returns
            context.eventLoop.assumeIsolated().execute { [self] in closeGracefully() }
            return
        }
        draining = true
        if let session { nghttp2_session_terminate_session(session, NGHTTP2_NO_ERROR.rawValue) }
        flush()
        context.close(promise: nil)
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        idleTimer?.cancel()
        self.context = nil
        if let session { nghttp2_session_del(session) }
        session = nil
    }

    public func channelActive(context: ChannelHandlerContext) {
        flush()
        context.fireChannelActive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let session else { return }
        let buffer = unwrapInboundIn(data)
        receiving = true
        let rv = buffer.withUnsafeReadableBytes {
            nghttp2_session_mem_recv(session, $0.baseAddress?.assumingMemoryBound(to: UInt8.self), $0.count)
        }
        receiving = false
        flush()
        if rv < 0 { context.close(promise: nil) }
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

    /// Everything nghttp2 has to send, in one write (deferred while it is calling back).
    func flush() {
        guard let session, let context else { return }
        if receiving {
            needsFlush = true
            return
        }
        needsFlush = false
        var out: ByteBuffer?
        while true {
            var data: UnsafePointer<UInt8>?
            let n = nghttp2_session_mem_send(session, &data)
            if n <= 0 { break }
            if out == nil { out = context.channel.allocator.buffer(capacity: max(n, 1024)) }
            out!.writeBytes(UnsafeRawBufferPointer(start: data, count: n))
        }
        if let out { context.writeAndFlush(wrapOutboundOut(out), promise: nil) }
        if nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0 {
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
        let hasBody = bodyLength != 0
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
        let id: Int32 = withNGHTTP2Headers(fields) { nva in
            if hasBody {
                var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: nil), read_callback: clientReadCallback)
                return nghttp2_submit_request(session, nil, nva.baseAddress, nva.count, &provider,
                                              Unmanaged.passUnretained(stream).toOpaque())
            }
            return nghttp2_submit_request(session, nil, nva.baseAddress, nva.count, nil,
                                          Unmanaged.passUnretained(stream).toOpaque())
        }
        guard id > 0 else { return false }
        stream.streamID = id
        streams[id] = stream
        streamsOpened += 1
        flush()
        return true
    }

    func resume(_ stream: HTTP2UpstreamStream) {
        guard let session, stream.streamID > 0 else { return }
        nghttp2_session_resume_data(session, stream.streamID)
        flush()
    }

    func consume(_ stream: HTTP2UpstreamStream, bytes: Int) {
        guard let session, stream.streamID > 0, bytes > 0 else { return }
        nghttp2_session_consume(session, stream.streamID, bytes)
        flush()
    }

    func reset(_ stream: HTTP2UpstreamStream) {
        guard let session, stream.streamID > 0 else { return }
        nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream.streamID, NGHTTP2_CANCEL.rawValue)
        flush()
    }

    func submitTrailers(_ stream: HTTP2UpstreamStream, _ trailers: HTTPFields) {
        guard let session else { return }
        _ = withNGHTTP2Headers(trailers.map { ($0.name.canonicalName, $0.value) }) { nva in
            nghttp2_submit_trailer(session, stream.streamID, nva.baseAddress, nva.count)
        }
    }

    // MARK: Callbacks (called by the free functions below)

    fileprivate func header(streamID: Int32, name: String, value: String) {
        streams[streamID]?.receiveHeader(name: name, value: value)
    }

    fileprivate func headersComplete(streamID: Int32, endStream: Bool) {
        guard let stream = streams[streamID] else { return }
        touched.append(stream)
        stream.headersComplete(endStream: endStream)
    }

    fileprivate func data(streamID: Int32, bytes: UnsafeBufferPointer<UInt8>) {
        guard let stream = streams[streamID], let context else { return }
        var buffer = context.channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        touched.append(stream)
        stream.receiveData(buffer)
    }

    fileprivate func dataEnded(streamID: Int32) {
        streams[streamID]?.ended(trailers: nil)
    }

    fileprivate func goAway() {
        draining = true
    }

    fileprivate func streamClosed(streamID: Int32, errorCode: UInt32) {
        guard let stream = streams.removeValue(forKey: streamID) else { return }
        if streams.isEmpty { idleSince = .now() }
        stream.closed(errorCode: errorCode)
        pool.streamClosed(on: self)
    }

    fileprivate func readRequestBody(streamID: Int32, into target: UnsafeMutableRawBufferPointer) -> (Int, end: Bool, trailers: Bool)? {
        guard let stream = streams[streamID] else { return (0, true, false) }
        let result = stream.readBody(into: target)
        if let result, result.end, let trailers = stream.requestTrailers {
            submitTrailers(stream, trailers)
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

private func connection(_ userData: UnsafeMutableRawPointer?) -> HTTP2UpstreamConnection {
    Unmanaged<HTTP2UpstreamConnection>.fromOpaque(userData!).takeUnretainedValue()
}

private let clientReadCallback: nghttp2_data_source_read_callback = { _, streamID, buffer, length, flags, _, userData in
    guard let buffer else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
    guard let (count, end, trailers) = connection(userData).readRequestBody(
        streamID: streamID, into: UnsafeMutableRawBufferPointer(start: buffer, count: length))
    else { return Int(NGHTTP2_ERR_DEFERRED.rawValue) }
    if end { flags!.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue }
    if end && trailers { flags!.pointee |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue }
    return count
}

private func installClientCallbacks(_ callbacks: OpaquePointer) {
    nghttp2_session_callbacks_set_on_header_callback(callbacks) { _, frame, name, nameLength, value, valueLength, _, userData in
        guard let frame else { return 0 }
        connection(userData).header(streamID: frame.pointee.hd.stream_id,
                                    name: String(decoding: UnsafeBufferPointer(start: name, count: nameLength), as: UTF8.self),
                                    value: String(decoding: UnsafeBufferPointer(start: value, count: valueLength), as: UTF8.self))
        return 0
    }
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, userData in
        guard let frame else { return 0 }
        let header = frame.pointee.hd
        let endStream = header.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
        switch Int(header.type) {
        case Int(NGHTTP2_HEADERS.rawValue):
            connection(userData).headersComplete(streamID: header.stream_id, endStream: endStream)
        case Int(NGHTTP2_DATA.rawValue):
            if endStream { connection(userData).dataEnded(streamID: header.stream_id) }
        case Int(NGHTTP2_GOAWAY.rawValue):
            connection(userData).goAway()
        default:
            break
        }
        return 0
    }
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { _, _, streamID, data, length, userData in
        connection(userData).data(streamID: streamID, bytes: UnsafeBufferPointer(start: data, count: length))
        return 0
    }
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, streamID, errorCode, userData in
        connection(userData).streamClosed(streamID: streamID, errorCode: errorCode)
        return 0
    }
}
