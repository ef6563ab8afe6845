import GraphQL
import OrderedCollections

/// RFC 8259 JSON parsed once into a flat list of entries over the original bytes: the
/// executor reads upstream answers from here and writes strings and numbers to the response
/// as the bytes they already are, so no per-value objects or strings are made. Object keys keep
/// their order; integers stay integers.
///
/// Layout: a container's entry is followed by its members (an object's as key, value pairs),
/// and `link` is the index after its last member, so any value is skipped in one step.
/// Everything is validated here (grammar, escapes, surrogates, UTF-8), which is what makes
/// copying raw bytes to the response safe.
public struct JSONTape: Sendable {
    public enum Kind: UInt8, Sendable {
        case object, array, string, number, `true`, `false`, null
    }

    struct Entry: Sendable {
        var kind: Kind
        /// Strings: has escapes. Numbers: an integer (no fraction, no exponent).
        var flag: Bool
        /// Byte range: a string's contents (inside the quotes), a number's text, a container's
        /// whole text.
        var start: UInt32
        var end: UInt32
        /// Containers: the index of the entry after the last member; others: index + 1.
        var link: UInt32
    }

    public private(set) var bytes: [UInt8]
    private(set) var entries: [Entry]

    public struct Failure: Error, CustomStringConvertible {
        var offset: Int
        var reason: String
        public var description: String { "invalid JSON at byte \(offset): \(reason)" }
    }

    /// An empty tape, for `append(parsing:)`.
    public init() {
        bytes = []
        entries = []
    }

    public init(parsing text: [UInt8]) throws(Failure) {
        self.init()
        _ = try append(parsing: text)
    }

    /// Parses `text` onto the end of this tape (so one tape holds all of a run's answers and a
    /// value is just an entry index); returns the index of its root. Nothing is added when the
    /// text is not JSON.
    public mutating func append(parsing text: [UInt8]) throws(Failure) -> Int {
        let base = bytes.count
        let root = entries.count
        guard base + text.count < Int(UInt32.max) else { throw Failure(offset: 0, reason: "larger than 4 GiB") }
        // Every entry starts at its own byte and all but the last are followed by a separator
        // or a closing bracket, so a text of n bytes has at most n / 2 + 1 of them.
        var failure: Failure?
        let capacity = text.count / 2 + 1
        let parsed = [Entry](unsafeUninitializedCapacity: capacity) { buffer, count in
            text.withUnsafeBufferPointer { text in
                var parser = Parser(text: text, entries: buffer.baseAddress!, capacity: capacity, base: UInt32(base),
                                    first: UInt32(root))
                do throws(Failure) {
                    try parser.parse()
                } catch {
                    failure = error
                }
                count = parser.count
            }
        }
        if let failure { throw failure }
        if entries.isEmpty {  // the first answer: take the arrays as they are, no copies
            entries = parsed
            bytes = text
        } else {
            entries.append(contentsOf: parsed)
            bytes.append(contentsOf: text)
        }
        return root
    }

    // MARK: Reading

    /// Reads the tape through pointers, without reference counting: valid only inside
    /// `withView`, while the tape is not changed.
    func withView<Result>(_ body: (View) throws -> Result) rethrows -> Result {
        try bytes.withUnsafeBufferPointer { bytes in
            try entries.withUnsafeBufferPointer { entries in try body(View(bytes: bytes, entries: entries)) }
        }
    }

    /// The value at `index` as GraphQLSwift's `Map`.
    public func map(_ index: Int = 0) -> Map {
        withView { $0.map(index) }
    }

    struct View {
        let bytes: UnsafeBufferPointer<UInt8>
        let entries: UnsafeBufferPointer<Entry>

        @inline(__always) func kind(_ index: Int) -> Kind { entries[index].kind }

        /// Strings: has escapes. Numbers: an integer.
        @inline(__always) func flag(_ index: Int) -> Bool { entries[index].flag }

        /// The index after `index`'s value (and all it contains).
        @inline(__always) func next(_ index: Int) -> Int { Int(entries[index].link) }

        func rawRange(_ index: Int) -> Range<Int> { Int(entries[index].start)..<Int(entries[index].end) }

        func raw(_ index: Int) -> UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(rebasing: bytes[rawRange(index)]) }

        /// The value of `object`'s member `key` (its first: JSON objects should not repeat keys).
        func member(_ object: Int, _ key: UnsafeBufferPointer<UInt8>) -> Int? {
            var index = object + 1
            let end = Int(entries[object].link)
            while index < end {
                let entry = entries[index]
                if entry.flag {
                    if Array(string(index).utf8).elementsEqual(key) { return index + 1 }
                } else if Int(entry.end - entry.start) == key.count {
                    // Keys are short: a loop beats calling memcmp.
                    var offset = 0
                    let start = Int(entry.start)
                    while offset < key.count && bytes[start + offset] == key[offset] { offset += 1 }
                    if offset == key.count { return index + 1 }
                }
                index = Int(entries[index + 1].link)
            }
            return nil
        }

        func member(_ object: Int, _ key: [UInt8]) -> Int? {
            key.withUnsafeBufferPointer { member(object, $0) }
        }

        /// The items of an array.
        func items(_ array: Int) -> [Int] {
            var out: [Int] = []
            var index = array + 1
            let end = Int(entries[array].link)
            while index < end {
                out.append(index)
                index = next(index)
            }
            return out
        }

        /// A string's value, escapes decoded.
        func string(_ index: Int) -> String {
            let entry = entries[index]
            let raw = UnsafeBufferPointer(rebasing: bytes[Int(entry.start)..<Int(entry.end)])
            guard entry.flag else { return String(decoding: raw, as: UTF8.self) }
            var out: [UInt8] = []
            out.reserveCapacity(raw.count)
            var offset = 0
            while offset < raw.count {
                let byte = raw[offset]
                offset += 1
                guard byte == UInt8(ascii: "\\") else {
                    out.append(byte)
                    continue
                }
                let escaped = raw[offset]
                offset += 1
                switch escaped {
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = JSONTape.hex4(raw, offset)
                    offset += 4
                    if (0xD800..<0xDC00).contains(scalar) {  // validated: a low surrogate follows
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (JSONTape.hex4(raw, offset + 2) - 0xDC00)
                        offset += 6
                    }
                    out.append(contentsOf: String(Character(Unicode.Scalar(scalar)!)).utf8)
                default: out.append(escaped)  // \" \\ \/
                }
            }
            return String(decoding: out, as: UTF8.self)
        }

        /// Text for a URL template or a batch key: strings as they are, numbers without a
        /// trailing ".0", booleans as true/false; nil for null, arrays and objects.
        func templateText(_ index: Int) -> String? {
            switch entries[index].kind {
            case .string: string(index)
            case .number: flag(index) ? String(decoding: raw(index), as: UTF8.self) : map(index).templateText
            case .true: "true"
            case .false: "false"
            default: nil
            }
        }

        func map(_ index: Int) -> Map {
            switch entries[index].kind {
            case .null: return .null
            case .true: return .bool(true)
            case .false: return .bool(false)
            case .string: return .string(string(index))
            case .number:
                let text = String(decoding: raw(index), as: UTF8.self)
                if flag(index), let value = Int(text) { return .number(Number(value)) }
                return .number(Number(Double(text) ?? 0))
            case .array: return .array(items(index).map { map($0) })
            case .object:
                var fields = OrderedDictionary<String, Map>()
                var member = index + 1
                while member < next(index) {
                    fields[string(member)] = map(member + 1)
                    member = next(member + 1)
                }
                return .dictionary(fields)
            }
        }
    }

    static func hex4(_ bytes: UnsafeBufferPointer<UInt8>, _ offset: Int) -> UInt32 {
        var value: UInt32 = 0
        for byte in bytes[offset..<offset + 4] {
            let digit: UInt8 = switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
            default: byte - UInt8(ascii: "A") + 10
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }
}

/// JSON text into GraphQLSwift's `Map` (request bodies, variables), through the tape.
public enum JSONParser {
    public typealias Failure = JSONTape.Failure

    public static func parse(_ bytes: [UInt8]) throws(Failure) -> Map {
        try JSONTape(parsing: bytes).map()
    }

    /// As `parse`, refusing text of more than `maxValues` values before they become `Map`s
    /// (parsing onto the tape is ~1 GB/s; building maps costs ~0.5 µs a value, so 80,000
    /// variables in a 1.3 MB body held the loop 49 ms).
    public static func parse(_ bytes: [UInt8], maxValues: Int) throws(Failure) -> Map {
        let tape = try JSONTape(parsing: bytes)
        guard tape.entries.count <= maxValues else {
            throw Failure(offset: 0, reason: "more than \(maxValues) values")
        }
        return tape.map()
    }
}
