/// The validated configuration: plain `Sendable` values with every default filled in. The
/// gateway compiles it once into a runtime snapshot (router, upstream set); nothing here is
/// looked up by string on the request path.
public struct GatewayConfig: Sendable {
    public var server: ServerConfig
    public var listeners: [ListenerConfig]
    /// In file order; names are unique.
    public var upstreams: [UpstreamConfig]
    /// In file order: the first match wins.
    public var routes: [RouteConfig]
    /// `auth`: identity providers routes may name.
    public var auth = AuthConfig()
    /// `rate_limits`, in file order.
    public var rateLimits: [RateLimitPolicy] = []
    /// `redis`: where `scope: redis` limits count.
    public var redis: RedisConfig?

    public init(server: ServerConfig, listeners: [ListenerConfig], upstreams: [UpstreamConfig],
                routes: [RouteConfig]) {
        self.server = server
        self.listeners = listeners
        self.upstreams = upstreams
        self.routes = routes
    }

    public func upstream(named name: String) -> UpstreamConfig? {
        upstreams.first { $0.name == name }
    }
}

public struct ServerConfig: Sendable {
    /// Event loops; nil means one per core.
    public var workers: Int?
    public var drainTimeout: Duration
    public var adminAddress: HostPort?
    /// `server.limits.max_connections_per_ip`: nil = unlimited.
    public var maxConnectionsPerIP: Int?
    /// `server.trusted_proxies`: peers whose X-Forwarded-For names the client.
    public var trustedProxies: [CIDR] = []

    public init(workers: Int? = nil, drainTimeout: Duration = .seconds(30),
                adminAddress: HostPort? = HostPort(host: "127.0.0.1", port: 9901)) {
        self.workers = workers
        self.drainTimeout = drainTimeout
        self.adminAddress = adminAddress
    }
}

public struct ListenerConfig: Sendable {
    public var name: String
    public var address: HostPort
    /// "http1", "h2c" (cleartext) and, with TLS, "h2"; in ALPN preference order.
    public var protocols: [String]
    public var limits: ListenerLimits
    public var http2 = HTTP2Settings()
    /// Present = the listener speaks TLS.
    public var tls: TLSListenerConfig?

    public init(name: String, address: HostPort, protocols: [String] = ["http1"], limits: ListenerLimits = .init()) {
        self.name = name
        self.address = address
        self.protocols = protocols
        self.limits = limits
    }
}

public struct TLSListenerConfig: Sendable {
    public struct Certificate: Sendable {
        public var cert: String
        public var key: String
        /// Where each path was written, for errors found when the files are loaded.
        public var certLocation: ConfigLocation
        public var keyLocation: ConfigLocation
    }

    /// Chosen by SNI; the first is the default.
    public var certificates: [Certificate]
    /// "1.2" or "1.3".
    public var minVersion: String
}

/// A key's position in its file, kept for errors that can only be found later (unreadable
/// certificate files), so they read like every other config error.
public struct ConfigLocation: Sendable {
    public var file: String
    public var line: Int
    public var column: Int
    public var path: String

    public func error(_ message: String) -> ConfigError {
        ConfigError(file: file, line: line, column: column, path: path, message: message)
    }
}

public struct HTTP2Settings: Sendable {
    public var maxConcurrentStreams = 128
    public var initialWindowSize = 1 << 20
    public var maxHeaderListSize = 64 << 10

    public init() {}
}

public struct ListenerLimits: Sendable {
    public var maxHeaderSize: Int
    public var headerTimeout: Duration
    public var idleTimeout: Duration
    public var maxConnections: Int
    /// A TLS handshake not complete in this time closes the connection.
    public var handshakeTimeout: Duration
    /// No request-body progress for this long (while the gateway wants the body) → 408.
    public var bodyTimeout: Duration

    public init(maxHeaderSize: Int = 64 << 10, headerTimeout: Duration = .seconds(10),
                idleTimeout: Duration = .seconds(60), maxConnections: Int = 100_000,
                handshakeTimeout: Duration = .seconds(10), bodyTimeout: Duration = .seconds(30)) {
        self.maxHeaderSize = maxHeaderSize
        self.headerTimeout = headerTimeout
        self.idleTimeout = idleTimeout
        self.maxConnections = maxConnections
        self.handshakeTimeout = handshakeTimeout
        self.bodyTimeout = bodyTimeout
    }
}

public struct UpstreamConfig: Sendable {
    public var name: String
    public var endpoints: [EndpointConfig]
    /// "http1", "h2" (HTTP/2 over TLS, ALPN) or "h2c".
    public var `protocol` = "http1"
    /// Connect with TLS; always set for "h2".
    public var tls: UpstreamTLSConfig?
    public var loadBalancing: String
    public var pool: PoolConfig

    public init(name: String, endpoints: [EndpointConfig], loadBalancing: String = "round_robin",
                pool: PoolConfig = .init()) {
        self.name = name
        self.endpoints = endpoints
        self.loadBalancing = loadBalancing
        self.pool = pool
    }
}

/// `upstreams.*.tls`: how Causeway, as a TLS client, checks the upstream and proves itself.
public struct UpstreamTLSConfig: Sendable {
    /// A file path with where it was written, so load errors point at the key.
    public struct File: Sendable {
        public var path: String
        public var location: ConfigLocation
    }

    public var verify = true
    /// CA bundle (PEM); nil = the system store.
    public var ca: File?
    /// SNI and the name the certificate must carry; nil = the endpoint's host.
    public var serverName: String?
    /// Client certificate and key, for upstreams that require mTLS.
    public var cert: File?
    public var key: File?

    public init() {}
}

public struct EndpointConfig: Sendable, Hashable {
    public var address: HostPort
    public var weight: Int

    public init(address: HostPort, weight: Int = 1) {
        self.address = address
        self.weight = weight
    }
}

public struct PoolConfig: Sendable {
    /// Per worker event loop, per endpoint.
    public var maxConnections: Int
    public var maxPending: Int
    public var idleTimeout: Duration
    public var connectTimeout: Duration

    public init(maxConnections: Int = 256, maxPending: Int = 1024, idleTimeout: Duration = .seconds(60),
                connectTimeout: Duration = .seconds(2)) {
        self.maxConnections = maxConnections
        self.maxPending = maxPending
        self.idleTimeout = idleTimeout
        self.connectTimeout = connectTimeout
    }
}

public struct RouteConfig: Sendable {
    public var name: String
    public var match: RouteMatch
    public var upstream: String
    /// Replaces the matched `path_prefix`.
    public var rewritePathPrefix: String?
    /// Until the response head arrives; nil = none.
    public var timeout: Duration?
    /// nil = unlimited.
    public var maxBodySize: Int?
    public var requestHeaders: HeaderOperations
    public var responseHeaders: HeaderOperations
    /// `compression`; nil = responses pass as the upstream sent them.
    public var compression: CompressionConfig?
    /// `graphql`: this route serves GraphQL (and needs no `upstream`).
    public var graphql: GraphQLRouteConfig?
    /// `sse`: how event streams (`text/event-stream` responses) are held. Always set: every
    /// route's event streams get the defaults.
    public var sse = SSEConfig()
    /// `websocket`: nil = upgrades on this route are refused (400).
    public var websocket: WebSocketConfig?
    /// `grpc`: calls on this route get gRPC deadlines and gRPC answers; nil = defaults for any
    /// `application/grpc` request.
    public var grpc: GRPCRouteConfig?
    /// Edge policies (PolicyConfig.swift), run in this order: access, cors, auth, authorize, rate_limit.
    public var access: AccessConfig?
    public var cors: CORSConfig?
    public var auth: RouteAuthConfig?
    public var authorize: AuthorizeConfig?
    /// `rate_limit`: policy names; every one must admit the request.
    public var rateLimits: [String] = []

    public init(name: String, match: RouteMatch, upstream: String, rewritePathPrefix: String? = nil,
                timeout: Duration? = .seconds(60), maxBodySize: Int? = 10 << 20,
                requestHeaders: HeaderOperations = .init(), responseHeaders: HeaderOperations = .init()) {
        self.name = name
        self.match = match
        self.upstream = upstream
        self.rewritePathPrefix = rewritePathPrefix
        self.timeout = timeout
        self.maxBodySize = maxBodySize
        self.requestHeaders = requestHeaders
        self.responseHeaders = responseHeaders
    }
}

/// `routes[].grpc`: how gRPC calls on this route are held.
public struct GRPCRouteConfig: Sendable {
    /// Used when the caller sends no `grpc-timeout`; nil = none (the route's `timeout` still caps).
    public var defaultTimeout: Duration?
    /// A larger message is RESOURCE_EXHAUSTED.
    public var maxMessageSize = 4 << 20
    /// gRPC-Web callers (binary and `-text`, HTTP/1.1 and HTTP/2) are translated to gRPC.
    public var web = false
    /// REST/JSON callers are transcoded to gRPC by the methods' `google.api.http` rules.
    public var transcode: GRPCTranscodeConfig?

    public init(defaultTimeout: Duration? = nil, maxMessageSize: Int = 4 << 20) {
        self.defaultTimeout = defaultTimeout
        self.maxMessageSize = maxMessageSize
    }
}

/// `routes[].grpc.transcode`: the descriptor set and the services it exposes as REST/JSON.
public struct GRPCTranscodeConfig: Sendable {
    /// A FileDescriptorSet (protoc --include_imports --descriptor_set_out); relative paths are
    /// from the working directory.
    public var descriptors: String
    public var descriptorsLocation: ConfigLocation
    /// Full service names; empty: every service in the set with HTTP rules.
    public var services: [String] = []
    public var servicesLocation: ConfigLocation?
    /// JSON field names as in the .proto rather than lowerCamelCase.
    public var useProtoNames = false
    /// Fields without presence printed at their defaults too.
    public var alwaysPrintPrimitiveFields = false

    public init(descriptors: String, descriptorsLocation: ConfigLocation) {
        self.descriptors = descriptors
        self.descriptorsLocation = descriptorsLocation
    }
}

/// `routes[].websocket`: WebSocket upgrades on this route are proxied, frame by frame.
public struct WebSocketConfig: Sendable, Equatable {
    public var enabled = true
    /// A larger message (all its frames) closes the tunnel with 1009 both ways.
    public var maxMessageSize = 1 << 20
    /// No frame either way for this long closes with 1001 both ways; nil = never.
    public var idleTimeout: Duration? = .seconds(600)
    /// A side silent this long gets a ping from the gateway; no pong by the next one drops it.
    /// nil = never.
    public var pingInterval: Duration? = .seconds(30)
    /// Allowed subprotocols; empty = the client's list passes through.
    public var subprotocols: [String] = []

    public init() {}
}

/// `routes[].sse`: once a response is an event stream, the route's `timeout` stops applying;
/// these apply instead.
public struct SSEConfig: Sendable, Equatable {
    /// A `: keep-alive` comment after this much upstream silence; nil = never.
    public var heartbeat: Duration? = .seconds(15)
    /// No upstream bytes for this long ends the stream; nil = never (the default).
    public var idleTimeout: Duration?
    /// One upstream subscription per URL (and forwarded identity), shared by every client.
    public var fanout = false
    /// Fan-out: the last this many events are kept to resume a client by `Last-Event-ID`.
    public var replay = 100

    public init(heartbeat: Duration? = .seconds(15), idleTimeout: Duration? = nil, fanout: Bool = false, replay: Int = 100) {
        self.heartbeat = heartbeat
        self.idleTimeout = idleTimeout
        self.fanout = fanout
        self.replay = replay
    }
}

/// `routes[].graphql`: a GraphQL endpoint over the REST upstreams its schema binds.
public struct GraphQLRouteConfig: Sendable {
    /// SDL file, as written (relative paths are from the working directory).
    public var schema: String
    public var schemaLocation: ConfigLocation
    public var introspection = true
    public var batchingEnabled = true
    public var maxOperations = 10
    /// Each REST call an operation makes.
    public var upstreamTimeout: Duration = .seconds(10)
    /// Adds `x-causeway-upstream-calls` to responses.
    public var debug = false
    public var limits = Limits()
    /// Automatic persisted queries.
    public var persistedQueries = true
    /// Per event loop: parsed documents kept, and persisted queries kept.
    public var cacheSize = 10000

    /// Checked before an operation runs.
    public struct Limits: Sendable {
        public var maxDepth = 12
        public var maxAliases = 30
        public var maxRootFields = 20
        public var maxComplexity = 5000
        public var maxTokens = 10000
        /// Bytes of query text; larger documents are refused before they are parsed.
        public var maxDocumentSize = 256 << 10
    }

    public init(schema: String, schemaLocation: ConfigLocation) {
        self.schema = schema
        self.schemaLocation = schemaLocation
    }
}

/// `routes[].compression`: response encoding (and optionally request decoding) for a route.
public struct CompressionConfig: Sendable {
    public var enabled = true
    /// "br" and/or "gzip", in server preference order (ties between equal client q-values).
    public var algorithms = ["br", "gzip"]
    /// Bodies known to be smaller are sent as they are.
    public var minSize = 1024
    public var gzipLevel = 6
    public var brotliQuality = 4
    /// Media types compressed ("text/*" style wildcards).
    public var contentTypes = ["text/*", "application/json", "application/javascript", "application/xml",
                               "application/graphql-response+json", "image/svg+xml"]
    /// Decode gzip/br request bodies for the upstream.
    public var requestDecompression = false
    /// A decoded request body more than this many times its encoded size is refused (413).
    public var maxDecompressionRatio = 100

    public init() {}
}

public struct RouteMatch: Sendable {
    public enum Path: Sendable, Equatable {
        case exact(String)
        case prefix(String)
        case regex(String)
    }

    /// Lowercased; "*.example.com" matches any subdomain.
    public var host: String?
    public var path: Path
    public var methods: [String]?
    public var headers: [(name: String, value: String)]

    public init(host: String? = nil, path: Path, methods: [String]? = nil, headers: [(name: String, value: String)] = []) {
        self.host = host
        self.path = path
        self.methods = methods
        self.headers = headers
    }
}

public struct HeaderOperations: Sendable {
    public var toSet: [(name: String, value: String)]
    public var toRemove: [String]

    public init(toSet: [(name: String, value: String)] = [], toRemove: [String] = []) {
        self.toSet = toSet
        self.toRemove = toRemove
    }

    public var isEmpty: Bool { toSet.isEmpty && toRemove.isEmpty }
}
