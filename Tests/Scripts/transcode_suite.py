#!/usr/bin/env python3
"""gRPC JSON transcoding through the gateway: REST/JSON calls made with curl, mapped by the
google.api.http bindings of Tests/Protos/transcode/v1/transcode.proto onto a grpcio server.

Usage: transcode_suite.py path/to/causeway

At start it builds, into a temporary folder, the descriptor set the gateway reads (protoc
--include_imports) and the Python modules the upstream and the checks use (grpc_tools.protoc,
so the generated code matches the protobuf runtime). The upstream implements Library (books in
memory) and Kitchen (Echo, EchoStream, Fail) and records the last request each method received.

Every answer is compared field by field with google.protobuf.json_format: the message the
upstream received must equal json_format.Parse of the JSON sent plus the path and query fields,
and the JSON answered must equal json_format.MessageToDict of the message the upstream sent
back (with types checked: a number is not a string, true is not 1).

Checks: path variables (single segment, nested book.name, "**", two in one template,
percent-encoded), body "*" / a body field / no body, query parameters (nested dotted names,
repeated, enums by name, int64 past 2^53, Timestamp, wrapper, FieldMask, percent-encoded), a
custom verb, additional_bindings, GET/POST/PUT/PATCH/DELETE, response_body (message and
scalar), every proto3 JSON field kind round-tripped through Echo (proto and lowerCamelCase
names, json_name, int64 as strings and numbers, enums by name and number, standard and URL-safe
base64, Timestamps with 0/3/6/9 digits and offsets, negative Durations, NaN/Infinity, Any, Struct,
wrappers, maps with int/bool keys), server streaming as a JSON array and as NDJSON, upstream
statuses mapped by the gRPC->HTTP table with a google.rpc.Status body, bad JSON answered 400
naming the field, no matching binding 404, gRPC straight through the same route, an upstream
down or stopped, HTTP/2 (h2c) clients, and a second gateway with use_proto_names and
always_print_primitive_fields. Hostile: JSON nested 10,000 deep, a body over
grpc.max_message_size (413), 10,000 query parameters, a 60,000-digit number, invalid UTF-8.
"""
import base64, inspect, json, math, os, shutil, subprocess, sys, tempfile, threading, time
from concurrent import futures

import grpc
from google.protobuf import descriptor, descriptor_pool, empty_pb2, json_format, message_factory

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from suite_support import Results, free_port, running_gateway  # noqa: E402

CAUSEWAY = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".build/debug/causeway")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEST_PROTOS = os.path.join(ROOT, "Tests", "Protos")
PROTOS = os.path.join(ROOT, "protos")
PROTO = os.path.join(TEST_PROTOS, "transcode", "v1", "transcode.proto")
SERVICES = ["transcode.v1.Library", "transcode.v1.Kitchen"]
MAX_MESSAGE = 64 * 1024

results = Results()
check = results.check

# The printing options of the two gateways (default, and use_proto_names + always print).
_PARAMS = inspect.signature(json_format.MessageToDict).parameters
ALWAYS = ("always_print_fields_with_no_presence" if "always_print_fields_with_no_presence" in _PARAMS
          else "including_default_value_fields")
DEFAULT_PRINT = {}
PROTO_NAMES_PRINT = {"preserving_proto_field_name": True, ALWAYS: True}

pb = pb_grpc = None  # transcode_pb2 and transcode_pb2_grpc, once generated


# --- Generated code and descriptors ---------------------------------------------------------

def generate(tmp):
    """The descriptor set for the gateway (Debian's protoc, or grpc_tools' where there is none)
    and the Python modules for this suite; returns the descriptor set's path."""
    global pb, pb_grpc
    descriptors = os.path.join(tmp, "transcode.pb")
    common = ["--include_imports", f"--descriptor_set_out={descriptors}", "-I", TEST_PROTOS, "-I", PROTOS]
    if shutil.which("protoc"):
        subprocess.run(["protoc", *common, "-I", "/usr/include", PROTO], check=True)
    else:
        import grpc_tools
        bundled = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", *common, "-I", bundled, PROTO], check=True)
    out = os.path.join(tmp, "py")
    os.makedirs(out)
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", TEST_PROTOS, "-I", PROTOS,
                    f"--python_out={out}", f"--grpc_python_out={out}", PROTO], check=True)
    sys.path.insert(0, out)
    from transcode.v1 import transcode_pb2, transcode_pb2_grpc  # noqa: E402
    pb, pb_grpc = transcode_pb2, transcode_pb2_grpc
    return descriptors


def parse(document, message_class):
    """What the JSON mapping makes of `document` (a dict or JSON text)."""
    text = document if isinstance(document, str) else json.dumps(document)
    return json_format.Parse(text, message_class())


def to_dict(message, options):
    return json_format.MessageToDict(message, **options)


def canonical(message):
    """A copy whose Any fields hold their message re-serialized deterministically, so that
    protobuf == compares what they pack rather than how the bytes were laid out."""
    copy = type(message)()
    copy.CopyFrom(message)
    _canonicalize(copy)
    return copy


def _canonicalize(message):
    if message.DESCRIPTOR.full_name == "google.protobuf.Any":
        if message.type_url:
            name = message.type_url.rsplit("/", 1)[-1]
            inner = message_factory.GetMessageClass(descriptor_pool.Default().FindMessageTypeByName(name))()
            inner.ParseFromString(message.value)
            _canonicalize(inner)
            message.value = inner.SerializeToString(deterministic=True)
        return
    for field, value in message.ListFields():
        if field.type != descriptor.FieldDescriptor.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].type == descriptor.FieldDescriptor.TYPE_MESSAGE:
                for item in value.values():
                    _canonicalize(item)
        elif field.is_repeated:
            for item in value:
                _canonicalize(item)
        else:
            _canonicalize(value)


def same_json(a, b):
    """Equal as JSON values, types included: True is not 1, "1" is not 1, 1 equals 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def first_difference(got, want, path="$"):
    """Where two JSON values first differ, for a check's detail."""
    if isinstance(got, dict) and isinstance(want, dict):
        for key in sorted(set(got) | set(want)):
            if key not in got:
                return f"{path}.{key} missing (want {json.dumps(want[key])[:80]})"
            if key not in want:
                return f"{path}.{key} unexpected ({json.dumps(got[key])[:80]})"
            if not same_json(got[key], want[key]):
                return first_difference(got[key], want[key], f"{path}.{key}")
        return None
    if isinstance(got, list) and isinstance(want, list) and len(got) == len(want):
        for index, (x, y) in enumerate(zip(got, want)):
            if not same_json(x, y):
                return first_difference(x, y, f"{path}[{index}]")
        return None
    if same_json(got, want):
        return None
    return f"{path}: got {json.dumps(got)[:120]}, want {json.dumps(want)[:120]}"


# --- The upstream ---------------------------------------------------------------------------

class Recorder:
    """The last request each method received and what it answered (a list for streams)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests, self.replies = {}, {}

    def forget(self, method):
        with self.lock:
            self.requests.pop(method, None)
            self.replies.pop(method, None)

    def request(self, method, message):
        copy = type(message)()
        copy.CopyFrom(message)
        with self.lock:
            self.requests[method] = copy
            self.replies.pop(method, None)

    def reply(self, method, message, stream=False):
        copy = type(message)()
        copy.CopyFrom(message)
        with self.lock:
            if stream:
                self.replies.setdefault(method, []).append(copy)
            else:
                self.replies[method] = copy
        return message


SEEN = Recorder()
STATUS_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def seed_books():
    books = {}
    for name, title, author, genre, tags, pages, published in [
        ("shelves/1/books/1", "Dune", "Frank Herbert", "FICTION", ["scifi", "classic"], 412, "1965-08-01T00:00:00Z"),
        ("shelves/1/books/2", "SPQR", "Mary Beard", "HISTORY", ["rome"], 608, "2015-10-20T00:00:00Z"),
        ("shelves/1/books/3", "Cosmos", "Carl Sagan", "SCIENCE", ["space", "classic"], 396, "1980-01-01T00:00:00Z"),
        ("shelves/my shelf/books/bé", "Encoded", "Ünïcode Author", "FICTION", [], 1, "2001-01-01T00:00:00.5Z"),
        ("shelves/a%2Fb/books/c", "Slash Kept", "Nobody", "GENRE_UNSPECIFIED", [], 2, "2002-02-02T00:00:00Z"),
        ("shelves/s:1/books/b", "Colon", "Someone", "SCIENCE", [], 3, "2003-03-03T00:00:00Z"),
        ("shelves/9/books/x", "To Clear X", "A", "FICTION", [], 10, "2010-01-01T00:00:00Z"),
        ("shelves/9/books/y", "To Clear Y", "B", "FICTION", [], 11, "2011-01-01T00:00:00Z"),
    ]:
        books[name] = parse({"name": name, "title": title, "author": author, "genre": genre, "tags": tags,
                             "pageCount": str(pages), "published": published}, pb.Book)
    return books


def make_servicers():
    books = seed_books()
    shelves = {"shelves/1", "shelves/2", "shelves/9", "shelves/my shelf", "shelves/a%2Fb", "shelves/s:1"}
    lock = threading.Lock()

    def missing(context, what):
        context.abort(grpc.StatusCode.NOT_FOUND, f"no {what}")

    class Library(pb_grpc.LibraryServicer):
        def GetBook(self, request, context):
            SEEN.request("GetBook", request)
            with lock:
                book = books.get(request.name)
            if book is None:
                missing(context, f"book {request.name}")
            return SEEN.reply("GetBook", book)

        def GetShelf(self, request, context):
            SEEN.request("GetShelf", request)
            name = "shelves/" + request.shelf_id
            with lock:
                count = sum(1 for key in books if key.startswith(name + "/books/"))
            return SEEN.reply("GetShelf", pb.Shelf(name=name, shelf_id=request.shelf_id, book_count=count))

        def CreateBook(self, request, context):
            SEEN.request("CreateBook", request)
            book = pb.Book()
            book.CopyFrom(request.book)
            book.name = f"{request.parent}/books/{request.book_id or request.book.title.lower().replace(' ', '-')}"
            with lock:
                if book.name in books:
                    context.abort(grpc.StatusCode.ALREADY_EXISTS, f"{book.name} exists")
                books[book.name] = book
                shelves.add(request.parent)
            return SEEN.reply("CreateBook", book)

        def UpdateBook(self, request, context):
            SEEN.request("UpdateBook", request)
            with lock:
                book = books.get(request.book.name)
                if book is None:
                    missing(context, f"book {request.book.name}")
                if request.update_mask.paths:
                    for path in request.update_mask.paths:
                        field = pb.Book.DESCRIPTOR.fields_by_name[path]
                        if field.is_repeated:
                            getattr(book, path)[:] = getattr(request.book, path)
                        elif field.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
                            getattr(book, path).CopyFrom(getattr(request.book, path))
                        else:
                            setattr(book, path, getattr(request.book, path))
                else:
                    book.MergeFrom(request.book)
                return SEEN.reply("UpdateBook", book)

        def ReplaceBook(self, request, context):
            SEEN.request("ReplaceBook", request)
            with lock:
                if request.book.name not in books and not request.allow_missing:
                    missing(context, f"book {request.book.name}")
                books[request.book.name] = request.book
            return SEEN.reply("ReplaceBook", request.book)

        def DeleteBook(self, request, context):
            SEEN.request("DeleteBook", request)
            with lock:
                if books.pop(request.name, None) is None:
                    missing(context, f"book {request.name}")
            return SEEN.reply("DeleteBook", empty_pb2.Empty())

        def ListBooks(self, request, context):
            SEEN.request("ListBooks", request)
            with lock:
                if request.parent not in shelves:
                    missing(context, f"shelf {request.parent}")
                found = [b for name, b in books.items() if name.startswith(request.parent + "/books/")]
            if request.tags:
                found = [b for b in found if set(b.tags) & set(request.tags)]
            if request.genres:
                found = [b for b in found if b.genre in request.genres]
            if request.filter:
                found = [b for b in found if request.filter.lower() in b.title.lower()]
            found = [b for b in found if b.page_count >= request.min_pages]
            if request.HasField("published_after"):
                found = [b for b in found if b.published.ToNanoseconds() > request.published_after.ToNanoseconds()]
            key = (lambda b: b.title) if request.options.order_by == "title" else (lambda b: b.name)
            found.sort(key=key, reverse=request.options.descending)
            if request.page_size:
                found = found[:request.page_size]
            for book in found:
                yield SEEN.reply("ListBooks", book, stream=True)

        def GetFile(self, request, context):
            SEEN.request("GetFile", request)
            content = ("contents of " + request.path).encode()
            return SEEN.reply("GetFile", pb.File(path=request.path, content=content, size=len(content)))

        def ClearShelf(self, request, context):
            SEEN.request("ClearShelf", request)
            with lock:
                names = sorted(name for name in books if name.startswith(request.name + "/books/"))
                if names and not request.force:
                    context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{request.name} is not empty")
                for name in names:
                    del books[name]
            return SEEN.reply("ClearShelf", pb.ClearShelfResponse(removed=len(names), names=names))

        def LookupBook(self, request, context):
            SEEN.request("LookupBook", request)
            with lock:
                book = books.get(request.name)
            if book is None:
                missing(context, f"book {request.name}")
            return SEEN.reply("LookupBook", pb.LookupBookResponse(book=book, etag="etag-" + str(book.page_count)))

        def GetBookTitle(self, request, context):
            SEEN.request("GetBookTitle", request)
            with lock:
                book = books.get(request.name)
            if book is None:
                missing(context, f"book {request.name}")
            return SEEN.reply("GetBookTitle", pb.BookTitle(title=book.title, words=len(book.title.split())))

        def MoveBook(self, request, context):
            SEEN.request("MoveBook", request)
            source = f"shelves/{request.shelf}/books/{request.book}"
            with lock:
                book = books.pop(source, None)
                if book is None:
                    missing(context, f"book {source}")
                book.name = f"{request.to_shelf}/books/{request.book}"
                books[book.name] = book
            return SEEN.reply("MoveBook", book)

    class Kitchen(pb_grpc.KitchenServicer):
        def Echo(self, request, context):
            SEEN.request("Echo", request)
            return SEEN.reply("Echo", request)

        def EchoStream(self, request, context):
            SEEN.request("EchoStream", request)
            for index in range(request.repeat):
                copy = pb.Everything()
                copy.CopyFrom(request)
                copy.maybe_count = index
                yield SEEN.reply("EchoStream", copy, stream=True)

        def Fail(self, request, context):
            SEEN.request("Fail", request)
            context.abort(STATUS_BY_NUMBER[request.code], request.message)

    return Library(), Kitchen()


def start_upstream():
    server = grpc.server(futures.ThreadPoolExecutor(16), options=[("grpc.max_receive_message_length", 8 << 20)])
    library, kitchen = make_servicers()
    pb_grpc.add_LibraryServicer_to_server(library, server)
    pb_grpc.add_KitchenServicer_to_server(kitchen, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


# --- HTTP by curl ---------------------------------------------------------------------------

class Reply:
    def __init__(self, status, content_type, body, headers):
        self.status, self.content_type, self.body, self.headers = status, content_type, body, headers

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def is_json(self):
        return self.content_type.split(";")[0].strip().lower() == "application/json"

    def __repr__(self):
        return f"{self.status} {self.content_type!r} {self.body[:300]!r}"


class Client:
    def __init__(self, port, tmp):
        self.port, self.tmp, self.count = port, tmp, 0

    def __call__(self, method, path, body=None, headers=(), http2=False, timeout=15):
        """One request by curl; `body` is a dict/list (sent as JSON), str or bytes (sent as is)."""
        self.count += 1
        out = os.path.join(self.tmp, f"curl-{self.count}.body")
        head = os.path.join(self.tmp, f"curl-{self.count}.head")
        command = ["curl", "-s", "-g", "--path-as-is", "-X", method, "-o", out, "-D", head,
                   "-w", "%{http_code} %{content_type}", "--max-time", str(timeout)]
        command.append("--http2-prior-knowledge" if http2 else "--http1.1")
        data = None
        if body is not None:
            data = (json.dumps(body) if isinstance(body, (dict, list)) else body)
            data = data.encode() if isinstance(data, str) else data
            command += ["--data-binary", "@-", "-H", "content-type: application/json"]
        for name, value in headers:
            command += ["-H", f"{name}: {value}"]
        command.append(f"http://127.0.0.1:{self.port}{path}")
        done = subprocess.run(command, input=data, capture_output=True)
        status, _, content_type = done.stdout.decode(errors="replace").partition(" ")
        body_bytes = open(out, "rb").read() if os.path.exists(out) else b""
        headers_seen = {}
        if os.path.exists(head):
            for line in open(head, "rb").read().decode("latin-1").splitlines():
                name, colon, value = line.partition(":")
                if colon:
                    headers_seen[name.strip().lower()] = value.strip()
        return Reply(int(status) if status.isdigit() else 0, content_type.strip(), body_bytes, headers_seen)


def ndjson_lines(body):
    lines = [line for line in body.decode(errors="replace").split("\n") if line.strip()]
    try:
        return [json.loads(line) for line in lines]
    except ValueError:
        return None


# --- Checks ---------------------------------------------------------------------------------

def compare_request(method, want):
    got = SEEN.requests.get(method)
    if got is None:
        return False, f"{method} received nothing"
    if canonical(got) == canonical(want):
        return True, ""
    diff = first_difference(to_dict(got, {"preserving_proto_field_name": True}),
                            to_dict(want, {"preserving_proto_field_name": True}))
    return False, f"{method} received: {diff or 'differs (not shown by JSON)'}"


def compare_response(reply, want_json, status=200):
    got = reply.json()
    if reply.status != status or not reply.is_json() or got is None:
        return False, f"{reply!r}"
    diff = first_difference(got, want_json)
    return diff is None, diff or ""


def roundtrip(label, client, method, http_method, path, body=None, want_request=None, options=DEFAULT_PRINT,
              response_field=None, headers=(), http2=False):
    """One unary call: the upstream got `want_request`; the JSON answered is the upstream's reply
    as MessageToDict prints it (its field `response_field` alone where the rule names one)."""
    SEEN.forget(method)
    reply = client(http_method, path, body, headers=headers, http2=http2)
    ok_request, why_request = compare_request(method, want_request) if want_request is not None else (True, "")
    sent = SEEN.replies.get(method)
    if sent is None:
        check(label, False, f"the upstream answered nothing; {why_request} gateway: {reply!r}")
        return reply
    want = to_dict(sent, options)
    if response_field is not None:
        want = want.get(response_field)
    ok_response, why_response = compare_response(reply, want)
    check(label, ok_request and ok_response, "; ".join(x for x in (why_request, why_response) if x))
    return reply


def stream_check(label, client, method, path, want_request, want_count=None, ndjson=False, body=None,
                 http_method="GET", options=DEFAULT_PRINT):
    SEEN.forget(method)
    headers = [("accept", "application/x-ndjson")] if ndjson else []
    reply = client(http_method, path, body, headers=headers)
    ok_request, why_request = compare_request(method, want_request)
    want = [to_dict(m, options) for m in SEEN.replies.get(method, [])]
    content_type = reply.content_type.split(";")[0].strip().lower()
    if ndjson:
        got = ndjson_lines(reply.body)
        ok_shape = content_type == "application/x-ndjson" and got is not None
    else:
        got = reply.json()
        ok_shape = content_type == "application/json" and isinstance(got, list)
    diff = first_difference(got, want) if ok_shape else f"{reply!r}"
    count_ok = want_count is None or len(want) == want_count
    check(label, reply.status == 200 and ok_shape and ok_request and diff is None and count_ok,
          "; ".join(x for x in (why_request, diff or "", "" if count_ok else f"{len(want)} sent") if x))


def error_body_ok(reply, status, request_id):
    """The gateway's own JSON error: {"error":{"status","code","message","request_id"}}."""
    body = reply.json()
    error = body.get("error") if isinstance(body, dict) else None
    return (reply.status == status and reply.is_json() and isinstance(error, dict)
            and error.get("status") == status and isinstance(error.get("code"), str) and error.get("code")
            and isinstance(error.get("message"), str) and error.get("request_id") == request_id), error


def library_checks(client):
    b = lambda doc: parse(doc, pb.Book)  # noqa: E731

    # Path variables.
    roundtrip("GET /v1/{name=shelves/*/books/*}: the path variable fills name", client, "GetBook",
              "GET", "/v1/shelves/1/books/1", want_request=pb.GetBookRequest(name="shelves/1/books/1"))
    roundtrip("... and a bool query parameter (include_tags=true) fills its field", client, "GetBook",
              "GET", "/v1/shelves/1/books/2?include_tags=true",
              want_request=pb.GetBookRequest(name="shelves/1/books/2", include_tags=True))
    roundtrip("a multi-segment variable is percent-decoded (%20, UTF-8 %C3%A9)", client, "GetBook",
              "GET", "/v1/shelves/my%20shelf/books/b%C3%A9", want_request=pb.GetBookRequest(name="shelves/my shelf/books/bé"))
    roundtrip("a multi-segment variable keeps %2F encoded (google.api.http rule)", client, "GetBook",
              "GET", "/v1/shelves/a%2Fb/books/c", want_request=pb.GetBookRequest(name="shelves/a%2Fb/books/c"))
    roundtrip("a single-segment variable {shelf_id} is fully decoded, %2F included", client, "GetShelf",
              "GET", "/v1/shelves/a%2Fb%20c%C3%A9", want_request=pb.GetShelfRequest(shelf_id="a/b cé"))
    roundtrip("{path=**} takes the rest of the path, slashes kept, %2F left encoded", client, "GetFile",
              "GET", "/v1/files/docs/2024/a%20b/c%2Fd.txt", want_request=pb.GetFileRequest(path="docs/2024/a b/c%2Fd.txt"))
    roundtrip("{path=**} with one segment", client, "GetFile", "GET", "/v1/files/readme",
              want_request=pb.GetFileRequest(path="readme"))
    roundtrip("two variables in one template with a custom verb; %3A in a variable is not the verb", client,
              "MoveBook", "POST", "/v1/shelves/s%3A1/books/b:move", body={"toShelf": "shelves/2"},
              want_request=pb.MoveBookRequest(shelf="s:1", book="b", to_shelf="shelves/2"))

    # GetBook NOT_FOUND, with the status body.
    SEEN.forget("GetBook")
    reply = client("GET", "/v1/shelves/1/books/404")
    body = reply.json()
    check("an upstream NOT_FOUND: 404 with {code: 5, message}",
          reply.status == 404 and reply.is_json() and isinstance(body, dict) and body.get("code") == 5
          and body.get("message") == "no book shelves/1/books/404"
          and isinstance(body.get("details", []), list) and compare_request("GetBook", pb.GetBookRequest(name="shelves/1/books/404"))[0],
          f"{reply!r}")

    # Body field, query parameter, additional binding.
    sent = {"title": "The Left Hand of Darkness", "author": "Ursula K. Le Guin", "genre": "FICTION",
            "tags": ["scifi", "classic"], "pageCount": "304", "published": "1969-03-01T00:00:00Z"}
    roundtrip("POST body \"book\" fills the book field, path parent, query book_id", client, "CreateBook",
              "POST", "/v1/shelves/2/books?book_id=lhod", body=sent,
              want_request=pb.CreateBookRequest(parent="shelves/2", book=b(sent), book_id="lhod"))
    SEEN.forget("CreateBook")
    reply = client("POST", "/v1/shelves/2/books?book_id=lhod", body=sent)
    body = reply.json()
    check("the same book again: ALREADY_EXISTS -> 409 {code: 6}", reply.status == 409 and isinstance(body, dict)
          and body.get("code") == 6 and body.get("message") == "shelves/2/books/lhod exists", f"{reply!r}")
    whole = {"parent": "shelves/2", "bookId": "kindred", "book": {"title": "Kindred", "author": "Octavia E. Butler",
                                                                  "page_count": 264, "genre": 1}}
    roundtrip("additional_bindings: POST /v1/books with body \"*\" (proto and JSON names, enum by number)",
              client, "CreateBook", "POST", "/v1/books", body=whole, want_request=parse(whole, pb.CreateBookRequest))

    # PATCH with a FieldMask from the query; PUT; DELETE.
    patch = {"title": "Dune (revised)", "pageCount": 999, "author": "ignored: not in the mask"}
    want = pb.UpdateBookRequest(book=b(dict(patch, name="shelves/1/books/1")))
    want.update_mask.paths.extend(["title", "page_count"])
    reply = roundtrip("PATCH /v1/{book.name=...}: nested path field, body \"book\", update_mask=title,pageCount from the query",
                      client, "UpdateBook", "PATCH", "/v1/shelves/1/books/1?update_mask=title,pageCount", body=patch,
                      want_request=want)
    got = reply.json() or {}
    check("... and the mask was applied (title and pageCount changed, author kept)",
          got.get("title") == "Dune (revised)" and got.get("pageCount") == "999" and got.get("author") == "Frank Herbert",
          f"{got}")
    put = {"title": "SPQR", "author": "Mary Beard", "genre": "HISTORY", "tags": [], "pageCount": "608"}
    roundtrip("PUT /v1/{book.name=...} body \"book\" with allow_missing=true from the query", client, "ReplaceBook",
              "PUT", "/v1/shelves/2/books/spqr?allow_missing=true", body=put,
              want_request=pb.ReplaceBookRequest(book=b(dict(put, name="shelves/2/books/spqr")), allow_missing=True))
    roundtrip("DELETE /v1/{name=...} with etag from the query: google.protobuf.Empty prints {}", client, "DeleteBook",
              "DELETE", "/v1/shelves/2/books/spqr?etag=e%201", want_request=pb.DeleteBookRequest(name="shelves/2/books/spqr", etag="e 1"))
    SEEN.forget("DeleteBook")
    reply = client("DELETE", "/v1/shelves/2/books/spqr")
    check("DELETE it again: 404 {code: 5}", reply.status == 404 and (reply.json() or {}).get("code") == 5, f"{reply!r}")

    # Custom verb, body "*" with a path variable; an empty body.
    SEEN.forget("ClearShelf")
    reply = client("POST", "/v1/shelves/9:clear", body={"reason": "spring cleaning"})
    body = reply.json()
    check("custom verb :clear refused by the upstream: FAILED_PRECONDITION -> 400 {code: 9}",
          reply.status == 400 and isinstance(body, dict) and body.get("code") == 9
          and compare_request("ClearShelf", pb.ClearShelfRequest(name="shelves/9", reason="spring cleaning"))[0], f"{reply!r}")
    roundtrip("custom verb POST /v1/{name=shelves/*}:clear, body \"*\" merged with the path variable", client,
              "ClearShelf", "POST", "/v1/shelves/9:clear", body={"force": True, "reason": "spring cleaning"},
              want_request=pb.ClearShelfRequest(name="shelves/9", force=True, reason="spring cleaning"))
    roundtrip("body \"*\" with an empty body: the message has only the path fields", client, "ClearShelf",
              "POST", "/v1/shelves/7:clear", body=b"", want_request=pb.ClearShelfRequest(name="shelves/7"))

    # response_body.
    roundtrip("response_body \"book\": the HTTP body is the book alone", client, "LookupBook",
              "GET", "/v1/shelves/1/books/3:lookup", want_request=pb.GetBookRequest(name="shelves/1/books/3"),
              response_field="book")
    roundtrip("response_body \"title\" (a string field): the HTTP body is a JSON string", client, "GetBookTitle",
              "GET", "/v1/shelves/1/books/3/title", want_request=pb.GetBookRequest(name="shelves/1/books/3"),
              response_field="title")

    # Query parameters of every kind, on a server stream.
    query = ("page_size=5&filter=%C3%A9%20a%26b%3D&tags=classic&tags=scifi&genre=HISTORY&min_pages=9007199254740993"
             "&options.order_by=title&options.descending=true&genres=FICTION&genres=SCIENCE"
             "&published_after=1960-01-01T00:00:00.5%2B01:00&max_results=7&min_rating=4.5")
    want = parse({"parent": "shelves/1", "pageSize": 5, "filter": "é a&b=", "tags": ["classic", "scifi"],
                  "genre": "HISTORY", "minPages": "9007199254740993", "options": {"orderBy": "title", "descending": True},
                  "genres": ["FICTION", "SCIENCE"], "publishedAfter": "1960-01-01T00:00:00.5+01:00",
                  "maxResults": 7, "minRating": 4.5}, pb.ListBooksRequest)
    stream_check("query parameters: int32, percent-encoded string, repeated, enum by name, int64 past 2^53, "
                 "dotted nested fields, repeated enum, Timestamp, Int32Value, double", client, "ListBooks",
                 "/v1/shelves/1/books?" + query, want)
    want = parse({"parent": "shelves/1", "tags": ["classic"], "options": {"orderBy": "title"}}, pb.ListBooksRequest)
    stream_check("server streaming: a JSON array of the streamed messages (application/json)", client, "ListBooks",
                 "/v1/shelves/1/books?tags=classic&options.order_by=title", want, want_count=2)
    stream_check("server streaming with Accept: application/x-ndjson: one JSON object per line", client, "ListBooks",
                 "/v1/shelves/1/books?tags=classic&options.order_by=title", want, want_count=2, ndjson=True)
    stream_check("server streaming of no messages: []", client, "ListBooks", "/v1/shelves/2/books?filter=nothing",
                 parse({"parent": "shelves/2", "filter": "nothing"}, pb.ListBooksRequest), want_count=0)
    reply = client("GET", "/v1/shelves/nowhere/books")
    check("a stream failing before its first message: the status maps (NOT_FOUND -> 404 {code: 5})",
          reply.status == 404 and (reply.json() or {}).get("code") == 5, f"{reply!r}")
    SEEN.forget("ListBooks")
    reply = client("GET", "/v1/shelves/1/books?pageSize=1&options.orderBy=title")
    check("query parameters by their JSON names too (pageSize, options.orderBy)",
          reply.status == 200 and compare_request("ListBooks", parse({"parent": "shelves/1", "pageSize": 1,
                                                                        "options": {"orderBy": "title"}}, pb.ListBooksRequest))[0],
          f"{reply!r} {compare_request('ListBooks', pb.ListBooksRequest())[1]}")

    # HTTP/2 clients.
    roundtrip("transcoding for an HTTP/2 (h2c) client", client, "GetBook", "GET", "/v1/shelves/1/books/3",
              want_request=pb.GetBookRequest(name="shelves/1/books/3"), http2=True)
    roundtrip("a POST with body over h2c", client, "CreateBook", "POST", "/v1/shelves/2/books?book_id=h2",
              body={"title": "Over h2"}, http2=True,
              want_request=pb.CreateBookRequest(parent="shelves/2", book_id="h2", book=pb.Book(title="Over h2")))


SINK = {
    "int32Value": -42,
    "int64_value": "-9223372036854775808",
    "uint32Value": 4294967295,
    "uint64Value": 18446744073709551615,
    "sint32_value": -2147483648,
    "sint64Value": "-4611686018427387904",
    "fixed32Value": 123456789,
    "fixed64_value": "18446744073709551614",
    "sfixed32Value": -123456789,
    "sfixed64Value": 9007199254740993,
    "floatValue": 1.5,
    "doubleValue": 2.718281828459045,
    "boolValue": True,
    "stringValue": "h\u00e9llo \"quoted\" \\ / \u2028 \U0001F600 \t\n\u0000",
    "bytesValue": base64.b64encode(b"\x00\xff\xfe binary \x7f").decode(),
    "color": "BLUE",
    "nested": {"label": "n1", "count": 3, "inner": {"label": "n2", "inner": {"label": "n3"}}, "tags": ["a", "b"]},
    "int32_list": [1, -2, 2147483647],
    "int64List": ["1", 2, "-3"],
    "doubleList": [1.5, -0.0, 1e300, 5e-324],
    "boolList": [True, False],
    "stringList": ["", "x"],
    "bytesList": ["AQID", "-_8", "AQI", "+/8="],
    "nestedList": [{"label": "l1"}, {}, {"count": 2}],
    "colorList": ["RED", 2, "COLOR_UNSPECIFIED"],
    "counts": {"a": "1", "b": 2, "": "-3"},
    "labelsById": {"1": "one", "-2": "minus two"},
    "nestedByKey": {"k": {"label": "v"}, "empty": {}},
    "flags": {"true": "yes", "false": "no"},
    "namesById64": {"9223372036854775807": "max", "-1": "minus one"},
    "colorsById": {"7": "GREEN", "8": 3},
    "choiceNested": {"label": "chosen"},
    "maybeCount": 0,
    "timestamp": "2024-02-29T12:34:56.123456789+05:30",
    "duration": "-1.5s",
    "timestampList": ["1970-01-01T00:00:00Z", "2000-01-01T00:00:00.5Z", "2000-01-01T00:00:00.123Z",
                      "2000-01-01T00:00:00.123456Z", "2000-01-01T00:00:00.000000001-01:00"],
    "int32Wrapper": 0,
    "int64Wrapper": "-5",
    "uint32Wrapper": 7,
    "uint64Wrapper": "18446744073709551615",
    "stringWrapper": "",
    "boolWrapper": False,
    "bytesWrapper": "AA==",
    "doubleWrapper": "-Infinity",
    "floatWrapper": 0.5,
    "structValue": {"a": 1, "b": [True, None, "s", {"c": 2.5}], "d": {}},
    "value": {"k": [1, "x"]},
    "listValue": [1, "two", None, False, {"x": []}],
    "fieldMask": "int32Value,nested.label,nestedByKey",
    "anyMessage": {"@type": "type.googleapis.com/transcode.v1.Nested", "label": "packed", "count": 9},
    "anyTimestamp": {"@type": "type.googleapis.com/google.protobuf.Timestamp", "value": "2020-01-01T00:00:00.5Z"},
    "anyList": [{"@type": "type.googleapis.com/google.protobuf.Duration", "value": "-0.000000001s"},
                {"@type": "type.googleapis.com/google.protobuf.Struct", "value": {"z": [1, None], "a": "b"}},
                {"@type": "type.googleapis.com/google.protobuf.Int64Value", "value": "5"},
                {"@type": "type.googleapis.com/google.protobuf.Empty"},
                {"@type": "type.googleapis.com/google.protobuf.Any",
                 "value": {"@type": "type.googleapis.com/transcode.v1.Nested", "label": "deep"}},
                {"@type": "type.googleapis.com/google.protobuf.FieldMask", "value": "aB,c.dE"},
                {"label": "type last", "@type": "type.googleapis.com/transcode.v1.Nested"}],
    "empty": {},
    "customName": "by json_name",
}


def echo(label, client, document, options=DEFAULT_PRINT, path="/v1/echo"):
    return roundtrip(label, client, "Echo", "POST", path, body=document, want_request=parse(document, pb.Everything),
                     options=options)


def kitchen_checks(client):
    echo("Echo of every field kind (names proto and camelCase, int64 strings and numbers, maps, oneof, optional, "
         "WKTs, Any)", client, SINK)
    echo("scalars at their limits", client, {"int32Value": -2147483648, "uint32Value": 4294967295, "sint32Value": 2147483647,
                                             "fixed32Value": 4294967295, "sfixed32Value": -2147483648})
    echo("int64 kinds as JSON numbers (exact past 2^53) and as strings", client,
         {"int64Value": 9007199254740993, "uint64Value": "18446744073709551615", "sint64Value": -9007199254740993,
          "fixed64Value": 18446744073709551615, "sfixed64Value": "-9223372036854775808"})
    echo("int32 as a string (\"7\") is accepted", client, {"int32Value": "7", "uint32Value": "8"})
    echo("enum by name and by number, an unknown number kept (open enum)", client,
         {"color": 2, "colorList": ["RED", 3, 99]})
    echo("bytes: standard base64, URL-safe, unpadded", client,
         {"bytesValue": "-_-_", "bytesList": ["+/+/", "AQI", "AQI=", "", "AA"]})
    echo("Timestamps with 0/3/6/9 fractional digits and offsets print in UTC with 0/3/6/9 digits", client,
         {"timestampList": ["2024-01-01T00:00:00Z", "2024-01-01T00:00:00.1Z", "2024-01-01T00:00:00.12345Z",
                            "2024-01-01T00:00:00.1234567Z", "2024-01-01T00:00:00.000+00:00",
                            "2024-01-01T05:30:00+05:30", "2023-12-31T23:59:59.999999999-00:01",
                            "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z"]})
    for value in ["-1.5s", "-0.5s", "0.000000001s", "-315576000000s", "1.100s", "0s", "315576000000.999999999s"]:
        echo(f"Duration {value}", client, {"duration": value})
    echo("NaN and Infinity as strings (double, float, wrapper, list)", client,
         {"doubleValue": "NaN", "floatValue": "-Infinity", "doubleList": ["Infinity", "NaN", 0],
          "doubleWrapper": "NaN", "floatWrapper": "Infinity"})
    reply = echo("float 0.1 prints as its shortest form (0.1, not 0.10000000149011612)", client,
                 {"floatValue": 0.1, "floatWrapper": 3.4028234663852886e38, "doubleValue": 0.1})
    got = reply.json() or {}
    check("... the float text is exactly 0.1 when read as a double", got.get("floatValue") == 0.1, f"{got}")
    echo("wrappers holding zero values are printed (presence)", client,
         {"int32Wrapper": 0, "int64Wrapper": "0", "uint32Wrapper": 0, "uint64Wrapper": 0, "stringWrapper": "",
          "boolWrapper": False, "bytesWrapper": "", "doubleWrapper": 0, "floatWrapper": 0})
    echo("null for a message/wrapper field leaves it unset; null in Value/Struct is kept", client,
         {"nested": None, "int32Wrapper": None, "timestamp": None, "int32Value": None, "value": None,
          "structValue": {"k": None}})
    echo("oneof: one member (a scalar) and proto3 optional holding defaults", client,
         {"choiceNumber": "12", "maybeCount": 0, "maybeText": ""})
    echo("oneof member set to its default value is still printed", client, {"choiceText": ""})
    echo("json_name: customName accepted and printed", client, {"customName": "x"})
    echo("json_name: the proto name renamed accepted too", client, {"renamed": "y"})
    echo("Struct, Value and ListValue of every JSON kind", client,
         {"structValue": {"n": -1.25e-7, "s": "", "b": False, "z": None, "l": [[], {}], "o": {"p": {"q": 1}}},
          "value": "just a string", "listValue": []})
    echo("Value holding a number and a bool", client, {"value": 12.5, "nestedByKey": {"": {}}})
    echo("FieldMask: camelCase paths in JSON, snake_case in the message", client,
         {"fieldMask": "int32Value,nestedByKey.label,a.bC.dEf"})
    echo("Any packing this file's message, a Timestamp, a wrapper, an Any", client,
         {"anyMessage": {"@type": "type.googleapis.com/transcode.v1.Nested", "label": "x", "inner": {"count": -1}},
          "anyTimestamp": {"@type": "type.googleapis.com/google.protobuf.Timestamp", "value": "1999-12-31T23:59:59.999Z"},
          "anyList": [{"@type": "type.googleapis.com/google.protobuf.BoolValue", "value": False},
                      {"@type": "type.googleapis.com/transcode.v1.Everything", "int64Value": "3",
                       "anyMessage": {"@type": "type.googleapis.com/google.protobuf.Duration", "value": "2s"}}]})
    echo("an empty message: {}", client, {})
    echo("a message of 60,000 bytes (under grpc.max_message_size 64KiB) passes", client, {"stringValue": "y" * 60000})

    # Streaming.
    stream_check("EchoStream: 3 copies as a JSON array, in order", client, "EchoStream", "/v1/echo:stream",
                 parse({"repeat": 3, "int64Value": "7", "nested": {"label": "s"}}, pb.Everything), want_count=3,
                 body={"repeat": 3, "int64Value": "7", "nested": {"label": "s"}}, http_method="POST")
    stream_check("EchoStream as NDJSON", client, "EchoStream", "/v1/echo:stream",
                 parse({"repeat": 4, "stringValue": "line\nbreak"}, pb.Everything), want_count=4, ndjson=True,
                 body={"repeat": 4, "stringValue": "line\nbreak"}, http_method="POST")

    # Upstream statuses: the gRPC -> HTTP table, body google.rpc.Status as JSON.
    table = {1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400, 10: 409, 11: 400, 12: 501,
             13: 500, 14: 503, 15: 500, 16: 401}
    wrong = []
    for code, status in table.items():
        message = f"failure {code}: \u00fc & 100% \"quoted\""
        reply = client("POST", "/v1/fail", body={"code": code, "message": message})
        body = reply.json()
        if not (reply.status == status and reply.is_json() and isinstance(body, dict) and body.get("code") == code
                and body.get("message") == message and isinstance(body.get("details", []), list)
                and set(body) <= {"code", "message", "details"}):
            wrong.append(f"{STATUS_BY_NUMBER[code].name}: {reply!r}")
    check("every upstream gRPC status maps by the table (404, 400, 409, 403, 401, 429, 501, 500, 503, 504, 499) "
          "with {code, message, details} and the message decoded", not wrong, "; ".join(wrong)[:1500])


def bad_request_checks(client):
    """Bad JSON: 400, the gateway's error body naming the field, nothing sent upstream."""
    cases = [
        ("a string in an int32 field", {"int32Value": "abc"}, ["int32Value"]),
        ("an unknown field name", {"noSuchField": 1}, ["noSuchField"]),
        ("malformed JSON text", '{"int32Value": ', []),
        ("a trailing comma", '{"int32Value": 1,}', []),
        ("a number for a nested message", {"nested": 5}, ["nested"]),
        ("an int32 out of range", {"int32Value": 2147483648}, ["int32Value"]),
        ("a negative uint32", {"uint32Value": -1}, ["uint32Value"]),
        ("a fraction for an int64", {"int64Value": 1.5}, ["int64Value"]),
        ("an int64 string out of range", {"int64Value": "9223372036854775808"}, ["int64Value"]),
        ("an invalid enum name", {"color": "PURPLE"}, ["color"]),
        ("invalid base64", {"bytesValue": "not base64!"}, ["bytesValue"]),
        ("an invalid timestamp", {"timestamp": "yesterday"}, ["timestamp"]),
        ("a timestamp without an offset", {"timestamp": "2024-01-01T00:00:00"}, ["timestamp"]),
        ("a duration without its s", {"duration": "1.5"}, ["duration"]),
        ("a bad field inside nested messages", {"nested": {"inner": {"count": "x"}}}, ["nested", "inner", "count"]),
        ("a bad field inside a repeated message", {"nestedList": [{}, {"count": True}]}, ["nestedList", "count"]),
        ("a bad map value", {"counts": {"a": "x"}}, ["counts"]),
        ("a bad int map key", {"labelsById": {"one": "x"}}, ["labelsById"]),
        ("a string for a bool", {"boolValue": "true"}, ["boolValue"]),
        ("a number for a string", {"stringValue": 5}, ["stringValue"]),
        ("a float out of range", {"floatValue": 1e39}, ["floatValue"]),
        ("\"nan\" (only NaN is the JSON form)", {"doubleValue": "nan"}, ["doubleValue"]),
        ("two members of one oneof", {"choiceText": "a", "choiceNumber": "1"}, []),
        ("an Any of a type not in the descriptor set", {"anyMessage": {"@type": "type.googleapis.com/no.Such"}},
         ["anyMessage"]),
        ("a FieldMask path with an underscore", {"fieldMask": "int32_value"}, ["fieldMask"]),
        ("a JSON array for the request message", [], []),
        # Refused by the JSON parser before any field is known: the message names the escape.
        ("a lone unpaired surrogate escape", '{"stringValue": "\\ud800"}', ["surrogate"]),
        ("invalid UTF-8 in a string", b'{"stringValue": "\xff\xfe"}', []),
    ]
    for index, (what, document, names) in enumerate(cases):
        request_id = f"transcode-bad-{index}"
        SEEN.forget("Echo")
        reply = client("POST", "/v1/echo", body=document, headers=[("x-request-id", request_id)])
        ok, error = error_body_ok(reply, 400, request_id)
        message = (error or {}).get("message", "") if isinstance(error, dict) else ""
        named = all(name in message or snake(name) in message for name in names)
        reached = "Echo" in SEEN.requests
        check(f"bad JSON, {what}: 400 naming {'.'.join(names) or 'the problem'}, not sent upstream",
              ok and named and not reached, f"{reply!r}{' (reached the upstream)' if reached else ''}")
    for what, path, names in [("a bad int32 query parameter", "/v1/shelves/1/books?page_size=abc", ["page_size"]),
                              ("an unknown enum name in the query", "/v1/shelves/1/books?genre=POETRY", ["genre"]),
                              ("a bad nested query parameter", "/v1/shelves/1/books?options.descending=maybe",
                               ["options", "descending"])]:
        SEEN.forget("ListBooks")
        reply = client("GET", path, headers=[("x-request-id", "transcode-query")])
        ok, error = error_body_ok(reply, 400, "transcode-query")
        message = error.get("message", "") if isinstance(error, dict) else ""
        named = all(name in message or camel(name) in message for name in names)
        check(f"{what}: 400 naming {'.'.join(names)}", ok and named and "ListBooks" not in SEEN.requests, f"{reply!r}")
    reply = client("POST", "/v1/shelves/2/books", body='"a string, not a Book"', headers=[("x-request-id", "transcode-body")])
    check("a body field (\"book\") given a JSON string: 400", error_body_ok(reply, 400, "transcode-body")[0], f"{reply!r}")

    for what, method, path in [("a path no binding matches", "GET", "/v1/nowhere/at/all"),
                               ("a known template with an unknown verb", "POST", "/v1/shelves/1:burn"),
                               ("a path one segment longer than a template", "GET", "/v1/shelves/1/books/1/title/extra")]:
        reply = client(method, path, headers=[("x-request-id", "transcode-404")])
        check(f"{what}: 404 with the gateway's JSON error", error_body_ok(reply, 404, "transcode-404")[0], f"{reply!r}")
    reply = client("PUT", "/v1/shelves/1", body={})
    check("a template bound for GET only, asked with PUT: 404 or 405", reply.status in (404, 405) and reply.is_json(),
          f"{reply!r}")


def snake(name):
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def camel(name):
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def hostile_checks(client, gateway):
    def still_serving():
        started = time.monotonic()
        reply = client("GET", "/v1/shelves/1/books/3", timeout=5)
        return reply.status == 200 and time.monotonic() - started < 2

    for what, body in [("a Value nested 10,000 arrays deep", '{"value":' + "[" * 10000 + "]" * 10000 + "}"),
                       ("a Struct nested 10,000 objects deep", '{"structValue":' + '{"a":' * 10000 + "1" + "}" * 10001),
                       ("a message nested 5,000 deep (inner.inner...)", '{"nested":' + '{"inner":' * 5000 + "{}" + "}" * 5001),
                       ("an unknown field holding JSON 10,000 deep", '{"zzz":' + "[" * 10000 + "]" * 10000 + "}")]:
        reply = client("POST", "/v1/echo", body=body, headers=[("x-request-id", "transcode-deep")])
        check(f"hostile: {what}: 400, no crash", error_body_ok(reply, 400, "transcode-deep")[0]
              and gateway.poll() is None and still_serving(), f"{reply!r}")
    SEEN.forget("Echo")
    reply = client("POST", "/v1/echo", body={"stringValue": "x" * 100000}, headers=[("x-request-id", "transcode-big")])
    check("hostile: a 100 KB body over grpc.max_message_size (64KiB): 413, not sent upstream",
          error_body_ok(reply, 413, "transcode-big")[0] and "Echo" not in SEEN.requests, f"{reply!r}")
    reply = client("POST", "/v1/echo", body='{"int64Value": ' + "9" * 60000 + "}", headers=[("x-request-id", "transcode-digits")])
    check("hostile: a 60,000-digit number for an int64: 400 at once", error_body_ok(reply, 400, "transcode-digits")[0]
          and still_serving(), f"{reply!r}")
    reply = client("POST", "/v1/echo", body='{"doubleValue": 1e999999999}', headers=[("x-request-id", "transcode-exp")])
    check("hostile: 1e999999999 for a double: 400", error_body_ok(reply, 400, "transcode-exp")[0], f"{reply!r}")
    started = time.monotonic()
    reply = client("GET", "/v1/shelves/1/books?" + "tags=&" * 10000)
    took = time.monotonic() - started
    check("hostile: 10,000 query parameters (60 KB): a 4xx answer within 2 s, others still served",
          400 <= reply.status < 500 and took < 2 and gateway.poll() is None and still_serving(), f"{reply!r} in {took:.2f} s")
    check("gateway still running after the hostile requests", gateway.poll() is None)


def passthrough_checks(port):
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = pb_grpc.LibraryStub(channel)
    SEEN.forget("GetBook")
    try:
        book = stub.GetBook(pb.GetBookRequest(name="shelves/1/books/3"), timeout=5)
        ok = book == SEEN.replies.get("GetBook") and book.title == "Cosmos"
        detail = str(book)[:200]
    except grpc.RpcError as error:
        ok, detail = False, f"{error.code()} {error.details()}"
    check("gRPC straight through the transcoding route (/transcode.v1.Library/GetBook)", ok, detail)
    try:
        stub.GetBook(pb.GetBookRequest(name="shelves/1/books/none"), timeout=5)
        code = grpc.StatusCode.OK
    except grpc.RpcError as error:
        code = error.code()
    check("... and its NOT_FOUND stays a gRPC status", code == grpc.StatusCode.NOT_FOUND, f"{code}")
    try:
        items = list(pb_grpc.KitchenStub(channel).EchoStream(pb.Everything(repeat=2), timeout=5))
        ok = [item.maybe_count for item in items] == [0, 1]
    except grpc.RpcError as error:
        ok, items = False, f"{error.code()} {error.details()}"
    check("... and a gRPC server stream too", ok, f"{items}")
    channel.close()


def proto_names_checks(client):
    """The second gateway: use_proto_names and always_print_primitive_fields."""
    o = PROTO_NAMES_PRINT
    echo("use_proto_names + always print: {} prints every field without presence at its default", client, {}, options=o)
    echo("use_proto_names + always print: proto names out; both names accepted in", client,
         {"int64Value": "5", "string_value": "s", "nested": {"label": "x"}, "customName": "j", "maybeCount": 0,
          "choiceText": "", "timestamp": "2020-01-01T00:00:00Z"}, options=o)
    echo("use_proto_names + always print: the kitchen sink", client, SINK, options=o)
    roundtrip("use_proto_names: GetBook prints page_count", client, "GetBook", "GET", "/v1/shelves/1/books/2",
              want_request=pb.GetBookRequest(name="shelves/1/books/2"), options=o)
    roundtrip("use_proto_names: response_body \"book\" with proto names", client, "LookupBook", "GET",
              "/v1/shelves/1/books/2:lookup", want_request=pb.GetBookRequest(name="shelves/1/books/2"),
              options=o, response_field="book")
    stream_check("use_proto_names + always print: a stream's elements", client, "ListBooks",
                 "/v1/shelves/1/books?genre=SCIENCE", parse({"parent": "shelves/1", "genre": "SCIENCE"}, pb.ListBooksRequest),
                 options=o)
    reply = client("POST", "/v1/fail", body={"code": 5, "message": "gone"})
    check("use_proto_names: an upstream status body is still {code, message}",
          reply.status == 404 and (reply.json() or {}).get("code") == 5 and reply.json().get("message") == "gone", f"{reply!r}")


def config(port, admin, upstream, dead, descriptors, extra=""):
    transcode = f'{{descriptors: "{descriptors}", services: [{", ".join(SERVICES)}]{extra}}}'
    return f"""
server: {{workers: 2, admin: {{address: "127.0.0.1:{admin}"}}}}
listeners:
  - {{name: plain, address: "127.0.0.1:{port}", protocols: [http1, h2c]}}
upstreams:
  library: {{protocol: h2c, endpoints: [{{address: "127.0.0.1:{upstream}"}}]}}
  down: {{protocol: h2c, endpoints: [{{address: "127.0.0.1:{dead}"}}]}}
routes:
  - name: down
    match: {{path_prefix: /, headers: {{x-upstream: down}}}}
    upstream: down
    grpc: {{transcode: {transcode}}}
  - name: transcoded
    match: {{path_prefix: /}}
    upstream: library
    grpc:
      max_message_size: 64KiB
      transcode: {transcode}
"""


def gateway_started(label, gateway, tmp):
    up = gateway.poll() is None
    detail = ""
    if not up:
        with open(os.path.join(tmp, "gateway.log")) as log:
            detail = log.read()[-600:].strip()
    check(f"{label}: the gateway accepts the transcoding configuration and runs", up, detail)
    return up


def upstream_down_check(client, label, headers):
    reply = client("GET", "/v1/shelves/1/books/1", headers=headers)
    body = reply.json()
    error = body.get("error") if isinstance(body, dict) else None
    shaped = (isinstance(error, dict) and error.get("status") == reply.status) or \
             (isinstance(body, dict) and body.get("code") == 14)
    check(label, reply.status in (502, 503) and reply.is_json() and shaped, f"{reply!r}")


def main():
    tmp = tempfile.mkdtemp(prefix="causeway-transcode-")
    descriptors = generate(tmp)
    server, upstream = start_upstream()
    dead = free_port()
    try:
        port, admin = free_port(), free_port()
        with running_gateway(CAUSEWAY, config(port, admin, upstream, dead, descriptors), tmp, port) as gateway:
            gateway_started("default names", gateway, tmp)
            client = Client(port, tmp)
            library_checks(client)
            kitchen_checks(client)
            bad_request_checks(client)
            passthrough_checks(port)
            upstream_down_check(client, "an upstream that is down: 502/503 with a JSON error", [("x-upstream", "down")])
            hostile_checks(client, gateway)

        tmp2 = os.path.join(tmp, "proto-names")
        os.makedirs(tmp2)
        port, admin = free_port(), free_port()
        extra = ", use_proto_names: true, always_print_primitive_fields: true"
        with running_gateway(CAUSEWAY, config(port, admin, upstream, dead, descriptors, extra), tmp2, port) as gateway:
            gateway_started("proto names", gateway, tmp2)
            client = Client(port, tmp2)
            proto_names_checks(client)
            server.stop(0).wait()
            upstream_down_check(client, "the upstream stopped: 502/503 with a JSON error", [])
            check("gateway still running at the end", gateway.poll() is None)
    finally:
        server.stop(0)
    results.finish("transcode")


if __name__ == "__main__":
    main()
