import CausewayConfig
import CausewayGateway
import Foundation
import NIOPosix
import Testing

/// Upstreams over TLS (HTTP/1.1 and h2), with nginx as the upstream holding a certificate from
/// the test CA, and optionally requiring a client certificate.
@Suite(.serialized) struct UpstreamTLSTests {
    let certificates = TestCertificates.shared

    func nginxTLS(requireClientCertificate: Bool = false) -> String {
        var directives = "ssl_protocols TLSv1.2 TLSv1.3; ssl_certificate \(certificates.cert("upstream")); ssl_certificate_key \(certificates.key("upstream"));"
        if requireClientCertificate {
            directives += " ssl_client_certificate \(certificates.cert("ca")); ssl_verify_client on;"
        }
        return directives
    }

    static let locations = """
        location / { return 200 "proto=$server_protocol tls=$ssl_protocol sni=$ssl_server_name client=$ssl_client_s_dn\\n"; }
        """

    /// Runs `body` with a TLS nginx and the gateway up (upstream `up` configured by `upstream`,
    /// given nginx's port), and always stops both.
    func withGateway(requireClientCertificate: Bool = false, upstream: (Int) -> String,
                     _ body: (GatewayHarness) async throws -> Void) async throws {
        let nginx = try await Nginx.start(tls: nginxTLS(requireClientCertificate: requireClientCertificate),
                                          locations: Self.locations)
        defer { nginx.stop() }
        let gateway = try await GatewayHarness.start(
            routes: "  - {name: up, match: {path_prefix: /}, upstream: up}",
            extraUpstreams: "  up: \(upstream(nginx.port))")
        try await gateway.run(body)
    }

    var ca: String { certificates.cert("ca") }

    @Test(arguments: ["http1", "h2"])
    func verifiesTheUpstreamAgainstTheConfiguredCA(protocol name: String) async throws {
        try await withGateway(upstream: { port in
            "{endpoints: [{address: \"localhost:\(port)\"}], protocol: \(name), tls: {ca: \"\(ca)\"}}"
        }) { gateway in
            for transport in Transport.allCases {
                let result = try Curl.run(["\(gateway.url(transport))/x"], over: transport)
                #expect(result.status == 200, "\(transport)")
                #expect(result.body.hasPrefix("proto=\(name == "h2" ? "HTTP/2.0" : "HTTP/1.1") tls=TLSv1.3 sni=localhost "),
                        "\(transport): \(result.body)")
            }
            // Several requests at once share the upstream connections (h2: streams on one).
            let load = try H2Load.run(["-n", "200", "-c", "2", "-m", "20", "\(gateway.url)/x"])
            #expect(load.succeeded2xx == 200)
        }
    }

    @Test func anIPAddressEndpointIsVerifiedAgainstTheCertificatesIPEntry() async throws {
        try await withGateway(upstream: { port in
            "{endpoints: [{address: \"127.0.0.1:\(port)\"}], tls: {ca: \"\(ca)\"}}"
        }) { gateway in
            let result = try Curl.run(["\(gateway.url)/x"])
            #expect(result.status == 200)
            #expect(result.body.contains("sni= "), "no SNI is sent for an IP address: \(result.body)")
        }
    }

    @Test func anUntrustedCertificateIsABadGatewayThatSaysWhy() async throws {
        // No `ca`: the system store, which does not know the test CA.
        try await withGateway(upstream: { port in
            "{endpoints: [{address: \"localhost:\(port)\"}], protocol: h2}"
        }) { gateway in
            let result = try Curl.run(["\(gateway.url)/x"])
            #expect(result.status == 502)
            #expect(result.body.contains("not trusted"), "\(result.body)")
            #expect(result.body.contains("request_id"))
        }
    }

    @Test func aNameMismatchIsRefusedUnlessVerificationIsOff() async throws {
        try await withGateway(upstream: { port in
            "{endpoints: [{address: \"localhost:\(port)\"}], tls: {ca: \"\(ca)\", server_name: api.example.com}}"
        }) { gateway in
            let result = try Curl.run(["\(gateway.url)/x"])
            #expect(result.status == 502)
            #expect(result.body.contains("not trusted") && result.body.contains("hostname mismatch"), "\(result.body)")
        }
        try await withGateway(upstream: { port in
            "{endpoints: [{address: \"localhost:\(port)\"}], tls: {verify: false, server_name: api.example.com}}"
        }) { gateway in
            let result = try Curl.run(["\(gateway.url)/x"])
            #expect(result.status == 200)
            #expect(result.body.contains("sni=api.example.com "), "the configured server_name is the SNI: \(result.body)")
        }
    }

    @Test func presentsAClientCertificateWhenTheUpstreamRequiresOne() async throws {
        try await withGateway(requireClientCertificate: true, upstream: { port in
            "{endpoints: [{address: \"localhost:\(port)\"}], tls: {ca: \"\(ca)\"}}"
        }) { gateway in
            let result = try Curl.run(["\(gateway.url)/x"])
            #expect(result.status == 400, "nginx refuses a request without a client certificate")
        }
        try await withGateway(requireClientCertificate: true, upstream: { port in
            """
            {endpoints: [{address: "localhost:\(port)"}], protocol: h2,
                   tls: {ca: "\(ca)", cert: "\(certificates.cert("client"))", key: "\(certificates.key("client"))"}}
            """
        }) { gateway in
            let result = try Curl.run(["\(gateway.url)/x"])
            #expect(result.status == 200)
            #expect(result.body.contains("client=CN=client"), "\(result.body)")
        }
    }

    /// SIGHUP re-reads an upstream's CA bundle for new connections (here: the first bundle is
    /// the wrong CA, so the first request fails; after the fix and a reload, the next succeeds).
    @Test func aReloadReReadsTheUpstreamCABundle() async throws {
        let bundle = FileManager.default.temporaryDirectory.appendingPathComponent("ca-\(UUID().uuidString).pem").path
        defer { try? FileManager.default.removeItem(atPath: bundle) }
        try FileManager.default.copyItem(atPath: certificates.cert("localhost"), toPath: bundle)  // not our CA
        try await withGateway(upstream: { port in
            "{endpoints: [{address: \"localhost:\(port)\"}], protocol: h2, tls: {ca: \"\(bundle)\"}}"
        }) { gateway in
            #expect(try Curl.run(["\(gateway.url)/x"]).status == 502)
            try FileManager.default.removeItem(atPath: bundle)
            try FileManager.default.copyItem(atPath: ca, toPath: bundle)
            try gateway.server.reloadCertificates()
            let after = try Curl.run(["\(gateway.url)/x"])
            #expect(after.status == 200, "\(after.body)")
            // A bad file on reload changes nothing and says why.
            try "not a certificate".write(toFile: bundle, atomically: true, encoding: .utf8)
            #expect(throws: ConfigErrors.self) { try gateway.server.reloadCertificates() }
            #expect(try Curl.run(["\(gateway.url)/x"]).status == 200)
        }
    }

    @Test func anUpstreamThatDoesNotSpeakTLSFailsTheHandshakeNotTheProcess() async throws {
        let nginx = try await Nginx.start(http2: false, locations: Self.locations)  // cleartext
        defer { nginx.stop() }
        let gateway = try await GatewayHarness.start(
            routes: "  - {name: up, match: {path_prefix: /}, upstream: up}",
            extraUpstreams: "  up: {endpoints: [{address: \"localhost:\(nginx.port)\"}], tls: {ca: \"\(ca)\"}}")
        let result = try Curl.run(["\(gateway.url)/x"])
        let second = try Curl.run(["\(gateway.url(.h2c))/x"], over: .h2c)
        await gateway.stop()
        #expect(result.status == 502)
        #expect(result.body.contains("TLS with upstream"), "\(result.body)")
        #expect(second.status == 502)
    }

    @Test func aSilentUpstreamTimesOutTheHandshakeWithinConnectTimeout() async throws {
        // Accepts connections and never answers the ClientHello.
        let silent = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let gateway = try await GatewayHarness.start(
            routes: "  - {name: up, match: {path_prefix: /}, upstream: up}",
            extraUpstreams: """
                  up: {endpoints: [{address: "127.0.0.1:\(silent.localAddress!.port!)"}], tls: {verify: false},
                       pool: {connect_timeout: 300ms}}
                """)
        let result = try Curl.run(["\(gateway.url)/x"])
        await gateway.stop()
        try await silent.close()
        #expect(result.status == 504)
        #expect(result.body.contains("timed out"), "\(result.body)")
    }

    @Test func badUpstreamTLSConfigIsReportedAtItsKey() throws {
        func errors(_ tls: String, protocol name: String = "http1") -> [String] {
            let yaml = """
                listeners: [{name: a, address: "127.0.0.1:0"}]
                upstreams:
                  up:
                    endpoints: [{address: "localhost:1"}]
                    protocol: \(name)
                    tls: \(tls)
                routes: [{name: r, match: {path_prefix: /}, upstream: up}]
                """
            do {
                let config = try ConfigLoader.parse(yaml, file: "t.yaml")
                _ = try RuntimeSnapshot(config: config)
                return []
            } catch let error as ConfigErrors {
                return error.errors.map(\.description)
            } catch {
                return ["\(error)"]
            }
        }
        #expect(errors("{}", protocol: "h2c") == ["t.yaml:6:5: upstreams.up.tls: h2c is cleartext HTTP/2; use protocol: h2 for HTTP/2 over TLS"])
        #expect(errors("{cert: a.crt}") == ["t.yaml:6:11: upstreams.up.tls.cert: a client certificate needs both cert and key"])
        #expect(errors("{verify: maybe}").first?.contains("upstreams.up.tls.verify: expected true or false") == true)
        let missing = errors("{ca: /nonexistent/ca.pem}")
        #expect(missing.count == 1 && missing[0].hasPrefix("t.yaml:6:15: upstreams.up.tls.ca: cannot load CA bundle \"/nonexistent/ca.pem\""),
                "\(missing)")
        let mismatch = errors("{cert: \"\(certificates.cert("client"))\", key: \"\(certificates.key("upstream"))\"}")
        #expect(mismatch.count == 1 && mismatch[0].contains("upstreams.up.tls.key: private key") && mismatch[0].contains("does not match"),
                "\(mismatch)")
        #expect(errors("", protocol: "http1") == [], "an empty tls: turns TLS on with defaults")
        #expect(errors("{ca: null, server_name: null}") == [])
    }

    /// GraphQL's calls go through the same pools: here h2 over TLS to nginx serving JSON, the
    /// users call and the batched orders call on one connection's streams.
    @Test func graphQLFansOutOverH2AndTLS() async throws {
        let nginx = try await Nginx.start(tls: nginxTLS(), locations: """
            default_type application/json;
            location /users { return 200 '[{"id":"1","name":"Ann"},{"id":"2","name":"Bob"}]'; }
            location /orders { return 200 '[{"id":"10","userId":"1"},{"id":"11","userId":"2"},{"id":"12","userId":"1"}]'; }
            """)
        defer { nginx.stop() }
        let schema = FileManager.default.temporaryDirectory.appendingPathComponent("h2-\(UUID().uuidString).graphql").path
        try """
            type Query { users: [User!]! @rest(upstream: "up", path: "/users") }
            type User {
              id: ID!
              name: String!
              orders: [Order!]! @rest(upstream: "up", path: "/orders/{$parent.id}", batch: {path: "/orders?users={$batch.id}", key: "userId"})
            }
            type Order { id: ID! }
            """.write(toFile: schema, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: schema) }
        let gateway = try await GatewayHarness.start(
            routes: "  - {name: graphql, match: {path: /graphql}, graphql: {schema: \"\(schema)\", debug: true}}",
            extraUpstreams: "  up: {endpoints: [{address: \"localhost:\(nginx.port)\"}], protocol: h2, tls: {ca: \"\(ca)\"}}")
        try await gateway.run { gateway in
            for transport in Transport.allCases {
                let result = try Curl.run(["-H", "content-type: application/json", "--data-binary",
                                           #"{"query": "{ users { name orders { id } } }"}"#, "\(gateway.url(transport))/graphql"],
                                          over: transport)
                #expect(result.body == #"{"data":{"users":[{"name":"Ann","orders":[{"id":"10"},{"id":"12"}]},{"name":"Bob","orders":[{"id":"11"}]}]}}"# + "\n",
                        "\(transport): \(result.body)")
                #expect(result.header("x-causeway-upstream-calls") == "2")
            }
        }
    }
}
