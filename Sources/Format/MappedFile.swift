#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Support

/// A read-only memory mapping of a whole file; the owner that keeps views into it alive.
///
/// The mapping is advised random: a page fault reads its own page, not the disk's read-ahead window (often
/// megabytes, so a few header and footer reads would pull in most of a cold shard). Readers announce what they
/// are about to read with `willNeed(_:)`, or `adviseSequential()` for a front-to-back pass.
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
        _ = madvise(p, size, MADV_RANDOM)
    }

    /// Starts reading bytes `range` (a whole block) from disk: one request for those pages only. Blocks are always
    /// asked for whole, so when a page inside the range is already resident (the warm case, one cheap `mincore`)
    /// the rest is taken to be too, and the request, which costs a page-cache lookup per page, is skipped.
    public func willNeed(_ range: Range<Int>) {
        guard let base, !range.isEmpty else { return }
        let page = MappedFile.pageSize
        let start = max(0, range.lowerBound) & ~(page - 1)
        let end = min(bytes.count, range.upperBound)
        // Two pages or fewer: the faults themselves read no more than that.
        guard end - start > 2 * page else { return }
        // A page wholly inside the block (its first and last may be shared with neighbours).
        let middle = (start + (end - start) / 2) & ~(page - 1)
        var resident: UInt8 = 0
        if mincore(base + middle, page, &resident) == 0, resident & 1 == 1 { return }
        _ = madvise(base + start, end - start, MADV_WILLNEED)
    }

    private static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// Tells the kernel the file will be read front to back (bigger read-ahead).
    public func adviseSequential() {
        if let base { _ = madvise(base, bytes.count, MADV_SEQUENTIAL) }
    }

    deinit {
        if let base { munmap(base, bytes.count) }
    }
}
