import CNghttp2
import NIOCore

/// What an nghttp2 session reports, as Swift calls. Every call happens inside
/// `NGHTTP2Session.receive` (nghttp2 invokes callbacks only from mem_recv and mem_send).
protocol NGHTTP2SessionDelegate: AnyObject {
    /// Before a frame's payload is read; returning an error code ends the connection with it.
    func sessionBeginFrame(type: UInt8, streamID: Int32) -> nghttp2_error_code?
    /// After a whole frame; returning an error code ends the connection with it (flood limits).
    func sessionFrameReceived(type: UInt8, streamID: Int32, length: Int, flags: UInt8) -> nghttp2_error_code?
    func sessionBeginHeaders(streamID: Int32)
    /// Returns false to reset the stream (the header list is over its limit).
    func sessionHeader(streamID: Int32, name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) -> Bool
    func sessionHeadersComplete(streamID: Int32, endStream: Bool)
    func sessionTrailersComplete(streamID: Int32)
    func sessionData(streamID: Int32, bytes: UnsafeBufferPointer<UInt8>)
    func sessionEndStream(streamID: Int32)
    func sessionStreamClosed(streamID: Int32, errorCode: UInt32)
    /// Copies up to `into.count` response bytes; returns the count, whether the body ended, and
    /// whether trailers follow (the delegate submits them). nil: nothing ready yet (deferred).
    func sessionReadResponseData(streamID: Int32, into: UnsafeMutableRawBufferPointer) -> (count: Int, end: Bool, trailers: Bool)?
}

/// One nghttp2 session (server side), owned by one connection handler.
///
/// Bytes go in through `receive` (nghttp2_session_mem_recv) and frames come out of `drain`
/// (nghttp2_session_mem_send), gathered into one buffer per call so a read cycle costs one write.
/// Callbacks reach Swift through `Unmanaged` user data, capture nothing, and never throw: a
/// problem in a callback resets the stream (NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE) or ends the
/// session (NGHTTP2_ERR_CALLBACK_FAILURE), as nghttp2 specifies. `drain` must not run while a
/// `receive` is on the stack; `isReceiving` says so.
final class NGHTTP2Session {
    struct Settings {
        var maxConcurrentStreams: UInt32
        var initialWindowSize: UInt32
        var maxHeaderListSize: UInt32
    }

    private(set) var session: OpaquePointer?
    unowned(unsafe) var delegate: (any NGHTTP2SessionDelegate)?
    private(set) var isReceiving = false

    init(settings: Settings) throws {
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
        // Rapid reset (CVE-2023-44487): at most 1000 resets in a burst, then 33 per second.
        nghttp2_option_set_stream_reset_rate_limit(option, 1000, 33)

        var session: OpaquePointer?
        let rv = nghttp2_session_server_new2(&session, callbacks, nil, option)
        guard rv == 0, let session else { throw NGHTTP2Error(code: rv) }
        self.session = session

        var entries = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue),
                                   value: settings.maxConcurrentStreams),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue),
                                   value: settings.initialWindowSize),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue),
                                   value: settings.maxHeaderListSize),
        ]
        nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &entries, entries.count)
        // The connection window follows the stream window, so one stream can use it fully.
        if settings.initialWindowSize > 65535 {
            nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0,
                                                  Int32(clamping: settings.initialWindowSize))
        }
    }

    deinit {
        if let session { nghttp2_session_del(session) }
    }

    /// Binds user data; done once the delegate is stable in memory.
    func attach(_ delegate: any NGHTTP2SessionDelegate) {
        self.delegate = delegate
        nghttp2_session_set_user_data(session, Unmanaged.passUnretained(self).toOpaque())
    }

    /// Feeds received bytes. Returns an error when the connection must end.
    func receive(_ buffer: ByteBuffer) -> NGHTTP2Error? {
        precondition(!isReceiving, "re-entrant receive")
        isReceiving = true
        defer { isReceiving = false }
        let rv = buffer.withUnsafeReadableBytes { bytes in
            nghttp2_session_mem_recv(session, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count)
        }
        return rv < 0 ? NGHTTP2Error(code: Int32(rv)) : nil
    }

    /// Everything nghttp2 has to send, in one buffer (empty when nothing is pending).
    func drain(allocator: ByteBufferAllocator) -> ByteBuffer? {
        precondition(!isReceiving, "drain inside a callback")
        var out: ByteBuffer?
        while true {
            var data: UnsafePointer<UInt8>?
            let n = nghttp2_session_mem_send(session, &data)
            if n <= 0 { break }
            if out == nil { out = allocator.buffer(capacity: max(n, 1024)) }
            out!.writeBytes(UnsafeRawBufferPointer(start: data, count: n))
        }
        return out
    }

    /// Applies an h2c upgrade's HTTP2-Settings and opens stream 1 (RFC 7540 §3.2).
    func upgrade(settings: [UInt8], isHead: Bool) -> Bool {
        settings.withUnsafeBufferPointer { payload in
            nghttp2_session_upgrade2(session, payload.baseAddress, payload.count, isHead ? 1 : 0, nil) == 0
        }
    }

    var wantsIO: Bool { nghttp2_session_want_read(session) != 0 || nghttp2_session_want_write(session) != 0 }
    var lastStreamID: Int32 { nghttp2_session_get_last_proc_stream_id(session) }

    func consume(streamID: Int32, bytes: Int) {
        nghttp2_session_consume(session, streamID, bytes)
    }

    func resume(streamID: Int32) {
        nghttp2_session_resume_data(session, streamID)
    }

    func reset(streamID: Int32, code: nghttp2_error_code) {
        nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, code.rawValue)
    }

    /// Queues GOAWAY with `code` and makes mem_recv stop (a callback's failure return).
    fileprivate func terminate(_ code: nghttp2_error_code) -> Int32 {
        nghttp2_session_terminate_session(session, code.rawValue)
        return NGHTTP2_ERR_CALLBACK_FAILURE.rawValue
    }

    func goAway(code: nghttp2_error_code = NGHTTP2_NO_ERROR) {
        nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), lastStreamID, code.rawValue, nil, 0)
    }

    /// Submits a response head; with `hasBody` the body is pulled through the delegate.
    func submitResponse(streamID: Int32, status: Int, fields: [(String, String)], hasBody: Bool) -> Bool {
        return withNGHTTP2Headers([(":status", String(status))] + fields) { nva in
            var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: nil), read_callback: Self.readCallback)
            return hasBody
                ? nghttp2_submit_response(session, streamID, nva.baseAddress, nva.count, &provider) == 0
                : nghttp2_submit_response(session, streamID, nva.baseAddress, nva.count, nil) == 0
        }
    }

    func submitTrailers(streamID: Int32, fields: [(String, String)]) {
        _ = withNGHTTP2Headers(fields) { nva in
            nghttp2_submit_trailer(session, streamID, nva.baseAddress, nva.count)
        }
    }

    private static let readCallback: nghttp2_data_source_read_callback = { _, streamID, buffer, length, flags, _, userData in
        let session = owner(userData)
        guard let delegate = session.delegate, let buffer else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
        guard let (count, end, trailers) = delegate.sessionReadResponseData(
            streamID: streamID, into: UnsafeMutableRawBufferPointer(start: buffer, count: length))
        else { return Int(NGHTTP2_ERR_DEFERRED.rawValue) }
        if end { flags!.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue }
        if end && trailers { flags!.pointee |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue }
        return count
    }

    private static func install(_ callbacks: OpaquePointer) {
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks) { _, frame, userData in
            guard let frame, frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue),
                frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST
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
                if frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST {
                    delegate.sessionHeadersComplete(streamID: header.stream_id, endStream: endStream)
                } else if endStream {
                    delegate.sessionTrailersComplete(streamID: header.stream_id)
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

struct NGHTTP2Error: Error, CustomStringConvertible {
    var code: Int32
    var description: String { String(cString: nghttp2_strerror(code)) }
}
