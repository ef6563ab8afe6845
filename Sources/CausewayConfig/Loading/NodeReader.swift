import Yams

/// Reads a composed YAML tree with positions, collecting errors instead of stopping at the
/// first one. Every accessor takes the key path it reports under, so a message names exactly
/// the key a user wrote (`routes[2].match.path_prefix`).
final class NodeReader {
    let file: String
    private(set) var errors: [ConfigError] = []

    init(file: String) {
        self.file = file
    }

    func fail(_ node: Node?, _ path: String, _ message: String) {
        let mark = node?.mark
        errors.append(ConfigError(file: file, line: mark?.line ?? 1, column: mark?.column ?? 1, path: path,
                                  message: message))
    }

    func location(_ node: Node, _ path: String) -> ConfigLocation {
        ConfigLocation(file: file, line: node.mark?.line ?? 1, column: node.mark?.column ?? 1, path: path)
    }

    func fail(at mark: Mark?, _ path: String, _ message: String) {
        errors.append(ConfigError(file: file, line: mark?.line ?? 1, column: mark?.column ?? 1, path: path,
                                  message: message))
    }

    /// A mapping whose keys must all be in `allowed`; unknown keys are reported at the key.
    func mapping(_ node: Node, _ path: String, allowed: [String]) -> Fields? {
        guard case .mapping(let mapping) = node else {
            fail(node, path, "expected a mapping, found \(describe(node))")
            return nil
        }
        var values: [String: (key: Node, value: Node)] = [:]
        for (key, value) in mapping {
            guard let name = key.scalar?.string else {
                fail(key, path, "keys must be plain strings")
                continue
            }
            let keyPath = join(path, name)
            if !allowed.contains(name) {
                fail(key, keyPath, "unknown key \"\(name)\"\(didYouMean(name, in: allowed))")
                continue
            }
            values[name] = (key, value)
        }
        return Fields(node: node, path: path, values: values)
    }

    /// A mapping with user-chosen keys (upstream names, header maps), in file order.
    func entries(_ node: Node, _ path: String) -> [(name: String, key: Node, value: Node)]? {
        guard case .mapping(let mapping) = node else {
            fail(node, path, "expected a mapping, found \(describe(node))")
            return nil
        }
        var result: [(String, Node, Node)] = []
        for (key, value) in mapping {
            guard let name = key.scalar?.string, !name.isEmpty else {
                fail(key, path, "keys must be non-empty strings")
                continue
            }
            result.append((name, key, value))
        }
        return result
    }

    func sequence(_ node: Node, _ path: String) -> [(node: Node, path: String)]? {
        guard case .sequence(let sequence) = node else {
            fail(node, path, "expected a list, found \(describe(node))")
            return nil
        }
        return sequence.enumerated().map { ($0.element, "\(path)[\($0.offset)]") }
    }

    func string(_ node: Node, _ path: String) -> String? {
        guard case .scalar(let scalar) = node, node.null == nil || scalar.style != .plain else {
            fail(node, path, "expected a string, found \(describe(node))")
            return nil
        }
        return scalar.string
    }

    /// A string, or nil without complaint for an explicit `null` (the contract's "default" marker).
    func optionalString(_ node: Node, _ path: String) -> String? {
        if case .scalar(let scalar) = node, node.null != nil, scalar.style == .plain { return nil }
        return string(node, path)
    }

    func stringList(_ node: Node, _ path: String) -> [String]? {
        guard let items = sequence(node, path) else { return nil }
        let strings = items.compactMap { string($0.node, $0.path) }
        return strings.count == items.count ? strings : nil
    }

    func int(_ node: Node, _ path: String, range: ClosedRange<Int>) -> Int? {
        guard case .scalar = node, let value = node.int else {
            fail(node, path, "expected an integer, found \(describe(node))")
            return nil
        }
        guard range.contains(value) else {
            fail(node, path, "must be between \(range.lowerBound) and \(range.upperBound), got \(value)")
            return nil
        }
        return value
    }

    func bool(_ node: Node, _ path: String) -> Bool? {
        guard case .scalar = node, let value = node.bool else {
            fail(node, path, "expected true or false, found \(describe(node))")
            return nil
        }
        return value
    }

    func duration(_ node: Node, _ path: String) -> Duration? {
        guard case .scalar(let scalar) = node, let value = Units.duration(scalar.string) else {
            fail(node, path, "expected a duration like \"250ms\", \"5s\", \"10m\" or \"1h\", found \(describe(node))")
            return nil
        }
        return value
    }

    func size(_ node: Node, _ path: String) -> Int? {
        guard case .scalar(let scalar) = node, let value = Units.size(scalar.string) else {
            fail(node, path, "expected a size like \"512\", \"64KiB\" or \"10MiB\", found \(describe(node))")
            return nil
        }
        return value
    }

    func address(_ node: Node, _ path: String) -> HostPort? {
        guard case .scalar(let scalar) = node, let value = Units.address(scalar.string) else {
            fail(node, path, "expected an address \"host:port\", found \(describe(node))")
            return nil
        }
        return value
    }

    func oneOf(_ node: Node, _ path: String, _ allowed: [String]) -> String? {
        guard let value = string(node, path) else { return nil }
        guard allowed.contains(value) else {
            let list = allowed.joined(separator: ", ")
            fail(node, path, "unknown value \"\(value)\", expected one of: \(list)\(didYouMean(value, in: allowed))")
            return nil
        }
        return value
    }

    func join(_ path: String, _ key: String) -> String {
        path.isEmpty ? key : "\(path).\(key)"
    }

    private func describe(_ node: Node) -> String {
        switch node {
        case .scalar(let scalar):
            if node.null != nil && scalar.style == .plain { return "null" }
            return "\"\(scalar.string)\""
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }
}

/// The known keys of one mapping, looked up by name, with their paths.
struct Fields {
    let node: Node
    let path: String
    let values: [String: (key: Node, value: Node)]

    func has(_ key: String) -> Bool { values[key] != nil }

    /// The value under `key` and its path, or nil when absent. A YAML null counts as absent.
    subscript(_ key: String) -> (node: Node, path: String)? {
        guard let entry = values[key] else { return nil }
        if case .scalar(let scalar) = entry.value, entry.value.null != nil, scalar.style == .plain { return nil }
        return (entry.value, path.isEmpty ? key : "\(path).\(key)")
    }

    func keyNode(_ key: String) -> Node? { values[key]?.key }
}
