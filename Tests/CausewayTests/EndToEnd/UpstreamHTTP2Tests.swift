import Foundation
import Testing

private let nginxLocations = """
    location /conn { return 200 "requests=$connection_requests proto=$server_protocol\\n"; }
    location /upload { client_max_body_size 0; proxy_pass http://127.0.0.1:$server_port/echo-length; }
    location /echo-length { return 200 "length=$content_length\\n"; }
    location / { return 200 "hello over h2c\\n"; }
    """

/// Upstreams spoken to over HTTP/2 (h2c), with nginx as the upstream.
@Suite(.serialized) struct UpstreamHTTP2Tests {

    /// Runs `body` with nginx and the gateway up, and always stops both (a child process left
    /// running would keep the test runner from exiting).
    func withGateway(pool: String = "{}", _ body: (GatewayHarness) async throws -> Void) async throws {
        let nginx = try await Nginx.start(locations: nginxLocations)
        defer { nginx.stop() }
        let gateway = try await GatewayHarness.start(
            routes: "  - {name: h2, match: {path_prefix: /}, upstream: h2up}",
            extraUpstreams: "  h2up: {endpoints: [{address: \"127.0.0.1:\(nginx.port)\"}], protocol: h2c, pool: \(pool)}")
        try await gateway.run(body)
    }

    @Test(arguments: Transport.allCases)
    func proxiesToAnHTTP2Upstream(over transport: Transport) async throws {
        try await withGateway { gateway in
        let result = try Curl.run(["\(gateway.url(transport))/hello"], over: transport)
        #expect(result.status == 200)
        #expect(result.body == "hello over h2c\n")
        #expect(result.header("x-request-id") != nil)
        let proto = try Curl.run(["\(gateway.url(transport))/conn"], over: transport)
        #expect(proto.body.hasSuffix("proto=HTTP/2.0\n"), "nginx saw HTTP/2")
        }
    }

    @Test func concurrentExchangesShareOneUpstreamConnection() async throws {
        try await withGateway { gateway in
        // One client connection → one gateway loop → that loop's pool: 300 requests, 50 at a time.
        let load = try H2Load.run(["-n", "300", "-c", "1", "-m", "50", "\(gateway.url)/x"])
        #expect(load.succeeded2xx == 300)
        let after = try Curl.run(["\(gateway.url)/conn"], over: .h2c)
        // The h2load connection and this one may land on different loops (two pools).
        let requests = Int(after.body.split(separator: " ")[0].dropFirst("requests=".count)) ?? 0
        #expect(requests == 1 || requests >= 301, "multiplexed on one upstream connection (got \(requests))")
        }
    }

    @Test func idleUpstreamConnectionsClose() async throws {
        try await withGateway(pool: "{idle_timeout: 300ms}") { gateway in
            // One client keep-alive connection: every request on the same loop and pool.
            let client = try RawClient(port: gateway.port)
            let request = "GET /conn HTTP/1.1\r\nHost: a\r\n\r\n"
            client.send(request)
            #expect(client.readUntil("proto=").contains("requests=1 "))
            client.send(request)
            #expect(client.readUntil("proto=").contains("requests=2 "), "reused while busy")
            try await Task.sleep(for: .milliseconds(900))
            client.send(request)
            #expect(client.readUntil("proto=").contains("requests=1 "), "a new upstream connection after idling")
        }
    }
}
