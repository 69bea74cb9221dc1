import Support

/// A validated, memory-mapped block container (a shard or a sidecar column file).
///
/// Opening checks, before any column data is trusted: the file length against the tail, magic and version at
/// both ends, the footer checksum, every block's range, and that blocks and zero padding tile the data area
/// exactly, so every byte of the file is covered by some check.
public final class BlockFile: Sendable {
    /// The mapping.
    public let file: MappedFile
    /// The decoded footer.
    public let footer: Footer
    /// Column index by name.
    public let columnIndex: [String: Int]

    /// The file's path.
    public var path: String { file.path }

    init(path: String, magic: [UInt8]) throws {
        let file = try MappedFile(path: path)
        self.file = file
        let bytes = file.bytes
        let size = UInt64(bytes.count)
        let minimum = UInt64(Container.headerSize + Container.tailSize)
        guard size >= minimum else {
            throw FormatError(
                .truncated, path: path, "file is \(size) bytes, shorter than the \(minimum) of an empty shard")
        }
        func fail(_ kind: FormatError.Kind, offset: UInt64? = nil, _ reason: String) -> FormatError {
            FormatError(kind, path: path, offset: offset, reason)
        }
        let tailStart = Int(size) - Container.tailSize
        var tail = ByteReader(UnsafeRawBufferPointer(rebasing: bytes[tailStart...])) { fail(.corruptFooter, $0) }
        let footerOffset = try tail.u64("footer offset")
        let footerLength = try tail.u64("footer length")
        let footerChecksum = try tail.u64("footer checksum")
        let fileLength = try tail.u64("file length")
        let tailVersion = try tail.u32("version")
        let tailReserved = try tail.u32("reserved")
        let tailMagic = Array(try tail.take(8, "magic"))
        guard tailMagic == magic else {
            if tailMagic == Container.magic || tailMagic == Container.sidecarMagic {
                throw fail(
                    .badMagic, offset: UInt64(tailStart + 40), "wrong kind of oreo file (shard vs column sidecar)")
            }
            throw fail(
                .badMagic, offset: UInt64(tailStart + 40),
                "no oreo magic at the end: not a shard, or truncated or still being written")
        }
        guard fileLength == size else {
            throw fail(.truncated, "file is \(size) bytes but its tail says \(fileLength): truncated or appended to")
        }
        guard tailVersion == formatVersion else {
            throw fail(
                .unsupportedVersion, offset: UInt64(tailStart + 32),
                "format version \(tailVersion), this build reads \(formatVersion)")
        }
        guard tailReserved == 0 else {
            throw fail(.corruptFooter, offset: UInt64(tailStart + 36), "reserved tail field is not zero")
        }

        var header = ByteReader(UnsafeRawBufferPointer(rebasing: bytes[0..<Container.headerSize])) {
            fail(.badMagic, $0)
        }
        guard Array(try header.take(8, "magic")) == magic else {
            throw fail(.badMagic, offset: 0, "bad magic at the start")
        }
        let version = try header.u32("version")
        guard version == formatVersion else {
            throw fail(.unsupportedVersion, offset: 8, "format version \(version), this build reads \(formatVersion)")
        }
        guard try header.u32("flags") == 0, try header.take(16, "reserved").allSatisfy({ $0 == 0 }) else {
            throw fail(.corruptFooter, offset: 12, "reserved header bytes are not zero")
        }

        let dataEnd = size - UInt64(Container.tailSize)
        guard footerLength <= Container.maxFooter, footerOffset >= UInt64(Container.headerSize),
            footerOffset <= dataEnd, dataEnd - footerOffset == footerLength
        else {
            throw fail(
                .corruptFooter, offset: UInt64(tailStart),
                "footer at \(footerOffset) of length \(footerLength) does not end where the tail starts (\(dataEnd))")
        }
        let footerBytes = UnsafeRawBufferPointer(rebasing: bytes[Int(footerOffset)..<Int(dataEnd)])
        guard Checksum.xxh3(footerBytes) == footerChecksum else {
            throw fail(.checksumMismatch, offset: footerOffset, "footer checksum mismatch")
        }
        let footer = try Footer.decode(footerBytes, path: path)
        self.footer = footer

        var index: [String: Int] = [:]
        var spans: [(offset: UInt64, end: UInt64)] = []
        for (ci, c) in footer.columns.enumerated() {
            func colFail(_ block: Int?, _ reason: String) -> FormatError {
                FormatError(.corruptFooter, path: path, column: c.name, block: block, reason)
            }
            guard index[c.name] == nil else { throw colFail(nil, "column listed twice") }
            index[c.name] = ci
            guard c.count == footer.expectedCount(c.level) else {
                throw colFail(
                    nil, "holds \(c.count) elements, its level (\(c.level)) needs \(footer.expectedCount(c.level))")
            }
            var next: UInt64 = 0
            for (bi, b) in c.blocks.enumerated() {
                guard b.firstElement == next, b.elementCount > 0, b.elementCount <= c.count - next else {
                    throw colFail(bi, "elements \(b.firstElement)..+\(b.elementCount) do not continue at \(next)")
                }
                next += b.elementCount
                let (rawLength, overflow) = b.elementCount.multipliedReportingOverflow(by: UInt64(c.dtype.size))
                guard !overflow, rawLength <= UInt64(Int.max / 2) else { throw colFail(bi, "absurd raw length") }
                switch b.codec {
                case .raw:
                    guard b.storedLength == rawLength else {
                        throw colFail(bi, "raw block stores \(b.storedLength) bytes for \(rawLength) bytes of elements")
                    }
                case .zstd:
                    guard b.storedLength > 0 else { throw colFail(bi, "empty compressed block") }
                }
                guard b.offset % UInt64(Container.blockAlignment) == 0, b.offset >= UInt64(Container.headerSize),
                    b.offset <= footerOffset, b.storedLength <= footerOffset - b.offset
                else {
                    throw colFail(bi, "stored range \(b.offset)..+\(b.storedLength) is outside the data area")
                }
                spans.append((b.offset, b.offset + b.storedLength))
            }
            guard next == c.count else { throw colFail(nil, "blocks hold \(next) of \(c.count) elements") }
        }
        columnIndex = index

        // Blocks and padding must tile [header, footer) exactly: no overlaps, no unexplained bytes.
        spans.sort { $0.offset < $1.offset }
        var cursor = UInt64(Container.headerSize)
        func checkGap(upTo end: UInt64) throws {
            guard end >= cursor else { throw fail(.corruptFooter, offset: end, "blocks overlap") }
            guard end - cursor < UInt64(Container.blockAlignment),
                bytes[Int(cursor)..<Int(end)].allSatisfy({ $0 == 0 })
            else {
                throw fail(
                    .corruptFooter, offset: cursor, "\(end - cursor) bytes between blocks that belong to no block")
            }
        }
        for s in spans {
            try checkGap(upTo: s.offset)
            cursor = s.end
        }
        try checkGap(upTo: footerOffset)
    }

    /// The descriptor of a column, or nil.
    public func column(_ name: String) -> ColumnDescriptor? {
        columnIndex[name].map { footer.columns[$0] }
    }

    /// The stored bytes of a block, after checking its checksum.
    func verifiedStoredBytes(column c: ColumnDescriptor, block bi: Int) throws -> UnsafeRawBufferPointer {
        let b = c.blocks[bi]
        let stored = UnsafeRawBufferPointer(rebasing: file.bytes[Int(b.offset)..<Int(b.offset + b.storedLength)])
        guard Checksum.xxh3(stored) == b.checksum else {
            throw FormatError(
                .checksumMismatch, path: path, column: c.name, block: bi, offset: b.offset,
                "block checksum mismatch")
        }
        return stored
    }

    /// Reads a whole raw-or-compressed column into an array after checking every block (for small columns).
    func readWholeColumn<T: FixedWidthInteger>(_ name: String, as: T.Type) throws -> [T] {
        guard let c = column(name) else {
            throw FormatError(.missingColumn, path: path, column: name, "required column is missing")
        }
        guard c.dtype.size == MemoryLayout<T>.size else {
            throw FormatError(.inconsistent, path: path, column: name, "has dtype \(c.dtype)")
        }
        var out = [T](repeating: 0, count: Int(c.count))
        let decompressor = ZstdDecompressor()
        try out.withUnsafeMutableBytes { dst in
            for bi in c.blocks.indices {
                let b = c.blocks[bi]
                let stored = try verifiedStoredBytes(column: c, block: bi)
                let start = Int(b.firstElement) * c.dtype.size
                let target = UnsafeMutableRawBufferPointer(
                    rebasing: dst[start..<(start + Int(b.elementCount) * c.dtype.size)])
                switch b.codec {
                case .raw: target.copyMemory(from: stored)
                case .zstd:
                    if let err = decompressor.decompress(stored, into: target) {
                        throw FormatError(.corruptBlock, path: path, column: name, block: bi, offset: b.offset, err)
                    }
                }
            }
        }
        return out.map { T(littleEndian: $0) }
    }
}
