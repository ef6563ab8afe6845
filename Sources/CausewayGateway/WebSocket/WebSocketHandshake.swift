import CausewayHTTP
import COpenSSL
import Foundation
import HTTPTypes

/// The RFC 6455 §4 handshake rules, both sides: what a client's upgrade request must carry,
/// and what the upstream's 101 must answer.
enum WebSocketHandshake {
    static let key = HTTPField.Name("sec-websocket-key")!
    static let version = HTTPField.Name("sec-websocket-version")!
    static let accept = HTTPField.Name("sec-websocket-accept")!
    static let protocolField = HTTPField.Name("sec-websocket-protocol")!
    static let extensions = HTTPField.Name("sec-websocket-extensions")!

    /// The request asks to switch to WebSocket (`Upgrade: websocket`, whatever else it gets
    /// wrong), or to open one on an HTTP/2 stream (extended CONNECT, RFC 8441).
    static func isUpgrade(_ request: HTTPRequest) -> Bool {
        if isExtendedConnect(request) { return true }
        return request.headerFields[values: .upgrade].contains { value in
            value.split(separator: ",").contains { $0.trimmingSpaces().lowercased() == "websocket" }
        }
    }

    static func isExtendedConnect(_ request: HTTPRequest) -> Bool {
        request.method == .connect && request.extendedConnectProtocol?.lowercased() == "websocket"
    }

    /// Checks a client's upgrade request (RFC 6455 §4.2.1; over HTTP/2, RFC 8441 §5: a
    /// CONNECT with `:protocol: websocket` and the version, no key); the error is the answer.
    static func validate(_ request: HTTPRequest) -> GatewayError? {
        if isExtendedConnect(request) {
            return request.headerFields[values: version] == ["13"] ? nil : versionError
        }
        guard request.method == .get else {
            return .badRequest("a WebSocket upgrade must be a GET")
        }
        let connection = request.headerFields[values: .connection].flatMap { $0.split(separator: ",") }
        guard connection.contains(where: { $0.trimmingSpaces().lowercased() == "upgrade" }) else {
            return .badRequest("a WebSocket upgrade needs Connection: Upgrade")
        }
        guard request.headerFields[values: version] == ["13"] else { return versionError }
        guard let key = request.headerFields[key], Base64.decode(key)?.count == 16 else {
            return .badRequest("Sec-WebSocket-Key must be 16 bytes in base64")
        }
        return nil
    }

    private static var versionError: GatewayError {
        var error = GatewayError(status: .init(code: 426), code: "websocket_version",
                                 message: "only WebSocket version 13 is supported")
        error.headers[version] = "13"
        return error
    }

    /// A fresh `Sec-WebSocket-Key` (the upstream leg of an RFC 8441 WebSocket needs one).
    static func newKey() -> String {
        var bytes = SystemRandomNumberGenerator()
        let raw = (0..<16).map { _ in UInt8.random(in: 0...255, using: &bytes) }
        return Data(raw).base64EncodedString()
    }

    /// `Sec-WebSocket-Accept` for `key`: base64(SHA-1(key + the RFC's GUID)).
    static func acceptValue(for key: String) -> String {
        let input = Array((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").utf8)
        var digest = [UInt8](repeating: 0, count: 20)
        var length: UInt32 = 0
        _ = EVP_Digest(input, input.count, &digest, &length, EVP_sha1(), nil)
        return Data(digest).base64EncodedString()
    }

    /// The client's subprotocols, filtered by the route's list (empty list: all pass).
    static func offeredProtocols(_ request: HTTPRequest, allowed: [String]) -> [String] {
        let offered = request.headerFields[values: protocolField].flatMap { $0.split(separator: ",") }
            .map { String($0.trimmingSpaces()) }.filter { !$0.isEmpty }
        return allowed.isEmpty ? offered : offered.filter { allowed.contains($0) }
    }
}
