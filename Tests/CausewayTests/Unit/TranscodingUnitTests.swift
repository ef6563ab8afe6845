import Foundation
import NIOCore
import Testing

@testable import CausewayHTTP
@testable import CausewayTranscoding

@Suite struct PathTemplateTests {
    func values(_ template: String, _ path: String) throws -> [String: String]? {
        try PathTemplate(template).match(Substring(path)).map { Dictionary(uniqueKeysWithValues: $0.map { ($0.fieldPath.joined(separator: "."), $0.value) }) }
    }

    @Test func variablesWildcardsAndVerbs() throws {
        #expect(try values("/v1/{name}", "/v1/ada") == ["name": "ada"])
        #expect(try values("/v1/{name=shelves/*/books/*}", "/v1/shelves/1/books/2") == ["name": "shelves/1/books/2"])
        #expect(try values("/v1/{book.name=shelves/*/books/*}", "/v1/shelves/1/books/2") == ["book.name": "shelves/1/books/2"])
        #expect(try values("/v1/files/{path=**}", "/v1/files/a/b/c.txt") == ["path": "a/b/c.txt"])
        #expect(try values("/v1/{a}/x/{b=**}/end", "/v1/1/x/2/3/end") == ["a": "1", "b": "2/3"])
        #expect(try values("/v1/{name=shelves/*}:clear", "/v1/shelves/7:clear") == ["name": "shelves/7"])
        #expect(try values("/v1/{name=shelves/*}:clear", "/v1/shelves/7:burn") == nil)
        // A ':' in the last segment is a verb: a template without one does not take it.
        #expect(try values("/v1/{name=shelves/*}", "/v1/shelves/7:clear") == nil)
        #expect(try values("/v1/{name=shelves/*}", "/v1/shelves/7%3Aclear") == ["name": "shelves/7:clear"])
        #expect(try values("/v1/{name}", "/v1/a/b") == nil)
        #expect(try values("/v1/{name}", "/v1/") == nil)
        #expect(try values("/v1/literal", "/v1/other") == nil)
    }

    @Test func percentDecodingKeepsSlashesInMultiSegmentValues() throws {
        #expect(try values("/v1/{name}", "/v1/a%2Fb%20c") == ["name": "a/b c"])
        #expect(try values("/v1/{name=**}", "/v1/a%2Fb/c") == ["name": "a%2Fb/c"])
        #expect(try values("/v1/{name}", "/v1/bad%zz") == nil)
        #expect(try values("/v1/{name}", "/v1/%ff") == nil)  // not UTF-8
    }

    @Test func malformedTemplatesAreRefused() {
        for bad in ["v1/x", "/v1/{name", "/v1/**/**", "/v1//x", "/v1/{=x}", "/v1/x:"] {
            #expect(throws: ProtoError.self, "\(bad)") { try PathTemplate(bad) }
        }
    }
}

@Suite struct WellKnownTimeTests {
    @Test func timestampsRoundTripAtTheEdgesOfTheirRange() throws {
        for text in ["1970-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "2024-02-29T12:00:00.500Z",
                     "1969-12-31T23:59:59.000001Z"] {
            let (seconds, nanos) = try WellKnownTime.parseTimestamp(text, path: "t")
            #expect(try WellKnownTime.formatTimestamp(seconds: seconds, nanos: nanos) == text)
        }
        #expect(try WellKnownTime.parseTimestamp("1970-01-01T01:00:00+01:00", path: "t") == (0, 0))
        for bad in ["2023-02-29T00:00:00Z", "1970-01-01 00:00:00Z", "1970-01-01T00:00:00", "10000-01-01T00:00:00Z",
                    "1970-01-01T00:00:00.1234567890Z", "1970-13-01T00:00:00Z", "0000-12-31T23:59:59Z"] {
            #expect(throws: ProtoError.self, "\(bad)") { try WellKnownTime.parseTimestamp(bad, path: "t") }
        }
        #expect(throws: ProtoError.self) { try WellKnownTime.formatTimestamp(seconds: .max, nanos: 0) }
    }

    @Test func durationsKeepTheirSignAndPrintThreeSixOrNineDigits() throws {
        #expect(try WellKnownTime.parseDuration("-1.5s", path: "d") == (-1, -500_000_000))
        #expect(try WellKnownTime.formatDuration(seconds: -1, nanos: -500_000_000) == "-1.500s")
        #expect(try WellKnownTime.formatDuration(seconds: 0, nanos: -500_000_000) == "-0.500s")
        #expect(try WellKnownTime.formatDuration(seconds: 3, nanos: 0) == "3s")
        #expect(try WellKnownTime.formatDuration(seconds: 1, nanos: 123_400_000) == "1.123400s")
        for bad in ["1", "1.s", "s", "--1s", "1.0000000001s", "315576000001s", "1e3s", "+1s"] {
            #expect(throws: ProtoError.self, "\(bad)") { try WellKnownTime.parseDuration(bad, path: "d") }
        }
    }
}

@Suite struct TranscodingJSONTests {
    @Test func documentsParseStrictly() throws {
        #expect(try JSONParser.parse(Array(#"{"a":[1,-2.5e3,"x\u00e9\ud83d\ude00",true,null]}"#.utf8))
            == .object([("a", .array([.number("1"), .number("-2.5e3"), .string("xé😀"), .bool(true), .null]))]))
        for bad in ["", "{", "[1,]", "{\"a\":1,}", "01", "1.", "-", "\"\\ud800\"", "\"a\u{1}\"", "nul", "{} {}", "[1 2]", "\"\\x\""] {
            #expect(throws: ProtoError.self, "\(bad)") { try JSONParser.parse(Array(bad.utf8)) }
        }
    }

    @Test func depthIsBoundedBeforeTheNestedPartIsRead() throws {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: ProtoError.self) { try JSONParser.parse(Array(deep.utf8)) }
        #expect(throws: Never.self) { try JSONParser.parse(Array((String(repeating: "[", count: 64) + String(repeating: "]", count: 64)).utf8)) }
    }
}

@Suite struct ProtoWireTests {
    @Test func hostileBytesAreErrorsNotCrashes() {
        let cases: [[UInt8]] = [
            [0x08],  // a tag, then nothing
            [0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],  // an 11-byte varint
            [0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F],  // a length of 4 GiB
            [0x00],  // field number 0
            [0x0B, 0x0B, 0x0B],  // groups that never end
            [0x0C],  // an end of group out of nowhere
        ]
        for bytes in cases {
            var reader = ProtoReader(bytes)
            #expect(throws: ProtoError.self, "\(bytes)") {
                while !reader.isAtEnd {
                    let (_, wire) = try reader.tag()
                    try reader.skip(wire)
                }
            }
        }
    }
}

/// The demo's committed descriptor set, read the way the gateway reads it.
@Suite struct DescriptorTranscodingTests {
    func demo() throws -> Transcoder {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../../protos/demo.pb")
        return try Transcoder(descriptorSet: Array(try Data(contentsOf: url)), services: ["demo.v1.Greeter"], options: .init())
    }

    @Test func rulesOfTheDemoServiceMatchAndBuildTheRequestMessage() throws {
        let transcoder = try demo()
        guard case .call(let get) = transcoder.match(method: "GET", path: "/v1/greetings/ada") else {
            Issue.record("no match")
            return
        }
        #expect(get.binding.method.grpcPath == "/demo.v1.Greeter/SayHello")
        let messages = try transcoder.requestMessages(get, query: "count=3", body: [])
        // name = "ada" (field 1), count = 3 (field 2).
        #expect(messages == [[0x0A, 3, 0x61, 0x64, 0x61, 0x10, 3]])
        guard case .call(let post) = transcoder.match(method: "POST", path: "/v1/greetings") else {
            Issue.record("no match")
            return
        }
        #expect(try transcoder.requestMessages(post, query: nil, body: Array(#"{"name":"x","count":"7"}"#.utf8)) == [[0x0A, 1, 0x78, 0x10, 7]])
        #expect(throws: ProtoError.self) { try transcoder.requestMessages(post, query: nil, body: Array(#"{"nmae":"x"}"#.utf8)) }
        #expect(throws: ProtoError.self) { try transcoder.requestMessages(post, query: nil, body: Array(#"{"count":2147483648}"#.utf8)) }
        if case .methodNotAllowed(let allowed) = transcoder.match(method: "DELETE", path: "/v1/greetings/ada") {
            #expect(allowed == ["GET"])
        } else {
            Issue.record("DELETE should be 405")
        }
        #expect(transcoder.matchesPath("/v1/greetings/ada/stream") && !transcoder.matchesPath("/v2/greetings"))
    }

    @Test func aReplyPrintsInProto3JSON() throws {
        let transcoder = try demo()
        guard case .call(let call) = transcoder.match(method: "GET", path: "/v1/greetings/ada") else { return }
        // message "hi", sent_at {seconds 1, nanos 5000000}, sequence 2^53 + 1, an unknown field 9.
        var writer = ProtoWriter()
        writer.string(1, "hi")
        var time = ProtoWriter()
        time.tag(1, .varint)
        time.varint(1)
        time.tag(2, .varint)
        time.varint(5_000_000)
        writer.lengthDelimited(2, time.bytes)
        writer.tag(3, .varint)
        writer.varint(9_007_199_254_740_993)
        writer.tag(9, .varint)
        writer.varint(1)
        var out = ByteBuffer()
        try transcoder.printResponse(writer.bytes, binding: call.binding, into: &out)
        #expect(String(buffer: out) == #"{"message":"hi","sentAt":"1970-01-01T00:00:01.005Z","sequence":"9007199254740993"}"#)
        var status = ByteBuffer()
        transcoder.printStatus(code: 5, message: "nö \"x\"", details: nil, into: &status)
        #expect(String(buffer: status) == #"{"code":5,"message":"nö \"x\"","details":[]}"#)
        #expect(Transcoder.httpStatus(forGRPC: 5) == 404 && Transcoder.httpStatus(forGRPC: 14) == 503 && Transcoder.httpStatus(forGRPC: 1) == 499)
    }

    @Test func aSetThatLacksImportsOrServicesIsRefused() throws {
        #expect(throws: ProtoError.self) { try Transcoder(descriptorSet: [], services: [], options: .init()) }
        #expect(throws: ProtoError.self) { try Transcoder(descriptorSet: [0x0A, 0x02, 0x0A, 0x00], services: [], options: .init()) }
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../../protos/demo.pb")
        let bytes = Array(try Data(contentsOf: url))
        #expect(throws: ProtoError.self) { try Transcoder(descriptorSet: bytes, services: ["demo.v1.Nope"], options: .init()) }
    }
}
