import Checkpoint
import Foundation

/// One linear weight matrix of `PackedWeights`: its rows in one or more segments (the fused q|k|v and
/// gate|up matrices are several tensors, each in the format its file stored it in).
public struct PackedMatrix: Sendable {
    /// A run of rows in one format.
    public struct Segment: Sendable {
        /// First row of the matrix this segment holds.
        public let firstRow: Int
        /// Rows it holds.
        public let rows: Int
        /// Their storage format.
        public let format: PackedFormat
        /// Where its first row starts in `PackedWeights.storage`.
        public let byteOffset: Int
    }
    /// Segments in row order, covering every row.
    public let segments: [Segment]
    /// Columns (the layer's input width).
    public let inDim: Int
    /// Rows (the layer's output width).
    public let outDim: Int
}

/// The linear-layer weights of one model kept compact for decoding: a GGUF's own blocks (Q4_0, Q4_1, Q8_0,
/// F16), or the model's f32 weights rounded to bf16, f16 or Q8_0. Batch-1 decoding streams every weight once
/// per token, so its speed is memory bandwidth over bytes per weight; `IncrementalDecoder` reads these instead
/// of the f32 parameters for passes of few rows (prefill with many rows keeps sgemm on the f32 copy).
///
/// The f32 model stays the source of truth: packing copies it (or its file) once, and the copy goes stale if
/// the model is trained afterwards.
public final class PackedWeights: @unchecked Sendable {
    /// The packed bytes (64-byte aligned, owned).
    public let storage: UnsafeMutableRawPointer
    /// Their size.
    public let byteCount: Int
    /// Parameter count of the layout these weights were packed for (a decoder checks its model against it).
    public let parameterCount: Int
    /// Formats and tensor counts, e.g. "q4_1 x 210, q8_0 x 1".
    public let summary: String
    private let matrices: [Int: PackedMatrix]

    /// One tensor (a `TensorSpec` of the model) to pack: its format and a closure that writes its rows,
    /// `format.rowBytes(inDim)` bytes each, in the model's row order.
    public struct Piece {
        /// The model tensor.
        public let spec: TensorSpec
        /// Its storage format.
        public let format: PackedFormat
        /// Writes `spec.shape[0]` packed rows at the pointer.
        public let fill: (UnsafeMutableRawPointer) throws -> Void
        /// Makes a piece.
        public init(spec: TensorSpec, format: PackedFormat, fill: @escaping (UnsafeMutableRawPointer) throws -> Void) {
            self.spec = spec
            self.format = format
            self.fill = fill
        }
    }

    /// Packs `pieces` of `model`'s tensors; every linear layer whose tensors are all among them reads packed
    /// rows, the others keep their f32 weights.
    public init(model: TransformerModel, pieces: [Piece]) throws {
        var offsets: [Int: (format: PackedFormat, byteOffset: Int)] = [:]
        var total = 0, counts: [PackedFormat: Int] = [:]
        for p in pieces {
            guard p.spec.shape.count == 2, p.spec.shape[1] % p.format.blockElements == 0 else {
                throw TrainError.shape("\(p.spec.name): shape \(p.spec.shape) cannot be stored as \(p.format.rawValue)")
            }
            offsets[p.spec.offset] = (p.format, total)
            total += (p.format.rowBytes(p.spec.shape[1]) * p.spec.shape[0] + 63) / 64 * 64
            counts[p.format, default: 0] += 1
        }
        // 2 MB aligned and advised as huge pages: decoding streams all of it per token, and 4 KB pages cost
        // a TLB miss and a restarted hardware prefetch every 4 KB
        let hugePage = 2 << 20
        let huge = total >= hugePage
        let reserved = huge ? (total + hugePage - 1) / hugePage * hugePage : max(64, total)
        storage = UnsafeMutableRawPointer.allocate(byteCount: reserved, alignment: huge ? hugePage : 64)
        #if os(Linux)
            if huge { _ = madvise(storage, reserved, MADV_HUGEPAGE) }
        #endif
        byteCount = total
        parameterCount = model.layout.total
        summary = PackedFormat.allCases.compactMap { f in counts[f].map { "\(f.rawValue) x \($0)" } }.joined(
            separator: ", ")
        for p in pieces { try p.fill(storage + offsets[p.spec.offset]!.byteOffset) }

        var found: [Int: PackedMatrix] = [:]
        for (offset, outDim, inDim) in model.linearWeights() {
            var segments: [PackedMatrix.Segment] = []
            var row = 0
            while row < outDim, let s = model.layout.specs.first(where: { $0.offset == offset + row * inDim }),
                let packed = offsets[s.offset], s.shape.count == 2, s.shape[1] == inDim, row + s.shape[0] <= outDim
            {
                segments.append(
                    .init(firstRow: row, rows: s.shape[0], format: packed.format, byteOffset: packed.byteOffset))
                row += s.shape[0]
            }
            if row == outDim { found[offset] = PackedMatrix(segments: segments, inDim: inDim, outDim: outDim) }
        }
        matrices = found
    }

    /// The model's f32 linear weights rounded to `format` (bf16, f16 or Q8_0; a matrix whose width is not a
    /// multiple of 32 keeps f32 under Q8_0). Lossy: for fast decoding of a trained checkpoint.
    public convenience init(quantizing model: TransformerModel, to format: PackedFormat) throws {
        guard format == .bf16 || format == .f16 || format == .q8_0 else {
            throw TrainError.shape("quantizing to \(format.rawValue) is not supported (bf16, f16, q8_0)")
        }
        guard !model.layout.packedBlockMatrices else {
            throw TrainError.state("the model's base is packed already (\(model.baseWeights?.summary ?? "none"))")
        }
        let p = model.parameters.pointer
        var pieces: [Piece] = []
        var names = Set<String>()
        for (offset, outDim, inDim) in model.linearWeights() {
            for s in model.layout.specs
            where s.offset >= offset && s.offset < offset + outDim * inDim && s.shape.count == 2 {
                guard inDim % format.blockElements == 0, names.insert(s.name).inserted else { continue }
                let src = UnsafePointer(p + s.offset)
                pieces.append(
                    Piece(spec: s, format: format) { dst in
                        try Self.pack(
                            UnsafeBufferPointer(start: src, count: s.count), as: format, name: s.name, into: dst)
                    })
            }
        }
        try self.init(model: model, pieces: pieces)
    }

    deinit { storage.deallocate() }

    /// Writes f32 values in `format` (bf16, f16 or Q8_0; `format.rowBytes(count)` bytes) at `dst`; `name`
    /// labels an f16 overflow.
    public static func pack(
        _ src: UnsafeBufferPointer<Float>, as format: PackedFormat, name: String, into dst: UnsafeMutableRawPointer
    ) throws {
        let n = src.count
        switch format {
        case .q8_0:
            let q = quantizeQ8_0(src)
            q.withUnsafeBytes { dst.copyMemory(from: $0.baseAddress!, byteCount: q.count) }
        case .f16:
            let h = dst.bindMemory(to: UInt16.self, capacity: n)
            for i in 0..<n {
                let v = Float16(src[i])
                guard v.isFinite || !src[i].isFinite else {
                    throw TrainError.shape("\(name): value \(src[i]) overflows f16; use bf16")
                }
                h[i] = v.bitPattern
            }
        case .bf16:
            let h = dst.bindMemory(to: UInt16.self, capacity: n)
            for i in 0..<n { h[i] = bfloat16Bits(src[i]) }
        case .q4_0, .q4_1:
            throw TrainError.shape("\(name): packing to \(format.rawValue) is not supported (bf16, f16, q8_0)")
        }
    }

    /// The packed matrix whose first weight is parameter `offset`, if that layer is packed.
    public func matrix(at offset: Int) -> PackedMatrix? { matrices[offset] }

    /// Linear layers read packed.
    public var matrixCount: Int { matrices.count }
}

/// How a frozen base's block matrices are stored while LoRA adapters train over it (`--base-weights`).
public enum BaseWeights: String, Sendable, Codable, CaseIterable {
    /// The model's f32 parameters (no packing).
    case f32
    /// Rounded to bfloat16 (2 bytes per weight).
    case bf16
    /// Q8_0 blocks (34 bytes per 32 weights).
    case q8_0
    /// A GGUF model's own blocks (Q8_0, Q4_0, Q4_1, F16), as stored.
    case gguf

    /// The packed format a matrix is rounded to (nil for f32 and gguf).
    public var format: PackedFormat? {
        switch self {
        case .bf16: return .bf16
        case .q8_0: return .q8_0
        case .f32, .gguf: return nil
        }
    }
}

/// bfloat16 bits of `x`, rounded to nearest even (NaN stays NaN).
@inline(__always) func bfloat16Bits(_ x: Float) -> UInt16 {
    let b = x.bitPattern
    if x.isNaN { return UInt16(b >> 16) | 0x40 }
    return UInt16((b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16)
}

/// Scratch rows lent to the packed kernel by one decoder, with the weights it reads.
public struct PackedLinearContext {
    /// The packed weights.
    public let weights: PackedWeights
    /// [slots, 4, widest input] floats.
    public let scratch: UnsafeMutablePointer<Float>
    /// Threads the scratch has room for.
    public let slots: Int
}

extension TransformerModel {
    /// Every linear layer's weight as (parameter offset, out, in): fused q|k|v, o, up (gate|up), down per
    /// block, then the LM head (the embedding when tied).
    public func linearWeights() -> [(offset: Int, outDim: Int, inDim: Int)] {
        let c = config, d = c.hiddenSize, hd = c.headDim
        let up = c.family == .gpt2 ? c.intermediateSize : 2 * c.intermediateSize
        var out: [(Int, Int, Int)] = []
        for o in layout.blocks {
            out.append((o.qkvW, (c.heads + 2 * c.kvHeads) * hd, d))
            out.append((o.oW, d, c.heads * hd))
            out.append((o.upW, up, d))
            out.append((o.downW, d, c.intermediateSize))
        }
        out.append((layout.lmHead, c.vocabSize, d))
        return out
    }
}
