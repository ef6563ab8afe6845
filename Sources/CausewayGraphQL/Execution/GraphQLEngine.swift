import GraphQL
import OrderedCollections

/// Executes operations against a loaded schema: GraphQLSwift's executor shapes the result
/// (field order, aliases, fragments, variables, null propagation, errors with paths), and the
/// resolvers installed here fetch from REST upstreams.
///
/// Batching happens one level ahead: when a resolver returns objects, it looks at the
/// sub-selection, and every child field with a `batch` mapping is fetched for all those
/// objects with one call, its items matched back by key. So `users { orders }` is two calls,
/// however many users there are. Identical calls within an operation are made once.
public final class GraphQLEngine: Sendable {
    public let loaded: LoadedSchema
    let shape: LoadedShape
    /// "Type.field" → output type, for object and interface types (field merging).
    let fieldTypes: [String: GraphQLOutputType]
    /// "Type.field" → its arguments, for coercion in `Executor`.
    let fieldArguments: [String: [String: GraphQLArgument]]

    public init(_ loaded: LoadedSchema) {
        self.loaded = loaded
        Self.installResolvers(loaded)
        // One pass over every type's fields: a type's `fields()` rebuilds its map on each call.
        var fieldTypes: [String: GraphQLOutputType] = [:]
        var fieldArguments: [String: [String: GraphQLArgument]] = [:]
        var shapes: [String: LoadedShape.FieldShape] = [:]
        for type in loaded.schema.typeMap.values where !type.name.hasPrefix("__") {
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

    /// Runs a parsed, validated document.
    public func execute(document: Document, variables: [String: Map], operationName: String?,
                        context: OperationContext) async -> GraphQLResult {
        if case .result(let result) = await Executor.run(document, operationName: operationName, variables: variables,
                                                         loaded: loaded, fieldTypes: fieldTypes, fieldArguments: fieldArguments,
                                                         context: context) {
            return result
        }
        do {
            return try await GraphQL.execute(schema: loaded.schema, documentAST: document, rootValue: RootValue(),
                                             context: context, variableValues: variables, operationName: operationName)
        } catch let error as GraphQLError {
            return GraphQLResult(errors: [error])
        } catch {
            return GraphQLResult(errors: [GraphQLError(message: "\(error)")])
        }
    }

    struct RootValue: Sendable {}

    // MARK: Resolvers

    /// GraphQLSwift lets a schema's field maps be replaced during setup; every field of every
    /// object type gets a resolver that knows its binding or its JSON key.
    static func installResolvers(_ loaded: LoadedSchema) {
        for case let type as GraphQLObjectType in loaded.schema.typeMap.values where !type.name.hasPrefix("__") {
            let original = type.fields
            let typeName = type.name
            type.fields = {
                let fields = try original()
                for (name, field) in fields {
                    let key = "\(typeName).\(name)"
                    if let binding = loaded.bindings[key] {
                        field.resolve = { source, args, context, info in
                            do {
                                return try await resolveRest(binding, source: source, args: args, context: context, info: info,
                                                             loaded: loaded)
                            } catch let error as GraphQLError {
                                // Errors made before the executor knew where: give them this field's place.
                                throw GraphQLError(message: error.message, nodes: info.fieldASTs, path: info.path,
                                                   extensions: error.extensions)
                            }
                        }
                    } else {
                        let rename = loaded.renames[key]
                        field.resolve = { source, _, context, info in
                            guard let object = source as? JSONObject, let value = object.value(name, rename: rename) else { return nil }
                            let result = executorValue(value)
                            guard let context = context as? OperationContext else { return result }
                            try await prefetchChildren(of: result, fieldASTs: info.fieldASTs,
                                                       itemType: namedObjectType(info.returnType), fragments: info.fragments,
                                                       variables: info.variableValues, context: context, loaded: loaded)
                            return result
                        }
                    }
                }
                return fields
            }
        }
    }

    static func responseKey(_ info: GraphQLResolveInfo) -> String {
        info.fieldASTs.first?.alias?.value ?? info.fieldName
    }

    static func resolveRest(_ binding: RestBinding, source: any Sendable, args: Map, context: any Sendable,
                            info: GraphQLResolveInfo, loaded: LoadedSchema) async throws -> (any Sendable)? {
        let parent = source as? JSONObject
        if let prefetched = parent?.prefetchedResult(responseKey(info)) { return try prefetched.get() }
        guard let context = context as? OperationContext else { return nil }
        let result = try await fetchRest(binding, parent: parent, args: args, context: context)
        try await prefetchChildren(of: result, fieldASTs: info.fieldASTs, itemType: namedObjectType(info.returnType),
                                   fragments: info.fragments, variables: info.variableValues, context: context, loaded: loaded)
        return result
    }

    /// One `@rest` field's value for one parent: its path rendered, the call made (or shared).
    static func fetchRest(_ binding: RestBinding, parent: JSONObject?, args: Map, context: OperationContext) async throws -> (any Sendable)? {
        let path = binding.path.render { variable in
            switch variable {
            case .argument(let name): args[name].templateText.map { [$0] } ?? []
            case .parent(let name): parent?.fields[name]?.templateText.map { [$0] } ?? []
            case .header(let name): context.headers[name].map { [$0] } ?? []
            case .batch: []
            }
        }
        var body: [UInt8]?
        if let name = binding.bodyArgument {
            body = Array(try JSONEncoderForMap.encode(args[name]))
        }
        let request = RestRequest(upstream: binding.upstream, method: binding.method, path: path, body: body,
                                  headers: context.headers)
        return executorValue(try select(binding.selector, in: try await context.fetch(request)))
    }

    static func select(_ selector: [String], in map: Map) throws -> Map {
        var current = map
        for key in selector {
            guard case .dictionary(let fields) = current, let next = fields[key] else {
                throw GraphQLError(message: "the upstream answer has no \"\(selector.joined(separator: "."))\"",
                                   extensions: ["code": "UPSTREAM_UNAVAILABLE"])
            }
            current = next
        }
        return current
    }

    // MARK: Batching, one level ahead

    /// For objects just resolved, fetches every selected child field that has a `batch`
    /// mapping with one call for all of them, and attaches each object's share.
    static func prefetchChildren(of result: (any Sendable)?, fieldASTs: [Field], itemType: GraphQLObjectType?,
                                 fragments: [String: FragmentDefinition], variables: [String: any Sendable],
                                 context: OperationContext, loaded: LoadedSchema) async throws {
        let parents = objects(in: result)
        guard !parents.isEmpty, let itemType else { return }
        var selections: [Field] = []
        for fieldAST in fieldASTs {
            if let set = fieldAST.selectionSet {
                collectFields(set, applies: { loaded.conditionApplies($0, to: itemType.name) }, fragments: fragments,
                              variables: variables, into: &selections, visited: [])
            }
        }
        for child in selections {
            guard let binding = loaded.bindings["\(itemType.name).\(child.name.value)"], let batch = binding.batch else { continue }
            let key = child.alias?.value ?? child.name.value
            let arguments = argumentValues(child, defaults: binding.argumentDefaults, variables: variables)
            var values: [String] = []
            var seen: Set<String> = []
            for parent in parents {
                if let value = parent.fields[batch.parentField]?.templateText, seen.insert(value).inserted { values.append(value) }
            }
            let path = batch.path.render { variable in
                switch variable {
                case .argument(let name): arguments[name].map { [$0] } ?? []
                case .batch: values
                case .header(let name): context.headers[name].map { [$0] } ?? []
                case .parent: []
                }
            }
            let request = RestRequest(upstream: binding.upstream, method: "GET", path: path, body: nil, headers: context.headers)
            let isList = binding.isList
            do {
                guard !values.isEmpty else {
                    for parent in parents { parent.attach(key, .success(isList ? [(any Sendable)?]() : nil)) }
                    continue
                }
                let answer = try select(binding.selector, in: try await context.fetch(request))
                guard case .array(let items) = answer else {
                    throw GraphQLError(message: "upstream \"\(binding.upstream)\": a batched answer must be a JSON array",
                                       extensions: ["code": "UPSTREAM_UNAVAILABLE"])
                }
                var byKey: [String: [Map]] = [:]
                for item in items {
                    if case .dictionary(let fields) = item, let value = fields[batch.key]?.templateText {
                        byKey[value, default: []].append(item)
                    }
                }
                for parent in parents {
                    let matches = parent.fields[batch.parentField]?.templateText.flatMap { byKey[$0] } ?? []
                    let value: (any Sendable)? = isList ? matches.map { executorValue($0) } : matches.first.flatMap { executorValue($0) }
                    parent.attach(key, .success(value))
                }
            } catch let error as GraphQLError {
                for parent in parents { parent.attach(key, .failure(error)) }
            }
        }
    }

    /// The JSON objects in a resolved value (itself, or the items of a list, nested lists too).
    static func objects(in value: (any Sendable)?) -> [JSONObject] {
        if let object = value as? JSONObject { return [object] }
        if let list = value as? [(any Sendable)?] { return list.flatMap { objects(in: $0) } }
        return []
    }

    static func namedObjectType(_ type: GraphQLType) -> GraphQLObjectType? {
        switch type {
        case let type as GraphQLNonNull: namedObjectType(type.ofType)
        case let type as GraphQLList: namedObjectType(type.ofType)
        case let type as GraphQLObjectType: type
        default: nil
        }
    }

    /// The fields a selection set selects on an object type (`applies` says which type
    /// conditions include it), through fragments, honouring
    /// `@skip`/`@include` with literal or variable conditions.
    static func collectFields(_ set: SelectionSet, applies: (String) -> Bool, fragments: [String: FragmentDefinition],
                              variables: [String: any Sendable], into fields: inout [Field], visited: Set<String>) {
        for selection in set.selections {
            switch selection {
            case let field as Field:
                if included(field.directives, variables: variables) { fields.append(field) }
            case let fragment as InlineFragment:
                guard included(fragment.directives, variables: variables),
                    fragment.typeCondition.map({ applies($0.name.value) }) ?? true
                else { continue }
                collectFields(fragment.selectionSet, applies: applies, fragments: fragments, variables: variables,
                              into: &fields, visited: visited)
            case let spread as FragmentSpread:
                let name = spread.name.value
                guard !visited.contains(name), included(spread.directives, variables: variables),
                    let fragment = fragments[name], applies(fragment.typeCondition.name.value)
                else { continue }
                collectFields(fragment.selectionSet, applies: applies, fragments: fragments, variables: variables,
                              into: &fields, visited: visited.union([name]))
            default:
                continue
            }
        }
    }

    static func included(_ directives: [Directive], variables: [String: any Sendable]) -> Bool {
        for directive in directives where directive.name.value == "skip" || directive.name.value == "include" {
            guard let argument = directive.arguments.first(where: { $0.name.value == "if" }) else { continue }
            var condition = false
            if let value = argument.value as? BooleanValue {
                condition = value.value
            } else if let variable = argument.value as? Variable, let value = variables[variable.name.value] {
                condition = (value as? Bool) ?? ((value as? Map) == .bool(true))
            }
            if directive.name.value == "skip" && condition { return false }
            if directive.name.value == "include" && !condition { return false }
        }
        return true
    }

    /// A child field's arguments as template text: literals, variables, then defaults.
    static func argumentValues(_ field: Field, defaults: [String: String],
                               variables: [String: any Sendable]) -> [String: String] {
        var values = defaults
        for argument in field.arguments {
            let name = argument.name.value
            if let variable = argument.value as? Variable {
                if let map = variables[variable.name.value] as? Map, let text = map.templateText { values[name] = text }
            } else if let text = literalText(argument.value) {
                values[name] = text
            }
        }
        return values
    }
}

/// JSON text for a request body built from an argument value.
enum JSONEncoderForMap {
    static func encode(_ map: Map) throws -> [UInt8] {
        Array(try map.jsonText().utf8)
    }
}

extension Map {
    /// Compact JSON text (object keys in their order; `/` and non-ASCII as they are).
    public func jsonText() throws -> String {
        var out = ""
        write(into: &out)
        return out
    }

    func write(into out: inout String) {
        switch self {
        case .null, .undefined: out += "null"
        case .bool(let value): out += value ? "true" : "false"
        case .number: out += templateText ?? "null"
        case .string(let text): Self.writeString(text, into: &out)
        case .array(let items):
            out += "["
            for (index, item) in items.enumerated() {
                if index > 0 { out += "," }
                item.write(into: &out)
            }
            out += "]"
        case .dictionary(let fields):
            out += "{"
            var first = true
            for (key, value) in fields {
                if !first { out += "," }
                first = false
                Self.writeString(key, into: &out)
                out += ":"
                value.write(into: &out)
            }
            out += "}"
        }
    }

    static func writeString(_ text: String, into out: inout String) {
        out += "\""
        // Most strings need no escaping: append them whole.
        if !text.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            out += text
        } else {
            for scalar in text.unicodeScalars {
                switch scalar {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                case _ where scalar.value < 0x20:
                    let hex = Array("0123456789abcdef".utf8)
                    out += "\\u00" + String(decoding: [hex[Int(scalar.value >> 4)], hex[Int(scalar.value & 15)]], as: UTF8.self)
                default: out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }
}
