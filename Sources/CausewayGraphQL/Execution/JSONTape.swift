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
        let parsed = [Entry](unsafeUninitializedCapacity: text.count / 2 + 1) { buffer, count in
            text.withUnsafeBufferPointer { text in
                var parser = Parser(text: text, entries: buffer.baseAddress!, base: UInt32(base), first: UInt32(root))
                do throws(Failure) {
                    try parser.parse()
                } catch {
                    failure = error
                }
                count = parser.count
            }
        }
        if let failure { throw failure }
        entries.append(contentsOf: parsed)
        bytes.append(contentsOf: text)
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

    // MARK: Parsing

    /// One pass over the text, without recursion (open containers on a stack of at most 512)
    /// and with the position in a local, writing entries straight into their buffer.
    private struct Parser {
        let text: UnsafeBufferPointer<UInt8>
        let entries: UnsafeMutablePointer<Entry>
        /// Where the text starts in the tape's bytes, and its first entry in the tape's entries.
        let base: UInt32
        let first: UInt32
        var count = 0

        init(text: UnsafeBufferPointer<UInt8>, entries: UnsafeMutablePointer<Entry>, base: UInt32, first: UInt32) {
            self.text = text
            self.entries = entries
            self.base = base
            self.first = first
        }

        static let maxDepth = 512

        mutating func parse() throws(Failure) {
            let open = UnsafeMutablePointer<Int>.allocate(capacity: Self.maxDepth)
            defer { open.deallocate() }
            var depth = 0
            var i = skipSpace(0)
            while true {
                // A value.
                guard i < text.count else { throw Failure(offset: i, reason: "unexpected end") }
                let byte = text[i]
                switch byte {
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    guard depth < Self.maxDepth else { throw Failure(offset: i, reason: "nested too deeply") }
                    let isObject = byte == UInt8(ascii: "{")
                    open[depth] = count
                    depth += 1
                    add(isObject ? .object : .array, false, i, 0)
                    i = skipSpace(i + 1)
                    if i < text.count && text[i] == (isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")) {
                        i += 1
                        depth -= 1
                        close(open[depth], at: i)
                    } else {
                        if isObject { i = try key(i) }
                        continue
                    }
                case UInt8(ascii: "\""):
                    i = try string(i)
                case UInt8(ascii: "t"):
                    i = try literal(i, "true", .true)
                case UInt8(ascii: "f"):
                    i = try literal(i, "false", .false)
                case UInt8(ascii: "n"):
                    i = try literal(i, "null", .null)
                case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                    i = try number(i)
                default:
                    throw Failure(offset: i, reason: "unexpected character")
                }
                // After a value: the next member, or the end of containers.
                while true {
                    i = skipSpace(i)
                    guard depth > 0 else {
                        guard i == text.count else { throw Failure(offset: i, reason: "text after the value") }
                        return
                    }
                    guard i < text.count else { throw Failure(offset: i, reason: "unexpected end") }
                    let container = open[depth - 1]
                    let isObject = entries[container].kind == .object
                    if text[i] == UInt8(ascii: ",") {
                        i = skipSpace(i + 1)
                        if isObject { i = try key(i) }
                        break
                    }
                    guard text[i] == (isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")) else {
                        throw Failure(offset: i, reason: isObject ? "expected \",\" or \"}\"" : "expected \",\" or \"]\"")
                    }
                    i += 1
                    depth -= 1
                    close(container, at: i)
                }
            }
        }

        @inline(__always)
        mutating func add(_ kind: Kind, _ flag: Bool, _ start: Int, _ end: Int) {
            entries[count] = Entry(kind: kind, flag: flag, start: base + UInt32(start), end: base + UInt32(end),
                                   link: first + UInt32(count + 1))
            count += 1
        }

        func close(_ container: Int, at end: Int) {
            entries[container].end = base + UInt32(end)
            entries[container].link = first + UInt32(count)
        }

        @inline(__always)
        func skipSpace(_ start: Int) -> Int {
            var i = start
            while i < text.count {
                let byte = text[i]
                guard byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 else { break }
                i += 1
            }
            return i
        }

        /// An object member's key and its colon.
        mutating func key(_ start: Int) throws(Failure) -> Int {
            guard start < text.count, text[start] == UInt8(ascii: "\"") else { throw Failure(offset: start, reason: "expected a key") }
            let i = skipSpace(try string(start))
            guard i < text.count, text[i] == UInt8(ascii: ":") else { throw Failure(offset: i, reason: "expected \":\"") }
            return skipSpace(i + 1)
        }

        mutating func literal(_ start: Int, _ word: StaticString, _ kind: Kind) throws(Failure) -> Int {
            let length = word.utf8CodeUnitCount
            guard start + length <= text.count else { throw Failure(offset: start, reason: "unexpected end") }
            for offset in 0..<length where text[start + offset] != word.utf8Start[offset] {
                throw Failure(offset: start + offset, reason: "unexpected character")
            }
            add(kind, false, start, start + length)
            return start + length
        }

        /// A string from its opening quote; the index after its closing one.
        mutating func string(_ quote: Int) throws(Failure) -> Int {
            let start = quote + 1
            var i = start
            var escaped = false
            var ascii = true
            while true {
                // Printable ASCII other than the quote and backslash is most of any string.
                while i < text.count {
                    let byte = text[i]
                    if byte &- 0x20 >= 0x60 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { break }
                    i += 1
                }
                guard i < text.count else { throw Failure(offset: i, reason: "unterminated string") }
                let byte = text[i]
                if byte == UInt8(ascii: "\"") { break }
                guard byte >= 0x20 else { throw Failure(offset: i, reason: "control character in a string") }
                i += 1
                if byte >= 0x80 {
                    ascii = false
                    continue
                }
                // A backslash.
                escaped = true
                guard i < text.count else { throw Failure(offset: i, reason: "unterminated string") }
                let next = text[i]
                i += 1
                switch next {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                     UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    continue
                case UInt8(ascii: "u"):
                    let scalar = try hex4(i)
                    i += 4
                    if (0xD800..<0xDC00).contains(scalar) {
                        guard i + 1 < text.count, text[i] == UInt8(ascii: "\\"), text[i + 1] == UInt8(ascii: "u"),
                            (0xDC00..<0xE000).contains(try hex4(i + 2))
                        else { throw Failure(offset: i, reason: "invalid surrogate pair") }
                        i += 6
                    } else if (0xDC00..<0xE000).contains(scalar) {
                        throw Failure(offset: i, reason: "invalid \\u escape")
                    }
                default:
                    throw Failure(offset: i - 1, reason: "invalid escape")
                }
            }
            if !ascii {
                var iterator = UnsafeBufferPointer(rebasing: text[start..<i]).makeIterator()
                var decoder = UTF8()
                decoding: while true {
                    switch decoder.decode(&iterator) {
                    case .scalarValue: continue
                    case .emptyInput: break decoding
                    case .error: throw Failure(offset: start, reason: "invalid UTF-8 in a string")
                    }
                }
            }
            add(.string, escaped, start, i)
            return i + 1
        }

        func hex4(_ start: Int) throws(Failure) -> UInt32 {
            guard start + 4 <= text.count else { throw Failure(offset: start, reason: "unterminated \\u escape") }
            var value: UInt32 = 0
            for byte in text[start..<start + 4] {
                let digit: UInt32 = switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(byte - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(byte - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt32(byte - UInt8(ascii: "A") + 10)
                default: throw Failure(offset: start, reason: "invalid \\u escape")
                }
                value = value << 4 | digit
            }
            return value
        }

        @inline(__always)
        func digits(_ start: Int) -> Int {
            var i = start
            while i < text.count, text[i] &- UInt8(ascii: "0") < 10 { i += 1 }
            return i
        }

        mutating func number(_ start: Int) throws(Failure) -> Int {
            var i = start
            var integral = true
            if text[i] == UInt8(ascii: "-") { i += 1 }
            guard i < text.count, text[i] &- UInt8(ascii: "0") < 10 else { throw Failure(offset: i, reason: "invalid number") }
            i = text[i] == UInt8(ascii: "0") ? i + 1 : digits(i)
            if i < text.count, text[i] == UInt8(ascii: ".") {
                integral = false
                guard i + 1 < text.count, text[i + 1] &- UInt8(ascii: "0") < 10 else { throw Failure(offset: i, reason: "invalid number") }
                i = digits(i + 1)
            }
            if i < text.count, text[i] | 0x20 == UInt8(ascii: "e") {
                integral = false
                i += 1
                if i < text.count, text[i] == UInt8(ascii: "+") || text[i] == UInt8(ascii: "-") { i += 1 }
                guard i < text.count, text[i] &- UInt8(ascii: "0") < 10 else { throw Failure(offset: i, reason: "invalid number") }
                i = digits(i)
            }
            add(.number, integral, start, i)
            return i
        }
    }
}

/// JSON text into GraphQLSwift's `Map` (request bodies, variables), through the tape.
public enum JSONParser {
    public typealias Failure = JSONTape.Failure

    public static func parse(_ bytes: [UInt8]) throws(Failure) -> Map {
        try JSONTape(parsing: bytes).map()
    }
}
