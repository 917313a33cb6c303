import Glibc

/// An operating-system call that failed: the call, the path or object it
/// acted on, and the errno it left, in the shape of swift-system's `Errno`.
public struct SystemError: Error, CustomStringConvertible, Equatable, Sendable {
    public let operation: String
    public let target: String
    public let errno: Int32

    public init(_ operation: String, _ target: String, errno: Int32 = Glibc.errno) {
        self.operation = operation
        self.target = target
        self.errno = errno
    }

    public var description: String {
        "\(operation) \(target): \(String(cString: strerror(errno)))"
    }

    public var isNoSpace: Bool { errno == ENOSPC || errno == EDQUOT }
}

/// A failure of the program's own logic on some input, with what it was about.
public struct JobFetchError: Error, CustomStringConvertible, Equatable, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
