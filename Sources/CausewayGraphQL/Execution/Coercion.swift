import GraphQL
import OrderedCollections

/// Input coercion (spec §5.6 and §6.1.2): variables from the request and argument literals from
/// the document, to the types the schema declares. Scalars and enums coerce through
/// GraphQLSwift's own `parseValue`/`parseLiteral`; errors are worded as graphql-js words them.
struct Coercion {
    let schema: GraphQLSchema

    struct Failure: Error {
        var errors: [GraphQLError]
    }

    func inputType(_ ast: any GraphQL.`Type`) throws -> GraphQLInputType {
        switch ast {
        case let named as NamedType:
            guard let type = schema.typeMap[named.name.value] as? GraphQLInputType else { throw PlanBuilder.Unsupported() }
            return type
        case let list as ListType:
            return GraphQLList(try inputType(list.type))
        case let nonNull as NonNullType:
            guard let inner = try inputType(nonNull.type) as? GraphQLNullableType else { throw PlanBuilder.Unsupported() }
            return GraphQLNonNull(inner)
        default:
            throw PlanBuilder.Unsupported()
        }
    }

    func variables(_ definitions: [VariableDefinition], _ provided: [String: Map]) throws -> [String: Map] {
        var values: [String: Map] = [:]
        var errors: [GraphQLError] = []
        for definition in definitions {
            let name = definition.variable.name.value
            let type = try inputType(definition.type)
            let typeText = print(ast: definition.type)
            if let value = provided[name] {
                if value == .null, type is GraphQLNonNull {
                    errors.append(GraphQLError(message: "Variable \"$\(name)\" of non-null type \"\(typeText)\" must not be null.",
                                               nodes: [definition]))
                    continue
                }
                do {
                    values[name] = try coerce(value, type)
                } catch let reason as CoercionReason {
                    let shown = JSONWriter.text(value)
                    errors.append(GraphQLError(message: "Variable \"$\(name)\" got invalid value \(shown); \(reason.text)",
                                               nodes: [definition]))
                }
            } else if let defaultValue = definition.defaultValue {
                values[name] = try literal(defaultValue, type: type, variables: [:])
            } else if type is GraphQLNonNull {
                errors.append(GraphQLError(message: "Variable \"$\(name)\" of required type \"\(typeText)\" was not provided.",
                                           nodes: [definition]))
            }
        }
        if !errors.isEmpty { throw Failure(errors: errors) }
        return values
    }

    struct CoercionReason: Error {
        var text: String
    }

    /// A JSON value to `type`, or why not.
    func coerce(_ value: Map, _ type: GraphQLInputType) throws -> Map {
        if let nonNull = type as? GraphQLNonNull {
            guard value != .null else { throw CoercionReason(text: "Expected non-nullable type \"\(nonNull)\" not to be null.") }
            return try coerce(value, nonNull.ofType as! GraphQLInputType)
        }
        if value == .null { return .null }
        switch type {
        case let list as GraphQLList:
            let itemType = list.ofType as! GraphQLInputType
            if case .array(let items) = value { return .array(try items.map { try coerce($0, itemType) }) }
            return .array([try coerce(value, itemType)])
        case let object as GraphQLInputObjectType:
            guard case .dictionary(let given) = value else {
                throw CoercionReason(text: "Expected type \"\(object.name)\" to be an object.")
            }
            let fields = try object.fields()
            for key in given.keys where fields[key] == nil {
                throw CoercionReason(text: "Field \"\(key)\" is not defined by type \"\(object.name)\".")
            }
            var out = OrderedDictionary<String, Map>()
            for (name, field) in fields {
                if let fieldValue = given[name] {
                    out[name] = try coerce(fieldValue, field.type)
                } else if let defaultValue = field.defaultValue {
                    out[name] = defaultValue
                } else if field.type is GraphQLNonNull {
                    throw CoercionReason(text: "Field \"\(name)\" of required type \"\(field.type)\" was not provided.")
                }
            }
            return .dictionary(out)
        case let scalar as GraphQLScalarType:
            do { return try scalar.parseValue(value: value) } catch { throw CoercionReason(text: Self.reason(error)) }
        case let enumeration as GraphQLEnumType:
            do { return try enumeration.parseValue(value: value) } catch { throw CoercionReason(text: Self.reason(error)) }
        default:
            throw PlanBuilder.Unsupported()
        }
    }

    static func reason(_ error: any Error) -> String {
        (error as? GraphQLError)?.message ?? "\(error)"
    }

    /// An argument's literal (validation has checked it), with variables substituted; nil when
    /// it names a variable that was not provided, so the default applies.
    func literal(_ value: any Value, type: GraphQLInputType, variables: [String: Map]) throws -> Map? {
        if let variable = value as? Variable { return variables[variable.name.value] }
        if value is NullValue { return .null }
        let inner = (type as? GraphQLNonNull).map { $0.ofType as! GraphQLInputType } ?? type
        switch inner {
        case let list as GraphQLList:
            let itemType = list.ofType as! GraphQLInputType
            if let items = value as? ListValue {
                return .array(try items.values.map { try literal($0, type: itemType, variables: variables) ?? .null })
            }
            return .array([try literal(value, type: itemType, variables: variables) ?? .null])
        case let object as GraphQLInputObjectType:
            guard let given = value as? ObjectValue else { return .null }
            var out = OrderedDictionary<String, Map>()
            for (name, field) in try object.fields() {
                if let fieldValue = given.fields.first(where: { $0.name.value == name }),
                    let coerced = try literal(fieldValue.value, type: field.type, variables: variables)
                {
                    out[name] = coerced
                } else if let defaultValue = field.defaultValue {
                    out[name] = defaultValue
                }
            }
            return .dictionary(out)
        case let scalar as GraphQLScalarType:
            return try scalar.parseLiteral(valueAST: value)
        case let enumeration as GraphQLEnumType:
            return try enumeration.parseLiteral(valueAST: value)
        default:
            throw PlanBuilder.Unsupported()
        }
    }
}
