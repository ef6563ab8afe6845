import ArgumentParser
import COpenSSL
import CausewayConfig
import CausewayDemo
import NIOCore
import CausewayGateway
import Logging
import NIOPosix
import Foundation

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the gateway on :8080 with config/demo.yaml and built-in users and orders services.")

    @Option(name: .shortAndLong, help: "Demo configuration file.")
    var config = "config/demo.yaml"

    @OptionGroup var logging: LoggingOptions

    func run() async throws {
        logging.bootstrap()
        let logger = Logger(label: "causeway")
        do {
            try DemoCertificate.ensure(directory: "config/certs", logger: logger)
        } catch {
            printError("causeway demo: cannot make the demo certificate: \(error)")
            throw ExitCode(1)
        }
        let loaded: GatewayConfig
        do {
            loaded = try ConfigLoader.load(path: config)
        } catch {
            printError(error.description)
            printError("(run `causeway demo` from the repository root, or pass --config)")
            throw ExitCode(1)
        }
        let services: DemoServices
        let realtime: any Channel
        let greeter: any Channel
        do {
            services = try await DemoServices.start(on: MultiThreadedEventLoopGroup.singleton.next())
            realtime = try await RealtimeService.start(on: MultiThreadedEventLoopGroup.singleton.next())
            greeter = try await GreeterService.start(on: MultiThreadedEventLoopGroup.singleton.next())
        } catch {
            printError("causeway demo: cannot start the demo services on 127.0.0.1:3002/3003/3004/3005: \(error)")
            throw ExitCode(1)
        }
        defer {
            realtime.close(promise: nil)
            greeter.close(promise: nil)
        }
        try await serve(loaded, configPath: config, logger: logger) { server in
            let port = server.listenerAddresses["public"]?.port ?? 8080
            let tlsPort = server.listenerAddresses["public-tls"]?.port ?? 8443
            let admin = server.adminAddress?.port.map { "127.0.0.1:\($0)" } ?? "(admin off)"
            // Written straight to the file descriptor: print() would sit in a buffer when piped.
            FileHandle.standardOutput.write(Data("""

            Causeway demo is running: gateway on http://localhost:\(port) and https://localhost:\(tlsPort)
            (self-signed certificate in config/certs), users service on :3002, orders on :3003,
            ticks and echo on :3004, gRPC demo.v1.Greeter on :3005.
            Try, in another terminal:

              curl -i http://localhost:\(port)/api/v1/users
              curl -i http://localhost:\(port)/api/v1/users/2
              curl -i 'http://localhost:\(port)/api/v1/orders?userId=1'
              curl -i -X POST http://localhost:\(port)/api/v1/users -H 'content-type: application/json' -d '{"name":"Linus","email":"linus@example.com"}'
              curl -i --http2-prior-knowledge http://localhost:\(port)/api/v1/users   # HTTP/2 cleartext (h2c)
              curl -si --compressed http://localhost:\(port)/api/v1/users | grep -i content-encoding   # br, streamed
              curl -s http://localhost:\(port)/graphql -H 'content-type: application/json' -d '{"query":"{ users(limit: 3) { name orders { item total } } }"}'   # GraphQL, 2 REST calls
              curl -i --cacert config/certs/localhost.crt https://localhost:\(tlsPort)/api/v1/users   # h2 over TLS
              curl -N http://localhost:\(port)/events/ticks                       # an event stream, one tick a second
              python3 -m websockets ws://localhost:\(port)/ws/echo                # a WebSocket echo (pip install websockets)
              curl -s http://localhost:\(port)/v1/greetings/ada                   # gRPC demo.v1.Greeter/SayHello, as REST/JSON
              curl -sN http://localhost:\(port)/v1/greetings/ada/stream?count=3   # a server stream as a JSON array, element by element
              python3 scripts/grpc_demo.py localhost:\(port)                     # the same service over gRPC and gRPC-Web
              curl -i -H 'x-api-key: demo-key' http://localhost:\(port)/partner/v1/orders   # API key route (without the key: 401)
              curl -i -H "authorization: Bearer $(.build/debug/causeway token --sub alice)" http://localhost:\(port)/me/v1/users   # JWT route
              curl -si http://localhost:\(port)/api/v1/users | grep -i ratelimit         # RateLimit headers; past 20 at once: 429
              curl -i -X OPTIONS http://localhost:\(port)/api/v1/users -H 'origin: https://app.example.com' -H 'access-control-request-method: POST'   # CORS preflight
              curl -i http://localhost:\(port)/api/v1/nothing-here        # 404 with a JSON error and request id
              curl -i -X DELETE http://localhost:\(port)/api/v1/users/1   # 405 with Allow
              curl -i http://\(admin)/ready

            Press Ctrl-C to stop (in-flight requests are drained first).

            """.utf8))
        }
        await services.stop()
    }
}

/// The demo's TLS certificate: self-signed for localhost, made once with the openssl command and
/// kept in config/certs (ignored by git: private keys are never committed).
enum DemoCertificate {
    static func ensure(directory: String, logger: Logger) throws {
        let cert = directory + "/localhost.crt"
        let key = directory + "/localhost.key"
        defer { try? writeJWKS(directory: directory, key: key) }
        if FileManager.default.fileExists(atPath: cert) && FileManager.default.fileExists(atPath: key) { return }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                             "-keyout", key, "-out", cert, "-days", "365", "-subj", "/CN=localhost",
                             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"]
        process.standardError = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw DemoError("openssl exited with \(process.terminationStatus)") }
        logger.info("made a self-signed demo certificate", metadata: ["cert": "\(cert)"])
    }

    /// The demo JWT provider's key set: the public half of the demo key (`causeway token` signs
    /// with the private half).
    static func writeJWKS(directory: String, key: String) throws {
        guard let pkey = DemoJWT.loadKey(key) else { return }
        defer { EVP_PKEY_free(pkey) }
        guard let jwks = DemoJWT.jwks(pkey) else { return }
        try jwks.write(toFile: directory + "/demo-jwks.json", atomically: true, encoding: .utf8)
    }

    struct DemoError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }
}
