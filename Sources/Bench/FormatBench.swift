import CZstd
import Foundation
import Format
import Support

/// `Bench format`: shard write and read throughput against memcpy and plain ZSTD_decompress on the same bytes.
func runFormatBench(args: [String]) throws {
    var tokens = 32_000_000
    var vocab = 50_257
    var dir = NSTemporaryDirectory() + "oreo-bench-format"
    var it = args.makeIterator()
    while let a = it.next() {
        switch a {
        case "--tokens": tokens = Int(it.next() ?? "") ?? tokens
        case "--vocab": vocab = Int(it.next() ?? "") ?? vocab
        case "--dir": dir = it.next() ?? dir
        default: throw BenchError.usage("format [--tokens N] [--vocab V] [--dir DIR]")
        }
    }
    print(
        "== format: \(tokens / 1_000_000)M synthetic tokens, vocabulary \(vocab) (\(DType.forVocabulary(vocab)) ids), zstd \(zstdVersion)"
    )
    var gen = SyntheticTrajectories(vocabSize: vocab, meanTokens: 256, seed: 42)
    var records: [TrajectoryRecord] = []
    var total = 0
    while total < tokens {
        let r = gen.next()
        total += r.tokens.count
        records.append(r)
    }
    let tokenBytes = Double(total * DType.forVocabulary(vocab).size)
    try? FileManager.default.removeItem(atPath: dir)

    var table = Table(
        "codec (shards, file ratio)", "write GB/s", "write Mtok/s", "1st read GB/s", "read GB/s", "read Mtok/s",
        "vs baseline", "to u32 batch GB/s", "random cached us", "random uncached us")
    var streamRates: [String: Double] = [:]
    for compression in [Compression.none, .zstd(level: 1), .zstd(level: 3)] {
        let path = dir + "/" + compression.description
        let writeTime = try seconds {
            let w = try DatasetWriter(
                directory: path, options: ShardOptions(vocabSize: vocab, compression: compression),
                shardTokens: 1 << 40)
            for r in records { try w.append(r) }
            _ = try w.finish()
        }
        let dataset = try Dataset(directory: path)
        let m = dataset.manifest
        let stored = m.shards.reduce(0) { $0 + $1.bytes }
        // Streaming read: every trajectory's ids viewed in place and every id touched. The first pass over a
        // freshly opened dataset also checks every block's checksum and id range; later passes (epochs) reuse
        // the shard's record of checked blocks.
        var sink: UInt64 = 0
        let firstTime = try threadSeconds {
            for k in 0..<dataset.shardCount {
                let shard = try dataset.shard(k)
                let c = shard.cursor(cacheBlocks: 1)
                for i in 0..<shard.trajectoryCount { sink &+= sum(try c.tokens(i)) }
            }
        }
        let streamTime = try medianSeconds(repeats: 5) {
            for k in 0..<dataset.shardCount {
                let shard = try dataset.shard(k)
                let c = shard.cursor(cacheBlocks: 1)
                for i in 0..<shard.trajectoryCount { sink &+= sum(try c.tokens(i)) }
            }
        }
        // The training loader's path: ids widened into a u32 batch buffer.
        let batch = UnsafeMutablePointer<UInt32>.allocate(capacity: 1 << 24)
        defer { batch.deallocate() }
        let batchTime = try medianSeconds(repeats: 5) {
            for k in 0..<dataset.shardCount {
                let shard = try dataset.shard(k)
                let c = shard.cursor(cacheBlocks: 1)
                for i in 0..<shard.trajectoryCount { try c.tokens(i).copy(into: batch) }
            }
        }
        if sink == 42 { print("") }
        streamRates[compression.description] = tokenBytes / streamTime
        // Random access with the block cached: trajectories inside the block of trajectory 0.
        let shard = try dataset.shard(0)
        let c = shard.cursor()
        let ids = shard.columnList.first { $0.column.name == ColumnName.tokenIDs }!.column
        let inFirstBlock =
            (0..<shard.trajectoryCount).first {
                (try? shard.tokenOffsets.range($0).upperBound) ?? 0 > Int(ids.blocks[0].elementCount)
            }
            ?? shard.trajectoryCount
        var rng = SplitMix64(seed: 1)
        let n = 100_000
        let picks = (0..<n).map { _ in Int.random(in: 0..<max(1, inFirstBlock), using: &rng) }
        _ = try c.trajectory(0)
        let cached = try medianSeconds(repeats: 3) { for i in picks { _ = try c.trajectory(i) } } / Double(n) * 1e6
        // Uncached: a fresh cursor per access, so every column's block is decompressed again.
        let coldPicks = (0..<200).map { _ in Int.random(in: 0..<shard.trajectoryCount, using: &rng) }
        let cold =
            try medianSeconds(repeats: 3) { for i in coldPicks { _ = try shard.cursor().trajectory(i) } }
            / Double(coldPicks.count) * 1e6
        table.add(
            "\(compression) (\(m.shards.count), ratio \(fmt(tokenBytes / Double(stored))))",
            fmt(tokenBytes / writeTime / 1e9), fmt(Double(total) / writeTime / 1e6),
            fmt(tokenBytes / firstTime / 1e9),
            fmt(tokenBytes / streamTime / 1e9), fmt(Double(total) / streamTime / 1e6), "",
            fmt(tokenBytes / batchTime / 1e9), fmt(cached), fmt(cold, 1))
    }

    // Baselines on the same bytes: memcpy of the raw token column, ZSTD_decompress of the zstd-3 token blocks.
    let size = Int(tokenBytes)
    let src = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
    let dst = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
    defer {
        src.deallocate()
        dst.deallocate()
    }
    memset(src, 1, size)
    memset(dst, 0, size)
    let memcpyTime = medianSeconds(repeats: 5) { memcpy(dst, src, size) }
    let memcpyRate = tokenBytes / memcpyTime

    let z3 = try Dataset(directory: dir + "/zstd-3")
    var blocks: [(UnsafeRawPointer, Int, Int)] = []
    for k in 0..<z3.shardCount {
        let s = try z3.shard(k)
        let base = s.main.file.bytes.baseAddress!
        let col = s.columnList.first { $0.column.name == ColumnName.tokenIDs }!.column
        for b in col.blocks where b.codec == .zstd {
            blocks.append((base + Int(b.offset), Int(b.storedLength), Int(b.elementCount) * col.dtype.size))
        }
    }
    let zBytes = Double(blocks.reduce(0) { $0 + $1.2 })
    let zTime = medianSeconds(repeats: 5) {
        for (p, n, raw) in blocks { _ = ZSTD_decompress(dst, raw, p, n) }
    }
    let zRate = zBytes / zTime
    // A stricter baseline than the plain call: one reused decompression context, as oreo itself uses.
    let dctx = ZSTD_createDCtx()
    defer { ZSTD_freeDCtx(dctx) }
    let dctxTime = medianSeconds(repeats: 5) {
        for (p, n, raw) in blocks { _ = ZSTD_decompressDCtx(dctx, dst, raw, p, n) }
    }
    let dctxRate = zBytes / dctxTime
    print(
        "baselines: memcpy \(fmt(memcpyRate / 1e9)) GB/s; zstd-3 token blocks: ZSTD_decompress \(fmt(zRate / 1e9)) GB/s, ZSTD_decompressDCtx with a reused context \(fmt(dctxRate / 1e9)) GB/s"
    )
    table.rows[0][6] = fmt(streamRates["raw"]! / memcpyRate) + "x memcpy"
    table.rows[1][6] = "-"
    table.rows[2][6] =
        fmt(streamRates["zstd-3"]! / zRate) + "x zstd (" + fmt(streamRates["zstd-3"]! / dctxRate) + "x dctx)"
    table.print()
    let rawRatio = streamRates["raw"]! / memcpyRate
    let zRatio = streamRates["zstd-3"]! / zRate
    print(
        "targets: raw streaming >= 0.50x memcpy: \(fmt(rawRatio)) \(verdict(rawRatio, atLeast: 0.5)); zstd-3 streaming >= 0.80x ZSTD_decompress: \(fmt(zRatio)) \(verdict(zRatio, atLeast: 0.8)) (\(fmt(streamRates["zstd-3"]! / dctxRate))x a reused context); cached random access < 20 us: \(table.rows.map { $0[8] }.joined(separator: " / ")) us"
    )
    try? FileManager.default.removeItem(atPath: dir)
}

/// Sum of the ids, read in place (the stand-in for a consumer that touches every token).
@inline(never) func sum(_ t: TokenSlice) -> UInt64 {
    var s: UInt64 = 0
    if let v = t.u16 {
        v.withUnsafeBufferPointer { for x in $0 { s &+= UInt64(x) } }
    } else if let v = t.u32 {
        v.withUnsafeBufferPointer { for x in $0 { s &+= UInt64(x) } }
    }
    return s
}

/// Errors of the benchmark driver.
enum BenchError: Error, CustomStringConvertible {
    case usage(String)
    var description: String {
        switch self {
        case .usage(let u): "usage: Bench \(u)"
        }
    }
}
