import NIOCore

/// A connection or stream handed to another protocol after an upgrade: raw bytes both ways.
/// An HTTP/1.1 connection after its `101` is one (`ChannelByteTunnel`), and so is an HTTP/2
/// stream opened by an extended CONNECT (RFC 8441). The protocol on top (WebSocket frames)
/// does not know which it has. All calls happen on the connection's event loop.
public protocol ByteTunnel: AnyObject {
    var allocator: ByteBufferAllocator { get }
    /// False while what was written has not drained below the transport's high-water mark.
    var isWritable: Bool { get }
    /// Starts delivery to `delegate`, bytes that came before it first.
    func attach(_ delegate: any ByteTunnelDelegate)
    func write(_ bytes: ByteBuffer)
    func flush()
    /// Stops or resumes reads (or, on HTTP/2, the stream's flow-control window): backpressure.
    func setReading(_ reading: Bool)
    /// Ends this side once what was written has left: a TCP close, or END_STREAM.
    func close()
}

public protocol ByteTunnelDelegate: AnyObject {
    func tunnelRead(_ bytes: ByteBuffer)
    /// The end of a read cycle: the moment to flush what the reads produced.
    func tunnelReadComplete()
    func tunnelWritabilityChanged(_ writable: Bool)
    /// The peer closed or reset, or the connection failed. Nothing more comes either way.
    func tunnelClosed()
    /// The gateway is draining (SIGTERM, a listener removed by a reload).
    func tunnelDraining()
}

/// A whole channel as a tunnel: the last handler of a pipeline whose HTTP handlers are gone.
///
/// Until `ready` it queues what it is given to write: the upstream's HTTP response decoder
/// watches writes until it is removed, a tick after the switch. Bytes read before `attach` wait.
public final class ChannelByteTunnel: ChannelInboundHandler, ByteTunnel {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private var context: ChannelHandlerContext?
    /// Held strongly (the session above lives as long as its tunnels); let go when closed.
    private var delegate: (any ByteTunnelDelegate)?
    private var early: [ByteBuffer] = []
    private var queued: [ByteBuffer] = []
    private var ready: Bool
    private var ended = false
    private var sawReadComplete = false
    private var readCompleteScheduled = false

    public init(ready: Bool = true) {
        self.ready = ready
    }

    /// Both kept here, not asked of the channel per message (each ask is an existential call).
    public private(set) var allocator = ByteBufferAllocator()
    public private(set) var isWritable = true
    public var isActive: Bool { context?.channel.isActive ?? false }

    public func attach(_ delegate: any ByteTunnelDelegate) {
        self.delegate = delegate
        let early = self.early
        self.early = []
        for bytes in early { delegate.tunnelRead(bytes) }
        if !early.isEmpty { delegate.tunnelReadComplete() }
        if ended { delegate.tunnelClosed() }
    }

    /// Writes may go through now; what was queued leaves.
    public func becameReady() {
        ready = true
        let queued = self.queued
        self.queued = []
        for bytes in queued { write(bytes) }
        flush()
        delegate?.tunnelReadComplete()  // what its handover's bytes produced goes out too
    }

    /// Written now, sent at the next `flush`: the protocol above flushes at the end of each of
    /// its source's read cycles, so a burst leaves in one write (and no task is scheduled per
    /// message), and after what it sends on its own (pings, closes).
    public func write(_ bytes: ByteBuffer) {
        guard let context else { return }
        guard ready else {
            queued.append(bytes)
            return
        }
        context.write(wrapOutboundOut(bytes), promise: nil)
    }

    public func flush() {
        if ready { context?.flush() }
    }

    public func setReading(_ reading: Bool) {
        guard let context else { return }
        _ = context.channel.setOption(ChannelOptions.autoRead, value: reading)
        if reading { context.read() }
    }

    public func close() {
        guard let context else { return }
        if !ready { becameReady() }
        delegate = nil
        context.flush()
        context.close(promise: nil)
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        allocator = context.channel.allocator
        isWritable = context.channel.isWritable
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        if let delegate { delegate.tunnelRead(bytes) } else { early.append(bytes) }
        if !sawReadComplete && !readCompleteScheduled {
            // Bytes handed over by the HTTP decoder as it left come outside a read cycle: no
            // read-complete follows them, so one is made.
            readCompleteScheduled = true
            context.eventLoop.assumeIsolated().execute { [self] in
                readCompleteScheduled = false
                delegate?.tunnelReadComplete()
            }
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        sawReadComplete = true
        delegate?.tunnelReadComplete()
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        isWritable = context.channel.isWritable
        delegate?.tunnelWritabilityChanged(isWritable)
        context.fireChannelWritabilityChanged()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        self.context = nil
        ended = true
        let delegate = self.delegate
        self.delegate = nil
        delegate?.tunnelClosed()
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent { delegate?.tunnelDraining() }
        context.fireUserInboundEventTriggered(event)
    }
}

@available(*, unavailable)
extension ChannelByteTunnel: Sendable {}
