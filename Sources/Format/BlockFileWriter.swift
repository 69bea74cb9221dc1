import Support

/// Accumulates one column's current block and its directory.
struct ColumnBuilder {
    var name: String
    var level: Level
    var dtype: DType
    var count: UInt64 = 0
    var blockFirst: UInt64 = 0
    var buffer: [UInt8] = []
    var blocks: [BlockEntry] = []
    var compress: Bool
    /// Raw bytes at which the current block is cut.
    var blockBytes: Int

    mutating func append<T: FixedWidthInteger>(_ v: T) {
        withUnsafeBytes(of: v.littleEndian) { buffer.append(contentsOf: $0) }
        count += 1
    }

    mutating func append(_ v: Float) { append(v.bitPattern) }

    /// Appends a whole array of little-endian elements at once (this module only targets little-endian CPUs).
    mutating func appendAll<T: BitwiseCopyable>(_ values: [T]) {
        values.withUnsafeBytes { buffer.append(contentsOf: $0) }
        count += UInt64(values.count)
    }

    /// Appends elements `from ..< to` of `values`.
    mutating func append<T: BitwiseCopyable>(_ values: [T], _ from: Int, _ to: Int) {
        let size = MemoryLayout<T>.stride
        values.withUnsafeBytes {
            buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: $0[(from * size)..<(to * size)]))
        }
        count += UInt64(to - from)
    }

    var descriptor: ColumnDescriptor {
        ColumnDescriptor(name: name, level: level, dtype: dtype, count: count, blocks: blocks)
    }
}

/// Writes the block container shared by shards and sidecar column files.
///
/// Blocks are cut only at trajectory boundaries, so one trajectory's values in any column lie in one block;
/// memory stays at about one block per column whatever the shard size.
final class BlockFileWriter {
    let out: AtomicOutput
    var columns: [ColumnBuilder] = []
    let compression: Compression
    let blockBytes: Int
    private let compressor: ZstdCompressor?
    private var scratch: [UInt8] = []
    private let magic: [UInt8]

    init(path: String, magic: [UInt8], compression: Compression, blockBytes: Int) throws {
        guard blockBytes >= 64 else {
            throw FormatError(.invalidArgument, path: path, "block size \(blockBytes) is below 64 bytes")
        }
        self.magic = magic
        self.compression = compression
        self.blockBytes = blockBytes
        if case .zstd(let level) = compression { compressor = ZstdCompressor(level: level) } else { compressor = nil }
        out = try AtomicOutput(path: path)
        var h = ByteWriter()
        h.raw(magic)
        h.u32(formatVersion)
        h.u32(0)
        h.raw([UInt8](repeating: 0, count: 16))
        try out.write(h.bytes)
    }

    /// Adds a column whose blocks are cut at `blockBytes` raw bytes (the file's target when nil, and never above it).
    func addColumn(
        _ name: String, _ level: Level, _ dtype: DType, compressible: Bool = true, blockBytes: Int? = nil
    ) -> Int {
        columns.append(
            ColumnBuilder(
                name: name, level: level, dtype: dtype,
                compress: compressible && compression != .none,
                blockBytes: max(64, min(self.blockBytes, blockBytes ?? self.blockBytes))))
        return columns.count - 1
    }

    /// Writes every column whose block reached the target size (call at trajectory boundaries only).
    func flushFull() throws {
        for i in columns.indices where columns[i].buffer.count >= columns[i].blockBytes { try flush(i) }
    }

    func flush(_ i: Int) throws {
        let elements = columns[i].count - columns[i].blockFirst
        guard elements > 0 else { return }
        try out.pad(to: Container.blockAlignment)
        let offset = out.written
        var codec = Codec.raw
        var stored: Int = columns[i].buffer.count
        if columns[i].compress, let compressor {
            let n = columns[i].buffer.withUnsafeBytes { compressor.compress($0, into: &scratch) }
            // Incompressible blocks (random floats) stay raw: smaller and readable without a copy.
            if let n, n < stored {
                codec = .zstd
                stored = n
            }
        }
        let sum: UInt64
        if codec == .zstd {
            sum = scratch.withUnsafeBytes { Checksum.xxh3(UnsafeRawBufferPointer(rebasing: $0[0..<stored])) }
            try scratch.withUnsafeBytes { try out.write(UnsafeRawBufferPointer(rebasing: $0[0..<stored])) }
        } else {
            sum = Checksum.xxh3(columns[i].buffer)
            try out.write(columns[i].buffer)
        }
        columns[i].blocks.append(
            BlockEntry(
                offset: offset, storedLength: UInt64(stored),
                firstElement: columns[i].blockFirst, elementCount: elements,
                codec: codec, checksum: sum))
        columns[i].blockFirst = columns[i].count
        columns[i].buffer.removeAll(keepingCapacity: true)
    }

    /// Flushes all columns, writes the footer (with the column directory filled in) and tail, and renames the
    /// file into place.
    func finish(footer: Footer) throws -> (bytes: UInt64, checksum: UInt64) {
        for i in columns.indices { try flush(i) }
        var footer = footer
        footer.columns = columns.map(\.descriptor)
        try out.pad(to: Container.blockAlignment)
        let footerBytes = footer.encode()
        let footerOffset = out.written
        try out.write(footerBytes)
        var t = ByteWriter()
        let fileLength = out.written + UInt64(Container.tailSize)
        t.u64(footerOffset)
        t.u64(UInt64(footerBytes.count))
        t.u64(Checksum.xxh3(footerBytes))
        t.u64(fileLength)
        t.u32(formatVersion)
        t.u32(0)
        t.raw(magic)
        try out.write(t.bytes)
        let checksum = out.checksum.digest
        try out.commit()
        return (fileLength, checksum)
    }
}
