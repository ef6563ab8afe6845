import GraphQL

/// One REST call a GraphQL operation needs.
public struct RestRequest: Sendable, Hashable {
    public var upstream: String
    public var method: String
    /// Path and query, already rendered and URL-encoded.
    public var path: String
    public var body: [UInt8]?
    /// The client's headers (the transport forwards the ones upstreams may need). The same for
    /// every call of a request, so not part of what makes two calls identical.
    public var headers: [String: String]

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.path == rhs.path && lhs.upstream == rhs.upstream && lhs.method == rhs.method && lhs.body == rhs.body
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(path)
        hasher.combine(upstream)
        hasher.combine(method)
        hasher.combine(body)
    }
}

public struct RestResponse: Sendable {
    public var status: Int
    public var body: [UInt8]

    public init(status: Int, body: [UInt8]) {
        self.status = status
        self.body = body
    }
}

/// Why a REST call produced no usable answer; becomes `errors[].extensions.code`.
public enum RestFailure: Error, Sendable {
    /// The upstream answered with an error status.
    case status(Int)
    case timeout(String)
    case unavailable(String)
    /// The answer was not the JSON the schema needs.
    case invalidResponse(String)

    var code: String {
        switch self {
        case .status: "UPSTREAM_ERROR"
        case .timeout: "UPSTREAM_TIMEOUT"
        case .unavailable, .invalidResponse: "UPSTREAM_UNAVAILABLE"
        }
    }

    func graphQLError(upstream: String) -> GraphQLError {
        var extensions: [String: Map] = ["code": .string(code), "upstream": .string(upstream)]
        let message: String
        switch self {
        case .status(let status):
            extensions["status"] = .number(Number(status))
            message = "upstream \"\(upstream)\" answered \(status)"
        case .timeout(let reason), .unavailable(let reason), .invalidResponse(let reason):
            message = "upstream \"\(upstream)\": \(reason)"
        }
        return GraphQLError(message: message, extensions: extensions)
    }
}

/// How an `OperationRun` reaches upstreams: the gateway implements it over the per-loop pools
/// of the loop the run is on. `done` is called once, on that loop.
public protocol RestTransport: AnyObject {
    func send(_ request: RestRequest, done: @escaping (Result<RestResponse, RestFailure>) -> Void)
}
