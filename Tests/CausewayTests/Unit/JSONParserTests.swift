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

    /// Random documents (seeded, so a failure repeats): what Foundation writes, the tape reads
    /// back the same; and every mangled copy is either read or refused, never a crash.
    @Test func randomDocumentsAndTheirMangledCopies() throws {
        var random = SplitMix(seed: 0xC0FFEE)
        for round in 0..<1000 {
            let value = randomValue(&random, depth: 0)
            let data = try JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed])
            let ours = try JSONParser.parse(Array(data))
            let foundation = try JSONDecoder().decode(Map.self, from: data)
            #expect(JSONWriter.text(canonical(ours)) == JSONWriter.text(canonical(foundation)), "round \(round)")
            var bytes = Array(data)
            for _ in 0..<8 {
                guard !bytes.isEmpty else { break }
                let at = Int(random.next() % UInt64(bytes.count))
                switch random.next() % 3 {
                case 0: bytes[at] = UInt8(truncatingIfNeeded: random.next())
                case 1: bytes.remove(at: at)
                default:
                    let punctuation = Array(#"{}[]",:\"#.utf8)
                    bytes.insert(punctuation[Int(random.next() % UInt64(punctuation.count))], at: at)
                }
                _ = try? JSONParser.parse(bytes)  // must return or throw
            }
        }
    }

    func randomValue(_ random: inout SplitMix, depth: Int) -> Any {
        switch random.next() % (depth < 4 ? 7 : 5) {
        case 0: return NSNull()
        case 1: return random.next() % 2 == 0
        case 2: return Int(truncatingIfNeeded: random.next() >> 20) - (1 << 42)
        case 3: return Double(Int(truncatingIfNeeded: random.next() % 2_000_000)) / 128 - 7000
        case 4:
            let alphabet = Array("az09 \"\\/\n\téß😀\u{1}\u{7f}")
            return String((0..<Int(random.next() % 12)).map { _ in alphabet[Int(random.next() % UInt64(alphabet.count))] })
        case 5: return (0..<Int(random.next() % 5)).map { _ in randomValue(&random, depth: depth + 1) }
        default:
            var object: [String: Any] = [:]
            for index in 0..<Int(random.next() % 5) { object["k\(index)\(random.next() % 3)"] = randomValue(&random, depth: depth + 1) }
            return object
        }
    }
}

/// A small seeded generator, so the random documents are the same on every run.
struct SplitMix {
    var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Inputs the fuzzers found, kept so they stay fixed.
struct JSONParserFuzzFindings {
    @Test func unclosedArraysDoNotOverrunTheEntryBuffer() {
        // 600 "[" opened one entry per byte while the buffer holds n / 2 + 1: a heap overflow.
        for text in [String(repeating: "[", count: 600), String(repeating: "[", count: 511) + "1",
                     String(repeating: "{\"a\":", count: 300), "[" + String(repeating: "1,", count: 1000)] {
            #expect(throws: JSONTape.Failure.self) { try JSONTape(parsing: Array(text.utf8)) }
        }
        var tape = JSONTape()
        #expect(throws: JSONTape.Failure.self) { _ = try tape.append(parsing: Array(String(repeating: "[", count: 100).utf8)) }
        #expect((try? tape.append(parsing: Array("[[1,2],{\"a\":[]}]".utf8))) == 0)
    }
}
