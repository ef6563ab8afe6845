import CausewayGraphQL
import Foundation
import GraphQL

// The GraphQL document path a request takes: prescan → parse → validate → limits → plan,
// against the demo schema, with the demo's default limits. Any input must end in an answer
// (a valid plan or errors), never a crash or a hang; libFuzzer's -timeout catches the latter.
nonisolated(unsafe) let engine: GraphQLEngine = {
    let path = ProcessInfo.processInfo.environment["CAUSEWAY_FUZZ_SCHEMA"] ?? "schemas/demo.graphql"
    guard let text = try? String(contentsOfFile: path, encoding: .utf8),
        let loaded = try? SchemaLoader.load(text: text, file: path, upstreams: ["users", "orders"])
    else { fatalError("cannot load \(path); run from the repository root or set CAUSEWAY_FUZZ_SCHEMA") }
    return GraphQLEngine(loaded)
}()
let limits = OperationLimits()
let prescan = DocumentPrescan(maxTokens: limits.maxTokens, maxDepth: limits.maxDepth,
                              maxExpandedFields: limits.maxComplexity, maxBytes: 256 << 10)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    // The first line may carry variables as JSON ("#vars {...}"), the rest is the document.
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    var variables: [String: Map] = [:]
    var query = text
    if text.hasPrefix("#vars "), let newline = text.firstIndex(of: "\n") {
        let json = Array(text[text.index(text.startIndex, offsetBy: 6)..<newline].utf8)
        if let tape = try? JSONTape(parsing: json), case .dictionary(let values) = tape.map() {
            variables = Dictionary(values.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        }
        query = String(text[text.index(after: newline)...])
    }
    guard case .valid(let document) = engine.parseAndValidate(query, prescan: prescan, rules: specifiedRules) else { return 0 }
    for operation in document.definitions.compactMap({ $0 as? OperationDefinition }) {
        let name = operation.name?.value
        if engine.check(limits, document: document, operationName: name, variables: variables) != nil { continue }
        var plans: [OperationPlan] = []
        _ = engine.prepare(document, operationName: name, variables: variables, plans: &plans)
    }
    return 0
}
