import GraphQL

/// A look at a GraphQL document's raw text before the parser sees it. GraphQLSwift's parser,
/// the validation rules and the planner recurse, and fragment spreads multiply work; an
/// attacker's 27 KB of braces, or 500 bytes of fragments that spread the next one twice, would
/// overflow the stack or spin the event loop. This pass is one loop over the bytes (no
/// recursion, O(1) work per byte, memory linear in the number of definitions and spreads), and
/// refuses a document unless every recursive walk after it is bounded:
///
/// - `max_tokens` (lexical tokens, not comments) and the byte size cap;
/// - `max_depth`, counted as the limits count it: selection levels, through fragment spreads
///   (inline fragments and a fragment's own braces add none);
/// - value nesting (lists and input objects in arguments, variable types) and fragment-spread
///   chains, hard-capped;
/// - directives per location, hard-capped;
/// - the expanded size: fields a definition selects once every spread is replaced by its
///   fragment, computed with memoization (linear, saturating), so `...F1 ...F1` per level
///   costs a sum, not 2^n. An operation's complexity counts at least one per expanded field,
///   so this budget is `max_complexity`.
///
/// Fragment cycles are refused here too: expanding one would never end.
public struct DocumentPrescan: Sendable {
    public var maxTokens: Int
    public var maxDepth: Int
    public var maxExpandedFields: Int
    public var maxBytes: Int
    /// Lists and input objects inside arguments and variable definitions.
    public static let maxValueNesting = 32
    /// Fragments spread within fragments spread within …
    public static let maxSpreadNesting = 64
    public static let maxDirectivesPerLocation = 16
    public static let maxDefinitions = 1000

    public init(maxTokens: Int, maxDepth: Int, maxExpandedFields: Int, maxBytes: Int) {
        self.maxTokens = maxTokens
        self.maxDepth = maxDepth
        self.maxExpandedFields = maxExpandedFields
        self.maxBytes = maxBytes
    }

    public struct Refusal: Error, Equatable, Sendable {
        public var message: String
        public var code: String
    }

    private struct Definition {
        var name: String?  // fragments only
        var isOperation = false
        /// nil for an anonymous operation.
        var operationName: String?
        var bodyOpened = false
        var ownDepth = 0
        var fields = 0
        /// (target fragment, selection depth at the spread)
        var spreads: [(name: String, depth: Int)] = []
    }

    private enum Brace: UInt8 {
        case selection, transparent, value
    }

    /// The size check alone, for text that must not even be hashed when it is too large.
    public func sizeRefusal(_ byteCount: Int) -> Refusal? {
        guard byteCount > maxBytes else { return nil }
        return Refusal(message: "the document is \(byteCount) bytes, more than the limit of \(maxBytes)",
                       code: "MAX_DOCUMENT_SIZE_EXCEEDED")
    }

    /// nil when the document may go on to the parser.
    public func check(_ text: String) -> Refusal? {
        var text = text
        return text.withUTF8 { check(bytes: $0) }
    }

    // The definition tracking below is exact for documents that parse; for ones that do not,
    // only the lexical bounds (bytes, tokens, nesting, directives) matter, since the parser
    // refuses them before anything expands fragments.
    func check(bytes: UnsafeBufferPointer<UInt8>) -> Refusal? {
        if let tooLarge = sizeRefusal(bytes.count) { return tooLarge }
        var tokens = 0
        var stack: [Brace] = []
        var selectionDepth = 0
        var valueNesting = 0
        var parens = 0
        var definitions: [Definition] = []
        var current = -1
        var betweenDefinitions = true
        // The little context this pass needs: what the previous significant token was.
        var afterSpread = false  // `...`
        var afterOn = false  // `on` of a type condition
        var afterAt = false  // `@`
        var afterFragmentKeyword = false  // `fragment`: its name comes next
        var afterOperationKeyword = false  // `query` etc.: its name may come next
        var pendingInline = false  // the next `{` is an inline fragment's
        var pendingFragmentBody = false  // the next `{` is a fragment definition's own
        var directives = 0
        var i = 0
        let n = bytes.count

        while i < n {
            let byte = bytes[i]
            switch byte {
            case 0x20, 0x09, 0x0A, 0x0D, 0x2C:  // white space, line terminators, commas
                i += 1
                continue
            case 0x23:  // a comment, to the end of the line
                while i < n && bytes[i] != 0x0A && bytes[i] != 0x0D { i += 1 }
                continue
            case 0xEF where i + 2 < n && bytes[i + 1] == 0xBB && bytes[i + 2] == 0xBF:  // BOM
                i += 3
                continue
            default:
                break
            }
            tokens += 1
            if tokens > maxTokens {
                return Refusal(message: "the document has more than \(maxTokens) tokens, the limit", code: "MAX_TOKENS_EXCEEDED")
            }
            let inSelection = parens == 0 && (stack.last == .selection || stack.last == .transparent)
            switch byte {
            case UInt8(ascii: "{"):
                let kind: Brace
                if parens > 0 || stack.last == .value {
                    kind = .value
                } else if pendingInline || pendingFragmentBody {
                    kind = .transparent
                } else {
                    kind = .selection
                }
                if stack.isEmpty && parens == 0 {
                    // A definition's body: `query Q {`, `fragment F on T {`, or `{` alone.
                    afterOperationKeyword = false
                    if current < 0 || definitions[current].bodyOpened {
                        if definitions.count >= Self.maxDefinitions { return tooManyDefinitions() }
                        definitions.append(Definition(isOperation: true))
                        current = definitions.count - 1
                    }
                    definitions[current].bodyOpened = true
                    betweenDefinitions = false
                }
                pendingInline = false
                pendingFragmentBody = false
                stack.append(kind)
                switch kind {
                case .selection:
                    selectionDepth += 1
                    if selectionDepth > maxDepth { return tooDeep(selectionDepth) }
                    if current >= 0 { definitions[current].ownDepth = max(definitions[current].ownDepth, selectionDepth) }
                case .value:
                    valueNesting += 1
                    if valueNesting + parens > Self.maxValueNesting { return nestedValues() }
                case .transparent:
                    break
                }
                directives = 0
            case UInt8(ascii: "}"):
                guard let top = stack.popLast() else { return nil }  // unbalanced: the parser's error to give
                switch top {
                case .selection: selectionDepth -= 1
                case .value: valueNesting -= 1
                case .transparent: break
                }
                if stack.isEmpty && parens == 0 { betweenDefinitions = true }
                directives = 0
            case UInt8(ascii: "["):
                valueNesting += 1
                stack.append(.value)
                if valueNesting + parens > Self.maxValueNesting { return nestedValues() }
            case UInt8(ascii: "]"):
                guard stack.last == .value else { return nil }
                stack.removeLast()
                valueNesting -= 1
            case UInt8(ascii: "("):
                parens += 1
                if valueNesting + parens > Self.maxValueNesting { return nestedValues() }
            case UInt8(ascii: ")"):
                guard parens > 0 else { return nil }
                parens -= 1
            case UInt8(ascii: "."):
                if i + 2 < n && bytes[i + 1] == UInt8(ascii: ".") && bytes[i + 2] == UInt8(ascii: ".") {
                    i += 3
                    afterSpread = true
                    pendingInline = true  // unless a fragment's name follows
                    afterOn = false
                    afterAt = false
                    directives = 0
                    continue
                }
            case UInt8(ascii: "@"):
                afterAt = true
                directives += 1
                if directives > Self.maxDirectivesPerLocation {
                    return Refusal(message: "more than \(Self.maxDirectivesPerLocation) directives in one place, the limit",
                                   code: "MAX_DIRECTIVES_EXCEEDED")
                }
                i += 1
                continue
            case UInt8(ascii: ":"):
                // In a selection set the name before it was an alias, not a field.
                if inSelection, current >= 0 { definitions[current].fields -= 1 }
            case UInt8(ascii: "\""):
                i = Self.skipString(bytes, from: i)
                afterSpread = false
                afterOn = false
                afterAt = false
                continue
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                i += 1
                while i < n, Self.isNameContinue(bytes[i]) || bytes[i] == UInt8(ascii: ".")
                    || bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
                afterSpread = false
                afterOn = false
                afterAt = false
                continue
            case UInt8(ascii: "_"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"):
                let start = i
                i += 1
                while i < n, Self.isNameContinue(bytes[i]) { i += 1 }
                let name = UnsafeBufferPointer(rebasing: bytes[start..<i])
                if afterAt {
                    afterAt = false  // a directive's name
                } else if afterOperationKeyword && stack.isEmpty && parens == 0 {
                    afterOperationKeyword = false
                    if current >= 0 { definitions[current].operationName = String(decoding: name, as: UTF8.self) }
                } else if afterFragmentKeyword {
                    afterFragmentKeyword = false
                    if definitions.count >= Self.maxDefinitions { return tooManyDefinitions() }
                    definitions.append(Definition(name: String(decoding: name, as: UTF8.self)))
                    current = definitions.count - 1
                    pendingFragmentBody = true
                } else if afterSpread {
                    afterSpread = false
                    if Self.equals(name, "on") {
                        afterOn = true
                    } else {
                        pendingInline = false  // `...Name`: a spread
                        if current >= 0 {
                            definitions[current].spreads.append((String(decoding: name, as: UTF8.self), selectionDepth))
                        }
                    }
                } else if afterOn {
                    afterOn = false  // a type condition's name
                } else if stack.isEmpty && parens == 0 && betweenDefinitions {
                    betweenDefinitions = false
                    if Self.equals(name, "fragment") {
                        afterFragmentKeyword = true
                    } else {
                        // `query`, `mutation`, `subscription`: its name, variables and
                        // directives follow, then its body.
                        if definitions.count >= Self.maxDefinitions { return tooManyDefinitions() }
                        definitions.append(Definition(isOperation: true))
                        current = definitions.count - 1
                        afterOperationKeyword = true
                    }
                } else if inSelection {
                    if current >= 0 { definitions[current].fields += 1 }
                    directives = 0
                }
                continue
            default:
                break
            }
            if stack.isEmpty && parens == 0 && byte != UInt8(ascii: "@") { afterOperationKeyword = false }
            afterSpread = false
            afterOn = false
            afterAt = false
            i += 1
        }
        return operationsAreDistinct(definitions) ?? expand(definitions)
    }

    /// Two operations that are alike (both anonymous, or one name twice) are validation errors
    /// anyway, and must be refused before validation: GraphQLSwift hashes an operation by
    /// identity but compares it by structure, and its validation keys dictionaries by
    /// operation, so two equal ones can trap the process (found by fuzzing).
    private func operationsAreDistinct(_ definitions: [Definition]) -> Refusal? {
        let operations = definitions.filter(\.isOperation)
        if operations.count > 1 && operations.contains(where: { $0.operationName == nil }) {
            return Refusal(message: "This anonymous operation must be the only defined operation.", code: "GRAPHQL_VALIDATION_FAILED")
        }
        var names: Set<String> = []
        for case let name? in operations.map(\.operationName) where !names.insert(name).inserted {
            return Refusal(message: "There can be only one operation named \"\(name)\".", code: "GRAPHQL_VALIDATION_FAILED")
        }
        return nil
    }

    /// Depth through spreads and expanded field counts, per definition: an iterative
    /// depth-first walk of the spread graph, each fragment computed once.
    private func expand(_ definitions: [Definition]) -> Refusal? {
        var index: [String: Int] = [:]
        for (position, definition) in definitions.enumerated() {
            guard let name = definition.name else { continue }
            if index.updateValue(position, forKey: name) != nil {
                return Refusal(message: "There can be only one fragment named \"\(name)\".", code: "GRAPHQL_VALIDATION_FAILED")
            }
        }
        enum Mark { case unvisited, active, done }
        var marks = [Mark](repeating: .unvisited, count: definitions.count)
        var depth = [Int](repeating: 0, count: definitions.count)
        var size = [Int](repeating: 0, count: definitions.count)
        var path: [(definition: Int, next: Int)] = []
        for root in definitions.indices where marks[root] == .unvisited {
            marks[root] = .active
            path.append((root, 0))
            while let (top, next) = path.last {
                let spreads = definitions[top].spreads
                if next < spreads.count {
                    path[path.count - 1].next += 1
                    guard let target = index[spreads[next].name] else { continue }  // unknown: validation's to report
                    switch marks[target] {
                    case .active:
                        return Refusal(message: "Cannot spread fragment \"\(spreads[next].name)\" within itself.",
                                       code: "GRAPHQL_VALIDATION_FAILED")
                    case .unvisited:
                        if path.count >= Self.maxSpreadNesting {
                            return Refusal(message: "fragments are spread more than \(Self.maxSpreadNesting) levels deep, the limit",
                                           code: "MAX_DEPTH_EXCEEDED")
                        }
                        marks[target] = .active
                        path.append((target, 0))
                    case .done:
                        continue
                    }
                    continue
                }
                var total = definitions[top].ownDepth
                var fields = max(definitions[top].fields, 0)
                for spread in spreads {
                    guard let target = index[spread.name] else { continue }
                    total = max(total, spread.depth + depth[target])
                    fields = fields > Int.max - size[target] ? Int.max : fields + size[target]
                }
                if total > maxDepth { return tooDeep(total) }
                if fields > maxExpandedFields {
                    return Refusal(message: "the document selects \(fields) fields once fragments are spread, more than the limit of \(maxExpandedFields)",
                                   code: "MAX_COMPLEXITY_EXCEEDED")
                }
                depth[top] = total
                size[top] = fields
                marks[top] = .done
                path.removeLast()
            }
        }
        return nil
    }

    private func tooDeep(_ depth: Int) -> Refusal {
        Refusal(message: "the operation is \(depth) levels deep, more than the limit of \(maxDepth)", code: "MAX_DEPTH_EXCEEDED")
    }

    private func nestedValues() -> Refusal {
        Refusal(message: "values are nested more than \(Self.maxValueNesting) levels deep", code: "MAX_DEPTH_EXCEEDED")
    }

    private func tooManyDefinitions() -> Refusal {
        Refusal(message: "the document has more than \(Self.maxDefinitions) definitions", code: "MAX_DEFINITIONS_EXCEEDED")
    }

    /// Past a string or block string; an unterminated one runs to the end (the parser's error).
    static func skipString(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int) -> Int {
        let n = bytes.count
        let quote = UInt8(ascii: "\"")
        if start + 2 < n && bytes[start + 1] == quote && bytes[start + 2] == quote {
            var i = start + 3
            while i < n {
                if bytes[i] == quote && i + 2 < n && bytes[i + 1] == quote && bytes[i + 2] == quote { return i + 3 }
                if bytes[i] == UInt8(ascii: "\\") { i += 2 } else { i += 1 }
            }
            return n
        }
        var i = start + 1
        while i < n {
            switch bytes[i] {
            case quote: return i + 1
            case UInt8(ascii: "\\"): i += 2
            case 0x0A, 0x0D: return i  // strings do not span lines
            default: i += 1
            }
        }
        return n
    }

    static func isNameContinue(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "_") || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
            || (byte | 0x20 >= UInt8(ascii: "a") && byte | 0x20 <= UInt8(ascii: "z"))
    }

    static func equals(_ bytes: UnsafeBufferPointer<UInt8>, _ word: StaticString) -> Bool {
        guard bytes.count == word.utf8CodeUnitCount else { return false }
        for k in 0..<bytes.count where bytes[k] != word.utf8Start[k] { return false }
        return true
    }
}
