#!/usr/bin/env python3
"""Fetches one URL exactly as sent on the wire (httpx iter_raw: no automatic decoding) and
decodes it here with Python's own zlib and brotli, so the proxy's encoders are checked by
independent decoders.

Usage: compressed_fetch.py URL [--accept-encoding AE] [--http2] [--ca FILE] [--method M]
                              [--header 'Name: value' ...] [--body]
Prints JSON: {"status", "version", "headers" (lower-case names, repeated joined with ", "),
"raw_length", "body_length", "body_sha256", "events": [{"id", "arrival_ms", "lag_ms"}]}
where events are the SSE events decoded so far at each arrival (lag = arrival wall time minus
the event's "t=<ms>" production time).
"""
import argparse
import hashlib
import json
import re
import time
import zlib

import brotli
import httpx

EVENT = re.compile(rb"id: (\d+)\n(?:event: \w+\n)?data: t=(\d+)[^\n]*\n\n")


def decoder(coding):
    coding = (coding or "").strip().lower()
    if coding in ("", "identity"):
        return lambda data: data
    if coding == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress
    if coding == "br":
        return brotli.Decompressor().process
    raise SystemExit("unexpected content-encoding %r" % coding)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--accept-encoding")
    ap.add_argument("--http2", action="store_true")
    ap.add_argument("--ca")
    ap.add_argument("--method", default="GET")
    ap.add_argument("--header", action="append", default=[])
    ap.add_argument("--body", action="store_true", help="also print the decoded body (as text)")
    args = ap.parse_args()
    headers = {}
    if args.accept_encoding is not None:
        headers["accept-encoding"] = args.accept_encoding
    for line in args.header:
        name, value = line.split(":", 1)
        headers[name.strip()] = value.strip()
    # h2c by prior knowledge for http:// with --http2; ALPN h2 for https://.
    client = httpx.Client(http1=not args.http2 or args.url.startswith("https"), http2=args.http2,
                          verify=args.ca or True, timeout=30)
    if args.accept_encoding is None:
        del client.headers["accept-encoding"]  # httpx would otherwise offer gzip, deflate, br
    start = time.monotonic()
    raw = b""
    body = b""
    events = []
    with client.stream(args.method, args.url, headers=headers) as response:
        decode = decoder(response.headers.get("content-encoding"))
        for chunk in response.iter_raw():
            arrival = time.time()
            raw += chunk
            body += decode(chunk)
            for match in EVENT.finditer(body):
                if all(e["id"] != int(match.group(1)) for e in events):
                    events.append({"id": int(match.group(1)), "arrival_ms": round((time.monotonic() - start) * 1000, 1),
                                   "lag_ms": round(arrival * 1000 - int(match.group(2)), 1)})
        result = {
            "status": response.status_code,
            "version": response.http_version,
            "headers": {k.lower(): ", ".join(response.headers.get_list(k)) for k in response.headers.keys()},
        }
    result.update({"raw_length": len(raw), "body_length": len(body),
                   "body_sha256": hashlib.sha256(body).hexdigest(), "events": events})
    if args.body:
        result["body"] = body.decode("utf-8", errors="replace")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
