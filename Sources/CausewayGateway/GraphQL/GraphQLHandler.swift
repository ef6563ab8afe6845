import CausewayConfig
import CausewayGraphQL
import CausewayHTTP
import Foundation
import GraphQL
import HTTPTypes
import NIOCore

/// A route's GraphQL endpoint, per the GraphQL-over-HTTP specification: POST with a JSON body
/// (one operation, or an array of them when batching is on), or GET with `query`, `variables`
/// and `operationName` in the query string (queries only). Validated before anything runs;
/// executed by `GraphQLEngine` with this loop's pools as the transport.
struct GraphQLRoute: Sendable {
    let engine: GraphQLEngine
    let config: GraphQLRouteConfig
    let rules: [@Sendable (ValidationContext) -> Visitor]
    let limits: OperationLimits
    let persisted: PersistedQueries

    init(engine: GraphQLEngine, config: GraphQLRouteConfig) {
        self.engine = engine
        self.config = config
        rules = config.introspection ? specifiedRules : specifiedRules + [NoSchemaIntrospectionCustomRule]
        persisted = PersistedQueries(capacity: config.cacheSize)
        let configured = config.limits
        limits = OperationLimits(maxDepth: configured.maxDepth, maxAliases: configured.maxAliases,
                                 maxRootFields: configured.maxRootFields, maxComplexity: configured.maxComplexity,
                                 maxTokens: configured.maxTokens)
    }

    /// Loads the schema file; its problems are config errors at their line in that file.
    static func load(_ config: GraphQLRouteConfig, upstreams: Set<String>) throws(ConfigErrors) -> GraphQLRoute {
        guard let data = FileManager.default.contents(atPath: config.schema), let text = String(data: data, encoding: .utf8) else {
            throw ConfigErrors([config.schemaLocation.error("cannot read schema file \"\(config.schema)\"")])
        }
        do {
            let loaded = try SchemaLoader.load(text: text, file: config.schema, upstreams: upstreams)
            return GraphQLRoute(engine: GraphQLEngine(loaded), config: config)
        } catch {
            throw ConfigErrors(error.errors.map {
                ConfigError(file: $0.file, line: $0.line, column: $0.column, path: "", message: $0.message)
            })
        }
    }
}

/// One GraphQL request on its exchange: reads the body, runs each operation, answers.
final class GraphQLExchange: RequestBodyConsumer, ResponseProducer {
    private let exchange: Exchange
    private let route: GraphQLRoute
    private let transport: GatewayRestTransport
    private let cache: GraphQLDocumentCache
    private var body = ByteBuffer()
    private var cancelled = false
    private var task: Task<Void, Never>?

    init(exchange: Exchange, route: GraphQLRoute, transport: GatewayRestTransport, cache: GraphQLDocumentCache) {
        self.exchange = exchange
        self.route = route
        self.transport = transport
        self.cache = cache
    }

    func start() {
        exchange.responseProducer = self
        switch exchange.request.method {
        case .get, .post:
            exchange.attachRequestBodyConsumer(self)  // GET has an empty body: its end starts the work
        default:
            var error = GatewayError(status: .methodNotAllowed, code: "method_not_allowed",
                                     message: "GraphQL takes GET (queries) or POST")
            error.headers[.allow] = "GET, POST"
            exchange.fail(error)
        }
    }

    // MARK: RequestBodyConsumer

    func requestBodyPart(_ chunk: ByteBuffer) {
        var chunk = chunk
        body.writeBuffer(&chunk)
    }

    func requestBodyEnd(_ trailers: HTTPFields?) {
        let request = exchange.request
        let parsed: Result<GraphQLHTTPRequest, GatewayError> = request.method == .get
            ? GraphQLHTTPRequest.fromQuery(request.path ?? "")
            : GraphQLHTTPRequest.fromBody(body, contentType: request.headerFields[.contentType], batching: route.config)
        switch parsed {
        case .failure(let error):
            exchange.fail(error)
        case .success(let parsed):
            run(parsed, isGet: request.method == .get)
        }
    }

    // MARK: ResponseProducer

    func downstreamWritabilityChanged(_ writable: Bool) {}

    func cancel() {
        cancelled = true
        task?.cancel()
    }

    // MARK: Running

    private func run(_ request: GraphQLHTTPRequest, isGet: Bool) {
        let wantsGraphQLResponse = Self.acceptsGraphQLResponse(exchange.request.headerFields[.accept])
        var headers: [String: String] = [:]
        for field in exchange.request.headerFields { headers[field.name.canonicalName] = field.value }
        headers["x-request-id"] = exchange.requestID
        // Parsing, validation, limits and the caches happen here on the loop; only execution,
        // which waits on upstreams, runs in a task.
        let prepared = request.operations.map { Self.prepare($0, route: route, cache: cache, isGet: isGet) }
        let context = OperationContext(transport: transport, headers: headers, eventLoop: exchange.eventLoop)
        let loopBound = NIOLoopBound(self, eventLoop: exchange.eventLoop)
        task = Self.launch(prepared, route: route, context: context) { outcomes, calls in
            loopBound.value.respond(outcomes, batched: request.batched, graphQLResponse: wantsGraphQLResponse, calls: calls)
        }
    }

    /// An operation ready to execute, or the answer it already has.
    enum Prepared: Sendable {
        case ready(Document, operationName: String?, variables: [String: Map])
        case answered(GraphQLOutcome)
    }

    /// Runs the operations off the loop (GraphQLSwift's executor is async) and hands the
    /// outcomes back on the exchange's loop.
    private static func launch(_ prepared: [Prepared], route: GraphQLRoute, context: OperationContext,
                               eventLoopDone done: @escaping @Sendable ([GraphQLOutcome], Int) -> Void) -> Task<Void, Never> {
        let eventLoop = context.eventLoop
        return Task {
            var outcomes: [GraphQLOutcome] = []
            for operation in prepared {
                switch operation {
                case .answered(let outcome):
                    outcomes.append(outcome)
                case .ready(let document, let operationName, let variables):
                    let result = await route.engine.execute(document: document, variables: variables,
                                                            operationName: operationName, context: context)
                    // No data and no error at a field's path: execution never started (bad
                    // variables, unknown operation name), which is a request error.
                    if result.data == nil && result.errors.allSatisfy({ $0.path.elements.isEmpty }) {
                        outcomes.append(.requestError(result.errors))
                    } else {
                        outcomes.append(.executed(result))
                    }
                }
            }
            let calls = context.upstreamCalls
            eventLoop.execute { done(outcomes, calls) }
        }
    }

    /// The spec's stages before execution, each with its own answer: the query (or its
    /// persisted hash), parse, the method, validation, limits.
    static func prepare(_ operation: GraphQLHTTPRequest.Operation, route: GraphQLRoute, cache: GraphQLDocumentCache,
                        isGet: Bool) -> Prepared {
        var query = operation.query
        if let hash = operation.persistedHash {
            guard route.config.persistedQueries else {
                return .answered(.requestError(GraphQLError(message: "PersistedQueryNotSupported",
                                                            extensions: ["code": "PERSISTED_QUERY_NOT_SUPPORTED"])))
            }
            if let text = query {
                guard PersistedQueries.sha256(text) == hash.lowercased() else {
                    return .answered(.requestError(GraphQLError(message: "provided sha does not match query",
                                                                extensions: ["code": "PERSISTED_QUERY_HASH_MISMATCH"])))
                }
                route.persisted.persist(text, hash: hash.lowercased())
            } else if let text = route.persisted.query(hash: hash.lowercased()) {
                query = text
            } else {
                return .answered(.requestError(GraphQLError(message: "PersistedQueryNotFound",
                                                            extensions: ["code": "PERSISTED_QUERY_NOT_FOUND"])))
            }
        }
        guard let query else {
            return .answered(.requestError(GraphQLError(message: "the request has no query")))
        }
        let document: Document
        if let cached = cache.document(for: query) {
            document = cached
        } else {
            do {
                document = try parse(source: Source(body: query, name: "GraphQL request"))
            } catch let error as GraphQLError {
                return .answered(.requestError(error))
            } catch {
                return .answered(.requestError(GraphQLError(message: "\(error)")))
            }
            var errors = validate(schema: route.engine.loaded.schema, ast: document, rules: route.rules)
            if errors.isEmpty { errors = route.engine.fieldMergeErrors(document) }
            if !errors.isEmpty { return .answered(.requestError(errors)) }
            cache.store(document, for: query)  // only valid documents are worth keeping
        }
        if isGet, let kind = Self.operationKind(document, name: operation.operationName), kind != .query {
            return .answered(.methodNotAllowed)
        }
        if let error = route.engine.check(route.limits, document: document, operationName: operation.operationName,
                                          variables: operation.variables) {
            return .answered(.requestError(error))
        }
        return .ready(document, operationName: operation.operationName, variables: operation.variables)
    }

    static func operationKind(_ document: Document, name: String?) -> OperationType? {
        let operations = document.definitions.compactMap { $0 as? OperationDefinition }
        let chosen = name.map { name in operations.first { $0.name?.value == name } } ?? operations.first
        return chosen?.operation
    }

    static func acceptsGraphQLResponse(_ accept: String?) -> Bool {
        accept?.lowercased().contains("application/graphql-response+json") ?? false
    }

    private func respond(_ outcomes: [GraphQLOutcome], batched: Bool, graphQLResponse: Bool, calls: Int) {
        guard !cancelled else { return }
        if outcomes.contains(where: { if case .methodNotAllowed = $0 { true } else { false } }) {
            var error = GatewayError(status: .methodNotAllowed, code: "method_not_allowed",
                                     message: "only queries may use GET; send mutations with POST")
            error.headers[.allow] = "POST"
            exchange.fail(error)
            return
        }
        // application/graphql-response+json: a request that could not run is a 4xx; with
        // application/json every well-formed request is a 200 (GraphQL-over-HTTP §6.4).
        var status = HTTPResponse.Status.ok
        if graphQLResponse && !batched, case .requestError? = outcomes.first { status = .badRequest }
        var response = HTTPResponse(status: status)
        response.headerFields[.contentType] = graphQLResponse
            ? "application/graphql-response+json; charset=utf-8" : "application/json; charset=utf-8"
        if route.config.debug { response.headerFields[HTTPField.Name("x-causeway-upstream-calls")!] = String(calls) }
        let texts = outcomes.map { $0.json }
        let text = batched ? "[" + texts.joined(separator: ",") + "]" : texts[0]
        exchange.respond(response, body: ByteBuffer(string: text + "\n"))
    }
}

enum GraphQLOutcome: Sendable {
    case requestError([GraphQLError])
    case methodNotAllowed
    case executed(GraphQLResult)

    static func requestError(_ error: GraphQLError) -> Self { .requestError([error]) }

    /// The response body. `data` is written straight from the result's `Map` (the Codable
    /// encoder cost a twentieth of a request); errors, few and small, go through GraphQLSwift's.
    var json: String {
        let errors: [GraphQLError]
        var data: String?
        switch self {
        case .requestError(let requestErrors):
            errors = requestErrors
        case .methodNotAllowed:
            errors = [GraphQLError(message: "method not allowed")]
        case .executed(let result):
            errors = result.errors
            // Execution that nulled everything still reports "data": null (spec §7.1.2); only
            // requests that never ran have no data entry.
            data = (try? result.data?.jsonText()) ?? "null"
        }
        var parts: [String] = []
        if let data { parts.append(#""data":"# + data) }
        if !errors.isEmpty {
            let encoder = GraphQLJSONEncoder()
            encoder.outputFormatting = [.withoutEscapingSlashes]
            guard let encoded = try? encoder.encode(errors) else { return #"{"errors":[{"message":"the errors could not be encoded"}]}"# }
            var text = String(decoding: encoded, as: UTF8.self)
            // Errors that belong to no field carry no path (as graphql-js words them).
            if case .requestError = self { text = text.replacingOccurrences(of: #","path":[]"#, with: "") }
            parts.append(#""errors":"# + text)
        }
        return "{" + parts.joined(separator: ",") + "}"
    }
}
