#!/usr/bin/env python3
"""An HTTP/1.1 Server-Sent Events upstream on asyncio, for tests that hold thousands of streams
open at once (in its own process, so the test runner's file descriptors go to the gateway).

Usage: sse_upstream.py PORT_FILE
GET /…/events?n=N&ms=M: text/event-stream, chunked; N events, one every M ms, each
"id: i / data: t=<ms since 1970> …". Keep-alive. Exits when its stdin closes.
"""
import asyncio
import os
import sys
import time
from urllib.parse import parse_qs, urlsplit


async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b" ", 2)[1].decode()
            query = parse_qs(urlsplit(target).query)
            count = int(query.get("n", ["3"])[0])
            interval = int(query.get("ms", ["100"])[0]) / 1000
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            for index in range(count):
                event = b"id: %d\nevent: tick\ndata: t=%d %s\n\n" % (index, int(time.time() * 1000), b"payload " * 8)
                writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                await writer.drain()
                await asyncio.sleep(interval)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(port))
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the test closes our stdin


if __name__ == "__main__":
    asyncio.run(main())
