import Foundation
import Yams

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Edge policies (docs/security.md): who may call (auth, access), how often (rate_limits), and
/// from which origins browsers may read the answers (cors).

/// `routes[].cors`.
public struct CORSConfig: Sendable {
    /// Exact origins, "*", or "https://*.example.com" (any subdomain, that scheme, no port).
    public var allowOrigins: [String] = []
    public var allowMethods: [String] = ["GET", "HEAD", "POST"]
    /// Lower-cased; a preflight asking for others is refused.
    public var allowHeaders: [String] = []
    public var exposeHeaders: [String] = []
    public var allowCredentials = false
    /// How long browsers may cache a preflight's answer; nil: they decide.
    public var maxAge: Duration?

    public init() {}
}

/// `routes[].access`: CIDR lists; deny wins, and a non-empty allow list admits only its own.
public struct AccessConfig: Sendable {
    public var allow: [CIDR] = []
    public var deny: [CIDR] = []

    public init() {}
}

/// An IPv4 or IPv6 network ("10.0.0.0/8", "::1/128"; a bare address is one host).
public struct CIDR: Sendable, Equatable, CustomStringConvertible {
    /// 4 or 16 bytes.
    public let network: [UInt8]
    public let prefix: Int

    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress.parse(String(parts[0])) else { return nil }
        let bits = address.count * 8
        let prefix: Int
        if parts.count == 2 {
            guard let value = Int(parts[1]), value >= 0, value <= bits, parts[1].allSatisfy(\.isASCII) else { return nil }
            prefix = value
        } else {
            prefix = bits
        }
        self.prefix = prefix
        network = Self.masked(address, prefix)
    }

    /// Whether `address` (4 or 16 bytes) is inside. An IPv4-mapped IPv6 address (::ffff:a.b.c.d)
    /// counts as its IPv4 address.
    public func contains(_ address: [UInt8]) -> Bool {
        var address = address
        if address.count == 16, network.count == 4, address[0..<10].allSatisfy({ $0 == 0 }), address[10] == 0xFF, address[11] == 0xFF {
            address = Array(address[12...])
        }
        guard address.count == network.count else { return false }
        return Self.masked(address, prefix) == network
    }

    private static func masked(_ address: [UInt8], _ prefix: Int) -> [UInt8] {
        var out = address
        for index in out.indices {
            let bitsHere = max(0, min(8, prefix - index * 8))
            out[index] &= bitsHere == 0 ? 0 : UInt8(truncatingIfNeeded: 0xFF << (8 - bitsHere))
        }
        return out
    }

    public var description: String {
        (network.count == 4 ? network.map(String.init).joined(separator: ".") : IPAddress.format(network)) + "/\(prefix)"
    }
}

public enum IPAddress {
    /// 4 bytes for IPv4, 16 for IPv6 (brackets and a zone are not accepted here).
    public static func parse(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }

    static func format(_ bytes: [UInt8]) -> String {
        stride(from: 0, to: 16, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }.joined(separator: ":")
    }
}

/// `rate_limits.NAME`.
public struct RateLimitPolicy: Sendable, Equatable {
    public enum Algorithm: String, Sendable, Equatable {
        case tokenBucket = "token_bucket", slidingWindow = "sliding_window", fixedWindow = "fixed_window"
    }

    public enum Key: Sendable, Equatable {
        case ip, consumer, route, global
        case header(String)
        case claim(String)
    }

    public var name: String
    public var algorithm: Algorithm = .tokenBucket
    /// Requests per window.
    public var requests: Int
    public var window: Duration
    /// token_bucket: the bucket's size (requests admitted at once); defaults to `requests`.
    public var burst: Int?
    public var key: Key = .ip
    /// `local`: this process's loops; `redis`: every replica on the `redis` server.
    public var scope = "local"
    public var onRedisError = "allow"

    public init(name: String, requests: Int, window: Duration) {
        self.name = name
        self.requests = requests
        self.window = window
    }
}

/// `auth`: the identity providers routes may name.
public struct AuthConfig: Sendable {
    public var jwt: [JWTProviderConfig] = []
    public var apiKeys: [APIKeyProvider] = []
    public var introspection: [IntrospectionProviderConfig] = []

    public init() {}

    public var providerNames: [String] { jwt.map(\.name) + apiKeys.map(\.name) + introspection.map(\.name) }
}

/// `auth.introspection.NAME`: OAuth2 token introspection (RFC 7662).
public struct IntrospectionProviderConfig: Sendable {
    public var name: String
    public var url: String
    public var urlLocation: ConfigLocation
    public var clientID = ""
    public var clientSecret = ""
    public var cacheTTL: Duration = .seconds(60)
    public var from: [CredentialSource] = [.header("authorization")]

    public init(name: String, url: String, urlLocation: ConfigLocation) {
        self.name = name
        self.url = url
        self.urlLocation = urlLocation
    }
}

/// `auth.jwt.NAME`.
public struct JWTProviderConfig: Sendable {
    public var name: String
    /// `iss` must equal it; nil: any.
    public var issuer: String?
    /// `aud` must contain one of them; empty: any.
    public var audiences: [String] = []
    /// RS256/384/512, PS256/384/512, ES256/384, EdDSA, HS256/384/512 (HS only when listed).
    public var algorithms: [String] = ["RS256", "ES256"]
    public var jwksFile: String?
    public var jwksURL: String?
    public var refresh: Duration = .seconds(300)
    public var jwksLocation: ConfigLocation
    public var leeway: Duration = .seconds(30)
    public var from: [CredentialSource] = [.header("authorization")]
    /// claim → request header for the upstream.
    public var forwardClaims: [(claim: String, header: String)] = []

    public init(name: String, jwksLocation: ConfigLocation) {
        self.name = name
        self.jwksLocation = jwksLocation
    }
}

/// Where a credential is read from: `header:NAME`, `query:NAME`, `cookie:NAME`.
public enum CredentialSource: Sendable, Equatable {
    case header(String)
    case query(String)
    case cookie(String)

    public init?(_ text: String) {
        let parts = text.split(separator: ":", maxSplits: 1)
        guard parts.count == 2, !parts[1].isEmpty else { return nil }
        let name = String(parts[1])
        switch parts[0] {
        case "header": self = .header(name.lowercased())
        case "query": self = .query(name)
        case "cookie": self = .cookie(name)
        default: return nil
        }
    }
}

/// `auth.api_keys.NAME`: keys stored as SHA-256 hashes, by consumer.
public struct APIKeyProvider: Sendable {
    public var name: String
    public var from: [CredentialSource] = [.header("x-api-key")]
    /// YAML: consumer name → lower-case hex SHA-256 of its key.
    public var keysFile: String
    public var keysLocation: ConfigLocation

    public init(name: String, keysFile: String, keysLocation: ConfigLocation) {
        self.name = name
        self.keysFile = keysFile
        self.keysLocation = keysLocation
    }
}

/// `routes[].auth`: any listed provider may succeed.
public struct RouteAuthConfig: Sendable {
    public var providers: [String]
    /// Anonymous requests (no credential at all) pass with no consumer; a bad credential still fails.
    public var optional = false

    public init(providers: [String]) {
        self.providers = providers
    }
}

/// `routes[].authorize`: what the authenticated caller must hold.
public struct AuthorizeConfig: Sendable {
    /// Every one must be in the token's `scope` (space-separated) or `scp` (list or string).
    public var scopes: [String] = []
    /// Claim → the exact value it must have.
    public var claims: [(name: String, value: String)] = []

    public init() {}
}

extension APIKeyProvider {
    /// Reads `keys_file` (YAML: consumer name → hex SHA-256 of its key) into hash bytes →
    /// consumer. Errors point at `keys_file`, naming the entry.
    public func loadKeys() throws(ConfigError) -> [[UInt8]: String] {
        guard let text = try? String(contentsOfFile: keysFile, encoding: .utf8) else {
            throw keysLocation.error("cannot read the keys file \"\(keysFile)\"")
        }
        let document: Any?
        do {
            document = try Yams.load(yaml: text)
        } catch {
            throw keysLocation.error("\(keysFile): not valid YAML: \(error)")
        }
        guard let entries = document as? [String: Any] else {
            throw keysLocation.error("\(keysFile): expected a mapping of consumer name to the SHA-256 of its key (hex)")
        }
        var keys: [[UInt8]: String] = [:]
        for (consumer, value) in entries.sorted(by: { $0.key < $1.key }) {
            guard let hex = value as? String, let hash = Self.hexBytes(hex), hash.count == 32 else {
                throw keysLocation.error("\(keysFile): \(consumer): expected 64 hex digits (the SHA-256 of the key)")
            }
            if let other = keys[hash] { throw keysLocation.error("\(keysFile): \(consumer) and \(other) have the same key") }
            keys[hash] = consumer
        }
        return keys
    }

    static func hexBytes(_ text: String) -> [UInt8]? {
        let digits = Array(text.lowercased().utf8)
        guard digits.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        for index in stride(from: 0, to: digits.count, by: 2) {
            guard let high = hex(digits[index]), let low = hex(digits[index + 1]) else { return nil }
            out.append(high << 4 | low)
        }
        return out
    }

    private static func hex(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 0x30...0x39: byte - 0x30
        case 0x61...0x66: byte - 0x61 + 10
        default: nil
        }
    }
}

/// `redis`: the server rate limits with `scope: redis` count on.
public struct RedisConfig: Sendable, Equatable {
    public var address: HostPort
    public var password: String?
    /// Connections per event loop.
    public var poolSize = 4
    /// A reply slower than this counts as Redis being down (`on_redis_error` applies).
    public var timeout: Duration = .milliseconds(50)

    public init(address: HostPort) {
        self.address = address
    }
}
