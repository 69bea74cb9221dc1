import Support

/// A validated, memory-mapped block container (a shard or a sidecar column file).
///
/// Opening checks, from the header, tail and footer alone (no column data is touched, so opening a cold file
/// reads a few pages): the file length against the tail, magic and version at both ends, the footer checksum,
/// every block's range, and that blocks and the padding between them tile the data area exactly. The padding's
/// bytes are checked to be zero together with the block before them, the first time that block is read (and by
/// `oreo verify`), so every byte of the file is still covered by some check before it is trusted.
public final class BlockFile: Sendable {
    /// The mapping.
    public let file: MappedFile
    /// The decoded footer.
    public let footer: Footer
    /// Column index by name.
    public let columnIndex: [String: Int]
    /// Per column and block: where the padding after the block ends (the next block's or the footer's offset).
    private let paddingEnd: [[UInt64]]

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
        file.willNeed(Int(footerOffset)..<Int(dataEnd))
        let footerBytes = UnsafeRawBufferPointer(rebasing: bytes[Int(footerOffset)..<Int(dataEnd)])
        guard Checksum.xxh3(footerBytes) == footerChecksum else {
            throw fail(.checksumMismatch, offset: footerOffset, "footer checksum mismatch")
        }
        let footer = try Footer.decode(footerBytes, path: path)
        self.footer = footer

        var index: [String: Int] = [:]
        var spans: [(offset: UInt64, end: UInt64, column: Int, block: Int)] = []
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
                spans.append((b.offset, b.offset + b.storedLength, ci, bi))
            }
            guard next == c.count else { throw colFail(nil, "blocks hold \(next) of \(c.count) elements") }
        }
        columnIndex = index

        // Blocks and padding must tile [header, footer) exactly: no overlaps, gaps shorter than the alignment.
        spans.sort { $0.offset < $1.offset }
        var paddingEnd = footer.columns.map { [UInt64](repeating: 0, count: $0.blocks.count) }
        var cursor = UInt64(Container.headerSize)
        var previous: (column: Int, block: Int)?
        func close(upTo end: UInt64) throws {
            guard end >= cursor else { throw fail(.corruptFooter, offset: end, "blocks overlap") }
            guard end - cursor < UInt64(Container.blockAlignment) else {
                throw fail(
                    .corruptFooter, offset: cursor, "\(end - cursor) bytes between blocks that belong to no block")
            }
            if let (c, b) = previous { paddingEnd[c][b] = end }
        }
        for s in spans {
            try close(upTo: s.offset)
            cursor = s.end
            previous = (s.column, s.block)
        }
        try close(upTo: footerOffset)
        self.paddingEnd = paddingEnd
        // The padding before the first block shares the header's page: check it now.
        let firstStart = spans.first?.offset ?? footerOffset
        guard bytes[Container.headerSize..<Int(firstStart)].allSatisfy({ $0 == 0 }) else {
            throw fail(.corruptFooter, offset: UInt64(Container.headerSize), "padding after the header is not zero")
        }
    }

    /// The descriptor of a column, or nil.
    public func column(_ name: String) -> ColumnDescriptor? {
        columnIndex[name].map { footer.columns[$0] }
    }

    /// The stored bytes of a block, unchecked, with their pages (and the padding's) asked for from disk first: the
    /// mapping is advised random, so this is the one place a block's read is announced.
    func storedBytes(column c: ColumnDescriptor, block bi: Int) -> UnsafeRawBufferPointer {
        let b = c.blocks[bi]
        let end = columnIndex[c.name].map { Int(paddingEnd[$0][bi]) } ?? Int(b.offset + b.storedLength)
        file.willNeed(Int(b.offset)..<end)
        return UnsafeRawBufferPointer(rebasing: file.bytes[Int(b.offset)..<Int(b.offset + b.storedLength)])
    }

    /// Checks `stored` (block `bi` of `c`, from `storedBytes`) against its checksum, and the padding after it.
    func check(_ stored: UnsafeRawBufferPointer, column c: ColumnDescriptor, block bi: Int) throws {
        let b = c.blocks[bi]
        guard Checksum.xxh3(stored) == b.checksum else {
            throw FormatError(
                .checksumMismatch, path: path, column: c.name, block: bi, offset: b.offset,
                "block checksum mismatch")
        }
        try checkPadding(column: c, block: bi)
    }

    /// The stored bytes of a block, after checking its checksum and the padding after it.
    func verifiedStoredBytes(column c: ColumnDescriptor, block bi: Int) throws -> UnsafeRawBufferPointer {
        let stored = storedBytes(column: c, block: bi)
        try check(stored, column: c, block: bi)
        return stored
    }

    /// Checks that the bytes between the end of block `bi` of `c` and the next block (or the footer) are zero.
    func checkPadding(column c: ColumnDescriptor, block bi: Int) throws {
        guard let ci = columnIndex[c.name] else { return }
        let b = c.blocks[bi]
        let start = Int(b.offset + b.storedLength), end = Int(paddingEnd[ci][bi])
        guard file.bytes[start..<end].allSatisfy({ $0 == 0 }) else {
            throw FormatError(
                .corruptFooter, path: path, column: c.name, block: bi, offset: UInt64(start),
                "\(end - start) bytes after the block belong to no block and are not zero")
        }
    }
}
