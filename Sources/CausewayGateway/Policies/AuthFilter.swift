import CausewayConfig
import CausewayHTTP
import CausewayTranscoding
import COpenSSL
import HTTPTypes
import NIOCore

/// An identity provider a route may name in `auth.providers`: it finds its credential in the
/// request and says who the caller is.
protocol AuthProvider: Sendable {
    var name: String { get }
    /// How a 401 tells the client to authenticate (`WWW-Authenticate`).
    var challenge: String { get }
    /// Headers this provider sets upstream from claims: a client's own copies are removed.
    var forwardedHeaders: [HTTPField.Name] { get }
    /// `cache`: this loop's verified credentials for this provider.
    func authenticate(_ exchange: Exchange, cache: TokenCache?) -> AuthResult
    func forwarded(_ claims: [String: ClaimValue]?) -> [(HTTPField.Name, String)]
    /// What the provider keeps per loop (an introspection client), in its `TokenCache`.
    func loopState(on eventLoop: any EventLoop) -> AnyObject?
}

extension AuthProvider {
    var forwardedHeaders: [HTTPField.Name] { [] }
    func forwarded(_ claims: [String: ClaimValue]?) -> [(HTTPField.Name, String)] { [] }
    func loopState(on eventLoop: any EventLoop) -> AnyObject? { nil }
}

enum AuthResult: Sendable {
    /// No credential of this provider's kind in the request.
    case absent
    case invalid(String)
    case authenticated(consumer: String, claims: [String: ClaimValue]?)
    /// The provider could not decide (its identity provider is down): 503, not 401.
    case unavailable(String)
    /// Decided later, on the exchange's loop (an introspection round trip).
    case pending(EventLoopFuture<AuthResult>)
}

/// `auth.api_keys.NAME`: the key from its sources, hashed (SHA-256) and looked up among the
/// stored hashes, so the keys themselves are never kept. Comparing hashes rather than keys is
/// what makes this constant-time in effect: how long the lookup takes can depend only on the
/// SHA-256 of what the caller sent, which tells them nothing about any stored key.
struct APIKeyAuth: AuthProvider {
    let name: String
    let sources: [CredentialSource]
    let keys: [[UInt8]: String]
    private let compiled: [Credentials.Source]

    init(name: String, sources: [CredentialSource], keys: [[UInt8]: String]) {
        self.name = name
        self.sources = sources
        self.keys = keys
        compiled = Credentials.Source.compile(sources)
    }

    var challenge: String {
        let where_ = sources.map { source -> String in
            switch source {
            case .header(let name): "header=\"\(name)\""
            case .query(let name): "query=\"\(name)\""
            case .cookie(let name): "cookie=\"\(name)\""
            }
        }
        return "ApiKey realm=\"causeway\", " + where_.joined(separator: ", ")
    }

    func authenticate(_ exchange: Exchange, cache: TokenCache?) -> AuthResult {
        guard let key = Credentials.find(compiled, in: exchange.request), !key.isEmpty else { return .absent }
        // Keys are short secrets; anything longer than 4 KiB is not one (and is not hashed).
        guard key.utf8.count <= 4096 else { return .invalid("the API key is too long") }
        guard let consumer = keys[Credentials.sha256(key)] else { return .invalid("unknown API key") }
        return .authenticated(consumer: consumer, claims: nil)
    }
}

enum Credentials {
    /// The first source that has a value: a header (for `authorization`, the token after
    /// "Bearer "), a query parameter, or a cookie.
    /// A source with its header name made once, not per request.
    enum Source: Sendable {
        case header(HTTPField.Name)
        case query(String)
        case cookie(String)

        static func compile(_ sources: [CredentialSource]) -> [Source] {
            sources.compactMap { source in
                switch source {
                case .header(let name): HTTPField.Name(name).map(Source.header)
                case .query(let name): .query(name)
                case .cookie(let name): .cookie(name)
                }
            }
        }
    }

    static func find(_ sources: [Source], in request: HTTPRequest) -> String? {
        for source in sources {
            switch source {
            case .header(let field):
                guard let value = request.headerFields[field] else { continue }
                if field == .authorization {
                    guard value.utf8.count > 7, value.caseInsensitiveHasPrefix("bearer ") else { continue }
                    let token = value.utf8.dropFirst(7)
                    // Spaces around the token are tolerated; inside it they make it invalid anyway.
                    if token.first != 0x20 && token.last != 0x20 { return String(Substring(token)) }
                    return String(Substring(token)).trimmingSpaces()
                }
                return value
            case .query(let name):
                guard let path = request.path, let mark = path.firstIndex(of: "?") else { continue }
                for pair in path[path.index(after: mark)...].split(separator: "&") {
                    let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                    if parts[0] == name, parts.count == 2 {
                        return PathTemplate.percentDecoded(String(parts[1]), plusIsSpace: true) ?? String(parts[1])
                    }
                }
            case .cookie(let name):
                for header in request.headerFields[values: .cookie] {
                    for pair in header.split(separator: ";") {
                        let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                        if parts.count == 2, parts[0].trimmingCharacters(in: " ") == name {
                            return String(parts[1].trimmingCharacters(in: " \""))
                        }
                    }
                }
            }
        }
        return nil
    }

    static func sha256(_ text: String) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        var bytes = Array(text.utf8)
        _ = bytes.withUnsafeMutableBufferPointer { input in
            digest.withUnsafeMutableBufferPointer { out in SHA256(input.baseAddress, input.count, out.baseAddress) }
        }
        return digest
    }

    static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        return a.withUnsafeBytes { x in b.withUnsafeBytes { y in CRYPTO_memcmp(x.baseAddress, y.baseAddress, a.count) == 0 } }
    }
}

/// `routes[].auth` and `routes[].authorize`: any listed provider may succeed; with `optional`,
/// a request carrying no credential at all passes as anonymous (a bad one still fails).
/// Failure: 401 with `WWW-Authenticate` (RFC 6750's `error="invalid_token"` for tokens); an
/// authenticated caller who lacks a scope or claim: 403. The consumer is forwarded upstream as
/// `x-consumer`, and a JWT provider's `forward_claims` as their headers (the client's own
/// copies of all of them removed first). Each loop gets its own instance, with its caches.
final class AuthFilter: FilterFactory {
    let providers: [any AuthProvider]
    let optional: Bool
    let authorize: AuthorizeConfig?
    /// Headers no client may set for itself on this route.
    let reserved: [HTTPField.Name]

    static let consumerHeader = HTTPField.Name("x-consumer")!
    static let wwwAuthenticate = HTTPField.Name("www-authenticate")!

    init(providers: [any AuthProvider], optional: Bool, authorize: AuthorizeConfig?) {
        self.providers = providers
        self.optional = optional
        self.authorize = authorize
        reserved = [Self.consumerHeader] + providers.flatMap(\.forwardedHeaders)
    }

    func makeFilter(on eventLoop: any EventLoop) -> any HTTPFilter {
        for case let jwt as JWTAuth in providers { jwt.keys.startFetching() }
        return LoopAuthFilter(shared: self, eventLoop: eventLoop)
    }
}

final class LoopAuthFilter: HTTPFilter {
    private let shared: AuthFilter
    private let caches: [TokenCache]

    init(shared: AuthFilter, eventLoop: any EventLoop) {
        self.shared = shared
        caches = shared.providers.map { TokenCache(state: $0.loopState(on: eventLoop)) }
    }

    func filterRequest(_ exchange: Exchange) -> FilterOutcome {
        for name in shared.reserved { exchange.request.headerFields[name] = nil }
        return evaluate(exchange, from: 0, problems: [])
    }

    /// Providers in order from `start`; one that must wait suspends the chain and resumes here.
    private func evaluate(_ exchange: Exchange, from start: Int, problems: [String]) -> FilterOutcome {
        var problems = problems
        for index in start..<shared.providers.count {
            let result = shared.providers[index].authenticate(exchange, cache: caches[index])
            if case .pending(let later) = result {
                // Completed on this loop (the provider's client lives here), so the rest runs here too.
                let sofar = problems
                return .suspend(later.assumeIsolated().map { [self] result in
                    var problems = sofar
                    if let outcome = settle(exchange, index, result, &problems) { return outcome }
                    return evaluate(exchange, from: index + 1, problems: problems)
                }.nonisolated())
            }
            if let outcome = settle(exchange, index, result, &problems) { return outcome }
        }
        if problems.isEmpty && shared.optional && shared.authorize == nil { return .continue }
        let why = problems.first ?? "no credential was sent"
        var headers = HTTPFields()
        for provider in shared.providers {
            let challenge = problems.isEmpty ? provider.challenge
                : provider.challenge + ", error=\"invalid_token\", error_description=\"\(why.replacingOccurrences(of: "\"", with: "'"))\""
            headers.append(HTTPField(name: AuthFilter.wwwAuthenticate, value: challenge))
        }
        return .fail(GatewayError(status: .unauthorized, code: "unauthenticated", message: why, headers: headers))
    }

    /// The outcome a provider's answer decides, or nil to ask the next provider.
    private func settle(_ exchange: Exchange, _ index: Int, _ result: AuthResult, _ problems: inout [String]) -> FilterOutcome? {
        switch result {
        case .absent, .pending: return nil
        case .invalid(let why):
            problems.append(why)
            return nil
        case .unavailable(let why):
            return .fail(GatewayError(status: .serviceUnavailable, code: "auth_unavailable", message: why))
        case .authenticated(let consumer, let claims):
            exchange.attributes.consumer = consumer
            exchange.attributes.claims = claims
            exchange.request.headerFields[AuthFilter.consumerHeader] = consumer
            for (name, value) in shared.providers[index].forwarded(claims) { exchange.request.headerFields[name] = value }
            if let refusal = refused(claims) { return .fail(refusal) }
            return .continue
        }
    }

    /// 403 when the caller lacks a required scope or claim value.
    private func refused(_ claims: [String: ClaimValue]?) -> GatewayError? {
        guard let authorize = shared.authorize else { return nil }
        var granted: Set<Substring> = []
        for name in ["scope", "scp"] {
            switch claims?[name] {
            case .string(let text)?: granted.formUnion(text.split(separator: " "))
            case .array(let items)?: for case .string(let text) in items { granted.insert(Substring(text)) }
            default: break
            }
        }
        if let missing = authorize.scopes.first(where: { !granted.contains(Substring($0)) }) {
            return GatewayError(status: .forbidden, code: "forbidden", message: "the credential lacks the scope \(missing)")
        }
        for (name, value) in authorize.claims {
            let matches: Bool = switch claims?[name] {
            case .string(let text)?: text == value
            case .number(let number)?: String(number) == value || (number.rounded() == number && String(Int64(number)) == value)
            case .bool(let flag)?: String(flag) == value
            case .array(let items)?: items.contains(.string(value))
            default: false
            }
            if !matches { return GatewayError(status: .forbidden, code: "forbidden", message: "the credential's claim \(name) does not allow this route") }
        }
        return nil
    }
}
