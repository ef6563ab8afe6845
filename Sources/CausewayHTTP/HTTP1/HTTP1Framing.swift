import HTTPTypes
import NIOHTTP1

/// Request framing checks that close the doors request smuggling uses (RFC 9112 §6.3, §11.2):
/// a message with both Content-Length and Transfer-Encoding, differing Content-Lengths, a
/// transfer coding other than chunked, a missing or repeated Host, or a `Connection` header that
/// names a framing field (`Connection: content-length` would make hop-by-hop stripping drop the
/// body's framing) is answered, never forwarded, as nginx and HAProxy do. (obs-fold line folding
/// is already refused by the parser.) Work: one pass over the fields, linear in the head's bytes,
/// which `max_header_size` bounds.
public enum HTTP1Framing {
    public struct Verdict {
        public var error: GatewayError?
        /// nil = chunked; 0 = no body.
        public var bodyLength: Int?
    }

    public static func check(_ head: HTTPRequestHead) -> Verdict {
        var contentLength: Int?
        var contentLengthCount = 0
        var transferEncoding: String?
        var hostCount = 0
        for (name, value) in head.headers {
            switch name.utf8.count {
            case 4 where name.caseInsensitiveEquals("host"):
                hostCount += 1
            case 14 where name.caseInsensitiveEquals("content-length"):
                contentLengthCount += 1
                // Repeated identical values (also "5, 5") are tolerated per RFC 9110 §8.6; others are not.
                for part in value.split(separator: ",", omittingEmptySubsequences: false) {
                    let trimmed = part.trimmingSpaces()
                    guard !trimmed.isEmpty, trimmed.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                        let length = Int(trimmed)
                    else {
                        return Verdict(error: .badRequest("invalid Content-Length"))
                    }
                    if let contentLength, contentLength != length {
                        return Verdict(error: .badRequest("conflicting Content-Length values"))
                    }
                    contentLength = length
                }
            case 10 where name.caseInsensitiveEquals("connection"):
                for token in value.split(separator: ",") {
                    let option = token.trimmingSpaces()
                    if option.caseInsensitiveEquals("content-length") || option.caseInsensitiveEquals("transfer-encoding") {
                        return Verdict(error: .badRequest("the Connection header names \(option.lowercased()), a framing field"))
                    }
                }
            case 17 where name.caseInsensitiveEquals("transfer-encoding"):
                if transferEncoding != nil {
                    return Verdict(error: .badRequest("repeated Transfer-Encoding"))
                }
                transferEncoding = value
            default:
                continue
            }
        }
        if head.version.major == 1 && head.version.minor >= 1 && hostCount == 0 {
            return Verdict(error: .badRequest("missing Host header"))
        }
        if hostCount > 1 {
            return Verdict(error: .badRequest("repeated Host header"))
        }
        if let transferEncoding {
            if contentLengthCount > 0 {
                return Verdict(error: .badRequest("both Content-Length and Transfer-Encoding"))
            }
            if head.version.minor == 0 || transferEncoding.trimmingSpaces().lowercased() != "chunked" {
                return Verdict(error: .unsupportedTransferCoding)
            }
            return Verdict(bodyLength: nil)
        }
        return Verdict(bodyLength: contentLength ?? 0)
    }
}

// @inlinable: called across modules on every request, these must specialize for String and
// Substring; unspecialized, each byte costs a generic witness call and metadata lookups.
extension StringProtocol {
    /// ASCII case-insensitive comparison with a lower-case literal, without allocating.
    @inlinable
    public func caseInsensitiveEquals(_ lowercase: StaticString) -> Bool {
        guard utf8.count == lowercase.utf8CodeUnitCount else { return false }
        var index = 0
        for byte in utf8 {
            let expected = lowercase.utf8Start[index]
            let folded = byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte
            if folded != expected { return false }
            index += 1
        }
        return true
    }

    /// Starts with a lower-case literal, ASCII case ignored, without allocating (media types on
    /// every request and response: `application/grpc…`, `text/event-stream…`).
    @inlinable
    public func caseInsensitiveHasPrefix(_ lowercase: StaticString) -> Bool {
        guard utf8.count >= lowercase.utf8CodeUnitCount else { return false }
        var index = 0
        for byte in utf8.prefix(lowercase.utf8CodeUnitCount) {
            let folded = byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte
            if folded != lowercase.utf8Start[index] { return false }
            index += 1
        }
        return true
    }
}

extension StringProtocol {
    func trimmingSpaces() -> Substring {
        var slice = self[...]
        while let first = slice.first, first == " " || first == "\t" { slice = slice.dropFirst() }
        while let last = slice.last, last == " " || last == "\t" { slice = slice.dropLast() }
        return Substring(slice)
    }
}

/// Hop-by-hop fields (RFC 9110 §7.6.1): they describe one connection and never cross a proxy.
public enum HopByHop {
    /// Removes hop-by-hop fields (RFC 9110 §7.6.1) and the ones `Connection` names. One pass
    /// to look; the fields are rewritten only when one is there (rarely, for requests).
    public static func strip(_ fields: inout HTTPFields) {
        var found = false
        var named: [HTTPField.Name] = []
        for field in fields where isHopByHop(field.name) {
            found = true
            if field.name == .connection { named += connectionTokens(field.value) }
        }
        guard found else { return }
        // In place, from the end, so indices stay valid (usually one field: Connection).
        var index = fields.endIndex
        while index > fields.startIndex {
            index -= 1
            let name = fields[index].name
            if isHopByHop(name) || named.contains(name) { fields.remove(at: index) }
        }
    }

    /// Drops, on arrival, the end-to-end fields a client names in `Connection` (RFC 9110
    /// §7.6.1 makes them hop-by-hop). Done before any filter runs, so `Connection` can never
    /// name away a field the gateway itself adds later (`x-consumer`, a route's request
    /// headers). Standard hop-by-hop fields stay until forwarding: the gateway still reads
    /// `Upgrade` and `TE`, and `strip` removes them with `Connection` itself.
    public static func dropConnectionNamed(_ fields: inout HTTPFields) {
        let tokens = fields[values: .connection].flatMap(connectionTokens)
        guard tokens.contains(where: { !isHopByHop($0) }) else { return }
        var index = fields.endIndex
        while index > fields.startIndex {
            index -= 1
            if !isHopByHop(fields[index].name) && tokens.contains(fields[index].name) { fields.remove(at: index) }
        }
        // What is left of Connection names only standard hop-by-hop fields, so the strip at
        // forwarding cannot reach a field added in between.
        let kept = tokens.filter(isHopByHop).map(\.canonicalName)
        fields[.connection] = kept.isEmpty ? nil : kept.joined(separator: ", ")
    }

    private static func connectionTokens(_ value: String) -> [HTTPField.Name] {
        value.split(separator: ",").compactMap { HTTPField.Name(String($0.trimmingSpaces())) }
    }

    /// By length first: most names are ruled out by one integer compare.
    public static func isHopByHop(_ name: HTTPField.Name) -> Bool {
        let canonical = name.canonicalName
        switch canonical.utf8.count {
        case 2: return canonical == "te"
        case 7: return canonical == "upgrade"
        case 10: return canonical == "connection" || canonical == "keep-alive"
        case 16: return canonical == "proxy-connection"
        case 17: return canonical == "transfer-encoding"
        case 18: return canonical == "proxy-authenticate"
        case 19: return canonical == "proxy-authorization"
        default: return false
        }
    }

    static let keepAlive = HTTPField.Name("keep-alive")!
    static let proxyConnection = HTTPField.Name("proxy-connection")!
    static let proxyAuthorization = HTTPField.Name("proxy-authorization")!
}
