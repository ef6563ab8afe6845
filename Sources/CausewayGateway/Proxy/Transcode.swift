import CausewayConfig
import CausewayHTTP
import CausewayTranscoding
import CausewayUpstream
import HTTPTypes
import NIOCore

/// One REST/JSON call made into a gRPC call (`grpc.transcode`, docs/grpc.md):
///
/// ```
/// client ── JSON body, path, query ──▶ rule match ─▶ request message ──▶ POST /pkg.Service/Method (gRPC) ──▶ upstream
/// client ◀── 200 JSON (or a JSON array / NDJSON, element by element) ◀── messages + grpc-status ◀──
/// client ◀── HTTP status by the gRPC code, google.rpc.Status as JSON ◀── a failed call
/// ```
///
/// The request body is read whole (it is one JSON document, bounded by grpc.max_message_size);
/// response messages are printed as each completes. A stream that fails after its first
/// element is cut (reset), never passed off as complete.
final class TranscodeTask {
    private let exchange: Exchange
    private let route: CompiledRoute
    private let cluster: UpstreamCluster
    private let deadlines: UpstreamDeadlines?
    private let transcoder: Transcoder
    private let limit: Int
    private var call: Transcoder.Call?
    private var body: [UInt8] = []
    private var upstream: UpstreamExchange?
    /// Response bytes not yet a whole message.
    private var pending = ByteBuffer()
    private var head: HTTPResponse?
    private var unaryMessage: [UInt8]?
    private var streaming = false
    private var ndjson = false
    private var elements = 0

    init(exchange: Exchange, route: CompiledRoute, cluster: UpstreamCluster, deadlines: UpstreamDeadlines?, transcoder: Transcoder) {
        self.exchange = exchange
        self.route = route
        self.cluster = cluster
        self.deadlines = deadlines
        self.transcoder = transcoder
        limit = route.config.grpc?.maxMessageSize ?? 4 << 20
    }

    func start() {
        let target = exchange.request.path ?? "/"
        let path = target.firstIndex(of: "?").map { target[..<$0] } ?? target[...]
        switch transcoder.match(method: exchange.request.method.rawValue, path: path) {
        case .none: return exchange.fail(.routeNotFound)
        case .methodNotAllowed(let allow): return exchange.fail(.methodNotAllowed(allow: allow))
        case .call(let call): self.call = call
        }
        exchange.responseProducer = self
        if let length = exchange.requestBodyLength, length > limit { return exchange.fail(tooLarge(length)) }
        if exchange.requestBodyLength == 0 {
            send()
        } else {
            exchange.attachRequestBodyConsumer(self)
        }
    }

    private func tooLarge(_ length: Int) -> GatewayError {
        GatewayError(status: .contentTooLarge, code: "body_too_large",
                     message: "request body of \(length) bytes is over grpc.max_message_size (\(limit))")
    }

    /// The whole request is here: build the message(s) and make the call.
    private func send() {
        guard let call else { return }
        let target = exchange.request.path ?? "/"
        let query = target.firstIndex(of: "?").map { target[target.index(after: $0)...] }
        let messages: [[UInt8]]
        do {
            messages = try transcoder.requestMessages(call, query: query, body: body)
        } catch {
            return exchange.fail(GatewayError(status: .badRequest, code: "invalid_argument", message: error.description))
        }
        body = []
        var framed = exchange.allocator.buffer(capacity: messages.reduce(0) { $0 + 5 + $1.count })
        for message in messages {
            guard message.count <= limit else { return exchange.fail(tooLarge(message.count)) }
            framed.writeInteger(UInt8(0))
            framed.writeInteger(UInt32(message.count))
            framed.writeBytes(message)
        }
        var request = ProxyTask.upstreamRequest(for: exchange, route: route)
        request.method = .post
        request.path = call.binding.method.grpcPath
        request.headerFields[.contentType] = "application/grpc"
        request.headerFields[.te] = "trailers"
        request.headerFields[.accept] = nil
        request.headerFields[.acceptEncoding] = nil
        request.headerFields[.contentLength] = nil
        let timeouts = [route.config.grpc?.defaultTimeout, route.config.timeout].compactMap { $0 }.map(TimeAmount.init)
        if let timeout = timeouts.min() {
            request.headerFields[GRPC.timeoutField] = GRPC.formatTimeout(exchange.attributes.timings.received + timeout - .now())
        }
        streaming = call.binding.method.serverStreaming
        ndjson = streaming && exchange.request.headerFields[values: .accept].contains { $0.contains("application/x-ndjson") }
        let upstream = UpstreamExchange(
            cluster: cluster, request: request, body: .buffered(framed), eventLoop: exchange.eventLoop, deadlines: deadlines,
            timeoutMessage: "upstream \"\(cluster.name)\" did not answer within the route timeout", delegate: self)
        self.upstream = upstream
        exchange.attributes.timings.upstreamStarted = .now()
        upstream.start()
    }

    // MARK: Response

    private func received(_ message: [UInt8]) {
        guard let call else { return }
        guard streaming else {
            guard unaryMessage == nil else { return failUpstream("a unary method answered more than one message") }
            unaryMessage = message
            return
        }
        var out = exchange.allocator.buffer(capacity: message.count * 2 + 8)
        if elements == 0 {
            startResponse(status: .ok)
            if !ndjson { out.writeInteger(UInt8(ascii: "[")) }
        } else if !ndjson {
            out.writeInteger(UInt8(ascii: ","))
        }
        do {
            try transcoder.printResponse(message, binding: call.binding, into: &out)
        } catch {
            return failUpstream("response message \(elements): \(error.description)")
        }
        if ndjson { out.writeInteger(UInt8(ascii: "\n")) }
        elements += 1
        exchange.sendResponseBody(out)
    }

    private func startResponse(status: HTTPResponse.Status, length: Int? = nil, trailers: HTTPFields? = nil) {
        var response = HTTPResponse(status: status)
        // The upstream's metadata (and, for a whole answer, its trailing metadata) as headers.
        for field in (head?.headerFields ?? [:]) + (trailers ?? [:]) where Self.passesAsHeader(field.name) {
            response.headerFields.append(field)
        }
        response.headerFields[.contentType] = ndjson ? "application/x-ndjson" : "application/json"
        if let length { response.headerFields[.contentLength] = String(length) }
        exchange.sendResponseHead(response)
    }

    private static func passesAsHeader(_ name: HTTPField.Name) -> Bool {
        let text = name.canonicalName
        return !text.hasPrefix("grpc-") && name != .contentType && name != .contentLength && name != .transferEncoding
            && name != .trailer && !HopByHop.isHopByHop(name)
    }

    /// The call's end: a status from the trailers (or a trailers-only head).
    private func finish(_ fields: HTTPFields) {
        guard let call else { return }
        let code = fields[GatewayError.grpcStatus].flatMap { Int($0) } ?? 2
        if code != 0 {
            guard elements == 0 else {
                // Mid-stream: the client sees the stream cut, never a short array as a whole one.
                return exchange.fail(.upstreamInvalidResponse("the stream failed after \(elements) messages with gRPC status \(code)"))
            }
            ndjson = false
            let message = fields[GatewayError.grpcMessage].map { PathTemplate.percentDecoded($0) ?? $0 } ?? ""
            let details = fields[Self.statusDetails].flatMap(Base64.decode)
            var out = exchange.allocator.buffer(capacity: 64 + message.utf8.count)
            transcoder.printStatus(code: code, message: message, details: details, into: &out)
            startResponse(status: .init(code: Transcoder.httpStatus(forGRPC: code)), length: out.readableBytes)
            exchange.sendResponseBody(out)
            return exchange.sendResponseEnd()
        }
        if streaming {
            if elements == 0 {
                startResponse(status: .ok)
                if !ndjson { exchange.sendResponseBody(ByteBuffer(string: "[]")) }
            } else if !ndjson {
                exchange.sendResponseBody(ByteBuffer(string: "]"))
            }
            return exchange.sendResponseEnd()
        }
        var out = exchange.allocator.buffer(capacity: (unaryMessage?.count ?? 0) * 2 + 2)
        do {
            try transcoder.printResponse(unaryMessage ?? [], binding: call.binding, into: &out)
        } catch {
            return failUpstream("response message: \(error.description)")
        }
        startResponse(status: .ok, length: out.readableBytes, trailers: fields)
        exchange.sendResponseBody(out)
        exchange.sendResponseEnd()
    }

    private func failUpstream(_ message: String) {
        let upstream = self.upstream
        self.upstream = nil
        upstream?.cancel()
        exchange.fail(.upstreamInvalidResponse("upstream \"\(cluster.name)\": \(message)"))
    }

    static let statusDetails = HTTPField.Name("grpc-status-details-bin")!
}

extension TranscodeTask: RequestBodyConsumer {
    func requestBodyPart(_ chunk: ByteBuffer) {
        guard call != nil, upstream == nil else { return }
        guard body.count + chunk.readableBytes <= limit else { return exchange.fail(tooLarge(body.count + chunk.readableBytes)) }
        body += chunk.readableBytesView
    }

    func requestBodyEnd(_ trailers: HTTPFields?) {
        guard upstream == nil else { return }
        send()
    }
}

extension TranscodeTask: UpstreamExchangeDelegate {
    func upstreamRequestSent() {}

    func upstreamResponseHead(_ response: HTTPResponse) {
        guard GRPC.isGRPC(response.headerFields[.contentType]) else {
            let type = response.headerFields[.contentType] ?? "none"
            return failUpstream("answered HTTP \(response.status.code) (\(type)), not gRPC")
        }
        head = response
    }

    func upstreamResponseBody(_ chunk: ByteBuffer) {
        var chunk = chunk
        pending.writeBuffer(&chunk)
        while pending.readableBytes >= 5 {
            let flag = pending.getInteger(at: pending.readerIndex, as: UInt8.self)!
            let length = Int(pending.getInteger(at: pending.readerIndex + 1, as: UInt32.self)!)
            guard length <= limit else { return failUpstream("a response message of \(length) bytes is over grpc.max_message_size") }
            guard flag == 0 else { return failUpstream("a compressed response message (none was asked for)") }
            guard pending.readableBytes >= 5 + length else { break }
            pending.moveReaderIndex(forwardBy: 5)
            received(pending.readBytes(length: length)!)
            guard upstream != nil else { return }
        }
        pending.discardReadBytes()
        if streaming, !exchange.isDownstreamWritable { upstream?.setResponseDemand(false) }
    }

    func upstreamReadComplete() {
        if streaming { exchange.flushResponse() }
    }

    func upstreamResponseEnd(_ trailers: HTTPFields?) {
        upstream = nil
        guard pending.readableBytes == 0 else { return exchange.fail(.upstreamInvalidResponse("the call ended inside a message")) }
        // Trailers-only: the status is in the head.
        finish(trailers ?? head?.headerFields ?? [:])
    }

    func upstreamFailed(_ failure: UpstreamFailure, responseStarted: Bool) {
        upstream = nil
        exchange.fail(GatewayError(failure))
    }

    func upstreamWritabilityChanged(_ writable: Bool) {}
}

extension TranscodeTask: ResponseProducer {
    func downstreamWritabilityChanged(_ writable: Bool) {
        upstream?.setResponseDemand(writable)
    }

    func cancel() {
        let upstream = self.upstream
        self.upstream = nil
        upstream?.cancel()
    }
}
