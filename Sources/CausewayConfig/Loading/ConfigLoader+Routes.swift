import Yams

/// Upstreams and routes: the parts that reference each other.
extension GatewayConfigReader {
    func readUpstreams(_ node: Node, _ path: String) -> [UpstreamConfig] {
        guard let entries = reader.entries(node, path) else { return [] }
        return entries.compactMap { readUpstream(name: $0.name, $0.value, reader.join(path, $0.name)) }
    }

    private func readUpstream(name: String, _ node: Node, _ path: String) -> UpstreamConfig? {
        guard let fields = reader.mapping(node, path, allowed: ["endpoints", "protocol", "tls", "load_balancing", "pool"])
        else { return nil }
        var endpoints: [EndpointConfig] = []
        if let (node, path) = fields["endpoints"], let items = reader.sequence(node, path) {
            if items.isEmpty { reader.fail(node, path, "at least one endpoint is required") }
            for (item, itemPath) in items {
                guard let endpoint = reader.mapping(item, itemPath, allowed: ["address", "weight"]) else { continue }
                guard let address = required(endpoint, "address", item, { reader.address($0, $1) }) else { continue }
                let weight = endpoint["weight"].flatMap { reader.int($0.node, $0.path, range: 1...1000) } ?? 1
                endpoints.append(EndpointConfig(address: address, weight: weight))
            }
        } else if !fields.has("endpoints") {
            reader.fail(node, reader.join(path, "endpoints"), "required key is missing")
        }
        var upstream = UpstreamConfig(name: name, endpoints: endpoints)
        if let (node, path) = fields["protocol"], let value = reader.oneOf(node, path, ["http1", "h2", "h2c"]) {
            upstream.protocol = value
        }
        if let (node, tlsPath) = fields["tls"] {
            if upstream.protocol == "h2c" {
                reader.fail(fields.keyNode("tls"), tlsPath, "h2c is cleartext HTTP/2; use protocol: h2 for HTTP/2 over TLS")
            }
            upstream.tls = readUpstreamTLS(node, tlsPath)
        } else if upstream.protocol == "h2" {
            upstream.tls = UpstreamTLSConfig()  // h2 means TLS; verify against the system store
        }
        if let (node, path) = fields["load_balancing"], let value = reader.oneOf(node, path, ["round_robin"]) {
            upstream.loadBalancing = value
        }
        if let (node, path) = fields["pool"],
            let pool = reader.mapping(node, path, allowed: ["max_connections", "max_pending", "idle_timeout", "connect_timeout"])
        {
            if let (n, p) = pool["max_connections"], let v = reader.int(n, p, range: 1...100_000) { upstream.pool.maxConnections = v }
            if let (n, p) = pool["max_pending"], let v = reader.int(n, p, range: 0...10_000_000) { upstream.pool.maxPending = v }
            if let (n, p) = pool["idle_timeout"], let v = reader.duration(n, p) { upstream.pool.idleTimeout = v }
            if let (n, p) = pool["connect_timeout"], let v = reader.duration(n, p) {
                if v == .zero { reader.fail(n, p, "must be greater than 0") } else { upstream.pool.connectTimeout = v }
            }
        }
        return upstream
    }

    private func readUpstreamTLS(_ node: Node, _ path: String) -> UpstreamTLSConfig? {
        var tls = UpstreamTLSConfig()
        // `tls: {}` (or an empty `tls:`) turns TLS on with the defaults.
        if case .scalar(let scalar) = node, scalar.string.isEmpty || scalar.string == "null" { return tls }
        guard let fields = reader.mapping(node, path, allowed: ["verify", "ca", "server_name", "cert", "key"]) else { return nil }
        if let (n, p) = fields["verify"], let value = reader.bool(n, p) { tls.verify = value }
        func file(_ key: String) -> UpstreamTLSConfig.File? {
            guard let (n, p) = fields[key], let value = reader.optionalString(n, p) else { return nil }
            return .init(path: value, location: reader.location(n, p))
        }
        tls.ca = file("ca")
        tls.cert = file("cert")
        tls.key = file("key")
        if let (n, p) = fields["server_name"] { tls.serverName = reader.optionalString(n, p) }
        if (tls.cert == nil) != (tls.key == nil) {
            let present = tls.cert == nil ? "key" : "cert"
            reader.fail(fields.keyNode(present), reader.join(path, present),
                        "a client certificate needs both cert and key")
        }
        return tls
    }

    func readRoutes(_ node: Node, _ path: String, upstreamNames: [String], policies: PolicyNames = .init()) -> [RouteConfig] {
        guard let items = reader.sequence(node, path) else { return [] }
        if items.isEmpty { reader.fail(node, path, "at least one route is required") }
        var names: Set<String> = []
        var routes: [RouteConfig] = []
        for (index, (item, itemPath)) in items.enumerated() {
            guard let route = readRoute(item, itemPath, index: index, upstreamNames: upstreamNames, policies: policies) else { continue }
            if !names.insert(route.name).inserted {
                reader.fail(item, "\(itemPath).name", "duplicate route name \"\(route.name)\"")
            }
            routes.append(route)
        }
        return routes
    }

    /// `routes[].sse`.
    private func readSSE(_ node: Node, _ path: String) -> SSEConfig {
        var sse = SSEConfig()
        guard let fields = reader.mapping(node, path, allowed: ["heartbeat", "idle_timeout", "fanout", "replay"]) else { return sse }
        if let (n, p) = fields["heartbeat"], let value = reader.duration(n, p) { sse.heartbeat = value == .zero ? nil : value }
        if let (n, p) = fields["idle_timeout"], let value = reader.duration(n, p) { sse.idleTimeout = value == .zero ? nil : value }
        if let (n, p) = fields["fanout"], let value = reader.bool(n, p) { sse.fanout = value }
        if let (n, p) = fields["replay"], let value = reader.int(n, p, range: 0...100_000) { sse.replay = value }
        return sse
    }

    /// `routes[].websocket`.
    private func readWebSocket(_ node: Node, _ path: String) -> WebSocketConfig? {
        var websocket = WebSocketConfig()
        guard let fields = reader.mapping(node, path, allowed: ["enabled", "max_message_size", "idle_timeout", "ping_interval", "subprotocols"])
        else { return nil }
        if let (n, p) = fields["enabled"], let value = reader.bool(n, p) { websocket.enabled = value }
        if let (n, p) = fields["max_message_size"], let value = reader.size(n, p) {
            if value < 125 || value > 1 << 30 {
                reader.fail(n, p, "must be between 125 bytes and 1GiB")
            } else {
                websocket.maxMessageSize = value
            }
        }
        if let (n, p) = fields["idle_timeout"], let value = reader.duration(n, p) { websocket.idleTimeout = value == .zero ? nil : value }
        if let (n, p) = fields["ping_interval"], let value = reader.duration(n, p) { websocket.pingInterval = value == .zero ? nil : value }
        if let (n, p) = fields["subprotocols"], let list = reader.stringList(n, p) { websocket.subprotocols = list }
        return websocket
    }

    private func readRoute(_ node: Node, _ path: String, index: Int, upstreamNames: [String], policies: PolicyNames) -> RouteConfig? {
        let allowed = ["name", "match", "upstream", "rewrite", "timeout", "max_body_size", "headers", "compression", "graphql", "sse", "websocket", "grpc",
                       "access", "cors", "auth", "authorize", "rate_limit"]
        guard let fields = reader.mapping(node, path, allowed: allowed) else { return nil }
        let name = fields["name"].flatMap { reader.string($0.node, $0.path) } ?? "route-\(index)"
        let match = required(fields, "match", node) { readMatch($0, $1) }
        let isGraphQL = fields.has("graphql")
        let upstream: String? = isGraphQL && !fields.has("upstream") ? "" : required(fields, "upstream", node) { node, path -> String? in
            guard let name = reader.string(node, path) else { return nil }
            // Names as written, even of upstreams with errors, so one mistake is not reported twice.
            if !upstreamNames.contains(name) {
                reader.fail(node, path, "unknown upstream \"\(name)\"\(didYouMean(name, in: upstreamNames))")
                return nil
            }
            return name
        }
        if isGraphQL && fields.has("upstream") {
            reader.fail(fields.keyNode("upstream"), reader.join(path, "upstream"),
                        "a graphql route calls the upstreams its schema names; remove upstream")
        }
        var route = RouteConfig(name: name, match: match ?? RouteMatch(path: .prefix("/")), upstream: upstream ?? "")
        if let (node, path) = fields["rewrite"], let rewrite = reader.mapping(node, path, allowed: ["path_prefix"]),
            let (prefixNode, prefixPath) = rewrite["path_prefix"], let prefix = reader.string(prefixNode, prefixPath)
        {
            if case .prefix = route.match.path {
                route.rewritePathPrefix = prefix
            } else {
                reader.fail(prefixNode, prefixPath, "rewrite.path_prefix needs match.path_prefix")
            }
            if !prefix.hasPrefix("/") { reader.fail(prefixNode, prefixPath, "must start with \"/\"") }
        }
        if let (node, path) = fields["timeout"], let value = reader.duration(node, path) {
            route.timeout = value == .zero ? nil : value
        }
        if let (node, path) = fields["max_body_size"], let value = reader.size(node, path) {
            route.maxBodySize = value == 0 ? nil : value
        }
        if let (node, path) = fields["headers"], let headers = reader.mapping(node, path, allowed: ["request", "response"]) {
            if let (n, p) = headers["request"] { route.requestHeaders = readHeaderOperations(n, p) }
            if let (n, p) = headers["response"] { route.responseHeaders = readHeaderOperations(n, p) }
        }
        if let (node, path) = fields["compression"] { route.compression = readCompression(node, path) }
        if let (node, path) = fields["graphql"] { route.graphql = readGraphQL(node, path) }
        if let (node, path) = fields["sse"] { route.sse = readSSE(node, path) }
        if let (node, path) = fields["websocket"], let websocket = readWebSocket(node, path), websocket.enabled {
            route.websocket = websocket
        }
        if let (node, path) = fields["grpc"] { route.grpc = readGRPC(node, path) }
        readRoutePolicies(fields, into: &route, names: policies)
        guard match != nil, upstream != nil else { return nil }
        return route
    }

    /// `routes[].grpc`. gRPC-Web and transcoding are not built yet: asking for them is refused
    /// rather than silently ignored.
    private func readGRPC(_ node: Node, _ path: String) -> GRPCRouteConfig {
        var grpc = GRPCRouteConfig()
        guard let fields = reader.mapping(node, path, allowed: ["web", "max_message_size", "default_timeout", "transcode"]) else { return grpc }
        if let (n, p) = fields["default_timeout"], let value = reader.duration(n, p) { grpc.defaultTimeout = value == .zero ? nil : value }
        if let (n, p) = fields["max_message_size"], let value = reader.size(n, p) { grpc.maxMessageSize = value }
        if let (n, p) = fields["web"], let value = reader.bool(n, p) { grpc.web = value }
        if let (n, p) = fields["transcode"] { grpc.transcode = readTranscode(n, p) }
        return grpc
    }

    private func readTranscode(_ node: Node, _ path: String) -> GRPCTranscodeConfig? {
        let allowed = ["descriptors", "services", "use_proto_names", "always_print_primitive_fields"]
        guard let fields = reader.mapping(node, path, allowed: allowed),
            let descriptors = required(fields, "descriptors", node, { reader.string($0, $1) }),
            let (descriptorsNode, descriptorsPath) = fields["descriptors"]
        else { return nil }
        var config = GRPCTranscodeConfig(descriptors: descriptors, descriptorsLocation: reader.location(descriptorsNode, descriptorsPath))
        if let (n, p) = fields["services"], let value = reader.stringList(n, p) {
            config.services = value
            config.servicesLocation = reader.location(n, p)
        }
        if let (n, p) = fields["use_proto_names"], let value = reader.bool(n, p) { config.useProtoNames = value }
        if let (n, p) = fields["always_print_primitive_fields"], let value = reader.bool(n, p) { config.alwaysPrintPrimitiveFields = value }
        return config
    }

    private func readGraphQL(_ node: Node, _ path: String) -> GraphQLRouteConfig? {
        let allowed = ["schema", "introspection", "limits", "persisted_queries", "batching", "upstream_timeout", "debug"]
        guard let fields = reader.mapping(node, path, allowed: allowed) else { return nil }
        guard let schema = required(fields, "schema", node, { reader.string($0, $1) }), let (schemaNode, schemaPath) = fields["schema"]
        else { return nil }
        var config = GraphQLRouteConfig(schema: schema, schemaLocation: reader.location(schemaNode, schemaPath))
        if let (n, p) = fields["introspection"], let value = reader.bool(n, p) { config.introspection = value }
        if let (n, p) = fields["debug"], let value = reader.bool(n, p) { config.debug = value }
        if let (n, p) = fields["upstream_timeout"], let value = reader.duration(n, p) {
            if value == .zero { reader.fail(n, p, "must be greater than 0") } else { config.upstreamTimeout = value }
        }
        if let (n, p) = fields["limits"],
            let limits = reader.mapping(n, p, allowed: ["max_depth", "max_aliases", "max_root_fields", "max_complexity", "max_tokens",
                                                                  "max_document_size"])
        {
            if let (n, p) = limits["max_depth"], let v = reader.int(n, p, range: 1...128) { config.limits.maxDepth = v }
            if let (n, p) = limits["max_aliases"], let v = reader.int(n, p, range: 0...100_000) { config.limits.maxAliases = v }
            if let (n, p) = limits["max_root_fields"], let v = reader.int(n, p, range: 1...100_000) { config.limits.maxRootFields = v }
            if let (n, p) = limits["max_complexity"], let v = reader.int(n, p, range: 1...1_000_000_000) { config.limits.maxComplexity = v }
            if let (n, p) = limits["max_tokens"], let v = reader.int(n, p, range: 1...1_000_000) { config.limits.maxTokens = v }
            if let (n, p) = limits["max_document_size"], let v = reader.size(n, p) {
                if v < 1 || v > 16 << 20 { reader.fail(n, p, "must be between 1 and 16MiB") } else { config.limits.maxDocumentSize = v }
            }
        }
        if let (n, p) = fields["persisted_queries"], let persisted = reader.mapping(n, p, allowed: ["enabled", "cache_size"]) {
            if let (n, p) = persisted["enabled"], let value = reader.bool(n, p) { config.persistedQueries = value }
            if let (n, p) = persisted["cache_size"], let value = reader.int(n, p, range: 1...10_000_000) { config.cacheSize = value }
        }
        if let (n, p) = fields["batching"], let batching = reader.mapping(n, p, allowed: ["enabled", "max_operations"]) {
            if let (n, p) = batching["enabled"], let value = reader.bool(n, p) { config.batchingEnabled = value }
            if let (n, p) = batching["max_operations"], let value = reader.int(n, p, range: 1...1000) { config.maxOperations = value }
        }
        return config
    }

    private func readCompression(_ node: Node, _ path: String) -> CompressionConfig? {
        let allowed = ["enabled", "algorithms", "min_size", "gzip_level", "brotli_quality", "content_types",
                       "request_decompression", "max_decompression_ratio"]
        guard let fields = reader.mapping(node, path, allowed: allowed) else { return nil }
        var config = CompressionConfig()
        if let (n, p) = fields["enabled"], let value = reader.bool(n, p) { config.enabled = value }
        if let (n, p) = fields["algorithms"], let items = reader.sequence(n, p) {
            let names = items.compactMap { reader.oneOf($0.node, $0.path, ["br", "gzip"]) }
            if items.isEmpty { reader.fail(n, p, "at least one algorithm is required (or enabled: false)") }
            if Set(names).count != names.count { reader.fail(n, p, "an algorithm is listed twice") }
            config.algorithms = names
        }
        if let (n, p) = fields["min_size"], let value = reader.size(n, p) { config.minSize = value }
        if let (n, p) = fields["gzip_level"], let value = reader.int(n, p, range: 1...9) { config.gzipLevel = value }
        if let (n, p) = fields["brotli_quality"], let value = reader.int(n, p, range: 0...11) { config.brotliQuality = value }
        if let (n, p) = fields["content_types"], let items = reader.sequence(n, p) {
            var types: [String] = []
            for (item, itemPath) in items {
                guard let value = reader.string(item, itemPath) else { continue }
                let parts = value.split(separator: "/", omittingEmptySubsequences: false)
                if value == "*/*" || (parts.count == 2 && !parts[0].isEmpty && !parts[1].isEmpty && parts[0] != "*"
                                      && !value.contains(";") && !value.contains(" ")) {
                    types.append(value.lowercased())
                } else {
                    reader.fail(item, itemPath, "expected a media type like \"text/html\", \"text/*\" or \"*/*\", found \"\(value)\"")
                }
            }
            config.contentTypes = types
        }
        if let (n, p) = fields["request_decompression"], let value = reader.bool(n, p) { config.requestDecompression = value }
        if let (n, p) = fields["max_decompression_ratio"], let value = reader.int(n, p, range: 2...100_000) {
            config.maxDecompressionRatio = value
        }
        return config
    }

    private func readMatch(_ node: Node, _ path: String) -> RouteMatch? {
        guard let fields = reader.mapping(node, path, allowed: ["host", "path", "path_prefix", "path_regex", "methods", "headers"])
        else { return nil }
        let pathKeys = ["path", "path_prefix", "path_regex"].filter { fields[$0] != nil }
        guard pathKeys.count == 1, let (pathNode, pathPath) = fields[pathKeys[0]],
            let value = reader.string(pathNode, pathPath)
        else {
            reader.fail(node, path, pathKeys.isEmpty
                ? "exactly one of path, path_prefix, path_regex is required"
                : "exactly one of path, path_prefix, path_regex is allowed, found \(pathKeys.joined(separator: ", "))")
            return nil
        }
        var pathMatch: RouteMatch.Path
        switch pathKeys[0] {
        case "path": pathMatch = .exact(value)
        case "path_prefix": pathMatch = .prefix(value)
        default:
            pathMatch = .regex(value)
            do {
                _ = try Regex(value)
            } catch {
                reader.fail(pathNode, pathPath, "invalid regular expression: \(error)")
            }
        }
        if pathKeys[0] != "path_regex" && !value.hasPrefix("/") {
            reader.fail(pathNode, pathPath, "must start with \"/\"")
            pathMatch = .exact("/")
        }
        var match = RouteMatch(path: pathMatch)
        if let (n, p) = fields["host"], let host = reader.string(n, p) {
            if host.isEmpty || host.contains("/") || host.contains(":") || host.dropFirst().contains("*")
                || (host.hasPrefix("*") && !host.hasPrefix("*."))
            {
                reader.fail(n, p, "expected a host name like \"api.example.com\" or \"*.example.com\"")
            }
            match.host = host.lowercased()
        }
        if let (n, p) = fields["methods"], let items = reader.sequence(n, p) {
            var methods: [String] = []
            for (item, itemPath) in items {
                guard let method = reader.string(item, itemPath) else { continue }
                if method.isEmpty || !method.utf8.allSatisfy({ isTokenByte($0) }) || method.uppercased() != method {
                    reader.fail(item, itemPath, "expected an upper-case HTTP method like GET or POST, got \"\(method)\"")
                }
                methods.append(method)
            }
            if items.isEmpty { reader.fail(n, p, "at least one method is required when methods is given") }
            match.methods = methods
        }
        if let (n, p) = fields["headers"], let entries = reader.entries(n, p) {
            for (name, key, value) in entries {
                let entryPath = reader.join(p, name)
                if !name.utf8.allSatisfy({ isTokenByte($0) }) { reader.fail(key, entryPath, "invalid header name") }
                if let value = reader.string(value, entryPath) { match.headers.append((name.lowercased(), value)) }
            }
        }
        return match
    }

    private func readHeaderOperations(_ node: Node, _ path: String) -> HeaderOperations {
        guard let fields = reader.mapping(node, path, allowed: ["set", "remove"]) else { return .init() }
        var operations = HeaderOperations()
        if let (n, p) = fields["set"], let entries = reader.entries(n, p) {
            for (name, key, value) in entries {
                let entryPath = reader.join(p, name)
                if !name.utf8.allSatisfy({ isTokenByte($0) }) { reader.fail(key, entryPath, "invalid header name") }
                guard let value = reader.string(value, entryPath) else { continue }
                if value.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A || $0 == 0 }) {
                    reader.fail(key, entryPath, "header values must not contain CR, LF or NUL")
                }
                operations.toSet.append((name.lowercased(), value))
            }
        }
        if let (n, p) = fields["remove"], let names = reader.stringList(n, p) {
            operations.toRemove = names.map { $0.lowercased() }
        }
        return operations
    }
}

/// RFC 9110 §5.6.2 token characters.
func isTokenByte(_ byte: UInt8) -> Bool {
    switch byte {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
        return true
    default:
        return "!#$%&'*+-.^_`|~".utf8.contains(byte)
    }
}
