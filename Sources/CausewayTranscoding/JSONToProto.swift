import CausewayHTTP

/// JSON → protobuf by a message type from the pool, per the proto3 JSON mapping: proto and
/// lowerCamelCase names, 64-bit integers as numbers or strings, enums by name or number, bytes
/// in either base64 alphabet, and the well-known types' own forms. Errors name the field path.
struct ProtoEncoder {
    let pool: DescriptorPool

    func encode(_ value: JSONValue, type: Int, path: String) throws(ProtoError) -> [UInt8] {
        let message = pool.messages[type]
        if let wellKnown = message.wellKnown, wellKnown != .empty { return try encodeWellKnown(wellKnown, value, type: type, path: path) }
        if case .null = value { return [] }
        guard case .object(let members) = value else {
            throw ProtoError("\(path.isEmpty ? "the body" : path): expected an object for \(message.fullName), got \(value.kindName)")
        }
        var writer = ProtoWriter()
        var oneofs: [Int: String] = [:]
        for (key, member) in members {
            let memberPath = path.isEmpty ? key : path + "." + key
            guard let position = message.byName[key] else { throw ProtoError("\(memberPath): no such field in \(message.fullName)") }
            let field = message.fields[position]
            if let oneof = field.oneofIndex, member != .null {
                if let other = oneofs[oneof], other != field.name {
                    throw ProtoError("\(memberPath): \(other) of the same oneof is set too; at most one may be")
                }
                oneofs[oneof] = field.name
            }
            try encodeField(field, member, path: memberPath, into: &writer)
        }
        return writer.bytes
    }

    func encodeField(_ field: FieldType, _ value: JSONValue, path: String, into writer: inout ProtoWriter) throws(ProtoError) {
        if case .null = value, !acceptsNull(field) { return }
        if field.isMap {
            guard case .object(let entries) = value else { throw ProtoError("\(path): expected an object (a map), got \(value.kindName)") }
            let entry = pool.messages[field.typeIndex]
            guard entry.fields.count == 2, let keyField = entry.fields.first(where: { $0.number == 1 }),
                let valueField = entry.fields.first(where: { $0.number == 2 })
            else { throw ProtoError("\(path): malformed map entry type") }
            for (key, item) in entries {
                var inner = ProtoWriter()
                try encodeSingle(keyField, .text(key), path: "\(path)[\(key)]", into: &inner)
                if case .null = item { throw ProtoError("\(path)[\(key)]: null is not a map value") }
                try encodeSingle(valueField, item, path: "\(path)[\(key)]", into: &inner)
                writer.lengthDelimited(field.number, inner.bytes)
            }
        } else if field.repeated {
            let elements: [JSONValue]
            switch value {
            case .array(let items): elements = items
            case .text: elements = [value]
            default: throw ProtoError("\(path): expected an array, got \(value.kindName)")
            }
            if field.packed && field.isPackable {
                var packed = ProtoWriter()
                for (index, element) in elements.enumerated() {
                    try scalar(field, element, path: "\(path)[\(index)]", into: &packed)
                }
                if !elements.isEmpty { writer.lengthDelimited(field.number, packed.bytes) }
            } else {
                for (index, element) in elements.enumerated() {
                    if case .null = element, !acceptsNull(field) { throw ProtoError("\(path)[\(index)]: null in a repeated field") }
                    try encodeSingle(field, element, path: "\(path)[\(index)]", into: &writer)
                }
            }
        } else {
            try encodeSingle(field, value, path: path, into: &writer)
        }
    }

    /// google.protobuf.Value takes null (as NULL_VALUE), as does the NullValue enum.
    private func acceptsNull(_ field: FieldType) -> Bool {
        (field.kind == .message && pool.messages[field.typeIndex].fullName == "google.protobuf.Value")
            || (field.kind == .enum && pool.enums[field.typeIndex].fullName == "google.protobuf.NullValue")
    }

    private func encodeSingle(_ field: FieldType, _ value: JSONValue, path: String, into writer: inout ProtoWriter) throws(ProtoError) {
        switch field.kind {
        case .message, .group:
            writer.lengthDelimited(field.number, try encode(value, type: field.typeIndex, path: path))
        case .string:
            writer.lengthDelimited(field.number, Array(try text(value, path, "a string").utf8))
        case .bytes:
            let encoded = try text(value, path, "base64 bytes")
            guard let bytes = Base64.decode(encoded) else { throw ProtoError("\(path): \"\(encoded.prefix(40))\" is not base64") }
            writer.lengthDelimited(field.number, bytes)
        case .double, .fixed64, .sfixed64:
            writer.tag(field.number, .fixed64)
            try scalar(field, value, path: path, into: &writer)
        case .float, .fixed32, .sfixed32:
            writer.tag(field.number, .fixed32)
            try scalar(field, value, path: path, into: &writer)
        default:
            writer.tag(field.number, .varint)
            try scalar(field, value, path: path, into: &writer)
        }
    }

    /// A number-like value's bytes, without a tag (packed repeated fields reuse this).
    private func scalar(_ field: FieldType, _ value: JSONValue, path: String, into writer: inout ProtoWriter) throws(ProtoError) {
        switch field.kind {
        case .int32, .sfixed32, .sint32:
            let number = try integer(value, path, min: Int64(Int32.min), max: Int64(Int32.max))
            switch field.kind {
            case .int32: writer.varint(UInt64(bitPattern: number))
            case .sint32: writer.varint(number.zigZag)
            default: writer.fixed32(UInt32(bitPattern: Int32(number)))
            }
        case .int64, .sfixed64, .sint64:
            let number = try integer(value, path, min: Int64.min, max: Int64.max)
            switch field.kind {
            case .int64: writer.varint(UInt64(bitPattern: number))
            case .sint64: writer.varint(number.zigZag)
            default: writer.fixed64(UInt64(bitPattern: number))
            }
        case .uint32, .fixed32:
            let number = try unsigned(value, path, max: UInt64(UInt32.max))
            if field.kind == .uint32 { writer.varint(number) } else { writer.fixed32(UInt32(number)) }
        case .uint64, .fixed64:
            let number = try unsigned(value, path, max: UInt64.max)
            if field.kind == .uint64 { writer.varint(number) } else { writer.fixed64(number) }
        case .double:
            writer.fixed64(try floating(value, path).bitPattern)
        case .float:
            let number = try floating(value, path)
            guard !number.isFinite || abs(number) <= Double(Float.greatestFiniteMagnitude) else {
                throw ProtoError("\(path): \(number) is out of range for a float")
            }
            writer.fixed32(Float(number).bitPattern)
        case .bool:
            switch value {
            case .bool(let flag): writer.varint(flag ? 1 : 0)
            case .text("true"): writer.varint(1)
            case .text("false"): writer.varint(0)
            default: throw ProtoError("\(path): expected true or false, got \(value.kindName)")
            }
        case .enum:
            let type = pool.enums[field.typeIndex]
            switch value {
            case .null: writer.varint(0)
            case .string(let name), .text(let name):
                if let number = type.numberByName[name] {
                    writer.varint(UInt64(bitPattern: Int64(number)))
                } else if let number = Int32(name) {
                    writer.varint(UInt64(bitPattern: Int64(number)))
                } else {
                    throw ProtoError("\(path): \"\(name.prefix(40))\" is not a value of \(type.fullName)")
                }
            case .number:
                writer.varint(UInt64(bitPattern: try integer(value, path, min: Int64(Int32.min), max: Int64(Int32.max))))
            default: throw ProtoError("\(path): expected an enum name or number, got \(value.kindName)")
            }
        default:
            throw ProtoError("\(path): \(field.kind) is not a packable type")
        }
    }

    private func text(_ value: JSONValue, _ path: String, _ what: String) throws(ProtoError) -> String {
        switch value {
        case .string(let text), .text(let text): return text
        default: throw ProtoError("\(path): expected \(what), got \(value.kindName)")
        }
    }

    /// A number or a string of one; fractions only when integral ("1.0", "1e3").
    private func integer(_ value: JSONValue, _ path: String, min: Int64, max: Int64) throws(ProtoError) -> Int64 {
        let text: String
        switch value {
        case .number(let raw), .string(let raw), .text(let raw): text = raw
        default: throw ProtoError("\(path): expected an integer, got \(value.kindName)")
        }
        if let exact = Int64(text) {
            guard exact >= min && exact <= max else { throw ProtoError("\(path): \(text) is out of range (\(min)...\(max))") }
            return exact
        }
        guard Self.isJSONNumber(text), let double = Double(text), double.rounded() == double else {
            throw ProtoError("\(path): \"\(text.prefix(40))\" is not an integer")
        }
        guard double >= Double(min) && double < -Double(Int64.min) && double <= Double(max) else {
            throw ProtoError("\(path): \(text) is out of range (\(min)...\(max))")
        }
        return Int64(double)
    }

    private func unsigned(_ value: JSONValue, _ path: String, max: UInt64) throws(ProtoError) -> UInt64 {
        let text: String
        switch value {
        case .number(let raw), .string(let raw), .text(let raw): text = raw
        default: throw ProtoError("\(path): expected an unsigned integer, got \(value.kindName)")
        }
        if let exact = UInt64(text) {
            guard exact <= max else { throw ProtoError("\(path): \(text) is out of range (0...\(max))") }
            return exact
        }
        guard Self.isJSONNumber(text), let double = Double(text), double.rounded() == double else {
            throw ProtoError("\(path): \"\(text.prefix(40))\" is not an unsigned integer")
        }
        guard double >= 0 && double < 18_446_744_073_709_551_616.0 && double <= Double(max) else {
            throw ProtoError("\(path): \(text) is out of range (0...\(max))")
        }
        return UInt64(double)
    }

    private func floating(_ value: JSONValue, _ path: String) throws(ProtoError) -> Double {
        switch value {
        case .number(let raw):
            if let number = Double(raw), number.isFinite { return number }
            throw ProtoError("\(path): \(raw) is out of range for a double")
        case .string(let raw), .text(let raw):
            switch raw {
            case "NaN": return .nan
            case "Infinity": return .infinity
            case "-Infinity": return -.infinity
            default:
                guard Self.isJSONNumber(raw), let number = Double(raw), number.isFinite else {
                    throw ProtoError("\(path): \"\(raw.prefix(40))\" is not a number")
                }
                return number
            }
        default: throw ProtoError("\(path): expected a number, got \(value.kindName)")
        }
    }

    /// Swift's Double("0x1p3") and Double("nan") accept what JSON does not.
    static func isJSONNumber(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D || $0 == 0x2B || $0 == 0x2E || $0 == 0x65 || $0 == 0x45 }
    }

    // MARK: Well-known types

    private func encodeWellKnown(_ kind: WellKnownType, _ value: JSONValue, type: Int, path: String) throws(ProtoError) -> [UInt8] {
        var writer = ProtoWriter()
        let where_ = path.isEmpty ? "the body" : path
        switch kind {
        case .timestamp:
            if case .null = value { return [] }
            let (seconds, nanos) = try WellKnownTime.parseTimestamp(try text(value, where_, "an RFC 3339 timestamp"), path: where_)
            writeTime(seconds, nanos, into: &writer)
        case .duration:
            if case .null = value { return [] }
            let (seconds, nanos) = try WellKnownTime.parseDuration(try text(value, where_, "a duration like \"1.5s\""), path: where_)
            writeTime(seconds, nanos, into: &writer)
        case .fieldMask:
            if case .null = value { return [] }
            let joined = try text(value, where_, "a field mask string")
            for path in joined.split(separator: ",") {
                // JSON carries lowerCamelCase; an underscore would not survive the round trip.
                guard !path.contains("_") else { throw ProtoError("\(where_): field mask path \"\(path.prefix(40))\" must be lowerCamelCase") }
                writer.string(1, Self.snakeCase(path))
            }
        case .wrapper:
            if case .null = value { return [] }
            let field = pool.messages[type].fields[0]
            try encodeSingle(field, value, path: path, into: &writer)
        case .struct:
            if case .null = value { return [] }
            guard case .object(let members) = value else { throw ProtoError("\(where_): expected an object, got \(value.kindName)") }
            let valueType = try self.type("google.protobuf.Value")
            for (key, member) in members {
                var entry = ProtoWriter()
                entry.string(1, key)
                entry.lengthDelimited(2, try encode(member, type: valueType, path: path.isEmpty ? key : path + "." + key))
                writer.lengthDelimited(1, entry.bytes)
            }
        case .listValue:
            if case .null = value { return [] }
            guard case .array(let items) = value else { throw ProtoError("\(where_): expected an array, got \(value.kindName)") }
            let valueType = try self.type("google.protobuf.Value")
            for (index, item) in items.enumerated() {
                writer.lengthDelimited(1, try encode(item, type: valueType, path: "\(path)[\(index)]"))
            }
        case .value:
            switch value {
            case .null:
                writer.tag(1, .varint)
                writer.varint(0)
            case .number:
                writer.tag(2, .fixed64)
                writer.fixed64(try floating(value, where_).bitPattern)
            case .string(let text), .text(let text): writer.string(3, text)
            case .bool(let flag):
                writer.tag(4, .varint)
                writer.varint(flag ? 1 : 0)
            case .object: writer.lengthDelimited(5, try encode(value, type: try self.type("google.protobuf.Struct"), path: path))
            case .array: writer.lengthDelimited(6, try encode(value, type: try self.type("google.protobuf.ListValue"), path: path))
            }
        case .any:
            if case .null = value { return [] }
            guard case .object(let members) = value else { throw ProtoError("\(where_): expected an object with \"@type\", got \(value.kindName)") }
            if members.isEmpty { return [] }
            guard let url = members.first(where: { $0.0 == "@type" }), case .string(let typeURL) = url.1 else {
                throw ProtoError("\(where_): an Any needs \"@type\"")
            }
            let name = typeURL.split(separator: "/").last.map(String.init) ?? typeURL
            guard let inner = pool.message(named: name) else { throw ProtoError("\(where_).@type: \(name) is not in the descriptor set") }
            let rest = members.filter { $0.0 != "@type" }
            let payload: JSONValue
            if pool.messages[inner].wellKnown != nil && pool.messages[inner].wellKnown != .empty {
                payload = rest.first(where: { $0.0 == "value" })?.1 ?? .null
            } else {
                payload = .object(rest)
            }
            writer.string(1, typeURL)
            writer.lengthDelimited(2, try encode(payload, type: inner, path: path))
        case .empty:
            break
        }
        return writer.bytes
    }

    private func writeTime(_ seconds: Int64, _ nanos: Int32, into writer: inout ProtoWriter) {
        if seconds != 0 {
            writer.tag(1, .varint)
            writer.varint(UInt64(bitPattern: seconds))
        }
        if nanos != 0 {
            writer.tag(2, .varint)
            writer.varint(UInt64(bitPattern: Int64(nanos)))
        }
    }

    private func type(_ name: String) throws(ProtoError) -> Int {
        guard let index = pool.message(named: name) else { throw ProtoError("\(name) is not in the descriptor set") }
        return index
    }

    /// FieldMask paths travel in lowerCamelCase in JSON, snake_case on the wire.
    static func snakeCase(_ path: Substring) -> String {
        var out = ""
        for character in path {
            if character.isUppercase {
                out.append("_")
                out.append(Character(character.lowercased()))
            } else {
                out.append(character)
            }
        }
        return out
    }
}
