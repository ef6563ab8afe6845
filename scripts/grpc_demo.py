#!/usr/bin/env python3
"""Calls the demo's demo.v1.Greeter through the gateway as gRPC (grpcio) and as gRPC-Web (binary,
over HTTP/1.1), with message types read from protos/demo.pb, the committed descriptor set.

Usage: scripts/grpc_demo.py [host:port]   (default localhost:8080; run `causeway demo` first)
"""
import base64, http.client, os, sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

target = sys.argv[1] if len(sys.argv) > 1 else "localhost:8080"
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
descriptors = descriptor_pb2.FileDescriptorSet.FromString(open(os.path.join(root, "protos", "demo.pb"), "rb").read())
pool = descriptor_pool.DescriptorPool()
for file in descriptors.file:
    pool.Add(file)
HelloRequest = message_factory.GetMessageClass(pool.FindMessageTypeByName("demo.v1.HelloRequest"))
HelloReply = message_factory.GetMessageClass(pool.FindMessageTypeByName("demo.v1.HelloReply"))


def show(how, reply):
    print(f"{how:28} {json_format.MessageToJson(reply, indent=None)}")


channel = grpc.insecure_channel(target)
say_hello = channel.unary_unary("/demo.v1.Greeter/SayHello", request_serializer=HelloRequest.SerializeToString,
                                response_deserializer=HelloReply.FromString)
show("gRPC SayHello", say_hello(HelloRequest(name="grpc"), timeout=5))
stream = channel.unary_stream("/demo.v1.Greeter/StreamGreetings", request_serializer=HelloRequest.SerializeToString,
                              response_deserializer=HelloReply.FromString)
for reply in stream(HelloRequest(name="stream", count=3), timeout=10):
    show("gRPC StreamGreetings", reply)

# gRPC-Web: the message in a 5-byte frame; the answer's last frame (flag 0x80) holds the trailers.
host, port = target.rsplit(":", 1)
for text in (False, True):
    message = HelloRequest(name="browser").SerializeToString()
    body = b"\x00" + len(message).to_bytes(4, "big") + message
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    connection.request("POST", "/demo.v1.Greeter/SayHello", body=base64.b64encode(body) if text else body,
                       headers={"content-type": "application/grpc-web-text" if text else "application/grpc-web+proto",
                                "x-grpc-web": "1"})
    data = connection.getresponse().read()
    if text:
        data = b"".join(base64.b64decode(data[i:i + 4]) for i in range(0, len(data), 4))
    index = 0
    while index + 5 <= len(data):
        flag, length = data[index], int.from_bytes(data[index + 1:index + 5], "big")
        payload = data[index + 5:index + 5 + length]
        index += 5 + length
        if flag & 0x80:
            print(f"{'gRPC-Web trailers':28} {payload.decode().strip()!r}")
        else:
            show("gRPC-Web-text SayHello" if text else "gRPC-Web SayHello", HelloReply.FromString(payload))
