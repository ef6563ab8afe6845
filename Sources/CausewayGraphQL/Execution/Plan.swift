import GraphQL
import OrderedCollections

/// An operation compiled against the schema: for every selection set and the object type it
/// applies to, the fields in response order, where each one's value comes from (the parent's
/// JSON, a `@rest` call, `__typename`, introspection) and how its value is written. Built once
/// per document on a loop and reused while the document is cached; `OperationRun` executes it.
public final class OperationPlan {
    let isMutation: Bool
    let root: SelectionPlan
    let operation: OperationDefinition
    /// The operation name the request gave (nil when the document has one operation).
    public let operationName: String?
    /// The variables `@skip`/`@include` were decided by, with their values: a plan serves
    /// only requests that agree.
    let conditions: [String: Bool]
    /// Root fields that are introspection (`__schema`, `__type`): GraphQLSwift answers them.
    public let introspection: [Field]
    /// Every field, by id.
    let fields: [FieldPlan]
    /// The plan as the response writer walks it.
    private(set) lazy var program = WriterProgram(self)

    init(operation: OperationDefinition, root: SelectionPlan, operationName: String?, conditions: [String: Bool],
         introspection: [Field], fields: [FieldPlan]) {
        self.fields = fields
        self.operation = operation
        self.isMutation = operation.operation == .mutation
        self.root = root
        self.operationName = operationName
        self.conditions = conditions
        self.introspection = introspection
    }

    func serves(operationName: String?, variables: [String: Map]) -> Bool {
        operationName == self.operationName && conditions.allSatisfy { GraphQLEngine.isTrue(variables[$0.key]) == $0.value }
    }
}

// The plan's parts are classes with `let` properties and payload-free enums, which the run
// walks cheaply; the writer walks their lowered form, `WriterProgram`.

/// The fields one selection selects on one object type.
final class SelectionPlan {
    let typeName: String
    /// `"TypeName"`, as written for `__typename`.
    let typeNameJSON: [UInt8]
    let fields: [FieldPlan]
    /// A `@rest` field here or in an object below that is reached through JSON: where the
    /// executor must look for the next calls to make.
    let restBelow: Bool

    init(typeName: String, fields: [FieldPlan]) {
        self.typeName = typeName
        typeNameJSON = Array(JSONWriter.quoted(typeName).utf8)
        self.fields = fields
        restBelow = fields.contains { $0.source == .rest || $0.output.restBelow }
    }
}

final class FieldPlan {
    enum Source {
        case typename
        /// The parent's JSON member: by `@from` name, else by name, else its snake_case spelling.
        case json
        case rest
        case introspection
    }

    /// Its index in the plan's `fields`: resolved `@rest` values are kept by (parent, id).
    let id: Int
    let key: String
    /// `"key":`, as written.
    let keyJSON: [UInt8]
    /// `Type.field`, for error messages.
    let label: String
    let asts: [Field]
    let source: Source
    /// `.json`: the member's name, and the snake_case spelling to try next.
    let name: [UInt8]
    let alternative: [UInt8]?
    let binding: RestBinding?
    /// `binding.batch.parentField`, as bytes.
    let batchParentKey: [UInt8]
    // From the binding, read per job (a copy of the whole binding each time was measurable).
    let batched: Bool
    let listBinding: Bool
    let selector: [String]
    let output: OutputPlan
    let arguments: [String: GraphQLArgument]

    init(id: Int, key: String, label: String, asts: [Field], source: Source, name: [UInt8] = [], alternative: [UInt8]? = nil,
         binding: RestBinding? = nil, output: OutputPlan, arguments: [String: GraphQLArgument] = [:]) {
        self.id = id
        self.key = key
        keyJSON = Array((JSONWriter.quoted(key) + ":").utf8)
        self.label = label
        self.asts = asts
        self.source = source
        self.name = name
        self.alternative = alternative
        self.binding = binding
        batchParentKey = Array((binding?.batch?.parentField ?? "").utf8)
        batched = binding?.batch != nil
        listBinding = binding?.isList ?? false
        selector = binding?.selector ?? []
        self.output = output
        self.arguments = arguments
    }
}

final class OutputPlan {
    enum Kind {
        case nonNull, list, leaf, object
        /// An interface or union: the object type named by the JSON's `__typename` (or the
        /// only possible one).
        case abstract
    }

    enum Leaf {
        case string, int, float, boolean, id, enumeration, other
    }

    let kind: Kind
    /// `.nonNull`, `.list`: what is wrapped.
    let inner: OutputPlan?
    let selection: SelectionPlan?
    let abstractName: String
    let possible: [String: SelectionPlan]
    let leaf: Leaf
    /// `.enumeration`, `.other`: for GraphQLSwift's `serialize`.
    let leafType: GraphQLLeafType?
    let enumNames: Set<String>
    let restBelow: Bool

    init(kind: Kind, inner: OutputPlan? = nil, selection: SelectionPlan? = nil, abstractName: String = "",
         possible: [String: SelectionPlan] = [:], leaf: Leaf = .string, leafType: GraphQLLeafType? = nil, enumNames: Set<String> = []) {
        self.kind = kind
        self.inner = inner
        self.selection = selection
        self.abstractName = abstractName
        self.possible = possible
        self.leaf = leaf
        self.leafType = leafType
        self.enumNames = enumNames
        restBelow = (inner?.restBelow ?? false) || (selection?.restBelow ?? false) || possible.values.contains { $0.restBelow }
    }

    static var string: OutputPlan { OutputPlan(kind: .leaf, leaf: .string) }

    /// The item of a list (under its non-null wrapper, if any).
    var listItem: OutputPlan {
        switch kind {
        case .nonNull: inner!.listItem
        case .list: inner!
        default: self
        }
    }
}

/// Compiles an operation; throws `Unsupported` for what it leaves to GraphQLSwift.
struct PlanBuilder {
    struct Unsupported: Error {}

    let engine: GraphQLEngine
    let fragments: [String: FragmentDefinition]
    let variables: [String: Map]
    private(set) var conditions: [String: Bool] = [:]
    private(set) var introspection: [Field] = []
    private(set) var fields: [FieldPlan] = []

    init(engine: GraphQLEngine, fragments: [String: FragmentDefinition], variables: [String: Map]) {
        self.engine = engine
        self.fragments = fragments
        self.variables = variables
    }

    static func build(_ operation: OperationDefinition, named operationName: String?, document: Document,
                      engine: GraphQLEngine, variables: [String: Map]) throws -> OperationPlan {
        var fragments: [String: FragmentDefinition] = [:]
        for case let fragment as FragmentDefinition in document.definitions { fragments[fragment.name.value] = fragment }
        var builder = PlanBuilder(engine: engine, fragments: fragments, variables: variables)
        let schema = engine.loaded.schema
        guard let rootType = operation.operation == .mutation ? schema.mutationType : schema.queryType else { throw Unsupported() }
        let root = try builder.selection([operation.selectionSet], type: rootType, isRoot: true)
        return OperationPlan(operation: operation, root: root, operationName: operationName, conditions: builder.conditions,
                             introspection: builder.introspection, fields: builder.fields)
    }

    mutating func selection(_ sets: [SelectionSet], type: GraphQLObjectType, isRoot: Bool = false) throws -> SelectionPlan {
        var byKey = OrderedDictionary<String, [Field]>()
        for set in sets {
            var fields: [Field] = []
            collect(set, typeName: type.name, into: &fields, visited: [])
            for field in fields { byKey[field.alias?.value ?? field.name.value, default: []].append(field) }
        }
        var planned: [FieldPlan] = []
        for (key, asts) in byKey {
            let name = asts[0].name.value
            let label = "\(type.name).\(name)"
            let id = fields.count
            let field: FieldPlan
            if name == "__typename" {
                field = FieldPlan(id: id, key: key, label: label, asts: asts, source: .typename, output: .string)
            } else if isRoot && (name == "__schema" || name == "__type") {
                introspection.append(contentsOf: asts)
                field = FieldPlan(id: id, key: key, label: label, asts: asts, source: .introspection, output: .string)
            } else {
                guard let fieldType = engine.fieldTypes[label] else { throw Unsupported() }
                // A stand-in keeps the ids in order while the children are planned.
                fields.append(FieldPlan(id: id, key: key, label: label, asts: asts, source: .typename, output: .string))
                let output = try self.output(fieldType, sets: asts.compactMap(\.selectionSet))
                let arguments = engine.fieldArguments[label] ?? [:]
                if let binding = engine.loaded.bindings[label] {
                    field = FieldPlan(id: id, key: key, label: label, asts: asts, source: .rest, binding: binding, output: output,
                                      arguments: arguments)
                } else {
                    let rename = engine.loaded.renames[label]
                    let snake = Self.snakeCase(name)
                    field = FieldPlan(id: id, key: key, label: label, asts: asts, source: .json, name: Array((rename ?? name).utf8),
                                      alternative: rename == nil && snake != name ? Array(snake.utf8) : nil, output: output,
                                      arguments: arguments)
                }
                fields[id] = field
                planned.append(field)
                continue
            }
            fields.append(field)
            planned.append(field)
        }
        return SelectionPlan(typeName: type.name, fields: planned)
    }

    mutating func output(_ type: GraphQLType, sets: [SelectionSet]) throws -> OutputPlan {
        switch type {
        case let nonNull as GraphQLNonNull: return OutputPlan(kind: .nonNull, inner: try output(nonNull.ofType, sets: sets))
        case let list as GraphQLList: return OutputPlan(kind: .list, inner: try output(list.ofType, sets: sets))
        case let object as GraphQLObjectType: return OutputPlan(kind: .object, selection: try selection(sets, type: object))
        case let enumeration as GraphQLEnumType:
            return OutputPlan(kind: .leaf, leaf: .enumeration, leafType: enumeration, enumNames: Set(enumeration.values.map(\.name)))
        case let scalar as GraphQLScalarType:
            let leaf: OutputPlan.Leaf = switch scalar.name {
            case "String": .string
            case "Int": .int
            case "Float": .float
            case "Boolean": .boolean
            case "ID": .id
            default: .other
            }
            return OutputPlan(kind: .leaf, leaf: leaf, leafType: scalar)
        case let abstract as GraphQLNamedType:
            var possible: [String: SelectionPlan] = [:]
            for name in engine.loaded.possibleTypes[abstract.name] ?? [] {
                guard let object = engine.loaded.schema.typeMap[name] as? GraphQLObjectType else { continue }
                possible[name] = try selection(sets, type: object)
            }
            return OutputPlan(kind: .abstract, abstractName: abstract.name, possible: possible)
        default:
            throw Unsupported()
        }
    }

    /// The fields a selection set selects on an object type, through fragments whose type
    /// condition applies, honouring `@skip`/`@include`.
    mutating func collect(_ set: SelectionSet, typeName: String, into fields: inout [Field], visited: Set<String>) {
        for selection in set.selections {
            switch selection {
            case let field as Field:
                if included(field.directives) { fields.append(field) }
            case let fragment as InlineFragment:
                guard included(fragment.directives),
                    fragment.typeCondition.map({ engine.loaded.conditionApplies($0.name.value, to: typeName) }) ?? true
                else { continue }
                collect(fragment.selectionSet, typeName: typeName, into: &fields, visited: visited)
            case let spread as FragmentSpread:
                let name = spread.name.value
                guard !visited.contains(name), included(spread.directives), let fragment = fragments[name],
                    engine.loaded.conditionApplies(fragment.typeCondition.name.value, to: typeName)
                else { continue }
                collect(fragment.selectionSet, typeName: typeName, into: &fields, visited: visited.union([name]))
            default:
                continue
            }
        }
    }

    mutating func included(_ directives: [Directive]) -> Bool {
        for directive in directives where directive.name.value == "skip" || directive.name.value == "include" {
            guard let argument = directive.arguments.first(where: { $0.name.value == "if" }) else { continue }
            var condition = false
            if let value = argument.value as? BooleanValue {
                condition = value.value
            } else if let variable = argument.value as? Variable {
                condition = GraphQLEngine.isTrue(variables[variable.name.value])
                conditions[variable.name.value] = condition
            }
            if directive.name.value == "skip" && condition { return false }
            if directive.name.value == "include" && !condition { return false }
        }
        return true
    }

    static func snakeCase(_ name: String) -> String {
        var out = ""
        for character in name {
            if character.isUppercase {
                out += "_" + character.lowercased()
            } else {
                out.append(character)
            }
        }
        return out
    }
}
