import NIOCore

/// A Redis reply (RESP2, and the RESP3 types a server may send: null, booleans, doubles, maps,
/// sets, big numbers, verbatim strings).
public indirect enum RESPValue: Sendable, Equatable {
    case simpleString(String)
    case error(String)
    case integer(Int64)
    /// nil: the null bulk string.
    case bulkString([UInt8]?)
    /// nil: the null array.
    case array([RESPValue]?)
    case null
    case boolean(Bool)
    case double(Double)
    case map([(RESPValue, RESPValue)])
    case bigNumber(String)

    public static func == (lhs: RESPValue, rhs: RESPValue) -> Bool {
        switch (lhs, rhs) {
        case (.simpleString(let a), .simpleString(let b)), (.error(let a), .error(let b)), (.bigNumber(let a), .bigNumber(let b)): a == b
        case (.integer(let a), .integer(let b)): a == b
        case (.bulkString(let a), .bulkString(let b)): a == b
        case (.array(let a), .array(let b)): a == b
        case (.null, .null): true
        case (.boolean(let a), .boolean(let b)): a == b
        case (.double(let a), .double(let b)): a == b
        case (.map(let a), .map(let b)): a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: false
        }
    }

    public var integer: Int64? {
        switch self {
        case .integer(let value): value
        case .bulkString(let bytes?): Int64(String(decoding: bytes, as: UTF8.self))
        case .simpleString(let text): Int64(text)
        default: nil
        }
    }

    public var text: String? {
        switch self {
        case .simpleString(let text), .bigNumber(let text): text
        case .bulkString(let bytes?): String(decoding: bytes, as: UTF8.self)
        default: nil
        }
    }
}

/// Parses replies from a byte stream as they complete; bounded so a hostile or broken server
/// costs the connection, never memory.
public struct RESPParser {
    public static let maxBulk = 64 << 20
    public static let maxElements = 1 << 20
    public static let maxDepth = 16

    public struct Malformed: Error, CustomStringConvertible {
        public let description: String
    }

    public init() {}

    /// One reply from the front of `buffer` (consumed), nil when it is not complete yet.
    public func parse(_ buffer: inout ByteBuffer) throws(Malformed) -> RESPValue? {
        var copy = buffer
        guard let value = try value(&copy, depth: 0) else { return nil }
        buffer = copy
        return value
    }

    private func line(_ buffer: inout ByteBuffer) throws(Malformed) -> String? {
        let view = buffer.readableBytesView
        guard let cr = view.firstIndex(of: 0x0D) else {
            if view.count > 64 << 10 { throw Malformed(description: "a reply line longer than 64 KiB") }
            return nil
        }
        guard cr + 1 < view.endIndex else { return nil }
        guard view[cr + 1] == 0x0A else { throw Malformed(description: "a reply line without CRLF") }
        let length = cr - view.startIndex
        let text = buffer.readString(length: length)
        buffer.moveReaderIndex(forwardBy: 2)
        return text
    }

    private func value(_ buffer: inout ByteBuffer, depth: Int) throws(Malformed) -> RESPValue? {
        guard depth < Self.maxDepth else { throw Malformed(description: "replies nested deeper than \(Self.maxDepth)") }
        guard let type = buffer.readInteger(as: UInt8.self) else { return nil }
        guard let text = try line(&buffer) else { return nil }
        switch type {
        case UInt8(ascii: "+"): return .simpleString(text)
        case UInt8(ascii: "-"): return .error(text)
        case UInt8(ascii: ":"):
            guard let number = Int64(text) else { throw Malformed(description: "a bad integer \(text.prefix(32))") }
            return .integer(number)
        case UInt8(ascii: "_"): return .null
        case UInt8(ascii: "#"): return .boolean(text == "t")
        case UInt8(ascii: ","): return .double(Double(text) ?? .nan)
        case UInt8(ascii: "("): return .bigNumber(text)
        case UInt8(ascii: "$"), UInt8(ascii: "="), UInt8(ascii: "!"):
            guard let length = Int(text), length >= -1, length <= Self.maxBulk else { throw Malformed(description: "a bad length \(text.prefix(32))") }
            if length == -1 { return .bulkString(nil) }
            guard buffer.readableBytes >= length + 2 else { return nil }
            let bytes = buffer.readBytes(length: length)!
            buffer.moveReaderIndex(forwardBy: 2)
            if type == UInt8(ascii: "!") { return .error(String(decoding: bytes, as: UTF8.self)) }
            return .bulkString(type == UInt8(ascii: "=") ? Array(bytes.dropFirst(4)) : bytes)
        case UInt8(ascii: "*"), UInt8(ascii: "~"), UInt8(ascii: ">"), UInt8(ascii: "%"):
            guard let count = Int(text), count >= -1, count <= Self.maxElements else { throw Malformed(description: "a bad count \(text.prefix(32))") }
            if count == -1 { return .array(nil) }
            if type == UInt8(ascii: "%") {
                var pairs: [(RESPValue, RESPValue)] = []
                for _ in 0..<count {
                    guard let key = try value(&buffer, depth: depth + 1), let item = try value(&buffer, depth: depth + 1) else { return nil }
                    pairs.append((key, item))
                }
                return .map(pairs)
            }
            var items: [RESPValue] = []
            items.reserveCapacity(min(count, 1024))
            for _ in 0..<count {
                guard let item = try value(&buffer, depth: depth + 1) else { return nil }
                items.append(item)
            }
            return .array(items)
        default:
            throw Malformed(description: "an unknown reply type \(type)")
        }
    }
}

/// A command as RESP: an array of bulk strings.
public enum RESPCommand {
    public static func encode(_ arguments: [String], into buffer: inout ByteBuffer) {
        buffer.writeString("*\(arguments.count)\r\n")
        for argument in arguments {
            buffer.writeString("$\(argument.utf8.count)\r\n")
            buffer.writeString(argument)
            buffer.writeString("\r\n")
        }
    }
}
