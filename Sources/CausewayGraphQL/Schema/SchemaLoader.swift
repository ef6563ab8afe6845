import GraphQL

/// A schema file's load-time problem, worded like config errors: `file:line:column: message`.
public struct SchemaError: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    public var message: String

    public var description: String { "\(file):\(line):\(column): \(message)" }
}

public struct SchemaErrors: Error, Sendable, CustomStringConvertible {
    public var errors: [SchemaError]
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}

/// A GraphQL schema from SDL with its REST bindings, validated once at load.
public struct LoadedSchema: @unchecked Sendable {
    /// Built by GraphQLSwift; not changed after loading (resolvers are installed before use).
    public let schema: GraphQLSchema
    /// "Type.field" → binding.
    public let bindings: [String: RestBinding]
    /// "Type.field" → the JSON key to read when it differs from the field name (`@from`).
    public let renames: [String: String]
    public let file: String
    /// Interface or union name → the object types it can be.
    public let possibleTypes: [String: Set<String>]

    /// Whether a fragment's type condition applies to an object of `objectType`.
    public func conditionApplies(_ condition: String, to objectType: String) -> Bool {
        condition == objectType || possibleTypes[condition]?.contains(objectType) == true
    }
}

/// Loads `schemas/*.graphql` files: SDL plus Causeway's directives, which schema files use
/// without declaring:
///
/// ```graphql
/// directive @rest(upstream: String!, path: String!, method: String = "GET", body: String,
///                 batch: RestBatch, selector: String) on FIELD_DEFINITION
/// directive @from(name: String!) on FIELD_DEFINITION   # read another JSON key
/// ```
public enum SchemaLoader {
    /// Appended after the user's text, so the user's line numbers are the file's.
    static let declarations = """

        directive @rest(upstream: String!, path: String!, method: String = "GET", body: String, batch: RestBatch, selector: String) on FIELD_DEFINITION
        directive @from(name: String!) on FIELD_DEFINITION
        input RestBatch { path: String!, key: String! }
        """

    static let methods: Set<String> = ["GET", "POST", "PUT", "PATCH", "DELETE"]

    public static func load(text: String, file: String, upstreams: Set<String>) throws(SchemaErrors) -> LoadedSchema {
        let source = Source(body: text + declarations, name: file)
        let document: Document
        do {
            // The file alone first: a syntax error must be reported where it is, not where the
            // parser ran into the declarations appended after it.
            _ = try parse(source: Source(body: text, name: file))
            document = try parse(source: source)
        } catch let error as GraphQLError {
            throw SchemaErrors(errors: [schemaError(error, file: file)])
        } catch {
            throw SchemaErrors(errors: [SchemaError(file: file, line: 1, column: 1, message: "\(error)")])
        }
        let schema: GraphQLSchema
        do {
            schema = try buildASTSchema(documentAST: document)
        } catch let error as GraphQLError {
            throw SchemaErrors(errors: [schemaError(error, file: file)])
        } catch {
            throw SchemaErrors(errors: [SchemaError(file: file, line: 1, column: 1, message: "\(error)")])
        }
        var errors = validateSchema(schema: schema).map { schemaError($0, file: file) }
        var bindings: [String: RestBinding] = [:]
        var renames: [String: String] = [:]
        let rootTypes = Set([schema.queryType?.name, schema.mutationType?.name].compactMap { $0 })
        for definition in document.definitions {
            let object: ObjectTypeDefinition
            if let definition = definition as? ObjectTypeDefinition {
                object = definition
            } else if let definition = definition as? TypeExtensionDefinition {
                object = definition.definition
            } else {
                continue
            }
            let fieldNames = Set(object.fields.map(\.name.value))
            for field in object.fields {
                let key = "\(object.name.value).\(field.name.value)"
                for directive in field.directives {
                    switch directive.name.value {
                    case "rest":
                        let context = BindingContext(field: field, parentFields: fieldNames, isRoot: rootTypes.contains(object.name.value),
                                                     upstreams: upstreams, source: source, file: file)
                        if let binding = context.compile(directive, errors: &errors) { bindings[key] = binding }
                    case "from":
                        if let argument = directive.arguments.first(where: { $0.name.value == "name" }),
                            let value = argument.value as? StringValue
                        {
                            renames[key] = value.value
                        }
                    default:
                        break
                    }
                }
            }
        }
        // Batched answers are matched to parents by a key of their items: objects only.
        for (key, binding) in bindings where binding.batch != nil {
            let parts = key.split(separator: ".")
            guard let parent = schema.typeMap[String(parts[0])] as? GraphQLObjectType,
                let field = try? parent.fields()[String(parts[1])]
            else { continue }
            if namedType(field.type) as? GraphQLObjectType == nil {
                let location = field.astNode?.loc.map { position($0.start, in: source) } ?? (1, 1)
                errors.append(SchemaError(file: file, line: location.0, column: location.1,
                                          message: "\(parts[1]): type mismatch: a field with batch must return an object type or a list of one"))
            }
        }
        if !errors.isEmpty { throw SchemaErrors(errors: errors) }
        var possibleTypes: [String: Set<String>] = [:]
        for type in schema.typeMap.values where !type.name.hasPrefix("__") {
            if let abstract = type as? GraphQLAbstractType {
                possibleTypes[type.name] = Set(schema.getPossibleTypes(abstractType: abstract).map(\.name))
            }
        }
        return LoadedSchema(schema: schema, bindings: bindings, renames: renames, file: file, possibleTypes: possibleTypes)
    }

    static func isListOutput(_ type: GraphQLType) -> Bool {
        if let type = type as? GraphQLNonNull { return isListOutput(type.ofType) }
        return type is GraphQLList
    }

    static func namedType(_ type: GraphQLType) -> GraphQLType {
        if let type = type as? GraphQLNonNull { return namedType(type.ofType) }
        if let type = type as? GraphQLList { return namedType(type.ofType) }
        return type
    }

    static func schemaError(_ error: GraphQLError, file: String) -> SchemaError {
        let location = error.locations.first
        return SchemaError(file: file, line: location?.line ?? 1, column: location?.column ?? 1, message: error.message)
    }

    /// Line and column (1-based) of an offset into the source.
    static func position(_ offset: Int, in source: Source) -> (line: Int, column: Int) {
        var line = 1
        var column = 1
        for (index, character) in source.body.utf8.enumerated() {
            if index >= offset { break }
            if character == UInt8(ascii: "\n") {
                line += 1
                column = 1
            } else {
                column += 1
            }
        }
        return (line, column)
    }
}

/// Compiles one `@rest` directive, checking every name it uses against the schema.
private struct BindingContext {
    let field: FieldDefinition
    let parentFields: Set<String>
    let isRoot: Bool
    let upstreams: Set<String>
    let source: Source
    let file: String

    func error(_ node: (any Node)?, _ message: String) -> SchemaError {
        let (line, column) = SchemaLoader.position(node?.loc?.start ?? field.loc?.start ?? 0, in: source)
        return SchemaError(file: file, line: line, column: column, message: "\(field.name.value): \(message)")
    }

    func compile(_ directive: Directive, errors: inout [SchemaError]) -> RestBinding? {
        var arguments: [String: (value: any Value, node: Argument)] = [:]
        for argument in directive.arguments { arguments[argument.name.value] = (argument.value, argument) }
        func string(_ name: String) -> (String, Argument)? {
            guard let (value, node) = arguments[name] else { return nil }
            guard let text = value as? StringValue else {
                errors.append(error(node, "@rest(\(name):) must be a string"))
                return nil
            }
            return (text.value, node)
        }
        let argumentNames = Set(field.arguments.map(\.name.value))
        var failed = false
        func template(_ text: String, node: Argument, allowBatch: Bool) -> PathTemplate? {
            switch PathTemplate.parse(text) {
            case .failure(let reason):
                errors.append(error(node, "@rest(\(node.name.value):) \(reason)"))
                return nil
            case .success(let template):
                for variable in template.variables {
                    switch variable {
                    case .argument(let name) where !argumentNames.contains(name):
                        errors.append(error(node, "unknown template variable \"$args.\(name)\": the field has no argument \"\(name)\""))
                        failed = true
                    case .parent(let name) where isRoot:
                        errors.append(error(node, "\"$parent.\(name)\" on a root field: there is no parent object"))
                        failed = true
                    case .parent(let name) where !parentFields.contains(name):
                        errors.append(error(node, "unknown template variable \"$parent.\(name)\": the parent type has no field \"\(name)\""))
                        failed = true
                    case .batch(let name) where !allowBatch:
                        errors.append(error(node, "\"$batch.\(name)\" belongs in batch.path"))
                        failed = true
                    case .batch(let name) where !parentFields.contains(name):
                        errors.append(error(node, "unknown template variable \"$batch.\(name)\": the parent type has no field \"\(name)\""))
                        failed = true
                    default:
                        break
                    }
                }
                return template
            }
        }
        guard let (upstream, upstreamNode) = string("upstream"), let (pathText, pathNode) = string("path") else { return nil }
        if !upstreams.contains(upstream) {
            errors.append(error(upstreamNode, "unknown upstream \"\(upstream)\""))
            failed = true
        }
        let method = string("method")?.0.uppercased() ?? "GET"
        if !SchemaLoader.methods.contains(method), let (_, node) = string("method") {
            errors.append(error(node, "method must be one of GET, POST, PUT, PATCH, DELETE"))
            failed = true
        }
        guard let path = template(pathText, node: pathNode, allowBatch: false) else { return nil }
        var bodyArgument: String?
        if let (body, node) = string("body") {
            guard body.hasPrefix("$args."), argumentNames.contains(String(body.dropFirst(6))) else {
                errors.append(error(node, "body must be \"$args.NAME\" naming an argument of the field"))
                return nil
            }
            bodyArgument = String(body.dropFirst(6))
        }
        var batch: RestBinding.Batch?
        if let (value, node) = arguments["batch"] {
            guard let object = value as? ObjectValue,
                let pathValue = object.fields.first(where: { $0.name.value == "path" })?.value as? StringValue,
                let keyValue = object.fields.first(where: { $0.name.value == "key" })?.value as? StringValue
            else {
                errors.append(error(node, "batch must be {path: \"...\", key: \"...\"}"))
                return nil
            }
            if isRoot {
                errors.append(error(node, "batch on a root field: batching is per parent"))
                return nil
            }
            guard let batchPath = template(pathValue.value, node: node, allowBatch: true) else { return nil }
            let batched = batchPath.variables.compactMap { if case .batch(let name) = $0 { name } else { nil } }
            guard Set(batched).count == 1, let parentField = batched.first else {
                errors.append(error(node, "batch.path needs exactly one {$batch.FIELD}"))
                return nil
            }
            batch = .init(path: batchPath, key: keyValue.value, parentField: parentField)
        }
        let selector = string("selector")?.0.split(separator: ".").map(String.init) ?? []
        if failed { return nil }
        return RestBinding(upstream: upstream, method: method, path: path, bodyArgument: bodyArgument, batch: batch,
                           selector: selector, isList: Self.isList(field.type))
    }

    static func isList(_ type: any GraphQL.`Type`) -> Bool {
        if let type = type as? NonNullType { return isList(type.type) }
        return type is ListType
    }
}

extension GraphQLType {
    /// The name of a named type (for wrappers, of what they wrap).
    var debugName: String {
        switch self {
        case let type as GraphQLNamedType: type.name
        case let type as GraphQLNonNull: type.ofType.debugName
        case let type as GraphQLList: type.ofType.debugName
        default: ""
        }
    }
}
