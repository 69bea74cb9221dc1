import Checkpoint
import Foundation
import Testing
import Train

// Each kernel is checked against a naive double-precision reference written here: its float forward must
// match the reference, and its float backward must match central differences of the reference's
// double-precision loss  L = sum(R * out)  for a random R.

@Suite struct KernelGradientTests {
    @Test func linearForwardAndBackward() {
        var rng = TestRNG(1)
        let rows = 5, inDim = 19, outDim = 23
        let x = rng.normalD(rows * inDim), w = rng.normalD(outDim * inDim), b = rng.normalD(outDim)
        let r = rng.normalD(rows * outDim)
        func ref(_ x: [Double], _ w: [Double], _ b: [Double]) -> [Double] {
            var y = [Double](repeating: 0, count: rows * outDim)
            for i in 0..<rows {
                for o in 0..<outDim {
                    var s = b[o]
                    for k in 0..<inDim { s += x[i * inDim + k] * w[o * inDim + k] }
                    y[i * outDim + o] = s
                }
            }
            return y
        }
        let xf = buf(x), wf = buf(w), bf = buf(b), y = zeros(rows * outDim)
        linearForward(
            x: xf.pointer, ldx: inDim, weight: wf.pointer, bias: bf.pointer, y: y.pointer, ldy: outDim,
            rows: rows, inDim: inDim, outDim: outDim)
        #expect(relativeError(y.toArray(), ref(x, w, b)) < 1e-6)
        // accumulate mode adds to what is there
        linearForward(
            x: xf.pointer, ldx: inDim, weight: wf.pointer, bias: bf.pointer, y: y.pointer, ldy: outDim,
            rows: rows, inDim: inDim, outDim: outDim, accumulate: true)
        #expect(relativeError(y.toArray(), ref(x, w, b).map { 2 * $0 }) < 1e-6)
        let dy = buf(r), dx = zeros(rows * inDim), dw = buf([Float](repeating: 1, count: outDim * inDim)),
            db = zeros(outDim)
        linearBackward(
            dy: dy.pointer, ldy: outDim, x: xf.pointer, ldx: inDim, weight: wf.pointer, dx: dx.pointer,
            lddx: inDim, accumulateDX: false, dWeight: dw.pointer, dBias: db.pointer, rows: rows,
            inDim: inDim, outDim: outDim)
        #expect(relativeError(dx.toArray(), numericGradient({ dotD(ref($0, w, b), r) }, at: x)) < 1e-5)
        #expect(relativeError(dw.toArray().map { $0 - 1 }, numericGradient({ dotD(ref(x, $0, b), r) }, at: w)) < 1e-5)
        #expect(relativeError(db.toArray(), numericGradient({ dotD(ref(x, w, $0), r) }, at: b)) < 1e-5)
    }

    @Test func embeddingForwardAndBackward() {
        var rng = TestRNG(2)
        let rows = 9, dim = 21, vocab = 7, maxPos = 5
        let table = rng.normalD(vocab * dim), pos = rng.normalD(maxPos * dim), r = rng.normalD(rows * dim)
        let toks: [Int32] = [3, 1, 3, 0, 6, 6, 2, 3, 5], positions: [Int32] = [0, 1, 2, 3, 4, 0, 1, 2, 0]
        func ref(_ t: [Double], _ p: [Double]) -> [Double] {
            (0..<rows).flatMap { i in (0..<dim).map { t[Int(toks[i]) * dim + $0] + p[Int(positions[i]) * dim + $0] } }
        }
        let tk = IntBuf(toks), ps = IntBuf(positions), tf = buf(table), pf = buf(pos), out = zeros(rows * dim)
        embeddingForward(
            tokens: tk.p, table: tf.pointer, positions: ps.p, posTable: pf.pointer, out: out.pointer,
            rows: rows, dim: dim)
        #expect(relativeError(out.toArray(), ref(table, pos)) < 1e-7)
        let dt = zeros(vocab * dim), dp = zeros(maxPos * dim), dout = buf(r)
        embeddingBackward(
            tokens: tk.p, positions: ps.p, dOut: dout.pointer, dTable: dt.pointer, dPosTable: dp.pointer,
            rows: rows, dim: dim)
        #expect(relativeError(dt.toArray(), numericGradient({ dotD(ref($0, pos), r) }, at: table)) < 1e-6)
        #expect(relativeError(dp.toArray(), numericGradient({ dotD(ref(table, $0), r) }, at: pos)) < 1e-6)
    }

    @Test(arguments: [7, 64, 83]) func rmsNormForwardAndBackward(dim: Int) {
        var rng = TestRNG(3)
        let rows = 4, eps = 1e-5
        let x = rng.normalD(rows * dim, std: 2), w = rng.normalD(dim).map { 1 + 0.3 * $0 }, r = rng.normalD(rows * dim)
        func ref(_ x: [Double], _ w: [Double]) -> [Double] {
            (0..<rows).flatMap { i -> [Double] in
                let row = x[(i * dim)..<((i + 1) * dim)]
                let s = 1 / (row.reduce(0) { $0 + $1 * $1 } / Double(dim) + eps).squareRoot()
                return row.enumerated().map { $0.element * s * w[$0.offset] }
            }
        }
        let xf = buf(x), wf = buf(w), y = zeros(rows * dim), rstd = zeros(rows)
        rmsNormForward(
            x: xf.pointer, weight: wf.pointer, y: y.pointer, rstd: rstd.pointer, rows: rows, dim: dim, eps: Float(eps))
        #expect(relativeError(y.toArray(), ref(x, w)) < 1e-6)
        let dy = buf(r), dx = buf([Float](repeating: 0.5, count: rows * dim)), dw = zeros(dim)
        rmsNormBackward(
            dy: dy.pointer, x: xf.pointer, weight: wf.pointer, rstd: rstd.pointer, dx: dx.pointer,
            dWeight: dw.pointer, rows: rows, dim: dim)
        #expect(relativeError(dx.toArray().map { $0 - 0.5 }, numericGradient({ dotD(ref($0, w), r) }, at: x)) < 1e-5)
        #expect(relativeError(dw.toArray(), numericGradient({ dotD(ref(x, $0), r) }, at: w)) < 1e-5)
    }

    @Test(arguments: [7, 64, 83]) func layerNormForwardAndBackward(dim: Int) {
        var rng = TestRNG(4)
        let rows = 4, eps = 1e-5
        let x = rng.normalD(rows * dim, std: 2).map { $0 + 3 }, w = rng.normalD(dim).map { 1 + 0.3 * $0 }
        let b = rng.normalD(dim), r = rng.normalD(rows * dim)
        func ref(_ x: [Double], _ w: [Double], _ b: [Double]) -> [Double] {
            (0..<rows).flatMap { i -> [Double] in
                let row = Array(x[(i * dim)..<((i + 1) * dim)])
                let m = row.reduce(0, +) / Double(dim)
                let v = row.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(dim)
                let s = 1 / (v + eps).squareRoot()
                return row.enumerated().map { ($0.element - m) * s * w[$0.offset] + b[$0.offset] }
            }
        }
        let xf = buf(x), wf = buf(w), bf = buf(b), y = zeros(rows * dim), mean = zeros(rows), rstd = zeros(rows)
        layerNormForward(
            x: xf.pointer, weight: wf.pointer, bias: bf.pointer, y: y.pointer, mean: mean.pointer,
            rstd: rstd.pointer, rows: rows, dim: dim, eps: Float(eps))
        #expect(relativeError(y.toArray(), ref(x, w, b)) < 1e-6)
        let dy = buf(r), dx = zeros(rows * dim), dw = zeros(dim), db = zeros(dim)
        layerNormBackward(
            dy: dy.pointer, x: xf.pointer, weight: wf.pointer, mean: mean.pointer, rstd: rstd.pointer,
            dx: dx.pointer, dWeight: dw.pointer, dBias: db.pointer, rows: rows, dim: dim)
        #expect(relativeError(dx.toArray(), numericGradient({ dotD(ref($0, w, b), r) }, at: x)) < 1e-5)
        #expect(relativeError(dw.toArray(), numericGradient({ dotD(ref(x, $0, b), r) }, at: w)) < 1e-5)
        #expect(relativeError(db.toArray(), numericGradient({ dotD(ref(x, w, $0), r) }, at: b)) < 1e-5)
    }

    @Test(arguments: [
        RoPEScaling.none, .linear(factor: 2),
        .llama3(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 16),
    ])
    func ropeForwardAndBackward(scaling: RoPEScaling) {
        var rng = TestRNG(5)
        let rows = 6, heads = 3, hd = 40, ld = heads * hd + 5, theta = 500.0
        let positions: [Int32] = [0, 1, 2, 7, 30, 3]
        let x = rng.normalD(rows * ld), r = rng.normalD(rows * ld)
        // Reference frequencies written from the HF formulas independently of the kernel's helper.
        var inv = (0..<(hd / 2)).map { 1 / pow(theta, Double(2 * $0) / Double(hd)) }
        switch scaling {
        case .none: break
        case .linear(let f): inv = inv.map { $0 / f }
        case let .llama3(f, lo, hi, orig):
            inv = inv.map { fr in
                let wl = 2 * Double.pi / fr
                if wl < Double(orig) / hi { return fr }
                if wl > Double(orig) / lo { return fr / f }
                let s = (Double(orig) / wl - lo) / (hi - lo)
                return (1 - s) * fr / f + s * fr
            }
        }
        func ref(_ x: [Double]) -> [Double] {
            var y = x
            for i in 0..<rows {
                for h in 0..<heads {
                    for j in 0..<(hd / 2) {
                        let a = Double(positions[i]) * inv[j], c = cos(a), s = sin(a)
                        let o = i * ld + h * hd + j
                        y[o] = x[o] * c - x[o + hd / 2] * s
                        y[o + hd / 2] = x[o + hd / 2] * c + x[o] * s
                    }
                }
            }
            return y
        }
        let table = RoPETable(headDim: hd, maxPositions: 32, theta: theta, scaling: scaling)
        let xf = buf(x), ps = IntBuf(positions), c = buf(table.cos), s = buf(table.sin)
        ropeApply(
            x: xf.pointer, ld: ld, rows: rows, heads: heads, headDim: hd, positions: ps.p, cos: c.pointer,
            sin: s.pointer, inverse: false)
        #expect(relativeError(xf.toArray(), ref(x)) < 1e-5)
        let g = buf(r)
        ropeApply(
            x: g.pointer, ld: ld, rows: rows, heads: heads, headDim: hd, positions: ps.p, cos: c.pointer,
            sin: s.pointer, inverse: true)
        #expect(relativeError(g.toArray(), numericGradient({ dotD(ref($0), r) }, at: x)) < 1e-5)
    }

    @Test func swiGLUForwardAndBackward() {
        var rng = TestRNG(6)
        let rows = 3, dim = 37
        let gu = rng.normalD(rows * 2 * dim, std: 2), r = rng.normalD(rows * dim)
        func ref(_ gu: [Double]) -> [Double] {
            (0..<rows).flatMap { i in
                (0..<dim).map { j -> Double in
                    let g = gu[i * 2 * dim + j], u = gu[i * 2 * dim + dim + j]
                    return g / (1 + exp(-g)) * u
                }
            }
        }
        let gf = buf(gu), out = zeros(rows * dim)
        swiGLUForward(gateUp: gf.pointer, out: out.pointer, rows: rows, dim: dim)
        #expect(relativeError(out.toArray(), ref(gu)) < 1e-6)
        let d = buf(r), dgu = zeros(rows * 2 * dim)
        swiGLUBackward(gateUp: gf.pointer, dOut: d.pointer, dGateUp: dgu.pointer, rows: rows, dim: dim)
        #expect(relativeError(dgu.toArray(), numericGradient({ dotD(ref($0), r) }, at: gu)) < 1e-5)
    }

    @Test func geluForwardAndBackward() {
        var rng = TestRNG(7)
        let n = 83
        let x = rng.normalD(n, std: 3), r = rng.normalD(n)
        func ref(_ x: [Double]) -> [Double] {
            x.map { 0.5 * $0 * (1 + tanh((2 / Double.pi).squareRoot() * ($0 + 0.044715 * $0 * $0 * $0))) }
        }
        let xf = buf(x), out = zeros(n)
        geluForward(x: xf.pointer, out: out.pointer, count: n)
        #expect(relativeError(out.toArray(), ref(x)) < 1e-6)
        let d = buf(r), dx = zeros(n)
        geluBackward(x: xf.pointer, dOut: d.pointer, dx: dx.pointer, count: n)
        #expect(relativeError(dx.toArray(), numericGradient({ dotD(ref($0), r) }, at: x)) < 1e-5)
    }

    @Test func vectorExpIsAccurate() {
        let xs: [Float] = stride(from: -80, through: 80, by: 0.37).map { Float($0) }
        let x = buf(xs), y = zeros(xs.count)
        vectorExp(x.pointer, y.pointer, count: xs.count)
        for (i, v) in y.toArray().enumerated() {
            let want = exp(Double(xs[i]))
            #expect(abs(Double(v) - want) / want < 4e-7, "exp(\(xs[i]))")
        }
    }

    @Test(arguments: [(4, 4), (4, 2), (6, 1)]) func packedAttentionForwardAndBackward(heads: Int, kvHeads: Int) {
        var rng = TestRNG(8)
        let hd = 16, lengths = [5, 19, 1, 8], rows = lengths.reduce(0, +)
        let ldq = heads * hd + 3, ldk = kvHeads * hd + 1, ldv = kvHeads * hd + 2, ldo = heads * hd
        let q = rng.normalD(rows * ldq), k = rng.normalD(rows * ldk), v = rng.normalD(rows * ldv)
        let r = rng.normalD(rows * ldo)
        var starts: [Int32] = [0]
        for l in lengths { starts.append(starts.last! + Int32(l)) }
        let group = heads / kvHeads, scale = 1 / Double(hd).squareRoot()
        func ref(_ q: [Double], _ k: [Double], _ v: [Double]) -> [Double] {
            var o = [Double](repeating: 0, count: rows * ldo)
            for s in 0..<lengths.count {
                let st = Int(starts[s]), t = lengths[s]
                for h in 0..<heads {
                    let kh = h / group
                    for i in 0..<t {
                        var sc = [Double](repeating: 0, count: i + 1)
                        for j in 0...i {
                            var d = 0.0
                            for c in 0..<hd { d += q[(st + i) * ldq + h * hd + c] * k[(st + j) * ldk + kh * hd + c] }
                            sc[j] = d * scale
                        }
                        let m = sc.max()!
                        let e = sc.map { exp($0 - m) }, z = e.reduce(0, +)
                        for j in 0...i {
                            for c in 0..<hd {
                                o[(st + i) * ldo + h * hd + c] += e[j] / z * v[(st + j) * ldv + kh * hd + c]
                            }
                        }
                    }
                }
            }
            return o
        }
        let qf = buf(q), kf = buf(k), vf = buf(v), out = zeros(rows * ldo), lse = zeros(heads * rows)
        let ss = IntBuf(starts), sc1 = zeros(19 * 19), sc2 = zeros(19 * 19)
        attentionForward(
            q: qf.pointer, ldq: ldq, k: kf.pointer, ldk: ldk, v: vf.pointer, ldv: ldv, out: out.pointer,
            ldo: ldo, lse: lse.pointer, rows: rows, seqStarts: ss.p, seqCount: lengths.count,
            heads: heads, kvHeads: kvHeads, headDim: hd, scratch: sc1.pointer)
        #expect(relativeError(out.toArray(), ref(q, k, v)) < 1e-6)
        let dout = buf(r), dq = zeros(rows * ldq), dk = buf(rng.normal(rows * ldk)), dv = buf(rng.normal(rows * ldv))
        attentionBackward(
            dOut: dout.pointer, q: qf.pointer, ldq: ldq, k: kf.pointer, ldk: ldk, v: vf.pointer, ldv: ldv,
            out: out.pointer, ldo: ldo, lse: lse.pointer, dq: dq.pointer, lddq: ldq, dk: dk.pointer,
            lddk: ldk, dv: dv.pointer, lddv: ldv, rows: rows, seqStarts: ss.p, seqCount: lengths.count,
            heads: heads, kvHeads: kvHeads, headDim: hd, scratch: sc1.pointer, scratch2: sc2.pointer)
        // only the used columns carry gradients; the padding columns of dk/dv keep their (random) contents
        func used(_ a: [Float], _ ld: Int, _ w: Int) -> [Float] {
            (0..<rows).flatMap { Array(a[($0 * ld)..<($0 * ld + w)]) }
        }
        func usedD(_ a: [Double], _ ld: Int, _ w: Int) -> [Double] {
            (0..<rows).flatMap { Array(a[($0 * ld)..<($0 * ld + w)]) }
        }
        let gq = numericGradient({ dotD(ref($0, k, v), r) }, at: q)
        let gk = numericGradient({ dotD(ref(q, $0, v), r) }, at: k)
        let gv = numericGradient({ dotD(ref(q, k, $0), r) }, at: v)
        #expect(relativeError(used(dq.toArray(), ldq, heads * hd), usedD(gq, ldq, heads * hd)) < 1e-5)
        #expect(relativeError(used(dk.toArray(), ldk, kvHeads * hd), usedD(gk, ldk, kvHeads * hd)) < 1e-5)
        #expect(relativeError(used(dv.toArray(), ldv, kvHeads * hd), usedD(gv, ldv, kvHeads * hd)) < 1e-5)
    }

    /// Sequences longer than one causal block (several row blocks, a partial last one), on the pool's threads
    /// with a scratch slot each; gradients checked along random directions against the double reference.
    @Test(arguments: [(2, 2), (4, 1)]) func longSequenceAttentionInBlocks(heads: Int, kvHeads: Int) {
        var rng = TestRNG(18)
        let hd = 8, lengths = [150, 1, 70], rows = lengths.reduce(0, +), longest = 150
        let ldq = heads * hd, ldk = kvHeads * hd, ldv = kvHeads * hd, ldo = heads * hd
        let q = rng.normalD(rows * ldq), k = rng.normalD(rows * ldk), v = rng.normalD(rows * ldv),
            r = rng.normalD(rows * ldo)
        var starts: [Int32] = [0]
        for l in lengths { starts.append(starts.last! + Int32(l)) }
        let group = heads / kvHeads, scale = 1 / Double(hd).squareRoot()
        func ref(_ q: [Double], _ k: [Double], _ v: [Double]) -> [Double] {
            var o = [Double](repeating: 0, count: rows * ldo)
            for s in 0..<lengths.count {
                let st = Int(starts[s]), t = lengths[s]
                for h in 0..<heads {
                    let kh = h / group
                    for i in 0..<t {
                        let sc = (0...i).map { j in
                            (0..<hd).reduce(0.0) {
                                $0 + q[(st + i) * ldq + h * hd + $1] * k[(st + j) * ldk + kh * hd + $1]
                            } * scale
                        }
                        let m = sc.max()!
                        let e = sc.map { exp($0 - m) }, z = e.reduce(0, +)
                        for j in 0...i {
                            for c in 0..<hd {
                                o[(st + i) * ldo + h * hd + c] += e[j] / z * v[(st + j) * ldv + kh * hd + c]
                            }
                        }
                    }
                }
            }
            return o
        }
        let slots = 4, slot = longest * longest
        let qf = buf(q), kf = buf(k), vf = buf(v), out = zeros(rows * ldo), lse = zeros(heads * rows)
        let ss = IntBuf(starts), sc1 = zeros(slots * slot), sc2 = zeros(slots * slot)
        attentionForward(
            q: qf.pointer, ldq: ldq, k: kf.pointer, ldk: ldk, v: vf.pointer, ldv: ldv, out: out.pointer,
            ldo: ldo, lse: lse.pointer, rows: rows, seqStarts: ss.p, seqCount: lengths.count,
            heads: heads, kvHeads: kvHeads, headDim: hd, scratch: sc1.pointer, scratchCount: slots * slot)
        #expect(relativeError(out.toArray(), ref(q, k, v)) < 1e-6)
        let dout = buf(r), dq = zeros(rows * ldq), dk = zeros(rows * ldk), dv = zeros(rows * ldv)
        attentionBackward(
            dOut: dout.pointer, q: qf.pointer, ldq: ldq, k: kf.pointer, ldk: ldk, v: vf.pointer, ldv: ldv,
            out: out.pointer, ldo: ldo, lse: lse.pointer, dq: dq.pointer, lddq: ldq, dk: dk.pointer,
            lddk: ldk, dv: dv.pointer, lddv: ldv, rows: rows, seqStarts: ss.p, seqCount: lengths.count,
            heads: heads, kvHeads: kvHeads, headDim: hd, scratch: sc1.pointer, scratch2: sc2.pointer,
            scratchCount: slots * slot)
        func directional(_ x: [Double], _ grad: [Float], _ f: ([Double]) -> [Double]) -> (Double, Double) {
            let u = rng.normalD(x.count), eps = 1e-4
            let plus = zip(x, u).map { $0 + eps * $1 }, minus = zip(x, u).map { $0 - eps * $1 }
            return (
                (dotD(f(plus), r) - dotD(f(minus), r)) / (2 * eps),
                zip(grad, u).reduce(0.0) { $0 + Double($1.0) * $1.1 }
            )
        }
        for (name, (fd, an)) in [
            ("q", directional(q, dq.toArray()) { ref($0, k, v) }),
            ("k", directional(k, dk.toArray()) { ref(q, $0, v) }),
            ("v", directional(v, dv.toArray()) { ref(q, k, $0) }),
        ] {
            #expect(abs(fd - an) <= 1e-4 * abs(fd) + 1e-6, "d\(name): finite difference \(fd) vs analytic \(an)")
        }
    }

    /// Double reference of log softmax rows.
    static func logSoftmax(_ z: [Double], rows: Int, vocab: Int) -> [Double] {
        (0..<rows).flatMap { i -> [Double] in
            let row = Array(z[(i * vocab)..<((i + 1) * vocab)])
            let m = row.max()!
            let l = m + log(row.reduce(0) { $0 + exp($1 - m) })
            return row.map { $0 - l }
        }
    }

    static func logits(_ h: [Double], _ w: [Double], rows: Int, dim: Int, vocab: Int) -> [Double] {
        (0..<rows).flatMap { i in
            (0..<vocab).map { v in (0..<dim).reduce(0.0) { $0 + h[i * dim + $1] * w[v * dim + $1] } }
        }
    }

    @Test func klDivergenceForwardAndBackward() {
        var rng = TestRNG(9)
        let rows = 3, vocab = 53
        let z = rng.normalD(rows * vocab, std: 2), q = rng.normalD(rows * vocab, std: 2), a = rng.normalD(rows)
        func ref(_ z: [Double]) -> [Double] {
            let lp = Self.logSoftmax(z, rows: rows, vocab: vocab), lq = Self.logSoftmax(q, rows: rows, vocab: vocab)
            return (0..<rows).map { i in
                (0..<vocab).reduce(0.0) { $0 + exp(lp[i * vocab + $1]) * (lp[i * vocab + $1] - lq[i * vocab + $1]) }
            }
        }
        let zf = buf(z), qf = buf(q), kl = zeros(rows)
        klDivergenceForward(z: zf.pointer, r: qf.pointer, kl: kl.pointer, rows: rows, vocab: vocab)
        #expect(relativeError(kl.toArray(), ref(z)) < 1e-5)
        let dkl = buf(a), dz = zeros(rows * vocab)
        klDivergenceBackward(z: zf.pointer, r: qf.pointer, dkl: dkl.pointer, dz: dz.pointer, rows: rows, vocab: vocab)
        #expect(relativeError(dz.toArray(), numericGradient({ dotD(ref($0), a) }, at: z)) < 1e-5)
    }

    /// Cases: row-chunked without and with KL, and the vocabulary-blocked backward (600 = 360 + 240 columns).
    @Test(arguments: [(7, 20, 37, 3, false), (7, 20, 37, 3, true), (5, 8, 600, 3, false)])
    func fusedLMHeadForwardAndBackward(rows: Int, dim: Int, vocab: Int, chunk: Int, withKL: Bool) {
        var rng = TestRNG(10)
        let h = rng.normalD(rows * dim), w = rng.normalD(vocab * dim, std: 0.5)
        let refW = rng.normalD(vocab * dim, std: 0.5)
        let targets: [Int32] = Array([0, Int32(vocab - 1), 5, 5, 17, 2, 30, Int32(vocab / 2 + 3)].prefix(rows))
        let a = rng.normalD(rows), b = rng.normalD(rows)
        let hf = buf(h), wf = buf(w), rw = buf(refW), tg = IntBuf(targets)
        let lp = zeros(rows), lse = zeros(rows), kl = zeros(rows)
        let scratch = zeros(lmHeadScratchCount(vocab: vocab, chunkRows: chunk, withReference: true))
        // the reference logits use the same hidden rows against a second matrix (a frozen reference head)
        let provider: ReferenceLogitsProvider = { first, count, into in
            linearForward(
                x: hf.pointer + first * dim, ldx: dim, weight: rw.pointer, bias: nil, y: into, ldy: vocab,
                rows: count, inDim: dim, outDim: vocab)
        }
        lmHeadForward(
            hidden: hf.pointer, weight: wf.pointer, targets: tg.p, logProbs: lp.pointer, lse: lse.pointer,
            rows: rows, dim: dim, vocab: vocab, chunkRows: chunk, scratch: scratch.pointer,
            reference: withKL ? provider : nil, kl: withKL ? kl.pointer : nil)
        let refLP = Self.logSoftmax(Self.logits(h, w, rows: rows, dim: dim, vocab: vocab), rows: rows, vocab: vocab)
        #expect(relativeError(lp.toArray(), (0..<rows).map { refLP[$0 * vocab + Int(targets[$0])] }) < 1e-6)
        let dlp = buf(a), dkl = buf(b), dh = zeros(rows * dim), dw = zeros(vocab * dim)
        lmHeadBackward(
            hidden: hf.pointer, weight: wf.pointer, targets: tg.p, lse: lse.pointer, dLogProbs: dlp.pointer,
            dHidden: dh.pointer, dWeight: dw.pointer, rows: rows, dim: dim, vocab: vocab, chunkRows: chunk,
            scratch: scratch.pointer, reference: withKL ? provider : nil, kl: withKL ? kl.pointer : nil,
            dKL: withKL ? dkl.pointer : nil)
        // d/dh through the reference logits is excluded: the reference is frozen (stop-gradient), so the
        // numeric gradient holds the reference logits fixed at their original values.
        let fixedLQ = Self.logSoftmax(
            Self.logits(h, refW, rows: rows, dim: dim, vocab: vocab), rows: rows, vocab: vocab)
        func lossFixedRef(_ hh: [Double], _ ww: [Double]) -> Double {
            let lpp = Self.logSoftmax(Self.logits(hh, ww, rows: rows, dim: dim, vocab: vocab), rows: rows, vocab: vocab)
            var l = (0..<rows).reduce(0.0) { $0 + a[$1] * lpp[$1 * vocab + Int(targets[$1])] }
            if withKL {
                for i in 0..<rows {
                    var k = 0.0
                    for v in 0..<vocab { k += exp(lpp[i * vocab + v]) * (lpp[i * vocab + v] - fixedLQ[i * vocab + v]) }
                    l += b[i] * k
                }
            }
            return l
        }
        #expect(relativeError(dh.toArray(), numericGradient({ lossFixedRef($0, w) }, at: h)) < 1e-5)
        #expect(relativeError(dw.toArray(), numericGradient({ lossFixedRef(h, $0) }, at: w)) < 1e-5)
    }

    @Test func cachedLMHeadForwardAndBackward() {
        let rows = 6, dim = 10, vocab = 53
        var rng = TestRNG(31)
        let h = rng.normalD(rows * dim), w = rng.normalD(vocab * dim, std: 0.7), a = rng.normalD(rows)
        let targets: [Int32] = [0, 52, 7, 7, 30, 1]
        let hf = buf(h), wf = buf(w), tg = IntBuf(targets)
        let lp = zeros(rows), lse = zeros(rows), scale = zeros(rows), cache = zeros(rows * vocab),
            hs = zeros(rows * dim)
        lmHeadForwardCached(
            hidden: hf.pointer, weight: wf.pointer, targets: tg.p, logProbs: lp.pointer, lse: lse.pointer,
            scale: scale.pointer, rows: rows, dim: dim, vocab: vocab, cache: cache.pointer)
        func loss(_ hh: [Double], _ ww: [Double]) -> Double {
            let l = Self.logSoftmax(Self.logits(hh, ww, rows: rows, dim: dim, vocab: vocab), rows: rows, vocab: vocab)
            return (0..<rows).reduce(0.0) { $0 + a[$1] * l[$1 * vocab + Int(targets[$1])] }
        }
        let refLP = Self.logSoftmax(Self.logits(h, w, rows: rows, dim: dim, vocab: vocab), rows: rows, vocab: vocab)
        #expect(relativeError(lp.toArray(), (0..<rows).map { refLP[$0 * vocab + Int(targets[$0])] }) < 1e-6)
        let dlp = buf(a), dh = zeros(rows * dim), dw = buf([Double](repeating: 0.25, count: vocab * dim))
        lmHeadBackwardCached(
            hidden: hf.pointer, weight: wf.pointer, targets: tg.p, scale: scale.pointer, dLogProbs: dlp.pointer,
            dHidden: dh.pointer, dWeight: dw.pointer, rows: rows, dim: dim, vocab: vocab, cache: cache.pointer,
            scaledHidden: hs.pointer)
        #expect(relativeError(dh.toArray(), numericGradient({ loss($0, w) }, at: h)) < 1e-5)
        // dWeight accumulates onto what was there
        #expect(relativeError(dw.toArray().map { $0 - 0.25 }, numericGradient({ loss(h, $0) }, at: w)) < 1e-5)
    }
}
