import GraphQL

/// A field's `@rest` directive, compiled: which upstream to call, how, and how to match a
/// batched answer back to its parents.
public struct RestBinding: Sendable {
    public struct Batch: Sendable {
        /// Template with `{$batch.FIELD}`: the distinct values of FIELD over the parents, comma-joined.
        public var path: PathTemplate
        /// Item field matched against the parent's value.
        public var key: String
        /// The parent field whose values are batched (the `$batch.FIELD` in `path`).
        public var parentField: String
    }

    public var upstream: String
    public var method: String
    public var path: PathTemplate
    /// `$args.NAME`: that argument, as JSON, is the request body.
    public var bodyArgument: String?
    public var batch: Batch?
    /// Dotted path to the payload in a wrapped answer (`data`, `result.items`).
    public var selector: [String]
    /// The field returns a list (a batched answer gives each parent all its matches).
    public var isList: Bool
}

/// A URL template such as `/users/{$args.id}?limit={$args.limit}`: literal text and variables,
/// each substituted URL-encoded.
public struct PathTemplate: Sendable, Equatable {
    public enum Part: Sendable, Equatable {
        case literal(String)
        case variable(Variable)
    }

    public enum Variable: Sendable, Equatable, Hashable {
        case argument(String)
        case parent(String)
        case batch(String)
        case header(String)
    }

    public var parts: [Part]

    public var variables: [Variable] {
        parts.compactMap { if case .variable(let variable) = $0 { variable } else { nil } }
    }

    /// Parses `{$args.x}`, `{$parent.x}`, `{$batch.x}`, `{$headers.x}`; nil with a reason otherwise.
    public static func parse(_ text: String) -> Result<PathTemplate, TemplateError> {
        var parts: [Part] = []
        var rest = Substring(text)
        while let open = rest.firstIndex(of: "{") {
            if open > rest.startIndex { parts.append(.literal(String(rest[..<open]))) }
            guard let close = rest[open...].firstIndex(of: "}") else { return .failure(.unclosed) }
            let name = rest[rest.index(after: open)..<close]
            let pieces = name.split(separator: ".", maxSplits: 1)
            guard pieces.count == 2, !pieces[1].isEmpty else { return .failure(.unknownVariable(String(name))) }
            let field = String(pieces[1])
            switch pieces[0] {
            case "$args": parts.append(.variable(.argument(field)))
            case "$parent": parts.append(.variable(.parent(field)))
            case "$batch": parts.append(.variable(.batch(field)))
            case "$headers": parts.append(.variable(.header(field.lowercased())))
            default: return .failure(.unknownVariable(String(name)))
            }
            rest = rest[rest.index(after: close)...]
        }
        if !rest.isEmpty { parts.append(.literal(String(rest))) }
        guard case .literal(let first)? = parts.first, first.hasPrefix("/") else { return .failure(.notAbsolute) }
        return .success(PathTemplate(parts: parts))
    }

    public enum TemplateError: Error, Equatable, CustomStringConvertible {
        case unclosed, notAbsolute
        case unknownVariable(String)

        public var description: String {
            switch self {
            case .unclosed: "a \"{\" without its \"}\""
            case .notAbsolute: "must start with \"/\""
            case .unknownVariable(let name):
                "unknown template variable \"{\(name)}\" (use $args.NAME, $parent.FIELD, $batch.FIELD or $headers.NAME)"
            }
        }
    }

    /// The path with every variable replaced by its values, each URL-encoded and joined with
    /// literal commas (one value for `$args`/`$parent`/`$headers`, the distinct parent values for
    /// `$batch`); no value leaves the place empty. nil when a value would be a whole `.` or `..`
    /// path segment: percent-encoding does not help there (upstreams such as nginx decode
    /// `%2E%2E` before they resolve dot segments), so `user(id: "..")` must not reach `/users/..`.
    public func render(_ values: (Variable) -> [String]) -> String? {
        var out: [UInt8] = []
        out.reserveCapacity(128)
        var inQuery = false
        for part in parts {
            switch part {
            case .literal(let text):
                out.append(contentsOf: text.utf8)
                if !inQuery && text.utf8.contains(UInt8(ascii: "?")) { inQuery = true }
            case .variable(let variable):
                for (index, value) in values(variable).enumerated() {
                    if !inQuery && (value == "." || value == "..") { return nil }
                    if index > 0 { out.append(UInt8(ascii: ",")) }
                    Self.encode(value, into: &out)
                }
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    @inline(__always)
    static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            true
        default:
            false
        }
    }

    /// Percent-encodes everything outside RFC 3986's unreserved set (commas in batch lists are
    /// added after encoding each value, so they stay literal).
    public static func encode(_ text: String) -> String {
        var out: [UInt8] = []
        encode(text, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    static func encode(_ text: String, into out: inout [UInt8]) {
        let hex: StaticString = "0123456789ABCDEF"
        for byte in text.utf8 {
            if isUnreserved(byte) {
                out.append(byte)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(hex.utf8Start[Int(byte >> 4)])
                out.append(hex.utf8Start[Int(byte & 15)])
            }
        }
    }
}
