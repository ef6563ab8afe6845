import Foundation
import Testing

/// Protocol-level abuse over HTTP/2 (Tests/Scripts/h2_abuse.py, Python hyperframe/hpack): each
/// attack costs the attacker its stream or its connection, never the gateway, and a normal
/// client on another connection is served right after.
@Suite(.serialized) struct HTTP2AbuseTests {
    struct Outcome: Decodable {
        var goaway: Int?
        var closed: Bool
        var status: Int?
        var detail: String
    }

    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Scripts/h2_abuse.py").path

    func attack(_ scenario: String, port: Int) throws -> Outcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", Self.script, "127.0.0.1", String(port), scenario]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = readToEnd(out.fileHandleForReading.fileDescriptor)
        process.waitUntilExit()
        return try JSONDecoder().decode(Outcome.self, from: data)
    }

    static let enhanceYourCalm = 0xb
    static let protocolError = 0x1
    static let flowControlError = 0x3

    /// (scenario, expected GOAWAY code or nil when only the close is observable)
    static let connectionEnders: [(String, Int?)] = [
        ("rapid_reset", enhanceYourCalm),
        ("continuation_flood", nil),
        ("lower_stream_id", protocolError),
        ("data_on_stream_zero", protocolError),
        ("window_overflow", flowControlError),
        ("ping_flood", nil),
        ("settings_flood", enhanceYourCalm),
        ("empty_data_flood", enhanceYourCalm),
    ]

    @Test(arguments: connectionEnders.map(\.0))
    func attackEndsOnlyTheAttackersConnection(_ scenario: String) async throws {
        let gateway = try await GatewayHarness.start()
        defer { Task { await gateway.stop() } }
        let expected = Self.connectionEnders.first { $0.0 == scenario }!.1
        let outcome = try attack(scenario, port: gateway.port)
        #expect(outcome.closed, "\(scenario): the connection is closed")
        if let expected { #expect(outcome.goaway == expected, "\(scenario): GOAWAY code") }
        let bystander = try Curl.run(["\(gateway.url)/api/x"], over: .h2c)
        #expect(bystander.status == 200, "\(scenario): other clients are unaffected")
    }

    @Test func oversizedHeaderListCostsOnlyTheStream() async throws {
        let gateway = try await GatewayHarness.start(http2: "{max_header_list_size: 16KiB}")
        defer { Task { await gateway.stop() } }
        let outcome = try attack("oversize_headers", port: gateway.port)
        #expect(outcome.status == 431)
        #expect(!outcome.closed)
        #expect(outcome.detail == "next status 200", "the same connection serves the next stream")
        #expect(gateway.upstream.requests == 1, "only the well-formed request reached the upstream")
    }

    @Test func settingsFromConfigAreAnnounced() async throws {
        let gateway = try await GatewayHarness.start(http2: "{max_concurrent_streams: 7, initial_window_size: 128KiB}")
        defer { Task { await gateway.stop() } }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/nghttp")
        process.arguments = ["-nv", "\(gateway.url)/api/x"]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let text = String(decoding: readToEnd(out.fileHandleForReading.fileDescriptor), as: UTF8.self)
        process.waitUntilExit()
        #expect(text.contains("[SETTINGS_MAX_CONCURRENT_STREAMS(0x03):7]"))
        #expect(text.contains("[SETTINGS_INITIAL_WINDOW_SIZE(0x04):131072]"))
        #expect(text.contains(":status: 200"))
    }
}
