#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Support

/// A read-only memory mapping of a whole file; the owner that keeps views into it alive.
public final class MappedFile: @unchecked Sendable {
    // Immutable after init; the mapping is PROT_READ, so sharing it between threads is safe.
    /// The file's path, for error messages.
    public let path: String
    /// The mapped bytes (empty for an empty file).
    public let bytes: UnsafeRawBufferPointer
    private let base: UnsafeMutableRawPointer?

    /// Maps `path` read-only; throws a `FormatError` naming the file when it cannot be opened or mapped.
    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw FormatError(.io, path: path, FileReadError.errno(errno, path: path).reason) }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 {
            throw FormatError(.io, path: path, "cannot stat: \(String(cString: strerror(errno)))")
        }
        if (st.st_mode & S_IFMT) != S_IFREG { throw FormatError(.io, path: path, "not a regular file") }
        let size = Int(st.st_size)
        if size == 0 {
            base = nil
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        if p == MAP_FAILED || p == nil {
            throw FormatError(.io, path: path, "cannot map \(size) bytes: \(String(cString: strerror(errno)))")
        }
        base = p
        bytes = UnsafeRawBufferPointer(start: p, count: size)
    }

    /// Tells the kernel the file will be read front to back (bigger read-ahead).
    public func adviseSequential() {
        if let base { _ = madvise(base, bytes.count, MADV_SEQUENTIAL) }
    }

    deinit {
        if let base { munmap(base, bytes.count) }
    }
}
