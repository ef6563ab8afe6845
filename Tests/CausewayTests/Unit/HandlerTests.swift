@testable import CausewayHTTP
import HTTPTypes
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

/// Records exchanges; the test answers them when it chooses.
final class ManualHandler: ExchangeHandler {
    var exchanges: [Exchange] = []
    func handle(_ exchange: Exchange) {
        exchanges.append(exchange)
    }
}

final class CollectingConsumer: RequestBodyConsumer {
    var body = ""
    var ended = false
    func requestBodyPart(_ chunk: ByteBuffer) { body += String(buffer: chunk) }
    func requestBodyEnd(_ trailers: HTTPFields?) { ended = true }
}

@Suite struct DownstreamHandlerTests {
    func makeChannel() throws -> (EmbeddedChannel, ManualHandler) {
        let manual = ManualHandler()
        let handler = DownstreamHTTP1Handler(handler: manual, configuration: .init(idleTimeout: .seconds(60), headerTimeout: .seconds(10)))
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(handler.makeByteObserver())
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withPipeliningAssistance: false, withErrorHandling: false)
        try channel.pipeline.syncOperations.addHandler(handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return (channel, manual)
    }

    func outbound(_ channel: EmbeddedChannel) throws -> String {
        var text = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }

    func answer(_ exchange: Exchange, _ body: String) {
        exchange.respond(HTTPResponse(status: .ok), body: ByteBuffer(string: body))
    }

    @Test func pipelinedRequestsWaitForTheResponseBeforeThem() throws {
        let (channel, manual) = try makeChannel()
        try channel.writeInbound(ByteBuffer(string: "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"))
        #expect(manual.exchanges.map(\.request.path) == ["/a"], "the second request is held")
        answer(manual.exchanges[0], "first")
        #expect(manual.exchanges.map(\.request.path) == ["/a", "/b"])
        answer(manual.exchanges[1], "second")
        let text = try outbound(channel)
        let first = try #require(text.range(of: "first"))
        let second = try #require(text.range(of: "second"))
        #expect(first.lowerBound < second.lowerBound)
        #expect(channel.isActive, "keep-alive")
    }

    @Test func bodyIsHeldUntilAConsumerAttachesAnd100ContinueIsSentThen() throws {
        let (channel, manual) = try makeChannel()
        try channel.writeInbound(ByteBuffer(string: "POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"))
        let exchange = try #require(manual.exchanges.first)
        #expect(exchange.request.headerFields[.expect] == nil)
        #expect(try outbound(channel).isEmpty, "no 100 Continue before the body is wanted")
        let consumer = CollectingConsumer()
        exchange.attachRequestBodyConsumer(consumer)
        #expect(try outbound(channel).hasPrefix("HTTP/1.1 100 Continue"))
        try channel.writeInbound(ByteBuffer(string: "hello"))
        #expect(consumer.body == "hello")
        #expect(consumer.ended)
    }

    @Test func earlyAnswerClosesAConnectionWithUnreadBody() throws {
        let (channel, manual) = try makeChannel()
        try channel.writeInbound(ByteBuffer(string: "POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\npartial"))
        manual.exchanges[0].fail(.bodyTooLarge)
        let text = try outbound(channel)
        #expect(text.hasPrefix("HTTP/1.1 413"))
        #expect(text.lowercased().contains("connection: close"))
        #expect(!channel.isActive)
    }

    @Test func smugglingShapeIsRejectedBeforeRouting() throws {
        let (channel, manual) = try makeChannel()
        try channel.writeInbound(ByteBuffer(string: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"))
        #expect(manual.exchanges.isEmpty, "never reaches the router")
        #expect(try outbound(channel).hasPrefix("HTTP/1.1 400"))
        #expect(!channel.isActive)
    }
}

/// A body transform, as compression will be: uppercases each chunk, appends a tail at the end.
final class ShoutFilter: HTTPFilter {
    final class Shout: ResponseBodyTransform {
        func transform(_ chunk: ByteBuffer) -> ByteBuffer? { ByteBuffer(string: String(buffer: chunk).uppercased()) }
        func finish(trailers: inout HTTPFields?) -> ByteBuffer? { ByteBuffer(string: "!") }
    }

    func filterResponseHead(_ response: inout HTTPResponse, exchange: Exchange) {
        response.headerFields[.contentLength] = nil
    }

    func makeResponseBodyTransform(for response: inout HTTPResponse, exchange: Exchange) -> (any ResponseBodyTransform)? {
        Shout()
    }
}

final class RecordingDownstream: ExchangeDownstream {
    var events: [String] = []
    func writeResponseHead(_ response: HTTPResponse) { events.append("head \(response.status.code) cl=\(response.headerFields[.contentLength] ?? "-")") }
    func writeResponseBody(_ chunk: ByteBuffer) { events.append("body \(String(buffer: chunk))") }
    func flushResponse() { events.append("flush") }
    func writeResponseEnd(_ trailers: HTTPFields?) { events.append("end") }
    func abortResponse() { events.append("abort") }
    func setRequestBodyDemand(_ demand: Bool) { events.append("demand \(demand)") }
    var isWritable: Bool { true }
}

@Suite struct ExchangeTests {
    func makeExchange(_ downstream: RecordingDownstream) -> Exchange {
        Exchange(request: HTTPRequest(method: .get, scheme: "http", authority: "x", path: "/"), requestBodyLength: 0,
                 client: ClientInfo(address: "127.0.0.1", scheme: "http"), eventLoop: EmbeddedEventLoop(),
                 allocator: ByteBufferAllocator(), downstream: downstream)
    }

    @Test func responseFiltersTransformHeadAndBodyAsAStream() {
        let downstream = RecordingDownstream()
        let exchange = makeExchange(downstream)
        exchange.filters = [ShoutFilter()]
        var response = HTTPResponse(status: .ok)
        response.headerFields[.contentLength] = "10"
        exchange.sendResponseHead(response)
        exchange.sendResponseBody(ByteBuffer(string: "hello "))
        exchange.flushResponse()
        exchange.sendResponseBody(ByteBuffer(string: "world"))
        exchange.sendResponseEnd()
        #expect(downstream.events == ["head 200 cl=-", "body HELLO ", "flush", "body WORLD", "body !", "end"])
    }

    @Test func failureAfterTheHeadAbortsInsteadOfSendingAnErrorBody() {
        let downstream = RecordingDownstream()
        let exchange = makeExchange(downstream)
        exchange.sendResponseHead(HTTPResponse(status: .ok))
        exchange.fail(.upstreamUnavailable("gone"))
        #expect(downstream.events == ["head 200 cl=-", "abort"])
        exchange.sendResponseBody(ByteBuffer(string: "late"))
        #expect(downstream.events.count == 2, "nothing after abort")
    }

    @Test func errorBodyIsJSONWithTheRequestID() {
        let downstream = RecordingDownstream()
        let exchange = makeExchange(downstream)
        exchange.requestID = "id-1"
        exchange.fail(.upstreamTimeout("slow \"upstream\""))
        #expect(downstream.events == [
            "head 504 cl=101",
            #"body {"error":{"status":504,"code":"upstream_timeout","message":"slow \"upstream\"","request_id":"id-1"}}"# + "\n",
            "end",
        ])
    }
}
