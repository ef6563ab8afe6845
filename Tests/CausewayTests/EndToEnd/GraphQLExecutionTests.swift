import Foundation
import Testing

/// The executor's results against upstream JSON written into the schema itself (the test
/// upstream's `/json?body=...` answers with it): null propagation through lists, leaf
/// serialization and its errors, renames, selectors, plans per `@skip`/`@include` values,
/// introspection next to data, and a batched field's matching.
@Suite(.serialized) struct GraphQLExecutionTests {
    static func json(_ text: String) -> String {
        "/json?body=" + text.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
    }

    static let people = #"[{"id":1,"name":"Ann","first_name":"A","nickname":"an","role":"ADMIN","teamId":"7"},"#
        + #"{"id":"2","name":null,"role":"GUEST","teamId":8}]"#
    static let scalars = #"{"int":3.0,"float":"x","string":12,"bool":true,"id":7,"big":3000000000,"ratio":2.50,"#
        + #""escaped":"a\/b \u00e9","json":{"a":[1,2]},"many":5}"#
    static let teams = #"{"data":{"items":[{"id":7,"name":"Seven"},{"id":"8","name":"Eight"},{"id":9,"name":"Unused"}]}}"#

    static let schema = """
        type Query {
          people: [Person] @rest(upstream: "origin", path: "\(json(people))")
          strict: [Person!]! @rest(upstream: "origin", path: "\(json(people))")
          scalars: Scalars @rest(upstream: "origin", path: "\(json(scalars))")
          wrapped: [Team!]! @rest(upstream: "origin", path: "\(json(teams))", selector: "data.items")
        }
        type Person {
          id: ID!
          name: String!
          firstName: String
          nick: String @from(name: "nickname")
          role: Role
          teamId: ID
          team(size: String = "all"): Team @rest(upstream: "origin", path: "/never-called/{$parent.teamId}",
                           batch: {path: "\(json(teams))&ids={$batch.teamId}&size={$args.size}", key: "id"}, selector: "data.items")
        }
        type Team { id: ID!, name: String! }
        enum Role { ADMIN, USER }
        scalar JSON
        type Scalars { int: Int, float: Float, string: String, bool: Boolean, id: ID, big: Int, ratio: Float,
                       escaped: String, json: JSON, many: [Int] }
        """

    func withGateway(_ body: (GatewayHarness) async throws -> Void) async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("execution-\(UUID().uuidString).graphql").path
        try Self.schema.write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let gateway = try await GatewayHarness.start(routes: """
              - {name: graphql, match: {path: /graphql}, graphql: {schema: "\(file)", debug: true}}
            """)
        try await gateway.run(body)
    }

    func run(_ gateway: GatewayHarness, _ query: String, variables: String = "null") throws -> (body: String, object: [String: Any]) {
        let text = #"{"query": "\#(query.replacingOccurrences(of: "\"", with: "\\\""))", "variables": \#(variables)}"#
        let result = try Curl.run(["-X", "POST", "-H", "content-type: application/json", "--data-binary", text, "\(gateway.url)/graphql"])
        #expect(result.status == 200)
        let object = (try? JSONSerialization.jsonObject(with: Data(result.body.utf8))) as? [String: Any] ?? [:]
        return (result.body, object)
    }

    func errors(_ object: [String: Any]) -> [(message: String, path: [String])] {
        ((object["errors"] as? [[String: Any]]) ?? []).map { error in
            (error["message"] as? String ?? "", (error["path"] as? [Any] ?? []).map { "\($0)" })
        }
    }

    @Test func aNullNonNullFieldNullsItsNearestNullableParent() async throws {
        try await withGateway { gateway in
            let nullable = try run(gateway, "{ people { id name firstName nick } }")
            #expect(nullable.body.hasPrefix(#"{"data":{"people":[{"id":"1","name":"Ann","firstName":"A","nick":"an"},null]},"errors":["#),
                    "the item is nullable: it alone becomes null; \(nullable.body)")
            #expect(errors(nullable.object).map(\.message) == ["Cannot return null for non-nullable field Person.name."])
            #expect(errors(nullable.object).first?.path == ["people", "1", "name"])
            let strict = try run(gateway, "{ strict { id name } }")
            #expect(strict.body.hasPrefix(#"{"data":null,"errors":["#), "[Person!]! carries it to data: \(strict.body)")
            #expect(errors(strict.object).first?.path == ["strict", "1", "name"])
        }
    }

    @Test func leavesAreSerializedOrFailAtTheirPath() async throws {
        try await withGateway { gateway in
            let result = try run(gateway, "{ scalars { int float string bool id big ratio escaped json many } }")
            let scalars = (result.object["data"] as? [String: Any])?["scalars"] as? [String: Any]
            #expect(scalars?["int"] as? Int == 3, "3.0 is an Int")
            #expect(scalars?["float"] is NSNull, "\"x\" is no Float")
            #expect(scalars?["string"] as? String == "12")
            #expect(scalars?["bool"] as? Bool == true)
            #expect(scalars?["id"] as? String == "7", "an integer ID is written as a string")
            #expect(scalars?["big"] is NSNull, "3000000000 is outside Int's 32 bits")
            #expect(result.body.contains(#""ratio":2.5,"#), "\(result.body)")
            #expect(result.body.contains(#""escaped":"a/b é""#), "escapes written the canonical way: \(result.body)")
            #expect(result.body.contains(#""json":{"a":[1,2]}"#), "a custom scalar passes JSON through")
            #expect(result.body.contains(#""many":[5]"#), "a single value where a list is expected is a list of one")
            #expect(Set(errors(result.object).map { $0.path.joined(separator: ".") }) == ["scalars.float", "scalars.big"])
            let role = try run(gateway, "{ people { role } }")
            #expect(role.body.hasPrefix(#"{"data":{"people":[{"role":"ADMIN"},{"role":null}]}"#), "\(role.body)")
            #expect(errors(role.object).first?.path == ["people", "1", "role"])
            #expect(errors(role.object).first?.message.contains("GUEST") == true, "\(role.body)")
        }
    }

    @Test func selectorsAndBatchedMatchesByKey() async throws {
        try await withGateway { gateway in
            let wrapped = try run(gateway, "{ wrapped { id name } }")
            #expect(wrapped.body == #"{"data":{"wrapped":[{"id":"7","name":"Seven"},{"id":"8","name":"Eight"},{"id":"9","name":"Unused"}]}}"# + "\n")
            // Person.team is batched: the parents' "7" (a string) and 8 (a number) match the
            // items' 7 and "8", however each side spells them, in one call.
            let teams = try Curl.run(["-X", "POST", "-H", "content-type: application/json", "--data-binary",
                                      #"{"query": "{ people { nick team { name } } }"}"#, "\(gateway.url)/graphql"])
            #expect(teams.body == #"{"data":{"people":[{"nick":"an","team":{"name":"Seven"}},{"nick":null,"team":{"name":"Eight"}}]}}"# + "\n",
                    "\(teams.body)")
            #expect(teams.header("x-causeway-upstream-calls") == "2", "people, then one batched call for both teams")
            #expect(gateway.upstream.lastPath.hasSuffix("&ids=7,8&size=all"), "distinct parent values, the argument's default: \(gateway.upstream.lastPath)")
        }
    }

    @Test func skipAndIncludeVariablesEachGetTheirPlan() async throws {
        try await withGateway { gateway in
            let query = "query Q($full: Boolean!) { wrapped { id name @include(if: $full) } }"
            for _ in 0..<2 {  // the second round is served by the cached plans
                let full = try run(gateway, query, variables: #"{"full": true}"#)
                #expect(full.body.hasPrefix(#"{"data":{"wrapped":[{"id":"7","name":"Seven"},"#), "\(full.body)")
                let short = try run(gateway, query, variables: #"{"full": false}"#)
                #expect(short.body.hasPrefix(#"{"data":{"wrapped":[{"id":"7"},{"id":"8"},"#), "\(short.body)")
            }
        }
    }

    @Test func introspectionAndDataInOneOperation() async throws {
        try await withGateway { gateway in
            let result = try run(gateway, #"{ wrapped { id } role: __type(name: "Role") { name kind } __typename }"#)
            #expect(result.body == #"{"data":{"wrapped":[{"id":"7"},{"id":"8"},{"id":"9"}],"role":{"name":"Role","kind":"ENUM"},"#
                    + #""__typename":"Query"}}"# + "\n")
        }
    }
}
