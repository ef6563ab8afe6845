import CausewayHTTP
import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOHTTPTypesHTTP1

/// What an upstream connection reports to the exchange it is serving.
public protocol UpstreamResponseSink: AnyObject {
    func upstreamResponseHead(_ response: HTTPResponse)
    func upstreamResponseBody(_ chunk: ByteBuffer)
    /// End of one read cycle: the moment to flush what was forwarded.
    func upstreamReadComplete()
    func upstreamResponseEnd(_ trailers: HTTPFields?)
    /// The connection failed; `responseStarted` says whether a response head had arrived.
    func upstreamFailed(_ error: UpstreamError, responseStarted: Bool)
    func upstreamWritabilityChanged(_ writable: Bool)
}

public enum UpstreamError: Error, Sendable, Equatable {
    case connectFailed(String)
    case connectTimeout
    /// The TLS handshake failed (an untrusted certificate, no common protocol, a timeout).
    case tlsFailed(String)
    case closedEarly
    case invalidResponse(String)
    /// HTTP/2 REFUSED_STREAM (or a GOAWAY that excluded the stream): the upstream did not
    /// process the request, so it may be sent again.
    case refusedStream
}

/// One request's way to an upstream: an HTTP/1.1 connection or an HTTP/2 stream. The proxy
/// drives either the same way.
public protocol UpstreamRequestChannel: AnyObject {
    /// It served requests before (a reused keep-alive connection, or a busy HTTP/2 connection).
    var isReused: Bool { get }
    /// An HTTP/2 stream (which may carry `te: trailers`), not an HTTP/1.1 connection.
    var isHTTP2: Bool { get }
    /// Sends the request head. `request.authority` is the Host; `bodyLength` is the body's
    /// framing (nil: unknown, sent chunked on HTTP/1.1; 0: no body), always the gateway's own.
    func execute(_ request: HTTPRequest, bodyLength: Int?, sink: any UpstreamResponseSink)
    func writeBody(_ chunk: ByteBuffer)
    func writeEnd(_ trailers: HTTPFields?)
    var isWritable: Bool { get }
    func setResponseDemand(_ demand: Bool)
    /// The exchange is over without a complete response: abandon it (close or reset).
    func cancel()
}

/// One keep-alive HTTP/1.1 connection to an upstream, serving one exchange at a time.
///
/// ```
/// pool ─lease─▶ this ─(HTTP1RequestWriter bytes)─▶ socket ─HTTPResponseDecoder─▶ this ─▶ sink
/// ```
/// The request is serialized here from `HTTPFields` straight to bytes (no NIOHTTP1 header
/// conversion); the response decoder (llhttp) still yields NIOHTTP1 heads, converted once.
/// After a response ends it goes back to its pool if both sides allow keep-alive and the
/// request was sent in full; otherwise it closes. Reads are held back while the sink's client
/// cannot take more (response backpressure).
public final class UpstreamHTTP1Connection: ChannelDuplexHandler, RemovableChannelHandler, UpstreamRequestChannel {
    public typealias InboundIn = HTTPClientResponsePart
    public typealias OutboundIn = HTTPClientRequestPart
    public typealias OutboundOut = HTTPClientRequestPart

    enum State {
        case idle
        case active
        case closed
    }

    public let id: Int
    /// Strong: a reload can drop a pool (its upstream retired) while its connections are still
    /// closing; each keeps the pool alive until it has reported its close.
    let pool: HTTP1ConnectionPool
    private var context: ChannelHandlerContext?
    private var state = State.idle
    private var sink: (any UpstreamResponseSink)?
    private var requestSent = false
    private var responseStarted = false
    private var responseKeepAlive = true
    private var chunked = false
    private var wantsResponse = true
    private var readPending = false
    private(set) var idleSince: NIODeadline = .now()
    /// Exchanges served, for tests and logs.
    public private(set) var exchangesServed = 0

    init(id: Int, pool: HTTP1ConnectionPool) {
        self.id = id
        self.pool = pool
    }

    public var isActive: Bool { state == .active }
    public var isHTTP2: Bool { false }
    /// Read before `execute` counts the new exchange.
    public var isReused: Bool { exchangesServed > 0 }

    // MARK: Driving an exchange (from the proxy)

    /// Starts an exchange: writes the request head; the body follows through `writeBody`.
    public func execute(_ request: HTTPRequest, bodyLength: Int?, sink: any UpstreamResponseSink) {
        guard let context, state == .idle else {
            sink.upstreamFailed(.closedEarly, responseStarted: false)
            return
        }
        state = .active
        self.sink = sink
        requestSent = false
        responseStarted = false
        responseKeepAlive = true
        wantsResponse = true
        exchangesServed += 1
        chunked = bodyLength == nil
        // The response decoder learns the method (a HEAD response has no body) from this
        // header-less head; the writer below drops it and sends the bytes.
        context.write(wrapOutboundOut(.head(HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: request.method.rawValue),
                                                            uri: ""))), promise: nil)
        var bytes = context.channel.allocator.buffer(capacity: 256)
        HTTP1RequestWriter.writeHead(request, bodyLength: bodyLength, to: &bytes)
        if bodyLength == 0 {
            context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(bytes))), promise: nil)
            requestSent = true
        } else {
            context.write(wrapOutboundOut(.body(.byteBuffer(bytes))), promise: nil)
        }
    }

    public func writeBody(_ chunk: ByteBuffer) {
        guard let context, chunk.readableBytes > 0 else { return }
        if chunked {
            let (first, body) = HTTP1ResponseWriter.chunkParts(chunk, allocator: context.channel.allocator)
            if let body {
                context.write(wrapOutboundOut(.body(.byteBuffer(first))), promise: nil)
                context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
                context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(HTTP1ResponseWriter.crlf))), promise: nil)
            } else {
                context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(first))), promise: nil)
            }
        } else {
            context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(chunk))), promise: nil)
        }
    }

    public func writeEnd(_ trailers: HTTPFields?) {
        requestSent = true
        guard let context else { return }
        if chunked {
            var end = context.channel.allocator.buffer(capacity: 64)
            HTTP1ResponseWriter.writeLastChunk(trailers: trailers, to: &end)
            context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(end))), promise: nil)
        } else {
            context.flush()
        }
    }

    public var isWritable: Bool { context?.channel.isWritable ?? false }

    public func setResponseDemand(_ demand: Bool) {
        wantsResponse = demand
        if demand, readPending, let context {
            readPending = false
            context.read()
        }
    }

    /// The exchange is over without a complete response: this connection's state is unknown, close it.
    public func cancel() {
        sink = nil
        context?.close(promise: nil)
    }

    // MARK: Channel events

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard state == .active else {
            // A response nobody asked for (an upstream that read a smuggled second request, or
            // answered twice): the connection's framing is lost, and it must not be released
            // to the pool again. Close it.
            state = .closed
            context.close(promise: nil)
            return
        }
        switch unwrapInboundIn(data) {
        case .head(let head):
            guard let sink else { return }
            guard (100...999).contains(head.status.code) else {
                self.sink = nil
                state = .closed
                sink.upstreamFailed(.invalidResponse("invalid status code \(head.status.code)"), responseStarted: false)
                context.close(promise: nil)
                return
            }
            responseStarted = true
            responseKeepAlive = head.isKeepAlive
            sink.upstreamResponseHead(HTTP1RequestWriter.response(head))
        case .body(let chunk):
            sink?.upstreamResponseBody(chunk)
        case .end(let trailers):
            let sink = self.sink
            self.sink = nil
            if requestSent && responseKeepAlive {
                state = .idle
                idleSince = .now()
                pool.connectionReleased(self, reusable: true)
            } else {
                // Not reusable: the upstream said close, or it answered before the whole
                // request was sent and the rest of that request may still be in flight.
                state = .closed
                pool.connectionReleased(self, reusable: false)
                context.close(promise: nil)
            }
            sink?.upstreamResponseEnd(trailers.map { HTTPFields($0, splitCookie: false) })
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        sink?.upstreamReadComplete()
        context.fireChannelReadComplete()
    }

    public func read(context: ChannelHandlerContext) {
        if wantsResponse || state != .active {
            context.read()
        } else {
            readPending = true
        }
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        sink?.upstreamWritabilityChanged(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is HTTPParserError, let sink {
            self.sink = nil
            sink.upstreamFailed(.invalidResponse("\(error)"), responseStarted: responseStarted)
        }
        context.close(promise: nil)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        let previous = state
        state = .closed
        if let sink {
            self.sink = nil
            sink.upstreamFailed(.closedEarly, responseStarted: responseStarted)
        }
        pool.connectionClosed(self, previousState: previous)
        context.fireChannelInactive()
    }
}

@available(*, unavailable)
extension UpstreamHTTP1Connection: Sendable {}
