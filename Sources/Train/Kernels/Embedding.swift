/// Token (+ optional learned position) embedding lookup.
///
/// Shapes: tokens [rows], table [vocab, dim], positions [rows] and posTable [maxPos, dim] (both or neither),
/// out [rows, dim]. Ids are validated by the caller (the model checks them against the vocabulary).
public func embeddingForward(
    tokens: UnsafePointer<Int32>, table: UnsafePointer<Float>,
    positions: UnsafePointer<Int32>?, posTable: UnsafePointer<Float>?,
    out: UnsafeMutablePointer<Float>, rows: Int, dim: Int
) {
    let args = EmbeddingArgs(tokens: tokens, table: table, positions: positions, posTable: posTable, out: out, dim: dim)
    ComputePool.shared.parallelFor(rows, minPerThread: 32, args) { raw, lo, hi in
        let a = raw.load(as: EmbeddingArgs.self)
        for r in lo..<hi {
            let o = a.out + r * a.dim
            o.update(from: a.table + Int(a.tokens[r]) * a.dim, count: a.dim)
            if let positions = a.positions, let posTable = a.posTable {
                addInPlace(posTable + Int(positions[r]) * a.dim, o, a.dim)
            }
        }
    }
}

/// Backward of `embeddingForward`: scatters dOut rows into the (position) table gradients (accumulating).
/// One thread: repeated ids would make parallel scatters race.
///
/// Shapes: dOut [rows, dim], dTable [vocab, dim], dPosTable [maxPos, dim].
public func embeddingBackward(
    tokens: UnsafePointer<Int32>, positions: UnsafePointer<Int32>?,
    dOut: UnsafePointer<Float>, dTable: UnsafeMutablePointer<Float>,
    dPosTable: UnsafeMutablePointer<Float>?, rows: Int, dim: Int
) {
    for r in 0..<rows {
        addInPlace(dOut + r * dim, dTable + Int(tokens[r]) * dim, dim)
        if let positions, let dPosTable { addInPlace(dOut + r * dim, dPosTable + Int(positions[r]) * dim, dim) }
    }
}

/// Operands of `embeddingForward`, for the pool.
private struct EmbeddingArgs {
    let tokens: UnsafePointer<Int32>, table: UnsafePointer<Float>
    let positions: UnsafePointer<Int32>?, posTable: UnsafePointer<Float>?
    let out: UnsafeMutablePointer<Float>, dim: Int
}
