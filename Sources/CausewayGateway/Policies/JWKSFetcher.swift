import CausewayConfig
import CausewayHTTP
import CausewayTranscoding
import CausewayUpstream
import HTTPTypes
import Logging
import NIOCore
import NIOPosix

/// `jwks.url`: the key set fetched through the gateway's own upstream client (a cluster of one
/// endpoint, TLS verified against the system store for https), on one background event loop:
/// at start, every `refresh`, and when a token names a `kid` the set lacks (at most once per
/// 30 s, so a stream of made-up kids costs one fetch per 30 s). A failed fetch or a set with no
/// usable key keeps the last good set, and is logged once per failure streak.
final class JWKSFetcher: @unchecked Sendable {
    // Everything below is touched on `eventLoop` only.
    private let eventLoop: any EventLoop
    private let cluster: UpstreamCluster
    private let request: HTTPRequest
    private let refresh: TimeAmount
    private weak var source: JWTKeySetSource?
    private var timer: Scheduled<Void>?
    private var lastFetch: NIODeadline?
    private var inFlight = false
    private var failing = false
    private let name: String
    private let logger = Logger(label: "causeway.jwks")
    static let minimumRefetch = TimeAmount.seconds(30)
    static let maxSize = 1 << 20

    init(name: String, url: String, refresh: Duration, eventLoop: any EventLoop) throws {
        self.name = name
        self.eventLoop = eventLoop
        self.refresh = TimeAmount(refresh)
        let secure = url.hasPrefix("https://")
        let rest = url.dropFirst(secure ? 8 : 7)
        let authority = rest.prefix { $0 != "/" }
        let path = rest.dropFirst(authority.count)
        let (host, port) = Self.split(String(authority), defaultPort: secure ? 443 : 80)
        let address = try SocketAddress.makeAddressResolvingHost(host, port: port)
        var tls: UpstreamTLS?
        if secure {
            let context = try TLSClientContext(.init(verify: true, alpnProtocols: ["http/1.1"]))
            tls = UpstreamTLS(context: TLSContextBox(context), serverName: host)
        }
        cluster = UpstreamCluster(name: "jwks:\(name)", endpoints: [UpstreamEndpoint(address: address, label: String(authority), weight: 1, tls: tls)],
                                  protocol: .http1, pool: PoolConfig(maxConnections: 1, maxPending: 4), eventLoop: eventLoop)
        var request = HTTPRequest(method: .get, scheme: secure ? "https" : "http", authority: String(authority),
                                  path: path.isEmpty ? "/" : String(path))
        request.headerFields[.accept] = "application/jwk-set+json, application/json"
        request.headerFields[.userAgent] = "causeway"
        self.request = request
    }

    private static func split(_ authority: String, defaultPort: Int) -> (String, Int) {
        if authority.hasPrefix("["), let close = authority.firstIndex(of: "]") {
            let host = String(authority[authority.index(after: authority.startIndex)..<close])
            let rest = authority[authority.index(after: close)...]
            return (host, rest.hasPrefix(":") ? Int(rest.dropFirst()) ?? defaultPort : defaultPort)
        }
        if let colon = authority.lastIndex(of: ":"), let port = Int(authority[authority.index(after: colon)...]) {
            return (String(authority[..<colon]), port)
        }
        return (authority, defaultPort)
    }

    func start(_ source: JWTKeySetSource) {
        eventLoop.execute { [self] in
            self.source = source
            fetch()
        }
    }

    /// From any loop: a token named a kid the set lacks.
    func unknownKid() {
        eventLoop.execute { [self] in
            guard !inFlight, let last = lastFetch, NIODeadline.now() - last >= Self.minimumRefetch else { return }
            fetch()
        }
    }

    func stop() {
        eventLoop.execute { [self] in
            timer?.cancel()
            timer = nil
            source = nil
            cluster.retire()
        }
    }

    private func fetch() {
        guard source != nil else { return }
        inFlight = true
        lastFetch = .now()
        timer?.cancel()
        let collector = UpstreamBodyCollector(limit: Self.maxSize) { [weak self] answer in
            self?.finished(answer.mapError { JWKSFetchError($0.message) }.flatMap { answer in
                answer.status == 200 ? .success(answer.body) : .failure(JWKSFetchError("the endpoint answered HTTP \(answer.status)"))
            })
        }
        let upstream = UpstreamExchange(cluster: cluster, request: request, body: .none, eventLoop: eventLoop,
                                        deadlines: UpstreamDeadlines(timeout: .seconds(10), eventLoop: eventLoop),
                                        timeoutMessage: "the JWKS endpoint did not answer within 10 s", delegate: collector)
        collector.upstream = upstream
        upstream.start()
    }

    private func finished(_ result: Result<[UInt8], JWKSFetchError>) {
        inFlight = false
        let next = refresh
        timer = eventLoop.assumeIsolated().scheduleTask(in: next) { [weak self] in self?.fetch() }
        let outcome: Result<JWTKeySet, JWKSFetchError> = result.flatMap { bytes in
            do throws(ProtoError) {
                let set = try JWTKeySet.parse(bytes)
                return set.keys.isEmpty ? .failure(.init("no usable key in it (\(set.problems.joined(separator: "; ")))")) : .success(set)
            } catch {
                return .failure(.init("not a JWK set: \(error.description)"))
            }
        }
        switch outcome {
        case .success(let set):
            source?.replace(set)
            if failing { logger.info("JWKS fetched again", metadata: ["provider": "\(name)", "keys": "\(set.keys.count)"]) }
            failing = false
        case .failure(let error):
            if !failing {
                logger.error("JWKS fetch failed; the last good key set stays", metadata: ["provider": "\(name)", "error": "\(error.message)"])
            }
            failing = true
        }
    }

    struct JWKSFetchError: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }
}
