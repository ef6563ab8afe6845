import CNghttp2
import NIOCore

/// Builds an nghttp2_nv array over one contiguous byte buffer for the duration of `body`
/// (nghttp2 copies names and values during the submit call). Server and client use it.
public func withNGHTTP2Headers<R>(_ fields: [(String, String)], _ body: (UnsafeMutableBufferPointer<nghttp2_nv>) -> R) -> R {
    var bytes: [UInt8] = []
    var ranges: [(Int, Int, Int, Int)] = []
    for (name, value) in fields {
        let n = bytes.count
        bytes.append(contentsOf: name.utf8)
        let v = bytes.count
        bytes.append(contentsOf: value.utf8)
        ranges.append((n, v - n, v, bytes.count - v))
    }
    return bytes.withUnsafeMutableBufferPointer { storage in
        var nva = ranges.map { r in
            nghttp2_nv(name: storage.baseAddress! + r.0, value: storage.baseAddress! + r.2, namelen: r.1, valuelen: r.3,
                       flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
        }
        return nva.withUnsafeMutableBufferPointer { body($0) }
    }
}

/// Body chunks waiting for nghttp2's data provider to pull them: a queue of buffers (one growing
/// buffer would never give memory back), copied out as the peer's window allows.
public struct ChunkQueue {
    private var chunks = CircularBuffer<ByteBuffer>()
    public private(set) var bytes = 0

    public init() {}

    public mutating func append(_ chunk: ByteBuffer) {
        chunks.append(chunk)
        bytes += chunk.readableBytes
    }

    /// Copies as much as fits into `target`; returns the count.
    public mutating func pop(into target: UnsafeMutableRawBufferPointer) -> Int {
        var count = 0
        while count < target.count, var chunk = chunks.popFirst() {
            let n = min(chunk.readableBytes, target.count - count)
            chunk.withUnsafeReadableBytes { source in
                UnsafeMutableRawBufferPointer(rebasing: target[count..<(count + n)])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: source[0..<n]))
            }
            chunk.moveReaderIndex(forwardBy: n)
            if chunk.readableBytes > 0 { chunks.prepend(chunk) }
            count += n
        }
        bytes -= count
        return count
    }
}
