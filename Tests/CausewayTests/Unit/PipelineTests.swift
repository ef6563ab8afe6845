import CausewayHTTP
import HTTPTypes
import NIOCore
import NIOEmbedded
import Testing

/// A filter whose request phase answers as told, counting its calls; its response phase
/// stamps the head so tests see the response phase ran over filter-made answers too.
final class ScriptedFilter: HTTPFilter {
    let name: String
    let outcome: () -> FilterOutcome
    var calls = 0

    init(_ name: String, _ outcome: @escaping () -> FilterOutcome = { .continue }) {
        self.name = name
        self.outcome = outcome
    }

    func filterRequest(_ exchange: Exchange) -> FilterOutcome {
        calls += 1
        return outcome()
    }

    func filterResponseHead(_ response: inout HTTPResponse, exchange: Exchange) {
        response.headerFields.append(HTTPField(name: HTTPField.Name("x-seen-by")!, value: name))
    }
}

final class PassRecorder: RequestFiltersPassed {
    var passed = 0
    func requestFiltersPassed(_ exchange: Exchange) { passed += 1 }
}

final class HeadRecordingDownstream: ExchangeDownstream {
    var heads: [HTTPResponse] = []
    var body = ""
    var events: [String] = []
    func writeResponseHead(_ response: HTTPResponse) {
        heads.append(response)
        events.append("head \(response.status.code)")
    }
    func writeResponseBody(_ chunk: ByteBuffer) { body += String(buffer: chunk) }
    func flushResponse() {}
    func writeResponseEnd(_ trailers: HTTPFields?) { events.append("end") }
    func abortResponse() { events.append("abort") }
    func setRequestBodyDemand(_ demand: Bool) {}
    var isWritable: Bool { true }
}

@Suite struct FilterOutcomeTests {
    let loop = EmbeddedEventLoop()

    func makeExchange(_ downstream: HeadRecordingDownstream, contentType: String? = nil) -> Exchange {
        var request = HTTPRequest(method: .post, scheme: "http", authority: "x", path: "/")
        if let contentType { request.headerFields[.contentType] = contentType }
        let exchange = Exchange(request: request, requestBodyLength: 0, client: ClientInfo(address: "127.0.0.1", scheme: "http"),
                                eventLoop: loop, allocator: ByteBufferAllocator(), downstream: downstream)
        exchange.requestID = "rid-1"
        return exchange
    }

    @Test func continueRunsEveryFilterThenTheHandler() {
        let downstream = HeadRecordingDownstream()
        let exchange = makeExchange(downstream)
        let filters = [ScriptedFilter("a"), ScriptedFilter("b")]
        let recorder = PassRecorder()
        exchange.runRequestFilters(filters.map { $0 as any HTTPFilter }[...], then: recorder)
        #expect(filters.map(\.calls) == [1, 1])
        #expect(recorder.passed == 1)
        #expect(downstream.events.isEmpty)
    }

    @Test func respondAnswersWithTheFiltersResponseAndStopsTheChain() {
        let downstream = HeadRecordingDownstream()
        let exchange = makeExchange(downstream)
        let answer = ScriptedFilter("cors") {
            var response = HTTPResponse(status: .noContent)
            response.headerFields[.accessControlAllowOrigin] = "*"
            return .respond(response, body: nil)
        }
        let after = ScriptedFilter("after")
        let chain: [any HTTPFilter] = [answer, after]
        exchange.filters = chain
        let recorder = PassRecorder()
        exchange.runRequestFilters(chain[...], then: recorder)
        #expect(after.calls == 0, "later filters do not run")
        #expect(recorder.passed == 0, "the handler never sees it")
        #expect(downstream.events == ["head 204", "end"])
        #expect(downstream.heads[0].headerFields[.accessControlAllowOrigin] == "*")
        #expect(downstream.heads[0].headerFields[values: HTTPField.Name("x-seen-by")!] == ["after", "cors"],
                "the response phase runs over a filter's own answer")
    }

    @Test func failAnswersWithTheErrorInTheCallersFormat() {
        for (contentType, check) in [
            (nil, { (d: HeadRecordingDownstream) in
                d.heads[0].status.code == 429 && d.body.contains(#""code":"rate_limited""#) && d.body.contains(#""request_id":"rid-1""#)
            }),
            ("application/grpc+proto", { (d: HeadRecordingDownstream) in
                d.heads[0].status.code == 200 && d.heads[0].headerFields[GatewayError.grpcStatus] == "8"
                    && d.heads[0].headerFields[GatewayError.grpcMessage] == "slow down 100%25" && d.body.isEmpty
            }),
        ] as [(String?, (HeadRecordingDownstream) -> Bool)] {
            let downstream = HeadRecordingDownstream()
            let exchange = makeExchange(downstream, contentType: contentType)
            let limit = ScriptedFilter("limit") { .fail(GatewayError(status: .tooManyRequests, code: "rate_limited", message: "slow down 100%")) }
            let recorder = PassRecorder()
            exchange.runRequestFilters([limit as any HTTPFilter][...], then: recorder)
            #expect(recorder.passed == 0)
            #expect(check(downstream), "\(contentType ?? "json"): \(downstream.heads) \(downstream.body)")
        }
    }

    @Test func graphQLRoutesGetGraphQLErrors() {
        let downstream = HeadRecordingDownstream()
        let exchange = makeExchange(downstream)
        exchange.errorFormat = .graphql
        exchange.fail(.bodyTooLarge)
        #expect(downstream.heads[0].status.code == 413)
        #expect(downstream.body.hasPrefix(#"{"errors":[{"message":"request body exceeds"#))
        #expect(downstream.body.contains(#""extensions":{"code":"BODY_TOO_LARGE","status":413,"request_id":"rid-1"}"#))
    }

    @Test func suspendWaitsForItsFutureAndResumesTheChainOnTheLoop() {
        let downstream = HeadRecordingDownstream()
        let exchange = makeExchange(downstream)
        let promise = loop.makePromise(of: FilterOutcome.self)
        let wait = ScriptedFilter("introspect") { .suspend(promise.futureResult) }
        let after = ScriptedFilter("after")
        let recorder = PassRecorder()
        exchange.runRequestFilters([wait, after][...], then: recorder)
        #expect(after.calls == 0 && recorder.passed == 0, "nothing runs while suspended")
        promise.succeed(.continue)
        loop.run()
        #expect(after.calls == 1 && recorder.passed == 1)
        #expect(downstream.events.isEmpty)
    }

    @Test func aSuspendedFilterMayStillAnswerOrFail() {
        for (outcome, status) in [(FilterOutcome.fail(.routeNotFound), 404), (.respond(HTTPResponse(status: .accepted), body: nil), 202)] {
            let downstream = HeadRecordingDownstream()
            let exchange = makeExchange(downstream)
            let promise = loop.makePromise(of: FilterOutcome.self)
            let recorder = PassRecorder()
            exchange.runRequestFilters([ScriptedFilter("wait") { .suspend(promise.futureResult) } as any HTTPFilter][...], then: recorder)
            promise.succeed(outcome)
            loop.run()
            #expect(recorder.passed == 0)
            #expect(downstream.heads.map(\.status.code) == [status])
        }
        // A failed future fails the exchange with 500 filter_failed.
        struct Broken: Error {}
        let downstream = HeadRecordingDownstream()
        let exchange = makeExchange(downstream)
        let promise = loop.makePromise(of: FilterOutcome.self)
        exchange.runRequestFilters([ScriptedFilter("wait") { .suspend(promise.futureResult) } as any HTTPFilter][...], then: PassRecorder())
        promise.fail(Broken())
        loop.run()
        #expect(downstream.heads.map(\.status.code) == [500])
        #expect(downstream.body.contains("filter_failed"))
    }

    @Test func aClientThatLeavesWhileSuspendedIsNotServedLater() {
        let downstream = HeadRecordingDownstream()
        let exchange = makeExchange(downstream)
        let promise = loop.makePromise(of: FilterOutcome.self)
        let after = ScriptedFilter("after")
        let recorder = PassRecorder()
        exchange.runRequestFilters([ScriptedFilter("wait") { .suspend(promise.futureResult) }, after][...], then: recorder)
        exchange.downstreamClosed()
        promise.succeed(.continue)
        loop.run()
        #expect(after.calls == 0 && recorder.passed == 0)
        #expect(downstream.events.isEmpty)
    }
}

@Suite struct CompletionHookTests {
    let loop = EmbeddedEventLoop()

    func makeExchange(_ downstream: HeadRecordingDownstream) -> (Exchange, () -> [ExchangeOutcome]) {
        let exchange = Exchange(request: HTTPRequest(method: .get, scheme: "http", authority: "x", path: "/"), requestBodyLength: 0,
                                client: ClientInfo(address: "127.0.0.1", scheme: "http"), eventLoop: loop,
                                allocator: ByteBufferAllocator(), downstream: downstream)
        final class Box { var outcomes: [ExchangeOutcome] = [] }
        let box = Box()
        exchange.onComplete { box.outcomes.append($0) }
        return (exchange, { box.outcomes })
    }

    @Test func firesOnceWhenTheResponseCompletes() {
        let (exchange, outcomes) = makeExchange(HeadRecordingDownstream())
        exchange.sendResponseHead(HTTPResponse(status: .ok))
        exchange.sendResponseBody(ByteBuffer(string: "hello"))
        exchange.sendResponseEnd()
        exchange.downstreamClosed()  // the connection closing later changes nothing
        exchange.fail(.routeNotFound)
        #expect(outcomes().map(\.kind) == [.completed])
        #expect(outcomes().first?.status == .ok)
        #expect(outcomes().first?.responseBodyBytes == 5)
    }

    @Test func firesOnceForAGatewayError() {
        let (exchange, outcomes) = makeExchange(HeadRecordingDownstream())
        exchange.fail(.upstreamUnavailable("refused"))
        exchange.fail(.upstreamTimeout("again"))
        #expect(outcomes().map(\.kind) == [.failed])
        #expect(outcomes().first?.error?.code == "upstream_unavailable")
        #expect(outcomes().first?.status?.code == 502)
    }

    @Test func firesOnceWhenAResponseIsAbortedMidway() {
        let downstream = HeadRecordingDownstream()
        let (exchange, outcomes) = makeExchange(downstream)
        exchange.sendResponseHead(HTTPResponse(status: .ok))
        exchange.fail(.upstreamTimeout("cut"))
        exchange.downstreamClosed()
        #expect(outcomes().map(\.kind) == [.aborted])
        #expect(outcomes().first?.error?.code == "upstream_timeout")
        #expect(downstream.events == ["head 200", "abort"])
    }

    @Test func firesOnceWhenTheClientLeaves() {
        let (exchange, outcomes) = makeExchange(HeadRecordingDownstream())
        exchange.downstreamClosed()
        exchange.downstreamClosed()
        #expect(outcomes().map(\.kind) == [.cancelled])
        #expect(outcomes().first?.status == nil)
    }

    @Test func aHookAddedAfterTheEndRunsAtOnce() {
        let (exchange, _) = makeExchange(HeadRecordingDownstream())
        exchange.fail(.routeNotFound)
        var late: [ExchangeOutcome.Kind] = []
        exchange.onComplete { late.append($0.kind) }
        #expect(late == [.failed])
    }
}
