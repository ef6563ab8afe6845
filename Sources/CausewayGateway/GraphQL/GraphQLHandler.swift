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
    let prescan: DocumentPrescan
    let persisted: PersistedQueries

    init(engine: GraphQLEngine, config: GraphQLRouteConfig) {
        self.engine = engine
        self.config = config
        rules = config.introspection ? specifiedRules : specifiedRules + [NoSchemaIntrospectionCustomRule]
        persisted = PersistedQueries(capacity: config.cacheSize, maxBytes: PersistedQueries.defaultMaxBytes)
        let configured = config.limits
        prescan = DocumentPrescan(maxTokens: configured.maxTokens, maxDepth: configured.maxDepth,
                                  maxExpandedFields: configured.maxComplexity, maxBytes: configured.maxDocumentSize)
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

/// One GraphQL request on its exchange: reads the body, runs each operation on the exchange's
/// loop (`OperationRun`, whose upstream calls go through this loop's pools), answers.
/// GraphQLSwift's executor, which is async, is only reached for introspection and for
/// operations that cannot run; its result comes back to the loop.
final class GraphQLExchange: RequestBodyConsumer, ResponseProducer {
    private let exchange: Exchange
    private let route: GraphQLRoute
    private let transport: GatewayRestTransport
    private let cache: GraphQLDocumentCache
    private var body = ByteBuffer()
    private var cancelled = false
    private var task: Task<Void, Never>?
    // The request being run.
    private var prepared: [Prepared] = []
    private var outcomes: [GraphQLOutcome] = []
    private var headers: [String: String] = [:]
    private var upstreamCalls = 0
    private var batched = false
    private var wantsGraphQLResponse = false

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
        wantsGraphQLResponse = Self.acceptsGraphQLResponse(exchange.request.headerFields[.accept])
        batched = request.batched
        for field in exchange.request.headerFields { headers[field.name.canonicalName] = field.value }
        headers["x-request-id"] = exchange.requestID
        prepare(request.operations, from: 0, isGet: isGet)
    }

    /// Prepares the operations in order, then runs them. A document this loop has not seen is
    /// parsed and validated here when it is small, else on the `DocumentChecker`'s threads:
    /// GraphQLSwift's validation costs about 18 µs per field, so a 10,000-token document would
    /// hold every connection on this loop for ~90 ms.
    private func prepare(_ operations: [GraphQLHTTPRequest.Operation], from start: Int, isGet: Bool) {
        for index in start..<operations.count {
            let operation = operations[index]
            switch Self.lookup(operation, route: route, cache: cache) {
            case .answered(let answer):
                prepared.append(answer)
            case .cached(let known, let query, let toPersist):
                prepared.append(Self.finish(operation, cached: known, query: query, toPersist: toPersist, route: route, isGet: isGet))
            case .miss(let query, let toPersist) where query.utf8.count <= DocumentChecker.inlineBytes:
                let check = route.engine.parseAndValidate(query, prescan: route.prescan, rules: route.rules)
                prepared.append(Self.admit(DocumentChecker.Checked(check: check), query: query, toPersist: toPersist, operation,
                                           route: route, cache: cache, isGet: isGet))
            case .miss(let query, let toPersist):
                guard let checked = DocumentChecker.shared.check(query, operation: operation, route: route, on: exchange.eventLoop) else {
                    exchange.fail(DocumentChecker.busy)
                    return
                }
                let loopBound = NIOLoopBound(self, eventLoop: exchange.eventLoop)
                checked.whenComplete { result in
                    let exchange = loopBound.value
                    guard !exchange.cancelled else { return }
                    guard case .success(let checked) = result else { return exchange.exchange.fail(DocumentChecker.busy) }
                    exchange.prepared.append(Self.admit(checked, query: query, toPersist: toPersist, operation,
                                                        route: exchange.route, cache: exchange.cache, isGet: isGet))
                    exchange.prepare(operations, from: index + 1, isGet: isGet)
                }
                return
            }
        }
        runOperation(0)
    }

    /// An operation ready to execute (its cache entry holds its plans), or the answer it
    /// already has.
    enum Prepared {
        case ready(CachedDocument, operationName: String?, variables: [String: Map])
        case answered(GraphQLOutcome)
    }

    /// Runs operation `index`, then the next, then answers.
    private func runOperation(_ index: Int) {
        guard !cancelled else { return }
        guard index < prepared.count else { return respond() }
        let cached: CachedDocument
        let operationName: String?
        let provided: [String: Map]
        switch prepared[index] {
        case .answered(let outcome):
            outcomes.append(outcome)
            return runOperation(index + 1)
        case .ready(let document, let name, let variables):
            (cached, operationName, provided) = (document, name, variables)
        }
        let engine = route.engine
        let document = cached.document
        switch engine.prepare(document, operationName: operationName, variables: provided, plans: &cached.plans) {
        case .requestErrors(let errors):
            outcomes.append(.requestError(errors))
            runOperation(index + 1)
        case .graphQLSwift:
            onLoop(after: { await engine.executeWithGraphQLSwift(document, operationName: operationName, variables: provided) }) {
                exchange, result in
                // No data and no error at a field's path: execution never started (an unknown
                // operation name, say), which is a request error.
                if result.data == nil && result.errors.allSatisfy({ $0.path.elements.isEmpty }) {
                    exchange.outcomes.append(.requestError(result.errors))
                } else {
                    exchange.outcomes.append(.executed(result.dataJSON, result.errors))
                }
                exchange.runOperation(index + 1)
            }
        case .plan(let plan, let variables):
            guard !plan.introspection.isEmpty else { return execute(plan, variables: variables, introspected: nil, index: index) }
            let introspection = engine.introspectionDocument(document, plan: plan)
            let name = plan.operationName
            onLoop(after: { await engine.executeWithGraphQLSwift(introspection, operationName: name, variables: variables) }) {
                exchange, result in
                exchange.execute(plan, variables: variables, introspected: result, index: index)
            }
        }
    }

    private func execute(_ plan: OperationPlan, variables: [String: Map], introspected: GraphQLResult?, index: Int) {
        var values: [String: Map] = [:]
        if case .dictionary(let fields)? = introspected?.data { values = Dictionary(uniqueKeysWithValues: fields.map { ($0, $1) }) }
        let run = OperationRun(plan: plan, engine: route.engine, variables: variables, headers: headers, transport: transport,
                               introspected: values)
        run.start { [self] data, errors in
            upstreamCalls += run.upstreamCalls
            outcomes.append(.executed(data, (introspected?.errors ?? []) + errors))
            runOperation(index + 1)
        }
    }

    /// Runs `work` (GraphQLSwift's async executor) in a task and continues with its result on
    /// the exchange's loop.
    private func onLoop(after work: @escaping @Sendable () async -> GraphQLResult,
                        then next: @escaping (GraphQLExchange, GraphQLResult) -> Void) {
        let eventLoop = exchange.eventLoop
        let continuation = NIOLoopBound((self, next), eventLoop: eventLoop)
        task = Task {
            let result = await work()
            eventLoop.execute { continuation.value.1(continuation.value.0, result) }
        }
    }

    /// Where an operation's document comes from: an answer already (a persisted-query error),
    /// this loop's cache, or text that must be parsed and validated first.
    enum Lookup {
        case answered(Prepared)
        case cached(CachedDocument, query: String, toPersist: String?)
        case miss(query: String, toPersist: String?)
    }

    /// The spec's stages before execution, each with its own answer: the query (or its
    /// persisted hash), then the cache.
    static func lookup(_ operation: GraphQLHTTPRequest.Operation, route: GraphQLRoute, cache: GraphQLDocumentCache) -> Lookup {
        var query = operation.query
        // A query sent with its hash is kept only once it has parsed and validated.
        var toPersist: String?
        if let hash = operation.persistedHash {
            guard route.config.persistedQueries else {
                return .answered(.answered(.requestError(GraphQLError(message: "PersistedQueryNotSupported",
                                                                      extensions: ["code": "PERSISTED_QUERY_NOT_SUPPORTED"]))))
            }
            // A SHA-256 is 64 hex digits; anything else is never looked up, hashed against or kept.
            guard hash.utf8.count == 64, hash.utf8.allSatisfy({ ($0 | 0x20) &- UInt8(ascii: "a") < 6 || $0 &- UInt8(ascii: "0") < 10 }) else {
                return .answered(.answered(.requestError(GraphQLError(message: "persistedQuery.sha256Hash must be 64 hexadecimal digits",
                                                                      extensions: ["code": "PERSISTED_QUERY_HASH_MISMATCH"]))))
            }
            if let text = query {
                // Too large to keep is too large to hash; the rest of the prescan runs on a miss.
                if let refusal = route.prescan.sizeRefusal(text.utf8.count) { return .answered(.answered(.requestError(refusal.error))) }
                guard PersistedQueries.sha256(text) == hash.lowercased() else {
                    return .answered(.answered(.requestError(GraphQLError(message: "provided sha does not match query",
                                                                          extensions: ["code": "PERSISTED_QUERY_HASH_MISMATCH"]))))
                }
                toPersist = hash.lowercased()
            } else if let text = route.persisted.query(hash: hash.lowercased()) {
                query = text
            } else {
                return .answered(.answered(.requestError(GraphQLError(message: "PersistedQueryNotFound",
                                                                      extensions: ["code": "PERSISTED_QUERY_NOT_FOUND"]))))
            }
        }
        guard let query else {
            return .answered(.answered(.requestError(GraphQLError(message: "the request has no query"))))
        }
        if let known = cache.document(for: query) { return .cached(known, query: query, toPersist: toPersist) }
        return .miss(query: query, toPersist: toPersist)
    }

    /// A checked document into this loop's cache (only valid ones are worth keeping), then
    /// the operation's own checks.
    static func admit(_ checked: DocumentChecker.Checked, query: String, toPersist: String?,
                      _ operation: GraphQLHTTPRequest.Operation, route: GraphQLRoute, cache: GraphQLDocumentCache,
                      isGet: Bool) -> Prepared {
        switch checked.check {
        case .refused(let errors):
            return .answered(.requestError(errors))
        case .valid(let document):
            let cached = CachedDocument(document)
            cached.plans = checked.plans
            cache.store(cached, for: query)
            return finish(operation, cached: cached, query: query, toPersist: toPersist, route: route, isGet: isGet,
                          measured: checked.measured)
        }
    }

    /// The method (queries only over GET) and the limits.
    /// `measured`: the limits' verdict when the document checker already measured it.
    static func finish(_ operation: GraphQLHTTPRequest.Operation, cached: CachedDocument, query: String, toPersist: String?,
                       route: GraphQLRoute, isGet: Bool, measured: GraphQLError?? = nil) -> Prepared {
        if let toPersist { route.persisted.persist(query, hash: toPersist) }
        let document = cached.document
        let chosen = GraphQLEngine.operation(in: document, named: operation.operationName)
        if isGet, let kind = chosen?.operation, kind != .query {
            return .answered(.methodNotAllowed)
        }
        // An operation without variables measures the same every time: once within limits, it
        // stays within them.
        let limitsKey = operation.operationName ?? ""
        if !cached.withinLimits.contains(limitsKey) {
            let verdict = measured ?? route.engine.check(route.limits, document: document, operationName: operation.operationName,
                                                         variables: operation.variables)
            if let error = verdict {
                return .answered(.requestError(error))
            }
            if chosen?.variableDefinitions.isEmpty == true { cached.withinLimits.insert(limitsKey) }
        }
        return .ready(cached, operationName: operation.operationName, variables: operation.variables)
    }

    static func acceptsGraphQLResponse(_ accept: String?) -> Bool {
        accept?.lowercased().contains("application/graphql-response+json") ?? false
    }

    private func respond() {
        let graphQLResponse = wantsGraphQLResponse
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
        if route.config.debug { response.headerFields[HTTPField.Name("x-causeway-upstream-calls")!] = String(upstreamCalls) }
        var body = ByteBuffer()
        body.reserveCapacity(outcomes.reduce(16) { $0 + $1.sizeHint })
        if batched { body.writeStaticString("[") }
        for (index, outcome) in outcomes.enumerated() {
            if index > 0 { body.writeStaticString(",") }
            outcome.write(into: &body)
        }
        if batched { body.writeStaticString("]") }
        body.writeStaticString("\n")
        exchange.respond(response, body: body)
    }
}

enum GraphQLOutcome {
    case requestError([GraphQLError])
    case methodNotAllowed
    /// `data` as JSON (`null` when execution nulled it: it is still reported, spec §7.1.2).
    case executed([UInt8], [GraphQLError])

    static func requestError(_ error: GraphQLError) -> Self { .requestError([error]) }

    var sizeHint: Int {
        if case .executed(let data, _) = self { data.count + 64 } else { 256 }
    }

    /// The response object: `data` as the run wrote it, then the errors (few and small)
    /// through GraphQLSwift's encoder. Requests that never ran have no `data` entry.
    func write(into body: inout ByteBuffer) {
        let errors: [GraphQLError]
        body.writeStaticString("{")
        switch self {
        case .requestError(let requestErrors):
            errors = requestErrors
        case .methodNotAllowed:
            errors = [GraphQLError(message: "method not allowed")]
        case .executed(let data, let executionErrors):
            errors = executionErrors
            body.writeStaticString(#""data":"#)
            body.writeBytes(data)
            if !errors.isEmpty { body.writeStaticString(",") }
        }
        if !errors.isEmpty {
            let encoder = GraphQLJSONEncoder()
            encoder.outputFormatting = [.withoutEscapingSlashes]
            var text = (try? encoder.encode(errors)).map { String(decoding: $0, as: UTF8.self) }
                ?? #"[{"message":"the errors could not be encoded"}]"#
            // Errors that belong to no field carry no path (as graphql-js words them).
            if case .requestError = self { text = text.replacingOccurrences(of: #","path":[]"#, with: "") }
            body.writeStaticString(#""errors":"#)
            body.writeString(text)
        }
        body.writeStaticString("}")
    }
}
