import NIOPosix

/// Request ids: 128 bits as 32 hex digits, unique enough to search logs by.
///
/// Each thread draws from its own generator, seeded from the system's once: asking the kernel
/// (getrandom) for every request cost two system calls per request, a measurable share of the
/// proxy's CPU. The ids need to be unique and hard to guess, not key material.
public enum RequestID {
    private final class Generator {
        var state: (UInt64, UInt64)

        init() {
            var system = SystemRandomNumberGenerator()
            state = (system.next() | 1, system.next())
        }

        /// xorshift128+.
        func next() -> UInt64 {
            var s1 = state.0
            let s0 = state.1
            state.0 = s0
            s1 ^= s1 << 23
            state.1 = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26)
            return state.1 &+ s0
        }
    }

    // Safe: each thread only ever reads and writes its own value.
    nonisolated(unsafe) private static let generators = ThreadSpecificVariable<Generator>()

    public static func generate() -> String {
        let generator: Generator
        if let existing = generators.currentValue {
            generator = existing
        } else {
            generator = Generator()
            generators.currentValue = generator
        }
        return hex(generator.next(), generator.next())
    }

    /// A client's id is kept when it is plain printable text of sane length, so it cannot
    /// smuggle anything into logs or upstream headers.
    public static func isAcceptable(_ id: String) -> Bool {
        let utf8 = id.utf8
        return !utf8.isEmpty && utf8.count <= 128 && utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != 0x22 && $0 != 0x5C }
    }

    private static func hex(_ high: UInt64, _ low: UInt64) -> String {
        String(unsafeUninitializedCapacity: 32) { buffer in
            let digits: StaticString = "0123456789abcdef"
            for index in 0..<16 {
                let shift = UInt64(60 - index * 4)
                buffer[index] = digits.utf8Start[Int((high >> shift) & 0xF)]
                buffer[index + 16] = digits.utf8Start[Int((low >> shift) & 0xF)]
            }
            return 32
        }
    }
}
