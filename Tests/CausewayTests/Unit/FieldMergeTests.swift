import CausewayGraphQL
import GraphQL
import Testing

/// OverlappingFieldsCanBeMerged (§5.3.2) with the specification's own examples and
/// graphql-js's wording.
@Suite struct FieldMergeTests {
    static let engine: GraphQLEngine = {
        let sdl = """
            type Query { dog: Dog, pet: Pet }
            interface Pet { name: String! }
            enum DogCommand { SIT, DOWN, HEEL }
            type Dog implements Pet {
              name: String!
              nickname: String
              barkVolume: Int
              doesKnowCommand(dogCommand: DogCommand!): Boolean!
              owner: Human
            }
            type Cat implements Pet { name: String!, nickname: String, meowVolume: Int }
            type Human { name: String! }
            """
        return GraphQLEngine(try! SchemaLoader.load(text: sdl, file: "spec.graphql", upstreams: []))
    }()

    func messages(_ query: String) throws -> [String] {
        Self.engine.fieldMergeErrors(try parse(source: Source(body: query))).map(\.message)
    }

    @Test func theSpecificationsValidExamplesPass() throws {
        #expect(try messages("fragment mergeIdenticalFields on Dog { name name }").isEmpty)
        #expect(try messages("fragment mergeIdenticalAliasesAndFields on Dog { otherName: name otherName: name }").isEmpty)
        #expect(try messages("fragment f on Dog { doesKnowCommand(dogCommand: SIT) doesKnowCommand(dogCommand: SIT) }").isEmpty)
        #expect(try messages("fragment safeDifferingFields on Pet { ... on Dog { volume: barkVolume } ... on Cat { volume: meowVolume } }").isEmpty)
        #expect(try messages("{ dog { ...A owner { name } } } fragment A on Dog { owner { name } }").isEmpty)
    }

    @Test func theSpecificationsInvalidExamplesFailWithGraphQLJSWording() throws {
        #expect(try messages("fragment conflictingBecauseAlias on Dog { name: nickname name }") == [
            #"Fields "name" conflict because "nickname" and "name" are different fields. Use different aliases on the fields to fetch both if this was intentional."#,
        ])
        #expect(try messages("fragment f on Dog { doesKnowCommand(dogCommand: SIT) doesKnowCommand(dogCommand: HEEL) }") == [
            #"Fields "doesKnowCommand" conflict because they have differing arguments. Use different aliases on the fields to fetch both if this was intentional."#,
        ])
        #expect(try messages("fragment conflictingDifferingResponses on Pet { ... on Dog { someValue: nickname } ... on Cat { someValue: meowVolume } }") == [
            #"Fields "someValue" conflict because they return conflicting types "String" and "Int". Use different aliases on the fields to fetch both if this was intentional."#,
        ])
        #expect(try messages("{ dog { owner { n: name } ...F } } fragment F on Dog { owner { n: nickname } }").isEmpty == false,
                "a conflict inside merged sub-selections is found too")
        let nested = try messages("{ dog { x: owner { name } x: owner { name: nickname } } }")
        #expect(nested.first?.hasPrefix(#"Fields "x" conflict because subfields "name" conflict because "name" and "nickname" are different fields."#) == true,
                "\(nested)")
    }
}
