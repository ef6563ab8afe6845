import ArgumentParser
import CausewayConfig
import CausewayDemo
import CausewayGateway
import Logging
import NIOPosix

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the gateway on :8080 with config/demo.yaml and built-in users and orders services.")

    @Option(name: .shortAndLong, help: "Demo configuration file.")
    var config = "config/demo.yaml"

    @OptionGroup var logging: LoggingOptions

    func run() async throws {
        logging.bootstrap()
        let logger = Logger(label: "causeway")
        let loaded: GatewayConfig
        do {
            loaded = try ConfigLoader.load(path: config)
        } catch {
            printError(error.description)
            printError("(run `causeway demo` from the repository root, or pass --config)")
            throw ExitCode(1)
        }
        let services: DemoServices
        do {
            services = try await DemoServices.start(on: MultiThreadedEventLoopGroup.singleton.next())
        } catch {
            printError("causeway demo: cannot start the demo services on 127.0.0.1:3002/3003: \(error)")
            throw ExitCode(1)
        }
        try await serve(loaded, logger: logger) { server in
            let port = server.listenerAddresses.values.first?.port ?? 8080
            let admin = server.adminAddress?.port.map { "127.0.0.1:\($0)" } ?? "(admin off)"
            print("""

            Causeway demo is running: gateway on http://localhost:\(port), users service on :3002, orders on :3003.
            Try, in another terminal:

              curl -i http://localhost:\(port)/api/v1/users
              curl -i http://localhost:\(port)/api/v1/users/2
              curl -i 'http://localhost:\(port)/api/v1/orders?userId=1'
              curl -i -X POST http://localhost:\(port)/api/v1/users -H 'content-type: application/json' -d '{"name":"Linus","email":"linus@example.com"}'
              curl -i http://localhost:\(port)/api/v1/nothing-here        # 404 with a JSON error and request id
              curl -i -X DELETE http://localhost:\(port)/api/v1/users/1   # 405 with Allow
              curl -i http://\(admin)/ready

            Press Ctrl-C to stop (in-flight requests are drained first).

            """)
        }
        await services.stop()
    }
}
