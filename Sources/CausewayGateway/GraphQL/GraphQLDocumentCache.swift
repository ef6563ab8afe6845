import CausewayGraphQL
import COpenSSL
import GraphQL
import Synchronization

/// One loop's parsed and validated documents of a GraphQL route, by query text, so a repeated
/// query skips both. Owned by the loop, so no lock.
///
/// Bounded by a two-generation LRU: a hit moves an entry to the young generation; when the
/// young one is full it becomes the old one and the previous old one is dropped. Every
/// operation is O(1); at most `capacity` entries and about `maxBytes` of query text (a parsed
/// document costs a small multiple of its text) are kept.
final class GraphQLDocumentCache {
    private var documents: Generations<CachedDocument>
    static let defaultMaxBytes = 32 << 20

    init(capacity: Int, maxBytes: Int = defaultMaxBytes) {
        documents = Generations(capacity: capacity, maxBytes: maxBytes)
    }

    func document(for query: String) -> CachedDocument? { documents.get(query) }
    func store(_ document: CachedDocument, for query: String) { documents.put(query, document, bytes: query.utf8.count) }
}

/// A valid document and the plans compiled for its operations (one per operation name and
/// `@skip`/`@include` variables), so a repeated query also skips planning.
final class CachedDocument {
    let document: Document
    var plans: [OperationPlan] = []
    /// Operations (by name, "" for none) that declare no variables and were within the
    /// route's limits: they need no measuring again.
    var withinLimits: Set<String> = []

    init(_ document: Document) {
        self.document = document
    }
}

/// A route's automatic persisted queries, by SHA-256, shared by all loops: a client registers
/// a query once, whichever loop its connection landed on. Locked only by requests that use
/// a hash, for a dictionary lookup. Only documents that parsed and validated are stored, and
/// the store is bounded in bytes as well as entries.
final class PersistedQueries: Sendable {
    private let queries: Mutex<Generations<String>>
    static let defaultMaxBytes = 32 << 20

    init(capacity: Int, maxBytes: Int) {
        queries = Mutex(Generations(capacity: capacity, maxBytes: maxBytes))
    }

    func query(hash: String) -> String? { queries.withLock { $0.get(hash) } }
    func persist(_ query: String, hash: String) {
        queries.withLock { $0.put(hash, query, bytes: query.utf8.count + hash.utf8.count) }
    }

    /// Lower-case hex SHA-256, as clients send `extensions.persistedQuery.sha256Hash`.
    static func sha256(_ text: String) -> String {
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let bytes = Array(text.utf8)
        _ = EVP_Digest(bytes, bytes.count, &digest, &length, EVP_sha256(), nil)
        let hex = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(Int(length) * 2)
        for byte in digest.prefix(Int(length)) {
            out.append(hex[Int(byte >> 4)])
            out.append(hex[Int(byte & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

private struct Generations<Value> {
    let half: Int
    let halfBytes: Int
    var young: [String: (value: Value, bytes: Int)] = [:]
    var old: [String: (value: Value, bytes: Int)] = [:]
    var youngBytes = 0

    init(capacity: Int, maxBytes: Int) {
        half = max(1, capacity / 2)
        halfBytes = max(1, maxBytes / 2)
    }

    mutating func get(_ key: String) -> Value? {
        if let entry = young[key] { return entry.value }
        guard let entry = old.removeValue(forKey: key) else { return nil }
        put(key, entry.value, bytes: entry.bytes)
        return entry.value
    }

    /// An entry larger than a generation's share is not kept at all.
    mutating func put(_ key: String, _ value: Value, bytes: Int) {
        guard bytes <= halfBytes else { return }
        if young.count >= half || youngBytes + bytes > halfBytes {
            old = young
            young = [:]
            youngBytes = 0
        }
        if let previous = young.updateValue((value, bytes), forKey: key) { youngBytes -= previous.bytes }
        youngBytes += bytes
    }
}

extension Generations: Sendable where Value: Sendable {}
