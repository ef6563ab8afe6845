import GraphQL
import OrderedCollections
import Synchronization

extension Map {
    static func decodeJSON(_ bytes: [UInt8]) throws -> Map {
        try JSONParser.parse(bytes)
    }

    /// Text for a URL template or a batch key: strings as they are, numbers without a
    /// trailing ".0", booleans as true/false; nil for null, lists and objects.
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

/// A JSON object from an upstream, as the executor's source value for its fields. Results of
/// `@rest` fields fetched ahead for it (a batched call made for all its siblings at once)
/// are attached by response key.
final class JSONObject: Sendable {
    let fields: OrderedDictionary<String, Map>
    private let prefetched = Mutex<[String: Result<(any Sendable)?, GraphQLError>]>([:])

    init(_ fields: OrderedDictionary<String, Map>) {
        self.fields = fields
    }

    func attach(_ key: String, _ result: Result<(any Sendable)?, GraphQLError>) {
        prefetched.withLock { $0[key] = result }
    }

    func prefetchedResult(_ key: String) -> Result<(any Sendable)?, GraphQLError>? {
        prefetched.withLock { $0[key] }
    }

    /// A field's JSON value: by `@from` name, else by name, else by its snake_case spelling.
    func value(_ name: String, rename: String?) -> Map? {
        if let rename { return fields[rename] }
        if let value = fields[name] { return value }
        return fields[Self.snakeCase(name)]
    }

    static func snakeCase(_ name: String) -> String {
        var out = ""
        for character in name {
            if character.isUppercase {
                out += "_" + character.lowercased()
            } else {
                out.append(character)
            }
        }
        return out
    }
}

/// JSON as the executor wants it back: objects wrapped, lists as arrays, null as nil.
func executorValue(_ map: Map) -> (any Sendable)? {
    switch map {
    case .null, .undefined: nil
    case .dictionary(let fields): JSONObject(fields)
    case .array(let items): items.map { executorValue($0) }
    default: map
    }
}
