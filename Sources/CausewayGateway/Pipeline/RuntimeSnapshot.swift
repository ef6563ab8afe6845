import CausewayConfig
import CausewayHTTP
import CausewayTranscoding
import CausewayUpstream
import Foundation
import NIOCore

/// The config compiled for running: immutable, shared by every loop, replaced whole by a
/// reload. Each loop instantiates its `LoopGeneration` from it (filters, pools, caches).
///
/// ```
/// GatewayConfig ─compile─▶ RuntimeSnapshot (router, route plans, upstreams, TLS contexts)
///                              └─ per loop ─▶ LoopGeneration (LoopRoutes: filters, handler, clusters)
/// ```
public struct RuntimeSnapshot: Sendable {
    public struct Upstream: Sendable {
        public var name: String
        public var endpoints: [UpstreamEndpoint]
        public var `protocol`: UpstreamProtocol
        public var pool: PoolConfig
        /// Equal across two snapshots when a loop may keep this upstream's pools (and their
        /// open connections) over a reload: same endpoints, protocol, pool and TLS settings.
        public var reuseKey: String
    }

    public let config: GatewayConfig
    public let router: Router
    /// Indexed like `router.routes`.
    let plans: [RoutePlan]
    public let upstreams: [Upstream]
    /// Loaded auth providers, rate limiters, the client-address rule.
    let policies: PolicyRuntime
    /// Request filters every exchange runs before routing (the request id).
    let globalFilters: [any FilterFactory]
    /// By listener name, for TLS listeners. Boxes, so SIGHUP can swap in re-read certificates.
    public let tlsContexts: [String: TLSContextBox<TLSServerContext>]
    /// By upstream name, for TLS upstreams; boxed for the same reason.
    public let upstreamTLSContexts: [String: TLSContextBox<TLSClientContext>]

    /// Resolves endpoint host names once, here, so the request path never waits on DNS.
    ///
    /// With `previous` (a reload), TLS contexts of listeners and upstreams that keep their name
    /// are put in the previous snapshot's boxes, once everything else has loaded, so open pools
    /// and listeners hand the re-read certificates to their next connection.
    public init(config: GatewayConfig, previous: RuntimeSnapshot? = nil) throws {
        self.config = config
        self.globalFilters = [RequestIDFilter()]
        var transcoders: [Transcoder?] = []
        var transcodeErrors: [ConfigError] = []
        for route in config.routes {
            guard let transcode = route.grpc?.transcode else {
                transcoders.append(nil)
                continue
            }
            do {
                transcoders.append(try Self.loadTranscoder(transcode))
            } catch {
                transcoders.append(nil)
                transcodeErrors.append(error)
            }
        }
        if !transcodeErrors.isEmpty { throw ConfigErrors(transcodeErrors) }
        let routes = try config.routes.enumerated().map { try CompiledRoute(config: $1, index: $0, transcoder: transcoders[$0]) }
        self.router = Router(routes: routes)
        let upstreamNames = Set(config.upstreams.map(\.name))
        let policies = try PolicyRuntime(config: config, previous: previous?.policies)
        self.policies = policies
        var plans: [RoutePlan] = []
        var schemaErrors: [ConfigError] = []
        for route in routes {
            do {
                plans.append(try RoutePlan(route: route, upstreams: upstreamNames, policies: policies))
            } catch {
                schemaErrors += error.errors
            }
        }
        if !schemaErrors.isEmpty { throw ConfigErrors(schemaErrors) }
        self.plans = plans
        let loadedClientTLS = try Self.loadUpstreamTLS(config.upstreams)
        let loadedServerTLS = try Self.loadTLS(config.listeners)
        // Applied last, when nothing can fail any more: a refused reload changes nothing.
        var replacements: [() -> Void] = []
        let clientTLS = Self.boxes(loadedClientTLS, reusing: previous?.upstreamTLSContexts, replacements: &replacements)
        self.upstreamTLSContexts = clientTLS
        self.upstreams = try config.upstreams.map { upstream in
            let endpoints = try upstream.endpoints.map { endpoint in
                UpstreamEndpoint(address: try SocketAddress.makeAddressResolvingHost(endpoint.address.host,
                                                                                    port: endpoint.address.port),
                                 label: endpoint.address.description, weight: endpoint.weight,
                                 tls: clientTLS[upstream.name].map {
                                     UpstreamTLS(context: $0, serverName: upstream.tls?.serverName ?? endpoint.address.host)
                                 })
            }
            return Upstream(name: upstream.name, endpoints: endpoints, protocol: upstream.protocol == "http1" ? .http1 : .http2,
                            pool: upstream.pool, reuseKey: Self.reuseKey(upstream, endpoints: endpoints))
        }
        self.tlsContexts = Self.boxes(loadedServerTLS, reusing: previous?.tlsContexts, replacements: &replacements)
        for replace in replacements { replace() }
    }

    /// Each context in the previous snapshot's box of the same name (filled by `replacements`,
    /// later), or in a new box.
    private static func boxes<Context>(_ loaded: [String: Context], reusing previous: [String: TLSContextBox<Context>]?,
                                       replacements: inout [() -> Void]) -> [String: TLSContextBox<Context>] {
        var boxes: [String: TLSContextBox<Context>] = [:]
        for (name, context) in loaded {
            if let box = previous?[name] {
                replacements.append { box.replace(context) }
                boxes[name] = box
            } else {
                boxes[name] = TLSContextBox(context)
            }
        }
        return boxes
    }

    private static func reuseKey(_ upstream: UpstreamConfig, endpoints: [UpstreamEndpoint]) -> String {
        let pool = upstream.pool
        let tls = upstream.tls.map { "\($0.verify)|\($0.ca?.path ?? "")|\($0.serverName ?? "")|\($0.cert?.path ?? "")|\($0.key?.path ?? "")" }
        return "\(upstream.protocol)|" + endpoints.map { "\($0.address)=\($0.label)*\($0.weight)" }.joined(separator: ",")
            + "|\(pool.maxConnections)/\(pool.maxPending)/\(pool.idleTimeout)/\(pool.connectTimeout)|\(tls ?? "-")"
    }

    /// Loads every listener's certificates now, so unreadable or mismatched files are config
    /// errors (from `validate` and at start), reported where the path was written.
    static func loadTLS(_ listeners: [ListenerConfig]) throws(ConfigErrors) -> [String: TLSServerContext] {
        var contexts: [String: TLSServerContext] = [:]
        var errors: [ConfigError] = []
        for listener in listeners {
            guard let tls = listener.tls, !tls.certificates.isEmpty else { continue }
            // The server's preference: h2 whenever the client offers it (as nginx and Envoy do),
            // whatever order the listener lists its protocols in.
            let alpn = ["h2", "http1"].filter(listener.protocols.contains).map { $0 == "h2" ? "h2" : "http/1.1" }
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
    /// A route's descriptor set, read and checked now: an unreadable file, a set protoc did
    /// not make with --include_imports, a listed service it lacks or a malformed HTTP rule is a
    /// config error at the key.
    static func loadTranscoder(_ config: GRPCTranscodeConfig) throws(ConfigError) -> Transcoder {
        guard let data = FileManager.default.contents(atPath: config.descriptors) else {
            throw config.descriptorsLocation.error("cannot read the descriptor set \"\(config.descriptors)\"")
        }
        do {
            return try Transcoder(descriptorSet: Array(data), services: config.services,
                                  options: .init(useProtoNames: config.useProtoNames,
                                                 alwaysPrintPrimitiveFields: config.alwaysPrintPrimitiveFields))
        } catch {
            let location = error.description.hasPrefix("service ") ? config.servicesLocation ?? config.descriptorsLocation
                : config.descriptorsLocation
            throw location.error("\(config.descriptors): \(error.description)")
        }
    }

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

