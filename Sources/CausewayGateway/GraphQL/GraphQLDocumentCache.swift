import CausewayGraphQL
import COpenSSL
import GraphQL
import Synchronization

/// One loop's parsed and validated documents of a GraphQL route, by query text, so a repeated
/// query skips both. Owned by the loop, so no lock.
///
/// Bounded by a two-generation LRU: a hit moves an entry to the young generation; when the
/// young one is full it becomes the old one and the previous old one is dropped. Every
/// operation is O(1) and at most `capacity` entries are kept.
final class GraphQLDocumentCache {
    private var documents: Generations<CachedDocument>

    init(capacity: Int) {
        documents = Generations(capacity: capacity)
    }

    func document(for query: String) -> CachedDocument? { documents.get(query) }
    func store(_ document: CachedDocument, for query: String) { documents.put(query, document) }
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
/// a hash, for a dictionary lookup.
final class PersistedQueries: Sendable {
    private let queries: Mutex<Generations<String>>

    init(capacity: Int) {
        queries = Mutex(Generations(capacity: capacity))
    }

    func query(hash: String) -> String? { queries.withLock { $0.get(hash) } }
    func persist(_ query: String, hash: String) { queries.withLock { $0.put(hash, query) } }

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
    var young: [String: Value] = [:]
    var old: [String: Value] = [:]

    init(capacity: Int) {
        half = max(1, capacity / 2)
    }

    mutating func get(_ key: String) -> Value? {
        if let value = young[key] { return value }
        guard let value = old.removeValue(forKey: key) else { return nil }
        put(key, value)
        return value
    }

    mutating func put(_ key: String, _ value: Value) {
        if young.count >= half {
            old = young
            young = [:]
        }
        young[key] = value
    }
}

extension Generations: Sendable where Value: Sendable {}
