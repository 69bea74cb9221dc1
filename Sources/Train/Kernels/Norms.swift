// Norm kernels split rows over the compute pool; the weight (and bias) gradients, sums over all rows, are a
// second pass split by columns, so no two threads write the same element.

/// Rows per thread below which a norm kernel stays on one thread.
let normMinRows = 16

/// The operands of one norm pass, for the pool (`y` is the output: y, dx or dWeight; `rows` is used by the
/// column-split weight-gradient pass).
private struct NormArgs {
    let x: UnsafePointer<Float>, dy: UnsafePointer<Float>, weight: UnsafePointer<Float>
    let bias: UnsafeMutablePointer<Float>?, y: UnsafeMutablePointer<Float>
    let mean: UnsafeMutablePointer<Float>?, rstd: UnsafeMutablePointer<Float>
    let dim: Int, rows: Int, eps: Float
}

/// RMSNorm forward: `y = x * rsqrt(mean(x^2) + eps) * w`, saving rstd per row for the backward.
///
/// Shapes: x, y [rows, dim]; weight [dim]; rstd [rows].
public func rmsNormForward(
    x: UnsafePointer<Float>, weight: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
    rstd: UnsafeMutablePointer<Float>, rows: Int, dim: Int, eps: Float
) {
    let args = NormArgs(
        x: x, dy: x, weight: weight, bias: nil, y: y, mean: nil, rstd: rstd, dim: dim, rows: 0, eps: eps)
    ComputePool.shared.parallelFor(rows, minPerThread: normMinRows, args) { raw, lo, hi in
        let a = raw.load(as: NormArgs.self)
        let x = a.x, weight = a.weight, y = a.y, rstd = a.rstd, dim = a.dim, eps = a.eps
        for r in lo..<hi {
            let xr = x + r * dim, yr = y + r * dim
            let s = 1 / (dot(xr, xr, dim) / Float(dim) + eps).squareRoot()
            rstd[r] = s
            var i = 0
            let sv = F16x(repeating: s)
            while i + 16 <= dim {
                store16(load16(xr + i) * sv * load16(weight + i), yr + i)
                i += 16
            }
            while i < dim {
                yr[i] = xr[i] * s * weight[i]
                i += 1
            }
        }
    }
}

/// RMSNorm backward: dx += rstd * (w*dy - xhat * mean(w*dy*xhat)), dw += dy * xhat.
///
/// Shapes: dy, x, dx [rows, dim]; weight, dWeight [dim] (nil: frozen); rstd [rows].
public func rmsNormBackward(
    dy: UnsafePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    rstd: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>,
    dWeight: UnsafeMutablePointer<Float>?, rows: Int, dim: Int
) {
    let args = NormArgs(
        x: x, dy: dy, weight: weight, bias: nil, y: dx, mean: nil, rstd: UnsafeMutablePointer(mutating: rstd),
        dim: dim, rows: 0, eps: 0)
    ComputePool.shared.parallelFor(rows, minPerThread: normMinRows, args) { raw, lo, hi in
        let a = raw.load(as: NormArgs.self)
        let x = a.x, dy = a.dy, weight = a.weight, dx = a.y, rstd = a.rstd, dim = a.dim
        for r in lo..<hi {
            let xr = x + r * dim, dyr = dy + r * dim, dxr = dx + r * dim
            let s = rstd[r]
            // mean(w*dy*xhat) = s * mean(w*dy*x)
            var acc = F16x()
            var i = 0
            while i + 16 <= dim {
                acc.addProduct(load16(weight + i) * load16(dyr + i), load16(xr + i))
                i += 16
            }
            var t = acc.sum()
            while i < dim {
                t += weight[i] * dyr[i] * xr[i]
                i += 1
            }
            let c = t * s / Float(dim)
            let sv = F16x(repeating: s), cv = F16x(repeating: c)
            i = 0
            while i + 16 <= dim {
                let g = load16(weight + i) * load16(dyr + i)
                store16(load16(dxr + i) + sv * (g - load16(xr + i) * sv * cv), dxr + i)
                i += 16
            }
            while i < dim {
                dxr[i] += s * (weight[i] * dyr[i] - xr[i] * s * c)
                i += 1
            }
        }
    }
    guard let dWeight else { return }  // a frozen weight
    normWeightGradients(dy: dy, x: x, mean: nil, rstd: rstd, dWeight: dWeight, dBias: nil, rows: rows, dim: dim)
}

/// dWeight += sum_r dy * xhat and dBias += sum_r dy, with xhat = (x - mean) * rstd (mean 0 for RMSNorm),
/// split over columns in 16-float blocks.
///
/// Shapes: dy, x [rows, dim]; mean (or nil), rstd [rows]; dWeight, dBias (or nil) [dim].
func normWeightGradients(
    dy: UnsafePointer<Float>, x: UnsafePointer<Float>, mean: UnsafePointer<Float>?,
    rstd: UnsafePointer<Float>, dWeight: UnsafeMutablePointer<Float>,
    dBias: UnsafeMutablePointer<Float>?, rows: Int, dim: Int
) {
    let args = NormArgs(
        x: x, dy: dy, weight: x, bias: dBias, y: dWeight, mean: mean.map { UnsafeMutablePointer(mutating: $0) },
        rstd: UnsafeMutablePointer(mutating: rstd), dim: dim, rows: rows, eps: 0)
    ComputePool.shared.parallelFor(dim, grain: 16, minPerThread: rows >= normMinRows ? 16 : dim, args) { raw, lo, hi in
        let a = raw.load(as: NormArgs.self)
        let x = a.x, dy = a.dy, dBias = a.bias, dWeight = a.y, mean = a.mean, rstd = a.rstd, dim = a.dim, rows = a.rows
        var i = lo
        while i + 16 <= hi {
            var dw = F16x(), db = F16x()
            for r in 0..<rows {
                let d = load16(dy + r * dim + i)
                let m = F16x(repeating: mean?[r] ?? 0)
                dw.addProduct(d, (load16(x + r * dim + i) - m) * rstd[r])
                db += d
            }
            store16(load16(dWeight + i) + dw, dWeight + i)
            if let dBias { store16(load16(dBias + i) + db, dBias + i) }
            i += 16
        }
        while i < hi {
            var dw: Float = 0, db: Float = 0
            for r in 0..<rows {
                let d = dy[r * dim + i]
                dw += d * (x[r * dim + i] - (mean?[r] ?? 0)) * rstd[r]
                db += d
            }
            dWeight[i] += dw
            dBias?[i] += db
            i += 1
        }
    }
}

/// LayerNorm forward: `y = (x - mean) * rstd * w + b`, saving mean and rstd per row.
///
/// Shapes: x, y [rows, dim]; weight, bias [dim]; mean, rstd [rows].
public func layerNormForward(
    x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
    y: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
    rstd: UnsafeMutablePointer<Float>, rows: Int, dim: Int, eps: Float
) {
    let args = NormArgs(
        x: x, dy: x, weight: weight, bias: UnsafeMutablePointer(mutating: bias), y: y, mean: mean,
        rstd: rstd, dim: dim, rows: 0, eps: eps)
    ComputePool.shared.parallelFor(rows, minPerThread: normMinRows, args) { raw, lo, hi in
        let a = raw.load(as: NormArgs.self)
        let x = a.x, weight = a.weight, bias = a.bias!, y = a.y, mean = a.mean!, rstd = a.rstd, dim = a.dim, eps = a.eps
        for r in lo..<hi {
            let xr = x + r * dim, yr = y + r * dim
            let m = sumOf(xr, dim) / Float(dim)
            // two-pass variance: stable for rows with a large mean
            var acc = F16x()
            var i = 0
            let mv = F16x(repeating: m)
            while i + 16 <= dim {
                let d = load16(xr + i) - mv
                acc.addProduct(d, d)
                i += 16
            }
            var v = acc.sum()
            while i < dim {
                let d = xr[i] - m
                v += d * d
                i += 1
            }
            let s = 1 / (v / Float(dim) + eps).squareRoot()
            mean[r] = m
            rstd[r] = s
            let sv = F16x(repeating: s)
            i = 0
            while i + 16 <= dim {
                store16((load16(xr + i) - mv) * sv * load16(weight + i) + load16(bias + i), yr + i)
                i += 16
            }
            while i < dim {
                yr[i] = (xr[i] - m) * s * weight[i] + bias[i]
                i += 1
            }
        }
    }
}

/// LayerNorm backward: dx += rstd * (g - mean(g) - xhat * mean(g*xhat)) with g = w*dy; dw += dy*xhat; db += dy.
///
/// Shapes: dy, x, dx [rows, dim]; weight, dWeight, dBias [dim] (nil: frozen); mean, rstd [rows].
public func layerNormBackward(
    dy: UnsafePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
    dx: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>?,
    dBias: UnsafeMutablePointer<Float>?, rows: Int, dim: Int
) {
    let args = NormArgs(
        x: x, dy: dy, weight: weight, bias: nil, y: dx, mean: UnsafeMutablePointer(mutating: mean),
        rstd: UnsafeMutablePointer(mutating: rstd), dim: dim, rows: 0, eps: 0)
    ComputePool.shared.parallelFor(rows, minPerThread: normMinRows, args) { raw, lo, hi in
        let a = raw.load(as: NormArgs.self)
        let x = a.x, dy = a.dy, weight = a.weight, dx = a.y, mean = a.mean!, rstd = a.rstd, dim = a.dim
        for r in lo..<hi {
            let xr = x + r * dim, dyr = dy + r * dim, dxr = dx + r * dim
            let m = mean[r], s = rstd[r]
            let mv = F16x(repeating: m), sv = F16x(repeating: s)
            var accG = F16x(), accGX = F16x()
            var i = 0
            while i + 16 <= dim {
                let g = load16(weight + i) * load16(dyr + i)
                accG += g
                accGX.addProduct(g, (load16(xr + i) - mv) * sv)
                i += 16
            }
            var sg = accG.sum(), sgx = accGX.sum()
            while i < dim {
                let g = weight[i] * dyr[i]
                sg += g
                sgx += g * (xr[i] - m) * s
                i += 1
            }
            let mg = sg / Float(dim), mgx = sgx / Float(dim)
            let mgv = F16x(repeating: mg), mgxv = F16x(repeating: mgx)
            i = 0
            while i + 16 <= dim {
                let xh = (load16(xr + i) - mv) * sv
                let g = load16(weight + i) * load16(dyr + i)
                store16(load16(dxr + i) + sv * (g - mgv - xh * mgxv), dxr + i)
                i += 16
            }
            while i < dim {
                let xh = (xr[i] - m) * s
                dxr[i] += s * (weight[i] * dyr[i] - mg - xh * mgx)
                i += 1
            }
        }
    }
    guard let dWeight else { return }  // a frozen norm
    normWeightGradients(dy: dy, x: x, mean: mean, rstd: rstd, dWeight: dWeight, dBias: dBias, rows: rows, dim: dim)
}
