import CausewayConfig
import CausewayGraphQL
import CausewayHTTP
import CausewayUpstream
import Foundation
import GraphQL
import NIOCore
import OrderedCollections

/// The operations of one GraphQL-over-HTTP request: from a POST body (`{"query": ...}` or,
/// with batching, an array of those) or from a GET query string.
struct GraphQLHTTPRequest: Sendable {
    struct Operation: Sendable {
        var query: String?
        var variables: [String: Map]
        var operationName: String?
        /// `extensions.persistedQuery.sha256Hash` (automatic persisted queries).
        var persistedHash: String?
    }

    var operations: [Operation]
    var batched: Bool

    static func fromBody(_ body: ByteBuffer, contentType: String?, batching: GraphQLRouteConfig) -> Result<Self, GatewayError> {
        var media = contentType?.prefix { $0 != ";" }.drop { $0 == " " || $0 == "\t" }
        while let last = media?.last, last == " " || last == "\t" { media = media?.dropLast() }
        let lowered = media?.lowercased()
        guard lowered == "application/json" || lowered == "application/graphql-response+json" else {
            return .failure(GatewayError(status: .unsupportedMediaType, code: "unsupported_media_type",
                                         message: "GraphQL POST bodies are application/json"))
        }
        let map: Map
        do {
            // Integers stay integers (an Int is a valid ID).
            map = try JSONParser.parse(Array(body.readableBytesView), maxValues: maxBodyValues)
        } catch {
            return .failure(.badRequest("the body is not JSON, or holds more than \(maxBodyValues) values"))
        }
        switch map {
        case .dictionary:
            return operation(map).map { GraphQLHTTPRequest(operations: [$0], batched: false) }
        case .array(let items):
            guard batching.batchingEnabled else { return .failure(.badRequest("batched operations are not enabled on this route")) }
            guard !items.isEmpty, items.count <= batching.maxOperations else {
                return .failure(.badRequest("a batch holds 1 to \(batching.maxOperations) operations, not \(items.count)"))
            }
            var operations: [Operation] = []
            for item in items {
                switch operation(item) {
                case .success(let operation): operations.append(operation)
                case .failure(let error): return .failure(error)
                }
            }
            return .success(GraphQLHTTPRequest(operations: operations, batched: true))
        default:
            return .failure(.badRequest("the body must be a JSON object (or an array of them)"))
        }
    }

    /// JSON values in a request body (query, variables and their contents, every operation of
    /// a batch): far above what operations of `max_tokens` can declare, and a bound on the
    /// work of turning the body into values.
    static let maxBodyValues = 20_000

    private static func operation(_ map: Map) -> Result<Operation, GatewayError> {
        guard case .dictionary(let fields) = map else { return .failure(.badRequest("each operation must be a JSON object")) }
        var operation = Operation(query: nil, variables: [:], operationName: nil)
        switch fields["extensions"] {
        case .dictionary(let extensions)?: operation.persistedHash = persistedHash(extensions)
        case nil, .null?: break
        default: return .failure(.badRequest("extensions must be a JSON object"))
        }
        switch fields["query"] {
        case .string(let query)?: operation.query = query
        case nil, .null?: break
        default: return .failure(.badRequest("query must be a string"))
        }
        switch fields["variables"] {
        case .dictionary(let variables)?: operation.variables = Dictionary(uniqueKeysWithValues: variables.map { ($0.key, $0.value) })
        case nil, .null?: break
        default: return .failure(.badRequest("variables must be a JSON object"))
        }
        switch fields["operationName"] {
        case .string(let name)?: operation.operationName = name
        case nil, .null?: break
        default: return .failure(.badRequest("operationName must be a string"))
        }
        return .success(operation)
    }

    static func fromQuery(_ path: String) -> Result<Self, GatewayError> {
        var operation = Operation(query: nil, variables: [:], operationName: nil)
        let query = path.split(separator: "?", maxSplits: 1).dropFirst().first ?? ""
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = decode(parts[0]), let value = parts.count > 1 ? decode(parts[1]) : "" else {
                return .failure(.badRequest("the query string is not valid percent-encoding"))
            }
            switch name {
            case "query": operation.query = value
            case "operationName": operation.operationName = value.isEmpty ? nil : value
            case "extensions" where !value.isEmpty:
                guard let map = try? JSONParser.parse(Array(value.utf8), maxValues: maxBodyValues),
                    case .dictionary(let extensions) = map else {
                    return .failure(.badRequest("extensions must be a JSON object"))
                }
                operation.persistedHash = persistedHash(extensions)
            case "variables" where !value.isEmpty:
                guard let map = try? JSONParser.parse(Array(value.utf8), maxValues: maxBodyValues),
                    case .dictionary(let variables) = map else {
                    return .failure(.badRequest("variables must be a JSON object"))
                }
                operation.variables = Dictionary(uniqueKeysWithValues: variables.map { ($0.key, $0.value) })
            default: break
            }
        }
        return .success(GraphQLHTTPRequest(operations: [operation], batched: false))
    }

    private static func persistedHash(_ extensions: OrderedDictionary<String, Map>) -> String? {
        guard case .dictionary(let persisted)? = extensions["persistedQuery"], case .string(let hash)? = persisted["sha256Hash"]
        else { return nil }
        return hash
    }

    private static func decode(_ text: Substring) -> String? {
        text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }
}

/// How GraphQL runs on a loop reach upstreams: `UpstreamCall`s through that loop's pools.
final class GatewayRestTransport: RestTransport {
    private let eventLoop: any EventLoop
    private let clusters: [String: UpstreamCluster]
    /// The route's `upstream_timeout` on this loop.
    private let deadlines: UpstreamDeadlines

    init(eventLoop: any EventLoop, clusters: [String: UpstreamCluster], timeout: TimeAmount) {
        self.eventLoop = eventLoop
        self.clusters = clusters
        self.deadlines = UpstreamDeadlines(timeout: timeout, eventLoop: eventLoop)
    }

    func send(_ request: RestRequest, done: @escaping (Result<RestResponse, RestFailure>) -> Void) {
        guard let cluster = clusters[request.upstream] else {
            done(.failure(.unavailable("upstream \"\(request.upstream)\" is not configured")))
            return
        }
        UpstreamCall(cluster: cluster, request: request, eventLoop: eventLoop, deadlines: deadlines, done: done).start()
    }
}
