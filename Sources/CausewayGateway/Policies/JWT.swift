import CausewayConfig
import CausewayHTTP
import CausewayTranscoding
import HTTPTypes
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// `auth.jwt.NAME`: a bearer token verified here (RFC 7519, JWS compact form):
///
/// - its `alg` must be one the provider lists (never `none`), and the key must fit it: an RSA
///   key for RS/PS, the right curve for ES, Ed25519 for EdDSA, a shared secret only for HS
///   (so an RSA public key can never be used as an HMAC secret);
/// - `kid` picks the key (without one, the only key that fits);
/// - `exp`, `nbf` and `iat` are checked with `leeway`, then `iss` and `aud`.
///
/// Verified tokens are cached per loop until their `exp` (a warm request costs one lookup).
struct JWTAuth: AuthProvider {
    let name: String
    let config: JWTProviderConfig
    let keys: JWTKeySetSource
    let algorithms: Set<JWTAlgorithm>
    let forward: [(claim: String, header: HTTPField.Name)]
    private let sources: [Credentials.Source]

    init(config: JWTProviderConfig, keys: JWTKeySetSource) {
        sources = Credentials.Source.compile(config.from)
        name = config.name
        self.config = config
        self.keys = keys
        algorithms = Set(config.algorithms.compactMap(JWTAlgorithm.init(rawValue:)))
        forward = config.forwardClaims.compactMap { entry in HTTPField.Name(entry.header).map { (entry.claim, $0) } }
    }

    var challenge: String { "Bearer realm=\"causeway\"" }
    var forwardedHeaders: [HTTPField.Name] { forward.map(\.header) }

    static let maxTokenSize = 8192

    func authenticate(_ exchange: Exchange, cache: TokenCache?) -> AuthResult {
        guard let token = Credentials.find(sources, in: exchange.request), !token.isEmpty else { return .absent }
        guard token.utf8.count <= Self.maxTokenSize else { return .invalid("the token is larger than \(Self.maxTokenSize) bytes") }
        let now = Self.wallClock()
        if let hit = cache?.lookup(token, now: now) { return .authenticated(consumer: hit.consumer, claims: hit.claims) }
        switch verify(token, now: now, contexts: cache?.verifiers) {
        case .success(let (consumer, claims, expires)):
            cache?.store(token, consumer: consumer, claims: claims, expires: expires, now: now)
            return .authenticated(consumer: consumer, claims: claims)
        case .failure(let error):
            return .invalid(error.message)
        }
    }

    func forwarded(_ claims: [String: ClaimValue]?) -> [(HTTPField.Name, String)] {
        forward.compactMap { entry in
            switch claims?[entry.claim] {
            case .string(let value)?: (entry.header, value)
            case .number(let value)?: (entry.header, value.rounded() == value && abs(value) < 1e15 ? String(Int64(value)) : String(value))
            case .bool(let value)?: (entry.header, String(value))
            default: nil
            }
        }
    }

    struct Refusal: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }

    func verify(_ token: String, now: Double, contexts: VerifierContexts? = nil) -> Result<(String, [String: ClaimValue], Double?), Refusal> {
        let bytes = Array(token.utf8)
        // The compact form's alphabet only: base64url and two dots. No padding, no other spelling.
        let alphabet = Self.tokenAlphabet
        guard bytes.allSatisfy({ alphabet[Int($0)] }) else { return .failure(.init("the token is not base64url")) }
        let dots = bytes.indices.filter { bytes[$0] == UInt8(ascii: ".") }
        guard dots.count == 2 else { return .failure(.init("the token is not a signed JWT (three parts)")) }
        guard let headerBytes = Base64.decode(bytes: bytes[..<dots[0]]),
            let payloadBytes = Base64.decode(bytes: bytes[(dots[0] + 1)..<dots[1]]),
            let signature = Base64.decode(bytes: bytes[(dots[1] + 1)...])
        else { return .failure(.init("the token is not base64url")) }
        guard case .object(let header)? = try? JSONParser.parse(headerBytes, maxDepth: 8) else {
            return .failure(.init("the token's header is not a JSON object"))
        }
        guard case .string(let algName)? = header.first(where: { $0.0 == "alg" })?.1 else { return .failure(.init("the token has no alg")) }
        guard let algorithm = JWTAlgorithm(rawValue: algName), algorithms.contains(algorithm) else {
            return .failure(.init("the token's algorithm \(algName.prefix(16)) is not accepted"))
        }
        if header.contains(where: { $0.0 == "crit" }) { return .failure(.init("the token has critical header extensions")) }
        var kid: String?
        if let value = header.first(where: { $0.0 == "kid" })?.1 {
            guard case .string(let text) = value else { return .failure(.init("the token's kid is not a string")) }
            kid = text
        }
        let set = keys.current
        guard let key = set.key(kid: kid, for: algorithm) else {
            if let kid, !set.hasKey(kid) { keys.unknownKid(kid) }
            return .failure(.init(kid.map { "no \(algName) key has kid \($0.prefix(64))" } ?? "no single \(algName) key fits a token without kid"))
        }
        guard key.verify(algorithm, signature: signature, input: bytes[..<dots[1]], contexts: contexts) else {
            return .failure(.init("the token's signature does not verify"))
        }
        guard case .object(let payload)? = try? JSONParser.parse(payloadBytes, maxDepth: 32) else {
            return .failure(.init("the token's claims are not a JSON object"))
        }
        var claims: [String: ClaimValue] = [:]
        for (name, value) in payload { claims[name] = Self.claim(value) }
        let leeway = Double(config.leeway.components.seconds)
        func time(_ name: String) -> Result<Double?, Refusal> {
            switch claims[name] {
            case nil: .success(nil)
            case .number(let value)?: .success(value)
            default: .failure(.init("the token's \(name) is not a number"))
            }
        }
        guard case .success(let exp) = time("exp"), case .success(let nbf) = time("nbf"), case .success(let iat) = time("iat") else {
            return .failure(.init("the token's exp, nbf or iat is not a number"))
        }
        if let exp, now > exp + leeway { return .failure(.init("the token has expired")) }
        if let nbf, now + leeway < nbf { return .failure(.init("the token is not valid yet")) }
        if let iat, now + leeway < iat { return .failure(.init("the token was issued in the future")) }
        if let issuer = config.issuer, claims["iss"] != .string(issuer) { return .failure(.init("the token's issuer is not accepted")) }
        if !config.audiences.isEmpty {
            let audiences: [String] = switch claims["aud"] {
            case .string(let one)?: [one]
            case .array(let many)?: many.compactMap { if case .string(let text) = $0 { text } else { nil } }
            default: []
            }
            guard audiences.contains(where: config.audiences.contains) else { return .failure(.init("the token's audience is not accepted")) }
        }
        guard case .string(let subject)? = claims["sub"] else { return .failure(.init("the token has no subject (sub)")) }
        return .success((subject, claims, exp))
    }

    static func claim(_ value: JSONValue) -> ClaimValue {
        switch value {
        case .null: .null
        case .bool(let flag): .bool(flag)
        case .number(let text): .number(Double(text) ?? 0)
        case .string(let text), .text(let text): .string(text)
        case .array(let items): .array(items.map(claim))
        case .object(let members): .object(Dictionary(members.map { ($0.0, claim($0.1)) }, uniquingKeysWith: { $1 }))
        }
    }

    static let tokenAlphabet: [Bool] = {
        var table = [Bool](repeating: false, count: 256)
        for byte in Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.".utf8) { table[Int(byte)] = true }
        return table
    }()

    /// Seconds since the epoch (token times are wall-clock times).
    static func wallClock() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}

/// Verified tokens on one loop, until their `exp` (at most 5 minutes without one). Bounded:
/// full, it starts over (verifying again costs one signature check per token).
final class TokenCache {
    /// This loop's OpenSSL verification contexts for the provider's keys.
    let verifiers = VerifierContexts()
    /// The provider's own per-loop state (an introspection client), if it keeps any.
    let state: AnyObject?

    init(state: AnyObject? = nil) {
        self.state = state
    }
    private var entries: [String: (consumer: String, claims: [String: ClaimValue], until: Double)] = [:]
    static let capacity = 10_000

    func lookup(_ token: String, now: Double) -> (consumer: String, claims: [String: ClaimValue])? {
        guard let entry = entries[token] else { return nil }
        guard now <= entry.until else {
            entries[token] = nil
            return nil
        }
        return (entry.consumer, entry.claims)
    }

    func store(_ token: String, consumer: String, claims: [String: ClaimValue], expires: Double?, now: Double) {
        if entries.count >= Self.capacity { entries.removeAll(keepingCapacity: true) }
        entries[token] = (consumer, claims, min(expires ?? .infinity, now + 300))
    }
}

/// A JWT provider's keys: from a file (read at load and on reload), or from a URL (fetched at
/// start, every `refresh`, and at most once per 30 s when a token names an unknown `kid`). The
/// last good set stays when a fetch fails. Read on the cold path only (a cached token needs none).
final class JWTKeySetSource: Sendable {
    private let state: Mutex<JWTKeySet>
    private let onUnknownKid: (@Sendable (String) -> Void)?
    /// Starts a URL set's fetching, once: when a loop first runs a route that uses it, so
    /// `causeway validate` and a refused reload never fetch.
    private let starter: Mutex<(@Sendable () -> Void)?>

    init(_ set: JWTKeySet, onUnknownKid: (@Sendable (String) -> Void)? = nil) {
        state = Mutex(set)
        self.onUnknownKid = onUnknownKid
        starter = Mutex(nil)
    }

    func setStart(_ start: @escaping @Sendable () -> Void) {
        starter.withLock { $0 = start }
    }

    func startFetching() {
        let start = starter.withLock { starter -> (@Sendable () -> Void)? in
            defer { starter = nil }
            return starter
        }
        start?()
    }

    var current: JWTKeySet { state.withLock { $0 } }

    func replace(_ set: JWTKeySet) {
        state.withLock { $0 = set }
    }

    func unknownKid(_ kid: String) {
        onUnknownKid?(kid)
    }
}
