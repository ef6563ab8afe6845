import CausewayConfig
import CausewayGateway
import Logging

/// A gateway started in-process on an ephemeral port, in front of a `TestUpstream`.
struct GatewayHarness {
    let server: GatewayServer
    let upstream: TestUpstream
    let port: Int
    let tlsPort: Int
    var url: String { "http://127.0.0.1:\(port)" }

    /// The base URL for a transport: the cleartext listener, or the TLS one as "localhost".
    func url(_ transport: Transport) -> String {
        switch transport {
        case .http1, .h2c: "http://127.0.0.1:\(port)"
        case .h2: "https://localhost:\(tlsPort)"
        }
    }

    /// `routes` is YAML for the routes list; `{{UPSTREAM}}` names the test upstream's address.
    static func start(routes: String = Self.defaultRoutes, listenerLimits: String = "{}", http2: String = "{}", pool: String = "{}",
                      extraUpstreams: String = "", drain: String = "5s", workers: Int = 2,
                      onExchangeComplete: (@Sendable (CompletedExchange) -> Void)? = nil) async throws -> GatewayHarness {
        let upstream = try await TestUpstream.start()
        let certificates = TestCertificates.shared
        let yaml = """
            server: {workers: \(workers), drain_timeout: \(drain), admin: {address: "127.0.0.1:0"}}
            listeners:
              - {name: test, address: "127.0.0.1:0", protocols: [http1, h2c], limits: \(listenerLimits), http2: \(http2)}
              - name: tls
                address: "127.0.0.1:0"
                protocols: [h2, http1]
                limits: \(listenerLimits)
                http2: \(http2)
                tls: {certificates: [{cert: "\(certificates.cert("localhost"))", key: "\(certificates.key("localhost"))"},
                                     {cert: "\(certificates.cert("other"))", key: "\(certificates.key("other"))"}]}
            upstreams:
              origin: {endpoints: [{address: "127.0.0.1:\(upstream.port)"}], pool: \(pool)}
            \(extraUpstreams)
            routes:
            \(routes)
            """
        let config = try ConfigLoader.parse(yaml, file: "harness.yaml")
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let server = try GatewayServer(config: config, logger: logger, onExchangeComplete: onExchangeComplete)
        try await server.start()
        return GatewayHarness(server: server, upstream: upstream, port: server.listenerAddresses["test"]!.port!,
                              tlsPort: server.listenerAddresses["tls"]!.port!)
    }

    static let defaultRoutes = """
          - name: api
            match: {path_prefix: /api/, methods: [GET, POST, PUT, HEAD]}
            upstream: origin
            rewrite: {path_prefix: /}
            timeout: 2s
            max_body_size: 1MiB
            headers:
              request: {set: {x-gateway: causeway}, remove: [x-internal-token]}
              response: {remove: [server]}
          - name: big
            match: {path_prefix: /big/}
            upstream: origin
            timeout: 0
            max_body_size: 0
        """

    /// Runs `body`, then stops the gateway, also when `body` throws (a gateway left running
    /// would keep the test runner from exiting).
    func run(_ body: (GatewayHarness) async throws -> Void) async throws {
        do {
            try await body(self)
        } catch {
            await stop()
            throw error
        }
        await stop()
    }

    func stop() async {
        await server.shutdown()
        await upstream.stop()
    }
}
