import CausewayHTTP
import HTTPTypes
import NIOCore

/// `grpc.web: true`: gRPC-Web callers (browsers, over HTTP/1.1 or HTTP/2) reach a gRPC upstream.
///
/// ```
/// client ── application/grpc-web[-text] ──▶ filter: content type, te: trailers, base64 decoded ──▶ ProxyTask (gRPC)
/// client ◀── messages, then trailers as a 0x80 frame (base64 per chunk for -text) ◀── transform ◀── upstream
/// ```
///
/// Calls in plain gRPC pass untouched. The call's deadline, size limits and statuses are the
/// gRPC path's own (GRPC.swift); a trailers-only answer stays in the head, as the gRPC-Web
/// protocol allows.
final class GRPCWebFilter: HTTPFilter, FilterFactory {
    func makeFilter(on eventLoop: any EventLoop) -> any HTTPFilter { self }

    func filterRequest(_ exchange: Exchange) -> FilterOutcome {
        guard exchange.errorFormat.isGRPCWeb, let type = exchange.request.headerFields[.contentType] else { return .continue }
        let text = exchange.errorFormat == .grpcWebText
        // "application/grpc-web-text+proto" → "application/grpc+proto": the suffix is the codec.
        let prefix = text ? "application/grpc-web-text" : "application/grpc-web"
        exchange.request.headerFields[.contentType] = "application/grpc" + type.dropFirst(prefix.utf8.count)
        exchange.request.headerFields[.te] = "trailers"
        if text { exchange.decodeRequestBody(with: GRPCWebTextDecoder()) }
        return .continue
    }

    func filterResponseHead(_ response: inout HTTPResponse, exchange: Exchange) {
        guard exchange.errorFormat.isGRPCWeb, let type = response.headerFields[.contentType],
            GRPC.isGRPC(type)
        else { return }
        let web = exchange.errorFormat == .grpcWebText ? "application/grpc-web-text" : "application/grpc-web"
        response.headerFields[.contentType] = web + type.dropFirst("application/grpc".utf8.count)
    }

    func makeResponseBodyTransform(for response: inout HTTPResponse, exchange: Exchange) -> (any ResponseBodyTransform)? {
        guard exchange.errorFormat.isGRPCWeb else { return nil }
        let text = exchange.errorFormat == .grpcWebText
        // Base64 changes the length; the trailer frame adds to it.
        response.headerFields[.contentLength] = nil
        return GRPCWebResponse(text: text, allocator: exchange.allocator)
    }
}

/// Messages pass as they are (binary) or in base64, each chunk padded on its own so a
/// streamed message is decodable the moment it arrives; the trailers become the last frame:
/// flag 0x80, a 4-byte length, then `name: value\r\n` lines.
final class GRPCWebResponse: ResponseBodyTransform {
    private let text: Bool
    private let allocator: ByteBufferAllocator

    init(text: Bool, allocator: ByteBufferAllocator) {
        self.text = text
        self.allocator = allocator
    }

    func transform(_ chunk: ByteBuffer) throws -> ByteBuffer? {
        text ? encoded(chunk) : chunk
    }

    func finish(trailers: inout HTTPFields?) throws -> ByteBuffer? {
        guard let fields = trailers, !fields.isEmpty else { return nil }
        trailers = nil
        var block = allocator.buffer(capacity: 64)
        for field in fields {
            block.writeString(field.name.canonicalName)
            block.writeStaticString(": ")
            block.writeString(field.value)
            block.writeStaticString("\r\n")
        }
        var frame = allocator.buffer(capacity: 5 + block.readableBytes)
        frame.writeInteger(UInt8(0x80))
        frame.writeInteger(UInt32(block.readableBytes))
        frame.writeBuffer(&block)
        return text ? encoded(frame) : frame
    }

    private func encoded(_ chunk: ByteBuffer) -> ByteBuffer {
        var out = allocator.buffer(capacity: (chunk.readableBytes + 2) / 3 * 4)
        chunk.withUnsafeReadableBytes { Base64.encode($0, to: &out) }
        return out
    }
}

/// `application/grpc-web-text` request bodies: base64 in pieces of any size, decoded in whole
/// 4-character groups (a group may carry padding, so padded pieces may follow one another).
final class GRPCWebTextDecoder: RequestBodyTransform {
    private var group: [UInt8] = []
    private var out: [UInt8] = []

    init() {
        group.reserveCapacity(4)
    }

    func transform(_ chunk: ByteBuffer) throws(GatewayError) -> ByteBuffer? {
        out.removeAll(keepingCapacity: true)
        out.reserveCapacity(chunk.readableBytes * 3 / 4 + 3)
        var failed = false
        chunk.withUnsafeReadableBytes { bytes in
            for byte in bytes {
                // Line breaks are tolerated (some encoders wrap); anything else must be base64.
                if byte == 0x0A || byte == 0x0D { continue }
                group.append(byte)
                if group.count == 4 {
                    guard decodeGroup() else {
                        failed = true
                        return
                    }
                }
            }
        }
        if failed { throw Self.invalid }
        return out.isEmpty ? nil : ByteBuffer(bytes: out)
    }

    func finish() throws(GatewayError) -> ByteBuffer? {
        guard group.isEmpty else { throw Self.invalid }
        return nil
    }

    private func decodeGroup() -> Bool {
        defer { group.removeAll(keepingCapacity: true) }
        let pad = UInt8(ascii: "=")
        let padding = group[3] == pad ? (group[2] == pad ? 2 : 1) : 0
        var value: UInt32 = 0
        for index in 0..<4 {
            let digit = index >= 4 - padding ? 0 : Base64.values[Int(group[index])]
            guard digit != 0xFF else { return false }
            value = value << 6 | UInt32(digit)
        }
        out.append(UInt8(value >> 16))
        if padding < 2 { out.append(UInt8(value >> 8 & 0xFF)) }
        if padding < 1 { out.append(UInt8(value & 0xFF)) }
        return true
    }

    static let invalid = GatewayError.badRequest("the application/grpc-web-text body is not valid base64")
}
