import NIOCore
import NIOPosix

/// A small Redis client for one event loop: `poolSize` connections, commands pipelined on them
/// (replies come back in order, each to its waiter), `AUTH` on connect, scripts run by
/// `EVALSHA` with `SCRIPT LOAD` when the server does not know them yet, a timeout per command,
/// and reconnection with backoff. Everything runs on its loop: no locks.
///
/// A command on a connection that is down fails at once (so callers decide within their
/// timeout instead of queueing behind a dead server); the connection is retried in the
/// background, 50 ms after the first failure, doubling up to 2 s.
public final class RedisClient {
    public struct Configuration: Sendable {
        public var address: SocketAddress
        public var password: String?
        public var poolSize: Int
        public var timeout: TimeAmount

        public init(address: SocketAddress, password: String?, poolSize: Int, timeout: TimeAmount) {
            self.address = address
            self.password = password
            self.poolSize = poolSize
            self.timeout = timeout
        }
    }

    public enum Failure: Error, Sendable, CustomStringConvertible {
        case unavailable(String)
        case timeout
        case server(String)

        public var description: String {
            switch self {
            case .unavailable(let why): "Redis is unavailable: \(why)"
            case .timeout: "Redis did not answer in time"
            case .server(let message): "Redis answered an error: \(message)"
            }
        }
    }

    public let eventLoop: any EventLoop
    let configuration: Configuration
    private var connections: [RedisConnection] = []
    private var next = 0
    /// sha1 by script text, learned from SCRIPT LOAD.
    var scriptSHAs: [String: String] = [:]

    public init(configuration: Configuration, eventLoop: any EventLoop) {
        self.configuration = configuration
        self.eventLoop = eventLoop
        connections = (0..<max(1, configuration.poolSize)).map { _ in RedisConnection(client: self) }
    }

    /// Opens the connections now, so the first commands do not find them down.
    public func start() {
        eventLoop.preconditionInEventLoop()
        for connection in connections { connection.connectIfNeeded() }
    }

    /// Sends `arguments` on the next connection; the future fails with `Failure`.
    public func send(_ arguments: [String]) -> EventLoopFuture<RESPValue> {
        eventLoop.preconditionInEventLoop()
        let connection = connections[next % connections.count]
        next &+= 1
        return connection.send(arguments)
    }

    /// Runs a Lua script by its SHA, loading it first if the server lacks it (NOSCRIPT).
    public func evalScript(_ script: String, keys: [String], arguments: [String]) -> EventLoopFuture<RESPValue> {
        let tail = [String(keys.count)] + keys + arguments
        if let sha = scriptSHAs[script] {
            return send(["EVALSHA", sha] + tail).flatMapError { [self] error in
                if case Failure.server(let message) = error, message.hasPrefix("NOSCRIPT") {
                    scriptSHAs[script] = nil
                    return evalScript(script, keys: keys, arguments: arguments)
                }
                return eventLoop.makeFailedFuture(error)
            }
        }
        return send(["SCRIPT", "LOAD", script]).flatMap { [self] reply in
            guard let sha = reply.text else { return eventLoop.makeFailedFuture(Failure.server("SCRIPT LOAD answered \(reply)")) }
            scriptSHAs[script] = sha
            return send(["EVALSHA", sha] + tail)
        }
    }

    /// Closes every connection; pending commands fail.
    public func close() {
        for connection in connections { connection.shutdown() }
    }
}

/// One connection: its channel (when up), the waiters for replies in order, and reconnection.
final class RedisConnection {
    private unowned let client: RedisClient
    private var channel: (any Channel)?
    private var connecting = false
    private var waiters: [(promise: EventLoopPromise<RESPValue>, timer: Scheduled<Void>?)] = []
    private var head = 0
    private var backoff = TimeAmount.milliseconds(50)
    private var retry: Scheduled<Void>?
    private var closed = false
    private var lastError = "not connected yet"

    init(client: RedisClient) {
        self.client = client
    }

    private var loop: any EventLoop { client.eventLoop }

    func send(_ arguments: [String]) -> EventLoopFuture<RESPValue> {
        guard let channel, channel.isActive else {
            connectIfNeeded()
            return loop.makeFailedFuture(RedisClient.Failure.unavailable(lastError))
        }
        return write(arguments, on: channel)
    }

    private func write(_ arguments: [String], on channel: any Channel) -> EventLoopFuture<RESPValue> {
        let promise = loop.makePromise(of: RESPValue.self)
        var buffer = channel.allocator.buffer(capacity: 64)
        RESPCommand.encode(arguments, into: &buffer)
        // A reply that does not come in time breaks the pairing of replies to waiters: the
        // connection is dropped and opened again.
        let timer = loop.assumeIsolated().scheduleTask(in: client.configuration.timeout) { [self] in
            drop("a command timed out", failure: .timeout)
        }
        waiters.append((promise, timer))
        channel.writeAndFlush(buffer, promise: nil)
        return promise.futureResult
    }

    func received(_ value: RESPValue) {
        guard head < waiters.count else { return drop("a reply nobody asked for", failure: .unavailable("protocol error")) }
        let (promise, timer) = waiters[head]
        head += 1
        if head > 64 && head * 2 > waiters.count {
            waiters.removeFirst(head)
            head = 0
        }
        timer?.cancel()
        if case .error(let message) = value {
            promise.fail(RedisClient.Failure.server(message))
        } else {
            promise.succeed(value)
        }
    }

    /// Fails every waiter and closes; reconnection follows.
    func drop(_ why: String, failure: RedisClient.Failure) {
        lastError = why
        let pending = waiters[head...]
        waiters = []
        head = 0
        for (promise, timer) in pending {
            timer?.cancel()
            promise.fail(failure)
        }
        if let channel {
            self.channel = nil
            channel.close(promise: nil)
        }
        scheduleReconnect()
    }

    func connectIfNeeded() {
        guard !connecting, channel == nil, retry == nil, !closed else { return }
        connecting = true
        let configuration = client.configuration
        ClientBootstrap(group: loop)
            .connectTimeout(configuration.timeout * 10)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RedisHandler(connection: NIOLoopBound(self, eventLoop: channel.eventLoop)))
                }
            }
            .connect(to: configuration.address)
            .assumeIsolated()
            .whenComplete { [self] result in
                connecting = false
                switch result {
                case .success(let channel):
                    if closed {
                        channel.close(promise: nil)
                        return
                    }
                    self.channel = channel
                    backoff = .milliseconds(50)
                    client.scriptSHAs = [:]  // a restarted server has forgotten them
                    if let password = configuration.password {
                        write(["AUTH", password], on: channel).whenFailure { [self] error in drop("AUTH failed: \(error)", failure: .unavailable("AUTH failed")) }
                    }
                case .failure(let error):
                    lastError = "cannot connect to \(configuration.address): \(error)"
                    scheduleReconnect()
                }
            }
    }

    private func scheduleReconnect() {
        guard retry == nil, !closed else { return }
        let delay = backoff
        backoff = min(backoff * 2, .seconds(2))
        retry = loop.assumeIsolated().scheduleTask(in: delay) { [self] in
            retry = nil
            connectIfNeeded()
        }
    }

    func closedByPeer() {
        guard channel != nil else { return }
        drop("the connection closed", failure: .unavailable("the connection closed"))
    }

    func shutdown() {
        closed = true
        retry?.cancel()
        drop("shut down", failure: .unavailable("shut down"))
        retry?.cancel()
        retry = nil
    }
}

/// Decodes replies for its connection.
final class RedisHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let connection: NIOLoopBound<RedisConnection>
    private var buffer = ByteBuffer()
    private let parser = RESPParser()

    init(connection: NIOLoopBound<RedisConnection>) {
        self.connection = connection
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var chunk = unwrapInboundIn(data)
        buffer.writeBuffer(&chunk)
        do {
            while let value = try parser.parse(&buffer) {
                connection.value.received(value)
            }
            buffer.discardReadBytes()
        } catch {
            connection.value.drop("malformed reply: \(error.description)", failure: .unavailable("malformed reply"))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.value.closedByPeer()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
