import Foundation
import GraphQL
import OrderedCollections
import Testing

@testable import CausewayGraphQL

/// The upstream-JSON parser against Foundation's decoder, and on the inputs RFC 8259 refuses.
@Suite struct JSONParserTests {
    func parse(_ text: String) throws -> Map { try JSONParser.parse(Array(text.utf8)) }

    @Test func agreesWithFoundationOnRealisticDocuments() throws {
        let samples = [
            #"{"users":[{"id":"1","name":"Ada","score":42.5,"tags":["a","b"],"active":true,"boss":null}],"count":1}"#,
            #"[1, -2, 3.25, -0.5, 1e3, 2.5E-3, 0, 123456789012]"#,
            #"{"text":"line\nbreak \"quoted\" tab\t slash\/ é \u00e9 😀 \ud83d\ude00 \\ end"}"#,
            "  {\n \"a\" : [ { } , [ ] , \"\" ] \r\n}\t",
            #""just a string""#,
        ]
        for sample in samples {
            let ours = try parse(sample)
            let foundation = try JSONDecoder().decode(Map.self, from: Data(sample.utf8))
            // Foundation reads every number as a Double and does not keep key order: compare as
            // JSON text with sorted keys, where 1 and 1.0 agree.
            #expect(JSONWriter.text(canonical(ours)) == JSONWriter.text(canonical(foundation)), "\(sample)")
        }
    }

    func canonical(_ map: Map) -> Map {
        switch map {
        case .dictionary(let fields):
            var sorted = OrderedDictionary<String, Map>()
            for key in fields.keys.sorted() { sorted[key] = canonical(fields[key]!) }
            return .dictionary(sorted)
        case .array(let items): return .array(items.map(canonical))
        default: return map
        }
    }

    @Test func keepsKeyOrderAndIntegers() throws {
        guard case .dictionary(let fields) = try parse(#"{"z": 1, "a": 2, "m": 3}"#) else {
            Issue.record("not an object")
            return
        }
        #expect(Array(fields.keys) == ["z", "a", "m"])
        #expect(fields["z"] == .number(Number(1)))
    }

    @Test func refusesWhatRFC8259Refuses() {
        for bad in [#"{"a":1,}"#, "[1,]", #"{"a" 1}"#, #""unterminated"#, "01", "1.", "-", ".5", "tru", "[1] 2",
                    #""\x""#, "\"\u{01}\"", #""\ud83d""#, #""\ud83d\u0041""#, #""\udc00""#, "[1 2]", #"{"a":1 "b":2}"#,
                    #"{"a"}"#, #"{1:2}"#, "1e", "-01", "[", #"{"a":"#, String(repeating: "[", count: 600) + String(repeating: "]", count: 600), ""] {
            #expect(throws: JSONParser.Failure.self, "\(bad.prefix(20))") { try parse(bad) }
        }
        for bytes: [UInt8] in [[0x22, 0xC3, 0x28, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22], [0x22, 0xF8, 0x22]] {  // not UTF-8
            #expect(throws: JSONParser.Failure.self) { try JSONParser.parse(bytes) }
        }
    }
}
