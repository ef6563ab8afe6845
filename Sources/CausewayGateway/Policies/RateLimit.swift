import CausewayConfig
import CausewayHTTP
import CausewayRedis
import HTTPTypes
import NIOCore
import Synchronization

/// One `rate_limits` policy with `scope: local`: its counters, shared by every loop of the
/// process, so a limit is exact however requests spread over the loops.
///
/// Each counter is one `Atomic<WordPair>` updated by compare-and-swap, so deciding takes no
/// lock. Loops find counters through their own cache (`LoopRateLimits`); only a key a loop
/// has not seen yet takes the table's lock, once. Idle counters are retired by the same CAS
/// (a sentinel state no decision can pass), so a loop still holding one re-fetches a fresh
/// counter instead of counting on a dropped one: exact even across eviction.
final class RateLimiter: Sendable {
    let policy: RateLimitPolicy
    let windowNanos: UInt64
    /// token_bucket: nanoseconds per token, and the bucket's size.
    let interval: UInt64
    let burst: UInt64
    /// `RateLimit-Policy` item: `"name";q=100;w=1`.
    let policyItem: String
    /// `"name";r=`, the start of this policy's `RateLimit` item.
    let statusPrefix: String
    /// `key: header:NAME`, resolved once.
    let headerName: HTTPField.Name?
    private let table = Mutex<[String: RateCounter]>([:])
    /// More distinct keys than this at once share one overflow counter (a flood of made-up
    /// header values costs a bounded table).
    static let maxKeys = 1_000_000

    init(policy: RateLimitPolicy) {
        self.policy = policy
        let window = policy.window.components
        windowNanos = max(1, UInt64(window.seconds) * 1_000_000_000 + UInt64(window.attoseconds / 1_000_000_000))
        burst = UInt64(policy.burst ?? policy.requests)
        interval = max(1, windowNanos / UInt64(policy.requests))
        let seconds = max(1, (windowNanos + 999_999_999) / 1_000_000_000)
        statusPrefix = "\"\(policy.name)\";r="
        headerName = RateLimitFilter.headerName(policy.key)
        policyItem = "\"\(policy.name)\";q=\(policy.algorithm == .tokenBucket ? burst : UInt64(policy.requests));w=\(seconds)"
    }

    /// The counter for `key`, from the shared table (the slow path: a loop's first sight of it).
    func counter(_ key: String, now: UInt64) -> RateCounter {
        table.withLock { counters in
            if let counter = counters[key], !counter.isRetired { return counter }
            if counters.count >= Self.maxKeys {
                sweep(&counters, now: now)
                if counters.count >= Self.maxKeys {
                    if let overflow = counters["\u{0}overflow"], !overflow.isRetired { return overflow }
                    let overflow = RateCounter()
                    counters["\u{0}overflow"] = overflow
                    return overflow
                }
            }
            let counter = RateCounter()
            counters[key] = counter
            // Amortized: a sweep each time the table doubles past 1,024 keys.
            if counters.count >= 1024 && counters.count & (counters.count - 1) == 0 { sweep(&counters, now: now) }
            return counter
        }
    }

    private func sweep(_ counters: inout [String: RateCounter], now: UInt64) {
        counters = counters.filter { !$0.value.retireIfIdle(now: now, limiter: self) }
    }

    /// Whether a counter in `state` would answer exactly as a fresh one (so it may go).
    func isIdle(_ state: WordPair, now: UInt64) -> Bool {
        switch policy.algorithm {
        case .tokenBucket: return UInt64(state.first) <= now  // the bucket is full again
        case .fixedWindow: return UInt64(state.first) < now / windowNanos
        case .slidingWindow: return UInt64(state.first) + 1 < now / windowNanos
        }
    }

    /// One request against `counter`: admitted or not, what remains, and seconds to reset (or,
    /// when refused, until a request would pass). nil: the counter was retired; fetch another.
    func decide(_ counter: RateCounter, now: UInt64) -> Decision? {
        while true {
            let old = counter.state.load(ordering: .relaxed)
            if old == RateCounter.retired { return nil }
            let (new, decision) = next(old, now: now)
            guard let new else { return decision }  // refused: nothing to record
            if counter.state.compareExchange(expected: old, desired: new, ordering: .relaxed).exchanged { return decision }
        }
    }

    struct Decision {
        var admitted: Bool
        var remaining: UInt64
        /// Seconds until the quota resets (admitted), or until a request would pass (refused).
        var seconds: UInt64
    }

    private func next(_ old: WordPair, now: UInt64) -> (WordPair?, Decision) {
        switch policy.algorithm {
        case .tokenBucket:
            // GCRA: the theoretical arrival time moves one interval per request; the request fits
            // while it stays within the bucket's size ahead of now.
            let tat = max(UInt64(old.first), now)
            let after = tat + interval
            let capacity = burst * interval
            if after - now > capacity {
                return (nil, Decision(admitted: false, remaining: 0, seconds: Self.seconds(after - now - capacity)))
            }
            let remaining = (capacity - (after - now)) / interval
            return (WordPair(first: UInt(after), second: 0), Decision(admitted: true, remaining: remaining, seconds: Self.seconds(after - now)))
        case .fixedWindow:
            let window = now / windowNanos
            let count = UInt64(old.first) == window ? UInt64(old.second) : 0
            let reset = Self.seconds((window + 1) * windowNanos - now)
            let limit = UInt64(policy.requests)
            if count >= limit { return (nil, Decision(admitted: false, remaining: 0, seconds: reset)) }
            return (WordPair(first: UInt(window), second: UInt(count + 1)), Decision(admitted: true, remaining: limit - count - 1, seconds: reset))
        case .slidingWindow:
            // Two windows, the previous one weighted by how much of it the sliding window still
            // covers (Cloudflare's and Kong's estimate). second = previous << 32 | current.
            let window = now / windowNanos
            let stored = UInt64(old.first)
            var previous: UInt64 = 0, current: UInt64 = 0
            if stored == window {
                previous = UInt64(old.second) >> 32
                current = UInt64(old.second) & 0xFFFF_FFFF
            } else if stored + 1 == window {
                previous = UInt64(old.second) & 0xFFFF_FFFF
            }
            let elapsed = now - window * windowNanos
            let weighted = previous * (windowNanos - elapsed) / windowNanos
            let limit = UInt64(policy.requests)
            let reset = Self.seconds(windowNanos - elapsed)
            if weighted + current >= limit { return (nil, Decision(admitted: false, remaining: 0, seconds: reset)) }
            return (WordPair(first: UInt(window), second: UInt(previous << 32 | (current + 1))),
                    Decision(admitted: true, remaining: limit - weighted - current - 1, seconds: reset))
        }
    }

    private static func seconds(_ nanos: UInt64) -> UInt64 { (nanos + 999_999_999) / 1_000_000_000 }
}

/// One key's counter. The meaning of the two words depends on the algorithm (see `next`).
final class RateCounter: Sendable {
    let state = Atomic<WordPair>(WordPair(first: 0, second: 0))
    static let retired = WordPair(first: UInt.max, second: UInt.max)

    var isRetired: Bool { state.load(ordering: .relaxed) == Self.retired }

    /// Retires the counter if it is idle; true when it did (or already was).
    func retireIfIdle(now: UInt64, limiter: RateLimiter) -> Bool {
        let old = state.load(ordering: .relaxed)
        if old == Self.retired { return true }
        guard limiter.isIdle(old, now: now) else { return false }
        return state.compareExchange(expected: old, desired: Self.retired, ordering: .relaxed).exchanged
    }
}

/// `routes[].rate_limit` on one loop: every policy must admit the request. Keeps this loop's
/// cache of counters; answers 429 with `Retry-After`, and sets the `RateLimit` header that the
/// response gets (with `RateLimit-Policy`) whether it was admitted or not.
final class RateLimitFilter: HTTPFilter, FilterFactory {
    let limiters: [RateLimiter]
    /// `scope: redis` policies, decided after the local ones, in one pipelined round trip.
    let redisLimiters: [RedisRateLimiter]
    let redis: RedisClients?
    let redisAddress: SocketAddress?
    let client: ClientAddress
    let policyHeader: String

    init(limiters: [RateLimiter], redisLimiters: [RedisRateLimiter] = [], redis: RedisClients? = nil, redisAddress: SocketAddress? = nil,
         client: ClientAddress) {
        self.limiters = limiters
        self.redisLimiters = redisLimiters
        self.redis = redis
        self.redisAddress = redisAddress
        self.client = client
        policyHeader = (limiters.map(\.policyItem) + redisLimiters.map(\.policyItem)).joined(separator: ", ")
    }

    func makeFilter(on eventLoop: any EventLoop) -> any HTTPFilter {
        let redisClient = redisLimiters.isEmpty ? nil : redisAddress.flatMap { address in redis?.client(on: eventLoop, address: address) }
        return LoopRateLimits(shared: self, redis: redisClient)
    }

    func refusal(_ name: String, _ decision: RateLimiter.Decision, status: String) -> GatewayError {
        var headers = HTTPFields()
        headers[.retryAfter] = String(max(1, decision.seconds))
        headers[Self.policyName] = policyHeader
        headers[Self.statusName] = status
        return GatewayError(status: .tooManyRequests, code: "rate_limited",
                            message: "rate limit \"\(name)\" exceeded; retry in \(max(1, decision.seconds)) s", headers: headers)
    }

    static func headerName(_ key: RateLimitPolicy.Key) -> HTTPField.Name? {
        if case .header(let name) = key { return HTTPField.Name(name) }
        return nil
    }

    static let policyName = HTTPField.Name("ratelimit-policy")!
    static let statusName = HTTPField.Name("ratelimit")!

    /// The counter key for a policy: nil never happens; a missing consumer or claim falls back
    /// to the client's address (an anonymous caller still has one).
    func key(_ policy: RateLimitPolicy, header: HTTPField.Name?, _ exchange: Exchange) -> String {
        switch policy.key {
        case .global: return ""
        case .route: return exchange.attributes.route ?? ""
        case .ip: return client.text(exchange)
        case .consumer:
            if let consumer = exchange.attributes.consumer { return "c:" + consumer }
            return "ip:" + client.text(exchange)
        case .header:
            return header.flatMap { exchange.request.headerFields[$0] } ?? ""
        case .claim(let name):
            switch exchange.attributes.claims?[name] {
            case .string(let value)?: return "c:" + value
            case .number(let value)?: return "c:\(value)"
            case .bool(let value)?: return "c:\(value)"
            default: return "ip:" + client.text(exchange)
            }
        }
    }
}

final class LoopRateLimits: HTTPFilter {
    private let shared: RateLimitFilter
    /// Per policy: key → counter, this loop's view of the shared tables.
    private var caches: [[String: RateCounter]]
    private let redis: RedisClient?

    init(shared: RateLimitFilter, redis: RedisClient?) {
        self.shared = shared
        self.redis = redis
        caches = Array(repeating: [:], count: shared.limiters.count)
    }

    func filterRequest(_ exchange: Exchange) -> FilterOutcome {
        let now = NIODeadline.now().uptimeNanoseconds
        var status = ""
        for (index, limiter) in shared.limiters.enumerated() {
            let key = shared.key(limiter.policy, header: limiter.headerName, exchange)
            var decision: RateLimiter.Decision?
            // A retired counter (idle, evicted) is dropped from the cache and fetched anew.
            for _ in 0..<3 {
                let counter = caches[index][key] ?? fetch(index, key, now: now)
                decision = limiter.decide(counter, now: now)
                if decision != nil { break }
                caches[index][key] = nil
            }
            guard let decision else { continue }
            if !status.isEmpty { status += ", " }
            status += limiter.statusPrefix
            status += String(decision.remaining)
            status += ";t="
            status += String(decision.seconds)
            if !decision.admitted { return .fail(shared.refusal(limiter.policy.name, decision, status: status)) }
        }
        guard !shared.redisLimiters.isEmpty else {
            exchange.attributes.rateLimit = status
            return .continue
        }
        return redisDecisions(exchange, status: status)
    }

    /// Every `scope: redis` policy at once (pipelined on this loop's connections); the chain
    /// waits for the answers, or for `redis.timeout`.
    private func redisDecisions(_ exchange: Exchange, status local: String) -> FilterOutcome {
        guard let redis else { return .fail(.filterFailed("the Redis client is not set up on this loop")) }
        let limiters = shared.redisLimiters
        let decisions = limiters.map { $0.decide(key: shared.key($0.policy, header: $0.headerName, exchange), client: redis) }
        let all = EventLoopFuture.whenAllComplete(decisions, on: redis.eventLoop)
        return .suspend(all.assumeIsolated().map { [self] results in
            var status = local
            var healthy = true
            for (limiter, result) in zip(limiters, results) {
                switch result {
                case .success(let decision):
                    if !status.isEmpty { status += ", " }
                    status += limiter.statusPrefix + String(decision.remaining) + ";t=" + String(decision.seconds)
                    if !decision.admitted { return .fail(shared.refusal(limiter.policy.name, decision, status: status)) }
                case .failure(let error):
                    healthy = false
                    shared.redis?.failed(error)
                    if limiter.policy.onRedisError == "deny" {
                        var headers = HTTPFields()
                        headers[.retryAfter] = "1"
                        return .fail(GatewayError(status: .tooManyRequests, code: "rate_limited",
                                                  message: "rate limit \"\(limiter.policy.name)\" cannot be checked (Redis is unavailable) and on_redis_error is deny",
                                                  headers: headers))
                    }
                }
            }
            if healthy { shared.redis?.succeeded() }
            exchange.attributes.rateLimit = status
            return .continue
        }.nonisolated())
    }

    private func fetch(_ index: Int, _ key: String, now: UInt64) -> RateCounter {
        let counter = shared.limiters[index].counter(key, now: now)
        if caches[index].count >= 65_536 {
            // Bounded per loop: forget retired counters, or everything when they are all live.
            caches[index] = caches[index].filter { !$0.value.isRetired }
            if caches[index].count >= 65_536 { caches[index] = [:] }
        }
        caches[index][key] = counter
        return counter
    }

    func filterResponseHead(_ response: inout HTTPResponse, exchange: Exchange) {
        guard let status = exchange.attributes.rateLimit else { return }
        response.headerFields[RateLimitFilter.policyName] = shared.policyHeader
        response.headerFields[RateLimitFilter.statusName] = status
    }
}
