import Foundation
import Glibc
import NIOCore
import NIOPosix

/// A real nginx (Debian's) started for a test, serving `locations` on a free loopback port.
/// Unchecked: the process handle is only stopped once, by the test that started it.
final class Nginx: @unchecked Sendable {
    let port: Int
    private let directory: String
    private let process: Process

    /// `tls`: extra server directives (ssl_certificate ...) that make the port speak TLS.
    static func start(http2: Bool = true, tls: String? = nil, locations: String) async throws -> Nginx {
        let probe = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        let port = probe.localAddress!.port!
        try await probe.close()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("causeway-nginx-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let config = """
            worker_processes 1; daemon off; pid \(directory)/nginx.pid; error_log \(directory)/error.log;
            events { worker_connections 1024; }
            http {
              access_log off;
              client_body_temp_path \(directory)/body; proxy_temp_path \(directory)/proxy;
              fastcgi_temp_path \(directory)/fastcgi; uwsgi_temp_path \(directory)/uwsgi; scgi_temp_path \(directory)/scgi;
              server { listen 127.0.0.1:\(port)\(tls != nil ? " ssl" : "")\(http2 ? " http2" : ""); \(tls ?? "") \(locations) }
            }
            """
        try config.write(toFile: directory + "/nginx.conf", atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/nginx")
        process.arguments = ["-c", directory + "/nginx.conf", "-p", directory]
        process.standardError = FileHandle.nullDevice
        try process.run()
        let nginx = Nginx(port: port, directory: directory, process: process)
        for _ in 0..<100 {
            if (try? RawClient(port: port, timeout: 0.2)) != nil { return nginx }
            if !process.isRunning { break }  // a config error: fail now, not after five seconds
            try await Task.sleep(for: .milliseconds(50))
        }
        nginx.stop()
        throw POSIXError(.ECONNREFUSED)
    }

    private init(port: Int, directory: String, process: Process) {
        self.port = port
        self.directory = directory
        self.process = process
    }

    func stop() {
        process.terminate()
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: directory)
    }
}
