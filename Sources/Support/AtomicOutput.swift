#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file written under a temporary name and renamed into place only when complete.
///
/// Until `commit()` the final path is untouched; a killed process leaves at most `<final>.tmp-<pid>`, which no
/// reader opens and which `removeStaleTemporaries` clears. Every byte written also feeds a running checksum.
public final class AtomicOutput {
    /// Where the file appears on commit.
    public let finalPath: String
    /// Where it is written until then.
    public let tempPath: String
    private var fd: Int32
    /// Bytes written so far.
    public private(set) var written: UInt64 = 0
    /// XXH3 of everything written.
    public let checksum = StreamingChecksum()
    private var committed = false

    /// Creates `<path>.tmp-<pid>` for writing.
    public init(path: String) throws {
        finalPath = path
        tempPath = path + ".tmp-\(getpid())"
        fd = open(tempPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd < 0 { throw FileError(path: tempPath, "cannot create: \(String(cString: strerror(errno)))") }
    }

    /// Appends bytes; a short write or a full disk throws naming the file and offset.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        checksum.update(bytes)
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError(path: finalPath, offset: written + UInt64(done),
                                  "write failed: \(String(cString: strerror(errno)))")
            }
            done += n
        }
        written += UInt64(bytes.count)
    }

    /// Appends an array of bytes.
    public func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }

    /// Writes zeros until the file length is a multiple of `alignment`.
    public func pad(to alignment: Int) throws {
        let rem = Int(written % UInt64(alignment))
        if rem != 0 { try write([UInt8](repeating: 0, count: alignment - rem)) }
    }

    /// Flushes to disk, renames to the final name and syncs the directory so the rename survives a crash.
    public func commit() throws {
        if fsync(fd) != 0 {
            throw FileError(path: finalPath, "fsync failed: \(String(cString: strerror(errno)))")
        }
        close(fd); fd = -1
        if rename(tempPath, finalPath) != 0 {
            throw FileError(path: finalPath, "rename failed: \(String(cString: strerror(errno)))")
        }
        committed = true
        syncDirectory(of: finalPath)
    }

    /// Closes and deletes the temporary file.
    public func abandon() {
        if fd >= 0 { close(fd); fd = -1 }
        if !committed { unlink(tempPath) }
    }

    deinit { abandon() }
}

/// fsyncs the directory holding `path`, so that a rename in it is durable.
public func syncDirectory(of path: String) {
    let dir = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
    let dfd = open(dir.isEmpty ? "/" : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if dfd >= 0 { _ = fsync(dfd); close(dfd) }
}

/// Writes a small file atomically: temporary name, fsync, rename.
public func writeFileAtomically(_ bytes: [UInt8], to path: String) throws {
    let out = try AtomicOutput(path: path)
    try out.write(bytes)
    try out.commit()
}
