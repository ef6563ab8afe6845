import CausewayHTTP
import NIOCore

/// REST/JSON ↔ gRPC for the methods of a descriptor set that carry `google.api.http` rules:
/// which call a request is, the request message built from its body, path and query, and the
/// response (or status) as JSON. Immutable; shared by every loop.
public final class Transcoder: Sendable {
    public struct Binding: Sendable {
        public let httpMethod: String
        let template: PathTemplate
        public let method: MethodType
        /// "*", a field of the request message, or nil (no body).
        let body: String?
        let responseBody: String?
    }

    /// A request matched to a binding, with its path variables.
    public struct Call {
        public let binding: Binding
        let variables: [(fieldPath: [String], value: String)]
    }

    public enum Match {
        case call(Call)
        /// The path matches rules for other methods only.
        case methodNotAllowed([String])
        case none
    }

    public let pool: DescriptorPool
    public let printer: JSONPrinter
    let bindings: [Binding]
    /// At most this many query parameters are read (each costs a field lookup and an encode).
    static let maxQueryParameters = 256

    /// `services`: full names to expose; empty exposes every service with HTTP rules.
    public init(descriptorSet: [UInt8], services: [String], options: JSONPrinter.Options) throws(ProtoError) {
        let pool = try DescriptorPool(fileDescriptorSet: descriptorSet)
        self.pool = pool
        printer = JSONPrinter(pool: pool, options: options)
        for name in services where !pool.services.contains(where: { $0.fullName == name }) {
            throw ProtoError("service \(name) is not in the descriptor set (it has: \(pool.services.map(\.fullName).joined(separator: ", ")))")
        }
        var bindings: [Binding] = []
        for service in pool.services where services.isEmpty || services.contains(service.fullName) {
            for method in service.methods {
                guard let rule = method.http else { continue }
                for each in [rule] + rule.additional {
                    bindings.append(try Self.binding(each, method: method, pool: pool))
                }
            }
        }
        guard !bindings.isEmpty else { throw ProtoError("no method of the listed services has a google.api.http rule") }
        // Most literal segments first: "/v1/shelves/default" beats "/v1/shelves/{id}".
        self.bindings = bindings.enumerated().sorted {
            ($0.element.template.specificity, -$0.offset) > ($1.element.template.specificity, -$1.offset)
        }.map(\.element)
    }

    private static func binding(_ rule: HTTPRule, method: MethodType, pool: DescriptorPool) throws(ProtoError) -> Binding {
        let where_ = method.grpcPath
        guard !rule.method.isEmpty, !rule.path.isEmpty else { throw ProtoError("\(where_): an HTTP rule without a method and path") }
        let template: PathTemplate
        do {
            template = try PathTemplate(rule.path)
        } catch {
            throw ProtoError("\(where_): \(error.description)")
        }
        let input = pool.messages[method.input]
        for variable in template.variables {
            _ = try resolve(variable.fieldPath, in: method.input, pool: pool, what: "\(where_): path variable")
        }
        if let body = rule.body, body != "*", input.byName[body] == nil {
            throw ProtoError("\(where_): body \"\(body)\" is not a field of \(input.fullName)")
        }
        if let responseBody = rule.responseBody, pool.messages[method.output].byName[responseBody] == nil {
            throw ProtoError("\(where_): response_body \"\(responseBody)\" is not a field of \(pool.messages[method.output].fullName)")
        }
        return Binding(httpMethod: rule.method.uppercased(), template: template, method: method, body: rule.body,
                       responseBody: rule.responseBody)
    }

    /// The fields along `path` (proto or JSON names), from the message type `type`.
    static func resolve(_ path: [String], in type: Int, pool: DescriptorPool, what: String) throws(ProtoError) -> [FieldType] {
        var fields: [FieldType] = []
        var current = type
        for (index, name) in path.enumerated() {
            let message = pool.messages[current]
            guard let position = message.byName[name] else {
                throw ProtoError("\(what) \(path.joined(separator: ".")): \(message.fullName) has no field \(name)")
            }
            let field = message.fields[position]
            fields.append(field)
            if index < path.count - 1 {
                guard field.kind == .message, !field.repeated, pool.messages[field.typeIndex].wellKnown == nil else {
                    throw ProtoError("\(what) \(path.joined(separator: ".")): \(name) is not a message field")
                }
                current = field.typeIndex
            }
        }
        return fields
    }

    /// Whether any rule's template matches `path` (the route table asks, to send REST calls here).
    public func matchesPath(_ path: Substring) -> Bool {
        bindings.contains { $0.template.match(path) != nil }
    }

    public func match(method: String, path: Substring) -> Match {
        var allowed: [String] = []
        for binding in bindings {
            guard let variables = binding.template.match(path) else { continue }
            if binding.httpMethod == method { return .call(Call(binding: binding, variables: variables)) }
            if !allowed.contains(binding.httpMethod) { allowed.append(binding.httpMethod) }
        }
        return allowed.isEmpty ? .none : .methodNotAllowed(allowed)
    }

    // MARK: Request

    /// The request message(s): the body by the rule, then path variables, then query parameters,
    /// each encoded on its own and appended (protobuf's merge makes a later value win). A client
    /// streaming method takes a JSON array as several messages.
    public func requestMessages(_ call: Call, query: Substring?, body: [UInt8]) throws(ProtoError) -> [[UInt8]] {
        let method = call.binding.method
        let encoder = ProtoEncoder(pool: pool)
        var bodies: [[UInt8]] = [[]]
        var bound: [[String]] = call.variables.map(\.fieldPath)
        if let rule = call.binding.body {
            let json: JSONValue = body.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) ? .object([]) : try JSONParser.parse(body)
            if rule == "*" {
                if method.clientStreaming, case .array(let items) = json {
                    bodies = []
                    for (index, item) in items.enumerated() { bodies.append(try encoder.encode(item, type: method.input, path: "[\(index)]")) }
                } else {
                    bodies = [try encoder.encode(json, type: method.input, path: "")]
                }
            } else {
                let message = pool.messages[method.input]
                var writer = ProtoWriter()
                try encoder.encodeField(message.fields[message.byName[rule]!], json, path: rule, into: &writer)
                bodies = [writer.bytes]
                bound.append([rule])
            }
        }
        var extra = ProtoWriter()
        for (fieldPath, value) in call.variables {
            try set(fieldPath, .text(value), root: method.input, encoder: encoder, into: &extra, what: "path variable")
        }
        // With body "*" every field comes from the body; otherwise the query fills the rest.
        if let query, !query.isEmpty, call.binding.body != "*" {
            var count = 0
            for pair in query.split(separator: "&") where !pair.isEmpty {
                count += 1
                guard count <= Self.maxQueryParameters else { throw ProtoError("more than \(Self.maxQueryParameters) query parameters") }
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard let name = PathTemplate.percentDecoded(String(parts[0]), plusIsSpace: true),
                    let value = PathTemplate.percentDecoded(parts.count > 1 ? String(parts[1]) : "", plusIsSpace: true)
                else { throw ProtoError("query parameter \(parts[0].prefix(40)): malformed percent-encoding") }
                let fieldPath = name.split(separator: ".").map(String.init)
                if bound.contains(where: { fieldPath.starts(with: $0) }) { continue }  // the path or body has it
                try set(fieldPath, .text(value), root: method.input, encoder: encoder, into: &extra, what: "query parameter")
            }
        }
        return bodies.map { $0 + extra.bytes }
    }

    /// Encodes `value` at `fieldPath` from the input type, wrapped in the messages along the way.
    private func set(_ fieldPath: [String], _ value: JSONValue, root: Int, encoder: ProtoEncoder, into writer: inout ProtoWriter,
                     what: String) throws(ProtoError) {
        let fields = try Self.resolve(fieldPath, in: root, pool: pool, what: what)
        let leaf = fields.last!
        if leaf.isMap || (leaf.kind == .message && pool.messages[leaf.typeIndex].wellKnown == nil) {
            throw ProtoError("\(what) \(fieldPath.joined(separator: ".")): a message or map field cannot be set from text")
        }
        var inner = ProtoWriter()
        try encoder.encodeField(leaf, value, path: fieldPath.joined(separator: "."), into: &inner)
        for field in fields.dropLast().reversed() {
            var outer = ProtoWriter()
            outer.lengthDelimited(field.number, inner.bytes)
            inner = outer
        }
        writer.bytes += inner.bytes
    }

    // MARK: Response

    /// The response message as the rule prints it (whole, or its `response_body` field).
    public func printResponse(_ message: [UInt8], binding: Binding, into out: inout ByteBuffer) throws(ProtoError) {
        if let field = binding.responseBody {
            try printer.print(message, type: binding.method.output, field: field, into: &out)
        } else {
            try printer.print(message, type: binding.method.output, into: &out)
        }
    }

    /// `{"code":5,"message":"...","details":[...]}`, google.rpc.Status in JSON. Details come from
    /// `grpc-status-details-bin` when it decodes and its types are in the set.
    public func printStatus(code: Int, message: String, details: [UInt8]?, into out: inout ByteBuffer) {
        out.writeString("{\"code\":\(code),\"message\":")
        JSONText.writeString(message, to: &out)
        out.writeString(",\"details\":[")
        if let details, let any = pool.message(named: "google.protobuf.Any") {
            var reader = ProtoReader(details)
            var first = true
            while !reader.isAtEnd {
                guard let (number, wire) = try? reader.tag() else { break }
                if number == 3, wire == .lengthDelimited, let range = try? reader.lengthDelimited() {
                    var printed = ByteBuffer()
                    guard (try? printer.print(Array(details[range]), type: any, into: &printed)) != nil else { continue }
                    if !first { out.writeInteger(UInt8(ascii: ",")) }
                    first = false
                    out.writeBuffer(&printed)
                } else if (try? reader.skip(wire)) == nil {
                    break
                }
            }
        }
        out.writeString("]}")
    }

    /// The HTTP status for a gRPC status code (google.rpc.Code's documented mapping).
    public static func httpStatus(forGRPC code: Int) -> Int {
        switch code {
        case 0: 200
        case 1: 499
        case 3, 9, 11: 400
        case 4: 504
        case 5: 404
        case 6, 10: 409
        case 7: 403
        case 8: 429
        case 12: 501
        case 14: 503
        case 16: 401
        default: 500
        }
    }
}
