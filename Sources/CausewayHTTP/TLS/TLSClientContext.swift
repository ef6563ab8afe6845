import COpenSSL

/// An upstream's TLS configuration compiled into one client `SSL_CTX`: TLS 1.2+, peer
/// verification against the system store or a configured CA bundle, an optional client
/// certificate (mTLS), and the ALPN list the upstream protocol needs.
///
/// Shared by every loop, like `TLSServerContext`: nothing changes after `init`.
public final class TLSClientContext: @unchecked Sendable {
    public struct Options: Sendable {
        public var verify = true
        /// PEM bundle; nil means the system store.
        public var caPath: String?
        public var certPath: String?
        public var keyPath: String?
        public var alpnProtocols: [String] = []

        public init(verify: Bool = true, caPath: String? = nil, certPath: String? = nil, keyPath: String? = nil,
                    alpnProtocols: [String] = []) {
            self.verify = verify
            self.caPath = caPath
            self.certPath = certPath
            self.keyPath = keyPath
            self.alpnProtocols = alpnProtocols
        }
    }

    public enum LoadError: Error, CustomStringConvertible {
        case ca(String), cert(String), key(String)
        public var description: String {
            switch self {
            case .ca(let message), .cert(let message), .key(let message): message
            }
        }
    }

    private let context: OpaquePointer
    public let verify: Bool
    /// The protocol ALPN must settle on, when one is required ("h2" for HTTP/2 over TLS).
    public let requiredProtocol: String?

    public init(_ options: Options) throws(LoadError) {
        guard let context = SSL_CTX_new(TLS_client_method()) else {
            throw .ca("cannot create a TLS context: \(opensslErrors())")
        }
        self.context = context
        self.verify = options.verify
        self.requiredProtocol = options.alpnProtocols == ["h2"] ? "h2" : nil
        _ = causeway_SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION)
        SSL_CTX_set_cipher_list(context, "ECDHE+AESGCM:ECDHE+CHACHA20")
        SSL_CTX_set_options(context, causeway_SSL_client_options())
        if options.verify {
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
            if let ca = options.caPath {
                guard SSL_CTX_load_verify_locations(context, ca, nil) == 1 else {
                    throw .ca("cannot load CA bundle \"\(ca)\": \(opensslErrors())")
                }
            } else {
                SSL_CTX_set_default_verify_paths(context)
            }
        } else {
            SSL_CTX_set_verify(context, SSL_VERIFY_NONE, nil)
        }
        if let cert = options.certPath, let key = options.keyPath {
            guard SSL_CTX_use_certificate_chain_file(context, cert) == 1 else {
                throw .cert("cannot load client certificate chain \"\(cert)\": \(opensslErrors())")
            }
            guard SSL_CTX_use_PrivateKey_file(context, key, SSL_FILETYPE_PEM) == 1,
                SSL_CTX_check_private_key(context) == 1
            else {
                let reason = opensslErrors()
                throw .key(reason.contains("key values mismatch") || reason.contains("unknown error")
                    ? "private key \"\(key)\" does not match client certificate \"\(cert)\""
                    : "cannot load private key \"\(key)\": \(reason)")
            }
        }
        if !options.alpnProtocols.isEmpty {
            var wire: [UInt8] = []
            for name in options.alpnProtocols {
                wire.append(UInt8(name.utf8.count))
                wire.append(contentsOf: name.utf8)
            }
            _ = SSL_CTX_set_alpn_protos(context, wire, UInt32(wire.count))  // copies
        }
    }

    deinit {
        SSL_CTX_free(context)
    }

    /// A client SSL for one connection: SNI set to `serverName`, and (when verifying) the
    /// certificate checked against that name, or against the IP address when it is one.
    func makeSSL(serverName: String) -> OpaquePointer? {
        guard let ssl = SSL_new(context) else { return nil }
        let isAddress = serverName.contains(":") || serverName.allSatisfy { $0.isNumber || $0 == "." }
        if !isAddress { _ = causeway_SSL_set_tlsext_host_name(ssl, serverName) }  // SNI carries names only
        if verify {
            if isAddress {
                X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), serverName)
            } else {
                SSL_set_hostflags(ssl, UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS))
                SSL_set1_host(ssl, serverName)
            }
        }
        SSL_set_connect_state(ssl)
        return ssl
    }
}
