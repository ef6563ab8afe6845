import CausewayCompression
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A real HTTP/1.1 upstream on an ephemeral loopback port, with behaviours chosen by path:
///
/// `/slow?ms=N` answers late · `/bytes?n=N` streams N bytes · `/upload` counts the body it
/// reads · `/close` answers then closes · `/garbage` sends non-HTTP · `/reset` hangs up ·
/// `/status/N` answers N · `/stale` answers once per connection, then hangs up on reuse (an
/// upstream whose keep-alive timeout raced the proxy's) · for compression: `/text?n=N` (text/plain,
/// `TestUpstream.text(N)`, strong ETag), `/image?n=N` (image/png), `/gzipped` (text/plain that
/// is already gzip-encoded), `/events?n=N&ms=M` (text/event-stream, one event every M ms,
/// each `data: t=<ms since 1970>`) · for GraphQL: `/pets` (objects naming their `__typename`),
/// `/pet-untyped` (one that does not) · anything else echoes method, path and headers as JSON.
/// It counts the connections it accepts, so tests can prove keep-alive reuse.
final class TestUpstream: Sendable {
    let channel: any Channel
    let stats: Stats

    final class Stats: Sendable {
        let connections = Atomic<Int>(0)
        let requests = Atomic<Int>(0)
        let lastHeaders = Mutex<[(String, String)]>([])
        let lastPath = Mutex<String>("")
        let lastBody = Mutex<String>("")
    }

    var port: Int { channel.localAddress!.port! }

    static func start(group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> TestUpstream {
        let stats = Stats()
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                stats.connections.add(1, ordering: .relaxed)
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(UpstreamBehaviour(stats: stats))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        return TestUpstream(channel: channel, stats: stats)
    }

    private init(channel: any Channel, stats: Stats) {
        self.channel = channel
        self.stats = stats
    }

    func stop() async {
        try? await channel.close()
    }

    var connections: Int { stats.connections.load(ordering: .relaxed) }
    var requests: Int { stats.requests.load(ordering: .relaxed) }
    var lastHeaders: [(String, String)] { stats.lastHeaders.withLock { $0 } }
    /// The last request's path and query.
    var lastPath: String { stats.lastPath.withLock { $0 } }
    func lastHeader(_ name: String) -> [String] {
        lastHeaders.filter { $0.0.lowercased() == name }.map(\.1)
    }

    /// Deterministic, compressible text of `count` bytes (lines of numbered words).
    static func text(_ count: Int) -> String {
        var text = ""
        var line = 0
        while text.utf8.count < count {
            text += "line \(line): proxy stream header frame window compression \(line * 7919 % 1000)\n"
            line += 1
        }
        return String(text.utf8.prefix(count))!
    }

    /// `text(20_000)`, gzip-encoded (what `/gzipped` sends).
    static let gzippedText: ByteBuffer = {
        var encoder = try! GzipEncoder(level: 6)
        var out = ByteBuffer()
        try! encoder.process(ByteBuffer(string: text(20_000)), flush: false, into: &out)
        try! encoder.finish(into: &out)
        return out
    }()
}

private final class UpstreamBehaviour: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let stats: TestUpstream.Stats
    var head: HTTPRequestHead?
    var bodyBytes = 0
    var body = ""
    /// Requests seen on this connection.
    var served = 0

    init(stats: TestUpstream.Stats) {
        self.stats = stats
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            bodyBytes = 0
            body = ""
            stats.requests.add(1, ordering: .relaxed)
            stats.lastHeaders.withLock { $0 = head.headers.map { ($0.name, $0.value) } }
            stats.lastPath.withLock { $0 = head.uri }
            served += 1
            let path = head.uri.split(separator: "?").first.map(String.init) ?? ""
            if path.hasSuffix("/reset") || (path.hasSuffix("/stale") && served > 1) {
                context.close(promise: nil)
            } else if path.hasSuffix("/garbage") {
                // Written below the HTTP encoder, so the bytes go out raw.
                if let encoder = try? context.pipeline.syncOperations.context(handlerType: HTTPResponseEncoder.self) {
                    encoder.writeAndFlush(NIOAny(ByteBuffer(string: "SPDY/9 banana\r\n\r\n")), promise: nil)
                }
                context.close(promise: nil)
            }
        case .body(let chunk):
            bodyBytes += chunk.readableBytes
            if body.utf8.count < 4096 { body += String(buffer: chunk) }
        case .end:
            guard let head else { return }
            stats.lastBody.withLock { $0 = body }
            respond(head, context: context)
        }
    }

    private func query(_ uri: String, _ name: String) -> Int? {
        guard let q = uri.split(separator: "?", maxSplits: 1).dropFirst().first else { return nil }
        for pair in q.split(separator: "&") where pair.hasPrefix(name + "=") {
            return Int(pair.dropFirst(name.count + 1))
        }
        return nil
    }

    private func respond(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?").first.map(String.init) ?? ""
        if path.hasSuffix("/slow") {
            let ms = query(head.uri, "ms") ?? 100
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: .milliseconds(Int64(ms))) {
                let (handler, context) = loopBound.value
                handler.send(.ok, "slept \(ms)ms\n", head: head, context: context)
            }
        } else if path.hasSuffix("/text") {
            let headers = HTTPHeaders([("content-type", "text/plain; charset=utf-8"), ("etag", "\"text-v1\"")])
            send(.ok, TestUpstream.text(query(head.uri, "n") ?? 20_000), head: head, context: context, headers: headers)
        } else if path.hasSuffix("/image") {
            let bytes = (0..<(query(head.uri, "n") ?? 20_000)).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 13) }
            send(.ok, ByteBuffer(bytes: bytes), head: head, context: context, headers: HTTPHeaders([("content-type", "image/png")]))
        } else if path.hasSuffix("/gzipped") {
            let headers = HTTPHeaders([("content-type", "text/plain"), ("content-encoding", "gzip")])
            send(.ok, TestUpstream.gzippedText, head: head, context: context, headers: headers)
        } else if path.hasSuffix("/pets") {
            let pets = #"[{"__typename":"Dog","name":"Rex","barkVolume":3},{"__typename":"Cat","name":"Tom","meowVolume":5}]"#
            send(.ok, pets, head: head, context: context)
        } else if path.hasSuffix("/json") {
            // The answer is the `body` query parameter, percent-decoded: GraphQL tests write
            // the upstream JSON they need into their schema's paths.
            let body = head.uri.split(separator: "?", maxSplits: 1).dropFirst().first?.split(separator: "&")
                .first { $0.hasPrefix("body=") }?.dropFirst(5).removingPercentEncoding ?? "null"
            send(.ok, body, head: head, context: context)
        } else if path.hasSuffix("/pet-untyped") {
            send(.ok, #"{"name":"Nobody knows"}"#, head: head, context: context)
        } else if path.hasSuffix("/events") {
            events(count: query(head.uri, "n") ?? 5, intervalMS: query(head.uri, "ms") ?? 100, head: head, context: context)
        } else if path.hasSuffix("/bytes") {
            stream(total: query(head.uri, "n") ?? 0, head: head, context: context)
        } else if path.hasSuffix("/upload") {
            send(.ok, "{\"received\":\(bodyBytes)}", head: head, context: context)
        } else if path.hasSuffix("/close") {
            send(.ok, "bye\n", head: head, context: context, close: true)
        } else if let range = path.range(of: "/status/"), let code = Int(path[range.upperBound...]) {
            send(HTTPResponseStatus(statusCode: code), "status \(code)\n", head: head, context: context)
        } else {
            var object: [String: Any] = ["method": head.method.rawValue, "path": head.uri, "body_length": bodyBytes]
            var headers: [String: String] = [:]
            for (name, value) in head.headers { headers[name.lowercased(), default: ""] += headers[name.lowercased()] == nil ? value : ", " + value }
            object["headers"] = headers
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
            var extra = HTTPHeaders([("server", "test-upstream"), ("x-upstream", "yes")])
            extra.add(name: "connection", value: "x-hop")
            extra.add(name: "x-hop", value: "must-not-pass")
            send(.ok, String(decoding: data, as: UTF8.self), head: head, context: context, extraHeaders: extra)
        }
    }

    private func send(_ status: HTTPResponseStatus, _ body: String, head: HTTPRequestHead, context: ChannelHandlerContext,
                      close: Bool = false, extraHeaders: HTTPHeaders = [:]) {
        var headers = extraHeaders
        headers.add(name: "content-type", value: "application/json")
        send(status, ByteBuffer(string: body), head: head, context: context, close: close, headers: headers)
    }

    private func send(_ status: HTTPResponseStatus, _ body: String, head: HTTPRequestHead, context: ChannelHandlerContext,
                      headers: HTTPHeaders) {
        send(status, ByteBuffer(string: body), head: head, context: context, headers: headers)
    }

    private func send(_ status: HTTPResponseStatus, _ body: ByteBuffer, head: HTTPRequestHead, context: ChannelHandlerContext,
                      close: Bool = false, headers: HTTPHeaders) {
        var headers = headers
        headers.add(name: "content-length", value: String(body.readableBytes))
        if close { headers.add(name: "connection", value: "close") }
        context.write(NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        if head.method != .HEAD {
            context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(body))), promise: nil)
        }
        let done = context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)))
        if close {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }

    /// Server-Sent Events, chunked (no length), each flushed as it is produced.
    private func events(count: Int, intervalMS: Int, head: HTTPRequestHead, context: ChannelHandlerContext) {
        let headers = HTTPHeaders([("content-type", "text/event-stream"), ("cache-control", "no-cache")])
        context.writeAndFlush(NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))),
                              promise: nil)
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        func emit(_ index: Int) {
            let context = loopBound.value
            guard index < count else {
                context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)), promise: nil)
                return
            }
            let now = Int(Date().timeIntervalSince1970 * 1000)
            let event = "id: \(index)\nevent: tick\ndata: t=\(now) \(String(repeating: "payload ", count: 8))\n\n"
            context.writeAndFlush(NIOAny(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(string: event)))), promise: nil)
            context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(Int64(intervalMS))) { emit(index + 1) }
        }
        emit(0)
    }

    /// Streams `total` bytes in 64 KiB chunks, one write in flight at a time, so the upstream
    /// itself never buffers: the proxy's backpressure decides the pace.
    private func stream(total: Int, head: HTTPRequestHead, context: ChannelHandlerContext) {
        let headers = HTTPHeaders([("content-type", "application/octet-stream"), ("content-length", String(total))])
        context.write(NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        let chunk = ByteBuffer(repeating: UInt8(ascii: "x"), count: 64 * 1024)
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        func next(_ remaining: Int) {
            let context = loopBound.value
            guard remaining > 0 else {
                context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)), promise: nil)
                return
            }
            let slice = chunk.getSlice(at: 0, length: min(remaining, chunk.readableBytes))!
            context.writeAndFlush(NIOAny(HTTPServerResponsePart.body(.byteBuffer(slice)))).assumeIsolated().whenSuccess {
                next(remaining - slice.readableBytes)
            }
        }
        next(total)
    }
}
