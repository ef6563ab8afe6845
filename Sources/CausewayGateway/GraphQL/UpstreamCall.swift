import CausewayGraphQL
import CausewayHTTP
import CausewayUpstream
import NIOCore
import NIOHTTP1

/// One request the gateway makes itself (for GraphQL fields bound with `@rest`) through this
/// loop's pool for the upstream: the same connections, limits and error mapping as proxied
/// traffic, the whole answer collected (up to 16 MiB).
final class UpstreamCall {
    static let maxBody = 16 << 20

    private let cluster: UpstreamCluster
    private let request: RestRequest
    private let eventLoop: any EventLoop
    private var done: ((Result<RestResponse, RestFailure>) -> Void)?
    private var pool: (any UpstreamPool)?
    private var channel: (any UpstreamRequestChannel)?
    private var waiterID: Int?
    private var timer: Scheduled<Void>?
    private var status = 0
    private var body: [UInt8] = []
    private var retried = false
    private var reused = false

    /// `done` is called once, on `eventLoop` (which must be the cluster's).
    init(cluster: UpstreamCluster, request: RestRequest, eventLoop: any EventLoop,
         done: @escaping (Result<RestResponse, RestFailure>) -> Void) {
        self.cluster = cluster
        self.request = request
        self.eventLoop = eventLoop
        self.done = done
    }

    func start(timeout: TimeAmount) {
        timer = eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
            finish(.failure(.timeout("no answer within the upstream timeout")))
        }
        lease()
    }

    private func lease() {
        guard let pool = cluster.pickPool() else {
            finish(.failure(.unavailable("no endpoint")))
            return
        }
        self.pool = pool
        switch pool.lease(self) {
        case .leased(let channel): poolLeased(channel)
        case .pending(let id): waiterID = id
        case .rejected: finish(.failure(.unavailable("too many pending requests")))
        }
    }

    private var head: HTTPRequestHead {
        var headers = HTTPHeaders()
        headers.add(name: "host", value: pool?.endpoint.label ?? request.upstream)
        headers.add(name: "accept", value: "application/json")
        // What a GraphQL client sends that upstreams may need: its credentials and the request id.
        for name in ["authorization", "x-request-id"] {
            if let value = request.headers[name] { headers.add(name: name, value: value) }
        }
        if let body = request.body {
            headers.add(name: "content-type", value: "application/json")
            headers.add(name: "content-length", value: String(body.count))
        }
        return HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: request.method), uri: request.path, headers: headers)
    }

    private func finish(_ result: Result<RestResponse, RestFailure>) {
        guard let done else { return }
        self.done = nil
        timer?.cancel()
        if let waiterID, let pool { pool.cancel(waiter: waiterID) }
        // Given up before the answer was complete: that connection is no good to anyone.
        channel?.cancel()
        channel = nil
        done(result)
    }
}

extension UpstreamCall: PoolWaiter {
    func poolLeased(_ channel: any UpstreamRequestChannel) {
        waiterID = nil
        guard done != nil else {
            channel.cancel()
            return
        }
        reused = channel.isReused
        self.channel = channel
        channel.execute(head, hasBody: request.body != nil, sink: self)
        if let body = request.body {
            channel.writeBody(ByteBuffer(bytes: body))
            channel.writeEnd(nil)
        }
    }

    func poolFailed(_ error: UpstreamError) {
        waiterID = nil
        upstreamFailed(error, responseStarted: false)
    }
}

extension UpstreamCall: UpstreamResponseSink {
    func upstreamResponseHead(_ head: HTTPResponseHead) {
        status = Int(head.status.code)
        if let length = head.headers.first(name: "content-length").flatMap(Int.init), length <= Self.maxBody {
            body.reserveCapacity(length)
        }
    }

    func upstreamResponseBody(_ chunk: ByteBuffer) {
        if body.count + chunk.readableBytes > Self.maxBody {
            finish(.failure(.invalidResponse("the answer is larger than 16 MiB")))
            return
        }
        body.append(contentsOf: chunk.readableBytesView)  // the one copy: the parser reads arrays
    }

    func upstreamReadComplete() {}

    func upstreamResponseEnd(_ trailers: HTTPHeaders?) {
        channel = nil
        finish(.success(RestResponse(status: status, body: body)))
    }

    func upstreamFailed(_ error: UpstreamError, responseStarted: Bool) {
        channel = nil
        // As for proxied requests: a refused stream, or a reused keep-alive connection the
        // upstream had just closed, gets one more try when nothing was sent that could matter.
        let retryable = error == .refusedStream || (error == .closedEarly && reused && !responseStarted)
        if retryable && !retried && request.body == nil && done != nil {
            retried = true
            lease()
            return
        }
        switch error {
        case .connectTimeout: finish(.failure(.timeout("connecting timed out")))
        case .connectFailed(let reason), .tlsFailed(let reason): finish(.failure(.unavailable(reason)))
        case .closedEarly: finish(.failure(.unavailable("the connection closed before the answer was complete")))
        case .refusedStream: finish(.failure(.unavailable("the stream was refused")))
        case .invalidResponse(let reason): finish(.failure(.invalidResponse(reason)))
        }
    }

    func upstreamWritabilityChanged(_ writable: Bool) {}
}
