import Foundation
import Glibc
import Testing

/// A curl run and what it printed.
struct CurlResult {
    var status: Int
    var headers: [(String, String)]
    var body: String
    var exitCode: Int32

    func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }
}

/// Foundation's readDataToEndOfFile traps on EINTR; this retries.
func readToEnd(_ fd: Int32) -> Data {
    var data = Data()
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n > 0 {
            data.append(contentsOf: buffer[0..<n])
        } else if n < 0 && errno == EINTR {
            continue
        } else {
            return data
        }
    }
}

/// The transports an end-to-end test body runs over.
enum Transport: String, CaseIterable, Sendable, CustomTestStringConvertible {
    /// HTTP/1.1 cleartext, HTTP/2 cleartext by prior knowledge, HTTP/2 over TLS (ALPN).
    case http1, h2c, h2

    var curlArguments: [String] {
        switch self {
        case .http1: ["--http1.1"]
        case .h2c: ["--http2-prior-knowledge"]
        case .h2: ["--http2", "--cacert", TestCertificates.shared.caPath]
        }
    }

    var testDescription: String { rawValue }
}

enum Curl {
    /// Runs curl with `arguments`; the status, headers (last response) and body are parsed.
    static func run(_ arguments: [String], over transport: Transport = .http1, input: Data? = nil) throws -> CurlResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        let headerFile = FileManager.default.temporaryDirectory.appendingPathComponent("curl-\(UUID().uuidString).h")
        defer { try? FileManager.default.removeItem(at: headerFile) }
        process.arguments = ["-sS", "--max-time", "60", "-D", headerFile.path] + transport.curlArguments + arguments
        let stdout = Pipe()
        process.standardOutput = stdout
        process.standardError = FileHandle.nullDevice
        if let input {
            let stdin = Pipe()
            process.standardInput = stdin
            try process.run()
            let fd = stdin.fileHandleForWriting.fileDescriptor
            input.withUnsafeBytes { bytes in
                var offset = 0
                while offset < bytes.count {
                    let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                    if n > 0 { offset += n } else if n < 0 && errno == EINTR { continue } else { break }
                }
            }
            try stdin.fileHandleForWriting.close()
        } else {
            try process.run()
        }
        let body = readToEnd(stdout.fileHandleForReading.fileDescriptor)
        process.waitUntilExit()
        let headerText = (try? String(contentsOf: headerFile, encoding: .utf8)) ?? ""
        // With 100-continue or redirects there are several heads: keep the last one.
        let blocks = headerText.components(separatedBy: "\r\n\r\n").filter { !$0.isEmpty }
        let lines = (blocks.last ?? "").components(separatedBy: "\r\n")
        let status = lines.first.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
        // HTTP/2 header names arrive in lower case; HTTP/1.1 ones as the server wrote them.
        let headers = lines.dropFirst().compactMap { line -> (String, String)? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        return CurlResult(status: status, headers: headers, body: String(decoding: body, as: UTF8.self),
                          exitCode: process.terminationStatus)
    }
}

/// Certificates made once per test run with the openssl command: self-signed "localhost"
/// (also 127.0.0.1) and "*.other.test" for listeners; and a small PKI for upstream TLS, a CA
/// ("ca") that signed "upstream" (localhost, 127.0.0.1) and "client" (for mTLS).
final class TestCertificates: Sendable {
    static let shared = TestCertificates()
    let directory: String

    var caPath: String { directory + "/localhost.crt" }
    func cert(_ name: String) -> String { directory + "/\(name).crt" }
    func key(_ name: String) -> String { directory + "/\(name).key" }

    private init() {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("causeway-certs-\(getpid())").path
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"]
        func make(_ name: String, _ extra: [String]) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
            process.arguments = ["req", "-x509"] + ec + ["-keyout", key(name), "-out", cert(name), "-subj", "/CN=\(name)"] + extra
            process.standardError = FileHandle.nullDevice
            try? process.run()
            process.waitUntilExit()
        }
        make("localhost", ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        make("other", ["-addext", "subjectAltName=DNS:*.other.test"])
        make("ca", ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=keyCertSign"])
        let signed = ["-CA", cert("ca"), "-CAkey", key("ca"), "-addext", "basicConstraints=critical,CA:FALSE"]
        make("upstream", signed + ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        make("client", signed + ["-addext", "extendedKeyUsage=clientAuth"])
    }
}

/// h2load (nghttp2-client) runs: how many requests got which class of status.
struct H2Load {
    var succeeded2xx = 0
    var status5xx = 0
    var output = ""

    static func run(_ arguments: [String]) throws -> H2Load {
        let process = Process()
        // Bounded: a test never hangs on a stuck stream.
        process.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        process.arguments = ["30", "/usr/bin/h2load"] + arguments
        let stdout = Pipe()
        process.standardOutput = stdout
        process.standardError = FileHandle.nullDevice
        try process.run()
        let text = String(decoding: readToEnd(stdout.fileHandleForReading.fileDescriptor), as: UTF8.self)
        process.waitUntilExit()
        var result = H2Load(output: text)
        // "status codes: 100 2xx, 0 3xx, 0 4xx, 0 5xx"
        if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("status codes:") }) {
            let numbers = line.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
            if numbers.count >= 8 {
                result.succeeded2xx = numbers[0]
                result.status5xx = numbers[6]
            }
        }
        return result
    }
}

/// A plain blocking TCP client for bytes no well-behaved client would send.
final class RawClient {
    let fd: Int32

    init(port: Int, timeout: Double = 5) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else {
            close(fd)
            throw POSIXError(.ECONNREFUSED)
        }
    }

    deinit { close(fd) }

    func send(_ text: String) {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if written <= 0 { return }
            offset += written
        }
    }

    /// Reads until the peer closes or the timeout passes; returns what arrived and whether it closed.
    func readAll() -> (text: String, closed: Bool) {
        var data = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                data.append(contentsOf: buffer[0..<n])
            } else {
                return (String(decoding: data, as: UTF8.self), n == 0 || errno == ECONNRESET)
            }
        }
    }

    /// Reads until `count` responses' ends are seen (by "\r\n\r\n" heads plus content-length bodies).
    func readUntil(_ marker: String, occurrences: Int = 1) -> String {
        var data = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while String(decoding: data, as: UTF8.self).components(separatedBy: marker).count - 1 < occurrences {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            data.append(contentsOf: buffer[0..<n])
        }
        return String(decoding: data, as: UTF8.self)
    }
}

enum ProcessStats {
    static func openFileDescriptors() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
    }

    static func residentBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let pages = text.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
