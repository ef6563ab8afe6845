import Foundation
import Glibc
import Testing

/// The `causeway` binary as an operator runs it (built by `swift build` before the tests).
@Suite(.serialized) struct CLITests {
    static let binary = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent(".build/debug/causeway").path

    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    func run(_ arguments: [String], untilReady: String? = nil, signal: Int32? = nil) throws -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = arguments
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        if let untilReady, let signal {
            var seen = ""
            let fd = err.fileHandleForReading.fileDescriptor
            var buffer = [UInt8](repeating: 0, count: 4096)
            while !seen.contains(untilReady) {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n > 0 { seen += String(decoding: buffer[0..<n], as: UTF8.self) } else if n < 0 && errno == EINTR { continue } else { break }
            }
            kill(process.processIdentifier, signal)
            let rest = readToEnd(fd)
            process.waitUntilExit()
            return Output(status: process.terminationStatus, stdout: String(decoding: readToEnd(out.fileHandleForReading.fileDescriptor), as: UTF8.self),
                          stderr: seen + String(decoding: rest, as: UTF8.self))
        }
        let stdout = readToEnd(out.fileHandleForReading.fileDescriptor)
        let stderr = readToEnd(err.fileHandleForReading.fileDescriptor)
        process.waitUntilExit()
        return Output(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                      stderr: String(decoding: stderr, as: UTF8.self))
    }

    func write(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("causeway-\(UUID().uuidString).yaml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func validateReportsOKOrEveryErrorWithExitStatus() throws {
        let good = try run(["validate", "config/causeway.yaml"])
        #expect(good.status == 0)
        #expect(good.stdout == "OK\n")
        // config/demo.yaml names the certificates `causeway demo` makes on first run; whether
        // they exist depends on this checkout's history, so it is not asserted here.
        let bad = try write("listeners: [{name: a, address: x}]\nroutes: []\nextra: 1\n")
        let result = try run(["validate", bad])
        #expect(result.status == 1)
        #expect(result.stderr == """
            \(bad):1:32: listeners[0].address: expected an address "host:port", found "x"
            \(bad):2:9: routes: at least one route is required
            \(bad):3:1: extra: unknown key "extra"

            """)
    }

    @Test func runDrainsAndExitsZeroOnSIGTERM() throws {
        let config = try write("""
            server: {workers: 1, drain_timeout: 2s, admin: {address: "127.0.0.1:0"}}
            listeners: [{name: l, address: "127.0.0.1:0"}]
            upstreams: {u: {endpoints: [{address: "127.0.0.1:9"}]}}
            routes: [{match: {path_prefix: /}, upstream: u}]
            """)
        let result = try run(["run", "--config", config, "--log-format", "json"], untilReady: "\"started\"", signal: SIGTERM)
        #expect(result.status == 0)
        #expect(result.stderr.contains(#""message":"draining""#))
        #expect(result.stderr.contains(#""message":"stopped""#))
    }

    @Test func runRefusesABadConfigWithExitOne() throws {
        let result = try run(["run", "--config", "/nonexistent.yaml"])
        #expect(result.status == 1)
        #expect(result.stderr.hasPrefix("/nonexistent.yaml:1:1: cannot read the file"))
    }

    @Test func versionNamesTheLinkedLibraries() throws {
        let result = try run(["version"])
        #expect(result.status == 0)
        for library in ["nghttp2", "openssl", "zlib", "brotli"] { #expect(result.stdout.contains("  \(library) ")) }
    }
}

/// The JSON Schema editors use must accept the configs we ship (checked with Python jsonschema).
@Suite struct SchemaTests {
    @Test func shippedConfigsMatchTheSchema() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.currentDirectoryURL = root
        process.arguments = ["python3", "Tests/Scripts/check_schema.py", "config/causeway.schema.json",
                             "config/causeway.yaml", "config/demo.yaml"]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let text = String(decoding: readToEnd(out.fileHandleForReading.fileDescriptor), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(text)")
        #expect(text.contains("config/causeway.yaml: valid"))
        #expect(text.contains("config/demo.yaml: valid"))
    }
}
