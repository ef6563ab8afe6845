import CausewayConfig
import CausewayHTTP
import NIOCore
import NIOPosix

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

    init(route: CompiledRoute, upstreams: Set<String>, policies: PolicyRuntime = .init()) throws(ConfigErrors) {
        self.route = route
        let config = route.config
        var filters: [any FilterFactory] = []
        // Edge policies first, cheapest refusal first: who may connect, which origins may read
        // (a preflight is answered before credentials are asked for), who the caller is, how often.
        if let access = config.access { filters.append(AccessFilter(config: access, client: policies.client)) }
        if let cors = config.cors {
            let web = config.grpc?.web == true
            filters.append(CORSFilter(config: cors,
                                      extraAllowHeaders: web ? ["content-type", "x-grpc-web", "x-user-agent", "grpc-timeout"] : [],
                                      extraExposeHeaders: web ? ["grpc-status", "grpc-message"] : []))
        }
        if let auth = config.auth {
            filters.append(AuthFilter(providers: auth.providers.compactMap { policies.providers[$0] }, optional: auth.optional,
                                      authorize: config.authorize))
        }
        if !config.rateLimits.isEmpty {
            filters.append(RateLimitFilter(limiters: config.rateLimits.compactMap { policies.rateLimiters[$0] },
                                           redisLimiters: config.rateLimits.compactMap { policies.redisLimiters[$0] },
                                           redis: policies.redis, redisAddress: policies.redisAddress, client: policies.client))
        }
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

/// What route plans need of the config's edge policies, built once per snapshot: loaded
/// identity providers, rate limiters (kept over a reload while their policy is unchanged, so
/// a reload does not hand every client a fresh quota), and how the client's address is found.
struct PolicyRuntime: Sendable {
    var providers: [String: any AuthProvider] = [:]
    var rateLimiters: [String: RateLimiter] = [:]
    var redisLimiters: [String: RedisRateLimiter] = [:]
    var redis: RedisClients?
    var redisAddress: SocketAddress?
    var client = ClientAddress(trusted: [])

    init() {}

    /// JWT key sets by provider, with their fetchers (URL sets): kept over a reload that does
    /// not change where they come from, so the last good set survives it.
    var keySets: [String: (source: JWTKeySetSource, fetcher: JWKSFetcher?, origin: String)] = [:]

    init(config: GatewayConfig, previous: PolicyRuntime?) throws(ConfigErrors) {
        client = ClientAddress(trusted: config.server.trustedProxies)
        var errors: [ConfigError] = []
        for provider in config.auth.jwt {
            let origin = provider.jwksFile.map { "file:\($0)" } ?? "url:\(provider.jwksURL ?? "")|\(provider.refresh)"
            if let kept = previous?.keySets[provider.name], kept.origin == origin, provider.jwksURL != nil {
                keySets[provider.name] = kept
            } else if let file = provider.jwksFile {
                guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                    errors.append(provider.jwksLocation.error("cannot read the JWK set \"\(file)\""))
                    continue
                }
                do {
                    let set = try JWTKeySet.parse(Array(text.utf8))
                    if set.keys.isEmpty {
                        errors.append(provider.jwksLocation.error("\(file): no usable key (\(set.problems.joined(separator: "; ")))"))
                        continue
                    }
                    keySets[provider.name] = (JWTKeySetSource(set), nil, origin)
                } catch {
                    errors.append(provider.jwksLocation.error("\(file): \(error.description)"))
                    continue
                }
            } else if let url = provider.jwksURL {
                do {
                    let fetcher = try JWKSFetcher(name: provider.name, url: url, refresh: provider.refresh,
                                                  eventLoop: MultiThreadedEventLoopGroup.singleton.next())
                    let source = JWTKeySetSource(JWTKeySet(keys: [], problems: []), onUnknownKid: { _ in fetcher.unknownKid() })
                    source.setStart { [weak source] in if let source { fetcher.start(source) } }
                    keySets[provider.name] = (source, fetcher, origin)
                } catch {
                    errors.append(provider.jwksLocation.error("\(url): \(error)"))
                    continue
                }
            }
            if let keys = keySets[provider.name]?.source {
                providers[provider.name] = JWTAuth(config: provider, keys: keys)
            }
        }
        for provider in config.auth.apiKeys {
            do {
                providers[provider.name] = APIKeyAuth(name: provider.name, sources: provider.from, keys: try provider.loadKeys())
            } catch {
                errors.append(error)
            }
        }
        for provider in config.auth.introspection {
            do {
                providers[provider.name] = try IntrospectionAuth(config: provider)
            } catch {
                errors.append(provider.urlLocation.error("\(provider.url): \(error)"))
            }
        }
        if !errors.isEmpty { throw ConfigErrors(errors) }
        if let redis = config.redis {
            do {
                redisAddress = try SocketAddress.makeAddressResolvingHost(redis.address.host, port: redis.address.port)
            } catch {
                throw ConfigErrors([ConfigError(file: "", line: 1, column: 1, path: "redis.address", message: "cannot resolve \(redis.address): \(error)")])
            }
            // Connections are per loop and kept over a reload that leaves `redis` as it was.
            if let kept = previous?.redis, kept.config == redis {
                self.redis = kept
            } else {
                previous?.redis?.closeAll()
                self.redis = RedisClients(config: redis)
            }
        }
        for policy in config.rateLimits where policy.scope == "redis" {
            redisLimiters[policy.name] = RedisRateLimiter(policy: policy)
        }
        for policy in config.rateLimits where policy.scope == "local" {
            if let kept = previous?.rateLimiters[policy.name], kept.policy == policy {
                rateLimiters[policy.name] = kept
            } else {
                rateLimiters[policy.name] = RateLimiter(policy: policy)
            }
        }
    }
}
