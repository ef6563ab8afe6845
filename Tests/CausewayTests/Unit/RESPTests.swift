import NIOCore
import Testing

@testable import CausewayRedis

@Suite struct RESPTests {
    func parse(_ text: String) throws -> [RESPValue] {
        var buffer = ByteBuffer(string: text)
        var values: [RESPValue] = []
        while let value = try RESPParser().parse(&buffer) { values.append(value) }
        #expect(buffer.readableBytes == 0, "left over: \(buffer.readableBytes)")
        return values
    }

    @Test func repliesOfEveryKindParse() throws {
        #expect(try parse("+OK\r\n-ERR no\r\n:42\r\n$3\r\nabc\r\n$-1\r\n*2\r\n:1\r\n$1\r\nx\r\n*-1\r\n")
            == [.simpleString("OK"), .error("ERR no"), .integer(42), .bulkString(Array("abc".utf8)), .bulkString(nil),
                .array([.integer(1), .bulkString([0x78])]), .array(nil)])
        #expect(try parse("_\r\n#t\r\n,1.5\r\n%1\r\n+k\r\n:2\r\n") == [.null, .boolean(true), .double(1.5), .map([(.simpleString("k"), .integer(2))])])
    }

    @Test func partialRepliesWaitForTheirBytes() throws {
        var buffer = ByteBuffer(string: "*2\r\n:1\r\n$5\r\nhel")
        #expect(try RESPParser().parse(&buffer) == nil)
        #expect(buffer.readableBytes == 15)  // nothing consumed
        buffer.writeString("lo\r\n")
        #expect(try RESPParser().parse(&buffer) == .array([.integer(1), .bulkString(Array("hello".utf8))]))
    }

    @Test func hostileRepliesAreErrors() {
        for bad in ["$99999999999\r\n", "*5000000\r\n", "?x\r\n", ":abc\r\n", "+no-lf\rX", String(repeating: "*1\r\n", count: 40) + ":1\r\n"] {
            var buffer = ByteBuffer(string: bad)
            #expect(throws: RESPParser.Malformed.self, "\(bad.prefix(20))") { _ = try RESPParser().parse(&buffer) }
        }
    }

    @Test func commandsAreArraysOfBulkStrings() {
        var buffer = ByteBuffer()
        RESPCommand.encode(["SET", "k", "vé"], into: &buffer)
        #expect(String(buffer: buffer) == "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nvé\r\n")
    }
}
