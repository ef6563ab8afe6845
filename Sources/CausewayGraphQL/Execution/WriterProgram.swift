/// An `OperationPlan` lowered for `ResponseWriter`: its selections, fields and output types
/// as plain values in flat buffers (indices, and byte ranges into one pool of key text), so
/// walking them for every value written costs no reference counting. (Walking the classes
/// themselves retained and released every field and key: over a tenth of a request.)
final class WriterProgram {
    struct Bytes {
        var start: Int32
        var end: Int32
        static let none = Bytes(start: -1, end: -1)
    }

    struct Node {
        var kind: OutputPlan.Kind
        var leaf: OutputPlan.Leaf
        /// `.nonNull`, `.list`: the wrapped node; `.object`: the selection; `.abstract`: the
        /// index in `abstracts`.
        var inner: Int32
    }

    struct Selection {
        var fields: Range<Int32>
        /// `"TypeName"`.
        var typeName: Bytes
    }

    struct Field {
        /// The `FieldPlan`'s id (errors, bindings, resolved `@rest` values).
        var id: Int32
        var source: FieldPlan.Source
        /// `"key":`.
        var key: Bytes
        var name: Bytes
        var alternative: Bytes
        var output: Int32
    }

    let nodes: UnsafeMutableBufferPointer<Node>
    let selections: UnsafeMutableBufferPointer<Selection>
    let fields: UnsafeMutableBufferPointer<Field>
    let pool: UnsafeMutableBufferPointer<UInt8>
    /// By node: the output plan (leaf types and enum values, for the slow paths).
    let outputs: [OutputPlan]
    /// By `.abstract` node's `inner`: possible type name → selection.
    let abstracts: [[String: Int32]]
    let root: Int32

    init(_ plan: OperationPlan) {
        var builder = Builder()
        root = builder.selection(plan.root)
        nodes = .allocate(capacity: builder.nodes.count)
        _ = nodes.initialize(from: builder.nodes)
        selections = .allocate(capacity: builder.selections.count)
        _ = selections.initialize(from: builder.selections)
        fields = .allocate(capacity: builder.fields.count)
        _ = fields.initialize(from: builder.fields)
        pool = .allocate(capacity: max(1, builder.pool.count))
        _ = pool.initialize(from: builder.pool)
        outputs = builder.outputs
        abstracts = builder.abstracts
    }

    deinit {
        nodes.deallocate()
        selections.deallocate()
        fields.deallocate()
        pool.deallocate()
    }

    func bytes(_ range: Bytes) -> UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(rebasing: pool[Int(range.start)..<Int(range.end)])
    }

    private struct Builder {
        var nodes: [Node] = []
        var outputs: [OutputPlan] = []
        var selections: [Selection] = []
        var fields: [Field] = []
        var pool: [UInt8] = []
        var abstracts: [[String: Int32]] = []
        var selectionIndex: [ObjectIdentifier: Int32] = [:]

        mutating func bytes(_ text: [UInt8]?) -> Bytes {
            guard let text else { return .none }
            let start = Int32(pool.count)
            pool.append(contentsOf: text)
            return Bytes(start: start, end: Int32(pool.count))
        }

        mutating func selection(_ plan: SelectionPlan) -> Int32 {
            if let known = selectionIndex[ObjectIdentifier(plan)] { return known }
            let index = Int32(selections.count)
            selectionIndex[ObjectIdentifier(plan)] = index
            selections.append(Selection(fields: 0..<0, typeName: bytes(plan.typeNameJSON)))
            // A selection's fields are contiguous: reserve them before planning the children.
            let first = Int32(fields.count)
            for field in plan.fields {
                fields.append(Field(id: Int32(field.id), source: field.source, key: bytes(field.keyJSON), name: bytes(field.name),
                                    alternative: bytes(field.alternative), output: -1))
            }
            for (offset, field) in plan.fields.enumerated() {
                let output = node(field.output)
                fields[Int(first) + offset].output = output
            }
            selections[Int(index)].fields = first..<first + Int32(plan.fields.count)
            return index
        }

        mutating func node(_ output: OutputPlan) -> Int32 {
            let index = Int32(nodes.count)
            nodes.append(Node(kind: output.kind, leaf: output.leaf, inner: -1))
            outputs.append(output)
            switch output.kind {
            case .nonNull, .list:
                nodes[Int(index)].inner = node(output.inner!)
            case .object:
                nodes[Int(index)].inner = selection(output.selection!)
            case .abstract:
                var possible: [String: Int32] = [:]
                for (name, plan) in output.possible { possible[name] = selection(plan) }
                nodes[Int(index)].inner = Int32(abstracts.count)
                abstracts.append(possible)
            case .leaf:
                break
            }
            return index
        }
    }
}
