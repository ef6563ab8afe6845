import CausewayGraphQL
import Testing

/// Schema loading and URL templates, without sockets.
@Suite struct GraphQLSchemaTests {
    func errors(_ sdl: String, upstreams: Set<String> = ["users", "orders"]) -> [String] {
        do {
            _ = try SchemaLoader.load(text: sdl, file: "s.graphql", upstreams: upstreams)
            return []
        } catch {
            return error.errors.map(\.description)
        }
    }

    @Test func bindingsCompileFromTheDirective() throws {
        let loaded = try SchemaLoader.load(text: """
            type Query { user(id: ID!): User @rest(upstream: "users", path: "/users/{$args.id}", selector: "data") }
            type User {
              id: ID!
              firstName: String @from(name: "first")
              orders(status: String = "open"): [Order!]! @rest(upstream: "orders", path: "/orders?u={$parent.id}",
                                    batch: {path: "/orders?u={$batch.id}&s={$args.status}", key: "userId"})
            }
            type Order { id: ID! }
            """, file: "s.graphql", upstreams: ["users", "orders"])
        let user = try #require(loaded.bindings["Query.user"])
        #expect(user.upstream == "users" && user.method == "GET" && user.selector == ["data"] && !user.isList)
        let orders = try #require(loaded.bindings["User.orders"])
        #expect(orders.isList && orders.batch?.key == "userId" && orders.batch?.parentField == "id")
        #expect(loaded.renames == ["User.firstName": "first"])
    }

    @Test func loadErrorsPointAtTheirPlace() {
        let result = errors("""
            type Query {
              user(id: ID!): User @rest(upstream: "userz", path: "/users/{$args.idd}")
              users: [User!]! @rest(upstream: "users", path: "users", method: "FETCH")
              top: User @rest(upstream: "users", path: "/u/{$parent.id}")
            }
            type User { id: ID!, n: Int @rest(upstream: "users", path: "/n", batch: {path: "/n?ids={$batch.id}", key: "id"}) }
            """)
        #expect(result.contains(#"s.graphql:2:29: user: unknown upstream "userz""#))
        #expect(result.contains(#"s.graphql:2:48: user: unknown template variable "$args.idd": the field has no argument "idd""#))
        #expect(result.contains { $0.hasPrefix("s.graphql:3:") && $0.contains(#"users: @rest(path:) must start with "/""#) })
        #expect(result.contains { $0.hasPrefix("s.graphql:3:") && $0.contains("method must be one of") })
        #expect(result.contains { $0.hasPrefix("s.graphql:4:") && $0.contains(#""$parent.id" on a root field"#) })
        #expect(result.contains { $0.hasPrefix("s.graphql:6:") && $0.contains("type mismatch") })
        #expect(errors("type Query { a: Strin }").first?.contains("Unknown type \"Strin\"") == true)
        #expect(errors("type Query { a: String").first?.hasPrefix("s.graphql:1:") == true, "syntax errors too")
    }

    @Test func templatesEncodeWhatTheySubstitute() throws {
        let template = try PathTemplate.parse("/search?q={$args.q}&ids={$batch.id}").get()
        let path = template.render { variable in
            switch variable {
            case .argument: ["a b/c&d"]
            case .batch: ["1", "2", "é"]
            default: []
            }
        }
        #expect(path == "/search?q=a%20b%2Fc%26d&ids=1,2,%C3%A9")
        // A whole "." or ".." segment in the path is refused (upstreams decode %2E before
        // resolving dot segments); in the query string it is only text.
        let byID = try PathTemplate.parse("/users/{$args.id}?q={$args.q}").get()
        for value in [".", ".."] {
            #expect(byID.render { if case .argument("id") = $0 { [value] } else { ["x"] } } == nil)
            #expect(byID.render { if case .argument("q") = $0 { [value] } else { ["7"] } } == "/users/7?q=\(value)")
        }
        #expect(byID.render { if case .argument("id") = $0 { ["..a"] } else { [] } } == "/users/..a?q=")
        #expect(PathTemplate.parse("/x/{$args.id").map { _ in true } == .failure(.unclosed))
        #expect(PathTemplate.parse("/x/{$env.HOME}").map { _ in true } == .failure(.unknownVariable("$env.HOME")))
        #expect(PathTemplate.parse("x").map { _ in true } == .failure(.notAbsolute))
    }
}
