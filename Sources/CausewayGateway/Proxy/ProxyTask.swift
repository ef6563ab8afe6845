import CausewayHTTP
import CausewayUpstream
import HTTPTypes
import NIOCore

/// Carries one exchange to an upstream and back through the upstream client: the request as
/// the upstream should see it (hop-by-hop fields out, X-Forwarded-* in, the route's path
/// rewrite), the body streamed both ways with backpressure, failures answered as 502/503/504.
///
/// ```
/// Exchange ──body──▶ ProxyTask ──▶ UpstreamExchange ──▶ connection / stream   (client paused while upstream is full)
/// Exchange ◀─response── ProxyTask ◀── UpstreamExchange ◀──                    (upstream paused while client is full)
/// ```
final class ProxyTask {
    let exchange: Exchange
    let route: CompiledRoute
    let cluster: UpstreamCluster
    private let deadlines: UpstreamDeadlines?
    private var upstream: UpstreamExchange?
    private var sendsBody = false
    private var bodyAttached = false
    /// Set once the response turned out to be an event stream.
    private var eventStream: EventStream?
    private var eventTimer: Scheduled<Void>?
    /// Set for gRPC calls (GRPC.swift): message meters and the call's own deadline.
    var grpc: GRPCCallState?

    /// `deadlines`: the route's timeout on this loop (nil: none).
    init(exchange: Exchange, route: CompiledRoute, cluster: UpstreamCluster, deadlines: UpstreamDeadlines?) {
        self.exchange = exchange
        self.route = route
        self.cluster = cluster
        self.deadlines = deadlines
    }

    func start() {
        var request = Self.upstreamRequest(for: exchange, route: route)
        if GRPC.isGRPC(exchange.request.headerFields[.contentType]) {
            guard startGRPC(&request) else { return }
        }
        exchange.responseProducer = self
        let length = exchange.requestBodyLength
        sendsBody = length != 0
        let upstream = UpstreamExchange(
            cluster: cluster, request: request, body: sendsBody ? .streamed(length: length) : .none,
            eventLoop: exchange.eventLoop, deadlines: deadlines,
            timeoutMessage: "upstream \"\(cluster.name)\" did not answer within the route timeout", delegate: self)
        self.upstream = upstream
        exchange.attributes.timings.upstreamStarted = .now()
        upstream.start()
    }

    /// The request as the upstream sees it. A client's `TE: trailers` stays (it is hop-by-hop,
    /// but HTTP/2 allows exactly that value, gRPC needs it, and HTTP/1.1 upstreams may take it).
    /// The client's request as an upstream should see it (also what a WebSocket tunnel sends).
    static func upstreamRequest(for exchange: Exchange, route: CompiledRoute) -> HTTPRequest {
        var request = exchange.request
        let acceptsTrailers = request.headerFields[values: .te].contains { value in
            value.split(separator: ",").contains { $0.split(separator: ";")[0].trimmingSpaces().lowercased() == "trailers" }
        }
        HopByHop.strip(&request.headerFields)
        if acceptsTrailers { request.headerFields[.te] = "trailers" }
        // The body's framing is the gateway's own (the upstream client writes it from the body
        // it sends): whatever the client wrote never decides where this request ends upstream.
        request.headerFields[.contentLength] = nil
        // Repeated fields are joined per RFC 9110 §5.3.
        Self.appendJoined(&request.headerFields, Self.forwardedFor, exchange.client.address)
        Self.appendJoined(&request.headerFields, Self.forwardedProto, exchange.client.scheme)
        if let authority = exchange.request.authority {
            Self.appendJoined(&request.headerFields, Self.forwardedHost, authority)
        }
        // No authority (HTTP/1.0 without Host): the client uses the endpoint's, as nginx's
        // default `proxy_set_header Host $proxy_host` does.
        request.path = route.rewrittenPath(request.path ?? "/")
        return request
    }

    private static func appendJoined(_ fields: inout HTTPFields, _ name: HTTPField.Name, _ value: String) {
        if let existing = fields[name] {
            fields[name] = existing + ", " + value
        } else {
            fields.append(HTTPField(name: name, value: value))
        }
    }

    private static let forwardedFor = HTTPField.Name("x-forwarded-for")!
    private static let forwardedProto = HTTPField.Name("x-forwarded-proto")!
    private static let forwardedHost = HTTPField.Name("x-forwarded-host")!
}

extension ProxyTask: UpstreamExchangeDelegate {
    func upstreamRequestSent() {
        guard sendsBody, !bodyAttached else { return }
        bodyAttached = true
        exchange.attachRequestBodyConsumer(self)
    }

    func upstreamResponseHead(_ response: HTTPResponse) {
        if grpc != nil, !GRPC.isGRPC(response.headerFields[.contentType]) { return upstreamNotGRPC(response) }
        var response = response
        HopByHop.strip(&response.headerFields)
        if (200..<300).contains(response.status.code), EventStream.isEventStream(response.headerFields[.contentType]) {
            startEventStream()
        }
        exchange.sendResponseHead(response)
    }

    func upstreamResponseBody(_ chunk: ByteBuffer) {
        if grpc != nil, let length = grpc!.responseMeter.oversized(in: chunk) { return responseMessageTooLarge(length) }
        if eventStream != nil { eventStream!.received(chunk, now: .now()) }
        exchange.sendResponseBody(chunk)
        if !exchange.isDownstreamWritable { upstream?.setResponseDemand(false) }
    }

    func upstreamReadComplete() {
        exchange.flushResponse()
    }

    func upstreamResponseEnd(_ trailers: HTTPFields?) {
        upstream = nil
        stopEventStream()
        stopGRPC()
        exchange.sendResponseEnd(trailers)
    }

    func upstreamFailed(_ failure: UpstreamFailure, responseStarted: Bool) {
        upstream = nil
        if grpc != nil { return grpcFailed(GatewayError(failure)) }
        if let eventStream, responseStarted {
            stopEventStream()
            // Between two events, an event stream that loses its upstream simply ends: the
            // client reconnects with Last-Event-ID. Mid-event, it is cut (reset), never passed
            // off as complete.
            if eventStream.atEventBoundary {
                exchange.sendResponseEnd()
                return
            }
        }
        exchange.fail(GatewayError(failure))
    }

    func upstreamWritabilityChanged(_ writable: Bool) {
        exchange.setRequestBodyDemand(writable)
    }
}

extension ProxyTask: RequestBodyConsumer {
    func requestBodyPart(_ chunk: ByteBuffer) {
        guard sendsBody, let upstream else { return }
        if grpc != nil, let length = grpc!.requestMeter.oversized(in: chunk) { return requestMessageTooLarge(length) }
        upstream.writeBody(chunk)
        if !upstream.isWritable { exchange.setRequestBodyDemand(false) }
    }

    func requestBodyEnd(_ trailers: HTTPFields?) {
        guard sendsBody, let upstream else { return }
        sendsBody = false
        upstream.writeEnd(trailers)
    }
}

extension ProxyTask: ResponseProducer {
    func downstreamWritabilityChanged(_ writable: Bool) {
        upstream?.setResponseDemand(writable)
    }

    func cancel() {
        let upstream = self.upstream
        self.upstream = nil
        stopEventStream()
        stopGRPC()
        upstream?.cancel()
    }

    /// Drops the upstream side of the call (an HTTP/2 upstream's stream is reset).
    func abandonUpstream() {
        let upstream = self.upstream
        self.upstream = nil
        upstream?.cancel()
    }
}

// MARK: Event streams

extension ProxyTask {
    /// The route's whole-exchange timeout stops here; `sse.heartbeat` and `sse.idle_timeout`
    /// take over, on one timer re-armed lazily.
    private func startEventStream() {
        upstream?.stopTimeout()
        eventStream = EventStream(config: route.config.sse, now: .now())
        armEventTimer()
    }

    private func armEventTimer() {
        guard let deadline = eventStream?.nextCheck else { return }
        eventTimer = exchange.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            eventTimer = nil
            guard eventStream != nil else { return }
            switch eventStream!.check(now: .now()) {
            case .none:
                armEventTimer()
            case .heartbeat:
                exchange.sendResponseBody(ByteBuffer(string: EventStream.heartbeatComment))
                exchange.flushResponse()
                armEventTimer()
            case .idleTimeout:
                let atBoundary = eventStream!.atEventBoundary
                let upstream = self.upstream
                self.upstream = nil
                stopEventStream()
                upstream?.cancel()
                if atBoundary {
                    exchange.sendResponseEnd()
                } else {
                    exchange.fail(.upstreamTimeout("upstream \"\(cluster.name)\" sent nothing within sse.idle_timeout"))
                }
            }
        }
    }

    private func stopEventStream() {
        eventTimer?.cancel()
        eventTimer = nil
        eventStream = nil
    }
}

@available(*, unavailable)
extension ProxyTask: Sendable {}

extension GatewayError {
    /// What a client hears when its upstream gave no (complete) answer.
    init(_ failure: UpstreamFailure) {
        self = switch failure.kind {
        case .timeout: .upstreamTimeout(failure.message)
        case .unavailable: .upstreamUnavailable(failure.message)
        case .overloaded: .upstreamOverloaded(failure.message)
        case .invalidResponse: .upstreamInvalidResponse(failure.message)
        }
    }
}
