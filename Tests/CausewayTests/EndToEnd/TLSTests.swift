import CausewayConfig
import CausewayGateway
import Foundation
import Testing

/// TLS as real clients see it: openssl s_client and curl against the harness's TLS listener.
@Suite(.serialized) struct TLSTests {
    /// Runs `openssl` with `arguments`, standard input closed; returns standard output.
    func openssl(_ arguments: [String], input: String = "") throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        let out = Pipe()
        let inPipe = Pipe()
        process.standardOutput = out
        process.standardError = out
        process.standardInput = inPipe
        try process.run()
        inPipe.fileHandleForWriting.write(Data(input.utf8))
        try inPipe.fileHandleForWriting.close()
        let text = String(decoding: readToEnd(out.fileHandleForReading.fileDescriptor), as: UTF8.self)
        process.waitUntilExit()
        return text
    }

    @Test func alpnOffersH2ThenHTTP1InListenerOrder() async throws {
        let gateway = try await GatewayHarness.start()
        defer { Task { await gateway.stop() } }
        let both = try openssl(["s_client", "-connect", "127.0.0.1:\(gateway.tlsPort)", "-alpn", "http/1.1,h2"])
        #expect(both.contains("ALPN protocol: h2"), "server preference wins")
        let http1 = try openssl(["s_client", "-connect", "127.0.0.1:\(gateway.tlsPort)", "-alpn", "http/1.1"])
        #expect(http1.contains("ALPN protocol: http/1.1"))
        let none = try Curl.run(["--http1.1", "--cacert", TestCertificates.shared.caPath, "-w", "%{http_version}",
                                 "-o", "/dev/null", "\(gateway.url(.h2))/api/x"])
        #expect(none.body == "1.1", "HTTP/1.1 over TLS")
    }

    @Test func sniChoosesTheMatchingCertificateAndDefaultsToTheFirst() async throws {
        let gateway = try await GatewayHarness.start()
        defer { Task { await gateway.stop() } }
        let other = try openssl(["s_client", "-connect", "127.0.0.1:\(gateway.tlsPort)", "-servername", "api.other.test"])
        #expect(other.contains("subject=CN = other"))
        let unknown = try openssl(["s_client", "-connect", "127.0.0.1:\(gateway.tlsPort)", "-servername", "nobody.example"])
        #expect(unknown.contains("subject=CN = localhost"))
    }

    @Test func oldProtocolsAndGarbageCloseOnlyThatConnection() async throws {
        let gateway = try await GatewayHarness.start()
        defer { Task { await gateway.stop() } }
        let tls11 = try openssl(["s_client", "-connect", "127.0.0.1:\(gateway.tlsPort)", "-tls1_1"])
        #expect(tls11.contains("alert protocol version"), "TLS 1.1 is refused with an alert")
        let garbage = try RawClient(port: gateway.tlsPort)
        garbage.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        let (text, closed) = garbage.readAll()
        #expect(closed)
        #expect(!text.contains("HTTP/1.1"), "plaintext on a TLS port gets an alert, not HTTP")
        #expect(try Curl.run(["\(gateway.url(.h2))/api/x"], over: .h2).status == 200, "others unaffected")
    }

    @Test func sessionsResume() async throws {
        let gateway = try await GatewayHarness.start()
        defer { Task { await gateway.stop() } }
        let session = FileManager.default.temporaryDirectory.appendingPathComponent("causeway-session-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: session) }
        // TLS 1.3 tickets arrive after the handshake: send a request so they are read.
        let request = "GET /api/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        _ = try openssl(["s_client", "-connect", "127.0.0.1:\(gateway.tlsPort)", "-alpn", "http/1.1", "-sess_out", session,
                         "-ign_eof"], input: request)
        let second = try openssl(["s_client", "-connect", "127.0.0.1:\(gateway.tlsPort)", "-alpn", "http/1.1", "-sess_in", session,
                                  "-ign_eof"], input: request)
        #expect(second.contains("Reused, TLSv1.3"))
    }

    @Test func unreadableOrMismatchedCertificatesAreConfigErrors() throws {
        let certs = TestCertificates.shared
        let yaml = """
            listeners:
              - name: tls
                address: "127.0.0.1:0"
                tls: {certificates: [{cert: /nonexistent.crt, key: "\(certs.key("localhost"))"}]}
              - name: tls2
                address: "127.0.0.1:0"
                tls: {certificates: [{cert: "\(certs.cert("localhost"))", key: "\(certs.key("other"))"}]}
            upstreams: {u: {endpoints: [{address: "127.0.0.1:1"}]}}
            routes: [{match: {path_prefix: /}, upstream: u}]
            """
        let config = try ConfigLoader.parse(yaml, file: "tls.yaml")
        do {
            _ = try RuntimeSnapshot(config: config)
            Issue.record("expected certificate errors")
        } catch let errors as ConfigErrors {
            let lines = errors.errors.map(\.description)
            #expect(lines.count == 2)
            #expect(lines[0].hasPrefix(#"tls.yaml:4:33: listeners[0].tls.certificates[0].cert: cannot load certificate chain "/nonexistent.crt""#))
            #expect(lines[1] == #"tls.yaml:7:\#(42 + certs.cert("localhost").count): listeners[1].tls.certificates[0].key: private key "\#(certs.key("other"))" does not match certificate "\#(certs.cert("localhost"))""#)
        }
    }

    @Test func certificatesReloadForNewHandshakesOnly() async throws {
        let certs = TestCertificates.shared
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("causeway-reload-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.copyItem(atPath: certs.cert("localhost"), toPath: directory + "/site.crt")
        try FileManager.default.copyItem(atPath: certs.key("localhost"), toPath: directory + "/site.key")
        let config = try ConfigLoader.parse("""
            server: {admin: {address: "127.0.0.1:0"}}
            listeners:
              - {name: tls, address: "127.0.0.1:0", tls: {certificates: [{cert: "\(directory)/site.crt", key: "\(directory)/site.key"}]}}
            upstreams: {u: {endpoints: [{address: "127.0.0.1:1"}]}}
            routes: [{match: {path_prefix: /}, upstream: u}]
            """, file: "reload.yaml")
        let server = try GatewayServer(config: config)
        try await server.start()
        defer { Task { await server.shutdown() } }
        let port = server.listenerAddresses["tls"]!.port!
        #expect(try openssl(["s_client", "-connect", "127.0.0.1:\(port)"]).contains("subject=CN = localhost"))
        // A broken file is refused and the old certificate stays.
        try "not a certificate".write(toFile: directory + "/site.crt", atomically: true, encoding: .utf8)
        #expect(throws: ConfigErrors.self) { try server.reloadCertificates() }
        #expect(try openssl(["s_client", "-connect", "127.0.0.1:\(port)"]).contains("subject=CN = localhost"))
        // A good new pair is used by the next handshake.
        try FileManager.default.removeItem(atPath: directory + "/site.crt")
        try FileManager.default.removeItem(atPath: directory + "/site.key")
        try FileManager.default.copyItem(atPath: certs.cert("other"), toPath: directory + "/site.crt")
        try FileManager.default.copyItem(atPath: certs.key("other"), toPath: directory + "/site.key")
        try server.reloadCertificates()
        #expect(try openssl(["s_client", "-connect", "127.0.0.1:\(port)"]).contains("subject=CN = other"))
    }
}
