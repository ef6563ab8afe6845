/// A configuration problem located in its source file.
///
/// Printed as `file:line:column: key.path: message`, the shape compilers use, so editors and
/// terminals can jump to it. Loading collects every error before reporting, so one run of
/// `causeway validate` lists them all.
public struct ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    public var path: String
    public var message: String

    public init(file: String, line: Int, column: Int, path: String, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.path = path
        self.message = message
    }

    public var description: String {
        path.isEmpty
            ? "\(file):\(line):\(column): \(message)"
            : "\(file):\(line):\(column): \(path): \(message)"
    }
}

/// Every error found while loading one file.
public struct ConfigErrors: Error, Sendable, CustomStringConvertible {
    public var errors: [ConfigError]

    public init(_ errors: [ConfigError]) {
        self.errors = errors
    }

    public var description: String {
        errors.map(\.description).joined(separator: "\n")
    }
}

/// The closest candidate within a small edit distance, for "did you mean" hints.
func suggestion(for word: String, in candidates: some Sequence<String>) -> String? {
    var best: (String, Int)?
    for candidate in candidates {
        let distance = editDistance(word, candidate)
        if distance <= max(2, word.count / 3), distance < (best?.1 ?? .max) {
            best = (candidate, distance)
        }
    }
    return best?.0
}

func didYouMean(_ word: String, in candidates: some Sequence<String>) -> String {
    guard let hint = suggestion(for: word, in: candidates) else { return "" }
    return " (did you mean \"\(hint)\"?)"
}

private func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a.utf8)
    let b = Array(b.utf8)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    var current = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        current[0] = i
        for j in 1...b.count {
            let cost = a[i - 1] == b[j - 1] ? 0 : 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
        }
        swap(&previous, &current)
    }
    return previous[b.count]
}
