import Foundation
import Glibc
import Testing

/// Real sockets, real curl, a real upstream: the proxy as a client sees it.
@Suite(.serialized) struct ProxyTests {
    @Test(arguments: Transport.allCases)
    func proxiesWithRewriteHeaderFiltersAndForwardingHeaders(over transport: Transport) async throws {
        let gateway = try await GatewayHarness.start()
        defer { Task { await gateway.stop() } }
        let result = try Curl.run(["\(gateway.url(transport))/api/items?x=1", "-H", "x-internal-token: secret",
                                   "-H", "Connection: x-private", "-H", "x-private: hop", "-H", "TE: trailers",
                                   "-H", "x-forwarded-for: 10.1.1.1"], over: transport)
        #expect(result.status == 200)
        let echo = try JSONSerialization.jsonObject(with: Data(result.body.utf8)) as? [String: Any]
        #expect(echo?["path"] as? String == "/items?x=1")
        let headers = echo?["headers"] as? [String: String] ?? [:]
        #expect(headers["x-gateway"] == "causeway")
        #expect(headers["x-internal-token"] == nil)
        if transport == .http1 {  // curl sends no Connection header over HTTP/2 (it is not allowed there)
            #expect(headers["x-private"] == nil, "a header named by Connection is hop-by-hop")
        }
        #expect(headers["te"] == nil)
        #expect(headers["x-forwarded-for"] == "10.1.1.1, 127.0.0.1")
        let authority = transport == .h2 ? "localhost:\(gateway.tlsPort)" : "127.0.0.1:\(gateway.port)"
        #expect(headers["x-forwarded-proto"] == (transport == .h2 ? "https" : "http"))
        #expect(headers["x-forwarded-host"] == authority)
        #expect(headers["host"] == authority)
        let requestID = try #require(result.header("x-request-id"))
        #expect(requestID.count == 32)
        #expect(headers["x-request-id"] == requestID, "the upstream sees the id the client gets")
        #expect(result.header("server") == nil, "response remove")
        #expect(result.header("x-hop") == nil, "upstream's Connection-named header is dropped")
        #expect(result.header("x-upstream") == "yes")
    }

    @Test(arguments: Transport.allCases)
    func clientRequestIDIsKept(over transport: Transport) async throws {
        let gateway = try await GatewayHarness.start()
        defer { Task { await gateway.stop() } }
        let result = try Curl.run(["\(gateway.url(transport))/api/x", "-H", "X-Request-Id: abc-123"], over: transport)
        #expect(result.header("x-request-id") == "abc-123")
        #expect(gateway.upstream.lastHeader("x-request-id") == ["abc-123"])
    }

    @Test(arguments: Transport.allCases)
    func hundredSequentialRequestsReuseOneUpstreamConnection(over transport: Transport) async throws {
        let gateway = try await GatewayHarness.start()
        defer { Task { await gateway.stop() } }
        // One curl, 100 URLs: one client connection; every request lands on the same loop,
        // and so on the same pooled upstream connection.
        if transport == .http1 {
            let urls = (0..<100).map { "\(gateway.url(transport))/api/n\($0)" }
            let result = try Curl.run(["-o", "/dev/null"] + urls.flatMap { [$0, "-o", "/dev/null"] }.dropLast(2))
            #expect(result.exitCode == 0)
        } else {
            // h2load: one connection, one stream at a time (curl 7.88 cannot reuse a prior-knowledge connection).
            #expect(try H2Load.run(["-n", "100", "-c", "1", "-m", "1", "\(gateway.url(transport))/api/n"]).succeeded2xx == 100)
        }
        #expect(gateway.upstream.requests == 100)
        #expect(gateway.upstream.connections == 1)
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() async throws {
        let gateway = try await GatewayHarness.start()
        defer { Task { await gateway.stop() } }
        let client = try RawClient(port: gateway.port)
        client.send("GET /api/slow?ms=300 HTTP/1.1\r\nHost: a\r\n\r\nGET /api/first HTTP/1.1\r\nHost: a\r\n\r\nGET /api/second HTTP/1.1\r\nHost: a\r\n\r\n")
        let text = client.readUntil("second\"}")
        let slow = try #require(text.range(of: "slept 300ms"))
        let first = try #require(text.range(of: "first\"}"))
        let second = try #require(text.range(of: "second\"}"))
        #expect(slow.lowerBound < first.lowerBound && first.lowerBound < second.lowerBound)
    }

    @Test func headAndChunkedAndExpectContinue() async throws {
        let gateway = try await GatewayHarness.start()
        defer { Task { await gateway.stop() } }
        let head = try Curl.run(["-I", "-o", "/dev/null", "\(gateway.url)/api/status/200"], over: .h2c)
        #expect(head.status == 200)
        #expect(head.header("content-length") == "11")
        let head1 = try Curl.run(["-I", "-o", "/dev/null", "\(gateway.url)/api/status/200"])
        #expect(head1.status == 200)
        #expect(head1.header("content-length") == "11")
        #expect(head1.body.isEmpty)

        let chunked = try Curl.run(["\(gateway.url)/api/upload", "-H", "Transfer-Encoding: chunked", "--data-binary", "@-"],
                                   input: Data(repeating: 65, count: 300_000))
        #expect(chunked.body == "{\"received\":300000}")

        let expect = try Curl.run(["\(gateway.url)/api/upload", "-H", "Expect: 100-continue", "--data-binary", "@-"],
                                  input: Data(repeating: 66, count: 200_000))
        #expect(expect.status == 200)
        #expect(expect.body == "{\"received\":200000}")
        #expect(gateway.upstream.lastHeader("expect").isEmpty, "the gateway answers 100-continue itself")
    }

    @Test(arguments: Transport.allCases)
    func oneGiBUploadAndDownloadStreamWithinBoundedMemory(over transport: Transport) async throws {
        let gateway = try await GatewayHarness.start()
        defer { Task { await gateway.stop() } }
        let size = 1 << 30
        _ = try Curl.run(["-o", "/dev/null", "\(gateway.url(transport))/big/bytes?n=1000"])  // warm up pools and allocators
        let idle = ProcessStats.residentBytes()
        let download = try Curl.run(["-o", "/dev/null", "-w", "%{size_download}", "\(gateway.url(transport))/big/bytes?n=\(size)"], over: transport)
        #expect(download.body == String(size))
        let afterDownload = ProcessStats.residentBytes()
        // A sparse 1 GiB file: curl streams it as a PUT with Content-Length.
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("causeway-upload-\(UUID().uuidString)")
        FileManager.default.createFile(atPath: file.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: file) }
        #expect(truncate(file.path, off_t(size)) == 0)
        let upload = try Curl.run(["-T", file.path, "\(gateway.url(transport))/big/upload"], over: transport)
        #expect(upload.body == "{\"received\":\(size)}")
        let afterUpload = ProcessStats.residentBytes()
        // The test process holds the gateway and the upstream: both must stream.
        #expect(afterDownload - idle < 100 << 20, "download grew RSS by \((afterDownload - idle) >> 20) MiB")
        #expect(afterUpload - idle < 100 << 20, "upload grew RSS by \((afterUpload - idle) >> 20) MiB")
    }
}
