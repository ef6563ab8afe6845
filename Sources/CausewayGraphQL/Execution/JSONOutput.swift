import GraphQL

/// Plain values appended through a pointer: the writer appends a few bytes, and pushes and pops
/// its path, thousands of times per response, and `Array` checked uniqueness and capacity for
/// each. `OutputBuffer` is the response, `PathStack` the writer's place in it.
struct PointerBuffer<Element: BitwiseCopyable>: ~Copyable {
    private var base: UnsafeMutablePointer<Element>
    private var capacity: Int
    private(set) var count = 0

    init(capacity: Int = 32) {
        self.capacity = max(capacity, 32)
        base = .allocate(capacity: self.capacity)
    }

    deinit { base.deallocate() }

    var elements: [Element] { Array(UnsafeBufferPointer(start: base, count: count)) }

    @inline(__always) mutating func append(_ element: Element) {
        if count == capacity { grow(to: count + 1) }
        base[count] = element
        count += 1
    }

    @inline(__always) mutating func append(contentsOf elements: UnsafeBufferPointer<Element>) {
        if count + elements.count > capacity { grow(to: count + elements.count) }
        guard let source = elements.baseAddress else { return }
        if elements.count <= 16 {
            // Keys and values are mostly this short: a loop beats calling memmove.
            for offset in 0..<elements.count { base[count + offset] = source[offset] }
        } else {
            (base + count).update(from: source, count: elements.count)
        }
        count += elements.count
    }

    mutating func append(contentsOf elements: [Element]) {
        elements.withUnsafeBufferPointer { append(contentsOf: $0) }
    }

    @inline(__always) mutating func removeLast() {
        count -= 1
    }

    mutating func truncate(to count: Int) {
        self.count = count
    }

    private mutating func grow(to needed: Int) {
        var capacity = self.capacity * 2
        while capacity < needed { capacity *= 2 }
        let larger = UnsafeMutablePointer<Element>.allocate(capacity: capacity)
        larger.update(from: base, count: count)
        base.deallocate()
        base = larger
        self.capacity = capacity
    }
}

typealias OutputBuffer = PointerBuffer<UInt8>
/// A list index (>= 0) or a field (-1 - its id) per level.
typealias PathStack = PointerBuffer<Int>

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
