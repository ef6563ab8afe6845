import CausewayHTTP
import CausewayUpstream
import HTTPTypes
import NIOCore

/// A whole small answer from the upstream client (a JWK set, an introspection reply): the
/// status and the body up to `limit`, or the failure. For the gateway's own calls, not proxying.
final class UpstreamBodyCollector: UpstreamExchangeDelegate {
    var upstream: UpstreamExchange?
    private var status = 0
    private var body: [UInt8] = []
    private let limit: Int
    private var done: ((Result<(status: Int, body: [UInt8]), GatewayError>) -> Void)?

    init(limit: Int, done: @escaping (Result<(status: Int, body: [UInt8]), GatewayError>) -> Void) {
        self.limit = limit
        self.done = done
    }

    private func finish(_ answer: Result<(status: Int, body: [UInt8]), GatewayError>) {
        let done = self.done
        self.done = nil
        upstream = nil
        done?(answer)
    }

    func upstreamRequestSent() {}
    func upstreamResponseHead(_ response: HTTPResponse) { status = response.status.code }
    func upstreamResponseBody(_ chunk: ByteBuffer) {
        guard body.count + chunk.readableBytes <= limit else {
            upstream?.cancel()
            return finish(.failure(.upstreamInvalidResponse("the answer is larger than \(limit >> 10) KiB")))
        }
        body += chunk.readableBytesView
    }
    func upstreamReadComplete() {}
    func upstreamResponseEnd(_ trailers: HTTPFields?) { finish(.success((status, body))) }
    func upstreamFailed(_ failure: UpstreamFailure, responseStarted: Bool) { finish(.failure(GatewayError(failure))) }
    func upstreamWritabilityChanged(_ writable: Bool) {}
}
