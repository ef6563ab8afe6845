import COpenSSL
import NIOCore

/// Fired once the TLS handshake is done, like NIOSSL's event of the same name, so protocol
/// selection reads the same as everywhere else.
public enum TLSUserEvent: Equatable, Sendable {
    case handshakeCompleted(negotiatedProtocol: String?)
}

/// The handshake did not complete; `reason` says why in OpenSSL's words (for an upstream,
/// including why its certificate was not trusted).
public struct TLSHandshakeError: Error, CustomStringConvertible, Sendable {
    public var reason: String
    public var description: String { reason }
}

/// TLS with system OpenSSL over two memory BIOs, as the server (listeners) or the client
/// (upstreams).
///
/// ```
/// socket ─ciphertext─▶ BIO_write(rbio) ─▶ SSL_do_handshake / SSL_read ─plaintext─▶ next handler
/// next handler ─plaintext─▶ SSL_write ─▶ BIO_read(wbio) ─ciphertext─▶ socket
/// ```
/// Writes made before the handshake finishes wait for it. A failed handshake sends OpenSSL's
/// alert and closes only this connection; `handshakeResult` reports it.
public final class OpenSSLHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private enum Role {
        case server(TLSServerContext)
        case client(TLSClientContext, serverName: String)
    }

    private let role: Role
    private var ssl: OpaquePointer?
    private var readBIO: OpaquePointer?
    private var writeBIO: OpaquePointer?
    private var handshakeDone = false
    private var pendingWrites: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    private var closed = false
    private var handshakePromise: EventLoopPromise<String?>?

    public init(context: TLSServerContext) {
        self.role = .server(context)
    }

    public init(client: TLSClientContext, serverName: String) {
        self.role = .client(client, serverName: serverName)
    }

    /// The negotiated ALPN protocol once the handshake is done, or a `TLSHandshakeError`.
    /// Valid after the handler is added.
    public var handshakeResult: EventLoopFuture<String?> { handshakePromise!.futureResult }

    public func handlerAdded(context: ChannelHandlerContext) {
        handshakePromise = context.eventLoop.makePromise()
        let ssl: OpaquePointer? = switch role {
        case .server(let tls): tls.makeSSL()
        case .client(let tls, let serverName): tls.makeSSL(serverName: serverName)
        }
        guard let ssl, let rbio = BIO_new(BIO_s_mem()), let wbio = BIO_new(BIO_s_mem()) else {
            handshakePromise?.fail(TLSHandshakeError(reason: "cannot create a TLS session: \(opensslErrors())"))
            context.close(promise: nil)
            return
        }
        SSL_set_bio(ssl, rbio, wbio)  // the SSL owns both BIOs now
        if case .server = role { SSL_set_accept_state(ssl) }
        self.ssl = ssl
        readBIO = rbio
        writeBIO = wbio
        if context.channel.isActive { startClientHandshake(context: context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        startClientHandshake(context: context)
        context.fireChannelActive()
    }

    /// A client speaks first: the ClientHello goes out as soon as the socket is connected.
    private func startClientHandshake(context: ChannelHandlerContext) {
        guard case .client = role, let ssl, !handshakeDone, !closed, causeway_BIO_pending(writeBIO) == 0 else { return }
        _ = SSL_do_handshake(ssl)
        sendCiphertext(context: context, promise: nil)
        context.flush()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        if !handshakeDone {
            handshakePromise?.fail(TLSHandshakeError(reason: "the peer closed the connection during the TLS handshake"))
        }
        context.fireChannelInactive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        if let ssl { SSL_free(ssl) }
        ssl = nil
        for (_, promise) in pendingWrites { promise?.fail(ChannelError.ioOnClosedChannel) }
        pendingWrites = []
        if !handshakeDone { handshakePromise?.fail(TLSHandshakeError(reason: "TLS handler removed before the handshake")) }
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let ssl, !closed else { return }
        let bytes = unwrapInboundIn(data)
        _ = bytes.withUnsafeReadableBytes { BIO_write(readBIO, $0.baseAddress, Int32($0.count)) }
        if !handshakeDone {
            let rv = SSL_do_handshake(ssl)
            if rv != 1 {
                let error = SSL_get_error(ssl, rv)
                sendCiphertext(context: context, promise: nil)
                if error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE {
                    // Also clears this thread's error queue; for a server the alert already says why.
                    let reason = handshakeFailureReason(ssl)
                    handshakePromise?.fail(TLSHandshakeError(reason: reason))
                    fail(context: context)
                } else {
                    context.flush()
                }
                return
            }
            handshakeDone = true
            sendCiphertext(context: context, promise: nil)
            context.flush()
            var protocolName: UnsafePointer<UInt8>?
            var length: UInt32 = 0
            SSL_get0_alpn_selected(ssl, &protocolName, &length)
            let negotiated = protocolName.map { String(decoding: UnsafeBufferPointer(start: $0, count: Int(length)), as: UTF8.self) }
            if case .client(let tls, _) = role, let required = tls.requiredProtocol, negotiated != required {
                handshakePromise?.fail(TLSHandshakeError(
                    reason: "the upstream did not agree to \(required) by ALPN (it chose \(negotiated ?? "nothing"))"))
                fail(context: context)
                return
            }
            // What was written during the handshake (an HTTP/2 client preface) goes before
            // anything written by those told the handshake is done.
            let waiting = pendingWrites
            pendingWrites = []
            for (buffer, promise) in waiting { encrypt(buffer, context: context, promise: promise) }
            if !waiting.isEmpty { context.flush() }
            handshakePromise?.succeed(negotiated)
            context.fireUserInboundEventTriggered(TLSUserEvent.handshakeCompleted(negotiatedProtocol: negotiated))
        }
        readPlaintext(context: context)
    }

    private func readPlaintext(context: ChannelHandlerContext) {
        guard let ssl else { return }
        var delivered = false
        while !closed {
            var buffer = context.channel.allocator.buffer(capacity: 16 * 1024)
            var rv: Int32 = 0
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 16 * 1024) { target in
                rv = SSL_read(ssl, target.baseAddress, Int32(target.count))
                return max(0, Int(rv))
            }
            if rv > 0 {
                delivered = true
                context.fireChannelRead(wrapInboundOut(buffer))
                continue
            }
            switch SSL_get_error(ssl, rv) {
            case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
                break
            case SSL_ERROR_ZERO_RETURN:
                // close_notify from the client.
                closed = true
                context.close(promise: nil)
            default:
                _ = opensslErrors()
                fail(context: context)
            }
            break
        }
        // TLS 1.3 tickets and key updates may have produced output.
        sendCiphertext(context: context, promise: nil)
        context.flush()
        if delivered { context.fireChannelReadComplete() }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        // Plaintext read completion is fired by readPlaintext when data was delivered.
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let buffer = unwrapOutboundIn(data)
        guard handshakeDone else {
            pendingWrites.append((buffer, promise))
            return
        }
        encrypt(buffer, context: context, promise: promise)
    }

    public func flush(context: ChannelHandlerContext) {
        context.flush()
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if let ssl, handshakeDone, !closed, mode == .all {
            SSL_shutdown(ssl)  // close_notify, best effort
            sendCiphertext(context: context, promise: nil)
            context.flush()
        }
        closed = true
        context.close(mode: mode, promise: promise)
    }

    private func encrypt(_ buffer: ByteBuffer, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        guard let ssl, !closed else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        if buffer.readableBytes > 0 {
            // Memory BIOs take everything: one SSL_write consumes the whole buffer.
            let rv = buffer.withUnsafeReadableBytes { SSL_write(ssl, $0.baseAddress, Int32($0.count)) }
            if rv <= 0 {
                _ = opensslErrors()
                promise?.fail(ChannelError.ioOnClosedChannel)
                fail(context: context)
                return
            }
        }
        sendCiphertext(context: context, promise: promise)
    }

    /// Moves what OpenSSL produced to the socket (without flushing).
    private func sendCiphertext(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        let pending = Int(causeway_BIO_pending(writeBIO))
        guard pending > 0 else {
            promise?.succeed(())
            return
        }
        var out = context.channel.allocator.buffer(capacity: pending)
        out.writeWithUnsafeMutableBytes(minimumWritableBytes: pending) { target in
            Int(max(0, BIO_read(writeBIO, target.baseAddress, Int32(pending))))
        }
        context.write(wrapOutboundOut(out), promise: promise)
    }

    private func handshakeFailureReason(_ ssl: OpaquePointer) -> String {
        let queued = opensslErrors()
        if case .client(let tls, let serverName) = role, tls.verify {
            let result = SSL_get_verify_result(ssl)
            if result != X509_V_OK {
                return "certificate of \"\(serverName)\" not trusted: \(String(cString: X509_verify_cert_error_string(result)))"
            }
        }
        return queued
    }

    private func fail(context: ChannelHandlerContext) {
        closed = true
        sendCiphertext(context: context, promise: nil)  // the alert, if any
        context.flush()
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension OpenSSLHandler: Sendable {}

/// After the handshake, installs HTTP/2 when ALPN chose "h2" and HTTP/1.1 otherwise.
public final class ALPNProtocolSelector: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer

    private let configure: (ChannelHandlerContext, ProtocolSniffer.Choice) throws -> Void

    public init(configure: @escaping (ChannelHandlerContext, ProtocolSniffer.Choice) throws -> Void) {
        self.configure = configure
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case TLSUserEvent.handshakeCompleted(let negotiated)? = event as? TLSUserEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        do {
            try configure(context, negotiated == "h2" ? .http2 : .http1)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        } catch {
            context.close(promise: nil)
        }
    }
}

@available(*, unavailable)
extension ALPNProtocolSelector: Sendable {}
