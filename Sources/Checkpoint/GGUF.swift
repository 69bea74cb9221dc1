import Foundation
import Support

/// Errors from reading or writing GGUF files; every message names the file (and the tensor or metadata key).
public enum GGUFError: Error, CustomStringConvertible, Equatable {
    /// The file's structure breaks the format's rules.
    case invalid(file: String, why: String)
    /// A metadata value is missing, of the wrong type, or out of range.
    case metadata(file: String, key: String, why: String)
    /// A tensor is missing, has the wrong shape, an unsupported type, or values that cannot be weights.
    case tensor(file: String, name: String, why: String)
    /// The file could not be read or written.
    case io(file: String, why: String)

    /// One line naming the file and what is wrong.
    public var description: String {
        switch self {
        case let .invalid(f, w): return "\(f): \(w)"
        case let .metadata(f, k, w): return "\(f): metadata \(k): \(w)"
        case let .tensor(f, n, w): return "\(f): tensor \"\(n)\": \(w)"
        case let .io(f, w): return "\(f): \(w)"
        }
    }
}

/// The index of the first NaN or infinity in `values`, if any (model weights are finite).
func firstNonFinite(_ values: [Float]) -> Int? {
    values.withUnsafeBufferPointer { v in
        // The largest exponent field is all ones only for NaN or infinity: an integer max vectorizes.
        var top: UInt32 = 0
        for x in v { top = max(top, x.bitPattern & 0x7F80_0000) }
        return top == 0x7F80_0000 ? v.firstIndex { !$0.isFinite } : nil
    }
}

/// A metadata value from a GGUF file (arrays of scalars are kept; nested arrays are skipped).
public enum GGUFValue: Sendable {
    /// Any integer type.
    case int(Int64)
    /// f32 / f64.
    case float(Double)
    /// bool.
    case bool(Bool)
    /// string.
    case string(String)
    /// An array (element values; strings or numbers).
    case array([GGUFValue])

    /// Integer view.
    public var int: Int? {
        if case .int(let v) = self { return Int(exactly: v) }
        return nil
    }
    /// What this value is, for messages.
    public var summary: String {
        switch self {
        case .int(let i): return "the integer \(i)"
        case .float(let d): return "the number \(d)"
        case .bool(let b): return "the boolean \(b)"
        case .string(let s): return s.count <= 40 ? "the string \(s.debugDescription)" : "a string"
        case .array(let a): return "an array of \(a.count)"
        }
    }
    /// Floating view (integers convert).
    public var double: Double? {
        switch self {
        case .float(let d): return d
        case .int(let i): return Double(i)
        default: return nil
        }
    }
}

/// One tensor's header entry in a GGUF file.
public struct GGUFTensorInfo: Sendable {
    /// GGUF (llama.cpp) tensor name.
    public let name: String
    /// Dimensions innermost first (a PyTorch [out, in] matrix has ne = [in, out]).
    public let ne: [Int]
    /// ggml type id.
    public let type: UInt32
    /// Offset from the start of the aligned data area.
    public let offset: Int
    /// Element count.
    public var count: Int { ne.reduce(1, *) }
}

/// A validated GGUF v2/v3 file that can dequantize F32, F16, Q8_0, Q4_0 and Q4_1 tensors to Float.
public struct GGUFFile: Sendable {
    /// Where it was read from.
    public let path: String
    /// Metadata key/values.
    public let metadata: [String: GGUFValue]
    /// Tensor infos in file order.
    public let tensors: [GGUFTensorInfo]
    private let byName: [String: Int]
    private let data: Data
    private let dataStart: Int

    /// Bytes per block and elements per block of the supported ggml types.
    static func blockLayout(_ type: UInt32) -> (bytes: Int, elems: Int)? {
        GGMLType(rawValue: type).map { ($0.block.bytes, $0.block.elements) }
    }

    /// Bounds-checked little-endian reader over untrusted bytes.
    struct Reader {
        let raw: UnsafeRawBufferPointer
        var pos = 0
        let path: String
        func fail(_ why: String) -> GGUFError { .invalid(file: path, why: "GGUF at byte \(pos): \(why)") }
        mutating func take(_ n: Int) throws -> Int {
            guard n >= 0, n <= raw.count - pos else { throw fail("read of \(n) bytes past the end") }
            defer { pos += n }
            return pos
        }
        mutating func u8() throws -> UInt8 { raw[try take(1)] }
        mutating func u32() throws -> UInt32 { raw.loadUnaligned(fromByteOffset: try take(4), as: UInt32.self) }
        mutating func u64() throws -> UInt64 { raw.loadUnaligned(fromByteOffset: try take(8), as: UInt64.self) }
        mutating func count(_ limit: Int, _ what: String) throws -> Int {
            let v = try u64()
            guard v <= UInt64(limit) else { throw fail("\(what) \(v) exceeds \(limit)") }
            return Int(v)
        }
        mutating func string() throws -> String {
            let n = try count(raw.count - pos, "string length")
            let s = try take(n)
            return String(decoding: UnsafeRawBufferPointer(rebasing: raw[s..<(s + n)]), as: UTF8.self)
        }
        mutating func value(type: UInt32, depth: Int) throws -> GGUFValue? {
            switch type {
            case 0: return .int(Int64(try u8()))
            case 1: return .int(Int64(Int8(bitPattern: try u8())))
            case 2: return .int(Int64(raw.loadUnaligned(fromByteOffset: try take(2), as: UInt16.self)))
            case 3: return .int(Int64(raw.loadUnaligned(fromByteOffset: try take(2), as: Int16.self)))
            case 4: return .int(Int64(try u32()))
            case 5: return .int(Int64(Int32(bitPattern: try u32())))
            case 6: return .float(Double(Float(bitPattern: try u32())))
            case 7: return .bool(try u8() != 0)
            case 8: return .string(try string())
            case 9:
                guard depth < 2 else { throw fail("nested arrays too deep") }
                let et = try u32()
                let n = try count(raw.count - pos, "array length")
                var out: [GGUFValue] = []
                out.reserveCapacity(min(n, 1 << 20))
                for _ in 0..<n { if let v = try value(type: et, depth: depth + 1) { out.append(v) } }
                return .array(out)
            case 10: return .int(Int64(bitPattern: try u64()))
            case 11: return .int(Int64(bitPattern: try u64()))
            case 12: return .float(Double(bitPattern: try u64()))
            default: throw fail("unknown metadata type \(type)")
            }
        }
    }

    /// Opens and validates `path`: magic, version, counts, tensor extents within the file.
    public init(path: String) throws {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) } catch {
            throw GGUFError.io(
                file: path,
                why: FileReadError(foundation: error, path: path)?.reason
                    ?? "cannot read: \(error.localizedDescription)")
        }
        self.path = path
        self.data = data
        var meta: [String: GGUFValue] = [:]
        var infos: [GGUFTensorInfo] = []
        var start = 0
        try data.withUnsafeBytes { raw in
            var r = Reader(raw: raw, path: path)
            guard try r.u32() == 0x4655_4747 else { throw r.fail("bad magic (not a GGUF file)") }
            let version = try r.u32()
            guard version == 2 || version == 3 else { throw r.fail("unsupported version \(version)") }
            let nt = try r.count(1 << 20, "tensor count"), nkv = try r.count(1 << 20, "metadata count")
            var keys = Set<String>()
            for _ in 0..<nkv {
                let keyAt = r.pos
                let k = try r.string()
                // A repeated key has no single meaning (readers differ on which copy counts): refuse it.
                guard keys.insert(k).inserted else {
                    throw GGUFError.metadata(file: path, key: k, why: "appears twice (second time at byte \(keyAt))")
                }
                let t = try r.u32()
                if let v = try r.value(type: t, depth: 0) { meta[k] = v }
            }
            for _ in 0..<nt {
                let name = try r.string()
                let nd = Int(try r.u32())
                guard nd >= 1 && nd <= 4 else { throw r.fail("tensor \(name): \(nd) dimensions") }
                var ne: [Int] = []
                for _ in 0..<nd { ne.append(try r.count(1 << 40, "dimension of \(name)")) }
                let type = try r.u32()
                let off = try r.count(1 << 48, "offset of \(name)")
                infos.append(GGUFTensorInfo(name: name, ne: ne, type: type, offset: off))
            }
            let align = meta["general.alignment"]?.int ?? 32
            guard align > 0 && align <= 1 << 16 else { throw r.fail("alignment \(align)") }
            start = (r.pos + align - 1) / align * align
        }
        var idx: [String: Int] = [:]
        for (i, t) in infos.enumerated() {
            func bad(_ w: String) -> GGUFError { .tensor(file: path, name: t.name, why: w) }
            guard idx[t.name] == nil else { throw bad("duplicate tensor name") }
            idx[t.name] = i
            var elems = 1
            for d in t.ne {
                let (p, o) = elems.multipliedReportingOverflow(by: d)
                guard !o else { throw bad("element count overflows") }
                elems = p
            }
            if let (bytes, per) = Self.blockLayout(t.type) {
                guard t.ne[0] % per == 0 else { throw bad("row of \(t.ne[0]) not a multiple of the block size \(per)") }
                let (size, o) = (elems / per).multipliedReportingOverflow(by: bytes)
                guard !o else { throw bad("byte count overflows") }
                guard start <= data.count, t.offset <= data.count - start, size <= data.count - start - t.offset else {
                    throw bad("data [\(t.offset), +\(size)) runs past the end of the file")
                }
            }
        }
        metadata = meta
        tensors = infos
        byName = idx
        dataStart = start
    }

    /// The header entry of `name`.
    public func info(_ name: String) -> GGUFTensorInfo? { byName[name].map { tensors[$0] } }

    /// Calls `body` with the stored bytes of tensor `name` (its blocks as the file holds them, bounds checked
    /// when the file was opened).
    public func withStoredBytes<R>(of name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        guard let t = info(name) else { throw GGUFError.tensor(file: path, name: name, why: "not in file") }
        guard let (bytes, per) = Self.blockLayout(t.type) else {
            throw GGUFError.tensor(
                file: path, name: name, why: "ggml type \(t.type) not supported (F32, F16, Q8_0, Q4_0, Q4_1)")
        }
        return try data.withUnsafeBytes { raw in
            try body(
                UnsafeRawBufferPointer(
                    rebasing: raw[(dataStart + t.offset)..<(dataStart + t.offset + t.count / per * bytes)]))
        }
    }

    /// Tensor `name` dequantized to Float, in row-major order of the PyTorch shape (ne reversed).
    public func floats(_ name: String) throws -> [Float] {
        guard let t = info(name) else { throw GGUFError.tensor(file: path, name: name, why: "not in file") }
        guard let (bytes, per) = Self.blockLayout(t.type) else {
            throw GGUFError.tensor(
                file: path, name: name, why: "ggml type \(t.type) not supported (F32, F16, Q8_0, Q4_0, Q4_1)")
        }
        let n = t.count
        var out = [Float](repeating: 0, count: n)
        data.withUnsafeBytes { raw in
            let base = raw.baseAddress! + dataStart + t.offset
            out.withUnsafeMutableBufferPointer { o in
                func half(_ p: UnsafeRawPointer) -> Float {
                    Float(Float16(bitPattern: p.loadUnaligned(as: UInt16.self)))
                }
                for b in 0..<(n / per) {
                    let blk = base + b * bytes
                    let dst = b * per
                    switch t.type {
                    case 0: o[dst] = blk.loadUnaligned(as: Float.self)
                    case 1: o[dst] = half(blk)
                    case 8:
                        let d = half(blk)
                        for i in 0..<32 {
                            o[dst + i] = d * Float(Int8(bitPattern: blk.load(fromByteOffset: 2 + i, as: UInt8.self)))
                        }
                    case 2:
                        let d = half(blk)
                        for i in 0..<16 {
                            let q = blk.load(fromByteOffset: 2 + i, as: UInt8.self)
                            o[dst + i] = d * Float(Int(q & 0xF) - 8)
                            o[dst + 16 + i] = d * Float(Int(q >> 4) - 8)
                        }
                    default:  // 3: Q4_1
                        let d = half(blk), m = half(blk + 2)
                        for i in 0..<16 {
                            let q = blk.load(fromByteOffset: 4 + i, as: UInt8.self)
                            o[dst + i] = d * Float(q & 0xF) + m
                            o[dst + 16 + i] = d * Float(q >> 4) + m
                        }
                    }
                }
            }
        }
        // A relabelled type or corrupt scales read as NaN or infinity: refuse them here, where the tensor can be
        // named, rather than as a non-finite loss or an unwritable JSON number later.
        if let bad = firstNonFinite(out) {
            throw GGUFError.tensor(
                file: path, name: name,
                why: "element \(bad) is \(out[bad]) (ggml type \(t.type)): the tensor's type or data is corrupt")
        }
        return out
    }

    /// Reverses llama.cpp's q/k row permutation (rotary pairs adjacent) back to HF's rotate_half order:
    /// within each head, HF row i * hd/2 + j is GGUF row 2j + i.
    public static func unpermuteRotary(_ w: [Float], heads: Int, rowsPerHead hd: Int, cols: Int) -> [Float] {
        rotaryRows(w, heads: heads, rowsPerHead: hd, cols: cols, toGGUF: false)
    }

    /// Applies llama.cpp's q/k row permutation (HF rotate_half order -> rotary pairs adjacent).
    public static func permuteRotary(_ w: [Float], heads: Int, rowsPerHead hd: Int, cols: Int) -> [Float] {
        rotaryRows(w, heads: heads, rowsPerHead: hd, cols: cols, toGGUF: true)
    }

    /// Moves rows between HF row i * hd/2 + j and GGUF row 2j + i within each head.
    static func rotaryRows(_ w: [Float], heads: Int, rowsPerHead hd: Int, cols: Int, toGGUF: Bool) -> [Float] {
        var out = w
        let half = hd / 2
        for h in 0..<heads {
            for i in 0..<2 {
                for j in 0..<half {
                    let hf = (h * hd + i * half + j) * cols, gg = (h * hd + 2 * j + i) * cols
                    let (src, dst) = toGGUF ? (hf, gg) : (gg, hf)
                    for c in 0..<cols { out[dst + c] = w[src + c] }
                }
            }
        }
        return out
    }
}
