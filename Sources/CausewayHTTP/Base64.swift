import NIOCore

/// Base64 (RFC 4648 §4, and the URL alphabet of §5 that HTTP2-Settings and proto3 JSON accept):
/// decoding with padding optional, encoding with padding.
public enum Base64 {
    /// 6-bit value by byte; 0xFF: not in either alphabet.
    public static let values: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(index) }
        table[Int(UInt8(ascii: "-"))] = 62
        table[Int(UInt8(ascii: "_"))] = 63
        return table
    }()
    @usableFromInline static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    public static func decode(_ text: String) -> [UInt8]? {
        decode(bytes: text.utf8)
    }

    /// `=` may end the text (once, at most two); anything else outside the alphabets is nil.
    @inlinable
    public static func decode(bytes text: some Collection<UInt8>) -> [UInt8]? {
        var output: [UInt8] = []
        output.reserveCapacity(text.count * 3 / 4)
        var accumulator: UInt32 = 0
        var bits = 0
        var padding = 0
        let table = values  // once: a global's accessor per byte costs a lazy-init check each time
        for byte in text {
            if byte == UInt8(ascii: "=") {
                padding += 1
                continue
            }
            let value = table[Int(byte)]
            guard value != 0xFF, padding == 0 else { return nil }
            accumulator = (accumulator << 6) | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                output.append(UInt8((accumulator >> UInt32(bits)) & 0xFF))
            }
        }
        // One character left over (6 bits) cannot be a byte.
        guard padding <= 2, bits < 6 else { return nil }
        return output
    }

    /// Appends `bytes` in base64 with padding.
    @inlinable
    public static func encode(_ bytes: some Collection<UInt8>, to buffer: inout ByteBuffer) {
        let alphabet = self.alphabet
        var iterator = bytes.makeIterator()
        while let first = iterator.next() {
            let second = iterator.next()
            let third = iterator.next()
            let group = UInt32(first) << 16 | UInt32(second ?? 0) << 8 | UInt32(third ?? 0)
            buffer.writeInteger(alphabet[Int(group >> 18)])
            buffer.writeInteger(alphabet[Int(group >> 12 & 0x3F)])
            buffer.writeInteger(second == nil ? UInt8(ascii: "=") : alphabet[Int(group >> 6 & 0x3F)])
            buffer.writeInteger(third == nil ? UInt8(ascii: "=") : alphabet[Int(group & 0x3F)])
        }
    }

    public static func encode(_ bytes: some Collection<UInt8>) -> String {
        var buffer = ByteBuffer()
        encode(bytes, to: &buffer)
        return buffer.readString(length: buffer.readableBytes) ?? ""
    }
}
