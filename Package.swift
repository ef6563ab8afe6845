// swift-tools-version:6.0
import PackageDescription

// System C libraries are reached through thin module maps; each names its Debian package so
// `swift build` says what to install when a header is missing.
let systemLibraries: [Target] = [
    .systemLibrary(name: "CNghttp2", pkgConfig: "libnghttp2", providers: [.apt(["libnghttp2-dev"])]),
    .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
    .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
    .systemLibrary(
        name: "CBrotli", pkgConfig: "libbrotlienc", providers: [.apt(["libbrotli-dev"])]),
]

let nio: [Target.Dependency] = [
    .product(name: "NIOCore", package: "swift-nio"),
    .product(name: "NIOPosix", package: "swift-nio"),
    .product(name: "NIOHTTP1", package: "swift-nio"),
    .product(name: "HTTPTypes", package: "swift-http-types"),
]

// Dynamic exclusivity checks cost a few percent on the request path; tests and debug builds
// keep them, release builds (the ones benchmarked and shipped) do not.
let releaseSettings: [SwiftSetting] = [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]

let package = Package(
    name: "Causeway",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "causeway", targets: ["causeway"]),
        // For Tests/Fuzz, a package of its own (libFuzzer builds everything instrumented).
        .library(name: "CausewayGraphQL", targets: ["CausewayGraphQL"]),
        .library(name: "CausewayHTTP", targets: ["CausewayHTTP"]),
        .library(name: "CausewayTranscoding", targets: ["CausewayTranscoding"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/GraphQLSwift/GraphQL", from: "4.3.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
    ],
    targets: systemLibraries + [
        .target(
            name: "CausewayConfig",
            dependencies: [.product(name: "Yams", package: "Yams")],
            swiftSettings: releaseSettings
        ),
        .target(
            name: "CausewayHTTP",
            dependencies: nio + [
                "CNghttp2", "COpenSSL",
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: releaseSettings
        ),
        .target(
            name: "CausewayCompression",
            dependencies: ["CZlib", "CBrotli", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: releaseSettings
        ),
        .target(
            name: "CausewayGraphQL",
            dependencies: [
                .product(name: "GraphQL", package: "GraphQL"),
                .product(name: "OrderedCollections", package: "swift-collections"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: releaseSettings
        ),
        .target(
            name: "CausewayUpstream",
            dependencies: nio + [
                "CausewayConfig", "CausewayHTTP", "CNghttp2",
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: releaseSettings
        ),
        // A small RESP client on SwiftNIO (rate limits shared by replicas).
        .target(
            name: "CausewayRedis",
            dependencies: [.product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio")],
            swiftSettings: releaseSettings
        ),
        // Descriptor-driven protobuf ↔ JSON and google.api.http rules (gRPC transcoding).
        .target(
            name: "CausewayTranscoding",
            dependencies: ["CausewayHTTP", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: releaseSettings
        ),
        .target(
            name: "CausewayGateway",
            dependencies: nio + [
                "CausewayConfig", "CausewayHTTP", "CausewayUpstream", "CausewayCompression", "CausewayGraphQL", "CausewayTranscoding", "CausewayRedis", "COpenSSL",
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "OrderedCollections", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: releaseSettings
        ),
        .target(name: "CausewayDemo", dependencies: nio + ["CausewayHTTP", "CausewayTranscoding", .product(name: "NIOWebSocket", package: "swift-nio")]),
        .executableTarget(
            name: "causeway",
            dependencies: [
                "CausewayConfig", "CausewayGateway", "CausewayDemo",
                "CNghttp2", "COpenSSL", "CZlib", "CBrotli",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "CausewayTests",
            dependencies: nio + [
                "CausewayConfig", "CausewayHTTP", "CausewayUpstream", "CausewayGateway", "CausewayDemo",
                "CausewayCompression", "CausewayGraphQL", "CausewayTranscoding", "CausewayRedis",
                .product(name: "GraphQL", package: "GraphQL"),
                .product(name: "OrderedCollections", package: "swift-collections"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
