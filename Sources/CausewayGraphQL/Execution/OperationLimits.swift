import GraphQL

/// Bounds checked on a parsed, validated operation before anything runs, so one request cannot
/// ask for unbounded work. Each failure is a request error with its own `extensions.code`.
public struct OperationLimits: Sendable {
    public var maxDepth: Int
    public var maxAliases: Int
    public var maxRootFields: Int
    /// Cost: 1 per field, a list field's subtree multiplied by its `first`/`limit` argument
    /// (or `defaultListSize`).
    public var maxComplexity: Int
    /// Enforced on the raw text by `DocumentPrescan`, before the document is parsed.
    public var maxTokens: Int
    public var defaultListSize = 10

    public init(maxDepth: Int = 12, maxAliases: Int = 30, maxRootFields: Int = 20, maxComplexity: Int = 5000,
                maxTokens: Int = 10000) {
        self.maxDepth = maxDepth
        self.maxAliases = maxAliases
        self.maxRootFields = maxRootFields
        self.maxComplexity = maxComplexity
        self.maxTokens = maxTokens
    }

    /// The first limit the chosen operation exceeds, as the error to answer with.
    func check(_ document: Document, operationName: String?, schema: LoadedShape,
               variables: [String: Map]) -> GraphQLError? {
        guard let operation = GraphQLEngine.operation(in: document, named: operationName) else { return nil }  // the executor reports a missing operation
        var fragments: [String: FragmentDefinition] = [:]
        for case let fragment as FragmentDefinition in document.definitions { fragments[fragment.name.value] = fragment }
        let walker = Walker(fragments: fragments, shape: schema, variables: variables, defaultListSize: defaultListSize)
        let rootType = operation.operation == .mutation ? schema.mutationType : schema.queryType
        let root = walker.fields(operation.selectionSet)
        if root.count > maxRootFields {
            return error("the operation selects \(root.count) root fields, more than the limit of \(maxRootFields)",
                         code: "MAX_ROOT_FIELDS_EXCEEDED")
        }
        let measure = walker.measure(operation.selectionSet, type: rootType, depth: 1)
        if measure.depth > maxDepth {
            return error("the operation is \(measure.depth) levels deep, more than the limit of \(maxDepth)", code: "MAX_DEPTH_EXCEEDED")
        }
        if measure.aliases > maxAliases {
            return error("the operation uses \(measure.aliases) aliases, more than the limit of \(maxAliases)",
                         code: "MAX_ALIASES_EXCEEDED")
        }
        if measure.cost > maxComplexity {
            return error("the operation's complexity is \(measure.cost), more than the limit of \(maxComplexity)",
                         code: "MAX_COMPLEXITY_EXCEEDED")
        }
        return nil
    }

    private func error(_ message: String, code: String) -> GraphQLError {
        GraphQLError(message: message, extensions: ["code": .string(code)])
    }
}

/// What the limits need to know of the schema: each field's return type name and whether it
/// is a list. Computed once per schema.
struct LoadedShape: Sendable {
    struct FieldShape: Sendable {
        var typeName: String
        var isList: Bool
        /// The schema's default for a `first`/`limit` argument.
        var defaultListSize: Int?
    }

    var fields: [String: FieldShape]
    var queryType: String?
    var mutationType: String?
}

private struct Walker {
    let fragments: [String: FragmentDefinition]
    let shape: LoadedShape
    let variables: [String: Map]
    let defaultListSize: Int

    struct Measure {
        var depth = 0
        var aliases = 0
        var cost = 0
    }

    /// The fields a selection set selects, fragments spread in. Bounded: the prescan capped how
    /// deep spreads nest and how many fields they expand to, and validation refused cycles; a
    /// fragment spread twice in one selection set adds its fields twice, as the cost counts them.
    func fields(_ set: SelectionSet) -> [Field] {
        var out: [Field] = []
        var pending: [SelectionSet] = [set]  // a work list, not recursion
        var index = 0
        while index < pending.count {
            for selection in pending[index].selections {
                switch selection {
                case let field as Field: out.append(field)
                case let inline as InlineFragment: pending.append(inline.selectionSet)
                case let spread as FragmentSpread:
                    if let fragment = fragments[spread.name.value] { pending.append(fragment.selectionSet) }
                default: continue
                }
            }
            index += 1
        }
        return out
    }

    func measure(_ set: SelectionSet, type: String?, depth: Int) -> Measure {
        var total = Measure(depth: depth)
        for field in fields(set) {
            if field.alias != nil { total.aliases += 1 }
            let fieldShape = type.flatMap { shape.fields["\($0).\(field.name.value)"] }
            var cost = 1
            if let selectionSet = field.selectionSet {
                // The prescan bounded depth through spreads, so this recursion is bounded too.
                let child = measure(selectionSet, type: fieldShape?.typeName, depth: depth + 1)
                total.depth = max(total.depth, child.depth)
                total.aliases = Self.add(total.aliases, child.aliases)
                cost = Self.add(cost, child.cost)
            }
            if fieldShape?.isList == true { cost = Self.multiply(cost, listSize(field, schemaDefault: fieldShape?.defaultListSize)) }
            total.cost = Self.add(total.cost, cost)
        }
        return total
    }

    // Costs come from the client (`limit: 9223372036854775807`): they saturate, never trap.
    static func add(_ a: Int, _ b: Int) -> Int {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? Int.max : sum
    }

    static func multiply(_ a: Int, _ b: Int) -> Int {
        let (product, overflow) = a.multipliedReportingOverflow(by: b)
        return overflow ? Int.max : product
    }

    /// `first` or `limit`, as written or from a variable; else the schema's default for it,
    /// else the limits' default.
    func listSize(_ field: Field, schemaDefault: Int?) -> Int {
        for argument in field.arguments where argument.name.value == "first" || argument.name.value == "limit" {
            if let value = argument.value as? IntValue {
                // Digits too many for an Int are still a huge list: saturate.
                return max(Int(value.value) ?? (value.value.hasPrefix("-") ? 1 : Int.max), 1)
            }
            if let variable = argument.value as? Variable, case .number(let number)? = variables[variable.name.value] {
                let double = number.doubleValue
                guard double.isFinite else { return Int.max }
                return double >= 9.2e18 ? Int.max : max(Int(double), 1)
            }
        }
        return schemaDefault ?? defaultListSize
    }
}
