import Foundation
import Testing

/// h2spec-style conformance (Tests/Scripts/h2_conformance.py): ~55 cases from the generic,
/// HTTP/2 and HPACK sections, each on a fresh connection, against both listeners.
@Suite struct HTTP2ConformanceTests {
    struct Result: Decodable {
        var `case`: String
        var expected: [String]
        var got: String
    }

    @Test(arguments: [Transport.h2c, .h2])
    func everyCaseGetsTheAnswerTheRFCRequires(over transport: Transport) async throws {
        let gateway = try await GatewayHarness.start()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        let port = transport == .h2 ? gateway.tlsPort : gateway.port
        process.arguments = ["120", "python3", PythonUpstream.scripts + "/h2_conformance.py", "127.0.0.1", String(port)]
            + (transport == .h2 ? [TestCertificates.shared.caPath] : [])
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = readToEnd(output.fileHandleForReading.fileDescriptor)
        process.waitUntilExit()
        let after = try Curl.run(["\(gateway.url(transport))/api/x"], over: transport)
        await gateway.stop()
        let results = try JSONDecoder().decode([Result].self, from: data)
        #expect(results.count >= 50)
        for result in results {
            #expect(result.expected.contains(result.got), "\(result.case): expected \(result.expected), got \(result.got)")
        }
        #expect(after.status == 200, "the listener still serves after every case")
    }
}
