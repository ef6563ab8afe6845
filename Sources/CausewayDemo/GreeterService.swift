import CausewayHTTP
import CausewayTranscoding
import Foundation
import HTTPTypes
import NIOCore
import NIOPosix

/// The demo's gRPC upstream on :3005 (h2c): `demo.v1.Greeter` from protos/demo/v1/demo.proto,
/// served by the gateway's own HTTP/2 stack on a shared loop. Through the gateway it answers
/// gRPC, gRPC-Web and REST/JSON (config/demo.yaml).
public enum GreeterService {
    public static func start(on loop: any EventLoop, host: String = "127.0.0.1", port: Int = 3005) async throws -> any Channel {
        try await ServerBootstrap(group: loop)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        HTTP2ServerHandler(handler: GreeterHandler(), configuration: .init()))
                }
            }
            .bind(host: host, port: port)
            .get()
    }
}

/// One call: the request message is read whole (both methods take one), then answered.
private final class GreeterHandler: ExchangeHandler {
    func handle(_ exchange: Exchange) {
        let method = exchange.request.path ?? ""
        guard method == "/demo.v1.Greeter/SayHello" || method == "/demo.v1.Greeter/StreamGreetings" else {
            return exchange.respond(Self.head(), body: nil, status: 12, message: "no method \(method)")
        }
        exchange.attachRequestBodyConsumer(GreeterCall(exchange: exchange, streaming: method.hasSuffix("StreamGreetings")))
    }

    static func head() -> HTTPResponse {
        var response = HTTPResponse(status: .ok)
        response.headerFields[.contentType] = "application/grpc"
        return response
    }
}

private final class GreeterCall: RequestBodyConsumer, ResponseProducer {
    let exchange: Exchange
    let streaming: Bool
    var body = ByteBuffer()
    var timer: Scheduled<Void>?

    init(exchange: Exchange, streaming: Bool) {
        self.exchange = exchange
        self.streaming = streaming
    }

    func requestBodyPart(_ chunk: ByteBuffer) {
        var chunk = chunk
        guard body.readableBytes + chunk.readableBytes <= 64 << 10 else { return }
        body.writeBuffer(&chunk)
    }

    func requestBodyEnd(_ trailers: HTTPFields?) {
        guard body.readableBytes >= 5, body.getInteger(at: body.readerIndex, as: UInt8.self) == 0,
            let length = body.getInteger(at: body.readerIndex + 1, as: UInt32.self), body.readableBytes == 5 + Int(length),
            let request = try? HelloRequest(Array(body.readableBytesView.dropFirst(5)))
        else {
            return exchange.respond(GreeterHandler.head(), body: nil, status: 3, message: "expected one demo.v1.HelloRequest")
        }
        let name = request.name.isEmpty ? "world" : request.name
        guard streaming else {
            exchange.sendResponseHead(GreeterHandler.head())
            exchange.sendResponseBody(Self.framed(HelloReply(message: "Hello, \(name)!", sequence: 1)))
            return exchange.sendResponseEnd(Self.status(0, ""))
        }
        // One greeting every 500 ms, `count` of them (3 by default, at most 100).
        let count = request.count <= 0 ? 3 : min(Int(request.count), 100)
        exchange.responseProducer = self
        exchange.sendResponseHead(GreeterHandler.head())
        sendGreeting(1, of: count, name: name)
    }

    private func sendGreeting(_ index: Int, of count: Int, name: String) {
        exchange.sendResponseBody(Self.framed(HelloReply(message: "Hello, \(name)! (\(index) of \(count))", sequence: Int64(index))))
        exchange.flushResponse()
        guard index < count else { return exchange.sendResponseEnd(Self.status(0, "")) }
        timer = exchange.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(500)) { [self] in
            sendGreeting(index + 1, of: count, name: name)
        }
    }

    func downstreamWritabilityChanged(_ writable: Bool) {}

    func cancel() {
        timer?.cancel()
    }

    static func framed(_ reply: HelloReply) -> ByteBuffer {
        let bytes = reply.encoded()
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt8(0))
        buffer.writeInteger(UInt32(bytes.count))
        buffer.writeBytes(bytes)
        return buffer
    }

    static func status(_ code: Int, _ message: String) -> HTTPFields {
        var fields = HTTPFields()
        fields[HTTPField.Name("grpc-status")!] = String(code)
        fields[HTTPField.Name("grpc-message")!] = message
        return fields
    }
}

extension Exchange {
    /// A trailers-only gRPC answer.
    fileprivate func respond(_ head: HTTPResponse, body: ByteBuffer?, status: Int, message: String) {
        var head = head
        head.headerFields.append(contentsOf: GreeterCall.status(status, message))
        respond(head, body: body)
    }
}

/// demo.v1.HelloRequest: name = 1, count = 2.
private struct HelloRequest {
    var name = ""
    var count: Int32 = 0

    init(_ bytes: [UInt8]) throws(ProtoError) {
        var reader = ProtoReader(bytes)
        while !reader.isAtEnd {
            let (field, wire) = try reader.tag()
            switch (field, wire) {
            case (1, .lengthDelimited): name = String(decoding: bytes[try reader.lengthDelimited()], as: UTF8.self)
            case (2, .varint): count = Int32(truncatingIfNeeded: try reader.varint())
            default: try reader.skip(wire)
            }
        }
    }
}

/// demo.v1.HelloReply: message = 1, sent_at = 2 (google.protobuf.Timestamp), sequence = 3.
private struct HelloReply {
    var message: String
    var sequence: Int64

    func encoded() -> [UInt8] {
        var writer = ProtoWriter()
        writer.string(1, message)
        let now = Date().timeIntervalSince1970
        var timestamp = ProtoWriter()
        timestamp.tag(1, .varint)
        timestamp.varint(UInt64(now))
        timestamp.tag(2, .varint)
        timestamp.varint(UInt64((now - now.rounded(.down)) * 1_000_000) * 1000)
        writer.lengthDelimited(2, timestamp.bytes)
        writer.tag(3, .varint)
        writer.varint(UInt64(bitPattern: sequence))
        return writer.bytes
    }
}
