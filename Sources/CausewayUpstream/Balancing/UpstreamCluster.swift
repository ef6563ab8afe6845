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

/// One attempt of an `UpstreamExchange`, as its upstream hears of it.
public struct UpstreamOutcome: Sendable {
    public enum Result: Sendable, Equatable {
        /// A response head arrived with this status.
        case response(status: Int)
        /// Could not connect (refused, timeout, TLS).
        case connectFailure
        /// The connection closed or the stream was reset before the response was complete.
        case reset
        case invalidResponse
        /// The exchange's time ran out.
        case timeout
        /// The caller gave up (the client left).
        case cancelled
    }

    /// Index into the cluster's `pools` (and `stats`).
    public var endpoint: Int
    public var result: Result
    /// From the attempt's start (lease) to its response head or failure.
    public var latency: TimeAmount
}

/// Per-endpoint counts of attempt outcomes on one loop: what outlier detection and metrics
/// read. Plain counters, loop-owned.
public struct EndpointStats: Sendable, Equatable {
    public var attempts = 0
    public var responses2xx = 0
    public var responses3xx = 0
    public var responses4xx = 0
    public var responses5xx = 0
    public var connectFailures = 0
    public var resets = 0
    public var invalidResponses = 0
    public var timeouts = 0
    public var cancelled = 0
    /// Sum of attempt latencies, in nanoseconds (mean = sum / attempts).
    public var latencyNanoseconds: Int64 = 0

    public init() {}

    mutating func add(_ outcome: UpstreamOutcome) {
        attempts += 1
        latencyNanoseconds &+= outcome.latency.nanoseconds
        switch outcome.result {
        case .response(let status):
            switch status {
            case ..<300: responses2xx += 1
            case ..<400: responses3xx += 1
            case ..<500: responses4xx += 1
            default: responses5xx += 1
            }
        case .connectFailure: connectFailures += 1
        case .reset: resets += 1
        case .invalidResponse: invalidResponses += 1
        case .timeout: timeouts += 1
        case .cancelled: cancelled += 1
        }
    }

    public mutating func merge(_ other: EndpointStats) {
        attempts += other.attempts
        responses2xx += other.responses2xx
        responses3xx += other.responses3xx
        responses4xx += other.responses4xx
        responses5xx += other.responses5xx
        connectFailures += other.connectFailures
        resets += other.resets
        invalidResponses += other.invalidResponses
        timeouts += other.timeouts
        cancelled += other.cancelled
        latencyNanoseconds &+= other.latencyNanoseconds
    }
}

/// An upstream as one event loop sees it: its endpoints' pools on this loop, a balancer, and
/// what its attempts' outcomes were.
public final class UpstreamCluster {
    public let name: String
    public let pools: [any UpstreamPool]
    /// Connect timeout and the rest, for connections made outside the pools (tunnels).
    public let poolConfig: PoolConfig
    private var balancer: WeightedRoundRobin
    /// Indexed like `pools`.
    public private(set) var stats: [EndpointStats]
    /// Hooks for whatever watches attempts (outlier detection, metrics), called on this loop.
    public var outcomeObservers: [(UpstreamOutcome) -> Void] = []

    public func record(_ outcome: UpstreamOutcome) {
        stats[outcome.endpoint].add(outcome)
        for observer in outcomeObservers { observer(outcome) }
    }

    public init(name: String, endpoints: [UpstreamEndpoint], protocol: UpstreamProtocol, pool: PoolConfig,
                eventLoop: any EventLoop) {
        self.name = name
        self.poolConfig = pool
        self.pools = endpoints.map { endpoint -> any UpstreamPool in
            switch `protocol` {
            case .http1: HTTP1ConnectionPool(endpoint: endpoint, config: pool, eventLoop: eventLoop)
            case .http2: HTTP2ConnectionPool(endpoint: endpoint, config: pool, eventLoop: eventLoop)
            }
        }
        self.balancer = WeightedRoundRobin(weights: endpoints.map(\.weight))
        self.stats = Array(repeating: EndpointStats(), count: endpoints.count)
    }

    /// This loop no longer routes new exchanges here (a reload removed or changed the upstream).
    public func retire() {
        for pool in pools { pool.retire() }
    }

    /// The next endpoint's index into `pools`, nil when there is none.
    public func pick() -> Int? {
        guard !pools.isEmpty else { return nil }
        return balancer.next()
    }
}

@available(*, unavailable)
extension UpstreamCluster: Sendable {}
