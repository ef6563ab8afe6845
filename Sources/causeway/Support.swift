import ArgumentParser
import CBrotli
import CNghttp2
import COpenSSL
import CZlib
import Dispatch
import Logging

import Foundation

#if canImport(Glibc)
import Glibc
#endif

enum CausewayVersion {
    static let string = "0.1.0"

    /// The system libraries this binary is linked against, as they report themselves.
    static var libraries: [(String, String)] {
        let nghttp2 = nghttp2_version(0).map { String(cString: $0.pointee.version_str) } ?? "?"
        let brotli = BrotliEncoderVersion()
        return [
            ("nghttp2", nghttp2),
            ("openssl", String(cString: OpenSSL_version(OPENSSL_VERSION))),
            ("zlib", String(cString: zlibVersion())),
            ("brotli", "\(brotli >> 24).\((brotli >> 12) & 0xFFF).\(brotli & 0xFFF)"),
        ]
    }
}

/// Waits for SIGTERM or SIGINT. The default handlers are replaced so the process drains
/// instead of dying mid-request.
/// Unchecked: `sources` is only held to keep the handlers alive; it is never touched again.
final class ShutdownSignals: @unchecked Sendable {
    private let stream: AsyncStream<Int32>
    private let sources: [any DispatchSourceSignal]

    init() {
        let (stream, continuation) = AsyncStream<Int32>.makeStream()
        self.stream = stream
        self.sources = [SIGTERM, SIGINT].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            return source
        }
    }

    func wait() async {
        for await _ in stream { return }
    }
}

/// Runs `action` on each SIGHUP (certificate reload) while alive.
final class ReloadSignal: @unchecked Sendable {
    private let source: any DispatchSourceSignal

    init(_ action: @escaping @Sendable () -> Void) {
        signal(SIGHUP, SIG_IGN)
        source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        source.setEventHandler(handler: action)
        source.resume()
    }

    deinit { source.cancel() }
}

enum LogFormat: String, ExpressibleByArgument, Sendable {
    case text, json
}

/// One line per event, text or JSON, to standard error.
struct LineLogHandler: LogHandler {
    let label: String
    let format: LogFormat
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    init(label: String, format: LogFormat) {
        self.label = label
        self.format = format
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        let time = Date().formatted(.iso8601)
        let line: String
        switch format {
        case .text:
            let fields = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            line = "\(time) \(event.level) \(label): \(event.message)\(fields.isEmpty ? "" : " " + fields)\n"
        case .json:
            var object: [String: String] = ["time": time, "level": "\(event.level)", "logger": label,
                                            "message": "\(event.message)"]
            for (key, value) in merged { object[key] = "\(value)" }
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
            line = (String(data: data, encoding: .utf8) ?? "{}") + "\n"
        }
        FileHandle.standardError.write(Data(line.utf8))
    }
}

/// Every proxied WebSocket or event stream holds two sockets (client and upstream), so the
/// usual soft limit of 1,024 open files caps a gateway at a few hundred. The soft limit is
/// raised to the hard one at start, as nginx's `worker_rlimit_nofile` and Go's runtime do.
func raiseOpenFileLimit(logger: Logger) {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
    let previous = limit.rlim_cur
    limit.rlim_cur = limit.rlim_max
    if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
        logger.info("open file limit raised", metadata: ["from": "\(previous)", "to": "\(limit.rlim_max)"])
    }
}
