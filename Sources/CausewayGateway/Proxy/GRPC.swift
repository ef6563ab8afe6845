import CausewayConfig
import CausewayHTTP
import HTTPTypes
import NIOCore

/// The gRPC rules a proxied call follows (docs/grpc.md): its deadline, its messages' size,
/// and gRPC answers for what goes wrong.
enum GRPC {
    static let timeoutField = HTTPField.Name("grpc-timeout")!

    /// `grpc-timeout`: 1 to 8 ASCII digits and a unit (H, M, S, m, u, n). nil when malformed,
    /// which the gRPC spec treats as no timeout. The arithmetic saturates.
    static func parseTimeout(_ value: String) -> TimeAmount? {
        let bytes = Array(value.utf8)
        guard bytes.count >= 2, bytes.count <= 9, let unit = bytes.last else { return nil }
        var amount: Int64 = 0
        for byte in bytes.dropLast() {
            guard byte >= 0x30 && byte <= 0x39 else { return nil }
            amount = amount * 10 + Int64(byte - 0x30)
        }
        let nanosecondsPerUnit: Int64
        switch unit {
        case UInt8(ascii: "H"): nanosecondsPerUnit = 3_600_000_000_000
        case UInt8(ascii: "M"): nanosecondsPerUnit = 60_000_000_000
        case UInt8(ascii: "S"): nanosecondsPerUnit = 1_000_000_000
        case UInt8(ascii: "m"): nanosecondsPerUnit = 1_000_000
        case UInt8(ascii: "u"): nanosecondsPerUnit = 1_000
        case UInt8(ascii: "n"): nanosecondsPerUnit = 1
        default: return nil
        }
        let (product, overflow) = amount.multipliedReportingOverflow(by: nanosecondsPerUnit)
        return .nanoseconds(overflow ? .max : product)
    }

    /// `amount` as `grpc-timeout`, in the finest unit that fits 8 digits (rounded up, so the
    /// upstream never gets more time than is left).
    static func formatTimeout(_ amount: TimeAmount) -> String {
        let nanoseconds = max(amount.nanoseconds, 0)
        for (unit, size) in [("n", Int64(1)), ("u", 1_000), ("m", 1_000_000), ("S", 1_000_000_000), ("M", 60_000_000_000),
                             ("H", 3_600_000_000_000)] {
            // Rounded up without adding first: near Int64.max the sum would overflow.
            let value = nanoseconds / size + (nanoseconds % size == 0 ? 0 : 1)
            if value < 100_000_000 { return "\(value)\(unit)" }
        }
        return "99999999H"
    }

    /// Whether a request or response is gRPC (anything else from a gRPC upstream is mapped to a
    /// status). gRPC-Web is not: a route with `grpc.web` translates it first, and one without
    /// passes it through as plain HTTP (to an upstream that speaks gRPC-Web itself).
    static func isGRPC(_ contentType: String?) -> Bool {
        guard let contentType, contentType.caseInsensitiveHasPrefix("application/grpc") else { return false }
        return !contentType.caseInsensitiveHasPrefix("application/grpc-web")
    }
}

/// Follows the length-prefixed messages of a gRPC body (1 flag byte, 4 length bytes, then the
/// message) across chunks, to refuse one larger than the limit from its prefix, before any of
/// it is forwarded. Payload bytes are skipped by arithmetic, never looked at.
struct GRPCMessageMeter {
    let limit: Int
    /// Prefix bytes still to read of the current message (0 while in a payload).
    private var prefixLeft = 5
    private var length: UInt32 = 0
    private var payloadLeft = 0

    init(limit: Int) {
        self.limit = limit
    }

    /// The length of the first message in `chunk` over the limit, if any.
    mutating func oversized(in chunk: ByteBuffer) -> Int? {
        var index = 0
        let count = chunk.readableBytes
        while index < count {
            if payloadLeft > 0 {
                let step = min(payloadLeft, count - index)
                payloadLeft -= step
                index += step
                continue
            }
            let byte = chunk.getInteger(at: chunk.readerIndex + index, as: UInt8.self)!
            index += 1
            if prefixLeft < 5 { length = length << 8 | UInt32(byte) }  // the first byte is the flag
            prefixLeft -= 1
            if prefixLeft == 0 {
                if Int(length) > limit { return Int(length) }
                payloadLeft = Int(length)
                prefixLeft = 5
                length = 0
            }
        }
        return nil
    }
}

/// What a proxied gRPC call carries beside the proxy's own state.
struct GRPCCallState {
    var requestMeter: GRPCMessageMeter
    var responseMeter: GRPCMessageMeter
    /// The caller's deadline (`grpc-timeout` or `grpc.default_timeout`), when it is sooner than
    /// the route's timeout (which the upstream client enforces already).
    var deadline: Scheduled<Void>?
    var limit: Int { requestMeter.limit }

    init(limit: Int) {
        requestMeter = GRPCMessageMeter(limit: limit)
        responseMeter = GRPCMessageMeter(limit: limit)
    }
}

extension ProxyTask {
    /// Sets the call's deadline and tells the upstream what is left of it. False when the call
    /// was answered here (gRPC over HTTP/1.1).
    func startGRPC(_ request: inout HTTPRequest) -> Bool {
        // gRPC-Web (translated by GRPCWebFilter) is the way over HTTP/1.1.
        guard exchange.overHTTP2 || exchange.errorFormat.isGRPCWeb else {
            exchange.errorFormat = .json
            exchange.fail(GatewayError(status: .init(code: 505), code: "grpc_needs_http2",
                                       message: "gRPC calls need HTTP/2 (h2 or h2c with prior knowledge); over HTTP/1.1 use gRPC-Web"))
            return false
        }
        let config = route.config.grpc ?? GRPCRouteConfig()
        var state = GRPCCallState(limit: config.maxMessageSize)
        let asked = exchange.request.headerFields[GRPC.timeoutField].flatMap(GRPC.parseTimeout)
            ?? config.defaultTimeout.map(TimeAmount.init)
        let routeTimeout = route.config.timeout.map(TimeAmount.init)
        request.headerFields[GRPC.timeoutField] = nil
        if let timeout = [asked, routeTimeout].compactMap({ $0 }).min() {
            let deadline = exchange.attributes.timings.received + timeout
            // What is left, not what was asked: the time spent here counts against the call.
            request.headerFields[GRPC.timeoutField] = GRPC.formatTimeout(deadline - .now())
            if let asked, routeTimeout.map({ asked < $0 }) ?? true {
                state.deadline = exchange.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
                    grpc?.deadline = nil
                    grpcFailed(.upstreamTimeout("the call's deadline (grpc-timeout) passed"))
                }
            }
        }
        grpc = state
        return true
    }

    func stopGRPC() {
        grpc?.deadline?.cancel()
        grpc?.deadline = nil
    }

    /// The call ends with `error` as its gRPC status: trailers-only before a response began,
    /// trailers after its messages otherwise. The upstream's stream is reset.
    func grpcFailed(_ error: GatewayError) {
        stopGRPC()
        abandonUpstream()
        if exchange.responseState == .pending {
            exchange.fail(error)
        } else {
            exchange.sendResponseEnd(error.grpcStatusFields(requestID: exchange.requestID))
        }
    }

    func requestMessageTooLarge(_ length: Int) {
        grpcFailed(GatewayError(status: .contentTooLarge, code: "body_too_large",
                                message: "request message of \(length) bytes is over grpc.max_message_size (\(grpc?.limit ?? 0))"))
    }

    func responseMessageTooLarge(_ length: Int) {
        grpcFailed(GatewayError(status: .contentTooLarge, code: "body_too_large",
                                message: "response message of \(length) bytes is over grpc.max_message_size (\(grpc?.limit ?? 0))"))
    }

    /// The upstream answered something that is not gRPC (an HTML 502 from a middlebox): the
    /// caller gets the status the gRPC spec's HTTP-to-gRPC table gives its HTTP status.
    func upstreamNotGRPC(_ response: HTTPResponse) {
        let type = response.headerFields[.contentType] ?? "none"
        grpcFailed(GatewayError(status: response.status, code: "upstream_not_grpc",
                                message: "upstream \"\(cluster.name)\" answered HTTP \(response.status.code) (\(type)), not gRPC"))
    }
}
