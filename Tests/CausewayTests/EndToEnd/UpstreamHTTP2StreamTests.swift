import Foundation
import Testing

/// Stream-level behaviour towards an HTTP/2 upstream that nginx cannot show (Tests/Scripts/
/// h2_upstream.py): trailers both ways, cancels, GOAWAY and refused streams.
@Suite(.serialized) struct UpstreamHTTP2StreamTests {

    func withGateway(_ body: (GatewayHarness, PythonUpstream) async throws -> Void) async throws {
        let upstream = try await PythonUpstream.start()
        defer { upstream.stop() }
        let gateway = try await GatewayHarness.start(
            routes: "  - {name: h2, match: {path_prefix: /}, upstream: h2up}",
            extraUpstreams: "  h2up: {endpoints: [{address: \"127.0.0.1:\(upstream.port)\"}], protocol: h2c}")
        try await gateway.run { try await body($0, upstream) }
    }

    /// Request trailers reach the upstream (it echoes them as "echo-*"), and its response
    /// trailers (grpc-status) reach the client, over each downstream protocol.
    @Test(arguments: Transport.allCases)
    func trailersPassThroughBothWays(over transport: Transport) async throws {
        try await withGateway { gateway, _ in
            switch transport {
            case .http1:
                let client = try RawClient(port: gateway.port)
                client.send("POST /trailers HTTP/1.1\r\nHost: a\r\nTE: trailers\r\nTransfer-Encoding: chunked\r\n\r\n"
                            + "c\r\nrequest body\r\n0\r\nx-checksum: abc123\r\n\r\n")
                let response = client.readUntil("\r\n\r\n", occurrences: 2)
                #expect(response.hasPrefix("HTTP/1.1 200"))
                #expect(response.contains("body before trailers"))
                #expect(response.contains("\r\n0\r\ngrpc-status: 0\r\necho-x-checksum: abc123\r\n\r\n"), "\(response)")
            case .h2c, .h2:
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
                let port = transport == .h2 ? gateway.tlsPort : gateway.port
                process.arguments = ["20", "python3", PythonUpstream.scripts + "/h2_trailers_client.py", "127.0.0.1",
                                     String(port), "/trailers"] + (transport == .h2 ? [TestCertificates.shared.caPath] : [])
                let output = Pipe()
                process.standardOutput = output
                try process.run()
                let data = readToEnd(output.fileHandleForReading.fileDescriptor)
                process.waitUntilExit()
                let result = try JSONSerialization.jsonObject(with: Data(data)) as? [String: Any]
                #expect(result?["status"] as? Int == 200)
                #expect(result?["body"] as? String == "body before trailers\n")
                #expect(result?["trailers"] as? [String: String] == ["grpc-status": "0", "echo-x-checksum": "abc123"])
            }
        }
    }

    /// A client that gives up mid-response makes the gateway reset the upstream stream (CANCEL)
    /// rather than leave it open on a shared connection.
    @Test(arguments: [Transport.http1, .h2c])
    func aClientCancelResetsTheUpstreamStream(over transport: Transport) async throws {
        try await withGateway { gateway, upstream in
            let result = try Curl.run(["--max-time", "1", "\(gateway.url)/hang"], over: transport)
            #expect(result.body == "started\n", "the response had started streaming")
            var events: [String] = []
            for _ in 0..<40 where !events.contains("reset /hang 8") {
                try await Task.sleep(for: .milliseconds(50))
                events = try upstream.events()
            }
            #expect(events.contains("reset /hang 8"), "\(events)")
            let after = try Curl.run(["\(gateway.url)/after"], over: transport)
            #expect(after.body == "ok /after\n", "the upstream connection still serves")
        }
    }

    /// GOAWAY that excludes the stream means it was not processed: sent again on a new
    /// connection, and the client never sees the failure.
    @Test func aGoawayBeforeTheStreamIsRetriedOnANewConnection() async throws {
        try await withGateway { gateway, upstream in
            let result = try Curl.run(["\(gateway.url)/goaway"])
            #expect(result.status == 200)
            #expect(result.body == "ok /goaway\n")
            #expect(try upstream.events() == ["connection 1", "connection 2", "connection 3"],
                    "the refused stream's retry opened connection 2; the events query itself is 3")
        }
    }

    @Test func aRefusedStreamIsRetried() async throws {
        try await withGateway { gateway, upstream in
            let result = try Curl.run(["\(gateway.url)/refuse"])
            #expect(result.status == 200)
            #expect(result.body == "ok /refuse\n")
            #expect(try upstream.events() == ["connection 1", "connection 2"], "retried on the same connection")
        }
    }
}

/// What an HTTP/2 upstream is told of the request: `:scheme` is the upstream connection's own
/// (https over TLS), and a client's `TE: trailers` is passed on, the one TE value HTTP/2 allows
/// and the one gRPC servers require.
@Suite(.serialized) struct UpstreamHTTP2HeaderTests {
    @Test(arguments: [false, true])
    func schemeAndTEReachTheUpstream(tls: Bool) async throws {
        let certificates = TestCertificates.shared
        let upstream = try await PythonUpstream.start(
            arguments: tls ? [certificates.cert("upstream"), certificates.key("upstream")] : [])
        defer { upstream.stop() }
        let definition = tls
            ? "{endpoints: [{address: \"localhost:\(upstream.port)\"}], protocol: h2, tls: {ca: \"\(certificates.cert("ca"))\"}}"
            : "{endpoints: [{address: \"127.0.0.1:\(upstream.port)\"}], protocol: h2c}"
        let gateway = try await GatewayHarness.start(
            routes: "  - {name: h2, match: {path_prefix: /}, upstream: h2up}",
            extraUpstreams: "  h2up: \(definition)")
        try await gateway.run { gateway in
            for transport in Transport.allCases {
                let result = try Curl.run(["-H", "TE: trailers", "\(gateway.url(transport))/headers"], over: transport)
                let pairs = (try? JSONDecoder().decode([[String]].self, from: Data(result.body.utf8))) ?? []
                let fields = Dictionary(pairs.map { ($0[0], $0[1]) }, uniquingKeysWith: { a, _ in a })
                #expect(result.status == 200, "\(transport)")
                #expect(fields[":scheme"] == (tls ? "https" : "http"), "\(transport): \(pairs)")
                #expect(fields["te"] == "trailers", "\(transport): \(pairs)")
                #expect(fields["connection"] == nil && fields["transfer-encoding"] == nil, "\(transport): \(pairs)")
            }
        }
    }
}
