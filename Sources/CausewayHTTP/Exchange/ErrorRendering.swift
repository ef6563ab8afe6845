import HTTPTypes
import NIOCore

/// One renderer for every gateway error, by the caller's protocol: JSON for REST, GraphQL's
/// `errors` for GraphQL routes, a trailers-only answer for gRPC. (WebSocket close codes come
/// with the tunnels.)
extension GatewayError {
    public static let grpcStatus = HTTPField.Name("grpc-status")!
    public static let grpcMessage = HTTPField.Name("grpc-message")!
    static let requestIDField = HTTPField.Name("x-request-id")!

    public func rendered(as format: ErrorFormat, requestID: String,
                         allocator: ByteBufferAllocator) -> (HTTPResponse, ByteBuffer?) {
        switch format {
        case .json:
            var response = HTTPResponse(status: status, headerFields: headers)
            response.headerFields[.contentType] = "application/json"
            return (response, body(requestID: requestID, allocator: allocator))
        case .graphql:
            var response = HTTPResponse(status: status, headerFields: headers)
            response.headerFields[.contentType] = "application/json"
            return (response, graphQLBody(requestID: requestID, allocator: allocator))
        case .grpc, .grpcWeb, .grpcWebText:
            // gRPC answers every call with 200; the call's status travels in grpc-status. With
            // no message sent yet it is trailers-only: one HEADERS frame that ends the stream
            // (gRPC-Web, over HTTP/1.1 too, reads it from the head just the same).
            var response = HTTPResponse(status: .ok)
            response.headerFields[.contentType] = switch format {
            case .grpcWeb: "application/grpc-web+proto"
            case .grpcWebText: "application/grpc-web-text+proto"
            default: "application/grpc"
            }
            response.headerFields.append(contentsOf: grpcStatusFields(requestID: requestID))
            return (response, nil)
        }
    }

    /// `grpc-status`, `grpc-message` and the request id: a trailers-only answer's head, or the
    /// trailers that end a call whose messages already began.
    public func grpcStatusFields(requestID: String) -> HTTPFields {
        var fields = HTTPFields()
        fields[Self.grpcStatus] = String(grpcStatusCode)
        fields[Self.grpcMessage] = Self.percentEncoded(message)
        if !requestID.isEmpty { fields[Self.requestIDField] = requestID }
        return fields
    }

    /// The gRPC status for this error: by its code where the meaning is precise, else by the
    /// HTTP status as the gRPC spec's HTTP-to-gRPC table maps it.
    public var grpcStatusCode: Int {
        switch code {
        case "route_not_found", "method_not_allowed": return 12  // UNIMPLEMENTED
        case "upstream_timeout", "request_timeout", "body_timeout": return 4  // DEADLINE_EXCEEDED
        case "body_too_large", "headers_too_large", "rate_limited": return 8  // RESOURCE_EXHAUSTED
        case "upstream_unavailable", "upstream_overloaded", "shutting_down", "upstream_invalid_response": return 14
        default: break
        }
        switch status.code {
        case 400: return 13  // INTERNAL
        case 401: return 16  // UNAUTHENTICATED
        case 403: return 7  // PERMISSION_DENIED
        case 404: return 12  // UNIMPLEMENTED
        case 429, 502, 503, 504: return 14  // UNAVAILABLE
        default: return 2  // UNKNOWN
        }
    }

    /// `grpc-message` is percent-encoded: bytes outside printable ASCII, and `%` itself.
    static func percentEncoded(_ text: String) -> String {
        guard text.utf8.contains(where: { $0 < 0x20 || $0 > 0x7E || $0 == UInt8(ascii: "%") }) else { return text }
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count + 16)
        for byte in text.utf8 {
            if byte < 0x20 || byte > 0x7E || byte == UInt8(ascii: "%") {
                out += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
            } else {
                out.append(byte)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `{"errors":[{"message":..,"extensions":{"code":"BODY_TOO_LARGE","status":413,"request_id":..}}]}`:
    /// GraphQL clients read `errors`, not the REST shape.
    func graphQLBody(requestID: String, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 112 + message.utf8.count + requestID.utf8.count + code.utf8.count)
        buffer.writeString("{\"errors\":[{\"message\":")
        JSONText.writeString(message, to: &buffer)
        buffer.writeString(",\"extensions\":{\"code\":")
        JSONText.writeString(code.uppercased(), to: &buffer)
        buffer.writeString(",\"status\":\(status.code),\"request_id\":")
        JSONText.writeString(requestID, to: &buffer)
        buffer.writeString("}}]}\n")
        return buffer
    }
}
