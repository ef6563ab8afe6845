import NIOCore

/// Chooses HTTP/1.1 or HTTP/2 on a cleartext connection by its first bytes: the HTTP/2
/// connection preface (RFC 9113 §3.4, h2c "prior knowledge") or anything else. It installs the
/// chosen handlers behind itself, hands them the bytes it held, and leaves the pipeline.
public final class ProtocolSniffer: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer

    public enum Choice: Sendable {
        case http1, http2
    }

    private static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
    private let configure: (ChannelHandlerContext, Choice) throws -> Void
    private let timeout: TimeAmount
    private var held: ByteBuffer?
    private var timer: Scheduled<Void>?

    /// `configure` adds the handlers for the choice after this one (in `context.pipeline`).
    public init(timeout: TimeAmount, configure: @escaping (ChannelHandlerContext, Choice) throws -> Void) {
        self.timeout = timeout
        self.configure = configure
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        // A connection that never says anything is closed like an idle one.
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [weak context] in
            context?.close(promise: nil)
        }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if held == nil { held = bytes } else { held!.writeBuffer(&bytes) }
        guard let held else { return }
        let count = min(held.readableBytes, Self.preface.count)
        let matches = held.withUnsafeReadableBytes { Array($0.prefix(count)) } == Array(Self.preface.prefix(count))
        if matches && count < Self.preface.count { return }  // wait for the rest of the preface
        decide(matches ? .http2 : .http1, context: context)
    }

    private func decide(_ choice: Choice, context: ChannelHandlerContext) {
        timer?.cancel()
        do {
            try configure(context, choice)
        } catch {
            context.close(promise: nil)
            return
        }
        if let held {
            self.held = nil
            context.fireChannelRead(wrapInboundOut(held))
            context.fireChannelReadComplete()
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}

@available(*, unavailable)
extension ProtocolSniffer: Sendable {}
