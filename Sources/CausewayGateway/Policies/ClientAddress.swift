import CausewayConfig
import CausewayHTTP
import HTTPTypes
import NIOCore

/// Who the client is, for access rules and rate limits: the socket's peer, unless that peer is
/// a trusted proxy (`server.trusted_proxies`), in which case X-Forwarded-For is read from the
/// right, skipping trusted hops; the first address not trusted is the client. Anything a client
/// writes in X-Forwarded-For left of that is never believed.
struct ClientAddress: Sendable {
    let trusted: [CIDR]

    static let forwardedFor = HTTPField.Name("x-forwarded-for")!

    /// The client's address as text, for counting by address: with no trusted proxies it is the
    /// socket's, and nothing needs parsing.
    func text(_ exchange: Exchange) -> String {
        trusted.isEmpty ? exchange.client.address : resolve(exchange)?.text ?? exchange.client.address
    }

    /// The client's address bytes and text (memoized on the exchange).
    func resolve(_ exchange: Exchange) -> (bytes: [UInt8], text: String)? {
        if let known = exchange.attributes.clientIP { return known }
        let resolved = compute(exchange)
        exchange.attributes.clientIP = resolved
        return resolved
    }

    private func compute(_ exchange: Exchange) -> (bytes: [UInt8], text: String)? {
        guard let peer = IPAddress.parse(exchange.client.address) else { return nil }
        guard isTrusted(peer) else { return (peer, exchange.client.address) }
        var candidate = (peer, exchange.client.address)
        // Right to left over every X-Forwarded-For field and its comma-separated hops.
        let hops = exchange.request.headerFields[values: Self.forwardedFor].flatMap { $0.split(separator: ",") }
        for hop in hops.reversed() {
            let text = String(hop.trimmingCharacters(in: " \t"))
            guard let bytes = IPAddress.parse(text) else { break }  // garbage: stop at the last good hop
            candidate = (bytes, text)
            if !isTrusted(bytes) { break }
        }
        return candidate
    }

    func isTrusted(_ address: [UInt8]) -> Bool {
        trusted.contains { $0.contains(address) }
    }
}

extension Substring {
    func trimmingCharacters(in set: String) -> Substring {
        var slice = self
        while let first = slice.first, set.contains(first) { slice = slice.dropFirst() }
        while let last = slice.last, set.contains(last) { slice = slice.dropLast() }
        return slice
    }
}

/// `routes[].access`: CIDR allow and deny lists (deny wins; a non-empty allow list admits only
/// its own) → 403. Stateless: one instance serves every loop.
final class AccessFilter: HTTPFilter, FilterFactory {
    let config: AccessConfig
    let client: ClientAddress

    init(config: AccessConfig, client: ClientAddress) {
        self.config = config
        self.client = client
    }

    func makeFilter(on eventLoop: any EventLoop) -> any HTTPFilter { self }

    func filterRequest(_ exchange: Exchange) -> FilterOutcome {
        guard let (address, text) = client.resolve(exchange) else { return .fail(Self.denied("an unknown address")) }
        if config.deny.contains(where: { $0.contains(address) }) { return .fail(Self.denied(text)) }
        if !config.allow.isEmpty, !config.allow.contains(where: { $0.contains(address) }) { return .fail(Self.denied(text)) }
        return .continue
    }

    static func denied(_ address: String) -> GatewayError {
        GatewayError(status: .forbidden, code: "access_denied", message: "requests from \(address) are not allowed on this route")
    }
}
