import CausewayConfig
import CausewayHTTP
import CausewayUpstream
import HTTPTypes
import NIOCore

/// `sse.fanout`: every client of one event-stream URL (with the same forwarded identity) on
/// this loop shares one upstream subscription. Each event is parsed once and the same bytes
/// are written to every client.
///
/// ```
/// client ─GET─▶ hub ─(key: path, Authorization, Cookie, consumer)─▶ subscription ─▶ upstream
/// client ◀─events── subscription ◀─events── EventSplitter ◀─bytes── upstream
/// ```
/// One hub per route per loop (thread per core, no locks): a URL has at most one upstream
/// subscription per event loop.
final class FanoutHub {
    private let route: CompiledRoute
    private let cluster: UpstreamCluster
    private let config: SSEConfig
    private let deadlines: UpstreamDeadlines?
    private var subscriptions: [String: FanoutSubscription] = [:]

    /// `deadlines`: the route's timeout, which bounds a subscription until its head arrives.
    init(route: CompiledRoute, cluster: UpstreamCluster, config: SSEConfig, deadlines: UpstreamDeadlines?) {
        self.route = route
        self.cluster = cluster
        self.config = config
        self.deadlines = deadlines
    }

    var subscriptionCount: Int { subscriptions.count }

    func join(_ exchange: Exchange) {
        let request = ProxyTask.upstreamRequest(for: exchange, route: route)
        let key = Self.key(request, consumer: exchange.attributes.consumer)
        let subscription: FanoutSubscription
        if let existing = subscriptions[key] {
            subscription = existing
        } else {
            subscription = FanoutSubscription(key: key, request: request, cluster: cluster, config: config,
                                              deadlines: deadlines, eventLoop: exchange.eventLoop, hub: self)
            subscriptions[key] = subscription
            subscription.add(FanoutClient(exchange: exchange, subscription: subscription))
            subscription.start()
            return
        }
        subscription.add(FanoutClient(exchange: exchange, subscription: subscription))
    }

    func ended(_ subscription: FanoutSubscription) {
        if subscriptions[subscription.key] === subscription { subscriptions[subscription.key] = nil }
    }

    /// The upstream URL and what identifies the caller to it: clients that differ in any of
    /// these never share events.
    private static func key(_ request: HTTPRequest, consumer: String?) -> String {
        let cookie = request.headerFields[values: .cookie].joined(separator: "; ")
        return [request.path ?? "/", request.headerFields[.authorization] ?? "", cookie, consumer ?? ""].joined(separator: "\u{0}")
    }
}

/// One upstream event stream and the clients it feeds.
final class FanoutSubscription {
    let key: String
    private var request: HTTPRequest
    private let cluster: UpstreamCluster
    private let config: SSEConfig
    private let deadlines: UpstreamDeadlines?
    private let eventLoop: any EventLoop
    private unowned let hub: FanoutHub
    private var clients: [FanoutClient] = []
    private var upstream: UpstreamExchange?
    /// The head every client gets (from the upstream's first answer).
    private var head: HTTPResponse?
    private var splitter = EventSplitter()
    private var replay: CircularBuffer<EventSplitter.Event>
    private var lastEventID: String?
    private var lastUpstreamBytes = NIODeadline.now()
    private var lastSent = NIODeadline.now()
    private var timer: Scheduled<Void>?
    private var reconnectDelay = FanoutSubscription.firstDelay
    private var ended = false

    static let firstDelay = TimeAmount.milliseconds(100)
    static let maxDelay = TimeAmount.seconds(10)
    /// A client this far behind (bytes written while its connection was full) is dropped.
    static let maxBacklog = 1 << 20

    init(key: String, request: HTTPRequest, cluster: UpstreamCluster, config: SSEConfig, deadlines: UpstreamDeadlines?,
         eventLoop: any EventLoop, hub: FanoutHub) {
        self.deadlines = deadlines
        self.key = key
        self.request = request
        // The subscription starts live; a client's Last-Event-ID is answered from `replay`.
        self.request.headerFields[Self.lastEventIDField] = nil
        self.cluster = cluster
        self.config = config
        self.eventLoop = eventLoop
        self.hub = hub
        self.replay = CircularBuffer(initialCapacity: max(config.replay, 1))
    }

    static let lastEventIDField = HTTPField.Name("last-event-id")!
    var clientCount: Int { clients.count }

    func start() {
        let upstream = UpstreamExchange(cluster: cluster, request: request, body: .none, eventLoop: eventLoop, deadlines: deadlines,
                                        timeoutMessage: "upstream \"\(cluster.name)\" did not answer the event-stream subscription within the route timeout",
                                        delegate: self)
        self.upstream = upstream
        upstream.start()
    }

    func add(_ client: FanoutClient) {
        client.index = clients.count
        clients.append(client)
        guard let head else { return }  // it gets the head when the upstream answers
        client.start(head)
        if let wanted = client.lastEventID, let position = replay.lastIndex(where: { $0.id == wanted }) {
            for event in replay[replay.index(after: position)...] { client.send(event.bytes) }
        }
        client.flush()
    }

    func remove(_ client: FanoutClient) {
        guard let index = client.index, index < clients.count, clients[index] === client else { return }
        client.index = nil
        let last = clients.removeLast()
        if index < clients.count {
            clients[index] = last
            last.index = index
        }
        if clients.isEmpty { end() }
    }

    /// No clients left, or nothing more to give them: the upstream goes, the hub forgets this.
    private func end() {
        guard !ended else { return }
        ended = true
        timer?.cancel()
        timer = nil
        upstream?.cancel()
        upstream = nil
        hub.ended(self)
        let clients = self.clients
        self.clients = []
        for client in clients {
            client.index = nil
            client.finish()
        }
    }

    // MARK: Events

    private func deliver(_ events: [EventSplitter.Event]) {
        for event in events {
            if !event.isComment {
                if let id = event.id { lastEventID = id }
                if config.replay > 0 {
                    if replay.count == config.replay { replay.removeFirst() }
                    replay.append(event)
                }
            }
            // Backwards: a dropped client is swapped out of its slot without skipping another.
            var index = clients.count - 1
            while index >= 0 {
                clients[index].send(event.bytes)
                index -= 1
            }
        }
    }

    private func flushClients() {
        for client in clients { client.flush() }
    }

    // MARK: Heartbeat, idle, reconnect

    private func armTimer() {
        timer?.cancel()
        let beat = config.heartbeat.map { lastSent + TimeAmount($0) }
        let idle = config.idleTimeout.map { lastUpstreamBytes + TimeAmount($0) }
        guard let next = [beat, idle].compactMap({ $0 }).min() else { return }
        timer = eventLoop.assumeIsolated().scheduleTask(deadline: next) { [self] in
            timer = nil
            let now = NIODeadline.now()
            if let idle = config.idleTimeout, now >= lastUpstreamBytes + TimeAmount(idle) {
                return end()  // the upstream said nothing for idle_timeout: streams end cleanly
            }
            if let heartbeat = config.heartbeat, now >= lastSent + TimeAmount(heartbeat) {
                lastSent = now
                let comment = ByteBuffer(string: EventStream.heartbeatComment)
                for client in clients { client.send(comment) }
                flushClients()
            }
            armTimer()
        }
    }

    /// The upstream ended or failed after streaming: clients stay, the subscription comes
    /// back with `Last-Event-ID` after a growing delay (with jitter, so many do not stampede).
    private func reconnectLater() {
        upstream = nil
        splitter.reset()
        guard !ended, !clients.isEmpty else { return end() }
        if let lastEventID { request.headerFields[Self.lastEventIDField] = lastEventID }
        let jitter = TimeAmount.nanoseconds(Int64.random(in: 0...max(reconnectDelay.nanoseconds / 5, 1)))
        let delay = reconnectDelay + jitter
        reconnectDelay = min(reconnectDelay * 2, Self.maxDelay)
        eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
            guard !ended else { return }
            start()
        }
    }
}

extension FanoutSubscription: UpstreamExchangeDelegate {
    func upstreamRequestSent() {}

    func upstreamResponseHead(_ response: HTTPResponse) {
        guard !ended else { return }
        let isStream = (200..<300).contains(response.status.code) && EventStream.isEventStream(response.headerFields[.contentType])
        if head == nil {
            guard isStream else {
                // The first answer is not an event stream: every waiting client hears it.
                upstream?.cancel()
                upstream = nil
                fail(GatewayError(status: response.status.code >= 400 ? response.status : .badGateway, code: "fanout_refused",
                                  message: "upstream \"\(cluster.name)\" answered \(response.status.code) to the event-stream subscription"))
                return
            }
            var head = response
            HopByHop.strip(&head.headerFields)
            head.headerFields[.contentLength] = nil
            self.head = head
            for client in clients { client.start(head) }
            flushClients()
        } else if !isStream {
            // A reconnect refused: a 4xx will not get better, so the streams end (clients
            // reconnect and hear it); anything else is tried again.
            upstream?.cancel()
            if (400..<500).contains(response.status.code) { return end() }
            return reconnectLater()
        }
        upstream?.stopTimeout()  // a stream: from here on only the idle timers apply
        reconnectDelay = Self.firstDelay
        lastUpstreamBytes = .now()
        armTimer()
    }

    func upstreamResponseBody(_ chunk: ByteBuffer) {
        guard !ended else { return }
        lastUpstreamBytes = .now()
        do {
            let events = try splitter.feed(chunk)
            if !events.isEmpty {
                lastSent = lastUpstreamBytes
                deliver(events)
            }
        } catch {
            upstream?.cancel()
            reconnectLater()
        }
    }

    func upstreamReadComplete() {
        flushClients()
    }

    func upstreamResponseEnd(_ trailers: HTTPFields?) {
        reconnectLater()
    }

    func upstreamFailed(_ failure: UpstreamFailure, responseStarted: Bool) {
        guard head == nil else { return reconnectLater() }
        upstream = nil
        fail(GatewayError(failure))
    }

    func upstreamWritabilityChanged(_ writable: Bool) {}

    /// No subscription could be made: the waiting clients get the error.
    private func fail(_ error: GatewayError) {
        ended = true
        hub.ended(self)
        let clients = self.clients
        self.clients = []
        for client in clients {
            client.index = nil
            client.fail(error)
        }
    }
}

/// One client of a subscription: its exchange, and how far behind it is.
final class FanoutClient: ResponseProducer {
    private let exchange: Exchange
    private unowned let subscription: FanoutSubscription
    let lastEventID: String?
    var index: Int?
    private var started = false
    private var done = false
    /// Bytes written since its connection stopped taking them.
    private var backlog = 0

    init(exchange: Exchange, subscription: FanoutSubscription) {
        self.exchange = exchange
        self.subscription = subscription
        self.lastEventID = exchange.request.headerFields[FanoutSubscription.lastEventIDField]
        exchange.responseProducer = self
    }

    func start(_ head: HTTPResponse) {
        guard !started, !done else { return }
        started = true
        exchange.sendResponseHead(head)
    }

    func send(_ bytes: ByteBuffer) {
        guard started, !done else { return }
        exchange.sendResponseBody(bytes)
        guard !exchange.isDownstreamWritable else { return }
        backlog += bytes.readableBytes
        if backlog > FanoutSubscription.maxBacklog {
            // Too slow: it would hold memory for everyone's events. It hears why, then its
            // stream ends; EventSource reconnects with Last-Event-ID.
            exchange.sendResponseBody(ByteBuffer(string: ": dropped: this client fell more than 1 MiB behind the stream\n\n"))
            subscription.remove(self)
            finish()
        }
    }

    func flush() {
        if started && !done { exchange.flushResponse() }
    }

    /// The stream ends cleanly (between two events).
    func finish() {
        guard !done else { return }
        done = true
        exchange.responseProducer = nil
        if started { exchange.sendResponseEnd() } else { exchange.fail(.upstreamUnavailable("the event stream ended")) }
    }

    func fail(_ error: GatewayError) {
        guard !done else { return }
        done = true
        exchange.responseProducer = nil
        exchange.fail(error)
    }

    // MARK: ResponseProducer

    func downstreamWritabilityChanged(_ writable: Bool) {
        if writable { backlog = 0 }
    }

    /// The client went away.
    func cancel() {
        guard !done else { return }
        done = true
        subscription.remove(self)
    }
}

@available(*, unavailable)
extension FanoutHub: Sendable {}

@available(*, unavailable)
extension FanoutSubscription: Sendable {}

@available(*, unavailable)
extension FanoutClient: Sendable {}
