import HTTPTypes
import NIOCore

/// What the pipeline learns about an exchange as it runs, typed, for later filters, the
/// handler, and whoever watches completions (access logs, metrics).
public struct ExchangeAttributes {
    /// The matched route's name; nil until routed (404s, early failures).
    public var route: String?
    /// Who the caller proved to be (an API key's consumer, a token's subject); nil = anonymous.
    public var consumer: String?
    /// A verified token's claims, for authorization and `forward_claims`.
    public var claims: [String: ClaimValue]?
    public var timings = ExchangeTimings()
    /// The client's address as policies see it (trusted proxies applied), once resolved.
    public var clientIP: (bytes: [UInt8], text: String)?
    /// The `RateLimit` header for the response, when the route has rate limits.
    public var rateLimit: String?

    public init() {}
}

/// One JSON claim value, as a token carried it.
public enum ClaimValue: Sendable, Equatable {
    case string(String)
    case number(Double)
    case bool(Bool)
    case array([ClaimValue])
    case object([String: ClaimValue])
    case null
}

/// Moments in an exchange's life (monotonic clock), for latency logs and metrics.
public struct ExchangeTimings {
    /// The request head was complete.
    public var received = NIODeadline.now()
    /// A route was chosen and its filters passed.
    public var dispatched: NIODeadline?
    /// The first upstream attempt started (a connection leased).
    public var upstreamStarted: NIODeadline?
    /// The response head went to the client.
    public var responseStarted: NIODeadline?
    /// The exchange ended, however it ended.
    public var completed: NIODeadline?

    public init() {}
}

/// How an exchange ended, given once to its completion hooks.
public struct ExchangeOutcome {
    public enum Kind: Sendable, Equatable {
        /// The whole response reached the downstream codec.
        case completed
        /// The gateway answered with an error of its own (`error` says which).
        case failed
        /// The response had started and could not be finished: the client saw a reset or close.
        case aborted
        /// The client went away first.
        case cancelled
    }

    public var kind: Kind
    /// The status sent (or begun), nil when no head was sent.
    public var status: HTTPResponse.Status?
    /// The gateway error that answered or aborted the exchange, if one did.
    public var error: GatewayError?
    public var requestBodyBytes: Int
    public var responseBodyBytes: Int
}

/// The shape a gateway error takes for the caller: chosen per exchange (gRPC by content type,
/// GraphQL by route), so every error path answers in the caller's own protocol.
public enum ErrorFormat: Sendable, Equatable {
    /// `{"error":{...}}` with the HTTP status.
    case json
    /// HTTP 200, trailers-only: `grpc-status`, `grpc-message` (percent-encoded), request id.
    case grpc
    /// gRPC-Web (binary, or base64 `-text`): as gRPC, in the head, with a gRPC-Web content type.
    case grpcWeb
    case grpcWebText
    /// `{"errors":[{"message":..,"extensions":{"code":..}}]}` with the HTTP status.
    case graphql

    /// gRPC for `application/grpc` and `application/grpc+proto`, gRPC-Web for
    /// `application/grpc-web…`, JSON otherwise.
    public static func forRequest(_ request: HTTPRequest) -> ErrorFormat {
        guard let type = request.headerFields[.contentType], type.caseInsensitiveHasPrefix("application/grpc") else { return .json }
        if type.caseInsensitiveHasPrefix("application/grpc-web-text") { return .grpcWebText }
        if type.caseInsensitiveHasPrefix("application/grpc-web") { return .grpcWeb }
        return .grpc
    }

    public var isGRPCWeb: Bool { self == .grpcWeb || self == .grpcWebText }
}
