import GraphQL
import OrderedCollections

/// A loaded schema, ready to run operations: field types and arguments read once (a type's
/// `fields()` rebuilds its map on every call), validation's extra rule, limits, and the
/// choice of how an operation runs: compiled to an `OperationPlan` and executed by
/// `OperationRun` on the event loop, or (introspection, and the errors of operations that
/// cannot run) by GraphQLSwift's executor.
public final class GraphQLEngine: Sendable {
    public let loaded: LoadedSchema
    let shape: LoadedShape
    /// "Type.field" → output type, for object and interface types.
    let fieldTypes: [String: GraphQLOutputType]
    /// "Type.field" → its arguments, for coercion.
    let fieldArguments: [String: [String: GraphQLArgument]]
    /// Type → field (or input field) name → its place in the SDL, for introspection answers.
    let fieldOrder: [String: [String: Int]]

    public init(_ loaded: LoadedSchema) {
        self.loaded = loaded
        var fieldTypes: [String: GraphQLOutputType] = [:]
        var fieldArguments: [String: [String: GraphQLArgument]] = [:]
        var shapes: [String: LoadedShape.FieldShape] = [:]
        var fieldOrder: [String: [String: Int]] = [:]
        for type in loaded.schema.typeMap.values where !type.name.hasPrefix("__") {
            let names: [String]? = switch type {
            case let object as GraphQLObjectType: try? Array(object.fields().keys)
            case let interface as GraphQLInterfaceType: try? Array(interface.fields().keys)
            case let input as GraphQLInputObjectType: try? Array(input.fields().keys)
            default: nil
            }
            if let names { fieldOrder[type.name] = Dictionary(names.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a }) }
            let fields: GraphQLFieldMap? = switch type {
            case let object as GraphQLObjectType: try? object.fields()
            case let interface as GraphQLInterfaceType: try? interface.fields()
            default: nil
            }
            for (name, field) in fields ?? [:] {
                let key = "\(type.name).\(name)"
                fieldTypes[key] = field.type
                fieldArguments[key] = Dictionary(uniqueKeysWithValues: field.args.map { ($0.key, $0.value) })
                guard type is GraphQLObjectType else { continue }
                let defaultSize = field.args.first { $0.key == "first" || $0.key == "limit" }?.value.defaultValue
                    .flatMap { if case .number(let number) = $0 { number.intValue } else { nil } }
                shapes[key] = .init(typeName: SchemaLoader.namedType(field.type).debugName,
                                    isList: SchemaLoader.isListOutput(field.type), defaultListSize: defaultSize)
            }
        }
        self.shape = LoadedShape(fields: shapes, queryType: loaded.schema.queryType?.name,
                                 mutationType: loaded.schema.mutationType?.name)
        self.fieldTypes = fieldTypes
        self.fieldArguments = fieldArguments
        self.fieldOrder = fieldOrder
    }

    /// GraphQLSwift's introspection lists a type's `fields` and `inputFields` by name;
    /// graphql-js (and so every GraphiQL and code generator) keeps the SDL's order. This puts
    /// them back in it, wherever the answer selects the type's `name` and the fields' names.
    /// Recursion is bounded by the answer's depth, which the document's depth bounds.
    func inSchemaOrder(_ value: Map) -> Map {
        switch value {
        case .array(let items):
            return .array(items.map(inSchemaOrder))
        case .dictionary(var members):
            let order = members["name"].flatMap { if case .string(let name) = $0 { fieldOrder[name] } else { nil } }
            for key in members.keys {
                guard let member = members[key] else { continue }
                var ordered = inSchemaOrder(member)
                if let order, key == "fields" || key == "inputFields", case .array(let items) = ordered {
                    let positions = items.map { item -> Int? in
                        guard case .dictionary(let field) = item, case .string(let name)? = field["name"] else { return nil }
                        return order[name]
                    }
                    if positions.allSatisfy({ $0 != nil }) {
                        ordered = .array(zip(items, positions).sorted { $0.1! < $1.1! }.map(\.0))
                    }
                }
                members[key] = ordered
            }
            return .dictionary(members)
        default:
            return value
        }
    }

    /// A request's document, from text to valid: the prescan's bounds first (one linear pass;
    /// everything after it recurses or expands fragments), then GraphQLSwift's parser, its
    /// validation rules and `OverlappingFieldsCanBeMerged`. Errors echo bounded excerpts.
    ///
    /// GraphQLSwift locates each error it makes by scanning the whole text (with a regular
    /// expression over UTF-16): 2,000 unknown fields in 52 KB held the event loop 0.75 s (found
    /// by fuzzing). So validation runs on a copy parsed without locations, where errors cost
    /// nothing to locate; the text is parsed with locations only for a document that is valid,
    /// or whose errors are few enough to locate cheaply. Past that, the first errors are
    /// answered without locations.
    public enum DocumentCheck {
        case valid(Document)
        case refused([GraphQLError])
    }

    public func parseAndValidate(_ query: String, prescan: DocumentPrescan,
                                 rules: [@Sendable (ValidationContext) -> Visitor]) -> DocumentCheck {
        if let refusal = prescan.check(query) { return .refused([refusal.error]) }
        let bare: Document
        do {
            bare = try parse(source: Source(body: query, name: "GraphQL request"), noLocation: true)
        } catch let error as GraphQLError {
            return .refused([error.withBoundedMessage])
        } catch {
            return .refused([GraphQLError(message: GraphQLError.excerpt("\(error)"))])
        }
        var errors = validationErrors(bare, rules: rules)
        let locate = errors.isEmpty
            || (errors.count <= Self.maxLocatedErrors && errors.count * query.utf8.count <= Self.locationBudget)
        if locate, let located = try? parse(source: Source(body: query, name: "GraphQL request")) {
            if errors.isEmpty { return .valid(located) }
            errors = validationErrors(located, rules: rules)
        }
        return .refused(errors.prefix(Self.maxErrors).map(\.withBoundedMessage))
    }

    /// Errors located with positions: at most this many, and this many bytes of text scanned.
    static let maxLocatedErrors = 20
    static let locationBudget = 256 << 10
    /// Errors answered, as graphql-js's `maxErrors`.
    static let maxErrors = 100

    private func validationErrors(_ document: Document, rules: [@Sendable (ValidationContext) -> Visitor]) -> [GraphQLError] {
        let errors = validate(schema: loaded.schema, ast: document, rules: rules)
        return errors.isEmpty ? fieldMergeErrors(document) : errors
    }

    /// The `OverlappingFieldsCanBeMerged` rule, run after GraphQLSwift's validation.
    public func fieldMergeErrors(_ document: Document) -> [GraphQLError] {
        OverlappingFieldsCanBeMerged.errors(document: document, schema: loaded.schema, fieldTypes: fieldTypes)
    }

    /// The first of `limits` the operation exceeds, checked before it runs.
    public func check(_ limits: OperationLimits, document: Document, operationName: String?,
                      variables: [String: Map]) -> GraphQLError? {
        limits.check(document, operationName: operationName, schema: shape, variables: variables)
    }

    public enum Preparation {
        /// Ready to run, with its coerced variables.
        case plan(OperationPlan, variables: [String: Map])
        /// The variables are not what the operation declares.
        case requestErrors([GraphQLError])
        /// For GraphQLSwift: an unknown or ambiguous operation name, a subscription.
        case graphQLSwift
    }

    /// Chooses the operation, coerces its variables and finds its plan among `plans` (a
    /// cached document's) or builds it there.
    public func prepare(_ document: Document, operationName: String?, variables provided: [String: Map],
                        plans: inout [OperationPlan]) -> Preparation {
        guard let operation = Self.operation(in: document, named: operationName),
            operationName != nil || document.definitions.filter({ $0 is OperationDefinition }).count == 1,
            operation.operation != .subscription
        else { return .graphQLSwift }
        let variables: [String: Map]
        do {
            variables = try Coercion(schema: loaded.schema).variables(operation.variableDefinitions, provided)
        } catch let failure as Coercion.Failure {
            return .requestErrors(failure.errors)
        } catch {
            return .graphQLSwift
        }
        if let plan = plans.first(where: { $0.serves(operationName: operationName, variables: variables) }) {
            return .plan(plan, variables: variables)
        }
        guard let plan = try? PlanBuilder.build(operation, named: operationName, document: document, engine: self, variables: variables) else {
            return .graphQLSwift
        }
        if plans.count >= 8 { plans.removeFirst() }  // @skip/@include variants of one document
        plans.append(plan)
        return .plan(plan, variables: variables)
    }

    /// A copy of the document whose operation selects only the plan's introspection root
    /// fields, for GraphQLSwift to answer.
    public func introspectionDocument(_ document: Document, plan: OperationPlan) -> Document {
        let definitions: [Node] = document.definitions.map { definition in
            guard let operation = definition as? OperationDefinition, operation === plan.operation else { return definition }
            let selections: [Node] = plan.introspection
            return operation.set(value: .node(operation.selectionSet.set(value: .array(selections), key: "selections")),
                                 key: "selectionSet")
        }
        return document.set(value: .array(definitions), key: "definitions")
    }

    /// GraphQLSwift's executor, for what the plan does not cover. It has no resolvers here: it
    /// answers introspection and words the errors of operations that cannot run.
    public func executeWithGraphQLSwift(_ document: Document, operationName: String?, variables: [String: Map]) async -> GraphQLResult {
        do {
            var result = try await GraphQL.execute(schema: loaded.schema, documentAST: document, rootValue: (), context: (),
                                                   variableValues: variables, operationName: operationName)
            if let data = result.data { result.data = inSchemaOrder(data) }
            return result
        } catch let error as GraphQLError {
            return GraphQLResult(errors: [error])
        } catch {
            return GraphQLResult(errors: [GraphQLError(message: "\(error)")])
        }
    }

    /// The operation a request names, or the document's first (the only one, when valid
    /// requests name none).
    public static func operation(in document: Document, named name: String?) -> OperationDefinition? {
        let operations = document.definitions.compactMap { $0 as? OperationDefinition }
        return name.map { name in operations.first { $0.name?.value == name } } ?? operations.first
    }

    static func isTrue(_ value: Map?) -> Bool {
        value == .bool(true)
    }
}

extension GraphQLResult {
    /// `data` as JSON text (`null` when there is none).
    public var dataJSON: [UInt8] {
        var out: [UInt8] = []
        JSONWriter.write(data ?? .null, into: &out)
        return out
    }
}

extension DocumentPrescan.Refusal {
    public var error: GraphQLError {
        GraphQLError(message: message, extensions: ["code": .string(code)])
    }
}

extension GraphQLError {
    /// Errors echo what they complain of (a token, a line of source); an attacker's 8 MB token
    /// must not come back as an 8 MB answer.
    static let maxMessageLength = 240

    static func excerpt(_ text: String) -> String {
        guard text.utf8.count > maxMessageLength else { return text }
        return String(decoding: text.utf8.prefix(maxMessageLength), as: UTF8.self) + "…"
    }

    var withBoundedMessage: GraphQLError {
        guard message.utf8.count > Self.maxMessageLength else { return self }
        return GraphQLError(message: Self.excerpt(message), locations: locations, path: path, extensions: extensions)
    }
}
