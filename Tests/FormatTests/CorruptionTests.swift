import Foundation
import Support
import Testing
import Format

/// Hostile files: every mutation must come back as a `FormatError` naming the file, never a trap or a read
/// outside the mapping.
@Suite struct CorruptionTests {
    /// A small shard with several blocks per column, raw and compressed blocks, steps, metadata and a value column.
    static func sample(_ dir: TempDir, compression: Compression) throws -> (String, [UInt8]) {
        let records = randomTrajectories(seed: 3, count: 24, vocab: 70_000, maxTokens: 40, valueColumns: ["lp"])
        let path = dir.file("sample-\(compression).oreo")
        try writeShard(
            path, records,
            options: ShardOptions(
                vocabSize: 70_000, compression: compression,
                blockBytes: 256, tokenColumns: ["lp"]))
        #expect(openAndReadAll(path) == nil)
        return (path, readBytes(path))
    }

    @Test(arguments: [Compression.none, .zstd(level: 3)])
    func everySingleBitFlipIsDetected(compression: Compression) throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let (_, original) = try CorruptionTests.sample(dir, compression: compression)
        let target = dir.file("mutated.oreo")
        var rng = SplitMix64(seed: 1)
        for offset in 0..<original.count {
            var bytes = original
            bytes[offset] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &rng)
            writeBytes(bytes, target)
            let error = openAndReadAll(target)
            #expect(error is FormatError, "flip at \(offset) of \(original.count) went unnoticed")
            if let e = error as? FormatError { #expect(e.path == target) }
        }
    }

    @Test func everyTruncationAndExtensionIsDetected() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let (_, original) = try CorruptionTests.sample(dir, compression: .zstd(level: 1))
        let target = dir.file("cut.oreo")
        for length in 0..<original.count {
            writeBytes(Array(original[0..<length]), target)
            #expect(openAndReadAll(target) is FormatError, "truncation to \(length) went unnoticed")
        }
        for extra in [1, 7, 64, 4096] {
            writeBytes(original + [UInt8](repeating: 0, count: extra), target)
            #expect(openAndReadAll(target) is FormatError)
        }
    }

    @Test func randomOverwritesAndGarbageNeverTrap() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let (_, original) = try CorruptionTests.sample(dir, compression: .zstd(level: 3))
        let target = dir.file("noise.oreo")
        var rng = SplitMix64(seed: 2)
        for _ in 0..<2000 {
            var bytes = original
            let start = Int.random(in: 0..<bytes.count, using: &rng)
            let n = Int.random(in: 1...32, using: &rng)
            for k in start..<min(bytes.count, start + n) { bytes[k] = UInt8.random(in: 0...255, using: &rng) }
            writeBytes(bytes, target)
            if bytes != original { #expect(openAndReadAll(target) is FormatError) }
        }
        for size in [1, 47, 80, 100, 5000] {
            writeBytes((0..<size).map { _ in UInt8.random(in: 0...255, using: &rng) }, target)
            #expect(openAndReadAll(target) is FormatError)
        }
        #expect(openAndReadAll(dir.file("missing.oreo")) is FormatError)
        #expect(openAndReadAll(dir.path) is FormatError)
    }

    /// Mutations of the footer with its checksum recomputed reach the structural checks (absurd counts,
    /// offsets, lengths, overlapping blocks). They must throw or read back consistently, never trap.
    @Test func resealedFooterMutationsHitStructuralChecks() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let (_, original) = try CorruptionTests.sample(dir, compression: .zstd(level: 3))
        let target = dir.file("resealed.oreo")
        let (footerStart, footerEnd) = footerRange(original)
        var rng = SplitMix64(seed: 3)
        var errors = 0
        let trials = 3000
        for t in 0..<trials {
            var bytes = original
            let k = Int.random(in: footerStart..<footerEnd, using: &rng)
            if t % 2 == 0 {
                bytes[k] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &rng)
            } else {
                bytes[k] = [0x00, 0xFF, 0x7F, 0x80][Int.random(in: 0..<4, using: &rng)]
            }
            reseal(&bytes)
            writeBytes(bytes, target)
            if let e = openAndReadAll(target) {
                #expect(e is FormatError)
                errors += 1
            }
        }
        // Almost every footer byte matters; a few (e.g. inside the source-file name) are benign.
        #expect(errors > trials * 9 / 10)
    }

    @Test func tokenIdsAboveTheVocabularyAreRefusedOnRead() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let (_, original) = try CorruptionTests.sample(dir, compression: .zstd(level: 3))
        var bytes = original
        let (footerStart, _) = footerRange(bytes)
        // Footer: trajectories, steps, tokens, meta bytes, vocabulary size (u64 each). Lower the vocabulary
        // but keep u32 ids (> 65536) so only the id range check can object.
        let vocabOffset = footerStart + 32
        for i in 0..<8 { bytes[vocabOffset + i] = UInt8(truncatingIfNeeded: UInt64(65_600) >> (8 * UInt64(i))) }
        reseal(&bytes)
        let target = dir.file("vocab.oreo")
        writeBytes(bytes, target)
        let error = openAndReadAll(target) as? FormatError
        #expect(error?.kind == .tokenOutOfRange)
        #expect(error?.column == ColumnName.tokenIDs)
    }

    @Test func wrongKindOfFileIsNamed() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let records = randomTrajectories(seed: 5, count: 10, vocab: 500)
        let w = try DatasetWriter(directory: dir.path, options: ShardOptions(vocabSize: 500))
        for r in records { try w.append(r) }
        _ = try w.finish()
        let d = try Dataset(directory: dir.path)
        _ = try d.addTokenColumn("x") { _, c, i in try c.trajectory(i).tokens.map { _ in 0 } }
        let sidecar = dir.file("shard-00000.x.oreocol")
        let error = openAndReadAll(sidecar) as? FormatError
        #expect(error?.kind == .badMagic)
        #expect(error?.description.contains("sidecar") == true)
    }
}

/// The footer's byte range, read from the tail (footer offset and length are its first two u64s).
func footerRange(_ bytes: [UInt8]) -> (Int, Int) {
    let tail = bytes.count - 48
    func u64(_ at: Int) -> Int { (0..<8).reduce(0) { $0 | Int(bytes[at + $1]) << (8 * $1) } }
    let start = u64(tail)
    return (start, start + u64(tail + 8))
}

/// Recomputes the footer checksum in the tail after the footer bytes were edited.
func reseal(_ bytes: inout [UInt8]) {
    let (start, end) = footerRange(bytes)
    let sum = bytes.withUnsafeBytes { Checksum.xxh3(UnsafeRawBufferPointer(rebasing: $0[start..<end])) }
    let at = bytes.count - 48 + 16
    for i in 0..<8 { bytes[at + i] = UInt8(truncatingIfNeeded: sum >> (8 * UInt64(i))) }
}
