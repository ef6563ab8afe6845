import CNghttp2
import HTTPTypes
import NIOCore

/// One HTTP/2 stream as its exchange sees it: the same `ExchangeDownstream` an HTTP/1.1
/// connection is, so router, filters and proxy do not know the difference.
///
/// Response body bytes wait in `pending` until nghttp2 pulls them through the data provider;
/// request body window is returned to the client only as the exchange takes the bytes.
final class HTTP2StreamDownstream {
    let streamID: Int32
    unowned(unsafe) let connection: HTTP2ServerHandler
    var exchange: Exchange?

    // Request side
    var method: String?
    var scheme: String?
    var authority: String?
    var path: String?
    var fields = HTTPFields()
    var trailers = HTTPFields()
    var headerBytes = 0
    var oversized = false
    var invalid = false
    var wantsBody = true
    var unconsumed = 0
    /// `:protocol` of an extended CONNECT (RFC 8441).
    var connectProtocol: String?

    // Tunnel: the stream after an extended CONNECT was answered (a WebSocket)
    var tunnelled = false
    var tunnelDelegate: (any ByteTunnelDelegate)?
    /// DATA that came before the tunnel was attached.
    var early: [ByteBuffer] = []
    var remoteEnded = false
    /// DATA arrived during the current receive; its read-complete is due.
    var tunnelReadPending = false

    // Response side
    /// Response chunks not yet pulled by nghttp2.
    var pending = ChunkQueue()
    var responseEnded = false
    var responseTrailers: HTTPFields?
    var deferred = false
    var reportedUnwritable = false
    static let highWater = 256 * 1024
    static let lowWater = 64 * 1024

    init(streamID: Int32, connection: HTTP2ServerHandler) {
        self.streamID = streamID
        self.connection = connection
    }

    /// Copies response bytes for nghttp2's data provider. `end` with `trailers` means the data
    /// ends here and the trailers close the stream.
    func read(into target: UnsafeMutableRawBufferPointer) -> (count: Int, end: Bool, trailers: HTTPFields?)? {
        if pending.bytes == 0 && !responseEnded {
            deferred = true
            return nil
        }
        let count = pending.pop(into: target)
        if reportedUnwritable && pending.bytes < Self.lowWater {
            reportedUnwritable = false
            connection.afterSend { [weak self] in self?.notifyWritable() }
        }
        let end = responseEnded && pending.bytes == 0
        return (count, end, end ? responseTrailers : nil)
    }

    func notifyWritable() {
        exchange?.downstreamWritabilityChanged(true)
        tunnelDelegate?.tunnelWritabilityChanged(true)
    }

    /// DATA on a tunnel stream: to the tunnel, or kept (and its window with it) until attached.
    func tunnelData(_ bytes: ByteBuffer) {
        if let tunnelDelegate { tunnelDelegate.tunnelRead(bytes) } else { early.append(bytes) }
    }

    /// The client reset the stream, ended its side, or the connection went.
    func tunnelEnded() {
        remoteEnded = true
        let delegate = tunnelDelegate
        tunnelDelegate = nil
        delegate?.tunnelClosed()
    }
}

extension HTTP2StreamDownstream: ExchangeDownstream {
    func writeResponseHead(_ response: HTTPResponse) {
        var out: [(String, String)] = []
        out.reserveCapacity(response.headerFields.count)
        for field in response.headerFields where !Self.connectionSpecific.contains(field.name) {
            out.append((field.name.canonicalName, field.value))
        }
        let method = exchange?.request.method
        // A head that carries grpc-status is a gRPC trailers-only answer: it ends the stream.
        let bodiless = method == .head || response.status.code == 204 || response.status.code == 304
            || response.headerFields[GatewayError.grpcStatus] != nil
        connection.submitResponse(self, status: response.status.code, fields: out, hasBody: !bodiless)
        if bodiless { responseEnded = true }
    }

    func writeResponseBody(_ chunk: ByteBuffer) {
        guard !responseEnded else { return }
        pending.append(chunk)
        if pending.bytes >= Self.highWater { reportedUnwritable = true }
        resumeIfDeferred()
    }

    func flushResponse() {
        connection.flush()
    }

    func writeResponseEnd(_ trailers: HTTPFields?) {
        if !responseEnded, let trailers, !trailers.isEmpty {
            responseTrailers = trailers
        }
        // A bodiless response (HEAD, 204, 304) ended with its HEADERS already.
        responseEnded = true
        exchange = nil
        resumeIfDeferred()
        connection.exchangeEnded(self)
    }

    func abortResponse() {
        exchange = nil
        connection.reset(self, code: NGHTTP2_INTERNAL_ERROR)
    }

    func setRequestBodyDemand(_ demand: Bool) {
        wantsBody = demand
        if demand && unconsumed > 0 {
            connection.consume(self, bytes: unconsumed)
            unconsumed = 0
        }
    }

    var isWritable: Bool { !reportedUnwritable && connection.isChannelWritable }

    /// RFC 8441 §5: the extended CONNECT is answered 200 (the HTTP/1.1 101's headers less the
    /// handshake's own), the stream stays open, and its DATA carries the new protocol's bytes.
    func takeOver(_ response: HTTPResponse) -> (any ByteTunnel)? {
        guard connectProtocol != nil, !responseEnded, exchange != nil else { return nil }
        var out: [(String, String)] = []
        for field in response.headerFields where !Self.connectionSpecific.contains(field.name) {
            guard field.name.canonicalName != "sec-websocket-accept" else { continue }
            out.append((field.name.canonicalName, field.value))
        }
        connection.submitResponse(self, status: 200, fields: out, hasBody: true)
        exchange = nil
        tunnelled = true
        connection.flush()
        return self
    }

    private func resumeIfDeferred() {
        if deferred {
            deferred = false
            connection.resume(self)
        }
    }

    /// Never sent on HTTP/2 (RFC 9113 §8.2.2).
    static let connectionSpecific: Set<HTTPField.Name> = [
        .connection, .transferEncoding, .upgrade, .te, HTTPField.Name("keep-alive")!, HTTPField.Name("proxy-connection")!,
    ]
}

extension HTTP2StreamDownstream: ByteTunnel {
    var allocator: ByteBufferAllocator { connection.allocator }

    func attach(_ delegate: any ByteTunnelDelegate) {
        let early = self.early
        self.early = []
        if remoteEnded {
            delegate.tunnelClosed()
            return
        }
        tunnelDelegate = delegate
        for bytes in early { delegate.tunnelRead(bytes) }
        if !early.isEmpty { delegate.tunnelReadComplete() }
        if wantsBody && unconsumed > 0 {
            connection.consume(self, bytes: unconsumed)
            unconsumed = 0
        }
    }

    func write(_ bytes: ByteBuffer) {
        writeResponseBody(bytes)
    }

    func flush() {
        connection.flush()
    }

    func setReading(_ reading: Bool) {
        setRequestBodyDemand(reading)
    }

    /// END_STREAM after what is pending; the connection resets the client's half with
    /// NO_ERROR once that has left, if the client has not ended it (RFC 9113 §8.1).
    func close() {
        guard !responseEnded else { return }
        responseEnded = true
        tunnelDelegate = nil
        resumeIfDeferred()
        connection.flush()
    }
}

@available(*, unavailable)
extension HTTP2StreamDownstream: Sendable {}
