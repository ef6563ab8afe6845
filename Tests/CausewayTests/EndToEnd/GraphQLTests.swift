import CausewayDemo
import Foundation
import NIOPosix
import Testing

/// GraphQL end to end: schemas/demo.graphql over the demo users and orders services (which
/// count the calls they receive), plus a schema bound to the test upstream for failures.
@Suite(.serialized) struct GraphQLTests {
    static let demoSchema = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("schemas/demo.graphql").path

    /// Fields bound to the test upstream and to a port nobody listens on.
    static let failureSchema = """
        type Query {
          broken: Item @rest(upstream: "origin", path: "/status/500")
          slow: Item @rest(upstream: "origin", path: "/slow?ms=1500")
          refused: Item @rest(upstream: "dead", path: "/x")
          fine: Item @rest(upstream: "origin", path: "/echo")
          required: Item! @rest(upstream: "origin", path: "/status/503")
          pets: [Pet!]! @rest(upstream: "origin", path: "/pets")
          searchable: [Searchable!]! @rest(upstream: "origin", path: "/pets")
          untyped: Pet @rest(upstream: "origin", path: "/pet-untyped")
        }
        type Item { method: String, path: String }
        interface Pet { name: String! }
        type Dog implements Pet { name: String!, barkVolume: Int }
        type Cat implements Pet { name: String!, meowVolume: Int }
        union Searchable = Dog | Cat
        """

    func withGateway(introspection: Bool = true, _ body: (GatewayHarness, DemoServices) async throws -> Void) async throws {
        let services = try await DemoServices.start(on: MultiThreadedEventLoopGroup.singleton.next(), usersPort: 0, ordersPort: 0)
        let failureFile = FileManager.default.temporaryDirectory.appendingPathComponent("failures-\(UUID().uuidString).graphql").path
        try Self.failureSchema.write(toFile: failureFile, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: failureFile) }
        let dead = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        let deadPort = dead.localAddress!.port!
        try await dead.close()
        let gateway = try await GatewayHarness.start(
            routes: """
                  - {name: graphql, match: {path: /graphql}, graphql: {schema: "\(Self.demoSchema)", debug: true,
                     introspection: \(introspection), batching: {max_operations: 3}}}
                  - {name: failures, match: {path: /failures}, graphql: {schema: "\(failureFile)", upstream_timeout: 300ms}}
                  - {name: limited, match: {path: /limited}, graphql: {schema: "\(Self.demoSchema)",
                     limits: {max_depth: 3, max_aliases: 1, max_root_fields: 2, max_complexity: 50, max_tokens: 40},
                     persisted_queries: {enabled: false}}}
                """,
            extraUpstreams: """
                  users: {endpoints: [{address: "127.0.0.1:\(services.usersChannel.localAddress!.port!)"}]}
                  orders: {endpoints: [{address: "127.0.0.1:\(services.ordersChannel.localAddress!.port!)"}]}
                  dead: {endpoints: [{address: "127.0.0.1:\(deadPort)"}]}
                """)
        do {
            try await gateway.run { try await body($0, services) }
        } catch {
            await services.stop()
            throw error
        }
        await services.stop()
    }

    func post(_ gateway: GatewayHarness, _ json: String, path: String = "/graphql", over transport: Transport = .http1,
              accept: String? = nil) throws -> CurlResult {
        try Curl.run(["-X", "POST", "-H", "content-type: application/json", "--data-binary", json]
                     + (accept.map { ["-H", "accept: \($0)"] } ?? []) + ["\(gateway.url(transport))\(path)"], over: transport)
    }

    static func query(_ text: String, variables: String = "null") -> String {
        #"{"query": "\#(text.replacingOccurrences(of: "\"", with: "\\\""))", "variables": \#(variables)}"#
    }

    @Test(arguments: Transport.allCases)
    func usersWithTheirOrdersCostTwoCallsNotNPlusOne(over transport: Transport) async throws {
        try await withGateway { gateway, services in
            let before = services.counts.total
            let result = try post(gateway, Self.query("{ users(limit: 5) { id name orders { id total } } }"), over: transport)
            #expect(result.status == 200)
            #expect(services.counts.total - before == 2, "one users call, one batched orders call")
            #expect(result.header("x-causeway-upstream-calls") == "2")
            #expect(result.body.hasPrefix(#"{"data":{"users":[{"id":"1","name":"Ada Lovelace","orders":[{"id":"101","total":42.5},{"id":"102","total":12}]},{"id":"2","#))
            #expect(result.body.contains(#"{"id":"4","name":"Edsger Dijkstra","orders":[]}"#), "a user without orders gets []")
        }
    }

    @Test func resultsFollowTheSpecification() async throws {
        try await withGateway { gateway, services in
            let text = """
                query Q($id: ID!, $withEmail: Boolean = false) {
                  first: user(id: $id) { ...Names email @include(if: $withEmail) }
                  second: user(id: "2") { __typename name }
                  again: user(id: $id) { id }
                }
                fragment Names on User { name id }
                """
            let before = services.counts.total
            let result = try post(gateway, Self.query(text.replacingOccurrences(of: "\n", with: " "), variables: #"{"id": "1"}"#))
            #expect(result.body == #"{"data":{"first":{"name":"Ada Lovelace","id":"1"},"second":{"__typename":"User","name":"Alan Turing"},"again":{"id":"1"}}}"# + "\n")
            #expect(services.counts.total - before == 2, "user(id: 1) asked twice is called once")
        }
    }

    @Test func mutationsAndGetRules() async throws {
        try await withGateway { gateway, _ in
            let created = try post(gateway, Self.query(#"mutation { createOrder(input: {userId: "3", item: "Nanosecond wire", total: 1.5}) { item user { name } } }"#))
            #expect(created.body == #"{"data":{"createOrder":{"item":"Nanosecond wire","user":{"name":"Grace Hopper"}}}}"# + "\n")
            let get = try Curl.run(["-G", "--data-urlencode", #"query={ order(id: "103") { item } }"#, "\(gateway.url)/graphql"])
            #expect(get.status == 200)
            #expect(get.body == #"{"data":{"order":{"item":"Enigma rotor"}}}"# + "\n")
            let mutationOverGet = try Curl.run(["-G", "--data-urlencode", #"query=mutation { createOrder(input: {userId: "1", item: "x", total: 1}) { id } }"#,
                                                "\(gateway.url)/graphql"])
            #expect(mutationOverGet.status == 405)
            #expect(mutationOverGet.header("allow") == "POST")
            let put = try Curl.run(["-X", "PUT", "\(gateway.url)/graphql"])
            #expect(put.status == 405)
        }
    }

    @Test func invalidOperationsAreAnsweredPerGraphQLOverHTTP() async throws {
        try await withGateway { gateway, services in
            let before = services.counts.total
            let body = Self.query("{ users { nme } }")
            let modern = try post(gateway, body, accept: "application/graphql-response+json")
            #expect(modern.status == 400)
            #expect(modern.header("content-type")?.hasPrefix("application/graphql-response+json") == true)
            #expect(modern.body.contains(#""message":"Cannot query field \"nme\" on type \"User\". Did you mean \"name\"?","locations":[{"line":1,"column":11}]"#))
            let legacy = try post(gateway, body)
            #expect(legacy.status == 200, "application/json answers well-formed requests with 200")
            #expect(legacy.header("content-type")?.hasPrefix("application/json") == true)
            let syntax = try post(gateway, Self.query("{ users { "), accept: "application/graphql-response+json")
            #expect(syntax.status == 400)
            #expect(syntax.body.contains("Syntax Error"))
            let badVariable = try post(gateway, Self.query("query Q($id: ID!) { user(id: $id) { name } }", variables: #"{"id": {"no": 1}}"#),
                                       accept: "application/graphql-response+json")
            #expect(badVariable.status == 400)
            #expect(badVariable.body.contains(#"Variable \"$id\""#) && !badVariable.body.contains(#""data""#), "\(badVariable.body)")
            let unknownOperation = try post(gateway, #"{"query": "query A { users { id } }", "operationName": "B"}"#,
                                            accept: "application/graphql-response+json")
            #expect(unknownOperation.status == 400)
            #expect(unknownOperation.body.contains("Unknown operation named"), "\(unknownOperation.body)")
            let overlap = try post(gateway, Self.query("{ users { id: name id } }"), accept: "application/graphql-response+json")
            #expect(overlap.status == 400)
            #expect(overlap.body.contains(#"Fields \"id\" conflict because \"name\" and \"id\" are different fields."#), "\(overlap.body)")
            #expect(try post(gateway, "not json").status == 400)
            #expect(try Curl.run(["-X", "POST", "-H", "content-type: text/plain", "-d", "{}", "\(gateway.url)/graphql"]).status == 415)
            #expect(services.counts.total == before, "nothing invalid reached an upstream")
        }
    }

    /// A gateway error on a GraphQL route (here 415) is a GraphQL `errors` answer, with the
    /// gateway's code upper-cased in `extensions`, so GraphQL clients can read it.
    @Test func gatewayErrorsOnGraphQLRoutesUseGraphQLErrors() async throws {
        try await withGateway { gateway, _ in
            let result = try Curl.run(["-X", "POST", "-H", "content-type: text/plain", "-H", "x-request-id: gql-err-1",
                                       "-d", "{}", "\(gateway.url)/graphql"])
            #expect(result.status == 415)
            let object = try JSONSerialization.jsonObject(with: Data(result.body.utf8)) as? [String: Any]
            let error = (object?["errors"] as? [[String: Any]])?.first
            let extensions = error?["extensions"] as? [String: Any]
            #expect(extensions?["code"] as? String == "UNSUPPORTED_MEDIA_TYPE", "\(result.body)")
            #expect(extensions?["request_id"] as? String == "gql-err-1")
            #expect(object?["error"] == nil, "not the REST shape")
        }
    }

    @Test func variablesAreCoercedToTheirDeclaredTypes() async throws {
        try await withGateway { gateway, _ in
            let mutation = "mutation M($order: OrderInput!) { createOrder(input: $order) { item total user { name } } }"
            let created = try post(gateway, Self.query(mutation, variables: #"{"order": {"userId": 5, "item": "Liskov's book", "total": 7}}"#))
            #expect(created.body == #"{"data":{"createOrder":{"item":"Liskov's book","total":7,"user":{"name":"Barbara Liskov"}}}}"# + "\n",
                    "an Int id coerces to ID, an Int total to Float")
            let missing = try post(gateway, Self.query("query Q($id: ID!) { user(id: $id) { name } }"),
                                   accept: "application/graphql-response+json")
            #expect(missing.status == 400)
            #expect(missing.body.contains(#"Variable \"$id\" of required type \"ID!\" was not provided."#), "\(missing.body)")
            let wrongField = try post(gateway, Self.query(mutation, variables: #"{"order": {"userId": "1", "item": "x", "total": 1, "color": "red"}}"#),
                                      accept: "application/graphql-response+json")
            #expect(wrongField.status == 400)
            #expect(wrongField.body.contains(#"Field \"color\" is not defined by type \"OrderInput\"."#), "\(wrongField.body)")
        }
    }

    @Test func batchedOperationsAreBounded() async throws {
        try await withGateway { gateway, _ in
            let one = Self.query(#"{ user(id: "5") { name } }"#)
            let two = Self.query(#"{ order(id: "105") { item } }"#)
            let batch = try post(gateway, "[\(one), \(two)]")
            #expect(batch.body == #"[{"data":{"user":{"name":"Barbara Liskov"}}},{"data":{"order":{"item":"CLU compiler"}}}]"# + "\n")
            let tooMany = try post(gateway, "[\(one), \(one), \(one), \(one)]")
            #expect(tooMany.status == 400)
            #expect(tooMany.body.contains("1 to 3 operations"))
        }
    }

    @Test func upstreamFailuresBecomeErrorsWithCodesAndPartialData() async throws {
        try await withGateway { gateway, _ in
            let result = try post(gateway, Self.query("{ fine { method } broken { path } slow { path } refused { path } }"), path: "/failures")
            #expect(result.status == 200)
            let object = try JSONSerialization.jsonObject(with: Data(result.body.utf8)) as? [String: Any]
            let data = object?["data"] as? [String: Any]
            #expect((data?["fine"] as? [String: Any])?["method"] as? String == "GET", "partial data kept")
            #expect(data?["broken"] is NSNull && data?["slow"] is NSNull && data?["refused"] is NSNull)
            let errors = (object?["errors"] as? [[String: Any]]) ?? []
            func error(_ field: String) -> [String: Any]? {
                errors.first { ($0["path"] as? [String]) == [field] }?["extensions"] as? [String: Any]
            }
            #expect(error("broken")?["code"] as? String == "UPSTREAM_ERROR")
            #expect(error("broken")?["status"] as? Int == 500)
            #expect(error("slow")?["code"] as? String == "UPSTREAM_TIMEOUT")
            #expect(error("refused")?["code"] as? String == "UPSTREAM_UNAVAILABLE")
            // A failed non-null field nulls its nearest nullable parent: here, data itself.
            let required = try post(gateway, Self.query("{ fine { method } required { path } }"), path: "/failures")
            #expect(required.body.hasPrefix(#"{"data":null,"errors":[{"message":"upstream \"origin\" answered 503""#), "\(required.body)")
        }
    }

    @Test func limitsAreCheckedBeforeAnythingRuns() async throws {
        try await withGateway { gateway, services in
            let before = services.counts.total
            let cases: [(String, String)] = [
                ("{ users { orders { user { name } } } }", "MAX_DEPTH_EXCEEDED"),
                (#"{ a: user(id: "1") { name } b: user(id: "2") { name } }"#, "MAX_ALIASES_EXCEEDED"),
                (#"{ user(id: "1") { id } order(id: "101") { id } users { id } }"#, "MAX_ROOT_FIELDS_EXCEEDED"),
                ("{ users(limit: 100) { id } }", "MAX_COMPLEXITY_EXCEEDED"),
                (#"{ user(id: "1") { "# + String(repeating: "id ", count: 45) + "} }", "MAX_TOKENS_EXCEEDED"),
            ]
            for (query, code) in cases {
                let result = try post(gateway, Self.query(query), path: "/limited", accept: "application/graphql-response+json")
                #expect(result.status == 400, "\(code)")
                #expect(result.body.contains(#""extensions":{"code":"\#(code)"}"#), "\(code): \(result.body)")
                #expect(!result.body.contains(#""path""#), "a request error has no path")
            }
            let within = try post(gateway, Self.query("{ users(limit: 2) { name } }"), path: "/limited")
            #expect(within.body == #"{"data":{"users":[{"name":"Ada Lovelace"},{"name":"Alan Turing"}]}}"# + "\n")
            #expect(services.counts.total - before == 1, "only the query within limits ran")
        }
    }

    /// Automatic persisted queries (Apollo's protocol): a hash alone is answered once the
    /// query has been sent with it.
    @Test func automaticPersistedQueries() async throws {
        try await withGateway { gateway, _ in
            let query = #"{ user(id: "3") { name } }"#
            let hash = sha256(query)
            func extensions(_ hash: String) -> String {
                #""extensions": {"persistedQuery": {"version": 1, "sha256Hash": "\#(hash)"}}"#
            }
            let unknown = try post(gateway, "{\(extensions(hash))}")
            #expect(unknown.body.contains(#""message":"PersistedQueryNotFound""#) && unknown.body.contains("PERSISTED_QUERY_NOT_FOUND"))
            let register = try post(gateway, String(Self.query(query).dropLast()) + ", \(extensions(hash))}")
            #expect(register.body == #"{"data":{"user":{"name":"Grace Hopper"}}}"# + "\n")
            let byHash = try post(gateway, "{\(extensions(hash))}")
            #expect(byHash.body == register.body, "the hash alone now runs the query")
            let get = try Curl.run(["-G", "--data-urlencode", #"extensions={"persistedQuery":{"version":1,"sha256Hash":"\#(hash)"}}"#,
                                    "\(gateway.url)/graphql"])
            #expect(get.body == register.body, "over GET too")
            let wrong = try post(gateway, String(Self.query(query).dropLast()) + ", \(extensions(String(repeating: "0", count: 64)))}")
            #expect(wrong.body.contains("provided sha does not match query"))
            let disabled = try post(gateway, "{\(extensions(hash))}", path: "/limited")
            #expect(disabled.body.contains("PERSISTED_QUERY_NOT_SUPPORTED"))
        }
    }

    func sha256(_ text: String) -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = ["dgst", "-sha256", "-r"]
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try? process.run()
        input.fileHandleForWriting.write(Data(text.utf8))
        try? input.fileHandleForWriting.close()
        let data = readToEnd(output.fileHandleForReading.fileDescriptor)
        process.waitUntilExit()
        return String(String(decoding: data, as: UTF8.self).prefix(64))
    }

    @Test func theClientsCredentialsAndRequestIDReachTheUpstream() async throws {
        try await withGateway { gateway, _ in
            let result = try Curl.run(["-X", "POST", "-H", "content-type: application/json", "-H", "authorization: Bearer t0ken",
                                       "-H", "x-request-id: graphql-test-1", "-H", "cookie: secret=1",
                                       "--data-binary", Self.query("{ fine { method path } }"), "\(gateway.url)/failures"])
            #expect(result.body == #"{"data":{"fine":{"method":"GET","path":"/echo"}}}"# + "\n")
            #expect(gateway.upstream.lastHeader("authorization") == ["Bearer t0ken"])
            #expect(gateway.upstream.lastHeader("x-request-id") == ["graphql-test-1"])
            #expect(gateway.upstream.lastHeader("cookie").isEmpty, "only selected headers go upstream")
        }
    }

    /// Interfaces and unions resolve by the `__typename` the upstream's JSON carries.
    @Test func interfacesAndUnionsResolveByTypename() async throws {
        try await withGateway { gateway, _ in
            let query = "{ pets { __typename name ... on Dog { barkVolume } ... on Cat { meowVolume } } "
                + "searchable { ... on Pet { name } ... on Cat { meowVolume } } untyped { name } }"
            let result = try post(gateway, Self.query(query), path: "/failures")
            #expect(result.body.hasPrefix(#"{"data":{"pets":[{"__typename":"Dog","name":"Rex","barkVolume":3},{"__typename":"Cat","name":"Tom","meowVolume":5}],"searchable":[{"name":"Rex"},{"name":"Tom","meowVolume":5}],"untyped":null},"errors":[{"message":"Abstract type \"Pet\" must resolve to an Object type at runtime for field \"Query.untyped\""#),
                    "\(result.body)")
        }
    }

    @Test func introspectionCanBeTurnedOff() async throws {
        try await withGateway { gateway, _ in
            let on = try post(gateway, Self.query("{ __schema { queryType { name } } }"))
            #expect(on.body == #"{"data":{"__schema":{"queryType":{"name":"Query"}}}}"# + "\n")
        }
        try await withGateway(introspection: false) { gateway, _ in
            let off = try post(gateway, Self.query("{ __schema { queryType { name } } }"), accept: "application/graphql-response+json")
            #expect(off.status == 400)
            #expect(off.body.contains("introspection"), "\(off.body)")
        }
    }
}
