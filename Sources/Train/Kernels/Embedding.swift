/// Token (+ optional learned position) embedding lookup.
///
/// Shapes: tokens [rows], table [vocab, dim], positions [rows] and posTable [maxPos, dim] (both or neither),
/// out [rows, dim]. Ids are validated by the caller (the model checks them against the vocabulary).
public func embeddingForward(tokens: UnsafePointer<Int32>, table: UnsafePointer<Float>,
                             positions: UnsafePointer<Int32>?, posTable: UnsafePointer<Float>?,
                             out: UnsafeMutablePointer<Float>, rows: Int, dim: Int) {
    for r in 0..<rows {
        let o = out + r * dim
        o.update(from: table + Int(tokens[r]) * dim, count: dim)
        if let positions, let posTable { addInPlace(posTable + Int(positions[r]) * dim, o, dim) }
    }
}

/// Backward of `embeddingForward`: scatters dOut rows into the (position) table gradients (accumulating).
///
/// Shapes: dOut [rows, dim], dTable [vocab, dim], dPosTable [maxPos, dim].
public func embeddingBackward(tokens: UnsafePointer<Int32>, positions: UnsafePointer<Int32>?,
                              dOut: UnsafePointer<Float>, dTable: UnsafeMutablePointer<Float>,
                              dPosTable: UnsafeMutablePointer<Float>?, rows: Int, dim: Int) {
    for r in 0..<rows {
        addInPlace(dOut + r * dim, dTable + Int(tokens[r]) * dim, dim)
        if let positions, let dPosTable { addInPlace(dOut + r * dim, dPosTable + Int(positions[r]) * dim, dim) }
    }
}
