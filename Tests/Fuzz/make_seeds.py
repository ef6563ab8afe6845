#!/usr/bin/env python3
"""Writes the fuzzers' seed corpora (Tests/Fuzz/seeds/<harness>/): the payloads of the hostile
input suite, and valid inputs that reach deep into each parser."""
import json, os

HERE = os.path.dirname(os.path.abspath(__file__))

graphql = {
    "valid": '{ users(limit: 3) { id name orders { item total user { name } } } }',
    "variables": '#vars {"n": 9223372036854775807}\nquery($n: Int){ users(limit: $n) { id } }',
    "nested20": "{ " + "users { orders { user { orders { " * 5 + "id" + " } } } }" * 5 + " }",
    "deep3000": "{ " + "users { " * 3000 + "id" + " }" * 3000 + " }",
    "bomb": "query { users { ...F0 } }\n" + "".join(f"fragment F{i} on User {{ ...F{i + 1} ...F{i + 1} }}\n" for i in range(16))
            + "fragment F16 on User { id }",
    "chain": "query { users { ...F0 } }\n" + "".join(f"fragment F{i} on User {{ id ...F{i + 1} }}\n" for i in range(200))
             + "fragment F200 on User { id }",
    "siblings": "{ users { " + "id " * 1900 + "} }",
    "includes": "{ users { id " + "@include(if: true) " * 1600 + "} }",
    "cycle": "{ users { ...A } } fragment A on User { ...B } fragment B on User { ...A }",
    "mutation": 'mutation { createOrder(input: {userId: "1", item: "x", total: 1.5}) { id user { name } } }',
    "introspection": "{ __schema { types { name fields { name type { name ofType { name } } } } } __typename }",
    "inline": "query Q($skip: Boolean = false) { users { ... on User @skip(if: $skip) { id } ...F } } fragment F on User { email }",
    "aliases": '{ a: user(id: "1") { n: name } b: user(id: "..") { n: email } }',
    "values": '{ user(id: ' + "[" * 40 + '"1"' + "]" * 40 + ") { id } }",
    "blockstring": '{ user(id: """a\\"""b""") { id } } # comment',
    "conflict": '{ users { x: id x: name ... on User { x: email } } }',
    "alike-operations": 'query($n: Int) { users(limit: $n) { id } }\nquery($n: Int) { users(limit: $n) { id } }\n'
                        'query Q { users { ...F } } query Q { users { ...F } } fragment F on User { id }',
}
jsons = {
    "object": '{"query":"{ users { id } }","variables":{"a":[1,2.5e10,-0,true,null,"\\u00e9\\ud83d\\ude00"]}}',
    "deep": "[" * 600 + "]" * 600,
    "numbers": "[9223372036854775807, 1e400, -1.5E-7, 0.1, -0]",
    "strings": '["\\"\\\\\\/\\b\\f\\n\\r\\t", "\\ud800", "\\u0000"]',
    "bad": '{"a":1,}',
    "batch": json.dumps([{"query": "{ users { id } }"}] * 5),
}
heads = {
    "get": "GET /users/1 HTTP/1.1\r\nHost: x\r\n\r\n",
    "smuggle": "GET / HTTP/1.1\r\nHost: x\r\nConnection: content-length\r\nContent-Length: 36\r\n\r\nGET /SMUGGLED HTTP/1.1\r\nHost: x\r\n\r\n",
    "clte": "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
    "chunked": "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
    "connect": "CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n",
    "http10": "GET / HTTP/1.0\r\n\r\n",
    "upgrade": "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    "cls": "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello",
    "pipelined": "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
}
for harness, seeds in (("FuzzGraphQLDocument", graphql), ("FuzzJSON", jsons), ("FuzzHTTP1Head", heads)):
    os.makedirs(os.path.join(HERE, "seeds", harness), exist_ok=True)
    for name, text in seeds.items():
        with open(os.path.join(HERE, "seeds", harness, name), "w") as f:
            f.write(text)
