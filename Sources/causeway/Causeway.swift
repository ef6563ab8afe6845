import ArgumentParser
import CausewayConfig
import CausewayDemo
import CausewayGateway
import Logging
import NIOCore
import NIOPosix
import Foundation

#if canImport(Glibc)
import Glibc
#endif

@main
struct Causeway: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "causeway",
        abstract: "A multi-protocol edge proxy and API gateway.",
        version: CausewayVersion.string,
        subcommands: [Run.self, Validate.self, Demo.self, Token.self, Version.self]
    )
}

struct LoggingOptions: ParsableArguments {
    @Option(help: "Log format: text or json.")
    var logFormat: LogFormat = .text

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func bootstrap() {
        let format = logFormat
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = LineLogHandler(label: label, format: format)
            handler.logLevel = level
            return handler
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the gateway with a configuration file.")

    @Option(name: .shortAndLong, help: "Configuration file.")
    var config = "config/causeway.yaml"

    @OptionGroup var logging: LoggingOptions

    func run() async throws {
        logging.bootstrap()
        let loaded: GatewayConfig
        do {
            loaded = try ConfigLoader.load(path: config)
        } catch {
            printError(error.description)
            throw ExitCode(1)
        }
        try await serve(loaded, configPath: config, logger: Logger(label: "causeway"))
    }
}

/// Starts the gateway and runs until SIGTERM or SIGINT, then drains.
/// SIGHUP reloads `configPath` (the whole config, certificates included).
func serve(_ config: GatewayConfig, configPath: String?, logger: Logger,
           afterStart: (GatewayServer) async throws -> Void = { _ in }) async throws {
    let signals = ShutdownSignals()
    raiseOpenFileLimit(logger: logger)
    let server: GatewayServer
    do {
        server = try GatewayServer(config: config, configPath: configPath, logger: logger)
        try await server.start()
    } catch {
        printError("causeway: cannot start: \(error)")
        throw ExitCode(1)
    }
    logger.info("started", metadata: ["workers": "\(server.workerCount)"])
    let reload = ReloadSignal {
        Task {
            logger.info("SIGHUP: reloading", metadata: ["file": "\(configPath ?? "-")"])
            // Refusals are logged by the server, with every error.
            _ = try? await server.reloadFromFile()
        }
    }
    try await afterStart(server)
    await signals.wait()
    _ = reload
    // The drain runs on the event loops; if one of them were stuck, the drain's own timer
    // could never fire. A deadline on a Dispatch queue, which no loop can block, ends the
    // process regardless: a stop is always honoured.
    let grace = config.server.drainTimeout + .seconds(5)
    DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(grace.components.seconds * 1000))) {
        printError("causeway: the drain did not finish \(grace) after the stop signal; exiting")
        exit(1)
    }
    await server.shutdown()
}

struct Validate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check a configuration file; prints OK or every error.")

    @Argument(help: "Configuration file.")
    var file: String

    func run() async throws {
        do {
            let config = try ConfigLoader.load(path: file)
            _ = try RuntimeSnapshot(config: config)
            print("OK")
        } catch let errors as ConfigErrors {
            printError(errors.description)
            throw ExitCode(1)
        } catch {
            printError("\(file):1:1: \(error)")
            throw ExitCode(1)
        }
    }
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the version and the linked libraries.")

    func run() {
        print("causeway \(CausewayVersion.string)")
        for (name, version) in CausewayVersion.libraries {
            print("  \(name) \(version)")
        }
    }
}

func printError(_ message: String) {
    var stderr = StandardError()
    print(message, to: &stderr)
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        FileHandle.standardError.write(Data(string.utf8))
    }
}
