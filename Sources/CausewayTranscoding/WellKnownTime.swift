/// Timestamp and Duration in their JSON forms: RFC 3339 in UTC ("1972-01-01T10:00:20.021Z")
/// and seconds with an "s" ("-1.5s"), fractions in 0, 3, 6 or 9 digits as protobuf prints them.
enum WellKnownTime {
    /// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the Timestamp's range.
    static let minSeconds: Int64 = -62_135_596_800
    static let maxSeconds: Int64 = 253_402_300_799
    /// ±10,000 years, the Duration's range.
    static let maxDurationSeconds: Int64 = 315_576_000_000

    static func parseTimestamp(_ text: String, path: String) throws(ProtoError) -> (Int64, Int32) {
        let bytes = Array(text.utf8)
        func fail() -> ProtoError { ProtoError("\(path): \"\(text.prefix(40))\" is not an RFC 3339 timestamp") }
        func digits(_ start: Int, _ count: Int) throws(ProtoError) -> Int64 {
            guard start + count <= bytes.count else { throw fail() }
            var value: Int64 = 0
            for byte in bytes[start..<(start + count)] {
                guard byte >= 0x30 && byte <= 0x39 else { throw fail() }
                value = value * 10 + Int64(byte - 0x30)
            }
            return value
        }
        guard bytes.count >= 20, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"),
            bytes[10] == UInt8(ascii: "T") || bytes[10] == UInt8(ascii: "t"), bytes[13] == UInt8(ascii: ":"),
            bytes[16] == UInt8(ascii: ":")
        else { throw fail() }
        let year = try digits(0, 4), month = try digits(5, 2), day = try digits(8, 2)
        let hour = try digits(11, 2), minute = try digits(14, 2), second = try digits(17, 2)
        guard (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year), hour < 24, minute < 60, second < 60 else {
            throw fail()
        }
        var index = 19
        var nanos: Int64 = 0
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            let start = index
            while index < bytes.count, bytes[index] >= 0x30 && bytes[index] <= 0x39 { index += 1 }
            let count = index - start
            guard count >= 1 && count <= 9 else { throw fail() }
            nanos = try digits(start, count)
            for _ in count..<9 { nanos *= 10 }
        }
        guard index < bytes.count else { throw fail() }
        var offset: Int64 = 0
        switch bytes[index] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            index += 1
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard index + 6 == bytes.count, bytes[index + 3] == UInt8(ascii: ":") else { throw fail() }
            let hours = try digits(index + 1, 2), minutes = try digits(index + 4, 2)
            guard hours < 24, minutes < 60 else { throw fail() }
            offset = (hours * 60 + minutes) * 60 * (bytes[index] == UInt8(ascii: "+") ? 1 : -1)
            index += 6
        default: throw fail()
        }
        guard index == bytes.count else { throw fail() }
        let seconds = daysFromCivil(year: year, month: month, day: day) * 86_400 + hour * 3600 + minute * 60 + second - offset
        guard seconds >= minSeconds && seconds <= maxSeconds else {
            throw ProtoError("\(path): \"\(text.prefix(40))\" is outside 0001-01-01 to 9999-12-31")
        }
        return (seconds, Int32(nanos))
    }

    static func formatTimestamp(seconds: Int64, nanos: Int32) throws(ProtoError) -> String {
        guard seconds >= minSeconds && seconds <= maxSeconds, nanos >= 0 && nanos < 1_000_000_000 else {
            throw ProtoError("a Timestamp of \(seconds)s \(nanos)ns is out of range")
        }
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let inDay = seconds - days * 86_400
        let (year, month, day) = civilFromDays(days)
        return pad(year, 4) + "-" + pad(month, 2) + "-" + pad(day, 2) + "T" + pad(inDay / 3600, 2) + ":"
            + pad(inDay / 60 % 60, 2) + ":" + pad(inDay % 60, 2) + fraction(nanos) + "Z"
    }

    static func parseDuration(_ text: String, path: String) throws(ProtoError) -> (Int64, Int32) {
        func fail() -> ProtoError { ProtoError("\(path): \"\(text.prefix(40))\" is not a duration like \"1.5s\"") }
        guard text.hasSuffix("s") else { throw fail() }
        var body = text.dropLast()
        let negative = body.hasPrefix("-")
        if negative { body = body.dropFirst() }
        let parts = body.split(separator: ".", omittingEmptySubsequences: false)
        let digits: (Substring) -> Bool = { $0.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } }
        guard parts.count <= 2, let whole = parts.first, !whole.isEmpty, whole.count <= 12, digits(whole),
            let seconds = Int64(whole), seconds >= 0
        else { throw fail() }
        var nanos: Int64 = 0
        if parts.count == 2 {
            let fraction = parts[1]
            guard fraction.count >= 1 && fraction.count <= 9, digits(fraction), let value = Int64(fraction) else {
                throw fail()
            }
            nanos = value
            for _ in fraction.count..<9 { nanos *= 10 }
        }
        guard seconds <= maxDurationSeconds else { throw ProtoError("\(path): \"\(text.prefix(40))\" is out of range (±10,000 years)") }
        return negative ? (-seconds, Int32(-nanos)) : (seconds, Int32(nanos))
    }

    static func formatDuration(seconds: Int64, nanos: Int32) throws(ProtoError) -> String {
        guard abs(seconds) <= maxDurationSeconds, abs(nanos) < 1_000_000_000, (seconds <= 0 && nanos <= 0) || (seconds >= 0 && nanos >= 0) else {
            throw ProtoError("a Duration of \(seconds)s \(nanos)ns is out of range")
        }
        let sign = seconds < 0 || nanos < 0 ? "-" : ""
        return sign + String(abs(seconds)) + fraction(abs(nanos)) + "s"
    }

    /// ".021", ".000021", ".000000021" or nothing.
    private static func fraction(_ nanos: Int32) -> String {
        if nanos == 0 { return "" }
        if nanos % 1_000_000 == 0 { return "." + pad(Int64(nanos / 1_000_000), 3) }
        if nanos % 1_000 == 0 { return "." + pad(Int64(nanos / 1_000), 6) }
        return "." + pad(Int64(nanos), 9)
    }

    private static func pad(_ value: Int64, _ width: Int) -> String {
        let text = String(value)
        return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
    }

    private static func daysIn(month: Int64, year: Int64) -> Int64 {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    static func civilFromDays(_ days: Int64) -> (Int64, Int64, Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}
