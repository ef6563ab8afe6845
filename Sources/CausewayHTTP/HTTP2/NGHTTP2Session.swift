import CNghttp2
import NIOCore

/// What an nghttp2 session reports, as Swift calls. Every call happens inside
/// `NGHTTP2Session.receive` or `drain` (nghttp2 invokes callbacks only from mem_recv and
/// mem_send). The same protocol serves both roles: a server hears requests, a client responses.
public protocol NGHTTP2SessionDelegate: AnyObject {
    /// Before a frame's payload is read; returning an error code ends the connection with it.
    func sessionBeginFrame(type: UInt8, streamID: Int32) -> nghttp2_error_code?
    /// After a whole frame; returning an error code ends the connection with it (flood limits).
    func sessionFrameReceived(type: UInt8, streamID: Int32, length: Int, flags: UInt8) -> nghttp2_error_code?
    /// A stream's first header block begins (a request on a server, a response on a client).
    func sessionBeginHeaders(streamID: Int32)
    /// Returns false to reset the stream (the header list is over its limit).
    func sessionHeader(streamID: Int32, name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) -> Bool
    /// The stream's first header block is complete.
    func sessionHeadersComplete(streamID: Int32, endStream: Bool)
    /// A later header block is complete: trailers, or (client) the final response after a 1xx.
    func sessionLaterHeadersComplete(streamID: Int32, endStream: Bool)
    func sessionData(streamID: Int32, bytes: UnsafeBufferPointer<UInt8>)
    func sessionEndStream(streamID: Int32)
    func sessionStreamClosed(streamID: Int32, errorCode: UInt32)
    /// Copies up to `into.count` body bytes for a stream this side submitted with a body;
    /// returns the count, whether the body ended, and whether trailers follow (the delegate
    /// submits them). nil: nothing ready yet (deferred; `resume` when there is).
    func sessionReadData(streamID: Int32, into: UnsafeMutableRawBufferPointer) -> (count: Int, end: Bool, trailers: Bool)?
}

extension NGHTTP2SessionDelegate {
    public func sessionBeginFrame(type: UInt8, streamID: Int32) -> nghttp2_error_code? { nil }
    public func sessionFrameReceived(type: UInt8, streamID: Int32, length: Int, flags: UInt8) -> nghttp2_error_code? { nil }
    public func sessionBeginHeaders(streamID: Int32) {}
}

/// One nghttp2 session, server or client, owned by one connection handler: the one place
/// Causeway calls nghttp2 (the downstream HTTP/2 server and the upstream HTTP/2 client).
///
/// Bytes go in through `receive` (nghttp2_session_mem_recv) and frames come out of `drain`
/// (nghttp2_session_mem_send), gathered into one buffer per call so a read cycle costs one write.
/// Callbacks reach Swift through `Unmanaged` user data, capture nothing, and never throw: a
/// problem in a callback resets the stream (NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE) or ends the
/// session (NGHTTP2_ERR_CALLBACK_FAILURE), as nghttp2 specifies. Re-entrancy is checked: neither
/// `receive` nor `drain` may run while a `receive` is on the stack (`isReceiving` says so;
/// callers defer their sends). Every submit's return code is checked; a fatal one from
/// mem_send is kept in `failure`, and the owner closes the connection.
public final class NGHTTP2Session {
    public enum Role {
        /// SETTINGS: max concurrent streams, initial window, max header list.
        case server(maxConcurrentStreams: UInt32, initialWindowSize: UInt32, maxHeaderListSize: UInt32)
        /// SETTINGS: initial window, no server push.
        case client(initialWindowSize: UInt32)
    }

    private(set) var session: OpaquePointer?
    unowned(unsafe) var delegate: (any NGHTTP2SessionDelegate)?
    public private(set) var isReceiving = false
    /// A fatal nghttp2 error from sending; the connection must close.
    public private(set) var failure: NGHTTP2Error?

    public init(role: Role) throws {
        var callbacks: OpaquePointer?
        guard nghttp2_session_callbacks_new(&callbacks) == 0, let callbacks else { throw NGHTTP2Error(code: -901) }
        defer { nghttp2_session_callbacks_del(callbacks) }
        Self.install(callbacks)

        var option: OpaquePointer?
        guard nghttp2_option_new(&option) == 0, let option else { throw NGHTTP2Error(code: -901) }
        defer { nghttp2_option_del(option) }
        // Window is returned only for bytes the exchange took (backpressure), never automatically.
        nghttp2_option_set_no_auto_window_update(option, 1)
        nghttp2_option_set_max_settings(option, 32)

        var session: OpaquePointer?
        var entries: [nghttp2_settings_entry]
        let window: UInt32
        switch role {
        case .server(let maxConcurrentStreams, let initialWindowSize, let maxHeaderListSize):
            // Rapid reset (CVE-2023-44487): at most 1000 resets in a burst, then 33 per second.
            nghttp2_option_set_stream_reset_rate_limit(option, 1000, 33)
            let rv = nghttp2_session_server_new2(&session, callbacks, nil, option)
            guard rv == 0 else { throw NGHTTP2Error(code: rv) }
            window = initialWindowSize
            entries = [
                nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: maxConcurrentStreams),
                nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: initialWindowSize),
                nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue), value: maxHeaderListSize),
                // RFC 8441: WebSockets over HTTP/2 streams (extended CONNECT).
                nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL.rawValue), value: 1),
            ]
        case .client(let initialWindowSize):
            let rv = nghttp2_session_client_new2(&session, callbacks, nil, option)
            guard rv == 0 else { throw NGHTTP2Error(code: rv) }
            window = initialWindowSize
            entries = [
                nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: initialWindowSize),
                nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0),
            ]
        }
        guard let session else { throw NGHTTP2Error(code: -901) }
        self.session = session
        var rv = nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &entries, entries.count)
        // The connection window follows the stream window, so one stream can use it fully.
        if rv == 0 && window > 65535 {
            rv = nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, Int32(clamping: window))
        }
        guard rv == 0 else { throw NGHTTP2Error(code: rv) }
    }

    deinit {
        if let session { nghttp2_session_del(session) }
    }

    /// Binds user data; done once the delegate is stable in memory.
    public func attach(_ delegate: any NGHTTP2SessionDelegate) {
        self.delegate = delegate
        nghttp2_session_set_user_data(session, Unmanaged.passUnretained(self).toOpaque())
    }

    /// Feeds received bytes. Returns an error when the connection must end.
    public func receive(_ buffer: ByteBuffer) -> NGHTTP2Error? {
        precondition(!isReceiving, "re-entrant receive")
        isReceiving = true
        defer { isReceiving = false }
        let rv = buffer.withUnsafeReadableBytes { bytes in
            nghttp2_session_mem_recv(session, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count)
        }
        return rv < 0 ? NGHTTP2Error(code: Int32(rv)) : nil
    }

    /// Everything nghttp2 has to send, in one buffer (nil when nothing is pending). A fatal
    /// error stops it and is kept in `failure`.
    public func drain(allocator: ByteBufferAllocator) -> ByteBuffer? {
        precondition(!isReceiving, "drain inside a callback")
        var out: ByteBuffer?
        while failure == nil {
            var data: UnsafePointer<UInt8>?
            let n = nghttp2_session_mem_send(session, &data)
            if n < 0 { failure = NGHTTP2Error(code: Int32(n)) }
            if n <= 0 { break }
            if out == nil { out = allocator.buffer(capacity: max(n, 1024)) }
            out!.writeBytes(UnsafeRawBufferPointer(start: data, count: n))
        }
        return out
    }

    /// Applies an h2c upgrade's HTTP2-Settings and opens stream 1 (RFC 7540 §3.2).
    public func upgrade(settings: [UInt8], isHead: Bool) -> Bool {
        settings.withUnsafeBufferPointer { payload in
            nghttp2_session_upgrade2(session, payload.baseAddress, payload.count, isHead ? 1 : 0, nil) == 0
        }
    }

    public var wantsIO: Bool { nghttp2_session_want_read(session) != 0 || nghttp2_session_want_write(session) != 0 }
    public var lastStreamID: Int32 { nghttp2_session_get_last_proc_stream_id(session) }
    /// The peer's SETTINGS_MAX_CONCURRENT_STREAMS (how many streams a client may open).
    public var remoteMaxConcurrentStreams: Int {
        Int(nghttp2_session_get_remote_settings(session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS))
    }

    /// Window returned for bytes the consumer took. Stream-level errors (a closed stream) are
    /// not the connection's: ignored.
    public func consume(streamID: Int32, bytes: Int) {
        _ = nghttp2_session_consume(session, streamID, bytes)
    }

    /// Resumes a deferred data provider; a stream that is gone has nothing to resume.
    public func resume(streamID: Int32) {
        _ = nghttp2_session_resume_data(session, streamID)
    }

    public func reset(streamID: Int32, code: nghttp2_error_code) {
        _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, code.rawValue)
    }

    /// Queues GOAWAY with `code` and makes mem_recv stop (a callback's failure return).
    fileprivate func terminate(_ code: nghttp2_error_code) -> Int32 {
        nghttp2_session_terminate_session(session, code.rawValue)
        return NGHTTP2_ERR_CALLBACK_FAILURE.rawValue
    }

    public func goAway(code: nghttp2_error_code = NGHTTP2_NO_ERROR) {
        _ = nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), lastStreamID, code.rawValue, nil, 0)
    }

    /// GOAWAY and no new streams: the graceful end of a client connection.
    public func terminate() {
        _ = nghttp2_session_terminate_session(session, NGHTTP2_NO_ERROR.rawValue)
    }

    /// Submits a request (client); with `hasBody` the body is pulled through the delegate.
    /// Returns the new stream's id, or nil when nghttp2 refused (no stream ids left, closing).
    public func submitRequest(fields: [(String, String)], hasBody: Bool) -> Int32? {
        let id: Int32 = withNGHTTP2Headers(fields) { nva in
            guard hasBody else { return nghttp2_submit_request(session, nil, nva.baseAddress, nva.count, nil, nil) }
            var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: nil), read_callback: Self.readCallback)
            return nghttp2_submit_request(session, nil, nva.baseAddress, nva.count, &provider, nil)
        }
        return id > 0 ? id : nil
    }

    /// Submits a response head (server); with `hasBody` the body is pulled through the delegate.
    public func submitResponse(streamID: Int32, status: Int, fields: [(String, String)], hasBody: Bool) -> Bool {
        return withNGHTTP2Headers([(":status", String(status))] + fields) { nva in
            var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: nil), read_callback: Self.readCallback)
            return hasBody
                ? nghttp2_submit_response(session, streamID, nva.baseAddress, nva.count, &provider) == 0
                : nghttp2_submit_response(session, streamID, nva.baseAddress, nva.count, nil) == 0
        }
    }

    @discardableResult
    public func submitTrailers(streamID: Int32, fields: [(String, String)]) -> Bool {
        withNGHTTP2Headers(fields) { nva in
            nghttp2_submit_trailer(session, streamID, nva.baseAddress, nva.count) == 0
        }
    }

    private static let readCallback: nghttp2_data_source_read_callback = { _, streamID, buffer, length, flags, _, userData in
        let session = owner(userData)
        guard let delegate = session.delegate, let buffer else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
        guard let (count, end, trailers) = delegate.sessionReadData(
            streamID: streamID, into: UnsafeMutableRawBufferPointer(start: buffer, count: length))
        else { return Int(NGHTTP2_ERR_DEFERRED.rawValue) }
        if end { flags!.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue }
        if end && trailers { flags!.pointee |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue }
        return count
    }

    private static func install(_ callbacks: OpaquePointer) {
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks) { _, frame, userData in
            guard let frame, frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue),
                frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST || frame.pointee.headers.cat == NGHTTP2_HCAT_RESPONSE
            else { return 0 }
            owner(userData).delegate?.sessionBeginHeaders(streamID: frame.pointee.hd.stream_id)
            return 0
        }
        nghttp2_session_callbacks_set_on_header_callback(callbacks) { _, frame, name, nameLength, value, valueLength, _, userData in
            guard let frame, let delegate = owner(userData).delegate else { return 0 }
            let accepted = delegate.sessionHeader(streamID: frame.pointee.hd.stream_id,
                                                  name: UnsafeBufferPointer(start: name, count: nameLength),
                                                  value: UnsafeBufferPointer(start: value, count: valueLength))
            return accepted ? 0 : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue
        }
        nghttp2_session_callbacks_set_on_begin_frame_callback(callbacks) { _, header, userData in
            let session = owner(userData)
            guard let header, let delegate = session.delegate,
                let code = delegate.sessionBeginFrame(type: header.pointee.type, streamID: header.pointee.stream_id)
            else { return 0 }
            return session.terminate(code)
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, userData in
            let session = owner(userData)
            guard let frame, let delegate = session.delegate else { return 0 }
            let header = frame.pointee.hd
            if let code = delegate.sessionFrameReceived(type: header.type, streamID: header.stream_id,
                                                        length: header.length, flags: header.flags) {
                return session.terminate(code)
            }
            let endStream = header.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
            switch Int(header.type) {
            case Int(NGHTTP2_HEADERS.rawValue):
                let category = frame.pointee.headers.cat
                if category == NGHTTP2_HCAT_REQUEST || category == NGHTTP2_HCAT_RESPONSE {
                    delegate.sessionHeadersComplete(streamID: header.stream_id, endStream: endStream)
                } else {
                    delegate.sessionLaterHeadersComplete(streamID: header.stream_id, endStream: endStream)
                }
            case Int(NGHTTP2_DATA.rawValue):
                if endStream { delegate.sessionEndStream(streamID: header.stream_id) }
            default:
                break
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { _, _, streamID, data, length, userData in
            owner(userData).delegate?.sessionData(streamID: streamID, bytes: UnsafeBufferPointer(start: data, count: length))
            return 0
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, streamID, errorCode, userData in
            owner(userData).delegate?.sessionStreamClosed(streamID: streamID, errorCode: errorCode)
            return 0
        }
    }
}

/// The session behind a callback's user data (a free function: C callbacks capture nothing).
private func owner(_ userData: UnsafeMutableRawPointer?) -> NGHTTP2Session {
    Unmanaged<NGHTTP2Session>.fromOpaque(userData!).takeUnretainedValue()
}

public struct NGHTTP2Error: Error, CustomStringConvertible {
    public var code: Int32
    public var description: String { String(cString: nghttp2_strerror(code)) }
}
