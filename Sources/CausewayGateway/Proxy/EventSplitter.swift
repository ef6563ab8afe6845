import NIOCore

/// Cuts an event stream's bytes into whole events (blocks ended by a blank line; CRLF, LF and
/// CR line ends in any mix, split anywhere across chunks), as a value. The fan-out hub parses
/// each event once here, then writes the same bytes to every client.
struct EventSplitter {
    struct Event: Sendable {
        /// The block, blank line included, as the upstream wrote it.
        var bytes: ByteBuffer
        /// Its `id:` field, if it has one (the last one wins, as in EventSource).
        var id: String?
        /// Only comments (`: keep-alive`): passed on, never kept for replay.
        var isComment: Bool
    }

    /// An event larger than this is not an event stream any client should hold: the upstream
    /// is dropped (and reconnected) rather than buffered without bound.
    static let maxEventSize = 1 << 20

    private var pending: ByteBuffer?
    private var scanned = 0
    private var lineLength = 0
    private var lastWasCR = false

    enum Failure: Error { case eventTooLarge }

    /// Feeds a chunk; returns the events it completed.
    mutating func feed(_ chunk: ByteBuffer) throws(Failure) -> [Event] {
        if pending == nil || pending!.readableBytes == 0 {
            pending = chunk
            scanned = 0
        } else {
            pending!.discardReadBytes()  // only the partial event is kept
            pending!.writeImmutableBuffer(chunk)
        }
        var events: [Event] = []
        var blockStart = 0
        let view = pending!.readableBytesView
        var index = scanned
        while index < view.count {
            let byte = view[view.startIndex + index]
            index += 1
            if byte == 0x0A && lastWasCR {
                // The LF of a CRLF. When its CR ended a block, the block went without it (not
                // waiting for a byte that may never come); it leads the next block, where
                // EventSource reads it as an empty line: every byte is passed on, in order.
                lastWasCR = false
                continue
            }
            lastWasCR = byte == 0x0D
            guard byte == 0x0A || byte == 0x0D else {
                lineLength += 1
                continue
            }
            if lineLength == 0 {
                // A blank line: the block ends here (one made only of blank lines is skipped).
                if index - blockStart > 1 {
                    let slice = pending!.getSlice(at: pending!.readerIndex + blockStart, length: index - blockStart)!
                    if let event = Self.event(slice) { events.append(event) }
                }
                blockStart = index
            }
            lineLength = 0
        }
        pending!.moveReaderIndex(forwardBy: blockStart)
        scanned = index - blockStart
        if pending!.readableBytes == 0 {
            pending = nil
            scanned = 0
        } else if pending!.readableBytes > Self.maxEventSize {
            throw .eventTooLarge
        }
        return events
    }

    /// Forget a partial event (the upstream went away in the middle of it).
    mutating func reset() {
        self = EventSplitter()
    }

    /// The event's id and kind, read from its lines; nil for a block with no field at all.
    private static func event(_ bytes: ByteBuffer) -> Event? {
        var id: String?
        var sawField = false
        var sawComment = false
        let text = String(buffer: bytes)
        for line in text.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r" || $0 == "\r\n" }) {
            if line.first == ":" {
                sawComment = true
                continue
            }
            sawField = true
            let name = line.prefix { $0 != ":" }
            if name == "id" {
                var value = line.dropFirst(name.count).dropFirst()  // the colon
                if value.first == " " { value = value.dropFirst() }
                // An id with NUL is ignored (WHATWG HTML §9.2.6).
                if !value.contains("\0") { id = String(value) }
            }
        }
        guard sawField || sawComment else { return nil }
        return Event(bytes: bytes, id: id, isComment: !sawField)
    }
}
