import CausewayGraphQL

// The JSON parser every request body, variables object and upstream answer goes through:
// parse onto the tape, then read it back as values (what variables become).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let tape = try? JSONTape(parsing: bytes) {
        _ = tape.map()
    }
    return 0
}
