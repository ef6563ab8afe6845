import Foundation

/// A Python upstream from Tests/Scripts run for one test: h2_upstream.py (scriptable h2c, Python
/// h2) by default, or another script that writes its port to the file named by its argument.
/// Unchecked: the process handle is only stopped once, by the test that started it.
final class PythonUpstream: @unchecked Sendable {
    static let scripts = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Scripts").path

    let port: Int
    private let process: Process
    private let stdin: Pipe

    static func start(script: String = "h2_upstream.py", arguments: [String] = []) async throws -> PythonUpstream {
        let portFile = FileManager.default.temporaryDirectory.appendingPathComponent("h2up-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: portFile) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")  // the python3 pip installed into
        process.arguments = ["python3", scripts + "/" + script, portFile] + arguments
        let stdin = Pipe()  // it exits when this closes, should the test runner die first
        process.standardInput = stdin
        try process.run()
        for _ in 0..<100 {
            if let text = try? String(contentsOfFile: portFile, encoding: .utf8), let port = Int(text) {
                return PythonUpstream(port: port, process: process, stdin: stdin)
            }
            if !process.isRunning { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        kill(process.processIdentifier, SIGKILL)
        throw POSIXError(.ECONNREFUSED)
    }

    private init(port: Int, process: Process, stdin: Pipe) {
        self.port = port
        self.process = process
        self.stdin = stdin
    }

    /// What the upstream saw: "connection N" per connection, "reset PATH CODE" per RST_STREAM.
    func events() throws -> [String] {
        let result = try Curl.run(["http://127.0.0.1:\(port)/events"], over: .h2c)
        return (try? JSONDecoder().decode([String].self, from: Data(result.body.utf8))) ?? []
    }

    func stop() {
        // SIGKILL: a child spawned from a dispatch worker inherits its blocked signals, SIGTERM included.
        try? stdin.fileHandleForWriting.close()
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}
