import COpenSSL

/// A listener's TLS configuration compiled into OpenSSL contexts: one `SSL_CTX` per
/// certificate (the first is the default), chosen per connection by SNI, with ALPN offering the
/// listener's protocols in its order. TLS 1.2 and 1.3 only; modern suites; session tickets on.
///
/// Built once and shared by every loop: OpenSSL allows concurrent `SSL_new` on a configured
/// context, and nothing here changes after `init`. A reload builds a new one.
public final class TLSServerContext: @unchecked Sendable {
    public struct Certificate: Sendable {
        public var certPath: String
        public var keyPath: String

        public init(certPath: String, keyPath: String) {
            self.certPath = certPath
            self.keyPath = keyPath
        }
    }

    public struct LoadError: Error, CustomStringConvertible {
        /// Which certificate entry (index) and which file failed.
        public var index: Int
        public var isKey: Bool
        public var message: String
        public var description: String { message }
    }

    private let contexts: [OpaquePointer]
    private let certificates: [OpaquePointer?]
    /// ALPN protocol list in wire format (length-prefixed names); stable memory, because the
    /// selection callback hands OpenSSL a pointer into it.
    fileprivate let alpn: UnsafeMutableBufferPointer<UInt8>

    public init(certificates: [Certificate], minimumVersion: String, alpnProtocols: [String]) throws(LoadError) {
        var wire: [UInt8] = []
        for name in alpnProtocols {
            wire.append(UInt8(name.utf8.count))
            wire.append(contentsOf: name.utf8)
        }
        self.alpn = .allocate(capacity: max(wire.count, 1))
        _ = self.alpn.initialize(from: wire)
        self.alpnLength = wire.count
        var contexts: [OpaquePointer] = []
        for (index, certificate) in certificates.enumerated() {
            do {
                contexts.append(try Self.makeContext(certificate, index: index, minimumVersion: minimumVersion))
            } catch {
                for context in contexts { SSL_CTX_free(context) }
                alpn.deallocate()
                throw error
            }
        }
        self.contexts = contexts
        self.certificates = contexts.map { SSL_CTX_get0_certificate($0) }
        let unmanaged = Unmanaged.passUnretained(self).toOpaque()
        for context in contexts {
            SSL_CTX_set_alpn_select_cb(context, alpnCallback, unmanaged)
        }
        _ = causeway_SSL_CTX_set_servername_callback(contexts[0], serverNameCallback, unmanaged)
    }

    fileprivate let alpnLength: Int

    deinit {
        for context in contexts { SSL_CTX_free(context) }
        alpn.deallocate()
    }

    /// A new server-side SSL object on the default context.
    func makeSSL() -> OpaquePointer? {
        SSL_new(contexts[0])
    }

    fileprivate func selectContext(for ssl: OpaquePointer, serverName: UnsafePointer<CChar>) {
        for (index, certificate) in certificates.enumerated() where index > 0 {
            if let certificate, X509_check_host(certificate, serverName, 0, 0, nil) == 1 {
                SSL_set_SSL_CTX(ssl, contexts[index])
                return
            }
        }
    }

    private static func makeContext(_ certificate: Certificate, index: Int, minimumVersion: String) throws(LoadError) -> OpaquePointer {
        guard let context = SSL_CTX_new(TLS_server_method()) else {
            throw LoadError(index: index, isKey: false, message: "cannot create a TLS context: \(opensslErrors())")
        }
        _ = causeway_SSL_CTX_set_min_proto_version(context, minimumVersion == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION)
        // TLS 1.2: forward-secret AEAD suites only; TLS 1.3's defaults are all modern.
        SSL_CTX_set_cipher_list(context, "ECDHE+AESGCM:ECDHE+CHACHA20")
        SSL_CTX_set_options(context, causeway_SSL_server_options())
        _ = causeway_SSL_CTX_set_session_cache_mode(context, Int(SSL_SESS_CACHE_SERVER))
        guard SSL_CTX_use_certificate_chain_file(context, certificate.certPath) == 1 else {
            SSL_CTX_free(context)
            throw LoadError(index: index, isKey: false,
                            message: "cannot load certificate chain \"\(certificate.certPath)\": \(opensslErrors())")
        }
        guard SSL_CTX_use_PrivateKey_file(context, certificate.keyPath, SSL_FILETYPE_PEM) == 1 else {
            SSL_CTX_free(context)
            let reason = opensslErrors()
            throw LoadError(index: index, isKey: true, message: reason.contains("key values mismatch")
                ? "private key \"\(certificate.keyPath)\" does not match certificate \"\(certificate.certPath)\""
                : "cannot load private key \"\(certificate.keyPath)\": \(reason)")
        }
        guard SSL_CTX_check_private_key(context) == 1 else {
            SSL_CTX_free(context)
            throw LoadError(index: index, isKey: true,
                            message: "private key \"\(certificate.keyPath)\" does not match certificate \"\(certificate.certPath)\"")
        }
        return context
    }
}

/// The OpenSSL error queue as text (and emptied), for messages users can act on.
func opensslErrors() -> String {
    var messages: [String] = []
    while true {
        let code = ERR_get_error()
        if code == 0 { break }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        messages.append(String(cString: buffer))
    }
    return messages.isEmpty ? "unknown error" : messages.joined(separator: "; ")
}

private func owner(_ arg: UnsafeMutableRawPointer?) -> TLSServerContext {
    Unmanaged<TLSServerContext>.fromOpaque(arg!).takeUnretainedValue()
}

/// SNI: switch to the context whose certificate matches the requested name; else the default.
private let serverNameCallback: @convention(c) (OpaquePointer?, UnsafeMutablePointer<Int32>?, UnsafeMutableRawPointer?) -> Int32 = {
    ssl, _, arg in
    guard let ssl, let name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) else { return SSL_TLSEXT_ERR_OK }
    owner(arg).selectContext(for: ssl, serverName: name)
    return SSL_TLSEXT_ERR_OK
}

/// ALPN: the first of our protocols (in the listener's order) that the client offers. A client
/// that offers only protocols we do not speak gets the no_application_protocol alert (RFC 7301).
private let alpnCallback: @convention(c) (
    OpaquePointer?, UnsafeMutablePointer<UnsafePointer<UInt8>?>?, UnsafeMutablePointer<UInt8>?,
    UnsafePointer<UInt8>?, UInt32, UnsafeMutableRawPointer?
) -> Int32 = { _, out, outLength, offered, offeredLength, arg in
    let context = owner(arg)
    var selected: UnsafeMutablePointer<UInt8>?
    var selectedLength: UInt8 = 0
    let result = SSL_select_next_proto(&selected, &selectedLength, context.alpn.baseAddress, UInt32(context.alpnLength),
                                       offered, offeredLength)
    guard result == OPENSSL_NPN_NEGOTIATED, let selected else { return SSL_TLSEXT_ERR_ALERT_FATAL }
    out?.pointee = UnsafePointer(selected)
    outLength?.pointee = selectedLength
    return SSL_TLSEXT_ERR_OK
}
