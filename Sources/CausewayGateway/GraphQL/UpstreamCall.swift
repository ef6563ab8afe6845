import CausewayGraphQL
import CausewayHTTP
import CausewayUpstream
import HTTPTypes
import NIOCore

/// One request the gateway makes itself (for GraphQL fields bound with `@rest`) through the
/// upstream client: the same pools, limits, retries and outcome reports as proxied traffic,
/// the whole answer collected (up to 16 MiB).
final class UpstreamCall {
    static let maxBody = 16 << 20

    private let request: RestRequest
    private var done: ((Result<RestResponse, RestFailure>) -> Void)?
    private var upstream: UpstreamExchange?
    private var status = 0
    private var body: [UInt8] = []

    /// `done` is called once, on `eventLoop` (which must be the cluster's).
    init(cluster: UpstreamCluster, request: RestRequest, eventLoop: any EventLoop, deadlines: UpstreamDeadlines,
         done: @escaping (Result<RestResponse, RestFailure>) -> Void) {
        self.request = request
        self.done = done
        self.upstream = UpstreamExchange(
            cluster: cluster, request: Self.head(request), body: request.body.map { .buffered(ByteBuffer(bytes: $0)) } ?? .none,
            eventLoop: eventLoop, deadlines: deadlines, timeoutMessage: "no answer within the upstream timeout", delegate: self)
    }

    func start() {
        upstream?.start()
    }

    private static func head(_ request: RestRequest) -> HTTPRequest {
        var fields = HTTPFields()
        fields[.accept] = "application/json"
        // What a GraphQL client sends that upstreams may need: its credentials and the request id.
        if let value = request.headers["authorization"] { fields[.authorization] = value }
        if let value = request.headers["x-request-id"] { fields[RequestIDFilter.header] = value }
        if request.body != nil { fields[.contentType] = "application/json" }
        // No authority: the upstream client names the endpoint (`host:port`).
        return HTTPRequest(method: HTTPRequest.Method(request.method) ?? .get, scheme: nil, authority: nil,
                           path: request.path, headerFields: fields)
    }

    private func finish(_ result: Result<RestResponse, RestFailure>) {
        guard let done else { return }
        self.done = nil
        let upstream = self.upstream
        self.upstream = nil
        upstream?.cancel()  // no-op when it ended by itself
        done(result)
    }
}

extension UpstreamCall: UpstreamExchangeDelegate {
    func upstreamRequestSent() {}

    func upstreamResponseHead(_ response: HTTPResponse) {
        status = response.status.code
        if let length = response.headerFields[.contentLength].flatMap(Int.init), length <= Self.maxBody {
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

    func upstreamResponseEnd(_ trailers: HTTPFields?) {
        upstream = nil
        finish(.success(RestResponse(status: status, body: body)))
    }

    func upstreamFailed(_ failure: UpstreamFailure, responseStarted: Bool) {
        upstream = nil
        let mapped: RestFailure = switch failure.kind {
        case .timeout: .timeout(failure.message)
        case .unavailable, .overloaded: .unavailable(failure.message)
        case .invalidResponse: .invalidResponse(failure.message)
        }
        finish(.failure(mapped))
    }

    func upstreamWritabilityChanged(_ writable: Bool) {}
}

@available(*, unavailable)
extension UpstreamCall: Sendable {}
