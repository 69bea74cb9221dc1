#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Synchronization

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
                throw FileError(
                    path: finalPath, offset: written + UInt64(done),
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
        SyncEvents.emit(.file(tempPath))
        close(fd)
        fd = -1
        if rename(tempPath, finalPath) != 0 {
            throw FileError(path: finalPath, "rename failed: \(String(cString: strerror(errno)))")
        }
        SyncEvents.emit(.rename(from: tempPath, to: finalPath))
        committed = true
        syncDirectory(of: finalPath)
    }

    /// Closes and deletes the temporary file.
    public func abandon() {
        if fd >= 0 {
            close(fd)
            fd = -1
        }
        if !committed { unlink(tempPath) }
    }

    deinit { abandon() }
}

/// fsyncs the directory holding `path`, so that a rename in it is durable.
public func syncDirectory(of path: String) {
    let dir = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
    syncDirectory(dir.isEmpty ? "/" : dir)
}

/// fsyncs the directory `path` itself (its entries), best effort: some file systems refuse fsync on a directory.
public func syncDirectory(_ path: String) {
    let dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard dfd >= 0 else { return }
    if fsync(dfd) == 0 { SyncEvents.emit(.directory(path)) }
    close(dfd)
}

/// Moves a finished file or directory tree into place so that a power loss leaves `destination` either absent
/// or complete: every file and directory under `source` is fsynced (a file system may persist a rename before
/// the data under the new name, publishing a name whose bytes never reached the disk), then `source` is renamed
/// to `destination`, then the directory holding `destination` is fsynced so the rename itself is durable.
public func renameDurably(_ source: String, to destination: String) throws {
    try syncTree(source)
    if rename(source, destination) != 0 {
        throw FileError(path: destination, "cannot rename \(source) into place: \(String(cString: strerror(errno)))")
    }
    SyncEvents.emit(.rename(from: source, to: destination))
    syncDirectory(of: destination)
}

/// fsyncs `path` and, for a directory, everything under it (files before the directories that name them).
/// Symbolic links are not followed.
private func syncTree(_ path: String) throws {
    var st = stat()
    guard lstat(path, &st) == 0 else { throw FileError(path: path, "cannot stat: \(String(cString: strerror(errno)))") }
    switch st.st_mode & S_IFMT {
    case S_IFDIR:
        guard let dir = opendir(path) else {
            throw FileError(path: path, "cannot list: \(String(cString: strerror(errno)))")
        }
        var names: [String] = []
        while let e = readdir(dir) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        closedir(dir)
        for n in names { try syncTree(path + "/" + n) }
        syncDirectory(path)
    case S_IFREG:
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError(path: path, "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw FileError(path: path, "fsync failed: \(String(cString: strerror(errno)))") }
        SyncEvents.emit(.file(path))
    default:
        break
    }
}

/// One durability step of the writers above: a file's bytes synced, a rename, a directory's entries synced.
public enum SyncEvent: Sendable, Equatable {
    /// fsync of the regular file at this path succeeded.
    case file(String)
    /// A rename succeeded.
    case rename(from: String, to: String)
    /// fsync of this directory succeeded.
    case directory(String)
}

/// Reports durability steps as they happen, so tests can check their order (file synced, renamed, directory
/// synced) rather than only that a write finished. Nobody listens outside tests; then it costs one lock.
public enum SyncEvents {
    private final class Recorder: Sendable {
        let events = Mutex<[SyncEvent]>([])
    }
    private static let recorders = Mutex<(next: Int, all: [Int: Recorder])>((0, [:]))

    static func emit(_ e: SyncEvent) {
        let all = recorders.withLock { $0.all }
        for r in all.values { r.events.withLock { $0.append(e) } }
    }

    /// Runs `body` and returns what it returned and every event of any thread while it ran, in order.
    public static func record<T>(_ body: () throws -> T) rethrows -> (T, [SyncEvent]) {
        let recorder = Recorder()
        let id = recorders.withLock { r in
            r.next += 1
            r.all[r.next] = recorder
            return r.next
        }
        defer { _ = recorders.withLock { $0.all.removeValue(forKey: id) } }
        let result = try body()
        return (result, recorder.events.withLock { $0 })
    }
}

/// Writes a small file atomically: temporary name, fsync, rename.
public func writeFileAtomically(_ bytes: [UInt8], to path: String) throws {
    let out = try AtomicOutput(path: path)
    try out.write(bytes)
    try out.commit()
}
