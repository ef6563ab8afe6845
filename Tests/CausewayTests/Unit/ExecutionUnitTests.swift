import GraphQL
import Testing

@testable import CausewayGraphQL

/// The executor's small parts on their own: how batch keys compare, the slot table behind
/// batching, decimals written short, and leaf serialization by graphql-js's rules.
@Suite struct ExecutionUnitTests {
    /// The keys of `json` (an array), as the batching code reads them.
    func keys(_ json: String) throws -> [BatchKey?] {
        let tape = try JSONTape(parsing: Array(json.utf8))
        return tape.withView { view in view.items(0).map { BatchKey(view, $0) } }
    }

    func slot(_ key: BatchKey?, in slots: inout BatchSlots) -> Int? {
        key.map { slots.slot(for: $0) }
    }

    @Test func batchKeysMatchAsTemplatesRenderThem() throws {
        let parents = try keys(#"[7, "8", "09", -3, "-0", "a\/b", true, 1.5, null, {"x": 1}]"#)
        let items = try keys(#"["7", 8, "09", "-3", "-0", "a/b", "true", "1.5", null, {"x": 1}]"#)
        var slots = BatchSlots(expected: parents.count)
        let parentSlots = parents.map { slot($0, in: &slots) }
        #expect(parentSlots == [0, 1, 2, 3, 4, 5, 6, 7, nil, nil], "null and objects have no key")
        let itemSlots = items.map { $0.flatMap { slots.existing($0) } }
        #expect(itemSlots == [0, 1, 2, 3, 4, 5, 6, 7, nil, nil], "7 and \"7\" are one key; \"09\", \"-0\" and escapes by their text")
        let leading = try keys(#"["9", 9.0]"#)
        #expect(slots.existing(leading[0]!) == nil && slots.existing(leading[1]!) == nil, "\"09\" is not 9; 9.0 renders as 9")
        #expect(leading[1]!.text == "9")
    }

    @Test func theSlotTableHoldsManyKeysWithoutMixingThemUp() {
        let values = (0..<5000).map { $0 * 7919 - 20_000 } + [Int.max / 3, Int.min / 3]
        var slots = BatchSlots(expected: values.count)
        for (index, value) in values.enumerated() {
            #expect(slots.slot(for: .integer(value)) == index)
        }
        for (index, value) in values.enumerated() where index % 97 == 0 {
            #expect(slots.slot(for: .integer(value)) == index, "a known key keeps its slot")
            #expect(slots.existing(.integer(value)) == index)
        }
        #expect(slots.existing(.integer(1)) == nil)
        #expect(slots.count == values.count)
    }

    @Test func decimalsAreWrittenInTheirShortestForm() {
        func short(_ text: String) -> String? {
            Array(text.utf8).withUnsafeBufferPointer { ResponseWriter.shortDecimal($0).map { String(decoding: $0, as: UTF8.self) } }
        }
        #expect(short("2.50") == "2.5")
        #expect(short("12.000") == "12")
        #expect(short("-0.10") == "-0.1")
        #expect(short("1e5") == nil, "exponents take the general path")
        #expect(short("0.1234567890123456") == nil, "more than 15 digits take the general path")
    }

    @Test func leavesSerializeByGraphQLJSRules() throws {
        func serialize(_ value: Map, _ leaf: OutputPlan.Leaf) -> String {
            do {
                return JSONWriter.text(try ResponseWriter.serialize(value, as: leaf, type: nil))
            } catch {
                return "error: " + ((error as? GraphQLError)?.message ?? "\(error)")
            }
        }
        #expect(serialize(.number(3.0), .int) == "3")
        #expect(serialize(.string("12"), .int) == "12")
        #expect(serialize(.bool(true), .int) == "1")
        #expect(serialize(.number(3_000_000_000), .int) == "error: Int cannot represent non 32-bit signed integer value: 3000000000")
        #expect(serialize(.number(1.5), .int) == "error: Int cannot represent non-integer value: 1.5")
        #expect(serialize(.string("x"), .float) == #"error: Float cannot represent non numeric value: "x""#)
        #expect(serialize(.number(12), .string) == #""12""#)
        #expect(serialize(.bool(false), .string) == #""false""#)
        #expect(serialize(.dictionary([:]), .string) == "error: String cannot represent value: {}")
        #expect(serialize(.number(0), .boolean) == "false")
        #expect(serialize(.string("yes"), .boolean) == #"error: Boolean cannot represent a non boolean value: "yes""#)
        #expect(serialize(.number(7), .id) == #""7""#)
        #expect(serialize(.bool(true), .id) == "error: ID cannot represent value: true")
    }
}
