/// The types of a `FileDescriptorSet` (what `protoc --include_imports --descriptor_set_out`
/// writes), read with the wire reader: messages, enums and services by full name, with each
/// method's `google.api.http` rule.
///
/// swift-protobuf has these descriptor types, but its JSON codec needs generated code, not a
/// descriptor, and the HTTP rule (an extension) would arrive as unknown bytes anyway; reading
/// the few descriptor fields used here costs less than that package's build in every CI run.
/// Types refer to each other by index into the pool (recursive messages need no cycles).
public struct DescriptorPool: Sendable {
    public internal(set) var messages: [MessageType] = []
    public internal(set) var enums: [EnumType] = []
    public internal(set) var services: [ServiceType] = []
    var messageIndex: [String: Int] = [:]
    var enumIndex: [String: Int] = [:]

    public func message(named name: String) -> Int? { messageIndex[name] }
}

public struct MessageType: Sendable {
    public let fullName: String
    public internal(set) var fields: [FieldType]
    /// Field position by number, and by proto name and JSON name (both accepted in JSON).
    var byNumber: [Int: Int] = [:]
    var byName: [String: Int] = [:]
    let isMapEntry: Bool
    let oneofCount: Int
    /// Field positions by number: the order fields print in.
    var printOrder: [Int] = []
    /// A well-known type with its own JSON form.
    var wellKnown: WellKnownType?
}

public struct FieldType: Sendable {
    public enum Kind: UInt8, Sendable {
        case double = 1, float, int64, uint64, int32, fixed64, fixed32, bool, string, group, message, bytes, uint32, `enum`,
            sfixed32, sfixed64, sint32, sint64
    }

    public let name: String
    public let jsonName: String
    public let number: Int
    public let kind: Kind
    public let repeated: Bool
    let typeName: String
    /// The message or enum type's index in the pool (-1 for scalars).
    var typeIndex = -1
    let oneofIndex: Int?
    /// Whether the field tracks presence (printed when set, even to its default).
    var hasPresence: Bool
    /// Repeated scalars are written packed (proto3's default) unless `[packed = false]`.
    let packed: Bool
    /// A map field (repeated entry messages): set once types are linked.
    var isMap = false

    var isPackable: Bool { repeated && kind != .string && kind != .bytes && kind != .message && kind != .group }
}

public struct EnumType: Sendable {
    public let fullName: String
    let numberByName: [String: Int32]
    let nameByNumber: [Int32: String]
    let firstNumber: Int32
}

public struct ServiceType: Sendable {
    public let fullName: String
    public let methods: [MethodType]
}

public struct MethodType: Sendable {
    public let name: String
    let inputName: String
    let outputName: String
    public var input = -1
    public var output = -1
    public let clientStreaming: Bool
    public let serverStreaming: Bool
    let http: HTTPRule?
    /// `/package.Service/Method`: the gRPC call's path.
    public let grpcPath: String
}

public struct HTTPRule: Sendable {
    var method = ""
    var path = ""
    var body: String?
    var responseBody: String?
    var additional: [HTTPRule] = []
}

enum WellKnownType: Sendable {
    case timestamp, duration, fieldMask, `struct`, value, listValue, any, empty, wrapper
}

extension DescriptorPool {
    public init(fileDescriptorSet bytes: [UInt8]) throws(ProtoError) {
        do throws(ProtoError) {
            var reader = ProtoReader(bytes)
            var files: [Range<Int>] = []
            while !reader.isAtEnd {
                let (field, wire) = try reader.tag()
                if field == 1, wire == .lengthDelimited { files.append(try reader.lengthDelimited()) } else { try reader.skip(wire) }
            }
            guard !files.isEmpty else { throw ProtoError("no files in it") }
            for file in files { try readFile(bytes, file) }
        } catch {
            throw ProtoError("not a FileDescriptorSet (protoc --include_imports --descriptor_set_out=...): \(error.description)")
        }
        try link()
    }

    private mutating func readFile(_ bytes: [UInt8], _ range: Range<Int>) throws(ProtoError) {
        var reader = ProtoReader(bytes, range: range)
        var package = ""
        var messageRanges: [Range<Int>] = [], enumRanges: [Range<Int>] = [], serviceRanges: [Range<Int>] = []
        var syntax = "proto2"
        while !reader.isAtEnd {
            let (field, wire) = try reader.tag()
            switch (field, wire) {
            case (2, .lengthDelimited): package = Self.text(bytes, try reader.lengthDelimited())
            case (4, .lengthDelimited): messageRanges.append(try reader.lengthDelimited())
            case (5, .lengthDelimited): enumRanges.append(try reader.lengthDelimited())
            case (6, .lengthDelimited): serviceRanges.append(try reader.lengthDelimited())
            case (12, .lengthDelimited): syntax = Self.text(bytes, try reader.lengthDelimited())
            default: try reader.skip(wire)
            }
        }
        let scope = package.isEmpty ? "" : package + "."
        for message in messageRanges { try readMessage(bytes, message, scope: scope, proto3: syntax == "proto3") }
        for item in enumRanges { try readEnum(bytes, item, scope: scope) }
        for service in serviceRanges { try readService(bytes, service, scope: scope) }
    }

    private mutating func readMessage(_ bytes: [UInt8], _ range: Range<Int>, scope: String, proto3: Bool) throws(ProtoError) {
        var reader = ProtoReader(bytes, range: range)
        var name = ""
        var fieldRanges: [Range<Int>] = [], nested: [Range<Int>] = [], nestedEnums: [Range<Int>] = []
        var isMapEntry = false
        var oneofs = 0
        while !reader.isAtEnd {
            let (field, wire) = try reader.tag()
            switch (field, wire) {
            case (1, .lengthDelimited): name = Self.text(bytes, try reader.lengthDelimited())
            case (2, .lengthDelimited): fieldRanges.append(try reader.lengthDelimited())
            case (3, .lengthDelimited): nested.append(try reader.lengthDelimited())
            case (4, .lengthDelimited): nestedEnums.append(try reader.lengthDelimited())
            case (7, .lengthDelimited):
                var options = ProtoReader(bytes, range: try reader.lengthDelimited())
                while !options.isAtEnd {
                    let (option, optionWire) = try options.tag()
                    if option == 7, optionWire == .varint { isMapEntry = try options.varint() != 0 } else { try options.skip(optionWire) }
                }
            case (8, .lengthDelimited):
                _ = try reader.lengthDelimited()
                oneofs += 1
            default: try reader.skip(wire)
            }
        }
        let fullName = scope + name
        var fields: [FieldType] = []
        for field in fieldRanges { fields.append(try Self.readField(bytes, field, proto3: proto3)) }
        var message = MessageType(fullName: fullName, fields: fields, isMapEntry: isMapEntry, oneofCount: oneofs)
        for (position, field) in fields.enumerated() {
            message.byNumber[field.number] = position
            message.byName[field.name] = position
            message.byName[field.jsonName] = position
        }
        message.printOrder = fields.indices.sorted { fields[$0].number < fields[$1].number }
        message.wellKnown = Self.wellKnown[fullName]
        messageIndex[fullName] = messages.count
        messages.append(message)
        for inner in nested { try readMessage(bytes, inner, scope: fullName + ".", proto3: proto3) }
        for inner in nestedEnums { try readEnum(bytes, inner, scope: fullName + ".") }
    }

    private static func readField(_ bytes: [UInt8], _ range: Range<Int>, proto3: Bool) throws(ProtoError) -> FieldType {
        var reader = ProtoReader(bytes, range: range)
        var name = "", jsonName: String?, typeName = ""
        var number = 0, label = 1, type: UInt64 = 0
        var oneof: Int?
        var proto3Optional = false
        var packedOption: Bool?
        while !reader.isAtEnd {
            let (field, wire) = try reader.tag()
            switch (field, wire) {
            case (1, .lengthDelimited): name = text(bytes, try reader.lengthDelimited())
            case (3, .varint): number = Int(truncatingIfNeeded: try reader.varint())
            case (4, .varint): label = Int(truncatingIfNeeded: try reader.varint())
            case (5, .varint): type = try reader.varint()
            case (6, .lengthDelimited): typeName = text(bytes, try reader.lengthDelimited())
            case (8, .lengthDelimited):
                var options = ProtoReader(bytes, range: try reader.lengthDelimited())
                while !options.isAtEnd {
                    let (option, optionWire) = try options.tag()
                    if option == 2, optionWire == .varint { packedOption = try options.varint() != 0 } else { try options.skip(optionWire) }
                }
            case (9, .varint): oneof = Int(truncatingIfNeeded: try reader.varint())
            case (10, .lengthDelimited): jsonName = text(bytes, try reader.lengthDelimited())
            case (17, .varint): proto3Optional = try reader.varint() != 0
            default: try reader.skip(wire)
            }
        }
        guard let kind = FieldType.Kind(rawValue: UInt8(truncatingIfNeeded: type)), type <= 18 else {
            throw ProtoError("field \(name) has unknown type \(type)")
        }
        let repeated = label == 3
        let presence = !repeated && (kind == .message || kind == .group || oneof != nil || proto3Optional || !proto3)
        // A proto3 `optional` field sits in a synthetic oneof of its own: not a real oneof.
        return FieldType(name: name, jsonName: jsonName ?? lowerCamelCase(name), number: number, kind: kind, repeated: repeated,
                         typeName: typeName.hasPrefix(".") ? String(typeName.dropFirst()) : typeName,
                         oneofIndex: proto3Optional ? nil : oneof, hasPresence: presence,
                         packed: packedOption ?? proto3)
    }

    private mutating func readEnum(_ bytes: [UInt8], _ range: Range<Int>, scope: String) throws(ProtoError) {
        var reader = ProtoReader(bytes, range: range)
        var name = ""
        var byName: [String: Int32] = [:], byNumber: [Int32: String] = [:]
        var first: Int32?
        while !reader.isAtEnd {
            let (field, wire) = try reader.tag()
            switch (field, wire) {
            case (1, .lengthDelimited): name = Self.text(bytes, try reader.lengthDelimited())
            case (2, .lengthDelimited):
                var value = ProtoReader(bytes, range: try reader.lengthDelimited())
                var valueName = ""
                var number: Int32 = 0
                while !value.isAtEnd {
                    let (inner, innerWire) = try value.tag()
                    switch (inner, innerWire) {
                    case (1, .lengthDelimited): valueName = Self.text(bytes, try value.lengthDelimited())
                    case (2, .varint): number = Int32(truncatingIfNeeded: try value.varint())
                    default: try value.skip(innerWire)
                    }
                }
                byName[valueName] = number
                if byNumber[number] == nil { byNumber[number] = valueName }  // aliases: the first name prints
                if first == nil { first = number }
            default: try reader.skip(wire)
            }
        }
        enumIndex[scope + name] = enums.count
        enums.append(EnumType(fullName: scope + name, numberByName: byName, nameByNumber: byNumber, firstNumber: first ?? 0))
    }

    private mutating func readService(_ bytes: [UInt8], _ range: Range<Int>, scope: String) throws(ProtoError) {
        var reader = ProtoReader(bytes, range: range)
        var name = ""
        var methodRanges: [Range<Int>] = []
        while !reader.isAtEnd {
            let (field, wire) = try reader.tag()
            switch (field, wire) {
            case (1, .lengthDelimited): name = Self.text(bytes, try reader.lengthDelimited())
            case (2, .lengthDelimited): methodRanges.append(try reader.lengthDelimited())
            default: try reader.skip(wire)
            }
        }
        var methods: [MethodType] = []
        for method in methodRanges {
            var reader = ProtoReader(bytes, range: method)
            var methodName = "", input = "", output = ""
            var clientStreaming = false, serverStreaming = false
            var rule: HTTPRule?
            while !reader.isAtEnd {
                let (field, wire) = try reader.tag()
                switch (field, wire) {
                case (1, .lengthDelimited): methodName = Self.text(bytes, try reader.lengthDelimited())
                case (2, .lengthDelimited): input = Self.text(bytes, try reader.lengthDelimited())
                case (3, .lengthDelimited): output = Self.text(bytes, try reader.lengthDelimited())
                case (4, .lengthDelimited):
                    var options = ProtoReader(bytes, range: try reader.lengthDelimited())
                    while !options.isAtEnd {
                        let (option, optionWire) = try options.tag()
                        if option == 72_295_728, optionWire == .lengthDelimited {
                            rule = try Self.readRule(bytes, try options.lengthDelimited(), depth: 0)
                        } else {
                            try options.skip(optionWire)
                        }
                    }
                case (5, .varint): clientStreaming = try reader.varint() != 0
                case (6, .varint): serverStreaming = try reader.varint() != 0
                default: try reader.skip(wire)
                }
            }
            methods.append(MethodType(name: methodName, inputName: String(input.drop { $0 == "." }),
                                      outputName: String(output.drop { $0 == "." }), clientStreaming: clientStreaming,
                                      serverStreaming: serverStreaming, http: rule, grpcPath: "/\(scope)\(name)/\(methodName)"))
        }
        services.append(ServiceType(fullName: scope + name, methods: methods))
    }

    private static func readRule(_ bytes: [UInt8], _ range: Range<Int>, depth: Int) throws(ProtoError) -> HTTPRule {
        var reader = ProtoReader(bytes, range: range)
        var rule = HTTPRule()
        let verbs = [2: "GET", 3: "PUT", 4: "POST", 5: "DELETE", 6: "PATCH"]
        while !reader.isAtEnd {
            let (field, wire) = try reader.tag()
            switch (field, wire) {
            case (2...6, .lengthDelimited):
                rule.method = verbs[field]!
                rule.path = text(bytes, try reader.lengthDelimited())
            case (7, .lengthDelimited): rule.body = text(bytes, try reader.lengthDelimited())
            case (8, .lengthDelimited):
                var custom = ProtoReader(bytes, range: try reader.lengthDelimited())
                while !custom.isAtEnd {
                    let (inner, innerWire) = try custom.tag()
                    switch (inner, innerWire) {
                    case (1, .lengthDelimited): rule.method = text(bytes, try custom.lengthDelimited())
                    case (2, .lengthDelimited): rule.path = text(bytes, try custom.lengthDelimited())
                    default: try custom.skip(innerWire)
                    }
                }
            case (11, .lengthDelimited):
                guard depth == 0 else { throw ProtoError("additional_bindings may not nest") }
                rule.additional.append(try readRule(bytes, try reader.lengthDelimited(), depth: 1))
            case (12, .lengthDelimited): rule.responseBody = text(bytes, try reader.lengthDelimited())
            default: try reader.skip(wire)
            }
        }
        if rule.body == "" { rule.body = nil }
        if rule.responseBody == "" { rule.responseBody = nil }
        return rule
    }

    /// Resolves type names to indexes; marks map fields.
    private mutating func link() throws(ProtoError) {
        for m in messages.indices {
            for f in messages[m].fields.indices {
                let field = messages[m].fields[f]
                switch field.kind {
                case .message, .group:
                    guard let index = messageIndex[field.typeName] else {
                        throw ProtoError("\(messages[m].fullName).\(field.name): type \(field.typeName) is not in the set (use --include_imports)")
                    }
                    messages[m].fields[f].typeIndex = index
                    messages[m].fields[f].isMap = field.repeated && messages[index].isMapEntry
                case .enum:
                    guard let index = enumIndex[field.typeName] else {
                        throw ProtoError("\(messages[m].fullName).\(field.name): enum \(field.typeName) is not in the set (use --include_imports)")
                    }
                    messages[m].fields[f].typeIndex = index
                default: break
                }
            }
        }
        for s in services.indices {
            var methods = services[s].methods
            for i in methods.indices {
                guard let input = messageIndex[methods[i].inputName], let output = messageIndex[methods[i].outputName] else {
                    throw ProtoError("\(services[s].fullName).\(methods[i].name): its message types are not in the set")
                }
                methods[i].input = input
                methods[i].output = output
            }
            services[s] = ServiceType(fullName: services[s].fullName, methods: methods)
        }
    }

    static func text(_ bytes: [UInt8], _ range: Range<Int>) -> String {
        String(decoding: bytes[range], as: UTF8.self)
    }

    static let wellKnown: [String: WellKnownType] = [
        "google.protobuf.Timestamp": .timestamp, "google.protobuf.Duration": .duration, "google.protobuf.FieldMask": .fieldMask,
        "google.protobuf.Struct": .struct, "google.protobuf.Value": .value, "google.protobuf.ListValue": .listValue,
        "google.protobuf.Any": .any, "google.protobuf.Empty": .empty,
        "google.protobuf.DoubleValue": .wrapper, "google.protobuf.FloatValue": .wrapper, "google.protobuf.Int64Value": .wrapper,
        "google.protobuf.UInt64Value": .wrapper, "google.protobuf.Int32Value": .wrapper, "google.protobuf.UInt32Value": .wrapper,
        "google.protobuf.BoolValue": .wrapper, "google.protobuf.StringValue": .wrapper, "google.protobuf.BytesValue": .wrapper,
    ]
}

/// protoc's default JSON name: underscores dropped, the letter after each upper-cased.
func lowerCamelCase(_ name: String) -> String {
    var out = ""
    var upper = false
    for character in name {
        if character == "_" {
            upper = true
        } else {
            out.append(upper ? Character(character.uppercased()) : character)
            upper = false
        }
    }
    return out
}
