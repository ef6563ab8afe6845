import HTTPTypes
import NIOCore

/// One request and its response, the same whichever HTTP version carried it.
///
/// The downstream codec creates it and feeds it request body parts; a route handler answers it
/// through `sendResponse*`, which runs the filter chain's response phase on the way out. The
/// request body is held here (a few chunks at most, with the client paused) until a consumer
/// attaches, so a handler may take its time choosing an upstream.
///
/// Loop-bound: every call happens on `eventLoop`.
public final class Exchange {
    public enum ResponseState {
        case pending, streaming, complete
    }

    public var request: HTTPRequest
    /// The request came on an HTTP/2 stream (gRPC needs one).
    public let overHTTP2: Bool
    public var requestID = ""
    public let client: ClientInfo
    public let eventLoop: any EventLoop
    public let allocator: ByteBufferAllocator
    /// Declared request body length: nil when chunked (unknown), 0 when there is no body.
    public private(set) var requestBodyLength: Int?
    /// The filter chain, in request order; the response phase runs it backwards.
    public var filters: [any HTTPFilter] = []
    /// Enforced as body bytes arrive; nil = unlimited.
    public var maxRequestBodySize: Int?
    /// Told when the client can take more response, or is gone.
    public var responseProducer: (any ResponseProducer)?
    /// Route, consumer, claims, timings: what the pipeline learned, typed.
    public var attributes = ExchangeAttributes()
    /// How gateway errors are rendered for this caller (gRPC by content type; a GraphQL route
    /// switches it to GraphQL's `errors`).
    public var errorFormat: ErrorFormat
    /// The matched route's name (the attribute), for logs and tests.
    public var routeName: String? { attributes.route }

    public private(set) var responseState = ResponseState.pending
    public private(set) var responseStatus: HTTPResponse.Status?
    public private(set) var requestEnded: Bool

    private var downstream: (any ExchangeDownstream)?
    private var bodyConsumer: (any RequestBodyConsumer)?
    private var pendingBody: [ByteBuffer] = []
    private var pendingTrailers: HTTPFields?
    private var receivedBodyBytes = 0
    private var transforms: [any ResponseBodyTransform] = []
    private var requestTransform: (any RequestBodyTransform)?
    // Body timeout: one lazily re-armed task per exchange with a body; progress is a clock read.
    private var bodyTimeout = TimeAmount.zero
    private var bodyTimer: Scheduled<Void>?
    private var bodyProgress = NIODeadline.uptimeNanoseconds(0)
    /// Until a consumer attaches, the body is not wanted yet (a client that sent
    /// `Expect: 100-continue` is waiting for us), so its clock does not run.
    private var bodyWanted = false
    // Completion: hooks run once, when the exchange ends in any way.
    private var completionHooks: [(ExchangeOutcome) -> Void] = []
    private var ended = false
    private var failure: GatewayError?
    private var aborted = false
    private var sentBodyBytes = 0

    public init(request: HTTPRequest, requestBodyLength: Int?, client: ClientInfo, eventLoop: any EventLoop,
                allocator: ByteBufferAllocator, downstream: any ExchangeDownstream) {
        self.request = request
        self.requestBodyLength = requestBodyLength
        self.requestEnded = requestBodyLength == 0
        self.client = client
        self.eventLoop = eventLoop
        self.allocator = allocator
        self.downstream = downstream
        self.overHTTP2 = downstream is HTTP2StreamDownstream
        self.errorFormat = ErrorFormat.forRequest(request)
    }

    // MARK: Completion

    /// Runs `hook` exactly once when the exchange ends: completed, answered with an error,
    /// aborted mid-response, or cancelled by the client. Added after the end, it runs at once.
    public func onComplete(_ hook: @escaping (ExchangeOutcome) -> Void) {
        if ended {
            hook(outcome(cancelled: false))
        } else {
            completionHooks.append(hook)
        }
    }

    private func outcome(cancelled: Bool) -> ExchangeOutcome {
        let kind: ExchangeOutcome.Kind = aborted ? .aborted : failure != nil ? .failed : cancelled ? .cancelled : .completed
        return ExchangeOutcome(kind: kind, status: responseStatus, error: failure, requestBodyBytes: receivedBodyBytes,
                               responseBodyBytes: sentBodyBytes)
    }

    private func complete(cancelled: Bool) {
        guard !ended else { return }
        ended = true
        attributes.timings.completed = .now()
        let hooks = completionHooks
        completionHooks = []
        guard !hooks.isEmpty else { return }
        let outcome = outcome(cancelled: cancelled)
        for hook in hooks { hook(outcome) }
    }

    // MARK: Request filters

    /// Runs the request phase of `filters` in order, then `proceed`. A filter that answers or
    /// fails ends the exchange there; one that suspends resumes the chain, on this loop, when
    /// its future completes, unless the exchange ended meanwhile (the client left, a timeout).
    /// `next` is an object, not a closure, so the common case (every filter continues at once)
    /// allocates nothing.
    public func runRequestFilters(_ filters: ArraySlice<any HTTPFilter>, then next: any RequestFiltersPassed) {
        var index = filters.startIndex
        while index < filters.endIndex {
            let outcome = filters[index].filterRequest(self)
            index += 1
            if case .continue = outcome { continue }
            apply(outcome, rest: filters[index...], next: next)
            return
        }
        next.requestFiltersPassed(self)
    }

    private func apply(_ outcome: FilterOutcome, rest: ArraySlice<any HTTPFilter>, next: any RequestFiltersPassed) {
        switch outcome {
        case .continue:
            runRequestFilters(rest, then: next)
        case .respond(let response, let body):
            respond(response, body: body)
        case .fail(let error):
            fail(error)
        case .suspend(let future):
            future.hop(to: eventLoop).assumeIsolated().whenComplete { [self] result in
                guard responseState == .pending, !ended else { return }
                switch result {
                case .success(let outcome): apply(outcome, rest: rest, next: next)
                case .failure(let error): fail(error as? GatewayError ?? .filterFailed("\(error)"))
                }
            }
        }
    }

    // MARK: Request body, from the downstream codec

    /// From here on the request body is decoded by `transform` (request decompression): its
    /// length is unknown until the end, so the upstream gets it chunked.
    public func decodeRequestBody(with transform: any RequestBodyTransform) {
        requestTransform = transform
        if requestBodyLength != 0 { requestBodyLength = nil }
    }

    /// Cuts a request body that makes no progress for `timeout` while the gateway wants it
    /// (a client trickling nothing holds a stream, a buffer and an upstream connection): 408,
    /// and the downstream closes (HTTP/1.1) or resets the stream (HTTP/2). Time the gateway
    /// itself holds the body back (backpressure) does not count.
    public func enforceBodyTimeout(_ timeout: TimeAmount) {
        guard !requestEnded, timeout > .zero, bodyTimer == nil else { return }
        bodyTimeout = timeout
        bodyProgress = .now()
        armBodyTimer(at: bodyProgress + timeout)
    }

    private func armBodyTimer(at deadline: NIODeadline) {
        bodyTimer = eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            bodyTimer = nil
            guard !requestEnded, downstream != nil else { return }
            let now = NIODeadline.now()
            if !bodyWanted { bodyProgress = now }
            if now < bodyProgress + bodyTimeout {
                armBodyTimer(at: bodyProgress + bodyTimeout)
            } else {
                fail(.bodyTimeout)
            }
        }
    }

    private func setDownstreamDemand(_ demand: Bool) {
        if demand && !bodyWanted { bodyProgress = .now() }
        bodyWanted = demand
        downstream?.setRequestBodyDemand(demand)
    }

    public func receiveRequestBody(_ chunk: ByteBuffer) {
        if bodyTimer != nil { bodyProgress = .now() }
        var chunk = chunk
        if let requestTransform {
            do {
                guard let decoded = try requestTransform.transform(chunk) else { return }
                chunk = decoded
            } catch {
                self.requestTransform = nil
                fail(error)
                return
            }
        }
        deliverRequestBody(chunk)
    }

    private func deliverRequestBody(_ chunk: ByteBuffer) {
        receivedBodyBytes += chunk.readableBytes
        if let limit = maxRequestBodySize, receivedBodyBytes > limit {
            fail(.bodyTooLarge)
            return
        }
        if let bodyConsumer {
            bodyConsumer.requestBodyPart(chunk)
        } else if responseState != .complete {
            pendingBody.append(chunk)
            setDownstreamDemand(false)
        }
    }

    public func receiveRequestEnd(_ trailers: HTTPFields?) {
        if let requestTransform {
            self.requestTransform = nil
            do {
                if let tail = try requestTransform.finish() { deliverRequestBody(tail) }
            } catch {
                fail(error)
                return
            }
            guard responseState != .complete else { return }
        }
        requestEnded = true
        bodyTimer?.cancel()
        bodyTimer = nil
        if let bodyConsumer {
            bodyConsumer.requestBodyEnd(trailers)
        } else {
            pendingTrailers = trailers
        }
    }

    /// The consumer gets what arrived so far, then the rest as it comes; the client is resumed.
    public func attachRequestBodyConsumer(_ consumer: any RequestBodyConsumer) {
        bodyConsumer = consumer
        let pending = pendingBody
        pendingBody = []
        for chunk in pending { consumer.requestBodyPart(chunk) }
        if requestEnded {
            consumer.requestBodyEnd(pendingTrailers)
            pendingTrailers = nil
        } else {
            setDownstreamDemand(true)
        }
    }

    /// Request body backpressure, for consumers (an upstream socket that is full).
    public func setRequestBodyDemand(_ demand: Bool) {
        guard !requestEnded else { return }
        setDownstreamDemand(demand)
    }

    // MARK: Response, from a route handler

    public var isDownstreamWritable: Bool { downstream?.isWritable ?? true }

    public func sendResponseHead(_ response: HTTPResponse) {
        guard responseState == .pending else { return }
        var response = response
        runResponseHeadFilters(&response)
        for filter in filters.reversed() {
            if let transform = filter.makeResponseBodyTransform(for: &response, exchange: self) {
                transforms.append(transform)
            }
        }
        responseState = .streaming
        responseStatus = response.status
        attributes.timings.responseStarted = .now()
        downstream?.writeResponseHead(response)
    }

    public func sendResponseBody(_ chunk: ByteBuffer) {
        guard responseState == .streaming else { return }
        var chunk = chunk
        do {
            for transform in transforms {
                guard let next = try transform.transform(chunk) else { return }
                chunk = next
            }
        } catch {
            fail(.upstreamInvalidResponse("the response body could not be transformed: \(error)"))
            return
        }
        if chunk.readableBytes > 0 {
            sentBodyBytes += chunk.readableBytes
            downstream?.writeResponseBody(chunk)
        }
    }

    public func flushResponse() {
        downstream?.flushResponse()
    }

    public func sendResponseEnd(_ trailers: HTTPFields? = nil) {
        guard responseState == .streaming else { return }
        var trailers = trailers
        do {
            for (index, transform) in transforms.enumerated() {
                // What a transform flushes at the end still passes through the ones after it.
                guard var tail = try transform.finish(trailers: &trailers) else { continue }
                var complete = true
                for next in transforms[(index + 1)...] {
                    guard let out = try next.transform(tail) else {
                        complete = false
                        break
                    }
                    tail = out
                }
                if complete && tail.readableBytes > 0 {
                    sentBodyBytes += tail.readableBytes
                    downstream?.writeResponseBody(tail)
                }
            }
        } catch {
            fail(.upstreamInvalidResponse("the response body could not be transformed: \(error)"))
            return
        }
        responseState = .complete
        let downstream = self.downstream
        release()
        downstream?.writeResponseEnd(trailers)
    }

    /// Switches protocols: the response phase runs over `response` (a 101), the downstream
    /// writes it and hands over its connection (or HTTP/2 stream) as a byte tunnel, and the
    /// exchange is complete. nil when the downstream cannot (nothing was sent; answer otherwise).
    public func upgrade(_ response: HTTPResponse) -> (any ByteTunnel)? {
        guard responseState == .pending, let downstream else { return nil }
        var response = response
        runResponseHeadFilters(&response)
        guard let tunnel = downstream.takeOver(response) else { return nil }
        responseState = .complete
        responseStatus = response.status
        attributes.timings.responseStarted = .now()
        release()
        return tunnel
    }

    /// The response phase for a head, filters backwards.
    private func runResponseHeadFilters(_ response: inout HTTPResponse) {
        for filter in filters.reversed() {
            filter.filterResponseHead(&response, exchange: self)
        }
    }

    /// A whole response at once (small bodies the gateway makes itself).
    public func respond(_ response: HTTPResponse, body: ByteBuffer?) {
        var response = response
        if let body { response.headerFields[.contentLength] = String(body.readableBytes) }
        sendResponseHead(response)
        if let body { sendResponseBody(body) }
        sendResponseEnd()
    }

    /// Answers with the error in this exchange's `errorFormat`, or, once a response is under
    /// way, aborts it: the client sees a reset rather than a truncated body passed off as whole.
    public func fail(_ error: GatewayError) {
        switch responseState {
        case .pending:
            responseProducer?.cancel()
            responseProducer = nil
            failure = error
            let (response, body) = error.rendered(as: errorFormat, requestID: requestID, allocator: allocator)
            respond(response, body: body)
        case .streaming:
            responseProducer?.cancel()
            responseState = .complete
            failure = error
            aborted = true
            let downstream = self.downstream
            release()
            downstream?.abortResponse()
        case .complete:
            break
        }
    }

    // MARK: Downstream events

    public func downstreamWritabilityChanged(_ writable: Bool) {
        responseProducer?.downstreamWritabilityChanged(writable)
    }

    /// The client is gone: whatever produces the response stops.
    public func downstreamClosed() {
        responseState = .complete
        let producer = responseProducer
        release(cancelled: true)
        producer?.cancel()
    }

    private func release(cancelled: Bool = false) {
        bodyTimer?.cancel()
        bodyTimer = nil
        responseProducer = nil
        bodyConsumer = nil
        downstream = nil
        pendingBody = []
        transforms = []
        requestTransform = nil
        complete(cancelled: cancelled)
    }
}
