import GraphQL
import OrderedCollections

/// Executes an `OperationPlan` on the event loop it was started on, in waves: every `@rest`
/// field that can be called now is called at once (identical calls once, a field with a
/// `batch` mapping once for all its parents), and when the wave's answers are in, the objects
/// they hold show which calls come next. Nothing else waits: `ResponseWriter` then writes the
/// response from the plan and the answers' bytes in one pass. Users with their orders are two
/// waves of one call each.
///
/// Mutations run their root fields one after another (spec §6.2.2), each with everything below
/// it before the next begins.
public final class OperationRun {
    let plan: OperationPlan
    let engine: GraphQLEngine
    let variables: [String: Map]
    let headers: [String: String]
    let transport: any RestTransport
    /// Introspection root fields' values by response key, answered by GraphQLSwift.
    let introspected: [String: Map]

    /// Every upstream answer, parsed onto one tape; a value is an entry index.
    private(set) var tape = JSONTape()
    private(set) var resolved = Resolutions()
    private var calls: [Call] = []
    private var callIndex: [RestRequest: Int] = [:]
    private var arguments: [Int: Result<Map, GraphQLError>] = [:]
    private var wave: [Job] = []
    private var pending: [Pending] = []
    private var outstanding = 0
    private var issuing = false
    private var rootsLeft: ArraySlice<FieldPlan> = []
    private var done: (([UInt8], [GraphQLError]) -> Void)?

    /// Upstream calls made (after de-duplication), for the debug header.
    public var upstreamCalls: Int { calls.count }

    public init(plan: OperationPlan, engine: GraphQLEngine, variables: [String: Map], headers: [String: String],
                transport: any RestTransport, introspected: [String: Map] = [:]) {
        self.plan = plan
        self.engine = engine
        self.variables = variables
        self.headers = headers
        self.transport = transport
        self.introspected = introspected
    }

    /// Runs the operation; `done` gets the `data` JSON (`null` when a failure reached the root)
    /// and the errors, on this loop.
    public func start(_ done: @escaping (_ data: [UInt8], _ errors: [GraphQLError]) -> Void) {
        self.done = done
        let root = ObjectRef.root
        if plan.isMutation {
            rootsLeft = ArraySlice(plan.root.fields.filter { $0.source == .rest })
            nextRoot()
        } else {
            var jobs: [Job] = []
            tape.withView { collect(plan.root, root, $0, into: &jobs) }
            run(jobs)
        }
    }

    private func nextRoot() {
        guard let field = rootsLeft.popFirst() else { return finish() }
        run([Job(field: field, parent: .root)])
    }

    private func finish() {
        let (data, errors) = ResponseWriter.write(self)
        let done = self.done
        self.done = nil
        done?(data, errors)
    }

    // MARK: Waves

    /// An object's entry on the tape; the root value has none.
    struct ObjectRef {
        var entry: Int
        static let root = ObjectRef(entry: -1)
    }

    /// A `@rest` field's value for one parent.
    enum Resolution {
        case value(Int)
        /// A batched list field's matches: entries in `matchedItems`.
        case items(Range<Int>)
        case null
        /// An error in `failures`.
        case failure(Int)
    }

    struct Job {
        var field: FieldPlan
        var parent: ObjectRef
    }

    /// Plain values (copied per job, so no payloads to retain): a call, a batch and the
    /// parent's slot in it (-1: the parent has no value to match by), a failure in `failures`,
    /// or nothing to call for (an empty list or null).
    private enum Pending {
        case call(Int)
        case batch(Int, slot: Int)
        case failed(Int)
        case empty
    }

    /// The errors of `@rest` fields (plain indices keep `Resolution` free of references).
    private(set) var failures: [GraphQLError] = []
    /// Batched answers' items, grouped by the parent they match.
    private(set) var matchedItems: [Int] = []

    private func failure(_ error: GraphQLError) -> Int {
        failures.append(error)
        return failures.count - 1
    }

    private func fail(_ index: Int, _ error: GraphQLError) {
        pending[index] = .failed(failure(error))
    }

    private struct Call {
        var request: RestRequest
        /// The answer's root entry.
        var answer: Result<Int, GraphQLError>?
    }

    /// One batched call for a field's parents in a wave: the distinct parent values (slots) it
    /// asked for, and, once answered, the items matched to each slot.
    private struct Batch {
        var call: Int
        var field: FieldPlan
        var slots: BatchSlots
        var listField: Bool
        /// Once the answer is matched: where its slots' ranges (of `matchedItems`) start in
        /// `slotRanges`, or the failure (plain values: this is read once per parent).
        var matched = false
        var firstRange = 0
        var failure: Int?
    }

    private var slotRanges: [Range<Int>] = []

    private var batches: [Batch] = []

    private func run(_ jobs: [Job]) {
        guard !jobs.isEmpty else { return plan.isMutation ? nextRoot() : finish() }
        wave = jobs
        pending = Array(repeating: .empty, count: jobs.count)
        issuing = true
        // The jobs of each field with a batch mapping, in order of appearance: one call serves
        // a field asked for many parents.
        var groupOf: [Int: Int] = [:]
        var groups: [[Int]] = []
        var single: [Int] = []
        for (index, job) in jobs.enumerated() {
            guard job.field.batched else {
                single.append(index)
                continue
            }
            if let group = groupOf[job.field.id] {
                groups[group].append(index)
            } else {
                groupOf[job.field.id] = groups.count
                groups.append([index])
            }
        }
        for group in groups {
            if group.count > 1 { startBatch(group) } else { single.append(group[0]) }
        }
        for index in single {
            let job = jobs[index]
            switch argumentValues(job.field) {
            case .success(let args):
                if let request = singleRequest(job.field.binding!, args: args, parent: job.parent) {
                    pending[index] = .call(call(request))
                } else {
                    fail(index, Self.dotSegment)
                }
            case .failure(let error): fail(index, error)
            }
        }
        issuing = false
        if outstanding == 0 { resolveWave() }
    }

    /// One call for the parents of a batched field (the wave's jobs `members`).
    private func startBatch(_ members: [Int]) {
        let field = wave[members[0]].field
        let binding = field.binding!
        let batch = binding.batch!
        let args: Map
        switch argumentValues(field) {
        case .success(let values): args = values
        case .failure(let error):
            for member in members { fail(member, error) }
            return
        }
        var slots = BatchSlots(expected: members.count)
        var values: [String] = []
        let index = batches.count
        tape.withView { json in
            for member in members {
                let parent = wave[member].parent
                var slot = -1
                if parent.entry >= 0, let value = json.member(parent.entry, field.batchParentKey), let key = BatchKey(json, value) {
                    slot = slots.slot(for: key)
                    if slot == values.count { values.append(key.text) }
                }
                pending[member] = .batch(index, slot: slot)
            }
        }
        guard !values.isEmpty else {
            for member in members { pending[member] = .empty }
            return
        }
        let rendered = batch.path.render { variable in
            switch variable {
            case .argument(let name): args[name].templateText.map { [$0] } ?? []
            case .batch: values
            case .header(let name): headers[name].map { [$0] } ?? []
            case .parent: []
            }
        }
        guard let path = rendered else {
            for member in members { fail(member, Self.dotSegment) }
            return
        }
        let request = RestRequest(upstream: binding.upstream, method: "GET", path: path, body: nil, headers: headers)
        batches.append(Batch(call: call(request), field: field, slots: slots, listField: field.listBinding))
    }

    /// The index of the call for `request`, made now unless an identical one was.
    private func call(_ request: RestRequest) -> Int {
        if let index = callIndex[request] { return index }
        let index = calls.count
        calls.append(Call(request: request))
        callIndex[request] = index
        outstanding += 1
        transport.send(request) { [self] result in answered(index, result) }
        return index
    }

    private func answered(_ index: Int, _ result: Result<RestResponse, RestFailure>) {
        let upstream = calls[index].request.upstream
        switch result {
        case .failure(let failure):
            calls[index].answer = .failure(failure.graphQLError(upstream: upstream))
        case .success(let response) where !(200..<300).contains(response.status):
            calls[index].answer = .failure(RestFailure.status(response.status).graphQLError(upstream: upstream))
        case .success(let response):
            do {
                calls[index].answer = .success(try tape.append(parsing: response.body.isEmpty ? Array("null".utf8) : response.body))
            } catch {
                calls[index].answer = .failure(RestFailure.invalidResponse("the answer is not JSON").graphQLError(upstream: upstream))
            }
        }
        outstanding -= 1
        if outstanding == 0 && !issuing { resolveWave() }
    }

    private func resolveWave() {
        var next: [Job] = []
        tape.withView { json in
            for index in wave.indices {
                let job = wave[index]
                let resolution: Resolution = switch pending[index] {
                case .failed(let failure): .failure(failure)
                case .empty: job.field.listBinding ? .items(0..<0) : .null
                case .call(let call): single(call, job.field, json)
                case .batch(let batch, let slot): matched(batch, slot: slot, json)
                }
                resolved.set(resolution, parent: job.parent.entry, field: job.field.id)
                descend(job.field.output, resolution, json, into: &next)
            }
        }
        run(next)
    }

    private func answer(_ index: Int, _ field: FieldPlan, _ json: JSONTape.View) -> Result<Int, GraphQLError> {
        guard let answer = calls[index].answer else { return .failure(GraphQLError(message: "no answer")) }
        switch answer {
        case .failure(let error): return .failure(error)
        case .success(var entry):
            guard !field.selector.isEmpty else { return .success(entry) }
            let binding = field.binding!
            for key in binding.selector {
                guard json.kind(entry) == .object, let member = json.member(entry, Array(key.utf8)) else {
                    return .failure(GraphQLError(message: "the upstream answer has no \"\(binding.selector.joined(separator: "."))\"",
                                                 extensions: ["code": "UPSTREAM_UNAVAILABLE", "upstream": .string(binding.upstream)]))
                }
                entry = member
            }
            return .success(entry)
        }
    }

    private func single(_ index: Int, _ field: FieldPlan, _ json: JSONTape.View) -> Resolution {
        switch answer(index, field, json) {
        case .failure(let error): .failure(failure(error))
        case .success(let entry): .value(entry)
        }
    }

    /// A batched field's value for the parent in `slot`: all its matches for a list field,
    /// else the first or null.
    private func matched(_ index: Int, slot: Int, _ json: JSONTape.View) -> Resolution {
        if !batches[index].matched {
            batches[index].matched = true
            batches[index].firstRange = slotRanges.count
            if case .failure(let error) = match(batches[index], json) { batches[index].failure = failure(error) }
        }
        if let failure = batches[index].failure { return .failure(failure) }
        let matches = slot >= 0 ? slotRanges[batches[index].firstRange + slot] : 0..<0
        if batches[index].listField { return .items(matches) }
        return matches.isEmpty ? .null : .value(matchedItems[matches.lowerBound])
    }

    /// A batched answer's items, grouped by the slot whose value their key has (items whose
    /// key no parent has are dropped).
    /// Appends the batch's ranges to `slotRanges`, its items to `matchedItems`.
    private func match(_ batch: Batch, _ json: JSONTape.View) -> Result<Void, GraphQLError> {
        let binding = batch.field.binding!
        switch answer(batch.call, batch.field, json) {
        case .failure(let error):
            return .failure(error)
        case .success(let entry):
            guard json.kind(entry) == .array, let key = binding.batch?.key else {
                return .failure(GraphQLError(message: "upstream \"\(binding.upstream)\": a batched answer must be a JSON array",
                                             extensions: ["code": "UPSTREAM_UNAVAILABLE", "upstream": .string(binding.upstream)]))
            }
            let itemKey = Array(key.utf8)
            var slotted: [(slot: Int, item: Int)] = []
            var counts = [Int](repeating: 0, count: batch.slots.count)
            var item = entry + 1
            while item < json.next(entry) {
                if json.kind(item) == .object, let member = json.member(item, itemKey), let key = BatchKey(json, member),
                    let slot = batch.slots.existing(key)
                {
                    slotted.append((slot, item))
                    counts[slot] += 1
                }
                item = json.next(item)
            }
            // Grouped by slot, in the answer's order within each.
            var start = matchedItems.count
            var fill: [Int] = []
            fill.reserveCapacity(counts.count)
            for count in counts {
                slotRanges.append(start..<start + count)
                fill.append(start)
                start += count
            }
            matchedItems.append(contentsOf: repeatElement(0, count: slotted.count))
            for (slot, item) in slotted {
                matchedItems[fill[slot]] = item
                fill[slot] += 1
            }
            return .success(())
        }
    }

    // MARK: Finding the next calls

    private func collect(_ selection: SelectionPlan, _ parent: ObjectRef, _ json: JSONTape.View, into jobs: inout [Job]) {
        for field in selection.fields {
            switch field.source {
            case .rest:
                jobs.append(Job(field: field, parent: parent))
            case .json where field.output.restBelow && parent.entry >= 0:
                if let value = Self.member(of: parent, field, json) { descend(field.output, value, json, into: &jobs) }
            default:
                continue
            }
        }
    }

    private func descend(_ output: OutputPlan, _ resolution: Resolution, _ json: JSONTape.View, into jobs: inout [Job]) {
        guard output.restBelow else { return }
        switch resolution {
        case .value(let entry): descend(output, entry, json, into: &jobs)
        case .items(let range): for index in range { descend(output.listItem, matchedItems[index], json, into: &jobs) }
        case .null, .failure: return
        }
    }

    private func descend(_ output: OutputPlan, _ entry: Int, _ json: JSONTape.View, into jobs: inout [Job]) {
        guard output.restBelow else { return }
        switch output.kind {
        case .nonNull:
            descend(output.inner!, entry, json, into: &jobs)
        case .list:
            if json.kind(entry) == .array {
                for member in json.items(entry) { descend(output.inner!, member, json, into: &jobs) }
            } else {
                descend(output.inner!, entry, json, into: &jobs)
            }
        case .object:
            if json.kind(entry) == .object { collect(output.selection!, ObjectRef(entry: entry), json, into: &jobs) }
        case .abstract:
            if json.kind(entry) == .object, let selection = Self.runtimeType(output.possible, entry, json) {
                collect(selection, ObjectRef(entry: entry), json, into: &jobs)
            }
        case .leaf:
            return
        }
    }

    /// The object type an interface or union value is: its JSON's `__typename`, or the only
    /// possible type.
    static func runtimeType<Selection>(_ possible: [String: Selection], _ entry: Int, _ json: JSONTape.View) -> Selection? {
        if let member = json.member(entry, typenameKey), json.kind(member) == .string {
            return possible[json.string(member)]
        }
        return possible.count == 1 ? possible.first?.value : nil
    }

    static let typenameKey = Array("__typename".utf8)

    /// A `.json` field's value in its parent object.
    @inline(__always)
    static func member(of parent: ObjectRef, _ field: FieldPlan, _ json: JSONTape.View) -> Int? {
        if let member = json.member(parent.entry, field.name) { return member }
        if let alternative = field.alternative { return json.member(parent.entry, alternative) }
        return nil
    }

    // MARK: Requests

    private func text(of parent: ObjectRef, member name: String) -> String? {
        guard parent.entry >= 0 else { return nil }
        return tape.withView { json in json.member(parent.entry, Array(name.utf8)).flatMap { json.templateText($0) } }
    }

    /// A field's arguments, coerced, with the schema's defaults (once per field and run).
    private func argumentValues(_ field: FieldPlan) -> Result<Map, GraphQLError> {
        if let known = arguments[field.id] { return known }
        let result: Result<Map, GraphQLError>
        do {
            let coercion = Coercion(schema: engine.loaded.schema)
            var out = OrderedDictionary<String, Map>()
            for (name, definition) in field.arguments {
                if let argument = field.asts[0].arguments.first(where: { $0.name.value == name }),
                    let value = try coercion.literal(argument.value, type: definition.type, variables: variables)
                {
                    out[name] = value
                } else if let defaultValue = definition.defaultValue {
                    out[name] = defaultValue
                }
            }
            result = .success(.dictionary(out))
        } catch {
            result = .failure(GraphQLError(message: (error as? GraphQLError)?.message ?? "\(error)"))
        }
        arguments[field.id] = result
        return result
    }

    static let dotSegment = GraphQLError(message: "a value of \".\" or \"..\" cannot be a path segment of the REST call",
                                         extensions: ["code": "BAD_USER_INPUT"])

    private func singleRequest(_ binding: RestBinding, args: Map, parent: ObjectRef) -> RestRequest? {
        guard let path = binding.path.render({ variable in
            switch variable {
            case .argument(let name): args[name].templateText.map { [$0] } ?? []
            case .parent(let name): text(of: parent, member: name).map { [$0] } ?? []
            case .header(let name): headers[name].map { [$0] } ?? []
            case .batch: []
            }
        }) else { return nil }
        let body = binding.bodyArgument.map { Array(JSONWriter.text(args[$0]).utf8) }
        return RestRequest(upstream: binding.upstream, method: binding.method, path: path, body: body, headers: headers)
    }
}

extension Map {
    /// Text for a URL template: strings as they are, numbers without a trailing ".0",
    /// booleans as true/false; nil for null, lists and objects.
    var templateText: String? {
        switch self {
        case .string(let text): return text
        case .bool(let value): return value ? "true" : "false"
        case .number(let number):
            let double = number.doubleValue
            if double == double.rounded(), abs(double) < 1e15 { return String(Int(double)) }
            return "\(double)"
        default: return nil
        }
    }
}
