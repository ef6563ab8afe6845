import GraphQL
import OrderedCollections

/// Causeway's own executor for operations on object types (GraphQLSwift's runs every field as
/// a child task, ~19 µs a field; see docs/benchmarks.md). Fields complete synchronously, one
/// object after another; the only waits are REST calls, and those of one level are made
/// together: an object's `@rest` fields at once, a list's items' fields at once, batched
/// children one level ahead as before.
///
/// Results follow the spec as GraphQLSwift's executor produces them: field order, aliases,
/// fragments, `@skip`/`@include`, `__typename`, coerced variables and arguments, leaf
/// serialization, interfaces and unions by `__typename`, and null propagation with errors at
/// their path. Introspection it leaves to GraphQLSwift (`.unsupported`).
struct Executor {
    enum Outcome {
        case result(GraphQLResult)
        case unsupported
    }

    let loaded: LoadedSchema
    /// "Type.field" → output type and arguments, computed once per schema: a type's `fields()`
    /// rebuilds its whole field map on every call.
    let fieldTypes: [String: GraphQLOutputType]
    let fieldArguments: [String: [String: GraphQLArgument]]
    let context: OperationContext
    let fragments: [String: FragmentDefinition]
    let variables: [String: Map]

    /// A non-null field came out null: its parent becomes null (the error is already recorded).
    struct NullSignal: Error {}
    /// The operation reaches something this executor leaves to GraphQLSwift.
    struct Unsupported: Error {}

    /// What the operation accumulates as it runs (its tasks touch it one at a time: each
    /// level's fetches are awaited before completion goes on).
    final class Errors: @unchecked Sendable {
        var list: [GraphQLError] = []
        /// Field collection per (selection, runtime type): every item of a list shares one.
        var collected: [CollectKey: OrderedDictionary<String, [Field]>] = [:]
    }

    struct CollectKey: Hashable {
        var type: String
        var start: Int
        var count: Int
    }

    let errors = Errors()

    static func run(_ document: Document, operationName: String?, variables provided: [String: Map],
                    loaded: LoadedSchema, fieldTypes: [String: GraphQLOutputType],
                    fieldArguments: [String: [String: GraphQLArgument]], context: OperationContext) async -> Outcome {
        let operations = document.definitions.compactMap { $0 as? OperationDefinition }
        guard let operation = operationName.map({ name in operations.first { $0.name?.value == name } }) ?? operations.first,
            operations.count == 1 || operationName != nil, operation.operation != .subscription
        else { return .unsupported }  // GraphQLSwift words the errors for these
        var fragments: [String: FragmentDefinition] = [:]
        for case let fragment as FragmentDefinition in document.definitions { fragments[fragment.name.value] = fragment }
        let variables: [String: Map]
        do {
            variables = try Coercion(schema: loaded.schema).variables(operation.variableDefinitions, provided)
        } catch let failure as Coercion.Failure {
            return .result(GraphQLResult(errors: failure.errors))
        } catch {
            return .unsupported
        }
        let executor = Executor(loaded: loaded, fieldTypes: fieldTypes, fieldArguments: fieldArguments, context: context,
                                fragments: fragments, variables: variables)
        let rootType = operation.operation == .mutation ? loaded.schema.mutationType : loaded.schema.queryType
        guard let rootType else { return .unsupported }
        let fields = executor.collect([operation.selectionSet], type: rootType)
        if fields.keys.contains(where: { key in fields[key]!.contains { $0.name.value.hasPrefix("__") && $0.name.value != "__typename" } }) {
            return .unsupported  // introspection
        }
        do {
            let data = try await executor.completeObject(rootType, source: JSONObject([:]), fields: fields, path: [],
                                                         serially: operation.operation == .mutation)
            return .result(GraphQLResult(data: data, errors: executor.errors.list))
        } catch is NullSignal {
            return .result(GraphQLResult(data: nil, errors: executor.errors.list))
        } catch {
            return .unsupported
        }
    }

    // MARK: Fields

    /// Response key → the fields answering to it, for a runtime object type.
    func collect(_ sets: [SelectionSet], type: GraphQLObjectType) -> OrderedDictionary<String, [Field]> {
        let key = sets.first?.loc.map { CollectKey(type: type.name, start: $0.start, count: sets.count) }
        if let key, let cached = errors.collected[key] { return cached }
        let result = collectUncached(sets, type: type)
        if let key { errors.collected[key] = result }
        return result
    }

    private func collectUncached(_ sets: [SelectionSet], type: GraphQLObjectType) -> OrderedDictionary<String, [Field]> {
        var fields: [Field] = []
        let variables = self.variables as [String: any Sendable]
        for set in sets {
            GraphQLEngine.collectFields(set, applies: { loaded.conditionApplies($0, to: type.name) }, fragments: fragments,
                                        variables: variables, into: &fields, visited: [])
        }
        var byKey = OrderedDictionary<String, [Field]>()
        for field in fields { byKey[field.alias?.value ?? field.name.value, default: []].append(field) }
        return byKey
    }

    func completeObject(_ type: GraphQLObjectType, source: JSONObject?, fields: OrderedDictionary<String, [Field]>,
                        path: [IndexPathElement], serially: Bool = false) async throws -> Map {
        if !serially { await fetchAhead([(type, source, fields)]) }
        var out = OrderedDictionary<String, Map>()
        for (key, asts) in fields {
            let name = asts[0].name.value
            if name == "__typename" {
                out[key] = .string(type.name)
                continue
            }
            let label = "\(type.name).\(name)"
            guard let fieldType = fieldTypes[label] else { throw Unsupported() }
            let fieldPath = path + [key]
            let value = await resolve(type, name: name, key: key, asts: asts, source: source)
            do {
                out[key] = try await complete(fieldType, label: label, asts: asts, value: value, path: fieldPath)
            } catch is NullSignal {
                if fieldType is GraphQLNonNull { throw NullSignal() }
                out[key] = .null
            }
        }
        return .dictionary(out)
    }

    /// A field's raw value: `@rest` (fetched ahead or now), or the parent's JSON; objects in it
    /// get their batched children fetched one level ahead.
    func resolve(_ type: GraphQLObjectType, name: String, key: String, asts: [Field],
                 source: JSONObject?) async -> Result<(any Sendable)?, GraphQLError> {
        let fieldKey = "\(type.name).\(name)"
        if let prefetched = source?.prefetchedResult(key) { return prefetched }
        do {
            let value: (any Sendable)?
            if let binding = loaded.bindings[fieldKey] {
                let args = try arguments(asts[0], of: fieldKey)
                value = try await GraphQLEngine.fetchRest(binding, parent: source, args: args, context: context)
            } else {
                guard let source, let json = source.value(name, rename: loaded.renames[fieldKey]) else { return .success(nil) }
                value = executorValue(json)
            }
            if value is JSONObject || value is [(any Sendable)?], let fieldType = fieldTypes[fieldKey] {
                try await GraphQLEngine.prefetchChildren(
                    of: value, fieldASTs: asts, itemType: GraphQLEngine.namedObjectType(fieldType),
                    fragments: fragments, variables: variables, context: context, loaded: loaded)
            }
            return .success(value)
        } catch let error as GraphQLError {
            return .failure(error)
        } catch {
            return .failure(GraphQLError(message: "\(error)"))
        }
    }

    /// Before a level completes, every `@rest` field its objects select that is not fetched yet
    /// is fetched at once, so no object waits on its own call after another's.
    func fetchAhead(_ level: [(GraphQLObjectType, JSONObject?, OrderedDictionary<String, [Field]>)]) async {
        var jobs: [(JSONObject, String, GraphQLObjectType, String, [Field])] = []
        for (type, source, fields) in level {
            guard let source else { continue }
            for (key, asts) in fields {
                let name = asts[0].name.value
                guard loaded.bindings["\(type.name).\(name)"] != nil, source.prefetchedResult(key) == nil else { continue }
                jobs.append((source, key, type, name, asts))
            }
        }
        guard jobs.count > 1 else { return }  // one call gains nothing from running ahead
        await withTaskGroup(of: Void.self) { group in
            for (source, key, type, name, asts) in jobs {
                group.addTask {
                    source.attach(key, await resolve(type, name: name, key: key, asts: asts, source: source))
                }
            }
        }
    }

    func complete(_ type: GraphQLType, label: String, asts: [Field], value: Result<(any Sendable)?, GraphQLError>,
                  path: [IndexPathElement]) async throws -> Map {
        let resolved: (any Sendable)?
        switch value {
        case .failure(let error):
            record(error, asts: asts, path: path)
            throw NullSignal()
        case .success(let success):
            resolved = success
        }
        if let nonNull = type as? GraphQLNonNull {
            let inner = try await complete(nonNull.ofType, label: label, asts: asts, value: .success(resolved), path: path)
            if inner == .null {
                record(GraphQLError(message: "Cannot return null for non-nullable field \(label)."), asts: asts, path: path)
                throw NullSignal()
            }
            return inner
        }
        guard let resolved else { return .null }
        switch type {
        case let list as GraphQLList:
            let items = resolved as? [(any Sendable)?] ?? [resolved]
            if let itemType = GraphQLEngine.namedObjectType(list.ofType) {
                let objects = items.compactMap { $0 as? JSONObject }
                let sets = asts.compactMap(\.selectionSet)
                let fields = collect(sets, type: itemType)
                await fetchAhead(objects.map { (itemType, $0, fields) })
            }
            var out: [Map] = []
            out.reserveCapacity(items.count)
            for (index, item) in items.enumerated() {
                do {
                    out.append(try await complete(list.ofType, label: label, asts: asts, value: .success(item), path: path + [index]))
                } catch is NullSignal {
                    if list.ofType is GraphQLNonNull { throw NullSignal() }
                    out.append(.null)
                }
            }
            return .array(out)
        case let object as GraphQLObjectType:
            guard let source = resolved as? JSONObject else {
                record(GraphQLError(message: "Expected an object for \(label)"), asts: asts, path: path)
                throw NullSignal()
            }
            return try await completeObject(object, source: source, fields: collect(asts.compactMap(\.selectionSet), type: object),
                                            path: path)
        case let leaf as GraphQLLeafType:
            if let map = resolved as? Map, let fast = Self.serializeBuiltIn(map, typeName: leaf.name) { return fast }
            do {
                return try leaf.serialize(value: resolved)
            } catch let error as GraphQLError {
                record(GraphQLError(message: error.message), asts: asts, path: path)
                throw NullSignal()
            } catch {
                record(GraphQLError(message: "\(error)"), asts: asts, path: path)
                throw NullSignal()
            }
        case let abstract as GraphQLNamedType:
            // An interface or union: the upstream's JSON says which object it is ("__typename"),
            // unless only one object type is possible.
            let possible = loaded.possibleTypes[abstract.name] ?? []
            guard let source = resolved as? JSONObject else {
                record(GraphQLError(message: "Expected an object for \(label)"), asts: asts, path: path)
                throw NullSignal()
            }
            let named = source.fields["__typename"].flatMap { if case .string(let name) = $0 { name } else { nil } }
            guard let typeName = named ?? (possible.count == 1 ? possible.first : nil), possible.contains(typeName),
                let object = loaded.schema.typeMap[typeName] as? GraphQLObjectType
            else {
                record(GraphQLError(message: "Abstract type \"\(abstract.name)\" must resolve to an Object type at runtime for field "
                                        + "\"\(label)\": the upstream's JSON has no \"__typename\" naming one of "
                                        + possible.sorted().map { "\"\($0)\"" }.joined(separator: ", ") + "."),
                       asts: asts, path: path)
                throw NullSignal()
            }
            return try await completeObject(object, source: source, fields: collect(asts.compactMap(\.selectionSet), type: object),
                                            path: path)
        default:
            throw Unsupported()
        }
    }

    /// The built-in scalars for JSON values that already are what they must be, without the
    /// dynamic casts of `serialize(value: Any)`; anything else goes the general way.
    static func serializeBuiltIn(_ value: Map, typeName: String) -> Map? {
        switch (typeName, value) {
        case ("String", .string), ("Boolean", .bool), ("ID", .string): return value
        case ("Int", .number(let number)):
            let double = number.doubleValue
            return double == double.rounded() && abs(double) <= 2_147_483_647 ? value : nil
        case ("Float", .number): return value
        case ("ID", .number(let number)):
            let double = number.doubleValue
            return double == double.rounded() && abs(double) < 1e15 ? .string(String(Int(double))) : nil
        default: return nil
        }
    }

    func record(_ error: GraphQLError, asts: [Field], path: [IndexPathElement]) {
        errors.list.append(GraphQLError(message: error.message, nodes: asts, path: IndexPath(path), extensions: error.extensions))
    }

    /// A field's arguments, coerced, with the schema's defaults.
    func arguments(_ field: Field, of key: String) throws -> Map {
        guard let definitions = fieldArguments[key] else { return .dictionary([:]) }
        let coercion = Coercion(schema: loaded.schema)
        var out = OrderedDictionary<String, Map>()
        for (name, definition) in definitions {
            if let argument = field.arguments.first(where: { $0.name.value == name }),
                let value = try coercion.literal(argument.value, type: definition.type, variables: variables)
            {
                out[name] = value
            } else if let defaultValue = definition.defaultValue {
                out[name] = defaultValue
            }
        }
        return .dictionary(out)
    }
}
