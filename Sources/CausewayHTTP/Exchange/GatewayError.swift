import HTTPTypes
import NIOCore

/// A failure the gateway answers itself, with a status and a stable machine-readable code.
///
/// Every one becomes `{"error":{"status":..,"code":"..","message":"..","request_id":".."}}`.
public struct GatewayError: Error, Sendable, Equatable {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    /// Extra response headers (Allow for 405).
    public var headers: HTTPFields

    public init(status: HTTPResponse.Status, code: String, message: String, headers: HTTPFields = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
    }

    public static func badRequest(_ message: String) -> Self {
        .init(status: .badRequest, code: "bad_request", message: message)
    }
    public static let routeNotFound = Self(status: .notFound, code: "route_not_found", message: "no route matches this request")
    public static func methodNotAllowed(allow: [String]) -> Self {
        var headers = HTTPFields()
        headers[.allow] = allow.joined(separator: ", ")
        return .init(status: .methodNotAllowed, code: "method_not_allowed",
                     message: "method not allowed on this route", headers: headers)
    }
    public static let requestTimeout = Self(status: .requestTimeout, code: "request_timeout",
                                            message: "request headers were not received in time")
    public static let bodyTimeout = Self(status: .requestTimeout, code: "body_timeout",
                                         message: "the request body made no progress within the listener's body_timeout")
    public static let connectNotSupported = Self(status: .methodNotAllowed, code: "method_not_allowed",
                                                 message: "CONNECT tunnels are not offered by this gateway")
    public static let bodyTooLarge = Self(status: .contentTooLarge, code: "body_too_large",
                                          message: "request body exceeds the route's max_body_size")
    public static let headersTooLarge = Self(status: .requestHeaderFieldsTooLarge, code: "headers_too_large",
                                             message: "request headers exceed the listener's max_header_size")
    public static let unsupportedTransferCoding = Self(status: .init(code: 501), code: "not_implemented",
                                            message: "unsupported transfer coding")
    public static func upstreamUnavailable(_ message: String) -> Self {
        .init(status: .badGateway, code: "upstream_unavailable", message: message)
    }
    public static func upstreamInvalidResponse(_ message: String) -> Self {
        .init(status: .badGateway, code: "upstream_invalid_response", message: message)
    }
    public static func upstreamOverloaded(_ message: String) -> Self {
        .init(status: .serviceUnavailable, code: "upstream_overloaded", message: message)
    }
    public static func upstreamTimeout(_ message: String) -> Self {
        .init(status: .gatewayTimeout, code: "upstream_timeout", message: message)
    }
    /// A filter's suspended work failed with something other than a gateway error.
    public static func filterFailed(_ message: String) -> Self {
        .init(status: .internalServerError, code: "filter_failed", message: message)
    }
    public static let shuttingDown = Self(status: .serviceUnavailable, code: "shutting_down",
                                          message: "the gateway is shutting down")

    /// The JSON error body.
    public func body(requestID: String, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 96 + message.utf8.count + requestID.utf8.count + code.utf8.count)
        buffer.writeString("{\"error\":{\"status\":\(status.code),\"code\":")
        JSONText.writeString(code, to: &buffer)
        buffer.writeString(",\"message\":")
        JSONText.writeString(message, to: &buffer)
        buffer.writeString(",\"request_id\":")
        JSONText.writeString(requestID, to: &buffer)
        buffer.writeString("}}\n")
        return buffer
    }
}

/// Minimal JSON string escaping (RFC 8259 §7) for bodies the gateway writes itself.
public enum JSONText {
    public static func writeString(_ string: String, to buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(ascii: "\""))
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""): buffer.writeStaticString("\\\"")
            case UInt8(ascii: "\\"): buffer.writeStaticString("\\\\")
            case 0x0A: buffer.writeStaticString("\\n")
            case 0x0D: buffer.writeStaticString("\\r")
            case 0x09: buffer.writeStaticString("\\t")
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                buffer.writeStaticString("\\u00")
                buffer.writeInteger(hex[Int(byte >> 4)])
                buffer.writeInteger(hex[Int(byte & 0xF)])
            default: buffer.writeInteger(byte)
            }
        }
        buffer.writeInteger(UInt8(ascii: "\""))
    }
}
