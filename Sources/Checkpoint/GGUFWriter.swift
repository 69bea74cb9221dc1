import Foundation
import Support

/// A typed GGUF metadata value for writing: llama.cpp checks the exact type of every key it reads
/// (counts are u32, epsilons f32, token types an i32 array).
public enum GGUFMetadataValue: Sendable, Equatable {
    /// GGUF type 4.
    case uint32(UInt32)
    /// GGUF type 5.
    case int32(Int32)
    /// GGUF type 6.
    case float32(Float)
    /// GGUF type 7.
    case bool(Bool)
    /// GGUF type 8.
    case string(String)
    /// An array of strings (type 9 of 8).
    case stringArray([String])
    /// An array of i32 (type 9 of 5).
    case int32Array([Int32])
    /// An array of f32 (type 9 of 6).
    case float32Array([Float])
}

/// ggml tensor types oreo reads or writes.
public enum GGMLType: UInt32, Sendable {
    /// 32-bit float.
    case f32 = 0
    /// IEEE half.
    case f16 = 1
    /// 32 weights = f16 scale + 16 bytes of 4-bit values (read only).
    case q4_0 = 2
    /// 32 weights = f16 scale + f16 min + 16 bytes (read only).
    case q4_1 = 3
    /// 32 weights = f16 scale + 32 int8.
    case q8_0 = 8

    /// Elements per block and bytes per block.
    public var block: (elements: Int, bytes: Int) {
        switch self {
        case .f32: return (1, 4)
        case .f16: return (1, 2)
        case .q4_0: return (32, 18)
        case .q4_1: return (32, 20)
        case .q8_0: return (32, 34)
        }
    }
}

/// One tensor to write: PyTorch-order shape (written innermost first as GGUF's ne), values, storage type.
public struct GGUFTensorRecord: Sendable {
    /// llama.cpp tensor name.
    public var name: String
    /// Row-major shape (a [out, in] matrix is written with ne = [in, out]).
    public var shape: [Int]
    /// Values, row-major.
    public var values: [Float]
    /// Storage type (block types need the innermost dimension to be a multiple of 32).
    public var type: GGMLType
    /// Makes a record.
    public init(name: String, shape: [Int], values: [Float], type: GGMLType) {
        self.name = name
        self.shape = shape
        self.values = values
        self.type = type
    }
}

/// Quantizes values to ggml's Q8_0 as llama.cpp's reference quantizer does: per 32 values, d = max|x| / 127
/// stored as f16, q = round(x / d) (half away from zero) from the f32 d.
///
/// Shapes: values.count a multiple of 32; returns values.count / 32 * 34 bytes.
public func quantizeQ8_0(_ values: UnsafeBufferPointer<Float>) -> [UInt8] {
    let blocks = values.count / 32
    var out = [UInt8](repeating: 0, count: blocks * 34)
    out.withUnsafeMutableBytes { raw in
        for b in 0..<blocks {
            let x = values.baseAddress! + b * 32
            var amax: Float = 0
            for i in 0..<32 { amax = max(amax, abs(x[i])) }
            let d = amax / 127
            let id: Float = d != 0 ? 1 / d : 0
            let blk = raw.baseAddress! + b * 34
            blk.storeBytes(of: Float16(d).bitPattern.littleEndian, as: UInt16.self)
            for i in 0..<32 {
                blk.storeBytes(of: Int8((x[i] * id).rounded()), toByteOffset: 2 + i, as: Int8.self)
            }
        }
    }
    return out
}

/// Serializes GGUF v3: header, typed metadata, tensor infos, then each tensor's data aligned to `alignment`.
struct GGUFEncoder {
    private(set) var bytes: [UInt8] = []

    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func string(_ s: String) {
        let u = Array(s.utf8)
        u64(UInt64(u.count))
        bytes.append(contentsOf: u)
    }

    mutating func value(_ v: GGUFMetadataValue) {
        switch v {
        case .uint32(let x):
            u32(4)
            u32(x)
        case .int32(let x):
            u32(5)
            u32(UInt32(bitPattern: x))
        case .float32(let x):
            u32(6)
            u32(x.bitPattern)
        case .bool(let x):
            u32(7)
            bytes.append(x ? 1 : 0)
        case .string(let s):
            u32(8)
            string(s)
        case .stringArray(let a):
            u32(9)
            u32(8)
            u64(UInt64(a.count))
            for s in a { string(s) }
        case .int32Array(let a):
            u32(9)
            u32(5)
            u64(UInt64(a.count))
            for x in a { u32(UInt32(bitPattern: x)) }
        case .float32Array(let a):
            u32(9)
            u32(6)
            u64(UInt64(a.count))
            for x in a { u32(x.bitPattern) }
        }
    }
}

/// Bytes of one tensor's values in `type` (F32, F16 or Q8_0); overflowing F16 values are an error naming it.
func ggmlBytes(_ r: GGUFTensorRecord, file: String) throws -> [UInt8] {
    try r.values.withUnsafeBufferPointer { v in
        switch r.type {
        case .f32, .f16:
            var out: [UInt8] = []
            try appendFloats(v, as: r.type == .f32 ? .F32 : .F16, tensor: r.name, file: file, to: &out)
            return out
        case .q8_0:
            return quantizeQ8_0(v)
        case .q4_0, .q4_1:
            throw GGUFError.tensor(file: file, name: r.name, why: "writing \(r.type) is not supported (F32, F16, Q8_0)")
        }
    }
}

/// Writes a GGUF v3 file under a temporary name, renamed into place when complete. Metadata keys are written
/// in the given order; `general.alignment` is added when `alignment` is not the default 32.
public func writeGGUF(
    _ tensors: [GGUFTensorRecord], metadata: [(String, GGUFMetadataValue)], to path: String,
    alignment: Int = 32
) throws {
    guard alignment > 0, alignment % 8 == 0 else {
        throw GGUFError.invalid(file: path, why: "alignment \(alignment) must be a positive multiple of 8")
    }
    var meta = metadata
    if alignment != 32 { meta.append(("general.alignment", .uint32(UInt32(alignment)))) }
    var seenKeys = Set<String>()
    for (k, _) in meta where !seenKeys.insert(k).inserted {
        throw GGUFError.invalid(file: path, why: "duplicate metadata key \(k)")
    }
    var e = GGUFEncoder()
    e.u32(0x4655_4747)  // "GGUF"
    e.u32(3)
    e.u64(UInt64(tensors.count))
    e.u64(UInt64(meta.count))
    for (k, v) in meta {
        e.string(k)
        e.value(v)
    }
    func aligned(_ x: Int) -> Int { (x + alignment - 1) / alignment * alignment }
    var offset = 0
    var names = Set<String>()
    for t in tensors {
        guard names.insert(t.name).inserted else {
            throw GGUFError.tensor(file: path, name: t.name, why: "duplicate name")
        }
        guard !t.shape.isEmpty, t.shape.count <= 4, t.shape.allSatisfy({ $0 > 0 }),
            t.shape.reduce(1, *) == t.values.count
        else {
            throw GGUFError.tensor(
                file: path, name: t.name, why: "shape \(t.shape) does not fit \(t.values.count) values")
        }
        let (per, size) = t.type.block
        guard t.shape.last! % per == 0 else {
            throw GGUFError.tensor(
                file: path, name: t.name,
                why: "rows of \(t.shape.last!) are not a multiple of the \(t.type) block of \(per)")
        }
        e.string(t.name)
        e.u32(UInt32(t.shape.count))
        for d in t.shape.reversed() { e.u64(UInt64(d)) }
        e.u32(t.type.rawValue)
        e.u64(UInt64(offset))
        offset = aligned(offset + t.values.count / per * size)
    }
    let out = try AtomicOutput(path: path)
    try out.write(e.bytes)
    try out.pad(to: alignment)
    for t in tensors {
        try out.write(try ggmlBytes(t, file: path))
        try out.pad(to: alignment)
    }
    try out.commit()
}
