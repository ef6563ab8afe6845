import CausewayConfig
import CausewayHTTP
import CausewayUpstream
import HTTPTypes
import NIOConcurrencyHelpers
import NIOCore

/// `sse.fanout`: every client of one event-stream URL (with the same forwarded identity)
/// shares one upstream subscription, whichever event loop its connection is on. Each event is
/// parsed once; the same bytes are written to every client.
///
/// ```
///                      ┌─ loop O: FanoutSubscription ◀─events─ upstream
/// client ─GET─▶ hub ──┤            │ clients on O
///   (key: path,        │            └─ one hop per event per loop ─▶ loop L: FanoutBranch ─▶ clients on L
///    identity)         └─ FanoutGroup: which loop owns which key (a lock, taken only to join or end)
/// ```
/// The loop of a key's first client owns its subscription (upstream request, parsing, replay
/// buffer). Another loop with clients for the key has a branch: the owner sends it each batch
/// of events with one `execute`, and the branch writes them to its clients. Nothing on the
/// per-event path takes a lock; per client, nothing leaves its own loop.
final class FanoutHub {
    enum Entry {
        case owner(FanoutSubscription)
        case branch(FanoutBranch)
    }

    let route: CompiledRoute
    let cluster: UpstreamCluster
    let config: SSEConfig
    let deadlines: UpstreamDeadlines?
    let eventLoop: any EventLoop
    private let group: FanoutGroup
    private var entries: [String: Entry] = [:]

    /// `deadlines`: the route's timeout, which bounds a subscription until its head arrives.
    init(route: CompiledRoute, cluster: UpstreamCluster, config: SSEConfig, group: FanoutGroup, deadlines: UpstreamDeadlines?,
         eventLoop: any EventLoop) {
        self.route = route
        self.cluster = cluster
        self.config = config
        self.group = group
        self.deadlines = deadlines
        self.eventLoop = eventLoop
    }

    func join(_ exchange: Exchange) {
        let request = ProxyTask.upstreamRequest(for: exchange, route: route)
        let key = Self.key(request, consumer: exchange.attributes.consumer)
        let client = FanoutClient(exchange: exchange)
        switch entries[key] {
        case .owner(let subscription):
            subscription.add(client)
        case .branch(let branch):
            branch.add(client)
        case nil:
            var created: FanoutSubscription?
            let owner = group.owner(of: key) {
                let subscription = FanoutSubscription(key: key, request: request, hub: self)
                created = subscription
                return FanoutGroup.Owner(subscription, on: eventLoop)
            }
            if let created {
                entries[key] = .owner(created)
                created.add(client)
                created.start()
            } else if let owner {
                let branch = FanoutBranch(key: key, owner: owner, hub: self)
                entries[key] = .branch(branch)
                branch.add(client)
                branch.attach()
            }
        }
    }

    /// A subscription or branch is done: the next client for its key starts anew.
    func ended(_ key: String, _ object: AnyObject) {
        switch entries[key] {
        case .owner(let subscription) where subscription === object: entries[key] = nil
        case .branch(let branch) where branch === object: entries[key] = nil
        default: break
        }
        if object is FanoutSubscription { group.unregister(key, ObjectIdentifier(object)) }
    }

    /// The upstream URL and what identifies the caller to it: clients that differ in any of
    /// these never share events.
    private static func key(_ request: HTTPRequest, consumer: String?) -> String {
        let cookie = request.headerFields[values: .cookie].joined(separator: "; ")
        return [request.path ?? "/", request.headerFields[.authorization] ?? "", cookie, consumer ?? ""].joined(separator: "\u{0}")
    }
}

/// Which loop owns which key's subscription, for one fan-out route of one config generation,
/// shared by every loop. Taken when a loop sees a key for the first time and when a
/// subscription ends; never per event or per client of a known key.
final class FanoutGroup: Sendable {
    struct Owner: Sendable {
        let loop: any EventLoop
        let subscription: NIOLoopBound<FanoutSubscription>
        let id: ObjectIdentifier

        init(_ subscription: FanoutSubscription, on loop: any EventLoop) {
            self.loop = loop
            self.subscription = NIOLoopBound(subscription, eventLoop: loop)
            self.id = ObjectIdentifier(subscription)
        }
    }

    private let owners = NIOLockedValueBox<[String: Owner]>([:])

    /// The owner of `key`; when there is none, `register` makes one and nil is returned.
    func owner(of key: String, orRegister register: () -> Owner) -> Owner? {
        owners.withLockedValue { owners in
            if let owner = owners[key] { return owner }
            owners[key] = register()
            return nil
        }
    }

    func unregister(_ key: String, _ id: ObjectIdentifier) {
        owners.withLockedValue { owners in
            if owners[key]?.id == id { owners[key] = nil }
        }
    }
}

/// A loop's clients of one stream: head, replay and events go to each.
protocol FanoutClientHolder: AnyObject {
    func remove(_ client: FanoutClient)
}

/// The last `capacity` events with content (comments are not kept), to resume by id.
struct ReplayBuffer {
    let capacity: Int
    private(set) var events: CircularBuffer<EventSplitter.Event>

    init(capacity: Int) {
        self.capacity = capacity
        events = CircularBuffer(initialCapacity: max(capacity, 1))
    }

    mutating func record(_ event: EventSplitter.Event) {
        guard capacity > 0, !event.isComment else { return }
        if events.count == capacity { events.removeFirst() }
        events.append(event)
    }

    /// The events after the one with `id`; none when it is not (or no longer) here.
    func events(after id: String?) -> ArraySlice<EventSplitter.Event> {
        guard let id else { return [] }
        let all = Array(events)
        guard let position = all.lastIndex(where: { $0.id == id }) else { return [] }
        return all[(position + 1)...]
    }
}

/// What a subscription and a branch do alike with the clients on their loop.
struct FanoutClients {
    private(set) var list: [FanoutClient] = []
    var isEmpty: Bool { list.isEmpty }

    mutating func add(_ client: FanoutClient) {
        client.index = list.count
        list.append(client)
    }

    /// False when `client` was not here.
    mutating func remove(_ client: FanoutClient) -> Bool {
        guard let index = client.index, index < list.count, list[index] === client else { return false }
        client.index = nil
        let last = list.removeLast()
        if index < list.count {
            list[index] = last
            last.index = index
        }
        return true
    }

    /// The head to every client still waiting for it, with what it missed since its
    /// `Last-Event-ID` from `replay`.
    func start(_ head: HTTPResponse, replay: ReplayBuffer) {
        for client in list { client.begin(head, replay: replay) }
    }

    /// Iterates a copy: a client dropped on the way (too slow) leaves the stored list, and is
    /// marked done, so it takes nothing more.
    func deliver(_ events: [EventSplitter.Event]) {
        let clients = list
        for event in events {
            for client in clients { client.send(event.bytes) }
        }
        for client in clients { client.flush() }
    }

    mutating func takeAll() -> [FanoutClient] {
        let all = list
        list = []
        for client in all { client.index = nil }
        return all
    }
}

/// A branch's hands on the subscription it follows, for hops to the owner's loop.
struct FanoutRemote: Sendable {
    let loop: any EventLoop
    let branch: NIOLoopBound<FanoutBranch>
    let id: ObjectIdentifier
}

/// One upstream event stream, on the loop of its first client, and the loops it feeds.
final class FanoutSubscription: FanoutClientHolder {
    let key: String
    private var request: HTTPRequest
    /// Strong: a reload may drop the loop route while its streams go on.
    private let hub: FanoutHub
    private var config: SSEConfig { hub.config }
    private var eventLoop: any EventLoop { hub.eventLoop }
    private var clients = FanoutClients()
    private var branches: [FanoutRemote] = []
    private var upstream: UpstreamExchange?
    /// The head every client gets (from the upstream's first answer).
    private var head: HTTPResponse?
    private var splitter = EventSplitter()
    private var replay: ReplayBuffer
    private var lastEventID: String?
    private var lastUpstreamBytes = NIODeadline.now()
    private var lastSent = NIODeadline.now()
    private var timer: Scheduled<Void>?
    private var reconnectDelay = FanoutSubscription.firstDelay
    private var ended = false

    static let firstDelay = TimeAmount.milliseconds(100)
    static let maxDelay = TimeAmount.seconds(10)
    static let lastEventIDField = HTTPField.Name("last-event-id")!

    init(key: String, request: HTTPRequest, hub: FanoutHub) {
        self.key = key
        self.request = request
        // The subscription starts live; a client's Last-Event-ID is answered from `replay`.
        self.request.headerFields[Self.lastEventIDField] = nil
        self.hub = hub
        self.replay = ReplayBuffer(capacity: hub.config.replay)
    }

    func start() {
        let upstream = UpstreamExchange(
            cluster: hub.cluster, request: request, body: .none, eventLoop: eventLoop, deadlines: hub.deadlines,
            timeoutMessage: "upstream \"\(hub.cluster.name)\" did not answer the event-stream subscription within the route timeout",
            delegate: self)
        self.upstream = upstream
        upstream.start()
    }

    func add(_ client: FanoutClient) {
        client.holder = self
        clients.add(client)
        if let head { client.begin(head, replay: replay) }
    }

    func remove(_ client: FanoutClient) {
        if clients.remove(client) { endIfUnused() }
    }

    // MARK: Branches (called on this loop, by hops from theirs)

    func attach(_ remote: FanoutRemote) {
        guard !ended else {
            remote.loop.execute { remote.branch.value.ownerEnded(nil) }
            return
        }
        branches.append(remote)
        guard let head else { return }
        let events = Array(replay.events)
        remote.loop.execute { remote.branch.value.sync(head: head, replay: events) }
    }

    func detach(_ id: ObjectIdentifier) {
        branches.removeAll { $0.id == id }
        endIfUnused()
    }

    private func endIfUnused() {
        if clients.isEmpty && branches.isEmpty { end(nil) }
    }

    /// No clients left anywhere, nothing more to give them (idle, a 4xx), or no subscription
    /// could be made (`error`): the upstream goes, clients end or fail, and the hub forgets this.
    private func end(_ error: GatewayError?) {
        guard !ended else { return }
        ended = true
        timer?.cancel()
        timer = nil
        upstream?.cancel()
        upstream = nil
        hub.ended(key, self)
        for client in clients.takeAll() {
            if let error { client.fail(error) } else { client.finish() }
        }
        for remote in branches { remote.loop.execute { remote.branch.value.ownerEnded(error) } }
        branches = []
    }

    // MARK: Events

    private func deliver(_ events: [EventSplitter.Event]) {
        for event in events where !event.isComment {
            if let id = event.id { lastEventID = id }
            replay.record(event)
        }
        clients.deliver(events)
        for remote in branches { remote.loop.execute { remote.branch.value.deliver(events) } }
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
                return end(nil)  // the upstream said nothing for idle_timeout: streams end cleanly
            }
            if let heartbeat = config.heartbeat, now >= lastSent + TimeAmount(heartbeat) {
                lastSent = now
                deliver([EventSplitter.Event(bytes: ByteBuffer(string: EventStream.heartbeatComment), id: nil, isComment: true)])
            }
            armTimer()
        }
    }

    /// The upstream ended or failed after streaming: clients stay, the subscription comes
    /// back with `Last-Event-ID` after a growing delay (with jitter, so many do not stampede).
    private func reconnectLater() {
        upstream = nil
        splitter.reset()
        guard !ended else { return }
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
                return end(GatewayError(status: response.status.code >= 400 ? response.status : .badGateway, code: "fanout_refused",
                                        message: "upstream \"\(hub.cluster.name)\" answered \(response.status.code) to the event-stream subscription"))
            }
            var head = response
            HopByHop.strip(&head.headerFields)
            head.headerFields[.contentLength] = nil
            self.head = head
            clients.start(head, replay: replay)
            for remote in branches { remote.loop.execute { remote.branch.value.sync(head: head, replay: []) } }
        } else if !isStream {
            // A reconnect refused: a 4xx will not get better, so the streams end (clients
            // reconnect and hear it); anything else is tried again.
            upstream?.cancel()
            if (400..<500).contains(response.status.code) { return end(nil) }
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

    func upstreamReadComplete() {}

    func upstreamResponseEnd(_ trailers: HTTPFields?) {
        reconnectLater()
    }

    func upstreamFailed(_ failure: UpstreamFailure, responseStarted: Bool) {
        guard head == nil else { return reconnectLater() }
        upstream = nil
        end(GatewayError(failure))
    }

    func upstreamWritabilityChanged(_ writable: Bool) {}
}

/// The clients of a subscription that lives on another loop: it mirrors the subscription's
/// head and replay buffer, and writes each batch of events the owner hops over to its clients.
final class FanoutBranch: FanoutClientHolder {
    let key: String
    private let owner: FanoutGroup.Owner
    private let hub: FanoutHub
    private var clients = FanoutClients()
    private var head: HTTPResponse?
    private var replay: ReplayBuffer
    private var detached = false

    init(key: String, owner: FanoutGroup.Owner, hub: FanoutHub) {
        self.key = key
        self.owner = owner
        self.hub = hub
        self.replay = ReplayBuffer(capacity: hub.config.replay)
    }

    private var remote: FanoutRemote {
        FanoutRemote(loop: hub.eventLoop, branch: NIOLoopBound(self, eventLoop: hub.eventLoop), id: ObjectIdentifier(self))
    }

    /// Joins the owner (on its loop); it answers with `sync` once it has a head.
    func attach() {
        let remote = self.remote
        let subscription = owner.subscription
        owner.loop.execute { subscription.value.attach(remote) }
    }

    func add(_ client: FanoutClient) {
        client.holder = self
        clients.add(client)
        if let head { client.begin(head, replay: replay) }
    }

    func remove(_ client: FanoutClient) {
        guard clients.remove(client), clients.isEmpty, !detached else { return }
        // The last client here left: this loop stops following the stream.
        detached = true
        hub.ended(key, self)
        let id = ObjectIdentifier(self)
        let subscription = owner.subscription
        owner.loop.execute { subscription.value.detach(id) }
    }

    // MARK: From the owner's loop

    func sync(head: HTTPResponse, replay events: [EventSplitter.Event]) {
        guard !detached else { return }
        for event in events { replay.record(event) }
        self.head = head
        clients.start(head, replay: replay)
    }

    func deliver(_ events: [EventSplitter.Event]) {
        guard !detached else { return }
        for event in events { replay.record(event) }
        clients.deliver(events)
    }

    func ownerEnded(_ error: GatewayError?) {
        guard !detached else { return }
        detached = true
        hub.ended(key, self)
        for client in clients.takeAll() {
            if let error { client.fail(error) } else { client.finish() }
        }
    }
}

/// One client of a fan-out stream: its exchange, and how far behind it is.
final class FanoutClient: ResponseProducer {
    private let exchange: Exchange
    weak var holder: (any FanoutClientHolder)?
    let lastEventID: String?
    var index: Int?
    private var started = false
    private var done = false
    /// Bytes written since its connection stopped taking them.
    private var backlog = 0
    /// A client this far behind (bytes written while its connection was full) is dropped.
    static let maxBacklog = 1 << 20

    init(exchange: Exchange) {
        self.exchange = exchange
        self.lastEventID = exchange.request.headerFields[FanoutSubscription.lastEventIDField]
        exchange.responseProducer = self
    }

    /// The head, then what it missed since its `Last-Event-ID` (once).
    func begin(_ head: HTTPResponse, replay: ReplayBuffer) {
        guard !started, !done else { return }
        started = true
        exchange.sendResponseHead(head)
        for event in replay.events(after: lastEventID) { send(event.bytes) }
        flush()
    }

    func send(_ bytes: ByteBuffer) {
        guard started, !done else { return }
        exchange.sendResponseBody(bytes)
        guard !exchange.isDownstreamWritable else { return }
        backlog += bytes.readableBytes
        if backlog > Self.maxBacklog {
            // Too slow: it would hold memory for everyone's events. It hears why, then its
            // stream ends; EventSource reconnects with Last-Event-ID.
            exchange.sendResponseBody(ByteBuffer(string: ": dropped: this client fell more than 1 MiB behind the stream\n\n"))
            finish()
            holder?.remove(self)
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
        if started { exchange.sendResponseEnd() } else { exchange.fail(error) }
    }

    // MARK: ResponseProducer

    func downstreamWritabilityChanged(_ writable: Bool) {
        if writable { backlog = 0 }
    }

    /// The client went away.
    func cancel() {
        guard !done else { return }
        done = true
        holder?.remove(self)
    }
}

@available(*, unavailable)
extension FanoutHub: Sendable {}

@available(*, unavailable)
extension FanoutSubscription: Sendable {}

@available(*, unavailable)
extension FanoutBranch: Sendable {}

@available(*, unavailable)
extension FanoutClient: Sendable {}
