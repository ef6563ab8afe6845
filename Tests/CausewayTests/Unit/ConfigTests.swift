import CausewayConfig
import Testing

@Suite struct ConfigTests {
    static let valid = """
        server:
          workers: 2
          drain_timeout: 5s
        listeners:
          - name: public
            address: 127.0.0.1:8080
        upstreams:
          users:
            endpoints:
              - address: 127.0.0.1:3002
                weight: 3
            pool: {max_connections: 8, max_pending: 16, idle_timeout: 30s, connect_timeout: 250ms}
        routes:
          - name: users
            match: {host: "*.example.com", path_prefix: /api/v1/users, methods: [GET, POST], headers: {x-canary: "true"}}
            upstream: users
            rewrite: {path_prefix: /users}
            timeout: 15s
            max_body_size: 10MiB
            headers:
              request: {set: {x-gateway: causeway}, remove: [x-internal-token]}
              response: {remove: [server]}
        """

    func errors(_ text: String, environment: [String: String] = [:]) -> [String] {
        do {
            _ = try ConfigLoader.parse(text, file: "test.yaml", environment: environment)
            return []
        } catch {
            return error.errors.map(\.description)
        }
    }

    @Test func validConfigLoadsWithValuesAndDefaults() throws {
        let config = try ConfigLoader.parse(Self.valid, file: "test.yaml")
        #expect(config.server.workers == 2)
        #expect(config.server.drainTimeout == .seconds(5))
        #expect(config.server.adminAddress == HostPort(host: "127.0.0.1", port: 9901))
        #expect(config.listeners[0].limits.maxHeaderSize == 65536)
        #expect(config.listeners[0].limits.idleTimeout == .seconds(60))
        #expect(config.upstreams[0].endpoints == [EndpointConfig(address: HostPort(host: "127.0.0.1", port: 3002), weight: 3)])
        #expect(config.upstreams[0].pool.connectTimeout == .milliseconds(250))
        let route = config.routes[0]
        #expect(route.match.host == "*.example.com")
        #expect(route.match.path == .prefix("/api/v1/users"))
        #expect(route.match.methods == ["GET", "POST"])
        #expect(route.match.headers.map(\.value) == ["true"])
        #expect(route.rewritePathPrefix == "/users")
        #expect(route.maxBodySize == 10 << 20)
        #expect(route.requestHeaders.toSet.map(\.name) == ["x-gateway"])
        #expect(route.responseHeaders.toRemove == ["server"])
    }

    @Test func unknownKeysAreErrorsWithSuggestions() {
        let text = Self.valid.replacingOccurrences(of: "drain_timeout: 5s", with: "drain_timout: 5s")
        #expect(errors(text) == [#"test.yaml:3:3: server.drain_timout: unknown key "drain_timout" (did you mean "drain_timeout"?)"#])
    }

    @Test func grpcAndFanoutKeysLoadAndBadTranscodeKeysAreReportedAtTheirPlace() throws {
        let text = Self.valid.replacingOccurrences(of: "    timeout: 15s", with: """
                timeout: 15s
                grpc: {default_timeout: 2s, max_message_size: 1MiB, web: true, transcode: {descriptors: protos/demo.pb, services: [demo.v1.Greeter], use_proto_names: true}}
                sse: {fanout: true, replay: 7}
            """)
        let route = try ConfigLoader.parse(text, file: "test.yaml").routes[0]
        let grpc = try #require(route.grpc)
        #expect(grpc.defaultTimeout == .seconds(2) && grpc.maxMessageSize == 1 << 20 && grpc.web)
        #expect(grpc.transcode?.descriptors == "protos/demo.pb" && grpc.transcode?.services == ["demo.v1.Greeter"])
        #expect(grpc.transcode?.useProtoNames == true && grpc.transcode?.alwaysPrintPrimitiveFields == false)
        #expect(route.sse.fanout && route.sse.replay == 7)
        let refused = errors(text.replacingOccurrences(of: "descriptors: protos/demo.pb, ", with: "descriptor: x, "))
        #expect(refused.contains { $0.contains("routes[0].grpc.transcode.descriptor: unknown key") })
        let missing = errors(text.replacingOccurrences(of: "descriptors: protos/demo.pb, ", with: ""))
        #expect(missing.contains { $0.contains("routes[0].grpc.transcode.descriptors: required key is missing") })
    }

    @Test func unknownUpstreamIsReportedAtTheValue() {
        let text = Self.valid.replacingOccurrences(of: "    upstream: users", with: "    upstream: userz")
        #expect(errors(text) == [#"test.yaml:16:15: routes[0].upstream: unknown upstream "userz" (did you mean "users"?)"#])
    }

    @Test func everyErrorIsReportedAtOnce() {
        let text = """
            server: {workers: 0}
            listeners:
              - name: a
                address: nowhere
            upstreams:
              u: {endpoints: [{address: "127.0.0.1:99999"}], pool: {idle_timeout: 5 minutes}}
            routes:
              - match: {path: /x, path_prefix: /y}
                upstream: u
                max_body_size: 10MB
            """
        #expect(errors(text) == [
            "test.yaml:1:19: server.workers: must be between 1 and 1024, got 0",
            #"test.yaml:4:14: listeners[0].address: expected an address "host:port", found "nowhere""#,
            #"test.yaml:6:29: upstreams.u.endpoints[0].address: expected an address "host:port", found "127.0.0.1:99999""#,
            #"test.yaml:6:71: upstreams.u.pool.idle_timeout: expected a duration like "250ms", "5s", "10m" or "1h", found "5 minutes""#,
            "test.yaml:8:12: routes[0].match: exactly one of path, path_prefix, path_regex is allowed, found path, path_prefix",
            #"test.yaml:10:20: routes[0].max_body_size: expected a size like "512", "64KiB" or "10MiB", found "10MB""#,
        ])
    }

    @Test func missingSectionsAndKeys() {
        #expect(errors("server: {workers: auto}") == [
            "test.yaml:1:1: listeners: at least one listener is required",
            "test.yaml:1:1: routes: at least one route is required",
        ])
        let text = """
            listeners: [{name: a}]
            routes: [{match: {path: /}}]
            """
        #expect(errors(text) == [
            "test.yaml:1:13: listeners[0].address: required key is missing",
            "test.yaml:2:10: routes[0].upstream: required key is missing",
        ])
    }

    @Test func yamlSyntaxErrorsHaveTheirPosition() {
        let result = errors("listeners:\n  - name: [unclosed\n")
        #expect(result.count == 1)
        #expect(result[0].hasPrefix("test.yaml:3:1: invalid YAML:"))
    }

    @Test func featuresOfLaterReleasesAreRejectedNotIgnored() {
        let text = Self.valid.replacingOccurrences(of: "    address: 127.0.0.1:8080", with: "    address: 127.0.0.1:8080\n    protocols: [h2, http1]")
        #expect(errors(text) == ["test.yaml:7:17: listeners[0].protocols[0]: h2 needs tls on this listener (use h2c for cleartext HTTP/2)"])
    }

    @Test func http2Settings() throws {
        let text = Self.valid.replacingOccurrences(
            of: "    address: 127.0.0.1:8080",
            with: "    address: 127.0.0.1:8080\n    protocols: [http1, h2c]\n    http2: {max_concurrent_streams: 64, initial_window_size: 256KiB, max_header_list_size: 16KiB}")
        let listener = try ConfigLoader.parse(text, file: "t.yaml").listeners[0]
        #expect(listener.protocols == ["http1", "h2c"])
        #expect(listener.http2.maxConcurrentStreams == 64)
        #expect(listener.http2.initialWindowSize == 256 << 10)
        #expect(listener.http2.maxHeaderListSize == 16 << 10)
    }

    @Test func environmentInterpolation() throws {
        let text = Self.valid.replacingOccurrences(of: "127.0.0.1:3002", with: "${USERS:-127.0.0.1:3002}")
            .replacingOccurrences(of: "workers: 2", with: "workers: ${WORKERS}")
        let config = try ConfigLoader.parse(text, file: "t.yaml", environment: ["WORKERS": "4"])
        #expect(config.server.workers == 4)
        #expect(config.upstreams[0].endpoints[0].address.port == 3002)
        let overridden = try ConfigLoader.parse(text, file: "t.yaml", environment: ["WORKERS": "1", "USERS": "10.0.0.1:80"])
        #expect(overridden.upstreams[0].endpoints[0].address == HostPort(host: "10.0.0.1", port: 80))
        #expect(errors(text) == ["test.yaml:2:12: environment variable WORKERS is not set (use ${WORKERS:-default} for a default)"])
    }

    @Test func units() {
        #expect(Units.duration("250ms") == .milliseconds(250))
        #expect(Units.duration("10m") == .seconds(600))
        #expect(Units.duration("1h") == .seconds(3600))
        #expect(Units.duration("0") == .zero)
        #expect(Units.duration("5") == nil)
        #expect(Units.duration("s") == nil)
        #expect(Units.size("512") == 512)
        #expect(Units.size("64KiB") == 65536)
        #expect(Units.size("1GiB") == 1 << 30)
        #expect(Units.size("1.5MiB") == nil)
        #expect(Units.address("[::1]:8080") == HostPort(host: "::1", port: 8080))
        #expect(Units.address("localhost:0") == HostPort(host: "localhost", port: 0))
        #expect(Units.address("::1:80") == nil)
    }

    @Test func invalidRegexAndHost() {
        let text = Self.valid.replacingOccurrences(of: "path_prefix: /api/v1/users,", with: "path_regex: \"/a(b\",")
            .replacingOccurrences(of: "\"*.example.com\"", with: "\"api.*.com\"")
            .replacingOccurrences(of: "    rewrite: {path_prefix: /users}\n", with: "")
        let result = errors(text)
        #expect(result.count == 2)
        #expect(result[0] == #"test.yaml:15:19: routes[0].match.host: expected a host name like "api.example.com" or "*.example.com""#)
        #expect(result[1].hasPrefix("test.yaml:15:44: routes[0].match.path_regex: invalid regular expression"))
    }

    @Test func compressionKeysLoadAndBadValuesArePointedAt() throws {
        let good = Self.valid + """

                compression: {algorithms: [gzip, br], min_size: 2KiB, gzip_level: 9, brotli_quality: 11,
                              content_types: [text/html, "application/*"], request_decompression: true,
                              max_decompression_ratio: 20}
            """
        let compression = try #require(try ConfigLoader.parse(good, file: "test.yaml").routes[0].compression)
        #expect(compression.algorithms == ["gzip", "br"])
        #expect(compression.minSize == 2048)
        #expect(compression.gzipLevel == 9 && compression.brotliQuality == 11)
        #expect(compression.contentTypes == ["text/html", "application/*"])
        #expect(compression.requestDecompression && compression.maxDecompressionRatio == 20)
        let defaults = try #require(try ConfigLoader.parse(Self.valid + "\n    compression: {}", file: "test.yaml").routes[0].compression)
        #expect(defaults.enabled && defaults.algorithms == ["br", "gzip"] && defaults.minSize == 1024)
        #expect(defaults.gzipLevel == 6 && defaults.brotliQuality == 4 && !defaults.requestDecompression)
        let bad = errors(Self.valid + """

                compression: {algorithms: [zstd], gzip_level: 10, content_types: [html], min_size: big, enabled: yes-ish}
            """)
        #expect(bad.count == 5)
        #expect(bad.contains { $0.hasPrefix("test.yaml:") && $0.hasSuffix(#"routes[0].compression.algorithms[0]: unknown value "zstd", expected one of: br, gzip"#) })
        #expect(bad.contains { $0.contains("routes[0].compression.gzip_level: must be between 1 and 9, got 10") })
        #expect(bad.contains { $0.contains("routes[0].compression.content_types[0]: expected a media type like") })
        #expect(bad.contains { $0.contains("routes[0].compression.min_size: expected a size") })
        #expect(bad.contains { $0.contains("routes[0].compression.enabled: expected true or false") })
    }
}
