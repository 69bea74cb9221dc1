/// RMSNorm forward: `y = x * rsqrt(mean(x^2) + eps) * w`, saving rstd per row for the backward.
///
/// Shapes: x, y [rows, dim]; weight [dim]; rstd [rows].
public func rmsNormForward(x: UnsafePointer<Float>, weight: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                           rstd: UnsafeMutablePointer<Float>, rows: Int, dim: Int, eps: Float) {
    for r in 0..<rows {
        let xr = x + r * dim, yr = y + r * dim
        let s = 1 / (dot(xr, xr, dim) / Float(dim) + eps).squareRoot()
        rstd[r] = s
        var i = 0
        let sv = F16x(repeating: s)
        while i + 16 <= dim { store16(load16(xr + i) * sv * load16(weight + i), yr + i); i += 16 }
        while i < dim { yr[i] = xr[i] * s * weight[i]; i += 1 }
    }
}

/// RMSNorm backward: dx += rstd * (w*dy - xhat * mean(w*dy*xhat)), dw += dy * xhat.
///
/// Shapes: dy, x, dx [rows, dim]; weight, dWeight [dim]; rstd [rows].
public func rmsNormBackward(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                            rstd: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>,
                            dWeight: UnsafeMutablePointer<Float>, rows: Int, dim: Int) {
    for r in 0..<rows {
        let xr = x + r * dim, dyr = dy + r * dim, dxr = dx + r * dim
        let s = rstd[r]
        // mean(w*dy*xhat) = s * mean(w*dy*x)
        var acc = F16x()
        var i = 0
        while i + 16 <= dim { acc.addProduct(load16(weight + i) * load16(dyr + i), load16(xr + i)); i += 16 }
        var t = acc.sum()
        while i < dim { t += weight[i] * dyr[i] * xr[i]; i += 1 }
        let c = t * s / Float(dim)
        let sv = F16x(repeating: s), cv = F16x(repeating: c)
        i = 0
        while i + 16 <= dim {
            let xh = load16(xr + i) * sv
            let g = load16(weight + i) * load16(dyr + i)
            store16(load16(dxr + i) + sv * (g - xh * cv), dxr + i)
            store16(load16(dWeight + i) + load16(dyr + i) * xh, dWeight + i)
            i += 16
        }
        while i < dim {
            let xh = xr[i] * s
            dxr[i] += s * (weight[i] * dyr[i] - xh * c)
            dWeight[i] += dyr[i] * xh
            i += 1
        }
    }
}

/// LayerNorm forward: `y = (x - mean) * rstd * w + b`, saving mean and rstd per row.
///
/// Shapes: x, y [rows, dim]; weight, bias [dim]; mean, rstd [rows].
public func layerNormForward(x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
                             y: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
                             rstd: UnsafeMutablePointer<Float>, rows: Int, dim: Int, eps: Float) {
    for r in 0..<rows {
        let xr = x + r * dim, yr = y + r * dim
        let m = sumOf(xr, dim) / Float(dim)
        // two-pass variance: stable for rows with a large mean
        var acc = F16x()
        var i = 0
        let mv = F16x(repeating: m)
        while i + 16 <= dim { let d = load16(xr + i) - mv; acc.addProduct(d, d); i += 16 }
        var v = acc.sum()
        while i < dim { let d = xr[i] - m; v += d * d; i += 1 }
        let s = 1 / (v / Float(dim) + eps).squareRoot()
        mean[r] = m
        rstd[r] = s
        let sv = F16x(repeating: s)
        i = 0
        while i + 16 <= dim {
            store16((load16(xr + i) - mv) * sv * load16(weight + i) + load16(bias + i), yr + i); i += 16
        }
        while i < dim { yr[i] = (xr[i] - m) * s * weight[i] + bias[i]; i += 1 }
    }
}

/// LayerNorm backward: dx += rstd * (g - mean(g) - xhat * mean(g*xhat)) with g = w*dy; dw += dy*xhat; db += dy.
///
/// Shapes: dy, x, dx [rows, dim]; weight, dWeight, dBias [dim]; mean, rstd [rows].
public func layerNormBackward(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                              mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
                              dx: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>,
                              dBias: UnsafeMutablePointer<Float>, rows: Int, dim: Int) {
    for r in 0..<rows {
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
        while i < dim { let g = weight[i] * dyr[i]; sg += g; sgx += g * (xr[i] - m) * s; i += 1 }
        let mg = sg / Float(dim), mgx = sgx / Float(dim)
        let mgv = F16x(repeating: mg), mgxv = F16x(repeating: mgx)
        i = 0
        while i + 16 <= dim {
            let xh = (load16(xr + i) - mv) * sv
            let d = load16(dyr + i)
            let g = load16(weight + i) * d
            store16(load16(dxr + i) + sv * (g - mgv - xh * mgxv), dxr + i)
            store16(load16(dWeight + i) + d * xh, dWeight + i)
            store16(load16(dBias + i) + d, dBias + i)
            i += 16
        }
        while i < dim {
            let xh = (xr[i] - m) * s
            let g = weight[i] * dyr[i]
            dxr[i] += s * (g - mg - xh * mgx)
            dWeight[i] += dyr[i] * xh
            dBias[i] += dyr[i]
            i += 1
        }
    }
}
