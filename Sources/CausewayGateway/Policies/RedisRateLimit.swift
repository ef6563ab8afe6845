import CausewayConfig
import CausewayHTTP
import CausewayRedis
import HTTPTypes
import Logging
import NIOCore
import Synchronization

/// `scope: redis`: a policy's counters live in Redis, shared by every replica. One decision is
/// one round trip: a Lua script (run by EVALSHA) that reads the clock from Redis itself (so
/// replicas agree on windows), checks and counts atomically, and sets keys to expire with
/// their window. A reply that does not come within `redis.timeout`, or Redis down, applies the
/// policy's `on_redis_error` (allow or deny), logged once per outage, not per request.
struct RedisRateLimiter: Sendable {
    let policy: RateLimitPolicy
    let policyItem: String
    let statusPrefix: String
    let headerName: HTTPField.Name?
    /// Microseconds.
    let window: Int64

    init(policy: RateLimitPolicy) {
        self.policy = policy
        let components = policy.window.components
        window = max(1, components.seconds * 1_000_000 + components.attoseconds / 1_000_000_000_000)
        let seconds = max(1, (window + 999_999) / 1_000_000)
        let quota = policy.algorithm == .tokenBucket ? policy.burst ?? policy.requests : policy.requests
        policyItem = "\"\(policy.name)\";q=\(quota);w=\(seconds)"
        statusPrefix = "\"\(policy.name)\";r="
        headerName = RateLimitFilter.headerName(policy.key)
    }

    func decide(key: String, client: RedisClient) -> EventLoopFuture<RateLimiter.Decision> {
        let algorithm = switch policy.algorithm {
        case .fixedWindow: "fixed"
        case .slidingWindow: "sliding"
        case .tokenBucket: "gcra"
        }
        // Hash tags keep a policy's keys in one slot if the server is a cluster.
        return client.evalScript(Self.script, keys: ["causeway:rl:{\(policy.name)}:\(key)"],
                                 arguments: [algorithm, String(policy.requests), String(window), String(policy.burst ?? policy.requests)])
            .flatMapThrowing { reply in
                guard case .array(let items?) = reply, items.count == 3, let admitted = items[0].integer, let remaining = items[1].integer,
                    let micros = items[2].integer
                else { throw RedisClient.Failure.server("the rate-limit script answered \(reply)") }
                return RateLimiter.Decision(admitted: admitted == 1, remaining: UInt64(max(0, remaining)),
                                            seconds: UInt64(max(0, (micros + 999_999) / 1_000_000)))
            }
    }

    /// KEYS[1]: the counter's base key. ARGV: algorithm, requests, window (µs), burst.
    /// Returns {admitted (0/1), remaining, µs until reset (or until a request would pass)}.
    static let script = """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
        local algorithm = ARGV[1]
        local limit = tonumber(ARGV[2])
        local window = tonumber(ARGV[3])
        if algorithm == 'gcra' then
          local interval = window / limit
          local capacity = tonumber(ARGV[4]) * interval
          local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
          if tat < now then tat = now end
          local after = tat + interval
          if after - now > capacity then return {0, 0, math.ceil(after - now - capacity)} end
          redis.call('SET', KEYS[1], string.format('%.0f', after), 'PX', math.ceil((after - now) / 1000) + 1000)
          return {1, math.floor((capacity - (after - now)) / interval), math.ceil(after - now)}
        end
        local w = math.floor(now / window)
        local key = KEYS[1] .. ':' .. w
        local current = tonumber(redis.call('GET', key) or '0')
        local elapsed = now - w * window
        local counted = current
        if algorithm == 'sliding' then
          local previous = tonumber(redis.call('GET', KEYS[1] .. ':' .. (w - 1)) or '0')
          counted = current + math.floor(previous * (window - elapsed) / window)
        end
        if counted >= limit then return {0, 0, window - elapsed} end
        local keep = algorithm == 'sliding' and 2 * window or window
        redis.call('SET', key, current + 1, 'PX', math.ceil(keep / 1000) + 1000)
        return {1, limit - counted - 1, window - elapsed}
        """
}

/// The per-loop Redis clients of one snapshot, and whether Redis is reachable (for logging an
/// outage once). Looked up when a loop makes its filters, never per request.
final class RedisClients: Sendable {
    let config: RedisConfig
    private let clients = Mutex<[ObjectIdentifier: LoopClient]>([:])
    private let down = Atomic<Bool>(false)
    private let logger = Logger(label: "causeway.redis")

    init(config: RedisConfig) {
        self.config = config
    }

    func client(on eventLoop: any EventLoop, address: SocketAddress) -> RedisClient {
        clients.withLock { clients in
            if let client = clients[ObjectIdentifier(eventLoop)] { return client.value }
            let client = RedisClient(configuration: .init(address: address, password: config.password, poolSize: config.poolSize,
                                                          timeout: TimeAmount(config.timeout)), eventLoop: eventLoop)
            let box = LoopClient(value: client)
            eventLoop.execute { box.value.start() }
            clients[ObjectIdentifier(eventLoop)] = box
            return client
        }
    }

    /// A loop's client, handed across threads only here (it is used on its loop alone).
    private final class LoopClient: @unchecked Sendable {
        let value: RedisClient
        init(value: RedisClient) { self.value = value }
    }

    /// Closes every loop's connections (a reload that changes `redis`).
    func closeAll() {
        for client in clients.withLock({ Array($0.values) }) {
            client.value.eventLoop.execute { client.value.close() }
        }
    }

    func failed(_ error: any Error) {
        if !down.exchange(true, ordering: .relaxed) {
            logger.error("Redis is unavailable; rate limits with scope: redis apply on_redis_error until it is back",
                         metadata: ["error": "\(error)"])
        }
    }

    func succeeded() {
        if down.load(ordering: .relaxed), down.exchange(false, ordering: .relaxed) {
            logger.info("Redis is reachable again; rate limits with scope: redis count there again")
        }
    }
}
