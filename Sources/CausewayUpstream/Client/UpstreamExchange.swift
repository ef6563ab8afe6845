import HTTPTypes
import NIOCore

/// What an `UpstreamExchange` tells whoever started it (the proxy, a GraphQL REST call).
public protocol UpstreamExchangeDelegate: AnyObject {
    /// The head went out on a connection: a streamed body may flow now. Called once per
    /// attempt; a retried attempt only happens when no streamed body was taken yet.
    func upstreamRequestSent()
    func upstreamResponseHead(_ response: HTTPResponse)
    func upstreamResponseBody(_ chunk: ByteBuffer)
    /// End of one upstream read cycle: the moment to flush what was forwarded.
    func upstreamReadComplete()
    func upstreamResponseEnd(_ trailers: HTTPFields?)
    /// No (complete) response: connect failure, reset, timeout, invalid answer. Once, final.
    func upstreamFailed(_ failure: UpstreamFailure, responseStarted: Bool)
    /// The upstream can take more request body (or not): backpressure toward the client.
    func upstreamWritabilityChanged(_ writable: Bool)
}

/// Why an upstream exchange produced no complete response, worded for the caller.
public struct UpstreamFailure: Error, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// Connecting, or the whole exchange, took longer than allowed (→ 504).
        case timeout
        /// Could not connect, TLS failed, the connection closed or the stream was reset (→ 502).
        case unavailable
        /// No endpoint or too many waiting (→ 503).
        case overloaded
        /// The upstream's answer was not valid HTTP (→ 502).
        case invalidResponse
    }

    public var kind: Kind
    public var message: String
}

/// One request to an upstream, the single way the gateway makes them: pick an endpoint, lease
/// a connection (HTTP/1.1) or stream (HTTP/2) from this loop's pool, send, stream both bodies
/// with backpressure, map failures, retry what is safe to retry, and report every attempt's
/// outcome to the cluster (for outlier detection and metrics).
///
/// Retries (one, by default), only when the request never reached the upstream's application
/// or can be replayed exactly:
/// - a connect failure (refused, timeout, TLS): on the next endpoint, when there are several;
/// - a refused stream (HTTP/2 REFUSED_STREAM, GOAWAY past it): the upstream says it did nothing;
/// - a reused keep-alive connection closed before any response: an idempotent request
///   (RFC 9110 §9.2.2) whose body, if any, is held whole.
/// A streamed body is never replayed once the upstream started taking it.
public final class UpstreamExchange {
    public enum Body {
        /// No body.
        case none
        /// The whole body, held (replayable).
        case buffered(ByteBuffer)
        /// Streamed by the caller through `writeBody`/`writeEnd` after `upstreamRequestSent`;
        /// `length` nil means unknown (chunked on HTTP/1.1).
        case streamed(length: Int?)
    }

    public let cluster: UpstreamCluster
    private var request: HTTPRequest
    private let body: Body
    /// Strong until the exchange ends (the pool and connection hold this object, this holds the
    /// caller), then dropped, which breaks the cycle.
    private var delegate: (any UpstreamExchangeDelegate)?
    private let eventLoop: any EventLoop
    private let maxRetries: Int
    private var pool: (any UpstreamPool)?
    private var poolIndex = 0
    private var channel: (any UpstreamRequestChannel)?
    private var waiterID: Int?
    // The exchange's place in its route's deadline list (`UpstreamDeadlines`).
    var deadline = NIODeadline.uptimeNanoseconds(0)
    var deadlineNext: UpstreamExchange?
    unowned(unsafe) var deadlinePrevious: UpstreamExchange?
    var deadlineList: UpstreamDeadlines?
    private var attempts = 0
    private var attemptStart = NIODeadline.uptimeNanoseconds(0)
    private var bodyTaken = false
    private var finished = false
    private var responseStatus: Int?
    private let timeoutMessage: String

    /// `request.authority` nil means the endpoint's `host:port`. `deadlines` (the route's, on
    /// this loop) bounds the whole exchange, connect to last byte; nil = no timeout.
    public init(cluster: UpstreamCluster, request: HTTPRequest, body: Body, eventLoop: any EventLoop,
                deadlines: UpstreamDeadlines?, timeoutMessage: String? = nil, maxRetries: Int = 1,
                delegate: any UpstreamExchangeDelegate) {
        self.cluster = cluster
        self.request = request
        self.body = body
        self.eventLoop = eventLoop
        self.maxRetries = maxRetries
        self.delegate = delegate
        self.timeoutMessage = timeoutMessage ?? "upstream \"\(cluster.name)\" did not answer in time"
        deadlines?.add(self)
    }

    /// Called by the deadline list: the exchange's time is up.
    func deadlinePassed() {
        fail(.init(kind: .timeout, message: timeoutMessage), outcome: .timeout)
    }

    /// The exchange no longer has a deadline (an event stream began: its idle timers apply).
    public func stopTimeout() {
        deadlineList?.remove(self)
    }

    /// The endpoint of the current attempt, for messages ("?" before one is picked).
    public var endpointLabel: String { pool?.endpoint.label ?? "?" }

    public func start() {
        attempt()
    }

    private func attempt() {
        attempts += 1
        attemptStart = .now()
        guard let index = cluster.pick() else {
            finish(.init(kind: .overloaded, message: "upstream \"\(cluster.name)\" has no endpoint"), responseStarted: false)
            return
        }
        let pool = cluster.pools[index]
        self.pool = pool
        poolIndex = index
        switch pool.lease(self) {
        case .leased(let channel):
            poolLeased(channel)
        case .pending(let id):
            waiterID = id
        case .rejected:
            finish(.init(kind: .overloaded, message: "upstream \"\(cluster.name)\" has too many pending requests"),
                   responseStarted: false)
        }
    }

    private var bodyLength: Int? {
        switch body {
        case .none: 0
        case .buffered(let bytes): bytes.readableBytes
        case .streamed(let length): length
        }
    }

    // MARK: Driving the request body (streamed)

    public func writeBody(_ chunk: ByteBuffer) {
        channel?.writeBody(chunk)
    }

    public func writeEnd(_ trailers: HTTPFields?) {
        channel?.writeEnd(trailers)
    }

    public var isWritable: Bool { channel?.isWritable ?? false }

    public func setResponseDemand(_ demand: Bool) {
        channel?.setResponseDemand(demand)
    }

    /// The caller is done without a complete response (the client left): abandon the attempt.
    public func cancel() {
        guard !finished else { return }
        record(.cancelled)
        finished = true
        cleanUp()
        delegate = nil
    }

    // MARK: Ending

    private func fail(_ failure: UpstreamFailure, outcome: UpstreamOutcome.Result) {
        guard !finished else { return }
        record(outcome)
        finish(failure, responseStarted: responseStatus != nil)
    }

    private func finish(_ failure: UpstreamFailure, responseStarted: Bool) {
        guard !finished else { return }
        finished = true
        cleanUp()
        let delegate = self.delegate
        self.delegate = nil
        delegate?.upstreamFailed(failure, responseStarted: responseStarted)
    }

    private func cleanUp() {
        deadlineList?.remove(self)
        if let waiterID, let pool {
            pool.cancel(waiter: waiterID)
            self.waiterID = nil
        }
        // Given up before the answer was complete: that connection's state is unknown.
        let channel = self.channel
        self.channel = nil
        channel?.cancel()
    }

    private func record(_ result: UpstreamOutcome.Result) {
        guard pool != nil else { return }
        cluster.record(UpstreamOutcome(endpoint: poolIndex, result: result,
                                       latency: NIODeadline.now() - attemptStart))
    }

    private func retryable(_ error: UpstreamError, responseStarted: Bool) -> Bool {
        guard !finished, attempts <= maxRetries, !responseStarted else { return false }
        let replayable: Bool = switch body {
        case .streamed: !bodyTaken
        case .none, .buffered: true
        }
        switch error {
        case .connectFailed, .connectTimeout, .tlsFailed:
            return cluster.pools.count > 1 && !bodyTaken
        case .refusedStream:
            return replayable
        case .closedEarly:
            let idempotent = [.get, .head, .options, .trace, .put, .delete].contains(request.method)
            return replayable && idempotent && (channelWasReused ?? false)
        case .invalidResponse:
            return false
        }
    }

    private var channelWasReused: Bool?

    private func failure(for error: UpstreamError) -> UpstreamFailure {
        let name = cluster.name
        let endpoint = endpointLabel
        return switch error {
        case .connectTimeout:
            .init(kind: .timeout, message: "connecting to upstream \"\(name)\" (\(endpoint)) timed out")
        case .connectFailed(let reason):
            .init(kind: .unavailable, message: "cannot connect to upstream \"\(name)\" (\(endpoint)): \(reason)")
        case .tlsFailed(let reason):
            .init(kind: .unavailable, message: "TLS with upstream \"\(name)\" (\(endpoint)) failed: \(reason)")
        case .closedEarly:
            .init(kind: .unavailable, message: "upstream \"\(name)\" (\(endpoint)) closed the connection before the response was complete")
        case .refusedStream:
            .init(kind: .unavailable, message: "upstream \"\(name)\" (\(endpoint)) refused the stream")
        case .invalidResponse(let reason):
            .init(kind: .invalidResponse, message: "upstream \"\(name)\" (\(endpoint)) sent an invalid response: \(reason)")
        }
    }
}

extension UpstreamExchange: PoolWaiter {
    public func poolLeased(_ channel: any UpstreamRequestChannel) {
        waiterID = nil
        guard !finished else {
            // Leased after the exchange ended: hand it straight back unused by closing it.
            channel.cancel()
            return
        }
        self.channel = channel
        channelWasReused = channel.isReused
        if request.authority == nil, let pool { request.authority = pool.endpoint.label }
        channel.execute(request, bodyLength: bodyLength, sink: self)
        guard self.channel === channel else { return }  // failed at once
        switch body {
        case .none:
            break
        case .buffered(let bytes):
            channel.writeBody(bytes)
            channel.writeEnd(nil)
        case .streamed:
            bodyTaken = true
        }
        delegate?.upstreamRequestSent()
    }

    public func poolFailed(_ error: UpstreamError) {
        waiterID = nil
        upstreamFailed(error, responseStarted: false)
    }
}

extension UpstreamExchange: UpstreamResponseSink {
    public func upstreamResponseHead(_ response: HTTPResponse) {
        guard !finished else { return }
        responseStatus = response.status.code
        record(.response(status: response.status.code))
        delegate?.upstreamResponseHead(response)
    }

    public func upstreamResponseBody(_ chunk: ByteBuffer) {
        delegate?.upstreamResponseBody(chunk)
    }

    public func upstreamReadComplete() {
        delegate?.upstreamReadComplete()
    }

    public func upstreamResponseEnd(_ trailers: HTTPFields?) {
        guard !finished else { return }
        finished = true
        channel = nil
        deadlineList?.remove(self)
        let delegate = self.delegate
        self.delegate = nil
        delegate?.upstreamResponseEnd(trailers)
    }

    public func upstreamFailed(_ error: UpstreamError, responseStarted: Bool) {
        channel = nil
        guard !finished else { return }
        let outcome: UpstreamOutcome.Result = switch error {
        case .connectFailed, .connectTimeout, .tlsFailed: .connectFailure
        case .closedEarly, .refusedStream: .reset
        case .invalidResponse: .invalidResponse
        }
        // A response already recorded its status; a failure after it is still worth knowing.
        record(outcome)
        if retryable(error, responseStarted: responseStarted) {
            attempt()
            return
        }
        finish(failure(for: error), responseStarted: responseStarted)
    }

    public func upstreamWritabilityChanged(_ writable: Bool) {
        delegate?.upstreamWritabilityChanged(writable)
    }
}

@available(*, unavailable)
extension UpstreamExchange: Sendable {}
