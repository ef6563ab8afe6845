// swift-tools-version:6.0
import PackageDescription

// libFuzzer harnesses, built apart from the gateway because `-sanitize=fuzzer` instruments
// every module they link. Run them with Tests/Fuzz/run.sh.
let package = Package(
    name: "CausewayFuzz",
    dependencies: [
        .package(name: "Causeway", path: "../.."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/GraphQLSwift/GraphQL", from: "4.3.0"),
    ],
    targets: [
        .executableTarget(name: "FuzzGraphQLDocument", dependencies: [
            .product(name: "CausewayGraphQL", package: "Causeway"),
            .product(name: "GraphQL", package: "GraphQL"),
        ]),
        .executableTarget(name: "FuzzJSON", dependencies: [
            .product(name: "CausewayGraphQL", package: "Causeway"),
        ]),
        .executableTarget(name: "FuzzHTTP1Head", dependencies: [
            .product(name: "CausewayHTTP", package: "Causeway"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
