import CausewayConfig
import CausewayHTTP
import HTTPTypes
import NIOCore

/// Keeps the client's `X-Request-Id` when it is sane, otherwise makes one; sends it upstream
/// and back to the client, and names it in every error body. Stateless: one instance serves
/// every loop.
public final class RequestIDFilter: HTTPFilter, FilterFactory {
    public static let header = HTTPField.Name("x-request-id")!

    public init() {}

    public func makeFilter(on eventLoop: any EventLoop) -> any HTTPFilter { self }

    public func filterRequest(_ exchange: Exchange) -> FilterOutcome {
        if let id = exchange.request.headerFields[Self.header], RequestID.isAcceptable(id) {
            exchange.requestID = id
        } else {
            let id = RequestID.generate()
            exchange.requestID = id
            exchange.request.headerFields[Self.header] = id
        }
        return .continue
    }

    public func filterResponseHead(_ response: inout HTTPResponse, exchange: Exchange) {
        if !exchange.requestID.isEmpty { response.headerFields[Self.header] = exchange.requestID }
    }
}

/// A route's `headers.request` and `headers.response`: set (replace) and remove. Stateless.
public final class HeaderRewriteFilter: HTTPFilter, FilterFactory {
    let request: [(name: HTTPField.Name, value: String?)]
    let response: [(name: HTTPField.Name, value: String?)]

    public init(request: HeaderOperations, response: HeaderOperations) {
        self.request = Self.compile(request)
        self.response = Self.compile(response)
    }

    /// Removals first, then sets, so `set` wins when a name is in both.
    private static func compile(_ operations: HeaderOperations) -> [(name: HTTPField.Name, value: String?)] {
        operations.toRemove.compactMap { name in HTTPField.Name(name).map { ($0, nil) } }
            + operations.toSet.compactMap { entry in HTTPField.Name(entry.name).map { ($0, entry.value) } }
    }

    public func makeFilter(on eventLoop: any EventLoop) -> any HTTPFilter { self }

    public func filterRequest(_ exchange: Exchange) -> FilterOutcome {
        for (name, value) in request { exchange.request.headerFields[name] = value }
        return .continue
    }

    public func filterResponseHead(_ response: inout HTTPResponse, exchange: Exchange) {
        for (name, value) in self.response { response.headerFields[name] = value }
    }
}
