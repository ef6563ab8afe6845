import CausewayConfig
import CausewayHTTP
import CausewayTranscoding
import HTTPTypes

/// The route table, compiled once from config: host, path, method and header matches, first
/// match in file order wins.
///
/// A request whose host, path and headers match some routes but whose method matches none gets
/// 405 with `Allow` naming the methods those routes take; a request nothing matches gets 404.
public struct Router: Sendable {
    public enum Decision {
        case route(CompiledRoute)
        case notFound
        case methodNotAllowed(allow: [String])
    }

    public let routes: [CompiledRoute]

    public init(routes: [CompiledRoute]) {
        self.routes = routes
    }

    public func route(_ request: HTTPRequest) -> Decision {
        let fullPath = request.path ?? "/"
        let path = fullPath.firstIndex(of: "?").map { fullPath[..<$0] } ?? fullPath[...]
        let host = Self.normalizedHost(request.authority)
        var allow: [String] = []
        // A CORS preflight goes to a route with `cors` whatever its methods: the route answers it.
        let preflight = request.method == .options && request.headerFields[CORSFilter.requestMethod] != nil
        for route in routes where route.matches(host: host, path: path, fields: request.headerFields) {
            // A transcoding route also takes its REST paths; their rules decide the methods.
            guard let methods = route.methods, !route.matchedByTranscoder(path), !(preflight && route.config.cors != nil) else {
                return .route(route)
            }
            if methods.contains(request.method.rawValue) { return .route(route) }
            for method in methods where !allow.contains(method) { allow.append(method) }
        }
        return allow.isEmpty ? .notFound : .methodNotAllowed(allow: allow)
    }

    /// Lower-cased host without port ("API.example.com:8080" → "api.example.com").
    static func normalizedHost(_ authority: String?) -> Substring {
        guard let authority else { return "" }
        var host = authority[...]
        if host.hasPrefix("[") {
            if let close = host.firstIndex(of: "]") { host = host[...close] }
        } else if let colon = host.lastIndex(of: ":") {
            host = host[..<colon]
        }
        if host.utf8.contains(where: { $0 >= 0x41 && $0 <= 0x5A }) { return Substring(host.lowercased()) }
        return host
    }
}

/// One route, ready to match and to run. A class: every exchange and task holds it, and a
/// reference is one retain where this struct's copy was one per field (RouteConfig is large).
public final class CompiledRoute: Sendable {
    public enum PathMatcher: Sendable {
        case exact(String)
        case prefix(String)
        case regex(SharedRegex)
    }

    public let name: String
    /// Position in the route table (and in the snapshot's plans).
    public let index: Int
    public let config: RouteConfig
    let hostExact: String?
    /// ".example.com" for "*.example.com".
    let hostSuffix: String?
    let path: PathMatcher
    let methods: [String]?
    let headers: [(name: HTTPField.Name, value: String)]
    /// `grpc.transcode`: the REST paths of its rules route here too (loaded by the snapshot).
    public let transcoder: Transcoder?

    public init(config: RouteConfig, index: Int, transcoder: Transcoder? = nil) throws {
        self.transcoder = transcoder
        self.name = config.name
        self.index = index
        self.config = config
        if let host = config.match.host, host.hasPrefix("*.") {
            hostExact = nil
            hostSuffix = String(host.dropFirst())
        } else {
            hostExact = config.match.host
            hostSuffix = nil
        }
        switch config.match.path {
        case .exact(let value): path = .exact(value)
        case .prefix(let value): path = .prefix(value)
        case .regex(let pattern): path = .regex(try SharedRegex(pattern))
        }
        methods = config.match.methods
        headers = config.match.headers.compactMap { entry in HTTPField.Name(entry.name).map { ($0, entry.value) } }
    }

    func matches(host: Substring, path requestPath: Substring, fields: HTTPFields) -> Bool {
        if let hostExact, host != hostExact { return false }
        if let hostSuffix, !(host.hasSuffix(hostSuffix) && host.count > hostSuffix.count) { return false }
        for (name, value) in headers where !fields[values: name].contains(value) {
            return false
        }
        return matchesPath(requestPath) || matchedByTranscoder(requestPath)
    }

    private func matchesPath(_ requestPath: Substring) -> Bool {
        switch path {
        case .exact(let value): requestPath == value
        case .prefix(let value): requestPath.hasPrefix(value)
        case .regex(let regex): regex.wholeMatch(requestPath)
        }
    }

    /// Whether only a transcoding rule (not the route's own match) takes `requestPath`.
    func matchedByTranscoder(_ requestPath: Substring) -> Bool {
        guard let transcoder, !matchesPath(requestPath) else { return false }
        return transcoder.matchesPath(requestPath)
    }

    /// The upstream path after `rewrite.path_prefix` (query kept).
    func rewrittenPath(_ path: String) -> String {
        guard let replacement = config.rewritePathPrefix, case .prefix(let prefix) = self.path,
            path.hasPrefix(prefix)
        else { return path }
        var rest = path.dropFirst(prefix.count)
        // "/api/v1/users" → "/users": avoid "//x" when both sides carry the slash.
        if replacement.hasSuffix("/") && rest.hasPrefix("/") { rest = rest.dropFirst() }
        let result = replacement + rest
        return result.isEmpty ? "/" : result
    }
}

/// A compiled regular expression shared by every event loop. Matching does not mutate it.
public final class SharedRegex: @unchecked Sendable {
    private let regex: Regex<AnyRegexOutput>

    init(_ pattern: String) throws {
        regex = try Regex(pattern)
    }

    func wholeMatch(_ text: Substring) -> Bool {
        (try? regex.wholeMatch(in: text)) != nil
    }
}
