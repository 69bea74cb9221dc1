import Foundation

/// Causal grouped-query attention of one new row against a paged KV cache (incremental decoding).
///
/// Page `pages[i]` holds positions `i * pageSize ..< (i + 1) * pageSize` of the sequence at
/// `cache + pages[i] * pageStride`: K as [kvHeads, pageSize, headDim], then V in the same layout. The row
/// attends to positions `0 ..< length` (its own, already written, included). Query head h reads kv head
/// h / (heads / kvHeads); probabilities are normalized before P V, as in `attentionForward`.
///
/// With `kvHeadRange`, only the query heads of those kv heads are computed (their part of `out`), so threads
/// can share one row.
///
/// Shapes: q, out [heads * headDim]; pages [ceil(length / pageSize)]; scratch [length * heads / kvHeads].
public func pagedAttentionRow(
    q: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, length: Int,
    pages: UnsafePointer<Int32>, cache: UnsafePointer<Float>, pageStride: Int,
    pageSize: Int, heads: Int, kvHeads: Int, headDim: Int,
    scratch: UnsafeMutablePointer<Float>, kvHeadRange: Range<Int>? = nil
) {
    let group = heads / kvHeads, hd = headDim, P = pageSize
    let scale = 1 / Float(hd).squareRoot()
    let vOffset = kvHeads * P * hd
    for kvh in kvHeadRange ?? 0..<kvHeads {
        let q0 = q + kvh * group * hd
        var pos = 0, page = 0
        while pos < length {
            let k = cache + Int(pages[page]) * pageStride + kvh * P * hd
            let count = min(P, length - pos)
            for j in 0..<count {
                for g in 0..<group { scratch[g * length + pos + j] = headDot(q0 + g * hd, k + j * hd, hd) * scale }
            }
            pos += count
            page += 1
        }
        for g in 0..<group {
            let row = scratch + g * length
            let m = maxOf(row, length)
            let inv = 1 / expShiftInPlace(row, length, m)
            var j = 0
            let iv = F16x(repeating: inv)
            while j + 16 <= length {
                store16(load16(row + j) * iv, row + j)
                j += 16
            }
            while j < length {
                row[j] *= inv
                j += 1
            }
            zeroFill(out + (kvh * group + g) * hd, hd)
        }
        pos = 0
        page = 0
        while pos < length {
            let v = cache + Int(pages[page]) * pageStride + vOffset + kvh * P * hd
            let count = min(P, length - pos)
            for j in 0..<count {
                for g in 0..<group { axpy(scratch[g * length + pos + j], v + j * hd, out + (kvh * group + g) * hd, hd) }
            }
            pos += count
            page += 1
        }
    }
}

/// q . k over one head (hd floats), reduced with the inlined `hsum`.
@inline(__always) private func headDot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = F16x()
    var i = 0
    while i + 16 <= n {
        acc.addProduct(load16(a + i), load16(b + i))
        i += 16
    }
    var s = hsum(acc)
    while i < n {
        s += a[i] * b[i]
        i += 1
    }
    return s
}
