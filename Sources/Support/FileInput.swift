import Foundation

/// Why a file could not be read, as one line naming it (`no such file: PATH`), never Foundation's error dump.
public struct FileReadError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The file asked for.
    public let path: String
    /// What is wrong: `no such file`, `is a directory, not a file`, or the system's reason.
    public let reason: String

    /// An error for `path`.
    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }

    /// Whether the file does not exist.
    public var isMissing: Bool { reason == FileReadError.missing }

    /// The reason of a missing file.
    public static let missing = "no such file"

    /// `no such file: PATH`, or `PATH: REASON`.
    public var description: String { isMissing ? "no such file: \(path)" : "\(path): \(reason)" }

    /// The error for `path` after a failed system call that set `code` (errno).
    public static func errno(_ code: Int32, path: String) -> FileReadError {
        switch code {
        case ENOENT, ENOTDIR: return FileReadError(path: path, reason: missing)
        case EISDIR: return FileReadError(path: path, reason: "is a directory, not a file")
        default: return FileReadError(path: path, reason: "cannot read: \(String(cString: strerror(code)))")
        }
    }
}

/// Reads the whole file at `path`; a missing, unreadable or directory path throws a `FileReadError` naming it.
public func readFile(_ path: String) throws(FileReadError) -> Data {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw .errno(errno, path: path) }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw .errno(errno, path: path) }
    if (st.st_mode & S_IFMT) == S_IFDIR { throw .errno(EISDIR, path: path) }
    var data = Data()
    if st.st_size > 0 { data.reserveCapacity(Int(st.st_size)) }
    var buffer = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw .errno(errno, path: path)
        }
        if n == 0 { break }
        data.append(contentsOf: buffer[..<n])
    }
    return data
}

/// Reads the UTF-8 text file at `path` (invalid bytes become U+FFFD); errors as `readFile`.
public func readTextFile(_ path: String) throws(FileReadError) -> String {
    String(decoding: try readFile(path), as: UTF8.self)
}

extension FileReadError {
    /// The error for `path` from one that Foundation's file APIs threw (`Data(contentsOf:)` and the like), or
    /// nil when `error` is not one of theirs. `path` defaults to the one the error names.
    public init?(foundation error: any Error, path: String? = nil) {
        let e = error as NSError
        guard e.domain == NSCocoaErrorDomain || e.domain == NSPOSIXErrorDomain else { return nil }
        let named = (e.userInfo[NSFilePathErrorKey] as? String) ?? (e.userInfo[NSURLErrorKey] as? URL)?.path
        let file = path ?? named ?? "?"
        let underlying = e.userInfo[NSUnderlyingErrorKey] as? NSError
        if e.domain == NSCocoaErrorDomain && (e.code == NSFileReadNoSuchFileError || e.code == NSFileNoSuchFileError) {
            self.init(path: file, reason: FileReadError.missing)
        } else if e.domain == NSPOSIXErrorDomain {
            self = .errno(Int32(e.code), path: file)
        } else if let u = underlying, u.domain == NSPOSIXErrorDomain {
            self = .errno(Int32(u.code), path: file)
        } else {
            self.init(path: file, reason: "cannot read: \(e.localizedFailureReason ?? e.localizedDescription)")
        }
    }
}
