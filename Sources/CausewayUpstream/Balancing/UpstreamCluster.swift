import CausewayConfig
import NIOCore

/// Smooth weighted round robin (the algorithm nginx uses): over a cycle every endpoint is
/// picked in proportion to its weight, and picks of a heavy endpoint are spread out rather
/// than bunched.
public struct WeightedRoundRobin: Sendable {
    private let weights: [Int]
    private var current: [Int]
    private let total: Int

    public init(weights: [Int]) {
        self.weights = weights
        self.current = Array(repeating: 0, count: weights.count)
        self.total = weights.reduce(0, +)
    }

    public mutating func next() -> Int {
        if weights.count == 1 { return 0 }
        var best = 0
        for index in weights.indices {
            current[index] += weights[index]
            if current[index] > current[best] { best = index }
        }
        current[best] -= total
        return best
    }
}

public enum UpstreamProtocol: String, Sendable {
    /// HTTP/1.1, over TLS when the endpoints say so.
    case http1
    /// HTTP/2: h2c in cleartext, h2 when the endpoints carry TLS (ALPN "h2").
    case http2
}

/// An upstream as one event loop sees it: its endpoints' pools on this loop and a balancer.
public final class UpstreamCluster {
    public let name: String
    public let pools: [any UpstreamPool]
    private var balancer: WeightedRoundRobin

    public init(name: String, endpoints: [UpstreamEndpoint], protocol: UpstreamProtocol, pool: PoolConfig,
                eventLoop: any EventLoop) {
        self.name = name
        self.pools = endpoints.map { endpoint -> any UpstreamPool in
            switch `protocol` {
            case .http1: HTTP1ConnectionPool(endpoint: endpoint, config: pool, eventLoop: eventLoop)
            case .http2: HTTP2ConnectionPool(endpoint: endpoint, config: pool, eventLoop: eventLoop)
            }
        }
        self.balancer = WeightedRoundRobin(weights: endpoints.map(\.weight))
    }

    public func pickPool() -> (any UpstreamPool)? {
        guard !pools.isEmpty else { return nil }
        return pools[balancer.next()]
    }
}

@available(*, unavailable)
extension UpstreamCluster: Sendable {}
