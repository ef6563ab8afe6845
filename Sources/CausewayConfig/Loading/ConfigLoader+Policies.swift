import Yams

/// Edge policies: `auth`, `rate_limits`, `redis`, `server.limits`, `server.trusted_proxies`, and
/// per route `auth`, `authorize`, `rate_limit`, `cors`, `access`.
extension GatewayConfigReader {
    /// The names routes may refer to, read before the routes.
    struct PolicyNames {
        var providers: [String] = []
        var rateLimits: [String] = []
    }

    func readAuth(_ node: Node, _ path: String) -> AuthConfig {
        var auth = AuthConfig()
        guard let fields = reader.mapping(node, path, allowed: ["jwt", "api_keys", "introspection"]) else { return auth }
        if let (n, p) = fields["introspection"], let entries = reader.entries(n, p) {
            for (name, _, value) in entries {
                let entryPath = reader.join(p, name)
                guard let provider = reader.mapping(value, entryPath, allowed: ["url", "client_id", "client_secret", "cache_ttl", "from"]),
                    let url = required(provider, "url", value, { reader.string($0, $1) }), let (urlNode, urlPath) = provider["url"]
                else { continue }
                if !(url.hasPrefix("http://") || url.hasPrefix("https://")) { reader.fail(urlNode, urlPath, "expected an http:// or https:// URL") }
                var config = IntrospectionProviderConfig(name: name, url: url, urlLocation: reader.location(urlNode, urlPath))
                if let (n, p) = provider["client_id"], let v = reader.string(n, p) { config.clientID = v }
                if let (n, p) = provider["client_secret"], let v = reader.string(n, p) { config.clientSecret = v }
                if let (n, p) = provider["cache_ttl"], let v = reader.duration(n, p) { config.cacheTTL = v }
                if let (n, p) = provider["from"], let sources = readSources(n, p) { config.from = sources }
                auth.introspection.append(config)
            }
        }
        if let (n, p) = fields["jwt"], let entries = reader.entries(n, p) {
            for (name, _, value) in entries {
                if let provider = readJWT(name, value, reader.join(p, name)) { auth.jwt.append(provider) }
            }
        }
        if let (n, p) = fields["api_keys"], let entries = reader.entries(n, p) {
            for (name, _, value) in entries {
                let entryPath = reader.join(p, name)
                guard let provider = reader.mapping(value, entryPath, allowed: ["from", "keys_file"]) else { continue }
                guard let file = required(provider, "keys_file", value, { reader.string($0, $1) }),
                    let (fileNode, filePath) = provider["keys_file"]
                else { continue }
                var keys = APIKeyProvider(name: name, keysFile: file, keysLocation: reader.location(fileNode, filePath))
                if let (n, p) = provider["from"], let sources = readSources(n, p) { keys.from = sources }
                auth.apiKeys.append(keys)
            }
        }
        return auth
    }

    private func readJWT(_ name: String, _ node: Node, _ path: String) -> JWTProviderConfig? {
        let allowed = ["issuer", "audiences", "algorithms", "jwks", "leeway", "from", "forward_claims"]
        guard let fields = reader.mapping(node, path, allowed: allowed),
            let (jwksNode, jwksPath) = fields["jwks"] ?? { reader.fail(node, reader.join(path, "jwks"), "required key is missing"); return nil }(),
            let jwks = reader.mapping(jwksNode, jwksPath, allowed: ["file", "url", "refresh"])
        else { return nil }
        var provider = JWTProviderConfig(name: name, jwksLocation: reader.location(jwksNode, jwksPath))
        if let (n, p) = jwks["file"], let file = reader.string(n, p) {
            provider.jwksFile = file
            provider.jwksLocation = reader.location(n, p)
        }
        if let (n, p) = jwks["url"], let url = reader.string(n, p) {
            if !(url.hasPrefix("http://") || url.hasPrefix("https://")) { reader.fail(n, p, "expected an http:// or https:// URL") }
            provider.jwksURL = url
            provider.jwksLocation = reader.location(n, p)
        }
        if (provider.jwksFile == nil) == (provider.jwksURL == nil) {
            reader.fail(jwksNode, jwksPath, "exactly one of file and url is required")
        }
        if let (n, p) = jwks["refresh"], let value = reader.duration(n, p) {
            if value < .seconds(1) { reader.fail(n, p, "must be at least 1s") } else { provider.refresh = value }
        }
        if let (n, p) = fields["issuer"], let value = reader.string(n, p) { provider.issuer = value }
        if let (n, p) = fields["audiences"], let value = reader.stringList(n, p) { provider.audiences = value }
        if let (n, p) = fields["algorithms"], let list = reader.stringList(n, p) {
            let known = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256", "HS384", "HS512"]
            for (index, name) in list.enumerated() where !known.contains(name) {
                reader.fail(n, "\(p)[\(index)]", name.lowercased() == "none"
                    ? "\"none\" is never accepted: a token must be signed"
                    : "unknown algorithm \"\(name)\", expected one of: \(known.joined(separator: ", "))\(didYouMean(name, in: known))")
            }
            if list.isEmpty { reader.fail(n, p, "at least one algorithm is required") }
            provider.algorithms = list
        }
        if let (n, p) = fields["leeway"], let value = reader.duration(n, p) { provider.leeway = value }
        if let (n, p) = fields["from"], let sources = readSources(n, p) { provider.from = sources }
        if let (n, p) = fields["forward_claims"], let entries = reader.entries(n, p) {
            for (claim, _, value) in entries {
                if let header = reader.string(value, reader.join(p, claim)) { provider.forwardClaims.append((claim, header.lowercased())) }
            }
        }
        return provider
    }

    private func readSources(_ node: Node, _ path: String) -> [CredentialSource]? {
        guard let items = reader.sequence(node, path) else { return nil }
        var sources: [CredentialSource] = []
        for (item, itemPath) in items {
            guard let text = reader.string(item, itemPath) else { continue }
            guard let source = CredentialSource(text) else {
                reader.fail(item, itemPath, "expected header:NAME, query:NAME or cookie:NAME, found \"\(text)\"")
                continue
            }
            sources.append(source)
        }
        if sources.isEmpty { reader.fail(node, path, "at least one source is required") }
        return sources
    }

    func readRedis(_ node: Node, _ path: String) -> RedisConfig? {
        guard let fields = reader.mapping(node, path, allowed: ["address", "password", "pool_size", "timeout"]),
            let address = required(fields, "address", node, { reader.address($0, $1) })
        else { return nil }
        var redis = RedisConfig(address: address)
        if let (n, p) = fields["password"] { redis.password = reader.optionalString(n, p) }
        if let (n, p) = fields["pool_size"], let value = reader.int(n, p, range: 1...64) { redis.poolSize = value }
        if let (n, p) = fields["timeout"], let value = reader.duration(n, p) {
            if value < .milliseconds(1) || value > .seconds(60) { reader.fail(n, p, "must be between 1ms and 60s") } else { redis.timeout = value }
        }
        return redis
    }

    func readRateLimits(_ node: Node, _ path: String, hasRedis: Bool) -> [RateLimitPolicy] {
        guard let entries = reader.entries(node, path) else { return [] }
        var policies: [RateLimitPolicy] = []
        for (name, _, value) in entries {
            let entryPath = reader.join(path, name)
            let allowed = ["algorithm", "requests", "window", "burst", "key", "scope", "on_redis_error"]
            guard let fields = reader.mapping(value, entryPath, allowed: allowed),
                let requests = required(fields, "requests", value, { reader.int($0, $1, range: 1...1_000_000_000) }),
                let window = required(fields, "window", value, { reader.duration($0, $1) })
            else { continue }
            var policy = RateLimitPolicy(name: name, requests: requests, window: window)
            if window < .milliseconds(1) || window > .seconds(86_400 * 31) {
                reader.fail(fields["window"]?.node, reader.join(entryPath, "window"), "must be between 1ms and 31 days")
            }
            if let (n, p) = fields["algorithm"], let text = reader.oneOf(n, p, ["token_bucket", "sliding_window", "fixed_window"]) {
                policy.algorithm = RateLimitPolicy.Algorithm(rawValue: text)!
            }
            if let (n, p) = fields["burst"], let burst = reader.int(n, p, range: 1...1_000_000_000) {
                if policy.algorithm != .tokenBucket { reader.fail(n, p, "burst applies to token_bucket only") }
                policy.burst = burst
            }
            if let (n, p) = fields["key"], let text = reader.string(n, p) {
                switch text {
                case "ip": policy.key = .ip
                case "consumer": policy.key = .consumer
                case "route": policy.key = .route
                case "global": policy.key = .global
                default:
                    if text.hasPrefix("header:"), text.count > 7 {
                        policy.key = .header(String(text.dropFirst(7)).lowercased())
                    } else if text.hasPrefix("claim:"), text.count > 6 {
                        policy.key = .claim(String(text.dropFirst(6)))
                    } else {
                        reader.fail(n, p, "expected ip, consumer, route, global, header:NAME or claim:NAME, found \"\(text)\"")
                    }
                }
            }
            if let (n, p) = fields["scope"], let scope = reader.oneOf(n, p, ["local", "redis"]) {
                if scope == "redis" && !hasRedis {
                    reader.fail(n, p, "scope: redis needs the top-level redis block (its address)")
                }
                policy.scope = scope
            }
            if let (n, p) = fields["on_redis_error"], let value = reader.oneOf(n, p, ["allow", "deny"]) { policy.onRedisError = value }
            policies.append(policy)
        }
        return policies
    }

    /// `server.limits` and `server.trusted_proxies`.
    func readServerPolicies(_ fields: Fields, into server: inout ServerConfig) {
        if let (node, path) = fields["limits"], let limits = reader.mapping(node, path, allowed: ["max_connections_per_ip"]),
            let (n, p) = limits["max_connections_per_ip"], let value = reader.int(n, p, range: 0...10_000_000)
        {
            server.maxConnectionsPerIP = value == 0 ? nil : value
        }
        if let (node, path) = fields["trusted_proxies"] { server.trustedProxies = readCIDRs(node, path) }
    }

    func readCIDRs(_ node: Node, _ path: String) -> [CIDR] {
        guard let items = reader.sequence(node, path) else { return [] }
        var result: [CIDR] = []
        for (item, itemPath) in items {
            guard let text = reader.string(item, itemPath) else { continue }
            guard let cidr = CIDR(text) else {
                reader.fail(item, itemPath, "expected an IPv4 or IPv6 address or CIDR (\"10.0.0.0/8\", \"::1/128\"), found \"\(text)\"")
                continue
            }
            result.append(cidr)
        }
        return result
    }

    // MARK: Per route

    func readRoutePolicies(_ fields: Fields, into route: inout RouteConfig, names: PolicyNames) {
        if let (node, path) = fields["cors"] { route.cors = readCORS(node, path) }
        if let (node, path) = fields["access"], let access = reader.mapping(node, path, allowed: ["allow", "deny"]) {
            var config = AccessConfig()
            if let (n, p) = access["allow"] { config.allow = readCIDRs(n, p) }
            if let (n, p) = access["deny"] { config.deny = readCIDRs(n, p) }
            route.access = config
        }
        if let (node, path) = fields["auth"], let auth = reader.mapping(node, path, allowed: ["providers", "optional"]) {
            if let (n, p) = auth["providers"], let list = reader.stringList(n, p) {
                for (index, name) in list.enumerated() where !names.providers.contains(name) {
                    reader.fail(n, "\(p)[\(index)]", "unknown auth provider \"\(name)\"\(didYouMean(name, in: names.providers))")
                }
                if list.isEmpty { reader.fail(n, p, "at least one provider is required") }
                var config = RouteAuthConfig(providers: list)
                if let (n, p) = auth["optional"], let value = reader.bool(n, p) { config.optional = value }
                route.auth = config
            } else if auth["providers"] == nil {
                reader.fail(node, reader.join(path, "providers"), "required key is missing")
            }
        }
        if let (node, path) = fields["authorize"], let authorize = reader.mapping(node, path, allowed: ["scopes", "claims"]) {
            var config = AuthorizeConfig()
            if let (n, p) = authorize["scopes"], let list = reader.stringList(n, p) { config.scopes = list }
            if let (n, p) = authorize["claims"], let entries = reader.entries(n, p) {
                for (name, _, value) in entries {
                    if let text = reader.string(value, reader.join(p, name)) { config.claims.append((name, text)) }
                }
            }
            if !fields.has("auth") {
                reader.fail(node, path, "authorize needs auth on the route (it checks the authenticated caller)")
            }
            route.authorize = config
        }
        if let (node, path) = fields["rate_limit"], let list = reader.stringList(node, path) {
            for (index, name) in list.enumerated() where !names.rateLimits.contains(name) {
                reader.fail(node, "\(path)[\(index)]", "unknown rate limit \"\(name)\"\(didYouMean(name, in: names.rateLimits))")
            }
            route.rateLimits = list
        }
    }

    private func readCORS(_ node: Node, _ path: String) -> CORSConfig? {
        let allowed = ["allow_origins", "allow_methods", "allow_headers", "expose_headers", "allow_credentials", "max_age"]
        guard let fields = reader.mapping(node, path, allowed: allowed) else { return nil }
        var cors = CORSConfig()
        if let (n, p) = fields["allow_origins"], let list = reader.stringList(n, p) {
            for (index, origin) in list.enumerated() where origin != "*" && !Self.isOriginPattern(origin) {
                reader.fail(n, "\(p)[\(index)]", "expected \"*\", an origin like \"https://app.example.com\" or \"https://*.example.com\", found \"\(origin)\"")
            }
            cors.allowOrigins = list
        } else if fields["allow_origins"] == nil {
            reader.fail(node, reader.join(path, "allow_origins"), "required key is missing")
        }
        if let (n, p) = fields["allow_methods"], let list = reader.stringList(n, p) { cors.allowMethods = list.map { $0.uppercased() } }
        if let (n, p) = fields["allow_headers"], let list = reader.stringList(n, p) { cors.allowHeaders = list.map { $0.lowercased() } }
        if let (n, p) = fields["expose_headers"], let list = reader.stringList(n, p) { cors.exposeHeaders = list.map { $0.lowercased() } }
        if let (n, p) = fields["allow_credentials"], let value = reader.bool(n, p) {
            cors.allowCredentials = value
            // The Fetch standard refuses credentialed responses to "*"; so does this config.
            if value && cors.allowOrigins.contains("*") {
                reader.fail(n, p, "allow_credentials cannot be used with allow_origins \"*\"; list the origins")
            }
        }
        if let (n, p) = fields["max_age"], let value = reader.duration(n, p) { cors.maxAge = value }
        return cors
    }

    /// "scheme://host[:port]", the host possibly "*.example.com"; no path.
    static func isOriginPattern(_ text: String) -> Bool {
        guard let separator = text.range(of: "://") else { return false }
        let scheme = text[..<separator.lowerBound]
        let rest = text[separator.upperBound...]
        guard !scheme.isEmpty, scheme.allSatisfy({ $0.isLetter || $0 == "+" || $0 == "-" || $0 == "." }), !rest.isEmpty,
            !rest.contains("/"), !rest.hasSuffix(".")
        else { return false }
        let host = rest.hasPrefix("*.") ? rest.dropFirst(2) : rest
        return !host.isEmpty && !host.contains("*")
    }
}
