import CausewayConfig
import CausewayHTTP
import HTTPTypes
import NIOCore

/// `routes[].cors` (the Fetch standard's CORS protocol, as browsers check it):
///
/// - A preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered here, 204, and never
///   reaches the upstream (nor the auth and rate-limit filters after this one: browsers send no
///   credentials on a preflight). An origin, method or header not allowed gets 403.
/// - Other requests pass; their responses get `Access-Control-Allow-Origin` (and `-Credentials`,
///   `-Expose-Headers`) when the origin is allowed, none of the CORS headers (the upstream's
///   removed too) when it is not, and `Vary: Origin` whenever the answer depends on the origin.
///
/// Stateless: one instance serves every loop.
final class CORSFilter: HTTPFilter, FilterFactory {
    private let exact: Set<String>
    /// "https://*.example.com" as ("https://", ".example.com").
    private let wildcards: [(scheme: Substring, suffix: Substring)]
    private let anyOrigin: Bool
    private let credentials: Bool
    private let methods: Set<String>
    private let headers: Set<String>
    private let allowMethods: String
    private let exposeHeaders: String?
    private let maxAge: String?

    static let origin = HTTPField.Name("origin")!
    static let requestMethod = HTTPField.Name("access-control-request-method")!
    static let requestHeaders = HTTPField.Name("access-control-request-headers")!
    static let allowOrigin = HTTPField.Name("access-control-allow-origin")!
    static let allowCredentials = HTTPField.Name("access-control-allow-credentials")!
    static let allowMethodsName = HTTPField.Name("access-control-allow-methods")!
    static let allowHeadersName = HTTPField.Name("access-control-allow-headers")!
    static let exposeHeadersName = HTTPField.Name("access-control-expose-headers")!
    static let maxAgeName = HTTPField.Name("access-control-max-age")!
    static let vary = HTTPField.Name("vary")!

    /// `extraAllowHeaders`/`extraExposeHeaders`: what the route's other features need (gRPC-Web's).
    init(config: CORSConfig, extraAllowHeaders: [String] = [], extraExposeHeaders: [String] = []) {
        anyOrigin = config.allowOrigins.contains("*")
        exact = Set(config.allowOrigins.filter { $0 != "*" && !$0.contains("://*.") }.map { $0.lowercased() })
        wildcards = config.allowOrigins.compactMap { pattern in
            let lower = pattern.lowercased()
            guard let range = lower.range(of: "://*.") else { return nil }
            return (lower[..<lower.index(range.lowerBound, offsetBy: 3)], lower[lower.index(range.upperBound, offsetBy: -1)...])
        }
        credentials = config.allowCredentials
        methods = Set(config.allowMethods)
        headers = Set(config.allowHeaders + extraAllowHeaders)
        allowMethods = config.allowMethods.joined(separator: ", ")
        let expose = config.exposeHeaders + extraExposeHeaders
        exposeHeaders = expose.isEmpty ? nil : expose.joined(separator: ", ")
        maxAge = config.maxAge.map { String($0.components.seconds) }
    }

    func makeFilter(on eventLoop: any EventLoop) -> any HTTPFilter { self }

    func allows(_ origin: String) -> Bool {
        if anyOrigin { return true }
        let lower = origin.lowercased()
        if exact.contains(lower) { return true }
        for (scheme, suffix) in wildcards where lower.hasPrefix(scheme) && lower.hasSuffix(suffix) {
            // At least one label before the suffix, and no port or path smuggled into it.
            let host = lower.dropFirst(scheme.count).dropLast(suffix.count)
            if !host.isEmpty && !host.contains("/") && !host.contains(":") && !host.contains("@") { return true }
        }
        return false
    }

    func filterRequest(_ exchange: Exchange) -> FilterOutcome {
        let fields = exchange.request.headerFields
        guard exchange.request.method == .options, let origin = fields[Self.origin], let method = fields[Self.requestMethod] else {
            return .continue
        }
        guard allows(origin) else { return .fail(Self.refused("origin \(origin) is not allowed")) }
        // GET, HEAD and POST are CORS-safelisted: browsers send them whatever the list says.
        guard methods.contains(method) || ["GET", "HEAD", "POST"].contains(method) else {
            return .fail(Self.refused("method \(method) is not allowed (allowed: \(allowMethods))"))
        }
        let asked = fields[Self.requestHeaders].map {
            $0.split(separator: ",").map { $0.trimmingCharacters(in: " \t").lowercased() }.filter { !$0.isEmpty }
        } ?? []
        if let missing = asked.first(where: { !headers.contains($0) }) {
            return .fail(Self.refused("request header \(missing) is not allowed"))
        }
        var response = HTTPResponse(status: .noContent)
        response.headerFields[Self.allowOrigin] = anyOrigin && !credentials ? "*" : origin
        if credentials { response.headerFields[Self.allowCredentials] = "true" }
        response.headerFields[Self.allowMethodsName] = allowMethods
        if !asked.isEmpty { response.headerFields[Self.allowHeadersName] = asked.joined(separator: ", ") }
        if let maxAge { response.headerFields[Self.maxAgeName] = maxAge }
        response.headerFields[Self.vary] = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
        return .respond(response, body: nil)
    }

    func filterResponseHead(_ response: inout HTTPResponse, exchange: Exchange) {
        let fields = exchange.request.headerFields
        let preflight = exchange.request.method == .options && fields[Self.requestMethod] != nil && fields[Self.origin] != nil
        if preflight && response.status == .noContent { return }  // answered above, headers set
        // The route's policy owns these headers: the upstream's own never pass.
        for name in [Self.allowOrigin, Self.allowCredentials, Self.exposeHeadersName, Self.allowMethodsName, Self.allowHeadersName,
                     Self.maxAgeName] {
            response.headerFields[name] = nil
        }
        guard let origin = fields[Self.origin], !preflight else { return }
        if !(anyOrigin && !credentials) { Self.addVaryOrigin(&response.headerFields) }
        guard allows(origin) else { return }
        response.headerFields[Self.allowOrigin] = anyOrigin && !credentials ? "*" : origin
        if credentials { response.headerFields[Self.allowCredentials] = "true" }
        if let exposeHeaders { response.headerFields[Self.exposeHeadersName] = exposeHeaders }
    }

    private static func addVaryOrigin(_ fields: inout HTTPFields) {
        let existing = fields[values: vary]
        if existing.contains(where: { $0.split(separator: ",").contains { $0.trimmingCharacters(in: " ").lowercased() == "origin" || $0.trimmingCharacters(in: " ") == "*" } }) {
            return
        }
        fields.append(HTTPField(name: vary, value: "Origin"))
    }

    private static func refused(_ why: String) -> GatewayError {
        GatewayError(status: .forbidden, code: "cors_refused", message: "CORS preflight refused: \(why)")
    }
}
