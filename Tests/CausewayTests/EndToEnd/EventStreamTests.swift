import CausewayConfig
import Foundation
import NIOCore
import NIOPosix
import Testing

@testable import CausewayGateway

@Suite struct EventStreamUnitTests {
    func stream(_ chunks: [String]) -> EventStream {
        var stream = EventStream(config: SSEConfig(), now: .now())
        for chunk in chunks { stream.received(ByteBuffer(string: chunk), now: .now()) }
        return stream
    }

    @Test func eventBoundariesInEveryLineEnding() {
        #expect(stream([]).atEventBoundary, "nothing sent yet")
        for ending in ["data: a\n\n", "data: a\r\n\r\n", "data: a\r\r", "data: a\n\r\n", "data: a\r\n\n", ": c\n\n"] {
            #expect(stream([ending]).atEventBoundary, "\(ending.debugDescription)")
        }
        for partial in ["data: a", "data: a\n", "data: a\r\n", "data: a\n\ndata: b", "id: 1\ndata: x\r\n"] {
            #expect(!stream([partial]).atEventBoundary, "\(partial.debugDescription)")
        }
        // Split across chunks, down to one byte each.
        #expect(stream(["data: a\n", "\n"]).atEventBoundary)
        #expect(stream(["data: a\r\n\r", "\n"]).atEventBoundary)
        #expect(!stream(["data: a\n\n", "d"]).atEventBoundary)
    }

    @Test func heartbeatsOnlyBetweenEventsAndIdleEndsTheStream() {
        let start = NIODeadline.now()
        var stream = EventStream(config: SSEConfig(heartbeat: .seconds(15), idleTimeout: .seconds(60)), now: start)
        #expect(stream.nextCheck == start + .seconds(15))
        #expect(stream.check(now: start + .seconds(14)) == .none)
        #expect(stream.check(now: start + .seconds(15)) == .heartbeat)
        #expect(stream.nextCheck == start + .seconds(30), "the next one a period after the last")
        // An upstream that stopped mid-event gets no comment spliced in.
        stream.received(ByteBuffer(string: "data: half"), now: start + .seconds(20))
        #expect(stream.check(now: start + .seconds(35)) == .none)
        #expect(stream.check(now: start + .seconds(80)) == .idleTimeout)
        var quiet = EventStream(config: SSEConfig(heartbeat: nil, idleTimeout: nil), now: start)
        #expect(quiet.nextCheck == nil)
        #expect(quiet.check(now: start + .hours(5)) == .none)
    }

    @Test func eventStreamsAreKnownByContentType() {
        #expect(EventStream.isEventStream("text/event-stream"))
        #expect(EventStream.isEventStream("Text/Event-Stream; charset=utf-8"))
        #expect(!EventStream.isEventStream("text/plain"))
        #expect(!EventStream.isEventStream(nil))
    }
}

/// Event streams through the proxy, over real sockets.
@Suite(.serialized) struct EventStreamTests {
    static let routes = """
          - {name: events, match: {path_prefix: /events/}, upstream: origin, rewrite: {path_prefix: /}, timeout: 1s,
             sse: {heartbeat: 300ms}}
          - {name: idle, match: {path_prefix: /idle/}, upstream: origin, rewrite: {path_prefix: /}, sse: {idle_timeout: 500ms}}
          - {name: raw, match: {path_prefix: /raw/}, upstream: raw, sse: {heartbeat: 0}}
          - {name: api, match: {path_prefix: /api/}, upstream: origin, rewrite: {path_prefix: /}}
        """

    @Test(arguments: [Transport.http1, .h2c])
    func aStreamOutlivesTheRouteTimeoutAndGetsHeartbeats(over transport: Transport) async throws {
        let gateway = try await GatewayHarness.start(routes: Self.routes, extraUpstreams: "  raw: {endpoints: [{address: \"127.0.0.1:1\"}]}")
        try await gateway.run { gateway in
            // 2.4 s of events (the route's timeout is 1 s), with 1.2 s gaps: heartbeats between.
            let result = try Curl.run(["-N", "\(gateway.url(transport))/events/events?n=3&ms=1200"], over: transport)
            #expect(result.status == 200 && result.exitCode == 0, "exit \(result.exitCode)")
            #expect(result.body.components(separatedBy: "data: t=").count - 1 == 3)
            let beats = result.body.components(separatedBy: ": keep-alive\n\n").count - 1
            #expect(beats >= 4, "\(beats) heartbeats in 2.4 s at 300 ms")
            // Each heartbeat sits between events, never inside one.
            for part in result.body.components(separatedBy: ": keep-alive\n\n").dropLast() {
                #expect(part.isEmpty || part.hasSuffix("\n\n"), "\(part.debugDescription)")
            }
        }
    }

    @Test func idleTimeoutEndsTheStreamCleanlyAndLastEventIDReachesTheUpstream() async throws {
        let gateway = try await GatewayHarness.start(routes: Self.routes, extraUpstreams: "  raw: {endpoints: [{address: \"127.0.0.1:1\"}]}")
        try await gateway.run { gateway in
            let started = Date()
            let result = try Curl.run(["-N", "-H", "Last-Event-ID: 41", "\(gateway.url)/idle/events?n=3&ms=3000"])
            #expect(result.status == 200 && result.exitCode == 0, "a clean end, exit \(result.exitCode)")
            #expect(result.body.components(separatedBy: "data: t=").count - 1 == 1)
            #expect(Date().timeIntervalSince(started) < 2.5, "ended after 0.5 s of silence, not at the upstream's pace")
            #expect(gateway.upstream.lastHeader("last-event-id") == ["41"])
        }
    }

    /// An upstream that drops the connection: between events the client's stream ends cleanly
    /// (so EventSource reconnects); inside an event it is cut, never presented as complete.
    @Test(arguments: [Transport.http1, .h2c])
    func anUpstreamThatDiesEndsTheStreamCleanlyOnlyBetweenEvents(over transport: Transport) async throws {
        for (sent, clean) in [("data: one\n\n", true), ("data: one\n\ndata: hal", false)] {
            let raw = try await RawUpstream.start(sending: sent)
            let gateway = try await GatewayHarness.start(
                routes: Self.routes, extraUpstreams: "  raw: {endpoints: [{address: \"127.0.0.1:\(raw.port)\"}]}")
            try await gateway.run { gateway in
                let result = try Curl.run(["-N", "\(gateway.url(transport))/raw/x"], over: transport)
                #expect(result.status == 200)
                #expect(result.body.contains("data: one\n\n"))
                if clean {
                    #expect(result.exitCode == 0, "\(transport): a clean end after a whole event, exit \(result.exitCode)")
                } else {
                    #expect(result.exitCode != 0, "\(transport): cut mid-event must not look complete")
                }
            }
            try await raw.channel.close()
        }
    }
}

/// An upstream that answers every request with an event stream head, `body` as one chunk, and
/// then closes the connection without ending the chunked body.
struct RawUpstream {
    let channel: any Channel
    var port: Int { channel.localAddress!.port! }

    final class Handler: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let body: String
        init(body: String) { self.body = body }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            let chunk = String(body.utf8.count, radix: 16) + "\r\n" + body + "\r\n"
            let channel = context.channel
            context.writeAndFlush(NIOAny(ByteBuffer(string: head + chunk))).whenComplete { _ in
                channel.eventLoop.scheduleTask(in: .milliseconds(200)) { channel.close(promise: nil) }
            }
        }
    }

    static func start(sending body: String) async throws -> RawUpstream {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Handler(body: body)) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return RawUpstream(channel: channel)
    }
}
