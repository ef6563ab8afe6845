/// The protobuf wire format, both ways: just what a descriptor-driven codec needs.
/// Readers bound-check every length against what is left, so a hostile message costs an error.

public struct ProtoError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

public enum WireType: UInt8, Sendable {
    case varint = 0, fixed64 = 1, lengthDelimited = 2, startGroup = 3, endGroup = 4, fixed32 = 5
}

public struct ProtoReader {
    let bytes: [UInt8]
    private(set) var index: Int
    let end: Int

    public init(_ bytes: [UInt8], range: Range<Int>? = nil) {
        self.bytes = bytes
        index = range?.lowerBound ?? 0
        end = range?.upperBound ?? bytes.count
    }

    public var isAtEnd: Bool { index >= end }

    public mutating func varint() throws(ProtoError) -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while index < end {
            let byte = bytes[index]
            index += 1
            if shift == 63 && byte > 1 { throw ProtoError("varint overflows 64 bits") }
            value |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return value }
            shift += 7
        }
        throw ProtoError("message ends inside a varint")
    }

    /// (field number, wire type).
    public mutating func tag() throws(ProtoError) -> (Int, WireType) {
        let key = try varint()
        guard let wire = WireType(rawValue: UInt8(key & 7)), key >> 3 > 0, key >> 3 <= 536_870_911 else {
            throw ProtoError("invalid field tag \(key)")
        }
        return (Int(key >> 3), wire)
    }

    public mutating func fixed32() throws(ProtoError) -> UInt32 {
        guard end - index >= 4 else { throw ProtoError("message ends inside a fixed32") }
        var value: UInt32 = 0
        for shift in 0..<4 { value |= UInt32(bytes[index + shift]) << (8 * UInt32(shift)) }
        index += 4
        return value
    }

    public mutating func fixed64() throws(ProtoError) -> UInt64 {
        guard end - index >= 8 else { throw ProtoError("message ends inside a fixed64") }
        var value: UInt64 = 0
        for shift in 0..<8 { value |= UInt64(bytes[index + shift]) << (8 * UInt64(shift)) }
        index += 8
        return value
    }

    public mutating func lengthDelimited() throws(ProtoError) -> Range<Int> {
        let length = try varint()
        guard length <= UInt64(end - index) else { throw ProtoError("a length of \(length) runs past the message") }
        let range = index..<(index + Int(length))
        index = range.upperBound
        return range
    }

    /// Skips a field's value (unknown fields); groups are skipped whole, nesting bounded.
    public mutating func skip(_ wire: WireType, depth: Int = 0) throws(ProtoError) {
        switch wire {
        case .varint: _ = try varint()
        case .fixed64: _ = try fixed64()
        case .fixed32: _ = try fixed32()
        case .lengthDelimited: _ = try lengthDelimited()
        case .startGroup:
            guard depth < 64 else { throw ProtoError("groups nested too deep") }
            while true {
                let (_, inner) = try tag()
                if inner == .endGroup { return }
                try skip(inner, depth: depth + 1)
            }
        case .endGroup: throw ProtoError("unexpected end of group")
        }
    }
}

public struct ProtoWriter {
    public var bytes: [UInt8] = []

    public init() {}

    public mutating func varint(_ value: UInt64) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(value & 0x7F) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }

    public mutating func tag(_ field: Int, _ wire: WireType) {
        varint(UInt64(field) << 3 | UInt64(wire.rawValue))
    }

    public mutating func fixed32(_ value: UInt32) {
        for shift in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt32(shift)))) }
    }

    public mutating func fixed64(_ value: UInt64) {
        for shift in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(shift)))) }
    }

    public mutating func lengthDelimited(_ field: Int, _ content: [UInt8]) {
        tag(field, .lengthDelimited)
        varint(UInt64(content.count))
        bytes += content
    }

    public mutating func string(_ field: Int, _ text: String) {
        lengthDelimited(field, Array(text.utf8))
    }
}

extension Int64 {
    var zigZag: UInt64 { UInt64(bitPattern: (self << 1) ^ (self >> 63)) }
}

extension UInt64 {
    var unZigZag: Int64 { Int64(bitPattern: (self >> 1) ^ (0 &- (self & 1))) }
}
