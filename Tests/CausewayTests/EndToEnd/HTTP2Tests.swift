import Foundation
import Testing

/// HTTP/2-specific behaviour beyond the shared proxy tests.
@Suite(.serialized) struct HTTP2Tests {
    @Test func upgradeH2CServesTheUpgradingRequestAndTheNextOnes() async throws {
        let gateway = try await GatewayHarness.start()
        defer { Task { await gateway.stop() } }
        // "--http2" after the transport's "--http1.1": curl's last protocol flag wins.
        let result = try Curl.run(["--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code},",
                                   "\(gateway.url)/api/a", "-o", "/dev/null", "\(gateway.url)/api/b"])
        #expect(result.body == "2 200,2 200,")
        #expect(gateway.upstream.requests == 2)
    }

    @Test func shutdownSendsGoAwayAndFinishesOpenStreams() async throws {
        let gateway = try await GatewayHarness.start()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/nghttp")
        process.arguments = ["-nv", "--timeout=10", "\(gateway.url)/big/slow?ms=3000"]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        // Shut down once the stream is open upstream (not after a guessed delay: runners are busy).
        for _ in 0..<100 where gateway.upstream.requests == 0 { try await Task.sleep(for: .milliseconds(20)) }
        let drained = await gateway.server.shutdown()
        let text = String(decoding: readToEnd(out.fileHandleForReading.fileDescriptor), as: UTF8.self)
        process.waitUntilExit()
        await gateway.upstream.stop()
        #expect(drained)
        #expect(text.contains("recv GOAWAY frame"), "GOAWAY announces the shutdown")
        #expect(text.contains("last_stream_id=13"), "with the last stream id nghttp used")
        #expect(text.contains(":status: 200"), "the open stream still finishes")
        #expect(process.terminationStatus == 0)
    }
}
