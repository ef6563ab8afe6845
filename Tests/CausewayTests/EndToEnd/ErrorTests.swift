import CausewayGateway
import Foundation
import NIOCore
import NIOPosix
import Testing

/// Every failure a client can meet, each with its status and JSON error body.
@Suite(.serialized) struct ErrorTests {
    struct ErrorBody: Decodable {
        struct Inner: Decodable { var status: Int; var code: String; var message: String; var request_id: String }
        var error: Inner
    }

    func decode(_ result: CurlResult) throws -> ErrorBody.Inner {
        let body = try JSONDecoder().decode(ErrorBody.self, from: Data(result.body.utf8)).error
        #expect(body.status == result.status)
        #expect(body.request_id == result.header("x-request-id"))
        #expect(result.header("content-type") == "application/json")
        return body.self
    }

    @Test(arguments: Transport.allCases)
    func routingErrors(over transport: Transport) async throws {
        let gateway = try await GatewayHarness.start()
        defer { Task { await gateway.stop() } }
        let missing = try Curl.run(["\(gateway.url(transport))/nowhere"], over: transport)
        #expect(missing.status == 404)
        #expect(try decode(missing).code == "route_not_found")
        let wrongMethod = try Curl.run(["-X", "DELETE", "\(gateway.url(transport))/api/x"], over: transport)
        #expect(wrongMethod.status == 405)
        #expect(wrongMethod.header("allow") == "GET, POST, PUT, HEAD")
        #expect(try decode(wrongMethod).code == "method_not_allowed")
    }

    @Test(arguments: Transport.allCases)
    func bodyLimitsByLengthAndByStream(over transport: Transport) async throws {
        let gateway = try await GatewayHarness.start()
        defer { Task { await gateway.stop() } }
        let declared = try Curl.run(["\(gateway.url(transport))/api/upload", "--data-binary", "@-"], over: transport, input: Data(count: 2 << 20))
        #expect(declared.status == 413)
        #expect(try decode(declared).code == "body_too_large")
        // Over HTTP/2 a body has no declared length when sent from a pipe with -T.
        let chunked = transport == .http1
            ? try Curl.run(["\(gateway.url(transport))/api/upload", "-H", "Transfer-Encoding: chunked", "--data-binary", "@-"],
                           input: Data(count: 2 << 20))
            : try Curl.run(["-T", "-", "\(gateway.url(transport))/api/upload"], over: transport, input: Data(count: 2 << 20))
        #expect(chunked.status == 413)
        #expect(gateway.upstream.requests <= 1, "the declared-length request never reached the upstream")
    }

    @Test(arguments: Transport.allCases)
    func upstreamFailuresMapTo502And504(over transport: Transport) async throws {
        let gateway = try await GatewayHarness.start()
        defer { Task { await gateway.stop() } }
        let reset = try Curl.run(["\(gateway.url(transport))/api/reset"], over: transport)
        #expect(reset.status == 502)
        #expect(try decode(reset).code == "upstream_unavailable")
        let garbage = try Curl.run(["\(gateway.url(transport))/api/garbage"], over: transport)
        #expect(garbage.status == 502)
        #expect(try decode(garbage).code == "upstream_invalid_response")
        let slow = try Curl.run(["\(gateway.url(transport))/api/slow?ms=5000"], over: transport)
        #expect(slow.status == 504)
        #expect(try decode(slow).code == "upstream_timeout")
        let after = try Curl.run(["\(gateway.url(transport))/api/status/201"], over: transport)
        #expect(after.status == 201, "a failed exchange leaves the gateway healthy")
    }

    @Test(arguments: Transport.allCases)
    func staleKeepAliveConnectionIsRetriedForIdempotentRequestsOnly(over transport: Transport) async throws {
        let gateway = try await GatewayHarness.start()
        defer { Task { await gateway.stop() } }
        // One client connection, so one loop and one pooled upstream connection to reuse.
        if transport == .http1 {
            let twice = try Curl.run(["-o", "/dev/null", "\(gateway.url(transport))/api/stale", "-o", "/dev/null",
                                      "-w", "%{http_code}", "\(gateway.url(transport))/api/stale"])
            #expect(twice.body == "200200", "the second GET found its pooled connection closed and was retried")
        } else {
            let twice = try H2Load.run(["-n", "2", "-c", "1", "-m", "1", "\(gateway.url(transport))/api/stale"])
            #expect(twice.succeeded2xx == 2, "the second GET found its pooled connection closed and was retried")
        }
        #expect(gateway.upstream.connections == 2)
        if transport == .http1 {
            let post = try Curl.run(["-o", "/dev/null", "\(gateway.url(transport))/api/stale", "-o", "/dev/null",
                                     "-w", "%{http_code}", "-X", "POST", "\(gateway.url(transport))/api/stale"])
            #expect(post.body == "200502", "a POST is not replayed")
        } else {
            let body = FileManager.default.temporaryDirectory.appendingPathComponent("causeway-post-\(UUID().uuidString)")
            try Data("x".utf8).write(to: body)
            defer { try? FileManager.default.removeItem(at: body) }
            let post = try H2Load.run(["-n", "2", "-c", "1", "-m", "1", "-d", body.path, "\(gateway.url(transport))/api/stale"])
            #expect(post.status5xx == 1, "a POST is not replayed")
        }
    }

    @Test func refusedConnectionIs502() async throws {
        // A port that was just free: nothing listens there.
        let probe = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        let deadPort = probe.localAddress!.port!
        try await probe.close()
        let gateway = try await GatewayHarness.start(
            routes: "  - {name: dead, match: {path_prefix: /}, upstream: dead}",
            extraUpstreams: "  dead: {endpoints: [{address: \"127.0.0.1:\(deadPort)\"}]}")
        defer { Task { await gateway.stop() } }
        let result = try Curl.run([gateway.url + "/"])
        #expect(result.status == 502)
        #expect(try decode(result).message.contains("cannot connect"))
    }

    @Test func poolOverflowIs503() async throws {
        // One worker, so one pool: which loop a connection lands on is not the test's business.
        let gateway = try await GatewayHarness.start(pool: "{max_connections: 1, max_pending: 0}", workers: 1)
        defer { Task { await gateway.stop() } }
        let holders = [try RawClient(port: gateway.port, timeout: 10)]
        // Held well past the time a busy CI machine may take to start the next curl.
        for holder in holders { holder.send("GET /big/slow?ms=5000 HTTP/1.1\r\nHost: a\r\n\r\n") }
        // The held request reached the upstream, so the pool's single connection is busy.
        for _ in 0..<100 where gateway.upstream.requests < 1 { try await Task.sleep(for: .milliseconds(20)) }
        let overflow = try Curl.run(["\(gateway.url)/api/x"])
        #expect(overflow.status == 503)
        #expect(try decode(overflow).code == "upstream_overloaded")
        for holder in holders { #expect(holder.readUntil("slept").contains("200 OK")) }
    }

    @Test func malformedRequestsGet400AndClose() async throws {
        let gateway = try await GatewayHarness.start()
        defer { Task { await gateway.stop() } }
        let cases = [
            "GARBAGE\r\n\r\n",
            "GET /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            "GET /api/x HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n",
            "GET /api/x HTTP/1.1\r\n\r\n",
            "GET /api/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET /api/x HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n",
        ]
        for request in cases {
            let client = try RawClient(port: gateway.port)
            client.send(request)
            let (text, closed) = client.readAll()
            #expect(text.hasPrefix("HTTP/1.1 400 Bad Request"), "\(request.debugDescription) → \(text.prefix(40))")
            #expect(text.contains("\"code\":\"bad_request\""))
            #expect(text.contains("\"request_id\":\""))
            #expect(closed)
        }
        #expect(gateway.upstream.requests == 0, "nothing malformed was forwarded")
        let unknownCoding = try RawClient(port: gateway.port)
        unknownCoding.send("POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
        #expect(unknownCoding.readAll().text.hasPrefix("HTTP/1.1 501"))
    }

    @Test func oversizedHeadersGet431() async throws {
        let gateway = try await GatewayHarness.start(listenerLimits: "{max_header_size: 4KiB}")
        defer { Task { await gateway.stop() } }
        let client = try RawClient(port: gateway.port)
        client.send("GET /api/x HTTP/1.1\r\nHost: a\r\nX-Big: \(String(repeating: "a", count: 8000))\r\n\r\n")
        let (text, closed) = client.readAll()
        #expect(text.hasPrefix("HTTP/1.1 431"))
        #expect(text.contains("headers_too_large"))
        #expect(closed)
    }

    @Test func slowHeadersGet408AndIdleConnectionsClose() async throws {
        let gateway = try await GatewayHarness.start(listenerLimits: "{header_timeout: 300ms, idle_timeout: 600ms}")
        defer { Task { await gateway.stop() } }
        let slow = try RawClient(port: gateway.port)
        slow.send("GET /api/x HTTP/1.1\r\nHost: a\r\n")
        let (text, closed) = slow.readAll()
        #expect(text.hasPrefix("HTTP/1.1 408"))
        #expect(closed)
        let idle = try RawClient(port: gateway.port)
        let started = ContinuousClock.now
        let (idleText, idleClosed) = idle.readAll()
        #expect(idleText.isEmpty && idleClosed)
        #expect(ContinuousClock.now - started >= .milliseconds(500))
    }

    @Test func tenThousandMalformedRequestsLeakNoDescriptors() async throws {
        let gateway = try await GatewayHarness.start()
        defer { Task { await gateway.stop() } }
        _ = try Curl.run(["\(gateway.url)/api/warm"])
        let before = ProcessStats.openFileDescriptors()
        let shapes = ["BLAH\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", "GET /api HTTP/9.9\r\n\r\n",
                      "\u{0}\u{1}\u{2}\r\n\r\n", "GET /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"]
        for index in 0..<10_000 {
            let client = try RawClient(port: gateway.port)
            client.send(shapes[index % shapes.count])
            _ = client.readAll()
        }
        // Closes finish asynchronously on the gateway's loops; give them a moment.
        var after = ProcessStats.openFileDescriptors()
        for _ in 0..<50 where after > before || gateway.server.openConnections(listener: "test") > 0 {
            try await Task.sleep(for: .milliseconds(100))
            after = ProcessStats.openFileDescriptors()
        }
        #expect(after <= before, "descriptors: \(before) before, \(after) after")
        #expect(gateway.server.openConnections(listener: "test") == 0)
        #expect(try Curl.run(["\(gateway.url)/api/still-alive"]).status == 200)
    }

    @Test func gracefulDrainFinishesInFlightRequests() async throws {
        let gateway = try await GatewayHarness.start()
        let client = try RawClient(port: gateway.port, timeout: 10)
        // Long enough that draining starts while it runs, even on a busy CI machine.
        client.send("GET /big/slow?ms=4000 HTTP/1.1\r\nHost: a\r\n\r\n")
        for _ in 0..<100 where gateway.upstream.requests == 0 { try await Task.sleep(for: .milliseconds(20)) }
        let adminPort = gateway.server.adminAddress!.port!
        let shutdown = Task { await gateway.server.shutdown() }
        // Draining starts on another task; wait for it to show rather than guess how long it takes.
        var ready = 200
        for _ in 0..<50 where ready != 503 {
            try await Task.sleep(for: .milliseconds(20))
            ready = try Curl.run(["http://127.0.0.1:\(adminPort)/ready"]).status
        }
        #expect(ready == 503)
        #expect((try? RawClient(port: gateway.port)) == nil, "no longer accepting")
        let (text, closed) = client.readAll()
        #expect(text.hasPrefix("HTTP/1.1 200 OK"))
        #expect(text.lowercased().contains("connection: close"))
        #expect(text.contains("slept 4000ms"))
        #expect(closed)
        #expect(await shutdown.value == true, "drained before drain_timeout")
        await gateway.upstream.stop()
    }
}
