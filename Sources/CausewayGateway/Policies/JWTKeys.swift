import CausewayHTTP
import CausewayTranscoding
import COpenSSL

/// JWS signature algorithms (RFC 7518) and the key each needs. `none` is not one of them.
enum JWTAlgorithm: String, Sendable, CaseIterable {
    case rs256 = "RS256", rs384 = "RS384", rs512 = "RS512", ps256 = "PS256", ps384 = "PS384", ps512 = "PS512"
    case es256 = "ES256", es384 = "ES384", edDSA = "EdDSA", hs256 = "HS256", hs384 = "HS384", hs512 = "HS512"

    enum KeyKind: Equatable {
        case rsa, ec(curve: String, size: Int), ed25519, hmac
    }

    var keyKind: KeyKind {
        switch self {
        case .rs256, .rs384, .rs512, .ps256, .ps384, .ps512: .rsa
        case .es256: .ec(curve: "P-256", size: 32)
        case .es384: .ec(curve: "P-384", size: 48)
        case .edDSA: .ed25519
        case .hs256, .hs384, .hs512: .hmac
        }
    }

    var digest: String? {
        switch self {
        case .rs256, .ps256, .es256, .hs256: "SHA256"
        case .rs384, .ps384, .es384, .hs384: "SHA384"
        case .rs512, .ps512, .hs512: "SHA512"
        case .edDSA: nil
        }
    }
}

/// One verification key from a JWK set: an OpenSSL public key (or an HMAC secret), immutable
/// and shared read-only by every loop (OpenSSL 3 keys may be; each verification uses its own
/// digest context).
final class JWTKey: @unchecked Sendable {
    let kid: String?
    /// The JWK's own `alg`, when it names one: then only that algorithm may use the key.
    let algorithm: String?
    let kind: JWTAlgorithm.KeyKind
    private let pkey: OpaquePointer?
    private let secret: [UInt8]

    private init(kid: String?, algorithm: String?, kind: JWTAlgorithm.KeyKind, pkey: OpaquePointer?, secret: [UInt8] = []) {
        self.kid = kid
        self.algorithm = algorithm
        self.kind = kind
        self.pkey = pkey
        self.secret = secret
    }

    deinit {
        if let pkey { EVP_PKEY_free(pkey) }
    }

    /// A key from one JWK object; nil with the reason when it cannot be used.
    static func make(_ jwk: [(String, JSONValue)]) -> Result<JWTKey, JWTKeyError> {
        func text(_ name: String) -> String? {
            if case .string(let value)? = jwk.first(where: { $0.0 == name })?.1 { return value }
            return nil
        }
        func bytes(_ name: String) -> [UInt8]? { text(name).flatMap(Base64.decode) }
        let kid = text("kid")
        let alg = text("alg")
        if let use = text("use"), use != "sig" { return .failure(.init("key \(kid ?? "?") is for \"\(use)\", not signatures")) }
        switch text("kty") {
        case "RSA":
            guard let n = bytes("n"), let e = bytes("e"), !n.isEmpty, !e.isEmpty else { return .failure(.init("RSA key \(kid ?? "?") lacks n or e")) }
            guard let pkey = rsaKey(n: n, e: e) else { return .failure(.init("RSA key \(kid ?? "?") is not a valid public key")) }
            guard EVP_PKEY_get_bits(pkey) >= 2048 else {
                EVP_PKEY_free(pkey)
                return .failure(.init("RSA key \(kid ?? "?") is shorter than 2048 bits"))
            }
            return .success(JWTKey(kid: kid, algorithm: alg, kind: .rsa, pkey: pkey))
        case "EC":
            let size = text("crv") == "P-256" ? 32 : text("crv") == "P-384" ? 48 : 0
            guard size > 0, let x = bytes("x"), let y = bytes("y"), x.count == size, y.count == size,
                let pkey = ecKey(curve: text("crv")!, point: [0x04] + x + y)
            else { return .failure(.init("EC key \(kid ?? "?") is not a P-256 or P-384 public key")) }
            return .success(JWTKey(kid: kid, algorithm: alg, kind: .ec(curve: text("crv")!, size: size), pkey: pkey))
        case "OKP":
            guard text("crv") == "Ed25519", let x = bytes("x"), x.count == 32,
                let pkey = x.withUnsafeBufferPointer({ EVP_PKEY_new_raw_public_key_ex(nil, "ED25519", nil, $0.baseAddress, 32) })
            else { return .failure(.init("OKP key \(kid ?? "?") is not an Ed25519 public key")) }
            return .success(JWTKey(kid: kid, algorithm: alg, kind: .ed25519, pkey: pkey))
        case "oct":
            guard let k = bytes("k"), k.count >= 32 else { return .failure(.init("oct key \(kid ?? "?") needs at least 32 bytes")) }
            return .success(JWTKey(kid: kid, algorithm: alg, kind: .hmac, pkey: nil, secret: k))
        default:
            return .failure(.init("key \(kid ?? "?") has an unsupported kty"))
        }
    }

    struct JWTKeyError: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }

    /// Whether `signature` signs `input` under `algorithm` (which the caller matched to this key).
    /// `contexts`: the calling loop's verification contexts (OpenSSL 3 looks algorithms up by
    /// name when a context is made; made once per key and algorithm, verifying costs the math).
    func verify(_ algorithm: JWTAlgorithm, signature: [UInt8], input: ArraySlice<UInt8>, contexts: VerifierContexts? = nil) -> Bool {
        switch algorithm.keyKind {
        case .hmac:
            let md: OpaquePointer? = switch algorithm {
            case .hs256: EVP_sha256()
            case .hs384: EVP_sha384()
            default: EVP_sha512()
            }
            var out = [UInt8](repeating: 0, count: 64)
            var length: UInt32 = 0
            let ok = secret.withUnsafeBufferPointer { key in
                input.withUnsafeBufferPointer { data in
                    out.withUnsafeMutableBufferPointer { mac in
                        HMAC(md, key.baseAddress, Int32(key.count), data.baseAddress, data.count, mac.baseAddress, &length) != nil
                    }
                }
            }
            guard ok, Int(length) == signature.count else { return false }
            return Credentials.constantTimeEquals(Array(out[0..<Int(length)]), signature)
        case .ec(_, let size):
            // JWS carries r ‖ s; OpenSSL verifies DER.
            guard signature.count == 2 * size, let der = Self.derSignature(signature, size: size) else { return false }
            return prehashedVerify(algorithm, signature: der, input: input, contexts: contexts)
        case .rsa:
            return prehashedVerify(algorithm, signature: signature, input: input, contexts: contexts)
        case .ed25519:
            return digestVerify(algorithm, signature: signature, input: input)  // pure EdDSA: no prehash
        }
    }

    /// RSA and ECDSA: the digest one-shot, then the signature check on a context kept per loop.
    private func prehashedVerify(_ algorithm: JWTAlgorithm, signature: [UInt8], input: ArraySlice<UInt8>,
                                 contexts: VerifierContexts?) -> Bool {
        guard let pkey else { return false }
        var digest = [UInt8](repeating: 0, count: 64)
        let length: Int = input.withUnsafeBufferPointer { data in
            digest.withUnsafeMutableBufferPointer { out in
                switch algorithm.digest {
                case "SHA256": _ = SHA256(data.baseAddress, data.count, out.baseAddress); return 32
                case "SHA384": _ = SHA384(data.baseAddress, data.count, out.baseAddress); return 48
                default: _ = SHA512(data.baseAddress, data.count, out.baseAddress); return 64
                }
            }
        }
        let make = { () -> OpaquePointer? in
            guard let context = EVP_PKEY_CTX_new(pkey, nil) else { return nil }
            var ok = EVP_PKEY_verify_init(context) == 1
            if ok, algorithm.keyKind == .rsa {
                let md: OpaquePointer? = switch algorithm.digest {
                case "SHA256": EVP_sha256()
                case "SHA384": EVP_sha384()
                default: EVP_sha512()
                }
                ok = EVP_PKEY_CTX_set_signature_md(context, md) == 1
                if ok, [.ps256, .ps384, .ps512].contains(algorithm) {
                    ok = EVP_PKEY_CTX_set_rsa_padding(context, RSA_PKCS1_PSS_PADDING) == 1
                        && EVP_PKEY_CTX_set_rsa_pss_saltlen(context, RSA_PSS_SALTLEN_DIGEST) == 1
                        && EVP_PKEY_CTX_set_rsa_mgf1_md(context, md) == 1
                }
            }
            if !ok {
                EVP_PKEY_CTX_free(context)
                return nil
            }
            return context
        }
        let shared = contexts?.context(pkey: pkey, algorithm: algorithm, make: make)
        guard let context = shared ?? make() else { return false }
        defer { if shared == nil { EVP_PKEY_CTX_free(context) } }
        return signature.withUnsafeBufferPointer { sig in
            digest.withUnsafeBufferPointer { EVP_PKEY_verify(context, sig.baseAddress, sig.count, $0.baseAddress, length) == 1 }
        }
    }

    private func digestVerify(_ algorithm: JWTAlgorithm, signature: [UInt8], input: ArraySlice<UInt8>) -> Bool {
        guard let pkey, let context = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(context) }
        var keyContext: OpaquePointer?
        guard EVP_DigestVerifyInit_ex(context, &keyContext, algorithm.digest, nil, nil, pkey, nil) == 1 else { return false }
        if [.ps256, .ps384, .ps512].contains(algorithm) {
            guard EVP_PKEY_CTX_set_rsa_padding(keyContext, RSA_PKCS1_PSS_PADDING) == 1,
                EVP_PKEY_CTX_set_rsa_pss_saltlen(keyContext, RSA_PSS_SALTLEN_DIGEST) == 1
            else { return false }
        }
        return signature.withUnsafeBufferPointer { sig in
            input.withUnsafeBufferPointer { data in
                EVP_DigestVerify(context, sig.baseAddress, sig.count, data.baseAddress, data.count) == 1
            }
        }
    }

    private static func derSignature(_ raw: [UInt8], size: Int) -> [UInt8]? {
        guard let sig = ECDSA_SIG_new() else { return nil }
        defer { ECDSA_SIG_free(sig) }
        let r = raw.withUnsafeBufferPointer { BN_bin2bn($0.baseAddress, Int32(size), nil) }
        let s = raw.withUnsafeBufferPointer { BN_bin2bn($0.baseAddress! + size, Int32(size), nil) }
        guard let r, let s, ECDSA_SIG_set0(sig, r, s) == 1 else {
            BN_free(r)
            BN_free(s)
            return nil
        }
        let length = i2d_ECDSA_SIG(sig, nil)
        guard length > 0 else { return nil }
        var der = [UInt8](repeating: 0, count: Int(length))
        let written = der.withUnsafeMutableBufferPointer { buffer -> Int32 in
            var cursor = buffer.baseAddress
            return i2d_ECDSA_SIG(sig, &cursor)
        }
        return written == length ? der : nil
    }

    private static func rsaKey(n: [UInt8], e: [UInt8]) -> OpaquePointer? {
        n.withUnsafeBufferPointer { n in e.withUnsafeBufferPointer { e in causeway_rsa_public_key(n.baseAddress, n.count, e.baseAddress, e.count) } }
    }

    private static func ecKey(curve: String, point: [UInt8]) -> OpaquePointer? {
        curve.withCString { name in point.withUnsafeBufferPointer { causeway_ec_public_key(name, $0.baseAddress, $0.count) } }
    }
}

/// A JWK set (RFC 7517) as verification keys: usable keys kept, each unusable one with why.
struct JWTKeySet: Sendable {
    let keys: [JWTKey]
    let problems: [String]

    static func parse(_ bytes: [UInt8]) throws(ProtoError) -> JWTKeySet {
        let document = try JSONParser.parse(bytes, maxDepth: 16)
        guard case .object(let top) = document, case .array(let items)? = top.first(where: { $0.0 == "keys" })?.1 else {
            throw ProtoError("a JWK set is an object with a \"keys\" array")
        }
        var keys: [JWTKey] = []
        var problems: [String] = []
        for item in items {
            guard case .object(let jwk) = item else { continue }
            switch JWTKey.make(jwk) {
            case .success(let key): keys.append(key)
            case .failure(let error): problems.append(error.message)
            }
        }
        return JWTKeySet(keys: keys, problems: problems)
    }

    /// The key for a token: by `kid` when it has one, else the only key that fits the algorithm.
    func key(kid: String?, for algorithm: JWTAlgorithm) -> JWTKey? {
        let fitting = keys.filter { $0.kind == algorithm.keyKind && ($0.algorithm == nil || $0.algorithm == algorithm.rawValue) }
        if let kid { return fitting.first { $0.kid == kid } }
        return fitting.count == 1 ? fitting[0] : nil
    }

    func hasKey(_ kid: String) -> Bool { keys.contains { $0.kid == kid } }
}

/// One loop's OpenSSL verification contexts, by key and algorithm. A context holds a reference
/// on its key, so a key pointer cannot be reused while its context is here. Bounded: full, it
/// starts over.
final class VerifierContexts {
    private var contexts: [Key: OpaquePointer] = [:]
    static let capacity = 64

    private struct Key: Hashable {
        let pkey: UInt
        let algorithm: JWTAlgorithm
    }

    func context(pkey: OpaquePointer, algorithm: JWTAlgorithm, make: () -> OpaquePointer?) -> OpaquePointer? {
        let key = Key(pkey: UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(pkey))), algorithm: algorithm)
        if let context = contexts[key] { return context }
        guard let context = make() else { return nil }
        if contexts.count >= Self.capacity {
            for old in contexts.values { EVP_PKEY_CTX_free(old) }
            contexts = [:]
        }
        contexts[key] = context
        return context
    }

    deinit {
        for context in contexts.values { EVP_PKEY_CTX_free(context) }
    }
}
