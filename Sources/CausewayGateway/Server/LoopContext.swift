import CausewayConfig
import CausewayHTTP
import CausewayUpstream
import NIOCore

/// Everything one event loop owns: its upstream clusters (and so their pools). Connections
/// accepted on a loop only ever use that loop's context, which is why nothing here is locked.
final class LoopContext {
    let eventLoop: any EventLoop
    let snapshot: RuntimeSnapshot
    /// Indexed like `snapshot.upstreams`.
    let clusters: [UpstreamCluster]
    /// By route name: how that GraphQL route's operations reach this loop's pools.
    let graphqlTransports: [String: GatewayRestTransport]
    /// By route name: this loop's parsed documents and persisted queries.
    let graphqlCaches: [String: GraphQLDocumentCache]
    private(set) lazy var exchangeHandler = GatewayExchangeHandler(context: self)

    init(eventLoop: any EventLoop, snapshot: RuntimeSnapshot) {
        self.eventLoop = eventLoop
        self.snapshot = snapshot
        let clusters = snapshot.upstreams.map {
            UpstreamCluster(name: $0.name, endpoints: $0.endpoints, protocol: $0.protocol, pool: $0.pool, eventLoop: eventLoop)
        }
        self.clusters = clusters
        let byName = Dictionary(uniqueKeysWithValues: clusters.map { ($0.name, $0) })
        self.graphqlTransports = snapshot.graphqlRoutes.mapValues {
            GatewayRestTransport(eventLoop: eventLoop, clusters: byName, timeout: TimeAmount($0.config.upstreamTimeout))
        }
        self.graphqlCaches = snapshot.graphqlRoutes.mapValues { GraphQLDocumentCache(capacity: $0.config.cacheSize) }
    }
}

/// The config compiled for running: immutable, shared by every loop.
public struct RuntimeSnapshot: Sendable {
    public struct Upstream: Sendable {
        public var name: String
        public var endpoints: [UpstreamEndpoint]
        public var `protocol`: UpstreamProtocol
        public var pool: PoolConfig
    }

    public let config: GatewayConfig
    public let router: Router
    public let upstreams: [Upstream]
    /// For each route (by index), the index of its upstream.
    let routeUpstream: [String: Int]
    let globalFilters: [any HTTPFilter]
    /// By route name, for routes that serve GraphQL: the loaded schema and its executor.
    let graphqlRoutes: [String: GraphQLRoute]
    /// By listener name, for TLS listeners. Boxes, so SIGHUP can swap in re-read certificates.
    public let tlsContexts: [String: TLSContextBox<TLSServerContext>]
    /// By upstream name, for TLS upstreams; boxed for the same reason.
    public let upstreamTLSContexts: [String: TLSContextBox<TLSClientContext>]

    /// Resolves endpoint host names once, here, so the request path never waits on DNS.
    public init(config: GatewayConfig) throws {
        self.config = config
        let globalFilters: [any HTTPFilter] = [RequestIDFilter()]
        self.globalFilters = globalFilters
        self.router = Router(routes: try config.routes.map { try CompiledRoute(config: $0, globalFilters: globalFilters) })
        let upstreamNames = Set(config.upstreams.map(\.name))
        var graphqlRoutes: [String: GraphQLRoute] = [:]
        var schemaErrors: [ConfigError] = []
        for route in config.routes {
            guard let graphql = route.graphql else { continue }
            do {
                graphqlRoutes[route.name] = try GraphQLRoute.load(graphql, upstreams: upstreamNames)
            } catch {
                schemaErrors += error.errors
            }
        }
        if !schemaErrors.isEmpty { throw ConfigErrors(schemaErrors) }
        self.graphqlRoutes = graphqlRoutes
        let clientTLS = try Self.loadUpstreamTLS(config.upstreams).mapValues { TLSContextBox($0) }
        self.upstreamTLSContexts = clientTLS
        self.upstreams = try config.upstreams.map { upstream in
            Upstream(name: upstream.name, endpoints: try upstream.endpoints.map { endpoint in
                UpstreamEndpoint(address: try SocketAddress.makeAddressResolvingHost(endpoint.address.host,
                                                                                    port: endpoint.address.port),
                                 label: endpoint.address.description, weight: endpoint.weight,
                                 tls: clientTLS[upstream.name].map {
                                     UpstreamTLS(context: $0, serverName: upstream.tls?.serverName ?? endpoint.address.host)
                                 })
            }, protocol: upstream.protocol == "http1" ? .http1 : .http2, pool: upstream.pool)
        }
        var index: [String: Int] = [:]
        for (offset, upstream) in config.upstreams.enumerated() { index[upstream.name] = offset }
        self.routeUpstream = index
        self.tlsContexts = try Self.loadTLS(config.listeners).mapValues { TLSContextBox($0) }
    }

    /// Loads every listener's certificates now, so unreadable or mismatched files are config
    /// errors (from `validate` and at start), reported where the path was written.
    static func loadTLS(_ listeners: [ListenerConfig]) throws(ConfigErrors) -> [String: TLSServerContext] {
        var contexts: [String: TLSServerContext] = [:]
        var errors: [ConfigError] = []
        for listener in listeners {
            guard let tls = listener.tls, !tls.certificates.isEmpty else { continue }
            let alpn = listener.protocols.compactMap { $0 == "h2" ? "h2" : $0 == "http1" ? "http/1.1" : nil }
            do {
                contexts[listener.name] = try TLSServerContext(
                    certificates: tls.certificates.map { .init(certPath: $0.cert, keyPath: $0.key) },
                    minimumVersion: tls.minVersion, alpnProtocols: alpn)
            } catch {
                let entry = tls.certificates[error.index]
                errors.append((error.isKey ? entry.keyLocation : entry.certLocation).error(error.message))
            }
        }
        if !errors.isEmpty { throw ConfigErrors(errors) }
        return contexts
    }
}

extension RuntimeSnapshot {
    /// Upstream TLS client contexts, one per TLS upstream; unreadable CA, certificate or key
    /// files are config errors at the key that names them.
    static func loadUpstreamTLS(_ upstreams: [UpstreamConfig]) throws(ConfigErrors) -> [String: TLSClientContext] {
        var contexts: [String: TLSClientContext] = [:]
        var errors: [ConfigError] = []
        for upstream in upstreams {
            guard let tls = upstream.tls else { continue }
            let options = TLSClientContext.Options(
                verify: tls.verify, caPath: tls.ca?.path, certPath: tls.cert?.path, keyPath: tls.key?.path,
                alpnProtocols: upstream.protocol == "h2" ? ["h2"] : ["http/1.1"])
            do {
                contexts[upstream.name] = try TLSClientContext(options)
            } catch {
                let file: UpstreamTLSConfig.File? = switch error {
                case .ca: tls.ca
                case .cert: tls.cert
                case .key: tls.key
                }
                errors.append(file?.location.error(error.description)
                    ?? ConfigError(file: "", line: 1, column: 1, path: "upstreams.\(upstream.name).tls", message: error.description))
            }
        }
        if !errors.isEmpty { throw ConfigErrors(errors) }
        return contexts
    }
}

/// Routes each exchange of one loop: request filters, router, then the route's handler.
final class GatewayExchangeHandler: ExchangeHandler {
    private unowned let context: LoopContext

    init(context: LoopContext) {
        self.context = context
    }

    func handle(_ exchange: Exchange) {
        let snapshot = context.snapshot
        exchange.filters = snapshot.globalFilters
        for filter in snapshot.globalFilters {
            if let error = filter.filterRequest(exchange) {
                exchange.fail(error)
                return
            }
        }
        switch snapshot.router.route(exchange.request) {
        case .notFound:
            exchange.fail(.routeNotFound)
        case .methodNotAllowed(let allow):
            exchange.fail(.methodNotAllowed(allow: allow))
        case .route(let route):
            run(route, exchange: exchange)
        }
    }

    private func run(_ route: CompiledRoute, exchange: Exchange) {
        exchange.routeName = route.name
        exchange.filters = route.filters
        exchange.maxRequestBodySize = route.config.maxBodySize
        if let limit = route.config.maxBodySize, let length = exchange.requestBodyLength, length > limit {
            exchange.fail(.bodyTooLarge)
            return
        }
        for filter in route.filters.dropFirst(context.snapshot.globalFilters.count) {
            if let error = filter.filterRequest(exchange) {
                exchange.fail(error)
                return
            }
        }
        if let graphql = context.snapshot.graphqlRoutes[route.name], let transport = context.graphqlTransports[route.name],
            let cache = context.graphqlCaches[route.name]
        {
            GraphQLExchange(exchange: exchange, route: graphql, transport: transport, cache: cache).start()
            return
        }
        guard let index = context.snapshot.routeUpstream[route.config.upstream] else {
            exchange.fail(.upstreamOverloaded("upstream \"\(route.config.upstream)\" is not configured"))
            return
        }
        ProxyTask(exchange: exchange, route: route, cluster: context.clusters[index]).start()
    }
}

@available(*, unavailable)
extension LoopContext: Sendable {}

@available(*, unavailable)
extension GatewayExchangeHandler: Sendable {}
