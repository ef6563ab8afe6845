/// `Accept-Encoding` (RFC 9110 §12.5.3) as a client's preferences: q-values per coding, `*`
/// for the rest, and `identity`.
public struct AcceptEncoding: Sendable, Equatable {
    /// Lower-cased coding → q in thousandths (0...1000), as written.
    private var weights: [String: Int] = [:]
    private var star: Int?

    /// nil header: the client said nothing, which RFC 9110 reads as "any coding", but every
    /// proxy (and every cache) treats as identity; so do we. Work is linear in the header (one
    /// split, one dictionary entry per coding), whose length `max_header_size` bounds; no
    /// nesting. 5,000 entries are answered like 1 (hostile suite).
    public init(_ header: String?) {
        guard let header else { return }
        for item in header.split(separator: ",") {
            let parts = item.split(separator: ";")
            guard let token = parts.first?.trimmingSpaces().lowercased(), !token.isEmpty else { continue }
            var q = 1000
            for parameter in parts.dropFirst() {
                let pair = parameter.split(separator: "=", maxSplits: 1)
                if pair.count == 2, pair[0].trimmingSpaces().lowercased() == "q" {
                    q = Self.parseQ(pair[1].trimmingSpaces()) ?? 0  // a malformed q excludes rather than includes
                }
            }
            if token == "*" { star = q } else { weights[token] = max(weights[token] ?? 0, q) }
        }
        if weights["x-gzip"] != nil && weights["gzip"] == nil { weights["gzip"] = weights["x-gzip"] }
    }

    /// q for a coding: as written, else `*`'s, else not acceptable (0).
    public func quality(_ coding: ContentCoding) -> Int {
        weights[coding.rawValue] ?? star ?? 0
    }

    /// identity is always acceptable unless excluded (RFC 9110 §12.5.3), but only a q written
    /// for it makes the client prefer it over a coding it lists.
    public var prefersIdentity: Int? { weights["identity"] }

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
        let parts = text.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let whole = parts.first, whole == "0" || whole == "1" else { return nil }
        var value = whole == "1" ? 1000 : 0
        if parts.count == 2 {
            let digits = parts[1]
            guard digits.count <= 3, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
            if whole == "1" { return digits.allSatisfy { $0 == "0" } ? 1000 : nil }
            value = Int(String(digits) + String(repeating: "0", count: 3 - digits.count)) ?? 0
        }
        return value
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
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}
