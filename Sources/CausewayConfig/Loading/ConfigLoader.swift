import Yams

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// YAML text → `GatewayConfig`, or every error found, each as `file:line:column: key.path: message`.
///
/// The stages: environment interpolation (line-preserving), YAML composition with positions,
/// then one pass over the tree that checks keys, types, units and cross-references.
///
/// Bounds on hostile files: interpolation is linear in the text; libyaml refuses nesting past
/// 1,000 levels (an error at its line, so Yams' recursive composition stays shallow); aliases
/// share nodes rather than copy them, and the reader descends only into the shapes it expects
/// (no key takes lists of lists), so an alias "billion laughs" costs one level, not 10ⁿ.
public enum ConfigLoader {
    public static func load(
        path: String, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(ConfigErrors) -> GatewayConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigErrors([ConfigError(file: path, line: 1, column: 1, path: "",
                                            message: "cannot read the file (missing or not readable)")])
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigErrors([ConfigError(file: path, line: 1, column: 1, path: "", message: "the file is not UTF-8 text")])
        }
        return try parse(text, file: path, environment: environment)
    }

    public static func parse(
        _ text: String, file: String, environment: [String: String] = [:]
    ) throws(ConfigErrors) -> GatewayConfig {
        let (expanded, interpolationErrors) = Interpolation.apply(text, file: file, environment: environment)
        let reader = NodeReader(file: file)
        let root: Node?
        do {
            root = try Yams.compose(yaml: expanded)
        } catch {
            throw ConfigErrors(interpolationErrors + [yamlError(error, file: file)])
        }
        guard let root else {
            throw ConfigErrors(interpolationErrors + [ConfigError(file: file, line: 1, column: 1, path: "",
                                                                  message: "the file is empty")])
        }
        let config = GatewayConfigReader(reader: reader).read(root)
        let errors = interpolationErrors + reader.errors
        guard errors.isEmpty, let config else {
            throw ConfigErrors(errors.sorted { ($0.line, $0.column) < ($1.line, $1.column) })
        }
        return config
    }

    private static func yamlError(_ error: any Error, file: String) -> ConfigError {
        switch error as? YamlError {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            let detail = context.map { "\(problem) (\($0.text))" } ?? problem
            return ConfigError(file: file, line: mark.line, column: mark.column, path: "",
                               message: "invalid YAML: \(detail)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return ConfigError(file: file, line: context.mark.line, column: context.mark.column, path: "",
                               message: "duplicate key \(duplicates.map { "\"\($0)\"" }.joined(separator: ", "))")
        default:
            return ConfigError(file: file, line: 1, column: 1, path: "", message: "invalid YAML: \(error)")
        }
    }
}

/// One pass over the tree. Sections that fail still let the rest be checked.
struct GatewayConfigReader {
    let reader: NodeReader

    func read(_ root: Node) -> GatewayConfig? {
        guard let top = reader.mapping(root, "", allowed: ["server", "listeners", "upstreams", "routes", "auth", "redis", "rate_limits"])
        else {
            return nil
        }
        let auth = top["auth"].map { readAuth($0.node, $0.path) } ?? AuthConfig()
        let redis = top["redis"].flatMap { readRedis($0.node, $0.path) }
        let rateLimits = top["rate_limits"].map { readRateLimits($0.node, $0.path, hasRedis: top["redis"] != nil) } ?? []
        let policyNames = PolicyNames(providers: auth.providerNames, rateLimits: rateLimits.map(\.name))
        let server = top["server"].flatMap { readServer($0.node, $0.path) } ?? ServerConfig()
        var listeners: [ListenerConfig] = []
        if let (node, path) = top["listeners"] {
            listeners = readListeners(node, path)
        } else {
            reader.fail(root, "listeners", "at least one listener is required")
        }
        let upstreams = top["upstreams"].map { readUpstreams($0.node, $0.path) } ?? []
        var routes: [RouteConfig] = []
        if let (node, path) = top["routes"] {
            let names = top["upstreams"].flatMap { reader.entries($0.node, $0.path) }?.map(\.name) ?? []
            routes = readRoutes(node, path, upstreamNames: names, policies: policyNames)
        } else {
            reader.fail(root, "routes", "at least one route is required")
        }
        var config = GatewayConfig(server: server, listeners: listeners, upstreams: upstreams, routes: routes)
        config.auth = auth
        config.rateLimits = rateLimits
        config.redis = redis
        return config
    }

    private func readServer(_ node: Node, _ path: String) -> ServerConfig? {
        guard let fields = reader.mapping(node, path, allowed: ["workers", "drain_timeout", "admin", "limits", "trusted_proxies"])
        else { return nil }
        var server = ServerConfig()
        readServerPolicies(fields, into: &server)
        if let (node, path) = fields["workers"] {
            if node.scalar?.string == "auto" {
                server.workers = nil
            } else {
                server.workers = reader.int(node, path, range: 1...1024)
            }
        }
        if let (node, path) = fields["drain_timeout"], let value = reader.duration(node, path) {
            server.drainTimeout = value
        }
        if let (node, path) = fields["admin"],
            let admin = reader.mapping(node, path, allowed: ["address"]),
            let (addressNode, addressPath) = admin["address"]
        {
            server.adminAddress = reader.address(addressNode, addressPath)
        }
        return server
    }

    private func readListeners(_ node: Node, _ path: String) -> [ListenerConfig] {
        guard let items = reader.sequence(node, path) else { return [] }
        if items.isEmpty { reader.fail(node, path, "at least one listener is required") }
        var names: Set<String> = []
        var result: [ListenerConfig] = []
        for (item, itemPath) in items {
            guard let listener = readListener(item, itemPath) else { continue }
            if !names.insert(listener.name).inserted {
                reader.fail(item, "\(itemPath).name", "duplicate listener name \"\(listener.name)\"")
            }
            result.append(listener)
        }
        return result
    }

    private func readListener(_ node: Node, _ path: String) -> ListenerConfig? {
        guard let fields = reader.mapping(node, path, allowed: ["name", "address", "protocols", "limits", "tls", "http2"])
        else { return nil }
        let name = required(fields, "name", node) { reader.string($0, $1) }
        let address = required(fields, "address", node) { reader.address($0, $1) }
        var listener = ListenerConfig(name: name ?? "", address: address ?? HostPort(host: "0.0.0.0", port: 0))
        if let (node, path) = fields["protocols"], let items = reader.sequence(node, path) {
            let protocols = items.compactMap { reader.oneOf($0.node, $0.path, ["http1", "h2c", "h2"]) }
            let hasTLS = fields.has("tls")
            for (item, itemPath) in items {
                switch item.scalar?.string {
                case "h2" where !hasTLS:
                    reader.fail(item, itemPath, "h2 needs tls on this listener (use h2c for cleartext HTTP/2)")
                case "h2c" where hasTLS:
                    reader.fail(item, itemPath, "h2c is cleartext HTTP/2; a tls listener offers h2 instead")
                default:
                    break
                }
            }
            if items.isEmpty { reader.fail(node, path, "at least one protocol is required") }
            listener.protocols = protocols
        }
        if let (node, path) = fields["limits"],
            let limits = reader.mapping(node, path, allowed: ["max_header_size", "header_timeout", "idle_timeout", "max_connections",
                                                                      "handshake_timeout", "body_timeout"])
        {
            if let (n, p) = limits["max_header_size"], let v = reader.size(n, p) { listener.limits.maxHeaderSize = v }
            if let (n, p) = limits["idle_timeout"], let v = reader.duration(n, p) { listener.limits.idleTimeout = v }
            for key in ["header_timeout", "handshake_timeout", "body_timeout"] {
                guard let (n, p) = limits[key], let v = reader.duration(n, p) else { continue }
                if v == .zero { reader.fail(n, p, "must be greater than 0"); continue }
                switch key {
                case "handshake_timeout": listener.limits.handshakeTimeout = v
                case "body_timeout": listener.limits.bodyTimeout = v
                default: listener.limits.headerTimeout = v
                }
            }
            if let (n, p) = limits["max_connections"], let v = reader.int(n, p, range: 1...10_000_000) {
                listener.limits.maxConnections = v
            }
        }
        if let (node, path) = fields["http2"],
            let http2 = reader.mapping(node, path, allowed: ["max_concurrent_streams", "initial_window_size", "max_header_list_size"])
        {
            if let (n, p) = http2["max_concurrent_streams"], let v = reader.int(n, p, range: 1...100_000) {
                listener.http2.maxConcurrentStreams = v
            }
            if let (n, p) = http2["initial_window_size"], let v = reader.size(n, p) {
                if v < 1 || v > Int(Int32.max) { reader.fail(n, p, "must be between 1 and 2147483647 bytes") }
                listener.http2.initialWindowSize = min(max(v, 1), Int(Int32.max))
            }
            if let (n, p) = http2["max_header_list_size"], let v = reader.size(n, p) {
                if v < 1024 { reader.fail(n, p, "must be at least 1KiB") }
                listener.http2.maxHeaderListSize = v
            }
        }
        if let (node, path) = fields["tls"] {
            listener.tls = readTLS(node, path)
            if !fields.has("protocols") { listener.protocols = ["h2", "http1"] }
        }
        guard name != nil, address != nil else { return nil }
        return listener
    }

    private func readTLS(_ node: Node, _ path: String) -> TLSListenerConfig? {
        guard let fields = reader.mapping(node, path, allowed: ["certificates", "min_version"]) else { return nil }
        var certificates: [TLSListenerConfig.Certificate] = []
        if let (listNode, listPath) = fields["certificates"], let items = reader.sequence(listNode, listPath) {
            if items.isEmpty { reader.fail(listNode, listPath, "at least one certificate is required") }
            for (item, itemPath) in items {
                guard let entry = reader.mapping(item, itemPath, allowed: ["cert", "key"]),
                    let cert = required(entry, "cert", item, { reader.string($0, $1) }),
                    let key = required(entry, "key", item, { reader.string($0, $1) }),
                    let (certNode, certPath) = entry["cert"], let (keyNode, keyPath) = entry["key"]
                else { continue }
                certificates.append(.init(cert: cert, key: key, certLocation: reader.location(certNode, certPath),
                                          keyLocation: reader.location(keyNode, keyPath)))
            }
        } else if !fields.has("certificates") {
            reader.fail(node, reader.join(path, "certificates"), "required key is missing")
        }
        var minVersion = "1.2"
        if let (n, p) = fields["min_version"], let value = reader.oneOf(n, p, ["1.2", "1.3"]) { minVersion = value }
        return TLSListenerConfig(certificates: certificates, minVersion: minVersion)
    }

    /// Reads a required key, reporting its absence at the enclosing mapping.
    func required<T>(_ fields: Fields, _ key: String, _ owner: Node, _ read: (Node, String) -> T?) -> T? {
        guard let (node, path) = fields[key] else {
            reader.fail(owner, reader.join(fields.path, key), "required key is missing")
            return nil
        }
        return read(node, path)
    }
}
