// The run's bookkeeping that must be cheap per parent: batch keys and their slots, and
// resolved `@rest` values by parent.

/// A value batched parents and items are matched by, as `$batch` renders it: integers (JSON
/// numbers, or strings of digits, as IDs often are) compared as integers, anything else by
/// its template text.
enum BatchKey {
    case integer(Int)
    case text(String)

    init?(_ json: JSONTape.View, _ entry: Int) {
        let raw = json.raw(entry)
        switch json.kind(entry) {
        case .number where json.flag(entry):
            if let integer = Self.integer(raw) { self = .integer(integer); return }
        case .string where !json.flag(entry):
            if let integer = Self.integer(raw) { self = .integer(integer); return }
        default:
            break
        }
        guard let text = json.templateText(entry) else { return nil }
        self = .text(text)
    }

    var text: String {
        switch self {
        case .integer(let integer): String(integer)
        case .text(let text): text
        }
    }

    /// An optional minus and digits without a leading zero (so the text round-trips), up to
    /// 18 of them; not "-0".
    private static func integer(_ raw: UnsafeBufferPointer<UInt8>) -> Int? {
        var digits = raw[...]
        let negative = digits.first == UInt8(ascii: "-")
        if negative { digits = digits.dropFirst() }
        guard !digits.isEmpty, digits.count <= 18, digits.first != UInt8(ascii: "0") || digits.count == 1 else { return nil }
        var value = 0
        for byte in digits {
            let digit = byte &- UInt8(ascii: "0")
            guard digit < 10 else { return nil }
            value = value * 10 + Int(digit)
        }
        guard !(negative && value == 0) else { return nil }
        return negative ? -value : value
    }
}

/// A batch's distinct keys, numbered in order of appearance. Integer keys live in a small
/// open-addressing table (a batch matches every item of an answer: SipHash per key was a
/// measurable part of a request); text keys in a dictionary.
struct BatchSlots {
    private var keys: [Int]
    private var slots: [Int32]
    private let shift: Int
    private var texts: [String: Int] = [:]
    private(set) var count = 0

    init(expected: Int) {
        var capacity = 16
        while capacity < expected * 2 { capacity *= 2 }
        keys = [Int](repeating: 0, count: capacity)
        slots = [Int32](repeating: -1, count: capacity)
        shift = 64 - capacity.trailingZeroBitCount
    }

    /// The key's slot, numbering it `count` if it is new.
    mutating func slot(for key: BatchKey) -> Int {
        switch key {
        case .text(let text):
            if let known = texts[text] { return known }
            texts[text] = count
        case .integer(let integer):
            let (index, found) = find(integer)
            if let found { return found }
            // Never fuller than half: `expected` bounds the keys.
            keys[index] = integer
            slots[index] = Int32(count)
        }
        count += 1
        return count - 1
    }

    func existing(_ key: BatchKey) -> Int? {
        switch key {
        case .text(let text): texts[text]
        case .integer(let integer): find(integer).slot
        }
    }

    /// Where `key` is (its slot), or the free place where it would go.
    private func find(_ key: Int) -> (index: Int, slot: Int?) {
        var index = Int(truncatingIfNeeded: UInt(bitPattern: key &* -7_046_029_254_386_353_131) >> UInt(shift))
        while slots[index] >= 0 {
            if keys[index] == key { return (index, Int(slots[index])) }
            index = (index + 1) & (keys.count - 1)
        }
        return (index, nil)
    }
}

/// `@rest` values by (parent object's entry, field id), chained per entry: the writer looks
/// one up for every parent, and this costs no hashing.
struct Resolutions {
    /// By entry + 1 (the root is entry -1): 1 + the index of the entry's latest record, or 0.
    private var heads: [Int32] = []
    private var fields: [Int32] = []
    private var links: [Int32] = []
    private var values: [OperationRun.Resolution] = []

    mutating func set(_ value: OperationRun.Resolution, parent: Int, field: Int) {
        let slot = parent + 1
        if slot >= heads.count { heads.append(contentsOf: repeatElement(0, count: slot - heads.count + 1024)) }
        fields.append(Int32(field))
        links.append(heads[slot])
        values.append(value)
        heads[slot] = Int32(values.count)
    }

    func get(parent: Int, field: Int) -> OperationRun.Resolution? {
        let slot = parent + 1
        guard slot < heads.count else { return nil }
        var record = Int(heads[slot])
        while record > 0 {
            if fields[record - 1] == Int32(field) { return values[record - 1] }
            record = Int(links[record - 1])
        }
        return nil
    }
}
