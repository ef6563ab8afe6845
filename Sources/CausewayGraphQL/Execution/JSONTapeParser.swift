extension JSONTape {
    /// One pass over the text, without recursion (open containers on a stack of at most 512)
    /// and with the position in a local, writing entries straight into their buffer.
    struct Parser {
        let text: UnsafeBufferPointer<UInt8>
        let entries: UnsafeMutablePointer<Entry>
        /// Where the text starts in the tape's bytes, and its first entry in the tape's entries.
        let base: UInt32
        let first: UInt32
        /// Entries the buffer holds: enough for any valid JSON of this length, not for every
        /// prefix of invalid text (`[[[[…` opens one per byte), so `add` checks it.
        let capacity: Int
        var count = 0

        init(text: UnsafeBufferPointer<UInt8>, entries: UnsafeMutablePointer<Entry>, capacity: Int, base: UInt32, first: UInt32) {
            self.text = text
            self.entries = entries
            self.capacity = capacity
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
                    try add(isObject ? .object : .array, false, i, 0)
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
        mutating func add(_ kind: Kind, _ flag: Bool, _ start: Int, _ end: Int) throws(Failure) {
            // Found by fuzzing: without this, 600 bytes of "[" wrote past the buffer.
            guard count < capacity else { throw Failure(offset: start, reason: "more values than valid JSON of this length holds") }
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
        @inline(__always)
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
            try add(kind, false, start, start + length)
            return start + length
        }

        /// A string from its opening quote; the index after its closing one.
        @inline(__always)
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
            try add(.string, escaped, start, i)
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

        @inline(__always)
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
            try add(.number, integral, start, i)
            return i
        }
    }
}
