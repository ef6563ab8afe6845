import CausewayHTTP
import CausewayUpstream
import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOHTTPTypesHTTP1

/// Carries one exchange to an upstream and back: lease a connection from this loop's pool,
/// send the request head, stream the body both ways with backpressure, map failures to
/// 502/503/504.
///
/// ```
/// Exchange ──body──▶ ProxyTask ──▶ UpstreamHTTP1Connection      (client paused while upstream is full)
/// Exchange ◀─response── ProxyTask ◀── UpstreamHTTP1Connection   (upstream paused while client is full)
/// ```
final class ProxyTask {
    private let exchange: Exchange
    private let route: CompiledRoute
    private let cluster: UpstreamCluster
    private var pool: (any UpstreamPool)?
    private var connection: (any UpstreamRequestChannel)?
    private var waiterID: Int?
    private var timeout: Scheduled<Void>?
    private var sendsBody = false
    private var finished = false
    /// The request went out on a connection that had served others before.
    private var onReusedConnection = false
    private var retried = false

    init(exchange: Exchange, route: CompiledRoute, cluster: UpstreamCluster) {
        self.exchange = exchange
        self.route = route
        self.cluster = cluster
    }

    func start() {
        exchange.responseProducer = self
        if let limit = route.config.timeout {
            timeout = exchange.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(limit)) { [self] in
                timeout = nil
                exchange.fail(.upstreamTimeout("upstream \"\(cluster.name)\" did not answer within the route timeout"))
            }
        }
        acquire()
    }

    private func acquire() {
        guard let pool = cluster.pickPool() else {
            finish(with: .upstreamOverloaded("upstream \"\(cluster.name)\" has no endpoint"))
            return
        }
        self.pool = pool
        switch pool.lease(self) {
        case .leased(let connection):
            poolLeased(connection)
        case .pending(let id):
            waiterID = id
        case .rejected:
            finish(with: .upstreamOverloaded("upstream \"\(cluster.name)\" has too many pending requests"))
        }
    }

    /// `http2`: the request goes to an HTTP/2 upstream, where a client's `TE: trailers` is
    /// passed on (it is hop-by-hop, but HTTP/2 allows exactly that value, and gRPC needs it).
    private func requestHead(http2: Bool) -> HTTPRequestHead {
        var fields = exchange.request.headerFields
        let acceptsTrailers = http2 && fields[values: .te].contains { value in
            value.split(separator: ",").contains { $0.split(separator: ";")[0].trimmingSpaces().lowercased() == "trailers" }
        }
        HopByHop.strip(&fields)
        if acceptsTrailers { fields[.te] = "trailers" }
        fields.append(HTTPField(name: Self.forwardedFor, value: exchange.client.address))
        fields.append(HTTPField(name: Self.forwardedProto, value: exchange.client.scheme))
        if let authority = exchange.request.authority {
            fields.append(HTTPField(name: Self.forwardedHost, value: authority))
        }
        // The body's framing is the gateway's own, from the body it actually sends: whatever the
        // client wrote (or named in Connection) never decides where this request ends upstream.
        fields[.contentLength] = nil
        var headers = HTTPHeaders()
        headers.reserveCapacity(fields.count + 2)
        // A request without an authority (HTTP/1.0 without Host) still names a host upstream:
        // the endpoint's, as nginx's default `proxy_set_header Host $proxy_host` does.
        headers.add(name: "host", value: exchange.request.authority ?? endpointAuthority)
        for field in fields {
            // Repeated fields are joined per RFC 9110 §5.3 (X-Forwarded-* included); Cookie uses "; ".
            headers.add(name: field.name.rawName, value: field.value)
        }
        Self.joinRepeated(&headers, names: ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"])
        switch exchange.requestBodyLength {
        case nil:
            headers.add(name: "transfer-encoding", value: "chunked")
        case 0?:
            if [.post, .put, .patch].contains(exchange.request.method) {
                headers.add(name: "content-length", value: "0")
            }
        case let length?:
            headers.add(name: "content-length", value: String(length))
        }
        let path = route.rewrittenPath(exchange.request.path ?? "/")
        return HTTPRequestHead(version: .http1_1, method: HTTPMethod(exchange.request.method), uri: path,
                               headers: headers)
    }

    private var endpointAuthority: String { pool?.endpoint.label ?? cluster.name }

    private static let forwardedFor = HTTPField.Name("x-forwarded-for")!
    private static let forwardedProto = HTTPField.Name("x-forwarded-proto")!
    private static let forwardedHost = HTTPField.Name("x-forwarded-host")!

    private static func joinRepeated(_ headers: inout HTTPHeaders, names: [String]) {
        for name in names {
            let values = headers[name]
            if values.count > 1 { headers.replaceOrAdd(name: name, value: values.joined(separator: ", ")) }
        }
    }

    private func finish(with error: GatewayError?) {
        guard !finished else { return }
        finished = true
        timeout?.cancel()
        timeout = nil
        if let waiterID, let pool {
            pool.cancel(waiter: waiterID)
            self.waiterID = nil
        }
        if let error { exchange.fail(error) }
    }
}

extension ProxyTask: PoolWaiter {
    func poolLeased(_ connection: any UpstreamRequestChannel) {
        waiterID = nil
        guard !finished else {
            // Leased after the exchange ended: hand it straight back unused by closing it.
            connection.cancel()
            return
        }
        self.connection = connection
        onReusedConnection = connection.isReused
        sendsBody = exchange.requestBodyLength != 0
        connection.execute(requestHead(http2: connection.isHTTP2), hasBody: sendsBody, sink: self)
        if !retried { exchange.attachRequestBodyConsumer(self) }
    }

    func poolFailed(_ error: UpstreamError) {
        waiterID = nil
        upstreamFailed(error, responseStarted: false)
    }
}

extension ProxyTask: RequestBodyConsumer {
    func requestBodyPart(_ chunk: ByteBuffer) {
        guard sendsBody, let connection else { return }
        connection.writeBody(chunk)
        if !connection.isWritable { exchange.setRequestBodyDemand(false) }
    }

    func requestBodyEnd(_ trailers: HTTPFields?) {
        guard sendsBody, let connection else { return }
        sendsBody = false
        connection.writeEnd(trailers.map { HTTPHeaders($0) })
    }
}

extension ProxyTask: UpstreamResponseSink {
    func upstreamResponseHead(_ head: HTTPResponseHead) {
        guard !finished, var response = try? HTTPResponse(head) else {
            upstreamFailed(.invalidResponse("invalid status line"), responseStarted: false)
            return
        }
        HopByHop.strip(&response.headerFields)
        exchange.sendResponseHead(response)
    }

    func upstreamResponseBody(_ chunk: ByteBuffer) {
        exchange.sendResponseBody(chunk)
        if !exchange.isDownstreamWritable { connection?.setResponseDemand(false) }
    }

    func upstreamReadComplete() {
        exchange.flushResponse()
    }

    func upstreamResponseEnd(_ trailers: HTTPHeaders?) {
        connection = nil
        finish(with: nil)
        exchange.sendResponseEnd(trailers.map { HTTPFields($0, splitCookie: false) })
    }

    func upstreamFailed(_ error: UpstreamError, responseStarted: Bool) {
        connection = nil
        if shouldRetry(after: error, responseStarted: responseStarted) {
            retried = true
            acquire()
            return
        }
        let name = cluster.name
        let endpoint = pool?.endpoint.label ?? "?"
        switch error {
        case .connectTimeout:
            finish(with: .upstreamTimeout("connecting to upstream \"\(name)\" (\(endpoint)) timed out"))
        case .connectFailed(let reason):
            finish(with: .upstreamUnavailable("cannot connect to upstream \"\(name)\" (\(endpoint)): \(reason)"))
        case .tlsFailed(let reason):
            finish(with: .upstreamUnavailable("TLS with upstream \"\(name)\" (\(endpoint)) failed: \(reason)"))
        case .closedEarly:
            finish(with: .upstreamUnavailable("upstream \"\(name)\" (\(endpoint)) closed the connection before the response was complete"))
        case .refusedStream:
            finish(with: .upstreamUnavailable("upstream \"\(name)\" (\(endpoint)) refused the stream"))
        case .invalidResponse(let reason):
            finish(with: .upstreamInvalidResponse("upstream \"\(name)\" (\(endpoint)) sent an invalid response: \(reason)"))
        }
    }

    /// A pooled keep-alive connection the upstream closed just as it was reused (its idle
    /// timeout raced ours) says nothing about the upstream's health: retry once, on another
    /// connection, when the request is bodyless and idempotent (RFC 9110 §9.2.2), as nginx and
    /// Envoy do. Anything else is answered as the failure it is.
    private func shouldRetry(after error: UpstreamError, responseStarted: Bool) -> Bool {
        guard !finished, !retried, !responseStarted, exchange.requestBodyLength == 0 else { return false }
        switch error {
        case .refusedStream:
            return true  // the upstream says it did not process it
        case .closedEarly:
            return onReusedConnection && [.get, .head, .options, .trace, .put, .delete].contains(exchange.request.method)
        default:
            return false
        }
    }

    func upstreamWritabilityChanged(_ writable: Bool) {
        exchange.setRequestBodyDemand(writable)
    }
}

extension ProxyTask: ResponseProducer {
    func downstreamWritabilityChanged(_ writable: Bool) {
        connection?.setResponseDemand(writable)
    }

    func cancel() {
        let connection = self.connection
        self.connection = nil
        finish(with: nil)
        connection?.cancel()
    }
}

@available(*, unavailable)
extension ProxyTask: Sendable {}
