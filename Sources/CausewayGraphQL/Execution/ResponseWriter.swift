import GraphQL

/// Writes a finished run's `data` in one pass over its plan: values come from the upstream
/// answers' bytes (strings and numbers copied as they are where their GraphQL type allows),
/// so no intermediate tree is built.
///
/// Null propagation (spec §6.4.4) works on the output itself: a nullable position remembers
/// where it started, and when something under it fails (a non-null field came out null, a
/// value could not be serialized) it cuts back to that point and writes `null`. Errors are
/// recorded where they happen, with their path and locations.
struct ResponseWriter: ~Copyable {
    let run: OperationRun
    let program: WriterProgram
    let json: JSONTape.View
    let resolved: Resolutions
    let matched: [Int]
    var out: OutputBuffer
    /// Where the writer is: a list index (>= 0) or a field (-1 - its id), made into an error's
    /// `path` only when one is recorded.
    var path = PathStack()
    var errors: [GraphQLError] = []

    typealias Resolution = OperationRun.Resolution
    typealias Node = WriterProgram.Node

    /// The run's `data` as JSON, and the errors recorded on the way.
    static func write(_ run: OperationRun) -> ([UInt8], [GraphQLError]) {
        run.tape.withView { json in
            let program = run.plan.program
            var writer = ResponseWriter(run: run, program: program, json: json, resolved: run.resolved, matched: run.matchedItems,
                                        out: OutputBuffer(capacity: json.bytes.count + 256))
            let data = writer.object(program.root, parent: -1) ? writer.out.elements : JSONWriter.null
            return (data, writer.errors)
        }
    }

    /// Writes selection `selection` of the object at entry `parent` (-1: the root).
    private mutating func object(_ selection: Int32, parent: Int) -> Bool {
        out.append(UInt8(ascii: "{"))
        let range = program.selections[Int(selection)].fields
        for index in range {
            let field = program.fields[Int(index)]
            if index > range.lowerBound { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: program.bytes(field.key))
            path.append(-1 - Int(field.id))
            let written = self.field(field, of: selection, parent: parent)
            path.removeLast()
            if !written { return false }
        }
        out.append(UInt8(ascii: "}"))
        return true
    }

    /// false: the field is non-null and came out null (recorded); its parent becomes null.
    private mutating func field(_ field: WriterProgram.Field, of selection: Int32, parent: Int) -> Bool {
        switch field.source {
        case .json:
            guard parent >= 0 else { return value(field.output, .null, field) }
            var entry = json.member(parent, program.bytes(field.name))
            if entry == nil && field.alternative.start >= 0 { entry = json.member(parent, program.bytes(field.alternative)) }
            guard let entry else { return value(field.output, .null, field) }
            // Most fields are leaves whose JSON is already right: write them without the
            // general path's dispatch.
            let node = program.nodes[Int(field.output)]
            let leafNode = node.kind == .nonNull ? node.inner : field.output
            if program.nodes[Int(leafNode)].kind == .leaf, fastLeaf(program.nodes[Int(leafNode)].leaf, entry) { return true }
            return value(field.output, .value(entry), field)
        case .rest:
            let resolution = resolved.get(parent: parent, field: Int(field.id)) ?? .null
            if case .failure(let failure) = resolution {
                record(run.failures[failure], field)
                guard program.nodes[Int(field.output)].kind != .nonNull else { return false }
                out.append(contentsOf: JSONWriter.null)
                return true
            }
            return value(field.output, resolution, field)
        case .typename:
            out.append(contentsOf: program.bytes(program.selections[Int(selection)].typeName))
            return true
        case .introspection:
            var text: [UInt8] = []
            JSONWriter.write(run.introspected[run.plan.fields[Int(field.id)].key] ?? .null, into: &text)
            out.append(contentsOf: text)
            return true
        }
    }

    private func isNull(_ resolution: Resolution) -> Bool {
        switch resolution {
        case .null, .failure: true
        case .value(let entry): json.kind(entry) == .null
        case .items: false
        }
    }

    /// Writes a value at a position of type `node`; false when it is non-null and failed.
    private mutating func value(_ node: Int32, _ resolution: Resolution, _ field: WriterProgram.Field) -> Bool {
        let output = program.nodes[Int(node)]
        if output.kind == .nonNull {
            guard !isNull(resolution) else {
                record(GraphQLError(message: "Cannot return null for non-nullable field \(label(field))."), field)
                return false
            }
            return content(output.inner, resolution, field)
        }
        let mark = out.count
        if content(node, resolution, field) { return true }
        out.truncate(to: mark)
        out.append(contentsOf: JSONWriter.null)
        return true
    }

    private mutating func content(_ node: Int32, _ resolution: Resolution, _ field: WriterProgram.Field) -> Bool {
        let output = program.nodes[Int(node)]
        let entry: Int
        switch resolution {
        case .null, .failure:
            out.append(contentsOf: JSONWriter.null)
            return true
        case .items(let range):
            // A batched list field's matches (its node is the list, under non-null or not).
            let list = output.kind == .nonNull ? program.nodes[Int(output.inner)] : output
            return self.list(list.kind == .list ? list.inner : node, entries: matched[range], field)
        case .value(let valueEntry):
            entry = valueEntry
        }
        let kind = json.kind(entry)
        if kind == .null {
            out.append(contentsOf: JSONWriter.null)
            return true
        }
        switch output.kind {
        case .leaf:
            return leaf(node, output.leaf, entry, field)
        case .object:
            guard kind == .object else {
                record(GraphQLError(message: "Expected an object for \(label(field))"), field)
                return false
            }
            return object(output.inner, parent: entry)
        case .list:
            guard kind == .array else {  // a single value where a list is expected: a list of one
                return list(output.inner, entries: [entry], field)
            }
            out.append(UInt8(ascii: "["))
            var item = entry + 1
            var index = 0
            let end = json.next(entry)
            while item < end {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                path.append(index)
                let written = value(output.inner, .value(item), field)
                path.removeLast()
                if !written { return false }
                item = json.next(item)
                index += 1
            }
            out.append(UInt8(ascii: "]"))
            return true
        case .abstract:
            let possible = program.abstracts[Int(output.inner)]
            guard kind == .object, let selection = OperationRun.runtimeType(possible, entry, json) else {
                let names = possible.keys.sorted().map { "\"\($0)\"" }.joined(separator: ", ")
                record(GraphQLError(message: "Abstract type \"\(program.outputs[Int(node)].abstractName)\" must resolve to an Object "
                                        + "type at runtime for field \"\(label(field))\": the upstream's JSON has no \"__typename\" "
                                        + "naming one of \(names)."), field)
                return false
            }
            return object(selection, parent: entry)
        case .nonNull:
            return value(node, resolution, field)
        }
    }

    private mutating func list(_ item: Int32, entries: ArraySlice<Int>, _ field: WriterProgram.Field) -> Bool {
        out.append(UInt8(ascii: "["))
        for index in 0..<entries.count {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            path.append(index)
            let written = value(item, .value(entries[entries.startIndex + index]), field)
            path.removeLast()
            if !written { return false }
        }
        out.append(UInt8(ascii: "]"))
        return true
    }

    private func label(_ field: WriterProgram.Field) -> String { run.plan.fields[Int(field.id)].label }

    // MARK: Leaves

    /// The built-in scalars straight from the JSON's bytes when they already are what the type
    /// allows (unescaped strings, integers in range, short decimals); false for anything else,
    /// with nothing written.
    @inline(__always)
    private mutating func fastLeaf(_ leaf: OutputPlan.Leaf, _ entry: Int) -> Bool {
        let kind = json.kind(entry)
        let raw = json.raw(entry)
        switch (leaf, kind) {
        case (.string, .string), (.id, .string):
            guard !json.flag(entry) else { return false }
            quoted(raw)
        case (.boolean, .true), (.boolean, .false):
            out.append(contentsOf: raw)
        case (.id, .number) where json.flag(entry) && raw.count <= 15:
            quoted(raw)
        case (.int, .number) where json.flag(entry) && raw.count <= 10:
            if raw.count == 10 {
                guard let value = Int(String(decoding: raw, as: UTF8.self)), Int32(exactly: value) != nil else { return false }
            }
            out.append(contentsOf: raw)
        case (.float, .number):
            if json.flag(entry) && raw.count <= 15 {
                out.append(contentsOf: raw)
            } else if let short = Self.shortDecimal(raw) {
                out.append(contentsOf: short)
            } else {
                return false
            }
        default:
            return false
        }
        return true
    }

    private mutating func quoted(_ raw: UnsafeBufferPointer<UInt8>) {
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: raw)
        out.append(UInt8(ascii: "\""))
    }

    /// A leaf: built-in scalars through `fastLeaf`, enums whose value is one of theirs as it
    /// is, anything else through `serialize` (coercions and their errors).
    private mutating func leaf(_ node: Int32, _ leaf: OutputPlan.Leaf, _ entry: Int, _ field: WriterProgram.Field) -> Bool {
        if fastLeaf(leaf, entry) { return true }
        let kind = json.kind(entry)
        switch (leaf, kind) {
        case (.string, .string), (.id, .string):  // escaped: written again the canonical way (no "\/", UTF-8 as is)
            var text: [UInt8] = []
            JSONWriter.writeString(json.string(entry), into: &text)
            out.append(contentsOf: text)
            return true
        case (.enumeration, .string) where !json.flag(entry):
            let raw = json.raw(entry)
            if program.outputs[Int(node)].enumNames.contains(String(decoding: raw, as: UTF8.self)) {
                quoted(raw)
                return true
            }
        default:
            break
        }
        do {
            var text: [UInt8] = []
            JSONWriter.write(try Self.serialize(json.map(entry), as: leaf, type: program.outputs[Int(node)].leafType), into: &text)
            out.append(contentsOf: text)
            return true
        } catch {
            record(GraphQLError(message: (error as? GraphQLError)?.message ?? "\(error)"), field)
            return false
        }
    }

    /// Leaf serialization for values the fast paths did not take: the built-in scalars by
    /// graphql-js's rules and words (GraphQLSwift's let 3000000000 through as an Int and
    /// refused 12 as a String), enums and custom scalars by their GraphQLSwift type.
    static func serialize(_ value: Map, as leaf: OutputPlan.Leaf, type: GraphQLLeafType?) throws -> Map {
        func number(_ value: Map) -> Double? {
            switch value {
            case .number(let number): number.doubleValue
            case .bool(let flag): flag ? 1 : 0
            case .string(let text): Double(text)
            default: nil
            }
        }
        let shown = JSONWriter.text(value)
        switch leaf {
        case .int:
            guard let double = number(value), double.isFinite, double == double.rounded() else {
                throw GraphQLError(message: "Int cannot represent non-integer value: \(shown)")
            }
            guard let int = Int32(exactly: double) else {
                throw GraphQLError(message: "Int cannot represent non 32-bit signed integer value: \(shown)")
            }
            return .number(Number(Int(int)))
        case .float:
            guard let double = number(value), double.isFinite else {
                throw GraphQLError(message: "Float cannot represent non numeric value: \(shown)")
            }
            return .number(Number(double))
        case .string:
            switch value {
            case .string: return value
            case .bool(let flag): return .string(flag ? "true" : "false")
            case .number(let number) where number.doubleValue.isFinite: return .string(value.templateText ?? "\(number)")
            default: throw GraphQLError(message: "String cannot represent value: \(shown)")
            }
        case .boolean:
            switch value {
            case .bool: return value
            case .number(let number) where number.doubleValue.isFinite: return .bool(number.doubleValue != 0)
            default: throw GraphQLError(message: "Boolean cannot represent a non boolean value: \(shown)")
            }
        case .id:
            switch value {
            case .string: return value
            case .number(let number) where number.doubleValue == number.doubleValue.rounded() && abs(number.doubleValue) < 1e15:
                return .string(value.templateText ?? "")
            default: throw GraphQLError(message: "ID cannot represent value: \(shown)")
            }
        case .enumeration, .other:
            return try (type ?? GraphQLString).serialize(value: value)
        }
    }

    /// A decimal without exponent and at most 15 significant digits, its fraction's trailing
    /// zeros removed (what the shortest round-trip form of that double is); nil for anything
    /// else.
    static func shortDecimal(_ text: UnsafeBufferPointer<UInt8>) -> UnsafeBufferPointer<UInt8>? {
        var digits = 0
        var point: Int?
        for index in text.indices {
            switch text[index] {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digits += 1
            case UInt8(ascii: "."): point = index
            case UInt8(ascii: "-"): continue
            default: return nil  // an exponent
            }
        }
        guard digits <= 15, let point else { return nil }
        var end = text.endIndex
        while end > point + 1, text[end - 1] == UInt8(ascii: "0") { end -= 1 }
        if end == point + 1 { end = point }
        return UnsafeBufferPointer(rebasing: text[text.startIndex..<end])
    }

    private mutating func record(_ error: GraphQLError, _ field: WriterProgram.Field) {
        let fields = run.plan.fields
        let path: [IndexPathValue] = path.elements.map { $0 >= 0 ? .index($0) : .key(fields[-1 - $0].key) }
        errors.append(GraphQLError(message: error.message, nodes: fields[Int(field.id)].asts, path: IndexPath(path),
                                   extensions: error.extensions))
    }
}
