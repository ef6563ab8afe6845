import CausewayConfig
import Dispatch
import Synchronization
import Testing

@testable import CausewayGateway

@Suite struct CIDRTests {
    @Test func networksContainTheirAddressesOnly() throws {
        let ten = try #require(CIDR("10.0.0.0/8"))
        #expect(ten.contains(IPAddress.parse("10.255.1.2")!) && !ten.contains(IPAddress.parse("11.0.0.1")!))
        let host = try #require(CIDR("127.0.0.1"))
        #expect(host.prefix == 32 && host.contains(IPAddress.parse("127.0.0.1")!) && !host.contains(IPAddress.parse("127.0.0.2")!))
        let six = try #require(CIDR("2001:db8::/32"))
        #expect(six.contains(IPAddress.parse("2001:db8:1::5")!) && !six.contains(IPAddress.parse("2001:db9::1")!))
        // An IPv4-mapped IPv6 address counts as its IPv4 address.
        #expect(ten.contains(IPAddress.parse("::ffff:10.1.2.3")!))
        let all = try #require(CIDR("0.0.0.0/0"))
        #expect(all.contains(IPAddress.parse("8.8.8.8")!))
        #expect(!all.contains(IPAddress.parse("::1")!))
        for bad in ["10.0.0.0/33", "10.0.0/8", "::1/129", "x", "", "10.0.0.0/-1", "10.0.0.0/8/8", "1.2.3.4/ 8"] {
            #expect(CIDR(bad) == nil, "\(bad)")
        }
    }
}

@Suite struct RateLimiterTests {
    func limiter(_ algorithm: RateLimitPolicy.Algorithm, requests: Int, window: Duration, burst: Int? = nil) -> RateLimiter {
        var policy = RateLimitPolicy(name: "p", requests: requests, window: window)
        policy.algorithm = algorithm
        policy.burst = burst
        return RateLimiter(policy: policy)
    }

    func admitted(_ limiter: RateLimiter, _ counter: RateCounter, at times: [UInt64]) -> [Bool] {
        times.map { limiter.decide(counter, now: $0)!.admitted }
    }

    static let second: UInt64 = 1_000_000_000

    @Test func fixedWindowsResetAtTheirBoundary() {
        let limiter = limiter(.fixedWindow, requests: 3, window: .seconds(1))
        let counter = RateCounter()
        let base = 100 * Self.second
        #expect(admitted(limiter, counter, at: [base, base + 1, base + 2, base + 3]) == [true, true, true, false])
        #expect(admitted(limiter, counter, at: [base + Self.second - 1]) == [false])
        #expect(admitted(limiter, counter, at: [base + Self.second, base + Self.second + 1]) == [true, true])
        #expect(limiter.decide(counter, now: base + Self.second + 2)!.remaining == 0)
    }

    @Test func slidingWindowsWeighThePreviousWindow() {
        let limiter = limiter(.slidingWindow, requests: 10, window: .seconds(1))
        let counter = RateCounter()
        let base = 100 * Self.second
        #expect(admitted(limiter, counter, at: Array(repeating: base, count: 11)) == Array(repeating: true, count: 10) + [false])
        // Half-way into the next window the previous 10 weigh 5: 5 more fit.
        let half = base + Self.second + Self.second / 2
        #expect(admitted(limiter, counter, at: Array(repeating: half, count: 6)) == Array(repeating: true, count: 5) + [false])
        // Two windows on, the old ones are gone: the previous is the 5.
        let later = base + 2 * Self.second
        #expect(admitted(limiter, counter, at: Array(repeating: later, count: 6)) == Array(repeating: true, count: 5) + [false])
    }

    @Test func tokenBucketsRefillAtTheirRateUpToTheirBurst() {
        let limiter = limiter(.tokenBucket, requests: 10, window: .seconds(1), burst: 3)
        let counter = RateCounter()
        let base = 100 * Self.second
        #expect(admitted(limiter, counter, at: [base, base, base, base]) == [true, true, true, false])
        // 100 ms per token.
        #expect(admitted(limiter, counter, at: [base + Self.second / 10, base + Self.second / 10]) == [true, false])
        // Idle long: full again, never more than the burst.
        #expect(admitted(limiter, counter, at: Array(repeating: base + 60 * Self.second, count: 4)) == [true, true, true, false])
        let refused = limiter.decide(counter, now: base + 60 * Self.second)!
        #expect(!refused.admitted && refused.seconds == 1)
    }

    @Test func idleCountersRetireAndRetiredOnesAdmitNothing() {
        let limiter = limiter(.fixedWindow, requests: 1, window: .seconds(1))
        let counter = RateCounter()
        let base = 100 * Self.second
        #expect(limiter.decide(counter, now: base)!.admitted)
        #expect(!counter.retireIfIdle(now: base + 1, limiter: limiter))  // still in its window
        #expect(counter.retireIfIdle(now: base + Self.second, limiter: limiter))
        #expect(limiter.decide(counter, now: base + Self.second) == nil)
        #expect(limiter.counter("k", now: base) !== counter)
    }

    /// Eight threads hammer one counter: exactly the limit is admitted.
    @Test func exactUnderContention() {
        let limiter = limiter(.fixedWindow, requests: 5000, window: .seconds(3600))
        let counter = RateCounter()
        let admittedCount = Atomic<Int>(0)
        let now = 100 * Self.second
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for _ in 0..<2000 where limiter.decide(counter, now: now)!.admitted {
                admittedCount.add(1, ordering: .relaxed)
            }
        }
        #expect(admittedCount.load(ordering: .relaxed) == 5000)
    }
}
