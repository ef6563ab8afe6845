import CausewayConfig
import CausewayGateway
import Foundation
import Logging
import NIOPosix
import Testing

/// Config reload in process: a gateway started from a file, the file rewritten, and the reload
/// asked for through the admin endpoint (as an operator would) or the API.
@Suite(.serialized) struct ReloadTests {
    struct Fixture {
        let directory: String
        let file: String
        let server: GatewayServer
        let upstream: TestUpstream

        var port: Int { server.listenerAddresses["main"]!.port! }
        var admin: String { "http://127.0.0.1:\(server.adminAddress!.port!)" }

        static func yaml(version: String, upstreamPort: Int, pool: String = "{}", extraListener: String = "",
                         extraRoute: String = "") -> String {
            """
            server: {workers: 2, drain_timeout: 2s, admin: {address: "127.0.0.1:0"}}
            listeners:
              - {name: main, address: "127.0.0.1:0", protocols: [http1, h2c]}
            \(extraListener)
            upstreams:
              origin: {endpoints: [{address: "127.0.0.1:\(upstreamPort)"}], pool: \(pool)}
            routes:
              - name: api
                match: {path_prefix: /}
                upstream: origin
                timeout: 0
                headers: {response: {set: {x-config-version: "\(version)"}}}
            \(extraRoute)
            """
        }

        static func start(_ body: (Fixture) async throws -> Void) async throws {
            let upstream = try await TestUpstream.start()
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("reload-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let file = directory + "/causeway.yaml"
            try yaml(version: "1", upstreamPort: upstream.port).write(toFile: file, atomically: true, encoding: .utf8)
            var logger = Logger(label: "test")
            logger.logLevel = .critical
            let server = try GatewayServer(config: try ConfigLoader.load(path: file), configPath: file, logger: logger)
            try await server.start()
            let fixture = Fixture(directory: directory, file: file, server: server, upstream: upstream)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            do {
                try await body(fixture)
            } catch {
                await server.shutdown()
                await upstream.stop()
                throw error
            }
            await server.shutdown()
            await upstream.stop()
        }

        func write(_ text: String) throws {
            try text.write(toFile: file, atomically: true, encoding: .utf8)
        }

        func reload() throws -> CurlResult {
            try Curl.run(["-X", "POST", "\(admin)/admin/reload"])
        }

        func version(_ path: String = "/echo") throws -> String? {
            try Curl.run(["http://127.0.0.1:\(port)\(path)"]).header("x-config-version")
        }
    }

    @Test func aReloadAppliesToTheNextRequestWhileRequestsInFlightFinishOnTheirSnapshot() async throws {
        try await Fixture.start { fixture in
            #expect(try fixture.version() == "1")
            // A request that is in flight across the reload.
            let port = fixture.port
            let slow = Task.detached { try Curl.run(["http://127.0.0.1:\(port)/slow?ms=1500"]) }
            try await Task.sleep(for: .milliseconds(300))
            try fixture.write(Fixture.yaml(version: "2", upstreamPort: fixture.upstream.port))
            let answer = try fixture.reload()
            #expect(answer.status == 200, "\(answer.body)")
            #expect(answer.body.contains(#""version":2"#))
            #expect(try fixture.version() == "2", "the next request uses the new route at once")
            let inFlight = try await slow.value
            #expect(inFlight.status == 200)
            #expect(inFlight.header("x-config-version") == "1", "the request in flight finished on its own snapshot")
            let config = try Curl.run(["\(fixture.admin)/admin/config"])
            #expect(config.status == 200)
            #expect(config.body.contains(#""version":2"#) && config.body.contains(#""loaded_at":"#) && config.body.contains(fixture.file))
        }
    }

    @Test func aBrokenConfigIsRefusedWithEveryErrorAndTheRunningOneStays() async throws {
        try await Fixture.start { fixture in
            try fixture.write("""
                listeners: [{name: main, address: "127.0.0.1:0", protocols: [http9]}]
                upstreams: {origin: {endpoints: [{address: "127.0.0.1:1"}]}}
                routes: [{match: {path_prefix: /}, upstream: nowhere, timeout: forever}]
                """)
            let refused = try fixture.reload()
            #expect(refused.status == 422)
            #expect(refused.body.contains(#""status":"refused","version":1"#), "\(refused.body)")
            let object = try JSONSerialization.jsonObject(with: Data(refused.body.utf8)) as? [String: Any]
            let errors = object?["errors"] as? [String] ?? []
            #expect(errors.count >= 3, "every error, not just the first: \(errors)")
            #expect(errors.allSatisfy { $0.hasPrefix(fixture.file + ":") }, "file:line:column: key.path: message — \(errors)")
            #expect(errors.contains { $0.contains("listeners[0].protocols") || $0.contains("protocols") })
            // Traffic goes on with the running config.
            #expect(try fixture.version() == "1")
            #expect(try Curl.run(["\(fixture.admin)/admin/config"]).body.contains(#""version":1"#))
            // A method other than POST is refused.
            #expect(try Curl.run(["\(fixture.admin)/admin/reload"]).status == 405)
        }
    }

    @Test func unchangedUpstreamsKeepTheirConnectionsAndChangedOnesReconnect() async throws {
        try await Fixture.start { fixture in
            for _ in 0..<20 { _ = try fixture.version() }
            let warmed = fixture.upstream.connections
            #expect(warmed >= 1 && warmed <= 2, "one pooled connection per loop at most: \(warmed)")
            // A new route, the same upstream: its pools (and connections) carry over.
            try fixture.write(Fixture.yaml(version: "2", upstreamPort: fixture.upstream.port,
                                           extraRoute: "  - {name: other, match: {path_prefix: /other/}, upstream: origin}"))
            #expect(try fixture.reload().status == 200)
            for _ in 0..<20 { #expect(try fixture.version() == "2") }
            #expect(fixture.upstream.connections == warmed, "no new upstream connection after a reload that kept the upstream")
            // The upstream's pool settings change: its old pools drain, new ones connect.
            try fixture.write(Fixture.yaml(version: "3", upstreamPort: fixture.upstream.port, pool: "{max_connections: 8}"))
            #expect(try fixture.reload().status == 200)
            for _ in 0..<5 { #expect(try fixture.version() == "3") }
            #expect(fixture.upstream.connections > warmed)
        }
    }

    @Test func listenersAreOpenedAndClosedByAReload() async throws {
        try await Fixture.start { fixture in
            try fixture.write(Fixture.yaml(version: "2", upstreamPort: fixture.upstream.port,
                                           extraListener: "  - {name: extra, address: \"127.0.0.1:0\"}"))
            #expect(try fixture.reload().status == 200)
            let extra = try #require(fixture.server.listenerAddresses["extra"]?.port)
            let onExtra = try Curl.run(["http://127.0.0.1:\(extra)/echo"])
            #expect(onExtra.status == 200 && onExtra.header("x-config-version") == "2")
            // Removed again: it stops accepting; the main listener is untouched.
            try fixture.write(Fixture.yaml(version: "3", upstreamPort: fixture.upstream.port))
            #expect(try fixture.reload().status == 200)
            #expect(fixture.server.listenerAddresses["extra"] == nil)
            try await Task.sleep(for: .milliseconds(200))
            let refused = try Curl.run(["http://127.0.0.1:\(extra)/echo"])
            #expect(refused.exitCode == 7, "connection refused (curl exit 7), got \(refused.exitCode)")
            #expect(try fixture.version() == "3")
        }
    }

    /// An event stream over HTTP/1.1 and one over HTTP/2 stay open, untouched, across 20 reloads.
    @Test func longLivedStreamsSurviveTwentyReloads() async throws {
        try await Fixture.start { fixture in
            let port = fixture.port
            // 30 events, one every 100 ms: 3 s of streaming.
            let sse = Task.detached { try Curl.run(["-N", "http://127.0.0.1:\(port)/events?n=30&ms=100"]) }
            let h2 = Task.detached { try Curl.run(["-N", "http://127.0.0.1:\(port)/events?n=30&ms=100"], over: .h2c) }
            try await Task.sleep(for: .milliseconds(200))
            for version in 2...21 {
                try fixture.write(Fixture.yaml(version: "\(version)", upstreamPort: fixture.upstream.port))
                let answer = try fixture.reload()
                #expect(answer.status == 200, "\(answer.body)")
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(try fixture.version() == "21")
            for (name, stream) in [("http1", sse), ("h2c", h2)] {
                let result = try await stream.value
                #expect(result.status == 200 && result.exitCode == 0, "\(name): exit \(result.exitCode)")
                let events = result.body.components(separatedBy: "data: t=").count - 1
                #expect(events == 30, "\(name): \(events) events")
                #expect(result.header("x-config-version") == "1", "\(name) stayed on the snapshot it started with")
            }
        }
    }
}
