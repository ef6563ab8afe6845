import CNghttp2
import NIOCore
import CausewayHTTP
import HTTPTypes

/// One exchange's stream on an upstream HTTP/2 connection, driven by the proxy exactly like an
/// HTTP/1.1 connection. Request body chunks wait in a queue that nghttp2's data provider pulls
/// as the upstream's window allows; response window is returned only as the client takes bytes.
final class HTTP2UpstreamStream: UpstreamRequestChannel {
    var isHTTP2: Bool { true }
    /// Strong: a stream the caller still holds must not outlive its connection's memory (the
    /// cycle ends when the connection drops the stream, at its close at the latest).
    let connection: HTTP2UpstreamConnection
    var streamID: Int32 = 0
    let isReused: Bool
    var sink: (any UpstreamResponseSink)?

    private var pending = ChunkQueue()
    private var requestEnded = false
    private(set) var requestTrailers: HTTPFields?
    private var deferred = false

    private var status: Int?
    private var headers = HTTPFields()
    private var trailers = HTTPFields()
    private var headStarted = false
    private var responseEnded = false
    private var wantsResponse = true
    private var unconsumed = 0

    init(connection: HTTP2UpstreamConnection, reused: Bool) {
        self.connection = connection
        self.isReused = reused
    }

    func execute(_ request: HTTPRequest, bodyLength: Int?, sink: any UpstreamResponseSink) {
        self.sink = sink
        requestEnded = bodyLength == 0
        if !connection.submit(self, request: request, bodyLength: bodyLength) {
            self.sink = nil
            sink.upstreamFailed(.closedEarly, responseStarted: false)
        }
    }

    func writeBody(_ chunk: ByteBuffer) {
        pending.append(chunk)
        resumeIfDeferred()
    }

    func writeEnd(_ trailers: HTTPFields?) {
        requestEnded = true
        if let trailers, !trailers.isEmpty { requestTrailers = trailers }
        resumeIfDeferred()
    }

    var isWritable: Bool { pending.bytes < 256 * 1024 && connection.isChannelWritable }

    func setResponseDemand(_ demand: Bool) {
        wantsResponse = demand
        if demand && unconsumed > 0 {
            let bytes = unconsumed
            unconsumed = 0
            connection.consume(self, bytes: bytes)
        }
    }

    func cancel() {
        sink = nil
        if !responseEnded { connection.reset(self) }  // RST_STREAM(CANCEL) upstream
    }

    private func resumeIfDeferred() {
        if deferred {
            deferred = false
            connection.resume(self)
        }
    }

    // MARK: From the connection

    func readBody(into target: UnsafeMutableRawBufferPointer) -> (count: Int, end: Bool)? {
        if pending.bytes == 0 && !requestEnded {
            deferred = true
            return nil
        }
        let wasFull = !isWritable
        let count = pending.pop(into: target)
        if wasFull && isWritable { sink?.upstreamWritabilityChanged(true) }
        return (count, requestEnded && pending.bytes == 0)
    }

    func receiveHeader(name: String, value: String) {
        if name.hasPrefix(":") {
            if !headStarted && name == ":status" { status = Int(value) }
            return
        }
        // nghttp2 checked the name (lower-case token), so it parses.
        guard let name = HTTPField.Name(name) else { return }
        if headStarted {
            trailers.append(HTTPField(name: name, value: value))
        } else {
            headers.append(HTTPField(name: name, value: value))
        }
    }

    func headersComplete(endStream: Bool) {
        if headStarted {
            if endStream { ended(trailers: trailers) }
            return
        }
        guard let status, (100...999).contains(status) else {
            connection.reset(self)
            failed(.invalidResponse("response without :status"))
            return
        }
        if status < 200 {  // informational: wait for the final head
            self.status = nil
            headers = HTTPFields()
            return
        }
        headStarted = true
        sink?.upstreamResponseHead(HTTPResponse(status: .init(code: status), headerFields: headers))
        if endStream { ended(trailers: nil) }
    }

    func receiveData(_ buffer: ByteBuffer) {
        let bytes = buffer.readableBytes
        sink?.upstreamResponseBody(buffer)
        if wantsResponse || sink == nil {
            connection.consume(self, bytes: bytes)
        } else {
            unconsumed += bytes
        }
    }

    func ended(trailers: HTTPFields?) {
        guard !responseEnded else { return }
        responseEnded = true
        let sink = self.sink
        self.sink = nil
        sink?.upstreamResponseEnd(trailers?.isEmpty == false ? trailers : nil)
    }

    func closed(errorCode: UInt32) {
        guard !responseEnded else { return }
        failed(errorCode == NGHTTP2_REFUSED_STREAM.rawValue ? .refusedStream : .closedEarly)
    }

    func failed(_ error: UpstreamError) {
        responseEnded = true
        guard let sink else { return }
        self.sink = nil
        sink.upstreamFailed(error, responseStarted: headStarted)
    }
}

@available(*, unavailable)
extension HTTP2UpstreamStream: Sendable {}
