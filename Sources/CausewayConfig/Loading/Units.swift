/// Parsers for the contract's scalar units: durations ("250ms", "5s", "10m", "1h"), sizes
/// ("512", "64KiB", "10MiB", "1GiB") and addresses ("host:port", "[::1]:8080").
public enum Units {
    public static func duration(_ text: String) -> Duration? {
        if text == "0" { return .zero }
        let suffixes: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
        for (suffix, millis) in suffixes where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count)
            // "5m" must not be read as "5" + "m" of "ms": ms is tried first and requires the digits.
            guard !number.isEmpty, number.allSatisfy(\.isASCIIDigitCharacter), let value = Int64(number),
                value <= Int64.max / 3_600_000
            else { continue }
            return .milliseconds(value * millis)
        }
        return nil
    }

    public static func size(_ text: String) -> Int? {
        let suffixes: [(String, Int)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("B", 1), ("", 1)]
        for (suffix, unit) in suffixes where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count)
            guard !number.isEmpty, number.allSatisfy(\.isASCIIDigitCharacter), let value = Int(number),
                value <= Int.max / unit
            else { continue }
            return value * unit
        }
        return nil
    }

    /// Splits "host:port"; IPv6 hosts are bracketed. Port 0 asks the OS for a free port.
    public static func address(_ text: String) -> HostPort? {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[close...].hasPrefix("]:") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            if host.contains(":") { return nil }
        }
        guard !host.isEmpty, !portText.isEmpty, portText.allSatisfy(\.isASCIIDigitCharacter),
            let port = Int(portText), port <= 65535
        else { return nil }
        return HostPort(host: String(host), port: port)
    }
}

public struct HostPort: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

extension Character {
    var isASCIIDigitCharacter: Bool { isASCII && isWholeNumber }
}
