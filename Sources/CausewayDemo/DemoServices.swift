import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

import Foundation

/// The demo's upstreams: a users service and an orders service with small JSON REST APIs,
/// served from this process so `causeway demo` needs nothing else running.
///
/// users:  GET /users[?limit=N], GET /users/{id}, POST /users {"name","email"}
/// orders: GET /orders[?userId=ID | ?userIds=1,2], GET /orders/{id}, POST /orders {"userId","item","total"}
public final class DemoServices: Sendable {
    public let usersChannel: any Channel
    public let ordersChannel: any Channel
    /// Requests each service has received, so a test can prove how many calls a GraphQL
    /// operation cost.
    public let counts: RequestCounts

    public final class RequestCounts: Sendable {
        let users = Atomic<Int>(0)
        let orders = Atomic<Int>(0)

        public var usersRequests: Int { users.load(ordering: .relaxed) }
        public var ordersRequests: Int { orders.load(ordering: .relaxed) }
        public var total: Int { usersRequests + ordersRequests }
    }

    private init(users: any Channel, orders: any Channel, counts: RequestCounts) {
        usersChannel = users
        ordersChannel = orders
        self.counts = counts
    }

    /// Both services share one event loop, which owns their data: no locks needed.
    public static func start(on loop: any EventLoop, host: String = "127.0.0.1", usersPort: Int = 3002,
                             ordersPort: Int = 3003) async throws -> DemoServices {
        let store = try await loop.submit { NIOLoopBound(DemoStore(), eventLoop: loop) }.get()
        let counts = RequestCounts()
        let users = try await bind(loop: loop, host: host, port: usersPort, store: store, service: .users, counts: counts)
        let orders = try await bind(loop: loop, host: host, port: ordersPort, store: store, service: .orders, counts: counts)
        return DemoServices(users: users, orders: orders, counts: counts)
    }

    public func stop() async {
        try? await usersChannel.close()
        try? await ordersChannel.close()
    }

    private static func bind(loop: any EventLoop, host: String, port: Int, store: NIOLoopBound<DemoStore>,
                             service: DemoService, counts: RequestCounts) async throws -> any Channel {
        try await ServerBootstrap(group: loop)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(DemoHandler(store: store.value, service: service, counts: counts))
                }
            }
            .bind(host: host, port: port)
            .get()
    }
}

enum DemoService {
    case users, orders
}

final class DemoStore {
    var users: [[String: Any]] = [
        ["id": "1", "name": "Ada Lovelace", "email": "ada@example.com"],
        ["id": "2", "name": "Alan Turing", "email": "alan@example.com"],
        ["id": "3", "name": "Grace Hopper", "email": "grace@example.com"],
        ["id": "4", "name": "Edsger Dijkstra", "email": "edsger@example.com"],
        ["id": "5", "name": "Barbara Liskov", "email": "barbara@example.com"],
    ]
    var orders: [[String: Any]] = [
        ["id": "101", "userId": "1", "item": "Analytical Engine manual", "total": 42.5],
        ["id": "102", "userId": "1", "item": "Punched cards (box)", "total": 12.0],
        ["id": "103", "userId": "2", "item": "Enigma rotor", "total": 99.9],
        ["id": "104", "userId": "3", "item": "COBOL reference", "total": 35.0],
        ["id": "105", "userId": "5", "item": "CLU compiler", "total": 20.0],
    ]

    func handle(_ service: DemoService, method: HTTPMethod, path: String, query: [String: String],
                body: [String: Any]?) -> (HTTPResponseStatus, Any) {
        let segments = path.split(separator: "/").map(String.init)
        switch (service, method, segments.count) {
        case (.users, .GET, 1) where segments[0] == "users":
            let limit = query["limit"].flatMap(Int.init) ?? users.count
            return (.ok, Array(users.prefix(max(0, limit))))
        case (.users, .GET, 2) where segments[0] == "users":
            guard let user = users.first(where: { $0["id"] as? String == segments[1] }) else {
                return notFound("user \(segments[1]) not found")
            }
            return (.ok, user)
        case (.users, .POST, 1) where segments[0] == "users":
            guard let name = body?["name"] as? String else { return badRequest("expected {\"name\": ..., \"email\": ...}") }
            let user: [String: Any] = ["id": String(users.count + 1), "name": name, "email": body?["email"] as? String ?? ""]
            users.append(user)
            return (.created, user)
        case (.orders, .GET, 1) where segments[0] == "orders":
            if let ids = query["userIds"] {
                let wanted = Set(ids.split(separator: ",").map(String.init))
                return (.ok, orders.filter { wanted.contains($0["userId"] as? String ?? "") })
            }
            if let id = query["userId"] { return (.ok, orders.filter { $0["userId"] as? String == id }) }
            return (.ok, orders)
        case (.orders, .GET, 2) where segments[0] == "orders":
            guard let order = orders.first(where: { $0["id"] as? String == segments[1] }) else {
                return notFound("order \(segments[1]) not found")
            }
            return (.ok, order)
        case (.orders, .POST, 1) where segments[0] == "orders":
            guard let userId = body?["userId"] as? String, let item = body?["item"] as? String else {
                return badRequest("expected {\"userId\": ..., \"item\": ..., \"total\": ...}")
            }
            let order: [String: Any] = ["id": String(101 + orders.count), "userId": userId, "item": item,
                                        "total": body?["total"] as? Double ?? 0]
            orders.append(order)
            return (.created, order)
        default:
            return notFound("no such resource: \(method) \(path)")
        }
    }

    private func notFound(_ message: String) -> (HTTPResponseStatus, Any) {
        (.notFound, ["error": ["status": 404, "message": message]])
    }

    private func badRequest(_ message: String) -> (HTTPResponseStatus, Any) {
        (.badRequest, ["error": ["status": 400, "message": message]])
    }
}

final class DemoHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let store: DemoStore
    private let service: DemoService
    private let counts: DemoServices.RequestCounts
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()

    init(store: DemoStore, service: DemoService, counts: DemoServices.RequestCounts) {
        self.store = store
        self.service = service
        self.counts = counts
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body.clear()
            if service == .users { counts.users.add(1, ordering: .relaxed) } else { counts.orders.add(1, ordering: .relaxed) }
        case .body(var chunk):
            body.writeBuffer(&chunk)
        case .end:
            guard let head else { return }
            respond(to: head, context: context)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let parts = head.uri.split(separator: "?", maxSplits: 1)
        let path = parts.first.map(String.init) ?? "/"
        var query: [String: String] = [:]
        if parts.count > 1 {
            for pair in parts[1].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1)
                query[String(kv[0])] = kv.count > 1 ? String(kv[1]).removingPercentEncoding ?? String(kv[1]) : ""
            }
        }
        let json = body.readableBytes > 0
            ? (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any] : nil
        let (status, value) = store.handle(service, method: head.method, path: path, query: query, body: json)
        let data = (try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys])) ?? Data("{}".utf8)
        var headers = HTTPHeaders([("content-type", "application/json"), ("content-length", String(data.count))])
        if !head.isKeepAlive { headers.add(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))),
                      promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: data)))), promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !head.isKeepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}

@available(*, unavailable)
extension DemoHandler: Sendable {}
