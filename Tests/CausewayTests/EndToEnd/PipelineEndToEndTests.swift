import CausewayGateway
import CausewayHTTP
import Foundation
import NIOPosix
import Synchronization
import Testing

/// The pipeline's seams over real sockets: the completion hook and the error renderer.
@Suite(.serialized) struct PipelineEndToEndTests {
    final class Completions: Sendable {
        let records = Mutex<[CompletedExchange]>([])

        func of(_ requestID: String) -> [CompletedExchange] {
            records.withLock { $0.filter { $0.requestID == requestID } }
        }

        /// Waits (up to 5 s) until the exchange with this id has reported.
        func waitFor(_ requestID: String) async -> [CompletedExchange] {
            for _ in 0..<100 {
                let found = of(requestID)
                if !found.isEmpty {
                    try? await Task.sleep(for: .milliseconds(100))  // a second report would show by now
                    return of(requestID)
                }
                try? await Task.sleep(for: .milliseconds(50))
            }
            return []
        }
    }

    static func deadPort() async throws -> Int {
        let probe = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        let port = probe.localAddress!.port!
        try await probe.close()
        return port
    }

    @Test(arguments: [Transport.http1, .h2c])
    func theCompletionHookFiresOnceForEveryWayAnExchangeEnds(over transport: Transport) async throws {
        let completions = Completions()
        let deadPort = try await Self.deadPort()
        let gateway = try await GatewayHarness.start(
            routes: """
                  - {name: api, match: {path_prefix: /api/}, upstream: origin, rewrite: {path_prefix: /}, timeout: 1s}
                  - {name: dead, match: {path_prefix: /dead/}, upstream: dead}
                """,
            extraUpstreams: "  dead: {endpoints: [{address: \"127.0.0.1:\(deadPort)\"}]}",
            onExchangeComplete: { record in completions.records.withLock { $0.append(record) } })
        try await gateway.run { gateway in
            let base = gateway.url(transport)
            func request(_ id: String, _ path: String, _ extra: [String] = []) throws -> CurlResult {
                try Curl.run(["-H", "x-request-id: \(id)"] + extra + ["\(base)\(path)"], over: transport)
            }
            // Success.
            #expect(try request("ok-\(transport)", "/api/echo").status == 200)
            let ok = await completions.waitFor("ok-\(transport)")
            #expect(ok.map(\.kind) == [.completed])
            #expect(ok.first?.status == 200 && ok.first?.route == "api" && ok.first?.configVersion == 1)
            // Upstream error: nothing listens.
            #expect(try request("down-\(transport)", "/dead/x").status == 502)
            let down = await completions.waitFor("down-\(transport)")
            #expect(down.map(\.kind) == [.failed])
            #expect(down.first?.errorCode == "upstream_unavailable" && down.first?.status == 502)
            // Timeout: the route allows 1 s, the upstream takes 3.
            #expect(try request("late-\(transport)", "/api/slow?ms=3000").status == 504)
            let late = await completions.waitFor("late-\(transport)")
            #expect(late.map(\.kind) == [.failed])
            #expect(late.first?.errorCode == "upstream_timeout")
            // Client abort: curl gives up after 300 ms.
            _ = try request("gone-\(transport)", "/api/slow?ms=800", ["--max-time", "0.3"])
            let gone = await completions.waitFor("gone-\(transport)")
            #expect(gone.map(\.kind) == [.cancelled])
            #expect(gone.first?.status == nil)
            // No route.
            #expect(try request("lost-\(transport)", "/nowhere").status == 404)
            let lost = await completions.waitFor("lost-\(transport)")
            #expect(lost.map(\.kind) == [.failed] && lost.first?.route == nil)
        }
    }

    /// A gRPC caller gets a trailers-only gRPC answer for a gateway error: one HEADERS frame
    /// with END_STREAM carrying :status 200, grpc-status and grpc-message; no DATA frame.
    @Test func gRPCCallersGetTrailersOnlyErrors() async throws {
        let deadPort = try await Self.deadPort()
        let gateway = try await GatewayHarness.start(
            routes: "  - {name: dead, match: {path_prefix: /svc.Dead/}, upstream: dead}",
            extraUpstreams: "  dead: {endpoints: [{address: \"127.0.0.1:\(deadPort)\"}]}")
        try await gateway.run { gateway in
            for (path, status) in [("/svc.Missing/Call", "12"), ("/svc.Dead/Call", "14")] {
                let output = try run("/usr/bin/nghttp", ["-v", "-H", "content-type: application/grpc", "-H", "te: trailers",
                                                         "-d", "/dev/null", "\(gateway.url)\(path)"])
                let received = output.split(separator: "\n").filter { $0.contains("recv ") && $0.contains(" frame") }
                #expect(received.contains { $0.contains("recv HEADERS frame") && $0.contains("flags=0x05") },
                        "one HEADERS frame with END_STREAM|END_HEADERS: \(output)")
                #expect(!received.contains { $0.contains("recv DATA frame") }, "no body: \(output)")
                #expect(output.contains(":status: 200"))
                #expect(output.contains("grpc-status: \(status)"), "\(output)")
                #expect(output.contains("grpc-message: "))
                #expect(output.contains("x-request-id: "))
            }
            // Over HTTP/1.1 the same error still names the gRPC status.
            let h1 = try Curl.run(["-H", "content-type: application/grpc", "\(gateway.url)/svc.Missing/Call"])
            #expect(h1.status == 200 && h1.header("grpc-status") == "12")
        }
    }

    private func run(_ executable: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = readToEnd(pipe.fileHandleForReading.fileDescriptor)
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}
