import ArgumentParser
import COpenSSL
import Foundation

/// `causeway token`: a demo JWT (ES256) signed with the demo's own key (config/certs, made by
/// `causeway demo`), whose public half the demo's `demo` JWT provider reads from
/// config/certs/demo-jwks.json. For trying the JWT route, not for production tokens.
struct Token: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a demo JWT for the demo's /me/ route (signed with config/certs).")

    @Option(help: "The subject (sub): who the token says the caller is.")
    var sub = "demo-user"

    @Option(help: "Space-separated scopes (the scope claim).")
    var scope = "orders:read"

    @Option(help: "Lifetime in seconds.")
    var ttl = 3600

    @Option(help: "The signing key (PEM, EC P-256).")
    var key = "config/certs/localhost.key"

    func run() throws {
        guard let pkey = DemoJWT.loadKey(key) else {
            printError("causeway token: cannot read the EC key \(key) (run `causeway demo` once to make it)")
            throw ExitCode(1)
        }
        defer { EVP_PKEY_free(pkey) }
        let now = Int(Date().timeIntervalSince1970)
        let claims: [String: Any] = ["iss": DemoJWT.issuer, "aud": "demo", "sub": sub, "scope": scope, "iat": now, "exp": now + ttl]
        guard let token = DemoJWT.sign(claims: claims, key: pkey) else {
            printError("causeway token: signing failed")
            throw ExitCode(1)
        }
        print(token)
    }
}

enum DemoJWT {
    static let issuer = "https://causeway.demo/"
    static let kid = "demo"

    static func loadKey(_ path: String) -> OpaquePointer? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        return PEM_read_PrivateKey(file, nil, nil, nil)
    }

    /// The key's public half as a JWK set (EC P-256: x and y from the uncompressed point).
    static func jwks(_ pkey: OpaquePointer) -> String? {
        var point = [UInt8](repeating: 0, count: 65)
        var length = 0
        guard EVP_PKEY_get_octet_string_param(pkey, "pub", &point, point.count, &length) == 1, length == 65, point[0] == 4 else {
            return nil
        }
        let x = base64url(Array(point[1...32])), y = base64url(Array(point[33...64]))
        return #"{"keys":[{"kty":"EC","crv":"P-256","kid":"\#(kid)","use":"sig","alg":"ES256","x":"\#(x)","y":"\#(y)"}]}"#
    }

    static func sign(claims: [String: Any], key: OpaquePointer) -> String? {
        guard let header = try? JSONSerialization.data(withJSONObject: ["alg": "ES256", "typ": "JWT", "kid": kid], options: [.sortedKeys]),
            let payload = try? JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys])
        else { return nil }
        let input = base64url(Array(header)) + "." + base64url(Array(payload))
        guard let context = EVP_MD_CTX_new() else { return nil }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestSignInit_ex(context, nil, "SHA256", nil, nil, key, nil) == 1 else { return nil }
        var der = [UInt8](repeating: 0, count: 80)
        var derLength = der.count
        let bytes = Array(input.utf8)
        guard EVP_DigestSign(context, &der, &derLength, bytes, bytes.count) == 1 else { return nil }
        // DER ECDSA-Sig-Value → JWS's r ‖ s, 32 bytes each.
        let decoded: OpaquePointer? = der.withUnsafeBufferPointer { buffer in
            var cursor: UnsafePointer<UInt8>? = buffer.baseAddress
            return d2i_ECDSA_SIG(nil, &cursor, derLength)
        }
        guard let sig = decoded else { return nil }
        defer { ECDSA_SIG_free(sig) }
        var raw = [UInt8](repeating: 0, count: 64)
        guard BN_bn2binpad(ECDSA_SIG_get0_r(sig), &raw, 32) == 32,
            raw.withUnsafeMutableBufferPointer({ BN_bn2binpad(ECDSA_SIG_get0_s(sig), $0.baseAddress! + 32, 32) }) == 32
        else { return nil }
        return input + "." + base64url(raw)
    }

    static func base64url(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
