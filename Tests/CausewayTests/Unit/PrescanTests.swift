import CausewayGraphQL
import Foundation
import GraphQL
import Testing

/// The GraphQL prescan: the bounds it enforces before the parser runs, each at its edge, and
/// that documents within them pass untouched.
struct PrescanTests {
    let scan = DocumentPrescan(maxTokens: 1000, maxDepth: 5, maxExpandedFields: 100, maxBytes: 64 << 10)

    func code(_ text: String, _ scan: DocumentPrescan? = nil) -> String? {
        (scan ?? self.scan).check(text)?.code
    }

    @Test func validDocumentsPass() {
        let documents = [
            "{ users { id name } }",
            "query Q($n: Int = 3, $ids: [[ID!]!]) @dir(a: {b: [1, 2]}) { users(limit: $n) { ...F ... on User { id } } }\n"
                + "fragment F on User { orders { item } }",
            #"{ user(id: "a { b { c { d { e { f") { id } } # { { { { { {"#,
            #"{ user(id: """ { { { { { { """) { id } }"#,
            "mutation M { createOrder(input: {userId: \"1\", item: \"x\", total: -1.5e3}) { id } }",
            "{ a: users { id } b: users { id } }",
            "\u{FEFF}{ users { id } }",
        ]
        for document in documents { #expect(code(document) == nil, "\(document)") }
    }

    @Test func depthIsCountedAsTheLimitsCountIt() {
        #expect(code("{ a { b { c { d { e } } } } }") == nil)  // 5 levels
        #expect(code("{ a { b { c { d { e { f } } } } } }") == "MAX_DEPTH_EXCEEDED")
        // Inline fragments and a fragment's own braces add no level; spreads carry depth.
        #expect(code("{ a { ... on T { b { ... { c { d { e } } } } } } }") == nil)
        #expect(code("{ a { b { ...F } } } fragment F on T { c { d { e } } }") == nil)
        #expect(code("{ a { b { ...F } } } fragment F on T { c { d { e { f } } } }") == "MAX_DEPTH_EXCEEDED")
        #expect(code("{ a { ...F } } fragment F on T { b { ...G } } fragment G on T { c { d { e { f } } } }")
                    == "MAX_DEPTH_EXCEEDED")
    }

    @Test func braceBombsStopAtTheLimitNotTheStack() {
        let deep = "{ " + String(repeating: "a { ", count: 100_000) + "b" + String(repeating: " }", count: 100_001)
        let big = DocumentPrescan(maxTokens: 1_000_000, maxDepth: 12, maxExpandedFields: 100, maxBytes: 16 << 20)
        #expect(code(deep, big) == "MAX_DEPTH_EXCEEDED")
        let values = "{ a(x: " + String(repeating: "[", count: 100_000) + ") }"
        #expect(code(values, big) == "MAX_DEPTH_EXCEEDED")
        let objects = "{ a(x: " + String(repeating: "{y: ", count: 100_000) + ") }"
        #expect(code(objects, big) == "MAX_DEPTH_EXCEEDED")
    }

    @Test func fragmentFanOutIsASumNotAPower() {
        var bomb = "{ a { ...F0 } }\n"
        for level in 0..<40 { bomb += "fragment F\(level) on T { ...F\(level + 1) ...F\(level + 1) }\n" }
        bomb += "fragment F40 on T { x }"
        let generous = DocumentPrescan(maxTokens: 100_000, maxDepth: 12, maxExpandedFields: 1_000_000_000, maxBytes: 1 << 20)
        #expect(code(bomb, generous) == "MAX_COMPLEXITY_EXCEEDED")  // 2^40 fields, computed in 40 steps
        var fine = "{ a { ...F0 } }\n"
        for level in 0..<5 { fine += "fragment F\(level) on T { ...F\(level + 1) ...F\(level + 1) }\n" }
        fine += "fragment F5 on T { x }"
        #expect(code(fine) == nil)  // 32 fields
        #expect(code(fine.replacingOccurrences(of: "F5 on T { x }", with: "F5 on T { x y z w }")) == "MAX_COMPLEXITY_EXCEEDED")
    }

    @Test func cyclesChainsAndDuplicates() {
        #expect(code("{ a { ...A } } fragment A on T { ...B } fragment B on T { ...A }") == "GRAPHQL_VALIDATION_FAILED")
        #expect(code("{ a { ...A } } fragment A on T { x ...A }") == "GRAPHQL_VALIDATION_FAILED")
        #expect(code("{ a { ...A } } fragment A on T { x } fragment A on T { y }") == "GRAPHQL_VALIDATION_FAILED")
        var chain = "{ a { ...F0 } }\n"
        for index in 0..<70 { chain += "fragment F\(index) on T { x ...F\(index + 1) }\n" }
        chain += "fragment F70 on T { x }"
        let generous = DocumentPrescan(maxTokens: 100_000, maxDepth: 12, maxExpandedFields: 100_000, maxBytes: 1 << 20)
        #expect(code(chain, generous) == "MAX_DEPTH_EXCEEDED")
    }

    @Test func operationsMustBeDistinguishable() {
        // GraphQLSwift keys validation caches by operation, hashed by identity but compared by
        // structure: two alike operations could trap the process (found by fuzzing).
        #expect(code("{ a } { a }") == "GRAPHQL_VALIDATION_FAILED")
        #expect(code("query { a } query { a }") == "GRAPHQL_VALIDATION_FAILED")
        #expect(code("{ a } query Q { a }") == "GRAPHQL_VALIDATION_FAILED")
        #expect(code("query Q { a } mutation Q { a }") == "GRAPHQL_VALIDATION_FAILED")
        #expect(DocumentPrescan(maxTokens: 1000, maxDepth: 5, maxExpandedFields: 100, maxBytes: 1 << 16)
                    .check("query Q($v: Int = 1) @d { a } query R @d { a } fragment F on T { a }") == nil)
        #expect(code("query ($v: Int) { a }") == nil)
        #expect(scan.check("query Q { a } query Q { b }")?.message == #"There can be only one operation named "Q"."#)
    }

    @Test func tokensBytesDirectivesAndDefinitions() {
        let wide = DocumentPrescan(maxTokens: 1000, maxDepth: 5, maxExpandedFields: 100_000, maxBytes: 64 << 10)
        #expect(code("{ a " + String(repeating: "b ", count: 997) + "}", wide) == nil)  // 1,000 tokens
        #expect(code("{ a " + String(repeating: "b ", count: 998) + "}", wide) == "MAX_TOKENS_EXCEEDED")
        #expect(code("# " + String(repeating: "{ ", count: 5000) + "\n{ a }") == nil)  // comments are no tokens
        #expect(code("{ a(x: \"" + String(repeating: "x", count: 70_000) + "\") }") == "MAX_DOCUMENT_SIZE_EXCEEDED")
        #expect(code("{ a " + String(repeating: "@include(if: true) ", count: 16) + "}") == nil)
        #expect(code("{ a " + String(repeating: "@include(if: true) ", count: 17) + "}") == "MAX_DIRECTIVES_EXCEEDED")
        let many = DocumentPrescan(maxTokens: 100_000, maxDepth: 12, maxExpandedFields: 100_000, maxBytes: 1 << 20)
        let definitions = (0...DocumentPrescan.maxDefinitions).map { "query Q\($0) { a }" }.joined(separator: "\n")
        #expect(code(definitions, many) == "MAX_DEFINITIONS_EXCEEDED")
    }
}

/// Validation errors are cheap to make only without locations (GraphQLSwift scans the whole
/// text to locate each one): a few are located, many come back unlocated and capped.
struct ValidationErrorCostTests {
    let engine: GraphQLEngine = {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../../schemas/demo.graphql")
        let text = try! String(contentsOf: path, encoding: .utf8)
        return GraphQLEngine(try! SchemaLoader.load(text: text, file: "demo.graphql", upstreams: ["users", "orders"]))
    }()
    let prescan = DocumentPrescan(maxTokens: 10000, maxDepth: 12, maxExpandedFields: 5000, maxBytes: 256 << 10)

    func errors(_ query: String) -> [GraphQLError] {
        guard case .refused(let errors) = engine.parseAndValidate(query, prescan: prescan, rules: specifiedRules) else { return [] }
        return errors
    }

    @Test func fewErrorsAreLocated() {
        let found = errors("{ a users { id } b }")
        #expect(found.map(\.message) == [#"Cannot query field "a" on type "Query"."#, #"Cannot query field "b" on type "Query"."#])
        #expect(found.map { $0.locations.map(\.column) } == [[3], [18]])
    }

    @Test func manyErrorsAreCappedAndUnlocated() {
        // What the fuzzer found: ~800 unknown fields took seconds to locate one by one.
        let found = errors("{ " + String(repeating: "a ", count: 2000) + "}")
        #expect(found.count == 100)
        #expect(found.allSatisfy { $0.locations.isEmpty && $0.message == #"Cannot query field "a" on type "Query"."# })
        // Valid documents are parsed with locations, for the errors execution may report.
        guard case .valid(let document) = engine.parseAndValidate("{ users { id } }", prescan: prescan, rules: specifiedRules) else {
            Issue.record("valid document refused")
            return
        }
        #expect(document.loc != nil)
    }
}
