import CausewayConfig
@testable import CausewayHTTP
@testable import CausewayGateway
import CausewayUpstream
import HTTPTypes
import NIOCore
import Testing

@Suite struct PoolStateMachineTests {
    @Test func firstLeaseConnectsAndTheConnectionServesTheWaiter() {
        var pool = HTTP1PoolStateMachine(maxConnections: 2, maxPending: 10)
        #expect(pool.lease(1) == .connect(1))
        #expect(pool.connected(1) == .use(1, 1))
        #expect(pool.released(1, reusable: true) == .park(1))
        #expect(pool.lease(2) == .use(1))
        #expect(pool.openConnections == 1)
    }

    @Test func connectionsAreCappedAndWaitersQueueThenOverflow() {
        var pool = HTTP1PoolStateMachine(maxConnections: 1, maxPending: 2)
        #expect(pool.lease(1) == .connect(1))
        #expect(pool.connected(1) == .use(1, 1))
        #expect(pool.lease(2) == .wait)
        #expect(pool.lease(3) == .wait)
        #expect(pool.lease(4) == .reject)
        #expect(pool.released(1, reusable: true) == .use(1, 2))
        let cancelled = pool.cancel(3)
        #expect(cancelled)
        #expect(pool.released(1, reusable: true) == .park(1))
    }

    @Test func failedConnectFailsOneWaiterOnly() {
        var pool = HTTP1PoolStateMachine(maxConnections: 4, maxPending: 10)
        #expect(pool.lease(1) == .connect(1))
        #expect(pool.lease(2) == .connect(2))
        #expect(pool.connectFailed() == .fail(1))
        #expect(pool.connected(2) == .use(2, 2))
        #expect(pool.openConnections == 1)
    }

    @Test func closedConnectionIsReplacedForQueuedWaiters() {
        var pool = HTTP1PoolStateMachine(maxConnections: 1, maxPending: 10)
        #expect(pool.lease(1) == .connect(1))
        #expect(pool.connected(1) == .use(1, 1))
        #expect(pool.lease(2) == .wait)
        #expect(pool.released(1, reusable: false) == .connect(2))
        #expect(pool.connected(2) == .use(2, 2))
    }

    @Test func idleCloseForgetsTheConnection() {
        var pool = HTTP1PoolStateMachine(maxConnections: 1, maxPending: 0)
        _ = pool.lease(1)
        _ = pool.connected(1)
        _ = pool.released(1, reusable: true)
        #expect(pool.idleClosed(1) == .none)
        #expect(pool.openConnections == 0)
        #expect(pool.lease(2) == .connect(2))
    }

    @Test func noQueueMeansImmediateRejectionWhenFull() {
        var pool = HTTP1PoolStateMachine(maxConnections: 1, maxPending: 0)
        #expect(pool.lease(1) == .connect(1))
        #expect(pool.lease(2) == .reject)
    }
}

@Suite struct BalancerTests {
    @Test func smoothWeightedRoundRobinFollowsWeightsAndSpreadsPicks() {
        var balancer = WeightedRoundRobin(weights: [5, 1, 1])
        let picks = (0..<7).map { _ in balancer.next() }
        #expect(picks == [0, 0, 1, 0, 2, 0, 0])
        var counts = [0, 0, 0]
        for _ in 0..<700 { counts[balancer.next()] += 1 }
        #expect(counts == [500, 100, 100])
    }
}

@Suite struct ConnectionTimerTests {
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    @Test func idleConnectionClosesAfterIdleTimeout() {
        let timer = ConnectionTimer(now: start, idleTimeout: .seconds(60), headerTimeout: .seconds(10))
        #expect(timer.check(now: start + .seconds(59)) == .rearm(at: start + .seconds(60)))
        #expect(timer.check(now: start + .seconds(60)) == .closeIdle)
    }

    @Test func headClockStartsAtFirstByte() {
        var timer = ConnectionTimer(now: start, idleTimeout: .seconds(60), headerTimeout: .seconds(10))
        timer.bytesArrived(now: start + .seconds(30))
        #expect(timer.check(now: start + .seconds(39)) == .rearm(at: start + .seconds(40)))
        #expect(timer.check(now: start + .seconds(40)) == .requestTimeout)
        timer.headReceived()
        #expect(timer.check(now: start + .seconds(100)) == .rearm(at: start + .seconds(110)))
        timer.exchangeCompleted(now: start + .seconds(100))
        #expect(timer.check(now: start + .seconds(160)) == .closeIdle)
    }
}

@Suite struct RouterTests {
    func router(_ yaml: String) throws -> Router {
        let config = try ConfigLoader.parse("""
            listeners: [{name: l, address: "127.0.0.1:0"}]
            upstreams: {u: {endpoints: [{address: "127.0.0.1:1"}]}}
            routes:
            \(yaml)
            """, file: "t.yaml")
        return try RuntimeSnapshot(config: config).router
    }

    func decide(_ router: Router, _ path: String, method: HTTPRequest.Method = .get, host: String = "example.com",
                headers: HTTPFields = [:]) -> String {
        switch router.route(HTTPRequest(method: method, scheme: "http", authority: host, path: path, headerFields: headers)) {
        case .route(let route): return route.name
        case .notFound: return "404"
        case .methodNotAllowed(let allow): return "405 " + allow.joined(separator: ",")
        }
    }

    @Test func pathKindsAndFirstMatchWins() throws {
        let router = try router("""
              - {name: exact, match: {path: /health}, upstream: u}
              - {name: regex, match: {path_regex: "/items/[0-9]+"}, upstream: u}
              - {name: users, match: {path_prefix: /api/users}, upstream: u}
              - {name: api, match: {path_prefix: /api}, upstream: u}
            """)
        #expect(decide(router, "/health") == "exact")
        #expect(decide(router, "/health/x") == "404")
        #expect(decide(router, "/items/42?x=1") == "regex")
        #expect(decide(router, "/items/42/x") == "404")
        #expect(decide(router, "/api/users/7") == "users")
        #expect(decide(router, "/api/orders") == "api")
        #expect(decide(router, "/other") == "404")
    }

    @Test func hostsExactAndWildcardIgnoringCaseAndPort() throws {
        let router = try router("""
              - {name: exact, match: {host: api.example.com, path_prefix: /}, upstream: u}
              - {name: wild, match: {host: "*.example.com", path_prefix: /}, upstream: u}
            """)
        #expect(decide(router, "/", host: "API.Example.com:8080") == "exact")
        #expect(decide(router, "/", host: "eu.example.com") == "wild")
        #expect(decide(router, "/", host: "example.com") == "404")
        #expect(decide(router, "/", host: "evil-example.com") == "404")
    }

    @Test func methodMismatchIs405WithAllow() throws {
        let router = try router("""
              - {name: read, match: {path_prefix: /users, methods: [GET, HEAD]}, upstream: u}
              - {name: write, match: {path_prefix: /users, methods: [POST]}, upstream: u}
            """)
        #expect(decide(router, "/users", method: .post) == "write")
        #expect(decide(router, "/users/1", method: .delete) == "405 GET,HEAD,POST")
        #expect(decide(router, "/nope", method: .delete) == "404")
    }

    @Test func headerMatches() throws {
        let router = try router("""
              - {name: canary, match: {path_prefix: /, headers: {x-canary: "true"}}, upstream: u}
              - {name: stable, match: {path_prefix: /}, upstream: u}
            """)
        #expect(decide(router, "/", headers: [HTTPField.Name("x-canary")!: "true"]) == "canary")
        #expect(decide(router, "/", headers: [HTTPField.Name("x-canary")!: "false"]) == "stable")
    }

    @Test func prefixRewriteKeepsTheRestAndTheQuery() throws {
        let router = try router("""
              - {name: users, match: {path_prefix: /api/v1/users}, upstream: u, rewrite: {path_prefix: /users}}
              - {name: root, match: {path_prefix: /strip/}, upstream: u, rewrite: {path_prefix: /}}
            """)
        let users = router.routes[0]
        #expect(users.rewrittenPath("/api/v1/users/7?x=1") == "/users/7?x=1")
        #expect(users.rewrittenPath("/api/v1/users") == "/users")
        #expect(router.routes[1].rewrittenPath("/strip/a/b") == "/a/b")
    }
}
