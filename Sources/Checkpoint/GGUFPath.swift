#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

extension GGUFFile {
    /// Whether `path` names a GGUF file rather than a checkpoint directory or a tokenizer.json: the file's first
    /// four bytes are GGUF's magic, or, when it cannot be read, the name ends in `.gguf`. The one place
    /// every command and loader decides this.
    public static func isGGUF(path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return hasGGUFExtension(path) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return false }
        var magic: UInt32 = 0
        guard read(fd, &magic, 4) == 4 else { return false }
        return UInt32(littleEndian: magic) == 0x4655_4747
    }

    /// Whether `path` ends in `.gguf` (any case): how an output path asks for GGUF, and the guess for an input that
    /// cannot be read.
    public static func hasGGUFExtension(_ path: String) -> Bool { path.lowercased().hasSuffix(".gguf") }
}
