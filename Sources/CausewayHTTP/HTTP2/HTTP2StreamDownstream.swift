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
            connection.afterSend { [weak self] in self?.exchange?.downstreamWritabilityChanged(true) }
        }
        let end = responseEnded && pending.bytes == 0
        return (count, end, end ? responseTrailers : nil)
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

@available(*, unavailable)
extension HTTP2StreamDownstream: Sendable {}
