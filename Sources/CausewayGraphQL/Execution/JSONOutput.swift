import GraphQL

/// The writer's output, appended through a pointer: it appends a few bytes thousands of times
/// per response, and `Array.append` checked uniqueness and capacity for each.
struct OutputBuffer: ~Copyable {
    private var base: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    private(set) var count = 0

    init(capacity: Int) {
        self.capacity = max(capacity, 64)
        base = .allocate(capacity: self.capacity)
    }

    deinit { base.deallocate() }

    var bytes: [UInt8] { Array(UnsafeBufferPointer(start: base, count: count)) }

    @inline(__always) mutating func append(_ byte: UInt8) {
        if count == capacity { grow(to: count + 1) }
        base[count] = byte
        count += 1
    }

    @inline(__always) mutating func append(contentsOf bytes: UnsafeBufferPointer<UInt8>) {
        if count + bytes.count > capacity { grow(to: count + bytes.count) }
        guard let source = bytes.baseAddress else { return }
        if bytes.count <= 16 {
            // Keys and values are mostly this short: a loop beats calling memmove.
            for offset in 0..<bytes.count { base[count + offset] = source[offset] }
        } else {
            (base + count).update(from: source, count: bytes.count)
        }
        count += bytes.count
    }

    mutating func append(contentsOf bytes: [UInt8]) {
        bytes.withUnsafeBufferPointer { append(contentsOf: $0) }
    }

    mutating func truncate(to count: Int) {
        self.count = count
    }

    private mutating func grow(to needed: Int) {
        var capacity = self.capacity * 2
        while capacity < needed { capacity *= 2 }
        let larger = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
        larger.update(from: base, count: count)
        base.deallocate()
        base = larger
        self.capacity = capacity
    }
}

/// The writer's place, pushed and popped for every field and list item (through a pointer, for
/// the same reason as `OutputBuffer`).
struct PathStack: ~Copyable {
    private var base = UnsafeMutablePointer<Int>.allocate(capacity: 32)
    private var capacity = 32
    private var count = 0

    deinit { base.deallocate() }

    @inline(__always) mutating func append(_ step: Int) {
        if count == capacity {
            let larger = UnsafeMutablePointer<Int>.allocate(capacity: capacity * 2)
            larger.update(from: base, count: count)
            base.deallocate()
            base = larger
            capacity *= 2
        }
        base[count] = step
        count += 1
    }

    @inline(__always) mutating func removeLast() {
        count -= 1
    }

    var elements: [Int] { Array(UnsafeBufferPointer(start: base, count: count)) }
}

/// Compact JSON text for GraphQLSwift's `Map` (object keys in their order; `/` and non-ASCII
/// as they are).
enum JSONWriter {
    static let null = Array("null".utf8)

    static func text(_ map: Map) -> String {
        var out: [UInt8] = []
        write(map, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    static func write(_ map: Map, into out: inout [UInt8]) {
        switch map {
        case .null, .undefined: out.append(contentsOf: null)
        case .bool(let value): out.append(contentsOf: (value ? "true" : "false").utf8)
        case .number: out.append(contentsOf: (map.templateText ?? "null").utf8)
        case .string(let text): writeString(text, into: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (index, item) in items.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                write(item, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .dictionary(let fields):
            out.append(UInt8(ascii: "{"))
            for (index, (key, value)) in fields.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                writeString(key, into: &out)
                out.append(UInt8(ascii: ":"))
                write(value, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static func quoted(_ text: String) -> String {
        var out: [UInt8] = []
        writeString(text, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    static func writeString(_ text: String, into out: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: #"\""#.utf8)
            case UInt8(ascii: "\\"): out.append(contentsOf: #"\\"#.utf8)
            case 0x0A: out.append(contentsOf: #"\n"#.utf8)
            case 0x0D: out.append(contentsOf: #"\r"#.utf8)
            case 0x09: out.append(contentsOf: #"\t"#.utf8)
            case ..<0x20: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                                                  hex[Int(byte >> 4)], hex[Int(byte & 15)]])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
