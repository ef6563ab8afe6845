import CausewayGraphQL
import CausewayHTTP
import GraphQL
import NIOCore
import NIOPosix
import Synchronization

/// Parses, validates, measures and plans GraphQL documents off the event loops, on a small pool
/// of threads of its own, so a large new document costs its CPU there rather than stalling
/// every connection of a loop (all of it is linear in the document's fields, ~20 µs each). Bounded: past `maxQueued` documents waiting, new ones are refused (503) until
/// the queue drains. Shared by all routes and loops; it lives as long as the process.
final class DocumentChecker: Sendable {
    static let shared = DocumentChecker(threads: max(1, System.coreCount / 2))
    /// Documents up to this size are checked on the loop: ~500 fields at most, a few ms.
    static let inlineBytes = 1024
    static let maxQueued = 256
    static let busy = GatewayError(status: .serviceUnavailable, code: "graphql_busy",
                                   message: "too many new GraphQL documents are waiting to be validated; retry shortly")

    /// The document (and the operation's plan) moves from the pool's thread to the loop once,
    /// whole, and is never shared.
    struct Checked: @unchecked Sendable {
        let check: GraphQLEngine.DocumentCheck
        /// The operation's limits verdict (nil: not measured here), and its plan when within them.
        var measured: GraphQLError?? = nil
        var plans: [OperationPlan] = []
    }

    private let pool: NIOThreadPool
    private let queued = Atomic<Int>(0)

    init(threads: Int) {
        pool = NIOThreadPool(numberOfThreads: threads)
        pool.start()
    }

    /// nil when the queue is full.
    func check(_ query: String, operation: GraphQLHTTPRequest.Operation, route: GraphQLRoute,
               on eventLoop: any EventLoop) -> EventLoopFuture<Checked>? {
        guard queued.add(1, ordering: .relaxed).newValue <= Self.maxQueued else {
            queued.subtract(1, ordering: .relaxed)
            return nil
        }
        let engine = route.engine, prescan = route.prescan, rules = route.rules, limits = route.limits
        let name = operation.operationName, variables = operation.variables
        return pool.runIfActive(eventLoop: eventLoop) { [self] in
            defer { queued.subtract(1, ordering: .relaxed) }
            var checked = Checked(check: engine.parseAndValidate(query, prescan: prescan, rules: rules))
            guard case .valid(let document) = checked.check else { return checked }
            let verdict = engine.check(limits, document: document, operationName: name, variables: variables)
            checked.measured = .some(verdict)
            if verdict == nil { _ = engine.prepare(document, operationName: name, variables: variables, plans: &checked.plans) }
            return checked
        }
    }
}
