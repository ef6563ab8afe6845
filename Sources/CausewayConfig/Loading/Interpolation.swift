/// `${VAR}` and `${VAR:-default}` replacement, applied to the text before YAML parsing
/// (config contract). Lines are kept as they are, so a YAML error still points at the line the
/// user wrote; an unset variable without a default is an error at the `${` that names it.
/// `$${` escapes a literal `${`.
public enum Interpolation {
    public static func apply(
        _ text: String, file: String, environment: [String: String]
    ) -> (text: String, errors: [ConfigError]) {
        var output = ""
        output.reserveCapacity(text.utf8.count)
        var errors: [ConfigError] = []
        var lineNumber = 0
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            if lineNumber > 1 { output.append("\n") }
            guard line.contains("${") else {
                output.append(contentsOf: line)
                continue
            }
            output.append(
                contentsOf: expand(line, line: lineNumber, file: file, environment: environment, errors: &errors))
        }
        return (output, errors)
    }

    private static func expand(
        _ line: Substring, line lineNumber: Int, file: String, environment: [String: String],
        errors: inout [ConfigError]
    ) -> String {
        var result = ""
        var index = line.startIndex
        while index < line.endIndex {
            let rest = line[index...]
            if rest.hasPrefix("$${") {
                result.append("${")
                index = line.index(index, offsetBy: 3)
                continue
            }
            guard rest.hasPrefix("${") else {
                result.append(line[index])
                index = line.index(after: index)
                continue
            }
            let column = line.distance(from: line.startIndex, to: index) + 1
            let bodyStart = line.index(index, offsetBy: 2)
            guard let close = line[bodyStart...].firstIndex(of: "}") else {
                errors.append(.init(file: file, line: lineNumber, column: column, path: "",
                                    message: "unterminated ${ in variable reference"))
                result.append(contentsOf: rest)
                break
            }
            let body = line[bodyStart..<close]
            let name: Substring
            let fallback: Substring?
            if let separator = body.range(of: ":-") {
                name = body[..<separator.lowerBound]
                fallback = body[separator.upperBound...]
            } else {
                name = body
                fallback = nil
            }
            if !isVariableName(name) {
                errors.append(.init(file: file, line: lineNumber, column: column, path: "",
                                    message: "invalid variable name \"\(name)\" in ${...}"))
            } else if let value = environment[String(name)], !(value.isEmpty && fallback != nil) {
                result.append(value)
            } else if let fallback {
                result.append(contentsOf: fallback)
            } else {
                errors.append(.init(file: file, line: lineNumber, column: column, path: "",
                                    message: "environment variable \(name) is not set (use ${\(name):-default} for a default)"))
            }
            index = line.index(after: close)
        }
        return result
    }

    private static func isVariableName(_ name: Substring) -> Bool {
        guard let first = name.unicodeScalars.first, first == "_" || first.properties.isAlphabetic else {
            return false
        }
        return name.unicodeScalars.allSatisfy { $0 == "_" || ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) }
    }
}
