import CausewayConfig
import CausewayHTTP

/// One route compiled for running: how it matches, the filters it adds (as factories, so each
/// loop makes its own), and which kind of handler answers it. Immutable, in the snapshot.
///
/// Adding a handler kind (websocket, grpc, aggregate) is a case here, its loop-side state in
/// `LoopRoute.Handler`, and a branch in `LoopRoute.requestFiltersPassed`.
struct RoutePlan: Sendable {
    enum Handler: Sendable {
        /// Proxy to the named upstream.
        case proxy(upstream: String)
        /// Serve GraphQL from the route's schema, fanning out to its upstreams.
        case graphql(GraphQLRoute)
    }

    let route: CompiledRoute
    /// The route's own request filters, run after the global ones; the response phase runs
    /// all of them backwards.
    let filters: [any FilterFactory]
    let handler: Handler
    /// `sse.fanout`: which loop owns which stream, shared by every loop of this generation.
    let fanout: FanoutGroup?

    init(route: CompiledRoute, upstreams: Set<String>) throws(ConfigErrors) {
        self.route = route
        let config = route.config
        var filters: [any FilterFactory] = []
        // Before the header rewrite in the list, so after it on the way out: compression sees
        // the response head as the route left it (a Cache-Control: no-transform set there counts).
        if let compression = config.compression, compression.enabled {
            filters.append(CompressionFilter(config: compression, maxBodySize: config.maxBodySize))
        }
        if !config.requestHeaders.isEmpty || !config.responseHeaders.isEmpty {
            filters.append(HeaderRewriteFilter(request: config.requestHeaders, response: config.responseHeaders))
        }
        // Last, so first on the way out: the rest see a gRPC-Web response as the client will.
        if config.grpc?.web == true { filters.append(GRPCWebFilter()) }
        self.filters = filters
        if let graphql = config.graphql {
            handler = .graphql(try GraphQLRoute.load(graphql, upstreams: upstreams))
            fanout = nil
        } else {
            handler = .proxy(upstream: config.upstream)
            fanout = config.sse.fanout ? FanoutGroup() : nil
        }
    }
}
