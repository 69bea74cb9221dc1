import Foundation
import Support

/// Errors from reading or writing checkpoints; every message names the file (and tensor when there is one).
public enum SafeTensorsError: Error, CustomStringConvertible {
    /// The file's structure breaks the format's rules.
    case invalid(file: String, why: String)
    /// A tensor is missing, has the wrong shape, or an unsupported dtype.
    case tensor(file: String, name: String, why: String)
    /// The file could not be read or written.
    case io(file: String, why: String)

    /// Human-readable message.
    public var description: String {
        switch self {
        case let .invalid(f, w): return "\(f): \(w)"
        case let .tensor(f, n, w): return "\(f): tensor \"\(n)\": \(w)"
        case let .io(f, w): return w == FileReadError.missing ? "no such file: \(f)" : "\(f): \(w)"
        }
    }
}

extension JSONValue {
    /// The exact non-negative integer this number spells, if it is one.
    var nonNegativeInt: Int? { int.flatMap { $0 >= 0 ? $0 : nil } }
}

/// Element types safetensors files may declare.
public enum SafeTensorsDType: String, Sendable {
    case F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .F64, .I64: return 8
        case .F32, .I32: return 4
        case .F16, .BF16, .I16: return 2
        case .I8, .U8, .BOOL: return 1
        }
    }
}

/// One tensor's entry in a validated header.
public struct SafeTensorInfo: Sendable, Equatable {
    /// Tensor name.
    public let name: String
    /// Declared element type.
    public let dtype: SafeTensorsDType
    /// Shape (row-major).
    public let shape: [Int]
    /// Byte range in the data area, end exclusive.
    public let begin: Int, end: Int
    /// Element count.
    public var count: Int { shape.reduce(1, *) }
}

/// A validated, memory-mapped safetensors file.
public struct SafeTensorsFile: Sendable {
    /// Largest header accepted.
    public static let maxHeaderBytes = 100_000_000
    /// Where it was read from.
    public let path: String
    /// `__metadata__` strings.
    public let metadata: [String: String]
    /// Tensors in file order.
    public let tensors: [SafeTensorInfo]
    private let byName: [String: Int]
    private let data: Data
    private let dataStart: Int

    /// Opens and validates `path`: header size, JSON, dtypes, shapes, byte counts, contiguity, file size.
    public init(path: String) throws {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) } catch {
            throw SafeTensorsError.io(
                file: path,
                why: FileReadError(foundation: error, path: path)?.reason
                    ?? "cannot read: \(error.localizedDescription)")
        }
        try self.init(data: data, path: path)
    }

    /// Validates an in-memory file (`path` is only used in messages).
    public init(data: Data, path: String) throws {
        self.path = path
        self.data = data
        func bad(_ w: String) -> SafeTensorsError { .invalid(file: path, why: w) }
        guard data.count >= 8 else { throw bad("file of \(data.count) bytes is shorter than the 8-byte header length") }
        var n: UInt64 = 0
        data.withUnsafeBytes { raw in for k in 0..<8 { n |= UInt64(raw[k]) << (8 * UInt64(k)) } }
        guard n <= UInt64(Self.maxHeaderBytes) else {
            throw bad("header length \(n) exceeds \(Self.maxHeaderBytes) bytes")
        }
        guard n >= 2, Int(n) <= data.count - 8 else {
            throw bad("header length \(n) does not fit a file of \(data.count) bytes")
        }
        let headerLen = Int(n)
        dataStart = 8 + headerLen
        let header = data.withUnsafeBytes { Array($0[8..<(8 + headerLen)]) }
        var trimmed = header
        while let last = trimmed.last, last == 0x20 || last == 0 { trimmed.removeLast() }
        let root: JSONValue
        do { root = try StrictJSON.parse(trimmed, file: path) } catch {
            throw bad("header JSON at byte \(8 + error.offset) of the file: \(error.reason)")
        }
        guard case .object(let entries) = root else { throw bad("header is not a JSON object") }
        var meta: [String: String] = [:]
        var infos: [SafeTensorInfo] = []
        for (name, v) in entries {
            if name == "__metadata__" {
                guard case .object(let kv) = v else { throw bad("__metadata__ is not an object") }
                for (k, s) in kv {
                    guard case .string(let str) = s else { throw bad("__metadata__[\(k)] is not a string") }
                    meta[k] = str
                }
                continue
            }
            func tbad(_ w: String) -> SafeTensorsError { .tensor(file: path, name: name, why: w) }
            guard case .object(let fields) = v else { throw tbad("entry is not an object") }
            var dtype: SafeTensorsDType?, shape: [Int]?, offsets: [Int]?
            for (k, f) in fields {
                switch k {
                case "dtype":
                    guard case .string(let s) = f, let d = SafeTensorsDType(rawValue: s) else {
                        throw tbad("unknown dtype \(f.summary)")
                    }
                    dtype = d
                case "shape":
                    guard case .array(let a) = f else { throw tbad("shape is not an array") }
                    let dims = a.compactMap(\.nonNegativeInt)
                    guard dims.count == a.count else { throw tbad("shape has a non-integer or negative dimension") }
                    shape = dims
                case "data_offsets":
                    guard case .array(let a) = f, a.count == 2 else { throw tbad("data_offsets is not [begin, end]") }
                    let o = a.compactMap(\.nonNegativeInt)
                    guard o.count == 2 else { throw tbad("data_offsets are not non-negative integers") }
                    offsets = o
                default: throw tbad("unexpected field \"\(k)\"")
                }
            }
            guard let dtype, let shape, let offsets else { throw tbad("needs dtype, shape and data_offsets") }
            var elems = 1
            for d in shape {
                let (p, o) = elems.multipliedReportingOverflow(by: d)
                guard !o else { throw tbad("element count overflows") }
                elems = p
            }
            let (bytes, o) = elems.multipliedReportingOverflow(by: dtype.size)
            guard !o, offsets[0] <= offsets[1], offsets[1] - offsets[0] == bytes else {
                throw tbad(
                    "data_offsets \(offsets) hold \(offsets[1] &- offsets[0]) bytes; shape \(shape) of \(dtype.rawValue) needs \(bytes)"
                )
            }
            infos.append(SafeTensorInfo(name: name, dtype: dtype, shape: shape, begin: offsets[0], end: offsets[1]))
        }
        let dataSize = data.count - dataStart
        var cursor = 0
        for t in infos.sorted(by: { ($0.begin, $0.end) < ($1.begin, $1.end) }) {
            guard t.begin == cursor else {
                throw SafeTensorsError.tensor(
                    file: path, name: t.name,
                    why: t.begin > cursor
                        ? "gap in data before byte \(t.begin) (expected \(cursor))"
                        : "overlaps the previous tensor at byte \(t.begin)")
            }
            cursor = t.end
        }
        guard cursor == dataSize else { throw bad("tensors cover \(cursor) data bytes but the file holds \(dataSize)") }
        metadata = meta
        tensors = infos
        var idx: [String: Int] = [:]
        for (i, t) in infos.enumerated() { idx[t.name] = i }
        byName = idx
    }

    /// The header entry named `name`.
    public func info(_ name: String) -> SafeTensorInfo? { byName[name].map { tensors[$0] } }

    /// Tensor `name` converted to Float32 (F32, F16 and BF16 supported).
    public func floats(_ name: String) throws -> [Float] {
        guard let t = info(name) else { throw SafeTensorsError.tensor(file: path, name: name, why: "not in file") }
        let n = t.count
        var out = [Float](repeating: 0, count: n)
        let start = dataStart + t.begin
        try data.withUnsafeBytes { raw in
            guard start >= 0, start + (t.end - t.begin) <= raw.count else {
                throw SafeTensorsError.tensor(file: path, name: name, why: "data out of bounds")
            }
            let base = raw.baseAddress! + start
            try out.withUnsafeMutableBufferPointer { o in
                switch t.dtype {
                case .F32: for i in 0..<n { o[i] = base.loadUnaligned(fromByteOffset: 4 * i, as: Float.self) }
                case .F16:
                    for i in 0..<n {
                        o[i] = Float(Float16(bitPattern: base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
                    }
                case .BF16:
                    for i in 0..<n {
                        o[i] = Float(
                            bitPattern: UInt32(base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16)
                    }
                default:
                    throw SafeTensorsError.tensor(
                        file: path, name: name, why: "dtype \(t.dtype.rawValue) is not a float type")
                }
            }
        }
        return out
    }

    /// Raw little-endian bytes of tensor `name` (integer tensors such as fixture batches).
    public func int64s(_ name: String) throws -> [Int64] {
        guard let t = info(name) else { throw SafeTensorsError.tensor(file: path, name: name, why: "not in file") }
        let start = dataStart + t.begin
        return try data.withUnsafeBytes { raw in
            guard start + (t.end - t.begin) <= raw.count else {
                throw SafeTensorsError.tensor(file: path, name: name, why: "data out of bounds")
            }
            let base = raw.baseAddress! + start
            switch t.dtype {
            case .I64: return (0..<t.count).map { base.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self) }
            case .I32: return (0..<t.count).map { Int64(base.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
            default:
                throw SafeTensorsError.tensor(file: path, name: name, why: "dtype \(t.dtype.rawValue) is not I32/I64")
            }
        }
    }
}

/// One tensor to write: name, shape, values (stored as F32, F16 or BF16, rounded to nearest even).
public struct SafeTensorsRecord: Sendable {
    /// Tensor name.
    public var name: String
    /// Shape.
    public var shape: [Int]
    /// Values, row-major.
    public var values: [Float]
    /// Makes a record.
    public init(name: String, shape: [Int], values: [Float]) {
        self.name = name
        self.shape = shape
        self.values = values
    }
}

/// Rounds an F32 to BF16 bits, nearest-even (NaN stays NaN).
public func bfloat16Bits(_ x: Float) -> UInt16 {
    let b = x.bitPattern
    if x.isNaN { return UInt16(b >> 16) | 0x40 }
    let rounded = b &+ 0x7FFF &+ ((b >> 16) & 1)
    return UInt16(rounded >> 16)
}

/// Appends `values` as little-endian F32, F16 or BF16 (nearest-even rounding) to `out`. A finite value too large
/// for the narrower type is an error naming `tensor`, not a silent infinity.
func appendFloats(
    _ values: UnsafeBufferPointer<Float>, as dtype: SafeTensorsDType, tensor: String, file: String,
    to out: inout [UInt8]
) throws {
    let start = out.count
    out.append(contentsOf: repeatElement(0, count: values.count * dtype.size))
    try out.withUnsafeMutableBytes { raw in
        let dst = raw.baseAddress! + start
        switch dtype {
        case .F32:
            for (i, v) in values.enumerated() {
                dst.storeBytes(of: v.bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self)
            }
        case .F16, .BF16:
            for (i, v) in values.enumerated() {
                let bits = dtype == .F16 ? Float16(v).bitPattern : bfloat16Bits(v)
                let back = dtype == .F16 ? Float(Float16(bitPattern: bits)) : Float(bitPattern: UInt32(bits) << 16)
                if v.isFinite && !back.isFinite {
                    throw SafeTensorsError.tensor(
                        file: file, name: tensor,
                        why: "value \(v) at element \(i) overflows \(dtype.rawValue)")
                }
                dst.storeBytes(of: bits.littleEndian, toByteOffset: 2 * i, as: UInt16.self)
            }
        default:
            throw SafeTensorsError.invalid(file: file, why: "can only write F32, F16 or BF16, not \(dtype.rawValue)")
        }
    }
}

/// The header bytes (length prefix + JSON padded with spaces to a multiple of 8) for `records` stored as `dtype`.
func safeTensorsHeader(
    _ records: [SafeTensorsRecord], metadata: [String: String], dtype: SafeTensorsDType,
    file: String
) throws -> [UInt8] {
    guard dtype == .F32 || dtype == .F16 || dtype == .BF16 else {
        throw SafeTensorsError.invalid(file: file, why: "can only write F32, F16 or BF16, not \(dtype.rawValue)")
    }
    var parts: [String] = []
    if !metadata.isEmpty {
        parts.append(
            "\"__metadata__\":{"
                + metadata.sorted { $0.key < $1.key }.map {
                    jsonStringLiteral($0.key) + ":" + jsonStringLiteral($0.value)
                }.joined(separator: ",") + "}")
    }
    var offset = 0
    var seen = Set<String>()
    for r in records {
        guard seen.insert(r.name).inserted else {
            throw SafeTensorsError.tensor(file: file, name: r.name, why: "duplicate name")
        }
        guard r.shape.reduce(1, *) == r.values.count else {
            throw SafeTensorsError.tensor(
                file: file, name: r.name, why: "shape \(r.shape) does not match \(r.values.count) values")
        }
        let bytes = r.values.count * dtype.size
        parts.append(
            "\(jsonStringLiteral(r.name)):{\"dtype\":\"\(dtype.rawValue)\",\"shape\":[\(r.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + bytes)]}"
        )
        offset += bytes
    }
    var header = Array(("{" + parts.joined(separator: ",") + "}").utf8)
    while header.count % 8 != 0 { header.append(0x20) }
    return withUnsafeBytes(of: UInt64(header.count).littleEndian) { Array($0) } + header
}

/// Serializes records into safetensors bytes in memory (tests, small files).
public func encodeSafeTensors(
    _ records: [SafeTensorsRecord], metadata: [String: String] = [:],
    dtype: SafeTensorsDType = .F32
) throws -> Data {
    var out = try safeTensorsHeader(records, metadata: metadata, dtype: dtype, file: "<memory>")
    for r in records {
        try r.values.withUnsafeBufferPointer {
            try appendFloats($0, as: dtype, tensor: r.name, file: "<memory>", to: &out)
        }
    }
    return Data(out)
}

/// Writes records to `path` as one safetensors file, tensor by tensor, under a temporary name renamed into
/// place when complete (an interrupted write leaves any previous file intact).
public func writeSafeTensors(
    _ records: [SafeTensorsRecord], to path: String, metadata: [String: String] = [:],
    dtype: SafeTensorsDType = .F32
) throws {
    let out = try AtomicOutput(path: path)
    try out.write(try safeTensorsHeader(records, metadata: metadata, dtype: dtype, file: path))
    var bytes: [UInt8] = []
    for r in records {
        bytes.removeAll(keepingCapacity: true)
        try r.values.withUnsafeBufferPointer { try appendFloats($0, as: dtype, tensor: r.name, file: path, to: &bytes) }
        try out.write(bytes)
    }
    try out.commit()
}
