import GraphQL

/// The specification's `OverlappingFieldsCanBeMerged` rule (§5.3.2), which GraphQLSwift does
/// not run: fields that share a response name within a selection (through fragments too) must
/// be the same field with the same arguments when their parents can be the same object, and
/// must always have the same response shape. Messages are worded as graphql-js words them.
struct OverlappingFieldsCanBeMerged {
    /// "Type.field" → its output type, for object and interface types.
    let fieldTypes: [String: GraphQLOutputType]
    /// Object type names (a parent that is not one may be several objects at once).
    let objectTypes: Set<String>
    let fragments: [String: FragmentDefinition]

    struct Entry {
        var parentType: String?
        var field: Field
        var type: GraphQLOutputType?
    }

    struct Conflict {
        var responseName: String
        var reason: Reason
        var fields1: [Field]
        var fields2: [Field]
    }

    indirect enum Reason {
        case message(String)
        case subfields([Conflict])

        var text: String {
            switch self {
            case .message(let text): text
            case .subfields(let conflicts):
                conflicts.map { "subfields \"\($0.responseName)\" conflict because \($0.reason.text)" }.joined(separator: " and ")
            }
        }
    }

    static func errors(document: Document, schema: GraphQLSchema, fieldTypes: [String: GraphQLOutputType]) -> [GraphQLError] {
        var fragments: [String: FragmentDefinition] = [:]
        for case let fragment as FragmentDefinition in document.definitions { fragments[fragment.name.value] = fragment }
        let objectTypes = Set(schema.typeMap.values.compactMap { ($0 as? GraphQLObjectType)?.name })
        let rule = OverlappingFieldsCanBeMerged(fieldTypes: fieldTypes, objectTypes: objectTypes, fragments: fragments)
        var errors: [GraphQLError] = []
        var reported: Set<String> = []
        func visit(_ set: SelectionSet, parentType: String?) {
            for conflict in rule.conflicts(in: set, parentType: parentType) {
                let key = "\(conflict.responseName)@\(conflict.fields1.first?.loc?.start ?? 0)"
                guard reported.insert(key).inserted else { continue }
                errors.append(GraphQLError(
                    message: "Fields \"\(conflict.responseName)\" conflict because \(conflict.reason.text). "
                        + "Use different aliases on the fields to fetch both if this was intentional.",
                    nodes: conflict.fields1 + conflict.fields2))
            }
            // Every selection set is checked on its own as well.
            for selection in set.selections {
                switch selection {
                case let field as Field:
                    if let sub = field.selectionSet {
                        let type = parentType.flatMap { fieldTypes["\($0).\(field.name.value)"] }
                        visit(sub, parentType: type.map(Self.namedTypeName))
                    }
                case let inline as InlineFragment:
                    visit(inline.selectionSet, parentType: inline.typeCondition?.name.value ?? parentType)
                default:
                    continue
                }
            }
        }
        for definition in document.definitions {
            if let operation = definition as? OperationDefinition {
                let root: String? = switch operation.operation {
                case .query: schema.queryType?.name
                case .mutation: schema.mutationType?.name
                case .subscription: schema.subscriptionType?.name
                }
                visit(operation.selectionSet, parentType: root)
            } else if let fragment = definition as? FragmentDefinition {
                visit(fragment.selectionSet, parentType: fragment.typeCondition.name.value)
            }
        }
        return errors
    }

    // MARK: The rule

    func conflicts(in set: SelectionSet, parentType: String?) -> [Conflict] {
        conflicts(within: collect(set, parentType: parentType))
    }

    /// Response name → the fields answering to it, fragments spread in. A work list rather
    /// than recursion, and each fragment spread once per call: a fragment spread again adds
    /// only copies of the same fields, which cannot conflict with anything the first copy
    /// does not (and it also stops cycles).
    func collect(_ set: SelectionSet, parentType: String?, spread: inout Set<String>,
                 into map: inout [(String, [Entry])], positions: inout [String: Int]) {
        var pending: [(SelectionSet, String?)] = [(set, parentType)]
        var next = 0
        while next < pending.count {
            let (set, parentType) = pending[next]
            next += 1
            for selection in set.selections {
                switch selection {
                case let field as Field:
                    let name = field.alias?.value ?? field.name.value
                    let type = parentType.flatMap { fieldTypes["\($0).\(field.name.value)"] }
                    let entry = Entry(parentType: parentType, field: field, type: type)
                    if let index = positions[name] {
                        map[index].1.append(entry)
                    } else {
                        positions[name] = map.count
                        map.append((name, [entry]))
                    }
                case let inline as InlineFragment:
                    pending.append((inline.selectionSet, inline.typeCondition?.name.value ?? parentType))
                case let fragmentSpread as FragmentSpread:
                    let name = fragmentSpread.name.value
                    guard spread.insert(name).inserted, let fragment = fragments[name] else { continue }
                    pending.append((fragment.selectionSet, fragment.typeCondition.name.value))
                default:
                    continue
                }
            }
        }
    }

    func collect(_ set: SelectionSet, parentType: String?) -> [(String, [Entry])] {
        var map: [(String, [Entry])] = []
        var positions: [String: Int] = [:]
        var spread: Set<String> = []
        collect(set, parentType: parentType, spread: &spread, into: &map, positions: &positions)
        return map
    }

    /// Sub-quadratic in repeated names: fields that answer to one name are grouped by what
    /// makes them differ (parent type, field, arguments, type); identical ones need no pairwise
    /// comparison, only their sub-selections merged and checked once. Groups are compared
    /// pairwise, and there are few that do not conflict (one per parent type at most), since
    /// the first conflict ends the search for that name.
    func conflicts(within map: [(String, [Entry])], parentsExclusive: Bool = false) -> [Conflict] {
        var found: [Conflict] = []
        for (name, entries) in map where entries.count > 1 {
            var groups: [[Entry]] = []
            var groupOf: [String: Int] = [:]
            for entry in entries {
                let key = signature(entry)
                if let index = groupOf[key] {
                    groups[index].append(entry)
                } else {
                    groupOf[key] = groups.count
                    groups.append([entry])
                }
            }
            if let conflict = firstConflict(name, groups: groups, parentsExclusive: parentsExclusive) {
                found.append(conflict)  // one report per response name, as graphql-js gives
            }
        }
        return found
    }

    private func firstConflict(_ name: String, groups: [[Entry]], parentsExclusive: Bool) -> Conflict? {
        for group in groups where group.count > 1 {
            // Same field, arguments and type: only their sub-selections can disagree.
            let sets = group.filter { $0.field.selectionSet != nil }
            guard sets.count > 1 else { continue }
            let sub = conflicts(within: mergedSubselections(sets), parentsExclusive: parentsExclusive)
            if !sub.isEmpty {
                return Conflict(responseName: name, reason: .subfields(sub),
                                fields1: [sets[0].field] + sub.flatMap(\.fields1),
                                fields2: [sets[1].field] + sub.flatMap(\.fields2))
            }
        }
        for i in groups.indices {
            for j in groups.indices where j > i {
                if let conflict = conflict(name, groups[i], groups[j], parentsExclusive: parentsExclusive) { return conflict }
            }
        }
        return nil
    }

    private func signature(_ entry: Entry) -> String {
        var key = (entry.parentType ?? "") + "|" + entry.field.name.value + "|" + (entry.type.map(Self.typeText) ?? "")
        if !entry.field.arguments.isEmpty {
            for argument in entry.field.arguments.sorted(by: { $0.name.value < $1.name.value }) {
                key += "|" + argument.name.value + ":" + print(ast: argument.value)
            }
        }
        return key
    }

    private func mergedSubselections(_ entries: [Entry]) -> [(String, [Entry])] {
        var map: [(String, [Entry])] = []
        var positions: [String: Int] = [:]
        var spread: Set<String> = []
        for entry in entries {
            guard let set = entry.field.selectionSet else { continue }
            collect(set, parentType: entry.type.map(Self.namedTypeName), spread: &spread, into: &map, positions: &positions)
        }
        return map
    }

    /// Two groups of fields answering to one name (each group identical but for sub-selections).
    func conflict(_ responseName: String, _ groupA: [Entry], _ groupB: [Entry], parentsExclusive: Bool) -> Conflict? {
        let a = groupA[0], b = groupB[0]
        let exclusive = parentsExclusive || (a.parentType != b.parentType
            && a.parentType.map(objectTypes.contains) == true && b.parentType.map(objectTypes.contains) == true)
        if let conflict = conflict(responseName, a, b, exclusive: exclusive) { return conflict }
        let withSets = (groupA + groupB).filter { $0.field.selectionSet != nil }
        guard groupA.contains(where: { $0.field.selectionSet != nil }), groupB.contains(where: { $0.field.selectionSet != nil })
        else { return nil }
        let sub = conflicts(within: mergedSubselections(withSets), parentsExclusive: exclusive)
        guard !sub.isEmpty else { return nil }
        return Conflict(responseName: responseName, reason: .subfields(sub),
                        fields1: [a.field] + sub.flatMap(\.fields1), fields2: [b.field] + sub.flatMap(\.fields2))
    }

    /// What two fields' own definitions say (not their sub-selections). Parents that are
    /// different object types can never be the same object: then only the shapes must agree.
    func conflict(_ responseName: String, _ a: Entry, _ b: Entry, exclusive: Bool) -> Conflict? {
        if !exclusive {
            if a.field.name.value != b.field.name.value {
                return Conflict(responseName: responseName,
                                reason: .message("\"\(a.field.name.value)\" and \"\(b.field.name.value)\" are different fields"),
                                fields1: [a.field], fields2: [b.field])
            }
            if !sameArguments(a.field.arguments, b.field.arguments) {
                return Conflict(responseName: responseName, reason: .message("they have differing arguments"),
                                fields1: [a.field], fields2: [b.field])
            }
        }
        if let typeA = a.type, let typeB = b.type, conflictingShapes(typeA, typeB) {
            return Conflict(responseName: responseName,
                            reason: .message("they return conflicting types \"\(Self.typeText(typeA))\" and \"\(Self.typeText(typeB))\""),
                            fields1: [a.field], fields2: [b.field])
        }
        return nil
    }

    func sameArguments(_ a: [Argument], _ b: [Argument]) -> Bool {
        guard a.count == b.count else { return false }
        for argument in a {
            guard let other = b.first(where: { $0.name.value == argument.name.value }),
                print(ast: argument.value) == print(ast: other.value)
            else { return false }
        }
        return true
    }

    /// §5.3.2 SameResponseShape: the same list and non-null wrapping, and the same leaf type.
    func conflictingShapes(_ a: GraphQLOutputType, _ b: GraphQLOutputType) -> Bool {
        switch (a, b) {
        case (let a as GraphQLNonNull, let b as GraphQLNonNull):
            return conflictingShapes(a.ofType as! GraphQLOutputType, b.ofType as! GraphQLOutputType)
        case (is GraphQLNonNull, _), (_, is GraphQLNonNull):
            return true
        case (let a as GraphQLList, let b as GraphQLList):
            return conflictingShapes(a.ofType as! GraphQLOutputType, b.ofType as! GraphQLOutputType)
        case (is GraphQLList, _), (_, is GraphQLList):
            return true
        case (let a as GraphQLLeafType, let b as GraphQLNamedType):
            return a.name != b.name
        case (_ as GraphQLNamedType, _ as GraphQLLeafType):
            return true
        default:
            return false
        }
    }

    static func namedTypeName(_ type: GraphQLOutputType) -> String {
        switch type {
        case let type as GraphQLNonNull: namedTypeName(type.ofType as! GraphQLOutputType)
        case let type as GraphQLList: namedTypeName(type.ofType as! GraphQLOutputType)
        case let type as GraphQLNamedType: type.name
        default: ""
        }
    }

    static func typeText(_ type: GraphQLOutputType) -> String {
        switch type {
        case let type as GraphQLNonNull: typeText(type.ofType as! GraphQLOutputType) + "!"
        case let type as GraphQLList: "[" + typeText(type.ofType as! GraphQLOutputType) + "]"
        case let type as GraphQLNamedType: type.name
        default: "?"
        }
    }
}
