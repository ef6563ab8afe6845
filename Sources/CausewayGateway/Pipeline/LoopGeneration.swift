import CausewayConfig
import CausewayHTTP
import CausewayUpstream
import NIOCore

/// Everything one event loop owns. Connections accepted on a loop only ever use that loop's
/// context, which is why nothing here is locked. A reload installs a new generation here (on
/// this loop); exchanges already dispatched keep the generation they started on.
final class LoopContext {
    let eventLoop: any EventLoop
    private(set) var current: LoopGeneration
    private(set) lazy var exchangeHandler = GatewayExchangeHandler(context: self)
    let onExchangeComplete: (@Sendable (CompletedExchange) -> Void)?

    init(eventLoop: any EventLoop, snapshot: RuntimeSnapshot, version: Int,
         onExchangeComplete: (@Sendable (CompletedExchange) -> Void)? = nil) {
        self.eventLoop = eventLoop
        self.onExchangeComplete = onExchangeComplete
        self.current = LoopGeneration(snapshot: snapshot, version: version, eventLoop: eventLoop, previous: nil)
    }

    /// Swaps in a new snapshot. Clusters of unchanged upstreams move over with their pools;
    /// the others drain (their connections close as their exchanges end).
    func install(_ snapshot: RuntimeSnapshot, version: Int) {
        eventLoop.preconditionInEventLoop()
        let previous = current
        current = LoopGeneration(snapshot: snapshot, version: version, eventLoop: eventLoop, previous: previous)
        for (name, cluster) in previous.clusters where current.clusters[name] !== cluster {
            cluster.retire()
        }
    }
}

/// One snapshot as one loop runs it: its routes with their filters and handlers, and the
/// upstream clusters (pools) they use. Also the end of the global filter chain: it routes.
final class LoopGeneration: RequestFiltersPassed {
    let snapshot: RuntimeSnapshot
    let version: Int
    let globalFilters: [any HTTPFilter]
    /// Indexed like `snapshot.router.routes`.
    let routes: [LoopRoute]
    let clusters: [String: UpstreamCluster]

    init(snapshot: RuntimeSnapshot, version: Int, eventLoop: any EventLoop, previous: LoopGeneration?) {
        self.snapshot = snapshot
        self.version = version
        let globalFilters = snapshot.globalFilters.map { $0.makeFilter(on: eventLoop) }
        self.globalFilters = globalFilters
        var clusters: [String: UpstreamCluster] = [:]
        let previousKeys = Dictionary(uniqueKeysWithValues: (previous?.snapshot.upstreams ?? []).map { ($0.name, $0.reuseKey) })
        for upstream in snapshot.upstreams {
            if let kept = previous?.clusters[upstream.name], previousKeys[upstream.name] == upstream.reuseKey {
                clusters[upstream.name] = kept
            } else {
                clusters[upstream.name] = UpstreamCluster(name: upstream.name, endpoints: upstream.endpoints,
                                                          protocol: upstream.protocol, pool: upstream.pool, eventLoop: eventLoop)
            }
        }
        self.clusters = clusters
        let drainTimeout = TimeAmount(snapshot.config.server.drainTimeout)
        self.routes = snapshot.plans.map {
            LoopRoute(plan: $0, globalFilters: globalFilters, clusters: clusters, drainTimeout: drainTimeout, eventLoop: eventLoop)
        }
    }

    /// The global filters passed: choose the route, then run its own filters.
    func requestFiltersPassed(_ exchange: Exchange) {
        switch snapshot.router.route(exchange.request) {
        case .notFound:
            exchange.fail(.routeNotFound)
        case .methodNotAllowed(let allow):
            exchange.fail(.methodNotAllowed(allow: allow))
        case .route(let route):
            routes[route.index].admit(exchange)
        }
    }
}

/// A route on one loop: the plan's filters made for this loop, and its handler's loop state
/// (the upstream cluster, or GraphQL's transport and document cache). Dispatch is by the
/// handler's kind, decided when the generation was built: no lookups per request.
final class LoopRoute: RequestFiltersPassed {
    enum Handler {
        /// The route's timeout lives in `deadlines` (nil: no timeout).
        case proxy(UpstreamCluster?, upstream: String, deadlines: UpstreamDeadlines?)
        case graphql(GraphQLRoute, GatewayRestTransport, GraphQLDocumentCache)
    }

    let route: CompiledRoute
    /// Global filters, then the route's own: the response phase runs all of them backwards.
    let filters: [any HTTPFilter]
    private let ownFiltersStart: Int
    let handler: Handler
    /// `sse.fanout`: GETs share one upstream event stream per URL (and identity).
    private let fanout: FanoutHub?
    /// The idle and ping timers of this route's WebSockets on this loop.
    private let websockets: WebSocketKeeper?

    /// For tunnels, which close themselves just before a drain ends.
    private let drainTimeout: TimeAmount

    init(plan: RoutePlan, globalFilters: [any HTTPFilter], clusters: [String: UpstreamCluster], drainTimeout: TimeAmount,
         eventLoop: any EventLoop) {
        route = plan.route
        self.drainTimeout = drainTimeout
        websockets = plan.route.config.websocket.map { WebSocketKeeper(config: $0, eventLoop: eventLoop) }
        filters = globalFilters + plan.filters.map { $0.makeFilter(on: eventLoop) }
        ownFiltersStart = globalFilters.count
        switch plan.handler {
        case .proxy(let upstream):
            let deadlines = plan.route.config.timeout.map { UpstreamDeadlines(timeout: TimeAmount($0), eventLoop: eventLoop) }
            handler = .proxy(clusters[upstream], upstream: upstream, deadlines: deadlines)
            fanout = plan.fanout.flatMap { group in
                clusters[upstream].map {
                    FanoutHub(route: plan.route, cluster: $0, config: plan.route.config.sse, group: group, deadlines: deadlines,
                              eventLoop: eventLoop)
                }
            }
        case .graphql(let graphql):
            let transport = GatewayRestTransport(eventLoop: eventLoop, clusters: clusters,
                                                 timeout: TimeAmount(graphql.config.upstreamTimeout))
            handler = .graphql(graphql, transport, GraphQLDocumentCache(capacity: graphql.config.cacheSize))
            fanout = nil
        }
    }

    /// The exchange was routed here: route attributes and limits, then the route's filters.
    func admit(_ exchange: Exchange) {
        exchange.attributes.route = route.name
        exchange.filters = filters
        exchange.maxRequestBodySize = route.config.maxBodySize
        if case .graphql = handler, exchange.errorFormat == .json { exchange.errorFormat = .graphql }
        if let limit = route.config.maxBodySize, let length = exchange.requestBodyLength, length > limit {
            exchange.fail(.bodyTooLarge)
            return
        }
        exchange.runRequestFilters(filters[ownFiltersStart...], then: self)
    }

    /// Every filter passed: the handler takes the exchange.
    func requestFiltersPassed(_ exchange: Exchange) {
        exchange.attributes.timings.dispatched = .now()
        switch handler {
        case .proxy(let cluster?, _, let deadlines):
            if WebSocketHandshake.isUpgrade(exchange.request) {
                // Refused unless the route says so: the upstream never sees an unwanted upgrade.
                guard let websocket = route.config.websocket, let keeper = websockets else {
                    exchange.fail(.badRequest("WebSocket upgrades are not enabled on this route"))
                    return
                }
                WebSocketTunnel(exchange: exchange, route: route, cluster: cluster, config: websocket, keeper: keeper,
                                drainTimeout: drainTimeout).start()
                return
            }
            if let transcoder = route.transcoder, !GRPC.isGRPC(exchange.request.headerFields[.contentType]) {
                TranscodeTask(exchange: exchange, route: route, cluster: cluster, deadlines: deadlines, transcoder: transcoder).start()
                return
            }
            if let fanout, exchange.request.method == .get {
                fanout.join(exchange)
                return
            }
            ProxyTask(exchange: exchange, route: route, cluster: cluster, deadlines: deadlines).start()
        case .proxy(nil, let upstream, _):
            exchange.fail(.upstreamOverloaded("upstream \"\(upstream)\" is not configured"))
        case .graphql(let graphql, let transport, let cache):
            GraphQLExchange(exchange: exchange, route: graphql, transport: transport, cache: cache).start()
        }
    }
}

/// What each downstream connection of a loop hands its exchanges to: the loop's current
/// generation, read once per exchange, so a reload takes effect for the next request.
final class GatewayExchangeHandler: ExchangeHandler {
    private unowned let context: LoopContext

    init(context: LoopContext) {
        self.context = context
    }

    func handle(_ exchange: Exchange) {
        let generation = context.current
        if let observer = context.onExchangeComplete {
            let version = generation.version
            exchange.onComplete { [unowned exchange] outcome in
                observer(CompletedExchange(exchange: exchange, outcome: outcome, configVersion: version))
            }
        }
        HopByHop.dropConnectionNamed(&exchange.request.headerFields)
        exchange.filters = generation.globalFilters
        exchange.runRequestFilters(generation.globalFilters[...], then: generation)
    }
}

/// One finished exchange, as completion observers see it (Sendable: it may leave the loop).
public struct CompletedExchange: Sendable {
    public var route: String?
    public var method: String
    public var path: String
    public var requestID: String
    public var consumer: String?
    public var kind: ExchangeOutcome.Kind
    public var status: Int?
    /// The gateway error's code when one answered or aborted the exchange.
    public var errorCode: String?
    public var requestBodyBytes: Int
    public var responseBodyBytes: Int
    /// From the complete request head to the end.
    public var duration: TimeAmount
    /// The config version the exchange ran on.
    public var configVersion: Int

    init(exchange: Exchange, outcome: ExchangeOutcome, configVersion: Int) {
        let timings = exchange.attributes.timings
        route = exchange.attributes.route
        method = exchange.request.method.rawValue
        path = exchange.request.path ?? "/"
        requestID = exchange.requestID
        consumer = exchange.attributes.consumer
        kind = outcome.kind
        status = outcome.status?.code
        errorCode = outcome.error?.code
        requestBodyBytes = outcome.requestBodyBytes
        responseBodyBytes = outcome.responseBodyBytes
        duration = (timings.completed ?? .now()) - timings.received
        self.configVersion = configVersion
    }
}

@available(*, unavailable)
extension LoopContext: Sendable {}

@available(*, unavailable)
extension LoopGeneration: Sendable {}

@available(*, unavailable)
extension LoopRoute: Sendable {}

@available(*, unavailable)
extension GatewayExchangeHandler: Sendable {}
