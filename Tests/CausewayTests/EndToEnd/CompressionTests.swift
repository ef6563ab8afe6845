import CausewayCompression
import Foundation
import Glibc
import Testing

/// Response compression end to end: Causeway encodes, Python's zlib/brotli (and curl) decode.
@Suite(.serialized) struct CompressionTests {
    struct Fetch: Decodable {
        struct Event: Decodable {
            var id: Int
            var arrival_ms: Double
            var lag_ms: Double
        }

        var status: Int
        var version: String
        var headers: [String: String]
        var raw_length: Int
        var body_length: Int
        var events: [Event]
        var body: String?

        var coding: String { headers["content-encoding"] ?? "identity" }
    }

    static let routes = """
          - name: compressed
            match: {path_prefix: /c/}
            upstream: origin
            max_body_size: 1MiB
            compression: {request_decompression: true}  # max_decompression_ratio 100
          - name: no-transform
            match: {path_prefix: /nt/}
            upstream: origin
            compression: {}
            headers: {response: {set: {cache-control: no-transform}}}
          - name: gzip-only
            match: {path_prefix: /g/}
            upstream: origin
            compression: {algorithms: [gzip], min_size: 100, content_types: [text/plain]}
          - name: plain
            match: {path_prefix: /p/}
            upstream: origin
        """

    func fetch(_ url: String, over transport: Transport = .http1, acceptEncoding: String?, method: String = "GET",
               headers: [String] = [], body: Bool = false) throws -> Fetch {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        var arguments = ["60", "python3", PythonUpstream.scripts + "/compressed_fetch.py", url, "--method", method]
        if let acceptEncoding { arguments += ["--accept-encoding", acceptEncoding] }
        if transport != .http1 { arguments.append("--http2") }
        if transport == .h2 { arguments += ["--ca", TestCertificates.shared.caPath] }
        for header in headers { arguments += ["--header", header] }
        if body { arguments.append("--body") }
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = readToEnd(output.fileHandleForReading.fileDescriptor)
        process.waitUntilExit()
        return try JSONDecoder().decode(Fetch.self, from: data)
    }

    func withGateway(_ body: (GatewayHarness) async throws -> Void) async throws {
        let gateway = try await GatewayHarness.start(routes: Self.routes)
        try await gateway.run(body)
    }

    /// (Accept-Encoding, the coding Causeway must choose) per RFC 9110 §12.5.3, with the
    /// route's preference [br, gzip] breaking ties.
    static let negotiation: [(String?, String)] = [
        ("br, gzip", "br"), ("gzip, br", "br"), ("gzip;q=1.0, br;q=0.5", "gzip"), ("br;q=0.9, gzip;q=0.8", "br"),
        ("gzip", "gzip"), ("GZIP", "gzip"), ("x-gzip", "gzip"), ("br", "br"), ("identity", "identity"), (nil, "identity"),
        ("gzip;q=0, br;q=0", "identity"), ("br;q=0, gzip", "gzip"), ("*", "br"), ("*;q=0.5, br;q=0", "gzip"),
        ("*;q=0", "identity"), ("deflate", "identity"), ("gzip;q=0.5, identity", "identity"), ("gzip;q=abc", "identity"),
    ]

    @Test(arguments: Transport.allCases)
    func negotiatesPerRFC9110AndBodiesDecodeExactly(over transport: Transport) async throws {
        try await withGateway { gateway in
            let expected = TestUpstream.text(20_000)
            for (acceptEncoding, coding) in Self.negotiation {
                let result = try fetch("\(gateway.url(transport))/c/text", over: transport, acceptEncoding: acceptEncoding, body: true)
                #expect(result.status == 200)
                #expect(result.coding == coding, "Accept-Encoding \(acceptEncoding ?? "(none)")")
                #expect(result.body == expected, "decoded body, Accept-Encoding \(acceptEncoding ?? "(none)")")
                #expect(result.headers["vary"]?.lowercased().contains("accept-encoding") == true)
                if coding != "identity" {
                    #expect(result.raw_length < expected.utf8.count / 3, "actually compressed (\(result.raw_length) bytes)")
                    #expect(result.headers["content-length"] == nil, "the upstream's length no longer holds")
                    #expect(result.headers["etag"] == "W/\"text-v1\"", "a strong ETag becomes weak")
                } else {
                    #expect(result.headers["etag"] == "\"text-v1\"")
                }
            }
        }
    }

    @Test func whatIsNotCompressed() async throws {
        try await withGateway { gateway in
            let ae = "br, gzip"
            func coding(_ path: String, method: String = "GET", headers: [String] = []) throws -> Fetch {
                try fetch("\(gateway.url)\(path)", acceptEncoding: ae, method: method, headers: headers)
            }
            #expect(try coding("/c/text?n=500").coding == "identity", "under min_size (1 KiB)")
            #expect(try coding("/c/image").coding == "identity", "image/png is not in content_types")
            #expect(try coding("/c/x").coding == "identity", "the echo is JSON but under 1 KiB")
            #expect(try coding("/nt/text").coding == "identity", "Cache-Control: no-transform")
            #expect(try coding("/p/text").coding == "identity", "a route without compression")
            #expect(try coding("/c/status/204").status == 204)
            let range = try coding("/c/text", headers: ["Range: bytes=0-99"])
            #expect(range.coding == "identity", "a Range request")
            let head = try coding("/c/text", method: "HEAD")
            #expect(head.coding == "br" && head.raw_length == 0, "HEAD gets GET's head, no body")
            #expect(head.headers["content-length"] == nil)
            let gzipOnly = try coding("/g/text?n=200")
            #expect(gzipOnly.coding == "gzip", "route algorithms and min_size apply")
        }
    }

    @Test func upstreamEncodedBodiesPassOrAreDecoded() async throws {
        try await withGateway { gateway in
            let passed = try fetch("\(gateway.url)/c/gzipped", acceptEncoding: "gzip", body: true)
            #expect(passed.coding == "gzip")
            #expect(passed.raw_length == TestUpstream.gzippedText.readableBytes, "passed through untouched, not re-encoded")
            #expect(passed.body == TestUpstream.text(20_000))
            let decoded = try fetch("\(gateway.url)/c/gzipped", acceptEncoding: "br", body: true)
            #expect(decoded.coding == "identity", "a client without gzip gets it decoded")
            #expect(decoded.body == TestUpstream.text(20_000))
            #expect(decoded.headers["vary"]?.lowercased().contains("accept-encoding") == true)
        }
    }

    @Test(arguments: Transport.allCases)
    func curlDecodesWhatItAsksFor(over transport: Transport) async throws {
        try await withGateway { gateway in
            let result = try Curl.run(["--compressed", "\(gateway.url(transport))/c/text"], over: transport)
            #expect(result.status == 200)
            #expect(result.header("content-encoding") != nil, "curl offers deflate, gzip, br")
            #expect(result.body == TestUpstream.text(20_000))
        }
    }

    @Test func eventStreamsPreferGzipAtEqualQuality() async throws {
        try await withGateway { gateway in
            let both = try fetch("\(gateway.url)/c/events?n=1&ms=10", acceptEncoding: "br, gzip")
            #expect(both.coding == "gzip", "gzip's per-stream state is a tenth of brotli's")
            let brFirst = try fetch("\(gateway.url)/c/events?n=1&ms=10", acceptEncoding: "br;q=1, gzip;q=0.5")
            #expect(brFirst.coding == "br", "the client's preference still wins")
            let text = try fetch("\(gateway.url)/c/text", acceptEncoding: "br, gzip")
            #expect(text.coding == "br", "other responses keep the route's order")
        }
    }

    /// SSE through compression: every event decodes on arrival, long before the next is made.
    @Test(arguments: Transport.allCases)
    func eventsArriveOneByOneThroughCompression(over transport: Transport) async throws {
        try await withGateway { gateway in
            for coding in ["gzip", "br"] {
                let result = try fetch("\(gateway.url(transport))/c/events?n=6&ms=200", over: transport, acceptEncoding: coding)
                #expect(result.coding == coding)
                #expect(result.events.map(\.id) == Array(0..<6), "\(coding): every event, in order")
                for event in result.events {
                    #expect(event.lag_ms < 150, "\(coding): event \(event.id) arrived \(event.lag_ms) ms after it was made")
                }
                if let first = result.events.first, let last = result.events.last {
                    #expect(last.arrival_ms - first.arrival_ms > 800, "\(coding): spread over the stream, not bunched at the end")
                }
            }
        }
    }
}

/// `compression.request_decompression`: gzip/br request bodies decoded for the upstream, with
/// bomb protection. Payloads are made by the gzip command and Python's brotli.
@Suite(.serialized) struct RequestDecompressionTests {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("causeway-rd-\(UUID().uuidString)").path

    /// Writes `text` to a file and encodes it with `coding` by an outside tool; returns the path.
    func encoded(_ text: String, _ coding: String, name: String) throws -> String {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let plain = directory + "/" + name
        try text.write(toFile: plain, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = coding == "gzip"
            ? ["gzip", "-k", "-f", plain]
            : ["python3", "-c", "import brotli,sys; open(sys.argv[1]+'.br','wb').write(brotli.compress(open(sys.argv[1],'rb').read()))", plain]
        try process.run()
        process.waitUntilExit()
        return plain + (coding == "gzip" ? ".gz" : ".br")
    }

    func post(_ gateway: GatewayHarness, file: String, coding: String, over transport: Transport = .http1) throws -> CurlResult {
        try Curl.run(["-X", "POST", "--data-binary", "@\(file)", "-H", "Content-Encoding: \(coding)",
                      "-H", "Content-Type: text/plain", "\(gateway.url(transport))/c/upload"], over: transport)
    }

    @Test(arguments: Transport.allCases)
    func gzipAndBrotliBodiesReachTheUpstreamDecoded(over transport: Transport) async throws {
        let gateway = try await GatewayHarness.start(routes: CompressionTests.routes)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let text = TestUpstream.text(300_000)
        for coding in ["gzip", "br"] {
            let file = try encoded(text, coding, name: "body-\(coding).txt")
            let result = try post(gateway, file: file, coding: coding, over: transport)
            #expect(result.status == 200, "\(coding)")
            #expect(result.body == "{\"received\":300000}", "\(coding): the upstream read the decoded body")
            #expect(gateway.upstream.lastHeader("content-encoding").isEmpty, "\(coding): Content-Encoding removed")
            #expect(gateway.upstream.lastHeader("content-length").isEmpty, "\(coding): the encoded length is not passed on")
        }
        await gateway.stop()
    }

    @Test func bombsAndBadBodiesAreRefused() async throws {
        let gateway = try await GatewayHarness.start(routes: CompressionTests.routes)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // 40 MB of zeros is ~40 KB of gzip: a ratio of ~1000 against the default 100.
        let bomb = try encoded(String(repeating: "\0", count: 40_000_000), "gzip", name: "bomb")
        let bombResult = try post(gateway, file: bomb, coding: "gzip")
        #expect(bombResult.status == 413)
        #expect(bombResult.body.contains("decompression_ratio_exceeded"))
        // Ordinary text (ratio ~5) that decodes past max_body_size (1 MiB).
        let big = try encoded(TestUpstream.text(3_000_000), "br", name: "big")
        let bigResult = try post(gateway, file: big, coding: "br")
        #expect(bigResult.status == 413)
        #expect(bigResult.body.contains("body_too_large"))
        let garbage = directory + "/garbage"
        try "this is not gzip at all".write(toFile: garbage, atomically: true, encoding: .utf8)
        let corrupt = try post(gateway, file: garbage, coding: "gzip")
        #expect(corrupt.status == 400)
        #expect(corrupt.body.contains("not valid gzip"))
        let unsupported = try post(gateway, file: garbage, coding: "compress")
        #expect(unsupported.status == 415)
        #expect(unsupported.header("accept-encoding") == "gzip, br")
        let after = try Curl.run(["\(gateway.url)/c/text"])
        #expect(after.status == 200, "the gateway still serves")
        await gateway.stop()
    }
}

/// 10,000 compressed event streams open at once (h2load: 100 connections × 100 streams, each
/// stream 4 events 3 s apart, from an asyncio upstream in its own process). Memory per open
/// stream is bounded, and every codec is freed when its stream ends (counted, not guessed
/// from RSS, which the allocator keeps).
@Suite(.serialized) struct CompressionMemoryTests {
    /// glibc's malloc_trim, which Swift's Glibc module does not export.
    static func mallocTrim() {
        typealias Trim = @convention(c) (Int) -> Int32
        if let symbol = dlsym(nil, "malloc_trim") { _ = unsafeBitCast(symbol, to: Trim.self)(0) }
    }

    @Test func tenThousandConcurrentCompressedStreamsStayBounded() async throws {
        let upstream = try await PythonUpstream.start(script: "sse_upstream.py")
        defer { upstream.stop() }
        let pool = "{max_connections: 10000, max_pending: 10000, connect_timeout: 20s}"
        let gateway = try await GatewayHarness.start(
            routes: "  - {name: sse, match: {path_prefix: /}, upstream: sse, compression: {}}",
            extraUpstreams: "  sse: {endpoints: [{address: \"127.0.0.1:\(upstream.port)\"}], pool: \(pool)}")
        // A first, uncompressed wave fills the pools with 10,000 upstream connections (Python
        // accepts them slowly), so the measured waves have every stream open at once.
        let warmUp = try H2Load.run(["-n", "10000", "-c", "100", "-m", "100", "\(gateway.url)/events?n=2&ms=3000"])
        #expect(warmUp.succeeded2xx == 10000)
        var perStream: [String: Int] = [:]
        var peakLive = 0
        for coding in ["gzip", "br"] {
            Self.mallocTrim()  // freed memory back to the system, so each wave starts from a floor
            let before = ProcessStats.residentBytes()
            let load = Task.detached {
                try H2Load.run(["-n", "10000", "-c", "100", "-m", "100", "-H", "accept-encoding: \(coding)",
                                "\(gateway.url)/events?n=4&ms=3000"])
            }
            var peak = 0
            var live = 0
            for _ in 0..<100 {
                try await Task.sleep(for: .milliseconds(100))
                peak = max(peak, ProcessStats.residentBytes())
                live = max(live, CodecStatistics.liveCodecs)
            }
            let result = try await load.value
            #expect(result.succeeded2xx == 10000, "\(coding): \(result.output.suffix(600))")
            // Nearly all at once: the first streams' heads arrive while the last are being set up.
            #expect(live >= 8000, "\(coding): the streams were open at once (\(live) codecs live)")
            try await Task.sleep(for: .milliseconds(200))
            #expect(CodecStatistics.liveCodecs == 0, "\(coding): every codec freed when its stream ended")
            perStream[coding] = (peak - before) / max(live, 1)
            peakLive = max(peakLive, live)
        }
        await gateway.stop()
        print("compressed streams (\(peakLive) at once at most), memory per open stream: gzip \(perStream["gzip", default: 0] / 1024) KiB, br \(perStream["br", default: 0] / 1024) KiB")
        // 10,000 compressed event streams must fit in 1 GiB: under 100 KiB each, everything
        // counted (connections both sides, HTTP/2 stream, exchange, codec). Brotli streams run
        // in its one-pass mode, without quality 4's 512 KiB hash table per stream.
        #expect(perStream["gzip", default: .max] < 100 * 1024)
        #expect(perStream["br", default: .max] < 100 * 1024)
    }
}
