import CausewayHTTP
import NIOCore

/// protobuf → JSON by a message type from the pool, per the proto3 JSON mapping, written
/// straight into the response buffer. Wire semantics hold: the last of a repeated singular
/// scalar wins, a message's pieces merge, packed and unpacked repeated fields both read, and
/// only the last member of a oneof counts.
public struct JSONPrinter: Sendable {
    public struct Options: Sendable {
        /// Field names as in the .proto instead of lowerCamelCase.
        public var useProtoNames = false
        /// Fields without presence printed even at their defaults (0, "", [], {}).
        public var alwaysPrintPrimitiveFields = false
        public init(useProtoNames: Bool = false, alwaysPrintPrimitiveFields: Bool = false) {
            self.useProtoNames = useProtoNames
            self.alwaysPrintPrimitiveFields = alwaysPrintPrimitiveFields
        }
    }

    let pool: DescriptorPool
    let options: Options

    enum Raw {
        case varint(UInt64)
        case fixed32(UInt32)
        case fixed64(UInt64)
        case bytes(Range<Int>)
    }

    /// The message's values by field position; oneof members other than the last seen dropped.
    private func decode(_ bytes: [UInt8], _ range: Range<Int>, type: Int) throws(ProtoError) -> [[Raw]] {
        let message = pool.messages[type]
        var values = [[Raw]](repeating: [], count: message.fields.count)
        var lastOneof = [Int](repeating: -1, count: message.oneofCount)
        var reader = ProtoReader(bytes, range: range)
        while !reader.isAtEnd {
            let (number, wire) = try reader.tag()
            guard let position = message.byNumber[number], message.fields[position].kind != .group else {
                try reader.skip(wire)
                continue
            }
            let field = message.fields[position]
            if field.isPackable && wire == .lengthDelimited {
                var packed = ProtoReader(bytes, range: try reader.lengthDelimited())
                while !packed.isAtEnd { values[position].append(try read(field, expected: Self.wire(field.kind), &packed)) }
                continue
            }
            guard wire == Self.wire(field.kind) else {
                throw ProtoError("field \(field.name) of \(message.fullName) arrived with wire type \(wire.rawValue)")
            }
            values[position].append(try read(field, expected: wire, &reader))
            if let oneof = field.oneofIndex, oneof < lastOneof.count {
                let previous = lastOneof[oneof]
                if previous >= 0 && previous != position { values[previous] = [] }
                lastOneof[oneof] = position
            }
        }
        return values
    }

    private func read(_ field: FieldType, expected: WireType, _ reader: inout ProtoReader) throws(ProtoError) -> Raw {
        switch expected {
        case .varint: .varint(try reader.varint())
        case .fixed32: .fixed32(try reader.fixed32())
        case .fixed64: .fixed64(try reader.fixed64())
        default: .bytes(try reader.lengthDelimited())
        }
    }

    static func wire(_ kind: FieldType.Kind) -> WireType {
        switch kind {
        case .double, .fixed64, .sfixed64: .fixed64
        case .float, .fixed32, .sfixed32: .fixed32
        case .string, .bytes, .message: .lengthDelimited
        case .group: .startGroup
        default: .varint
        }
    }

    /// Prints a whole message.
    public func print(_ bytes: [UInt8], type: Int, into out: inout ByteBuffer) throws(ProtoError) {
        try message(bytes, 0..<bytes.count, type: type, into: &out, depth: 0)
    }

    /// Prints one field of the message (a rule's `response_body`).
    public func print(_ bytes: [UInt8], type: Int, field name: String, into out: inout ByteBuffer) throws(ProtoError) {
        let message = pool.messages[type]
        guard let position = message.byName[name] else { throw ProtoError("response_body \(name) is not a field of \(message.fullName)") }
        let values = try decode(bytes, 0..<bytes.count, type: type)
        try fieldValue(message.fields[position], values[position], bytes, into: &out, depth: 1)
    }

    private func message(_ bytes: [UInt8], _ range: Range<Int>, type: Int, into out: inout ByteBuffer, depth: Int) throws(ProtoError) {
        guard depth < 100 else { throw ProtoError("messages nested deeper than 100") }
        let message = pool.messages[type]
        if let wellKnown = message.wellKnown, wellKnown != .empty {
            return try printWellKnown(wellKnown, bytes, range, type: type, into: &out, depth: depth)
        }
        let values = try decode(bytes, range, type: type)
        out.writeInteger(UInt8(ascii: "{"))
        var first = true
        for position in message.printOrder {
            let field = message.fields[position]
            let present = !values[position].isEmpty
            if !present {
                guard options.alwaysPrintPrimitiveFields, !field.hasPresence else { continue }
            } else if !field.hasPresence && !field.repeated && isDefault(field, values[position].last!) && !options.alwaysPrintPrimitiveFields {
                continue
            }
            if !first { out.writeInteger(UInt8(ascii: ",")) }
            first = false
            JSONText.writeString(options.useProtoNames ? field.name : field.jsonName, to: &out)
            out.writeInteger(UInt8(ascii: ":"))
            try fieldValue(field, values[position], bytes, into: &out, depth: depth + 1)
        }
        out.writeInteger(UInt8(ascii: "}"))
    }

    private func fieldValue(_ field: FieldType, _ values: [Raw], _ bytes: [UInt8], into out: inout ByteBuffer, depth: Int) throws(ProtoError) {
        if field.isMap {
            try map(field, values, bytes, into: &out, depth: depth)
        } else if field.repeated {
            out.writeInteger(UInt8(ascii: "["))
            for (index, value) in values.enumerated() {
                if index > 0 { out.writeInteger(UInt8(ascii: ",")) }
                try single(field, value, bytes, into: &out, depth: depth)
            }
            out.writeInteger(UInt8(ascii: "]"))
        } else if field.kind == .message, values.count > 1 {
            // A message sent in pieces is their merge, which is what their concatenation decodes to.
            var merged: [UInt8] = []
            for case .bytes(let range) in values { merged += bytes[range] }
            try message(merged, 0..<merged.count, type: field.typeIndex, into: &out, depth: depth)
        } else if let last = values.last {
            try single(field, last, bytes, into: &out, depth: depth)
        } else {
            try defaultValue(field, into: &out, depth: depth)
        }
    }

    private func map(_ field: FieldType, _ values: [Raw], _ bytes: [UInt8], into out: inout ByteBuffer, depth: Int) throws(ProtoError) {
        let entryType = field.typeIndex
        let entry = pool.messages[entryType]
        guard let keyPosition = entry.byNumber[1], let valuePosition = entry.byNumber[2] else { throw ProtoError("malformed map entry") }
        // Later entries for a key replace earlier ones, keeping the first one's place.
        var keys: [String] = []
        var printed: [String: ByteBuffer] = [:]
        for case .bytes(let range) in values {
            let decoded = try decode(bytes, range, type: entryType)
            var key = ByteBuffer()
            try fieldValue(entry.fields[keyPosition], decoded[keyPosition], bytes, into: &key, depth: depth)
            var keyText = key.readString(length: key.readableBytes) ?? ""
            if !keyText.hasPrefix("\"") { keyText = "\"" + keyText + "\"" }
            var value = ByteBuffer()
            try fieldValue(entry.fields[valuePosition], decoded[valuePosition], bytes, into: &value, depth: depth + 1)
            if printed[keyText] == nil { keys.append(keyText) }
            printed[keyText] = value
        }
        out.writeInteger(UInt8(ascii: "{"))
        for (index, key) in keys.enumerated() {
            if index > 0 { out.writeInteger(UInt8(ascii: ",")) }
            out.writeString(key)
            out.writeInteger(UInt8(ascii: ":"))
            var value = printed[key]!
            out.writeBuffer(&value)
        }
        out.writeInteger(UInt8(ascii: "}"))
    }

    private func single(_ field: FieldType, _ raw: Raw, _ bytes: [UInt8], into out: inout ByteBuffer, depth: Int) throws(ProtoError) {
        switch (field.kind, raw) {
        case (.int32, .varint(let v)): out.writeString(String(Int32(truncatingIfNeeded: v)))
        case (.sint32, .varint(let v)): out.writeString(String(Int32(truncatingIfNeeded: v.unZigZag)))
        case (.uint32, .varint(let v)): out.writeString(String(UInt32(truncatingIfNeeded: v)))
        case (.int64, .varint(let v)): quoted(String(Int64(bitPattern: v)), &out)
        case (.sint64, .varint(let v)): quoted(String(v.unZigZag), &out)
        case (.uint64, .varint(let v)): quoted(String(v), &out)
        case (.bool, .varint(let v)): out.writeString(v != 0 ? "true" : "false")
        case (.enum, .varint(let v)):
            let number = Int32(truncatingIfNeeded: v)
            let type = pool.enums[field.typeIndex]
            if type.fullName == "google.protobuf.NullValue" {
                out.writeString("null")
            } else if let name = type.nameByNumber[number] {
                JSONText.writeString(name, to: &out)
            } else {
                out.writeString(String(number))
            }
        case (.fixed32, .fixed32(let v)): out.writeString(String(v))
        case (.sfixed32, .fixed32(let v)): out.writeString(String(Int32(bitPattern: v)))
        case (.float, .fixed32(let v)): floating(Double(Float(bitPattern: v)), Float(bitPattern: v).description, &out)
        case (.fixed64, .fixed64(let v)): quoted(String(v), &out)
        case (.sfixed64, .fixed64(let v)): quoted(String(Int64(bitPattern: v)), &out)
        case (.double, .fixed64(let v)): floating(Double(bitPattern: v), Double(bitPattern: v).description, &out)
        case (.string, .bytes(let range)): JSONText.writeString(String(decoding: bytes[range], as: UTF8.self), to: &out)
        case (.bytes, .bytes(let range)):
            out.writeInteger(UInt8(ascii: "\""))
            Base64.encode(bytes[range], to: &out)
            out.writeInteger(UInt8(ascii: "\""))
        case (.message, .bytes(let range)): try message(bytes, range, type: field.typeIndex, into: &out, depth: depth)
        default: throw ProtoError("field \(field.name) has a value of the wrong wire type")
        }
    }

    private func quoted(_ text: String, _ out: inout ByteBuffer) {
        out.writeInteger(UInt8(ascii: "\""))
        out.writeString(text)
        out.writeInteger(UInt8(ascii: "\""))
    }

    private func floating(_ value: Double, _ text: String, _ out: inout ByteBuffer) {
        if value.isNaN {
            out.writeString("\"NaN\"")
        } else if value.isInfinite {
            out.writeString(value > 0 ? "\"Infinity\"" : "\"-Infinity\"")
        } else {
            out.writeString(text)
        }
    }

    private func isDefault(_ field: FieldType, _ raw: Raw) -> Bool {
        switch raw {
        case .varint(let v): v == 0
        case .fixed32(let v): v == 0  // -0.0 is not the default (bitwise, as protobuf compares)
        case .fixed64(let v): v == 0
        case .bytes(let range): range.isEmpty && field.kind != .message
        }
    }

    /// An absent field at its default (always_print_primitive_fields, response_body).
    private func defaultValue(_ field: FieldType, into out: inout ByteBuffer, depth: Int) throws(ProtoError) {
        switch field.kind {
        case .message, .group: try message([], 0..<0, type: field.typeIndex, into: &out, depth: depth)
        case .enum:
            let type = pool.enums[field.typeIndex]
            try single(field, .varint(UInt64(bitPattern: Int64(type.nameByNumber[0] != nil ? 0 : type.firstNumber))), [], into: &out, depth: depth)
        case .string, .bytes: out.writeString("\"\"")
        case .double, .float: out.writeString("0")
        case .bool: out.writeString("false")
        case .int64, .uint64, .sint64, .fixed64, .sfixed64: out.writeString("\"0\"")
        default: out.writeString("0")
        }
    }

    // MARK: Well-known types

    private func printWellKnown(_ kind: WellKnownType, _ bytes: [UInt8], _ range: Range<Int>, type: Int, into out: inout ByteBuffer,
                                depth: Int) throws(ProtoError) {
        let values = try decode(bytes, range, type: type)
        let fields = pool.messages[type].fields
        func int(_ number: Int) -> Int64 {
            guard let position = pool.messages[type].byNumber[number], case .varint(let v)? = values[position].last else { return 0 }
            return Int64(bitPattern: v)
        }
        switch kind {
        case .timestamp:
            JSONText.writeString(try WellKnownTime.formatTimestamp(seconds: int(1), nanos: Int32(truncatingIfNeeded: int(2))), to: &out)
        case .duration:
            JSONText.writeString(try WellKnownTime.formatDuration(seconds: int(1), nanos: Int32(truncatingIfNeeded: int(2))), to: &out)
        case .fieldMask:
            var paths: [String] = []
            for case .bytes(let r) in values[0] { paths.append(lowerCamelCase(String(decoding: bytes[r], as: UTF8.self))) }
            JSONText.writeString(paths.joined(separator: ","), to: &out)
        case .wrapper:
            try fieldValue(fields[0], values[0], bytes, into: &out, depth: depth)
        case .struct:
            try map(fields[0], values[0], bytes, into: &out, depth: depth)
        case .listValue:
            try fieldValue(fields[0], values[0], bytes, into: &out, depth: depth)
        case .value:
            // The oneof left one member at most: print it; none is null.
            guard let position = values.firstIndex(where: { !$0.isEmpty }) else {
                out.writeString("null")
                return
            }
            if fields[position].kind == .double, case .fixed64(let v)? = values[position].last, !Double(bitPattern: v).isFinite {
                throw ProtoError("a google.protobuf.Value number cannot be NaN or infinite in JSON")
            }
            try fieldValue(fields[position], values[position], bytes, into: &out, depth: depth)
        case .any:
            var url = ""
            if case .bytes(let r)? = values[0].last { url = String(decoding: bytes[r], as: UTF8.self) }
            if url.isEmpty {
                out.writeString("{}")
                return
            }
            let name = url.split(separator: "/").last.map(String.init) ?? url
            guard let inner = pool.message(named: name) else { throw ProtoError("Any of type \(name), which is not in the descriptor set") }
            var payload: [UInt8] = []
            for case .bytes(let r) in values[1] { payload += bytes[r] }
            var printed = ByteBuffer()
            try message(payload, 0..<payload.count, type: inner, into: &printed, depth: depth + 1)
            out.writeString("{\"@type\":")
            JSONText.writeString(url, to: &out)
            if pool.messages[inner].wellKnown != nil && pool.messages[inner].wellKnown != .empty {
                out.writeString(",\"value\":")
                out.writeBuffer(&printed)
            } else if printed.readableBytes > 2 {
                out.writeInteger(UInt8(ascii: ","))
                printed.moveReaderIndex(forwardBy: 1)
                out.writeBuffer(&printed)
                return
            }
            out.writeInteger(UInt8(ascii: "}"))
        case .empty:
            out.writeString("{}")
        }
    }
}
