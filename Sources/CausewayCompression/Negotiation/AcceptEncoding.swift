/// `Accept-Encoding` (RFC 9110 §12.5.3) as a client's preferences: q-values per coding, `*`
/// for the rest, and `identity`.
public struct AcceptEncoding: Sendable, Equatable {
    /// q in thousandths (0...1000) as written, for the codings that decide anything: the ones
    /// Causeway can send, `identity`, and `*`. Others are read past.
    private var gzip: Int?
    private var xGzip: Int?
    private var br: Int?
    private var identity: Int?
    private var star: Int?

    /// nil header: the client said nothing, which RFC 9110 reads as "any coding", but every
    /// proxy (and every cache) treats as identity; so do we.
    ///
    /// One pass over the bytes, no allocation: work is linear in the header, whose length
    /// `max_header_size` bounds, with no nesting. (A generic, allocating version spent 84 ms
    /// on a 60 KB header of 5,000 entries, found by the hostile suite.)
    public init(_ header: String?) {
        guard var header else { return }
        header.withUTF8 { bytes in
            var i = 0
            let n = bytes.count
            while i < n {
                // One item: a token, then `;`-separated parameters, up to the next comma.
                let end = Self.next(UInt8(ascii: ","), in: bytes, from: i)
                let tokenEnd = Self.next(UInt8(ascii: ";"), in: bytes, from: i, before: end)
                let token = Self.trimmed(bytes, i, tokenEnd)
                var q = 1000
                var p = tokenEnd
                while p < end {
                    let parameterEnd = Self.next(UInt8(ascii: ";"), in: bytes, from: p + 1, before: end)
                    let equals = Self.next(UInt8(ascii: "="), in: bytes, from: p + 1, before: parameterEnd)
                    if equals < parameterEnd, Self.matches(bytes, Self.trimmed(bytes, p + 1, equals), "q") {
                        q = Self.parseQ(bytes, Self.trimmed(bytes, equals + 1, parameterEnd)) ?? 0  // malformed q excludes
                    }
                    p = parameterEnd
                }
                func keep(_ slot: inout Int?) { slot = max(slot ?? 0, q) }
                if Self.matches(bytes, token, "gzip") { keep(&gzip) }
                else if Self.matches(bytes, token, "br") { keep(&br) }
                else if Self.matches(bytes, token, "x-gzip") { keep(&xGzip) }
                else if Self.matches(bytes, token, "identity") { keep(&identity) }
                else if Self.matches(bytes, token, "*") { star = q }
                i = end + 1
            }
        }
        if gzip == nil { gzip = xGzip }
    }

    /// q for a coding: as written, else `*`'s, else not acceptable (0).
    public func quality(_ coding: ContentCoding) -> Int {
        let written = switch coding {
        case .gzip: gzip
        case .br: br
        }
        return written ?? star ?? 0
    }

    /// identity is always acceptable unless excluded (RFC 9110 §12.5.3), but only a q written
    /// for it makes the client prefer it over a coding it lists.
    public var prefersIdentity: Int? { identity }

    public func accepts(_ coding: ContentCoding) -> Bool { quality(coding) > 0 }

    /// The coding to send from `offered` (server preference order): the highest q above zero,
    /// ties going to the earlier offer; nil (identity) when nothing is acceptable or the client
    /// wrote a strictly higher q for identity.
    public func choose(from offered: [ContentCoding]) -> ContentCoding? {
        var best: (coding: ContentCoding, q: Int)?
        for coding in offered {
            let q = quality(coding)
            if q > 0 && q > (best?.q ?? 0) { best = (coding, q) }
        }
        guard let best, best.q >= (prefersIdentity ?? 0) else { return nil }
        return best.coding
    }

    /// "0", "0.5", "1", "1.000": up to three decimals; anything else is nil.
    static func parseQ(_ text: String) -> Int? {
        var text = text
        return text.withUTF8 { parseQ($0, 0..<$0.count) }
    }

    private static func parseQ(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Int? {
        guard let first = range.first, bytes[first] == UInt8(ascii: "0") || bytes[first] == UInt8(ascii: "1") else { return nil }
        let one = bytes[first] == UInt8(ascii: "1")
        guard range.count > 1 else { return one ? 1000 : 0 }
        guard bytes[first + 1] == UInt8(ascii: "."), range.count <= 5 else { return nil }
        var value = 0
        var scale = 100
        for k in (first + 2)..<range.upperBound {
            let digit = Int(bytes[k]) - 48
            guard digit >= 0 && digit <= 9 else { return nil }
            value += digit * scale
            scale /= 10
        }
        if one { return value == 0 ? 1000 : nil }
        return value
    }

    private static func next(_ byte: UInt8, in bytes: UnsafeBufferPointer<UInt8>, from start: Int, before limit: Int? = nil) -> Int {
        let end = limit ?? bytes.count
        var k = start
        while k < end && bytes[k] != byte { k += 1 }
        return k
    }

    /// The range without HTTP's optional white space around it.
    private static func trimmed(_ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> Range<Int> {
        var lower = start, upper = end
        while lower < upper && (bytes[lower] == 0x20 || bytes[lower] == 0x09) { lower += 1 }
        while upper > lower && (bytes[upper - 1] == 0x20 || bytes[upper - 1] == 0x09) { upper -= 1 }
        return lower..<upper
    }

    /// ASCII case-insensitive comparison with a lower-case word.
    private static func matches(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, _ word: StaticString) -> Bool {
        guard range.count == word.utf8CodeUnitCount else { return false }
        for (offset, k) in range.enumerated() {
            let byte = bytes[k]
            let folded = byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte
            if folded != word.utf8Start[offset] { return false }
        }
        return true
    }
}

/// Media-type patterns like "text/*", "application/json" or "*/*", matched against a
/// `Content-Type` without its parameters, case-insensitively.
public struct MediaTypeSet: Sendable {
    private let exact: Set<String>
    private let prefixes: [String]
    private let any: Bool

    public init(_ patterns: [String]) {
        var exact: Set<String> = []
        var prefixes: [String] = []
        var any = false
        for pattern in patterns.map({ $0.lowercased() }) {
            if pattern == "*/*" || pattern == "*" {
                any = true
            } else if pattern.hasSuffix("/*") {
                prefixes.append(String(pattern.dropLast()))
            } else {
                exact.insert(pattern)
            }
        }
        self.exact = exact
        self.prefixes = prefixes
        self.any = any
    }

    public func contains(contentType: String) -> Bool {
        let media = (contentType.split(separator: ";", maxSplits: 1).first.map { $0.trimmingSpaces() } ?? "").lowercased()
        guard !media.isEmpty else { return false }
        return any || exact.contains(media) || prefixes.contains { media.hasPrefix($0) }
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs (HTTP's optional whitespace).
    public func trimmingSpaces() -> String {
        var slice = Substring(self)
        while let first = slice.utf8.first, first == 0x20 || first == 0x09 { slice = slice.dropFirst() }
        while let last = slice.utf8.last, last == 0x20 || last == 0x09 { slice = slice.dropLast() }
        return String(slice)
    }
}
