import GraphQL
import NIOCore
import Synchronization

/// One REST call a GraphQL operation needs.
public struct RestRequest: Sendable, Hashable {
    public var upstream: String
    public var method: String
    /// Path and query, already rendered and URL-encoded.
    public var path: String
    public var body: [UInt8]?
    public var headers: [String: String]
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

/// How the executor reaches upstreams: the gateway implements it over its per-loop pools.
public protocol RestTransport: Sendable {
    func send(_ request: RestRequest) async throws(RestFailure) -> RestResponse
}

/// Everything one GraphQL request shares across its resolvers: the transport, the client
/// headers templates may use, and the calls made so far, so an identical call is made once.
/// Resolvers may run concurrently, hence the lock (held only to look up or store a task).
public final class OperationContext: Sendable {
    let transport: any RestTransport
    let headers: [String: String]
    /// Where the request's answer goes back to (the exchange's loop).
    public let eventLoop: any EventLoop
    private let calls = Mutex<[RestRequest: Task<Map, any Error>]>([:])
    private let made = Atomic<Int>(0)

    public init(transport: any RestTransport, headers: [String: String], eventLoop: any EventLoop) {
        self.transport = transport
        self.headers = headers
        self.eventLoop = eventLoop
    }

    /// Upstream calls actually sent (after de-duplication), for the debug header.
    public var upstreamCalls: Int { made.load(ordering: .relaxed) }

    /// The JSON answer to `request`, from the one call made for it.
    func fetch(_ request: RestRequest) async throws -> Map {
        let task = calls.withLock { calls -> Task<Map, any Error> in
            if let existing = calls[request] { return existing }
            let transport = self.transport
            made.add(1, ordering: .relaxed)
            let task = Task<Map, any Error> {
                let response: RestResponse
                do throws(RestFailure) {
                    response = try await transport.send(request)
                } catch {
                    throw error.graphQLError(upstream: request.upstream)
                }
                guard (200..<300).contains(response.status) else {
                    throw RestFailure.status(response.status).graphQLError(upstream: request.upstream)
                }
                if response.body.isEmpty { return .null }
                do {
                    return try Map.decodeJSON(response.body)
                } catch {
                    throw RestFailure.invalidResponse("the answer is not JSON").graphQLError(upstream: request.upstream)
                }
            }
            calls[request] = task
            return task
        }
        return try await task.value
    }
}
