import CausewayConfig
import CausewayHTTP
import CausewayTranscoding
import CausewayUpstream
import HTTPTypes
import NIOCore
import NIOPosix

/// `auth.introspection.NAME`: an opaque bearer token checked with the identity provider's
/// introspection endpoint (RFC 7662), with the gateway's client credentials (HTTP Basic).
/// `active: false` is a 401; the provider down or answering nonsense is a 503 (the token may be
/// fine). Answers are cached per loop for `cache_ttl`, never past the token's `exp`, and
/// concurrent requests with the same token wait on one introspection.
struct IntrospectionAuth: AuthProvider {
    let name: String
    let config: IntrospectionProviderConfig
    let endpoint: UpstreamEndpoint
    let authority: String
    let path: String
    let secure: Bool
    private let sources: [Credentials.Source]

    init(config: IntrospectionProviderConfig) throws {
        name = config.name
        self.config = config
        sources = Credentials.Source.compile(config.from)
        secure = config.url.hasPrefix("https://")
        let rest = config.url.dropFirst(secure ? 8 : 7)
        let authority = rest.prefix { $0 != "/" }
        self.authority = String(authority)
        path = rest.count > authority.count ? String(rest.dropFirst(authority.count)) : "/"
        let defaultPort = secure ? 443 : 80
        var host = String(authority), port = defaultPort
        if let colon = authority.lastIndex(of: ":"), !authority.hasSuffix("]"), let value = Int(authority[authority.index(after: colon)...]) {
            host = String(authority[..<colon])
            port = value
        }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        var tls: UpstreamTLS?
        if secure {
            tls = UpstreamTLS(context: TLSContextBox(try TLSClientContext(.init(verify: true, alpnProtocols: ["http/1.1"]))), serverName: host)
        }
        endpoint = UpstreamEndpoint(address: try SocketAddress.makeAddressResolvingHost(host, port: port), label: String(authority),
                                    weight: 1, tls: tls)
    }

    var challenge: String { "Bearer realm=\"causeway\"" }

    func loopState(on eventLoop: any EventLoop) -> AnyObject? {
        IntrospectionLoop(provider: self, eventLoop: eventLoop)
    }

    func authenticate(_ exchange: Exchange, cache: TokenCache?) -> AuthResult {
        guard let token = Credentials.find(sources, in: exchange.request), !token.isEmpty else { return .absent }
        guard token.utf8.count <= 8192 else { return .invalid("the token is larger than 8192 bytes") }
        guard let loop = cache?.state as? IntrospectionLoop else { return .unavailable("token introspection is not set up on this loop") }
        return loop.introspect(token)
    }
}

/// One loop's introspection client, cache and waiting lists for one provider.
final class IntrospectionLoop {
    private let provider: IntrospectionAuth
    private let eventLoop: any EventLoop
    private let cluster: UpstreamCluster
    private let deadlines: UpstreamDeadlines
    private let credentials: String
    private var cache: [String: (result: AuthResult, until: Double)] = [:]
    private var waiting: [String: EventLoopPromise<AuthResult>] = [:]
    static let capacity = 10_000

    init(provider: IntrospectionAuth, eventLoop: any EventLoop) {
        self.provider = provider
        self.eventLoop = eventLoop
        cluster = UpstreamCluster(name: "introspection:\(provider.name)", endpoints: [provider.endpoint], protocol: .http1,
                                  pool: PoolConfig(maxConnections: 16, maxPending: 1024), eventLoop: eventLoop)
        deadlines = UpstreamDeadlines(timeout: .seconds(5), eventLoop: eventLoop)
        credentials = "Basic " + Base64.encode(Array("\(Self.formEncoded(provider.config.clientID)):\(Self.formEncoded(provider.config.clientSecret))".utf8))
    }

    deinit {
        cluster.retire()
    }

    func introspect(_ token: String) -> AuthResult {
        let now = JWTAuth.wallClock()
        if let hit = cache[token] {
            if now <= hit.until { return hit.result }
            cache[token] = nil
        }
        if let pending = waiting[token] { return .pending(pending.futureResult) }
        let promise = eventLoop.makePromise(of: AuthResult.self)
        waiting[token] = promise
        var request = HTTPRequest(method: .post, scheme: provider.secure ? "https" : "http", authority: provider.authority, path: provider.path)
        request.headerFields[.contentType] = "application/x-www-form-urlencoded"
        request.headerFields[.accept] = "application/json"
        request.headerFields[.authorization] = credentials
        let body = ByteBuffer(string: "token=\(Self.formEncoded(token))&token_type_hint=access_token")
        let collector = UpstreamBodyCollector(limit: 256 << 10) { [self] answer in finished(token, answer, promise) }
        let upstream = UpstreamExchange(cluster: cluster, request: request, body: .buffered(body), eventLoop: eventLoop, deadlines: deadlines,
                                        timeoutMessage: "the introspection endpoint did not answer within 5 s", delegate: collector)
        collector.upstream = upstream
        upstream.start()
        return .pending(promise.futureResult)
    }

    private func finished(_ token: String, _ answer: Result<(status: Int, body: [UInt8]), GatewayError>, _ promise: EventLoopPromise<AuthResult>) {
        waiting[token] = nil
        let now = JWTAuth.wallClock()
        let result: AuthResult
        var until = now + Double(provider.config.cacheTTL.components.seconds)
        switch answer {
        case .failure(let error):
            result = .unavailable("token introspection failed: \(error.message)")
        case .success(let (status, body)) where status != 200:
            result = .unavailable("token introspection failed: the endpoint answered HTTP \(status) (\(body.count) bytes)")
        case .success(let (_, body)):
            if case .object(let members)? = try? JSONParser.parse(body, maxDepth: 16),
                case .bool(let active)? = members.first(where: { $0.0 == "active" })?.1
            {
                if active {
                    var claims: [String: ClaimValue] = [:]
                    for (name, value) in members { claims[name] = JWTAuth.claim(value) }
                    let consumer: String = switch (claims["sub"], claims["username"], claims["client_id"]) {
                    case (.string(let sub)?, _, _): sub
                    case (_, .string(let user)?, _): user
                    case (_, _, .string(let client)?): client
                    default: "anonymous-token"
                    }
                    if case .number(let exp)? = claims["exp"] { until = min(until, exp) }
                    result = now > until ? .invalid("the token has expired") : .authenticated(consumer: consumer, claims: claims)
                } else {
                    result = .invalid("the token is not active")
                }
            } else {
                result = .unavailable("token introspection failed: the answer is not an RFC 7662 JSON object with \"active\"")
            }
        }
        if case .unavailable = result {} else {
            if cache.count >= Self.capacity { cache.removeAll(keepingCapacity: true) }
            cache[token] = (result, until)
        }
        promise.succeed(result)
    }

    /// application/x-www-form-urlencoded (RFC 6749 §2.3.1 for the client credentials too).
    static func formEncoded(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case 0x30...0x39, 0x41...0x5A, 0x61...0x7A, UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "*"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            case 0x20: out += "+"
            default: out += "%" + String(byte, radix: 16, uppercase: true).leftPadded()
            }
        }
        return out
    }
}

extension String {
    fileprivate func leftPadded() -> String { count == 1 ? "0" + self : self }
}
