import HTTPTypes
import NIOCore

/// The seams between the pieces an exchange connects.
///
/// ```
///  downstream codec ──request body──▶ Exchange ──▶ RequestBodyConsumer (upstream client, …)
///  (HTTP/1.1, HTTP/2)                     │
///        ▲                        response filters
///        └──── ExchangeDownstream ◀──────┘◀── response producer (upstream client, …)
/// ```
/// Every call happens on the exchange's event loop; none of these types is Sendable.

/// The connection (or HTTP/2 stream) that carried the request, as the exchange sees it.
public protocol ExchangeDownstream: AnyObject {
    func writeResponseHead(_ response: HTTPResponse)
    func writeResponseBody(_ chunk: ByteBuffer)
    /// Pushes what was written so far to the client (called once per upstream read cycle).
    func flushResponse()
    func writeResponseEnd(_ trailers: HTTPFields?)
    /// The response cannot be completed (upstream failed mid-body): close or reset.
    func abortResponse()
    /// Start or stop delivering request body parts: backpressure toward the client.
    func setRequestBodyDemand(_ demand: Bool)
    var isWritable: Bool { get }
    /// Answers with `response` (a 101; an HTTP/2 stream sends 200) and hands over the
    /// connection or stream as a byte tunnel for the protocol switched to. nil when this
    /// downstream cannot (nothing is written then).
    func takeOver(_ response: HTTPResponse) -> (any ByteTunnel)?
}

extension ExchangeDownstream {
    public func takeOver(_ response: HTTPResponse) -> (any ByteTunnel)? { nil }
}

/// Takes the request body as it arrives (an upstream connection, a buffering handler).
public protocol RequestBodyConsumer: AnyObject {
    func requestBodyPart(_ chunk: ByteBuffer)
    func requestBodyEnd(_ trailers: HTTPFields?)
}

/// Produces the response and must hear when the client can take more, or is gone.
public protocol ResponseProducer: AnyObject {
    func downstreamWritabilityChanged(_ writable: Bool)
    /// The client went away or the exchange was answered by someone else: stop and release.
    func cancel()
}

/// What a listener hands each new exchange to (the gateway's router and handlers).
public protocol ExchangeHandler: AnyObject {
    func handle(_ exchange: Exchange)
}

/// What a filter's request phase decides.
public enum FilterOutcome: Sendable {
    /// Go on to the next filter, then the route's handler.
    case `continue`
    /// Answer now with a complete response of the filter's own (a CORS preflight, a cache hit,
    /// a 429). The response phase still runs over it, as over any other.
    case respond(HTTPResponse, body: ByteBuffer?)
    /// Answer with a gateway error, rendered in the exchange's error format.
    case fail(GatewayError)
    /// Decide later (a token introspection, a Redis round trip): the chain resumes with the
    /// future's outcome on the exchange's own loop; a failed future fails the exchange.
    case suspend(EventLoopFuture<FilterOutcome>)
}

/// A filter in the chain, as one event loop runs it. Each loop makes its own from a
/// `FilterFactory`, so a filter may keep per-loop state (a cache, a token bucket) without
/// locks; per-exchange state lives in the exchange's attributes and the transforms it makes.
public protocol HTTPFilter: AnyObject {
    /// Request phase: modify the request, answer, fail, or wait.
    func filterRequest(_ exchange: Exchange) -> FilterOutcome
    /// Response phase for the head. Runs for every response, gateway errors included.
    func filterResponseHead(_ response: inout HTTPResponse, exchange: Exchange)
    /// Response phase for the body, after every filter's head phase: a streaming transform for
    /// this response, or nil to pass it. It may still change the head (a compressor sets
    /// Content-Encoding where it decides to encode; a HEAD response gets the same head).
    func makeResponseBodyTransform(for response: inout HTTPResponse, exchange: Exchange) -> (any ResponseBodyTransform)?
}

extension HTTPFilter {
    public func filterRequest(_ exchange: Exchange) -> FilterOutcome { .continue }
    public func filterResponseHead(_ response: inout HTTPResponse, exchange: Exchange) {}
    public func makeResponseBodyTransform(for response: inout HTTPResponse, exchange: Exchange) -> (any ResponseBodyTransform)? {
        nil
    }
}

/// Where a request filter chain goes when every filter continued (the router, a handler).
public protocol RequestFiltersPassed: AnyObject {
    func requestFiltersPassed(_ exchange: Exchange)
}

/// Compiled once from config, shared by every loop: makes each loop's instance of a filter.
public protocol FilterFactory: Sendable {
    func makeFilter(on eventLoop: any EventLoop) -> any HTTPFilter
}

/// Per-response streaming body transform (compression is one). It must not hold back data it
/// has been told to flush: for a stream, a chunk in means everything producible so far out.
/// A thrown error aborts the response (the client sees a reset, never a corrupt body).
public protocol ResponseBodyTransform: AnyObject {
    func transform(_ chunk: ByteBuffer) throws -> ByteBuffer?
    func finish(trailers: inout HTTPFields?) throws -> ByteBuffer?
}

/// Per-request body transform (request decompression), applied before the body limit and the
/// upstream see the bytes. A thrown `GatewayError` answers the request with it.
public protocol RequestBodyTransform: AnyObject {
    func transform(_ chunk: ByteBuffer) throws(GatewayError) -> ByteBuffer?
    func finish() throws(GatewayError) -> ByteBuffer?
}

/// Who is on the other end of the downstream connection.
public struct ClientInfo: Sendable {
    /// The peer's IP address as text ("127.0.0.1", "::1"), for X-Forwarded-For.
    public var address: String
    /// "http" or "https", for X-Forwarded-Proto.
    public var scheme: String

    public init(address: String, scheme: String) {
        self.address = address
        self.scheme = scheme
    }
}
