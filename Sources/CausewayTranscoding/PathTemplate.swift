/// A `google.api.http` path template, compiled:
///
/// ```
/// Template = "/" Segments [ ":" Verb ]      Segment  = "*" | "**" | LITERAL | Variable
/// Variable = "{" FieldPath [ "=" Segments ] "}"   ("{name}" is "{name=*}")
/// ```
///
/// `*` takes one segment, `**` any number (at most one per template); a ':' in the request's
/// last segment is its verb, which only a template with that verb matches. A variable's value is its
/// segments joined by "/", percent-decoded (a `%2F` inside a multi-segment value stays encoded,
/// so the value keeps its structure).
public struct PathTemplate: Sendable {
    enum Segment: Sendable, Equatable {
        case literal(String)
        case any
        case rest
    }

    struct Variable: Sendable {
        let fieldPath: [String]
        let segments: Range<Int>
    }

    let segments: [Segment]
    let variables: [Variable]
    let verb: String?
    /// Literal segments: the more, the more specific (it wins over a template of wildcards).
    let specificity: Int

    public init(_ template: String) throws(ProtoError) {
        func fail(_ why: String) -> ProtoError { ProtoError("path template \"\(template)\": \(why)") }
        guard template.hasPrefix("/") else { throw fail("must start with /") }
        var body = Substring(template.dropFirst())
        var verb: String?
        // The verb is after the last ':' outside braces.
        var depth = 0
        var verbStart: Substring.Index?
        for index in body.indices {
            switch body[index] {
            case "{": depth += 1
            case "}": depth -= 1
            case ":" where depth == 0: verbStart = index
            default: break
            }
        }
        if let verbStart {
            verb = String(body[body.index(after: verbStart)...])
            body = body[..<verbStart]
            guard !verb!.isEmpty, !verb!.contains("/") else { throw fail("empty or malformed verb") }
        }
        var segments: [Segment] = []
        var variables: [Variable] = []
        var rest = body
        while true {
            if rest.hasPrefix("{") {
                guard let close = rest.firstIndex(of: "}") else { throw fail("unclosed {") }
                let inside = rest[rest.index(after: rest.startIndex)..<close]
                let parts = inside.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let fieldPath = parts[0].split(separator: ".").map(String.init)
                guard !fieldPath.isEmpty, fieldPath.allSatisfy({ !$0.isEmpty }) else { throw fail("empty field path") }
                let start = segments.count
                if parts.count == 2 {
                    for piece in parts[1].split(separator: "/", omittingEmptySubsequences: false) {
                        segments.append(try Self.segment(piece, fail))
                    }
                } else {
                    segments.append(.any)
                }
                variables.append(Variable(fieldPath: fieldPath, segments: start..<segments.count))
                rest = rest[rest.index(after: close)...]
                if rest.isEmpty { break }
                guard rest.hasPrefix("/") else { throw fail("expected / after a variable") }
                rest = rest.dropFirst()
            } else {
                let end = rest.firstIndex(of: "/") ?? rest.endIndex
                segments.append(try Self.segment(rest[..<end], fail))
                if end == rest.endIndex { break }
                rest = rest[rest.index(after: end)...]
            }
        }
        guard segments.filter({ $0 == .rest }).count <= 1 else { throw fail("more than one **") }
        self.segments = segments
        self.variables = variables
        self.verb = verb
        specificity = segments.filter { if case .literal = $0 { true } else { false } }.count + (verb == nil ? 0 : 1)
    }

    private static func segment(_ text: Substring, _ fail: (String) -> ProtoError) throws(ProtoError) -> Segment {
        switch text {
        case "*": return .any
        case "**": return .rest
        case "": throw fail("empty segment")
        default:
            guard !text.contains("{") && !text.contains("}") else { throw fail("braces inside a segment") }
            return .literal(String(text))
        }
    }

    /// The variables' values when `path` (without its query) matches.
    func match(_ path: Substring) -> [(fieldPath: [String], value: String)]? {
        guard path.hasPrefix("/") else { return nil }
        var body = path.dropFirst()
        // A ':' in the last segment starts a custom verb (an ID with a colon sends it as %3A).
        let lastSegment = body.lastIndex(of: "/").map { body[body.index(after: $0)...] } ?? body
        if let colon = lastSegment.lastIndex(of: ":") {
            guard let verb, body[body.index(after: colon)...] == verb else { return nil }
            body = body[..<colon]
        } else if verb != nil {
            return nil
        }
        let parts = body.split(separator: "/", omittingEmptySubsequences: false)
        // Which request segment each template segment starts at; `**` takes what the others leave.
        var starts: [Int] = []
        starts.reserveCapacity(segments.count + 1)
        if let restIndex = segments.firstIndex(of: .rest) {
            let fixedAfter = segments.count - restIndex - 1
            guard parts.count >= segments.count - 1 else { return nil }
            for index in 0..<segments.count {
                if index <= restIndex { starts.append(index) } else { starts.append(parts.count - fixedAfter + (index - restIndex - 1)) }
            }
        } else {
            guard parts.count == segments.count else { return nil }
            starts = Array(0..<segments.count)
        }
        starts.append(parts.count)
        for (index, segment) in segments.enumerated() {
            switch segment {
            case .literal(let text): if parts[starts[index]] != text { return nil }
            case .any: if parts[starts[index]].isEmpty { return nil }
            case .rest: break
            }
        }
        var values: [(fieldPath: [String], value: String)] = []
        for variable in variables {
            let from = starts[variable.segments.lowerBound], to = starts[variable.segments.upperBound]
            let multi = variable.segments.count > 1 || segments[variable.segments.lowerBound] == .rest
            guard let value = Self.percentDecoded(parts[from..<to].joined(separator: "/"), keepSlash: multi) else { return nil }
            values.append((variable.fieldPath, value))
        }
        return values
    }

    /// nil when an escape is malformed or the result is not UTF-8.
    public static func percentDecoded(_ text: String, keepSlash: Bool = false, plusIsSpace: Bool = false) -> String? {
        guard text.utf8.contains(where: { $0 == UInt8(ascii: "%") || (plusIsSpace && $0 == UInt8(ascii: "+")) }) else { return text }
        var out: [UInt8] = []
        let bytes = Array(text.utf8)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "%") {
                guard index + 2 < bytes.count, let high = hex(bytes[index + 1]), let low = hex(bytes[index + 2]) else { return nil }
                let decoded = high << 4 | low
                if keepSlash && decoded == UInt8(ascii: "/") {
                    out += bytes[index...(index + 2)]
                } else {
                    out.append(decoded)
                }
                index += 3
            } else {
                out.append(plusIsSpace && byte == UInt8(ascii: "+") ? 0x20 : byte)
                index += 1
            }
        }
        return String(validating: out, as: UTF8.self)
    }

    private static func hex(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 0x30...0x39: byte - 0x30
        case 0x41...0x46: byte - 0x41 + 10
        case 0x61...0x66: byte - 0x61 + 10
        default: nil
        }
    }
}
