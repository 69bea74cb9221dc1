import Foundation
import Support

/// One contiguous, zero-initialized Float allocation owned for the lifetime of the object.
///
/// Parameters, gradients, optimizer moments and activations each live in one of these, so a future
/// data-parallel all-reduce or a checkpoint write is a single call over `pointer[0..<count]`.
public final class FlatBuffer {
    /// Start of the storage (valid until deinit).
    public let pointer: UnsafeMutablePointer<Float>
    /// Number of floats.
    public let count: Int
    /// Changes with every `markChanged()`: copies derived from the contents (a model's bf16 weights) are redone
    /// when it differs from theirs. `zero`, `copyIn` and `AdamW.update` mark; writers through `pointer` call it.
    public private(set) var version: UInt64 = 0

    /// Allocates `count` floats, all zero.
    public init(count: Int) {
        self.count = count
        pointer = .allocate(capacity: Swift.max(count, 1))
        pointer.initialize(repeating: 0, count: Swift.max(count, 1))
    }

    deinit { pointer.deallocate() }

    /// Notes that the contents changed.
    public func markChanged() { version &+= 1 }

    /// Sets every element to zero (split over the compute pool).
    public func zero() {
        markChanged()
        ComputePool.shared.parallelFor(count, grain: 16, minPerThread: 1 << 16, pointer) { raw, lo, hi in
            (raw.load(as: UnsafeMutablePointer<Float>.self) + lo).update(repeating: 0, count: hi - lo)
        }
    }

    /// Sets the contents to `other`'s (same count; split over the compute pool).
    public func copy(from other: FlatBuffer) {
        precondition(other.count == count, "FlatBuffer.copy: \(other.count) floats into \(count)")
        markChanged()
        ComputePool.shared.parallelFor(count, grain: 16, minPerThread: 1 << 16, (pointer, other.pointer)) {
            raw, lo, hi in
            let (d, s) = raw.load(as: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>).self)
            (d + lo).update(from: s + lo, count: hi - lo)
        }
    }

    /// Adds `other` elementwise: self[i] = self[i] + other[i], one rounding per element.
    public func add(_ other: FlatBuffer) {
        precondition(other.count == count, "FlatBuffer.add: \(other.count) floats into \(count)")
        markChanged()
        ComputePool.shared.parallelFor(count, grain: 16, minPerThread: 1 << 16, (pointer, other.pointer)) {
            raw, lo, hi in
            let (d, s) = raw.load(as: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>).self)
            for i in lo..<hi { d[i] = d[i] + s[i] }
        }
    }

    /// Copies the contents out (tests, checkpoints).
    public func toArray() -> [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }

    /// Copies `values` in at `offset` (bounds are checked: the kernels' target has no traps).
    public func copyIn(_ values: [Float], at offset: Int = 0) throws {
        guard offset >= 0, values.count <= count - offset else {
            throw TrainError.shape("copy of \(values.count) floats at \(offset) exceeds buffer of \(count)")
        }
        markChanged()
        values.withUnsafeBufferPointer { (pointer + offset).update(from: $0.baseAddress!, count: $0.count) }
    }
}

/// Errors the training core reports instead of trapping.
public enum TrainError: Error, CustomStringConvertible {
    /// Sizes or ids that do not fit the model or buffers.
    case shape(String)
    /// Calls in the wrong order (for example backward without forward).
    case state(String)
    /// Something this CPU or build cannot do (bf16 without native instructions).
    case unsupported(String)

    /// Human-readable message.
    public var description: String {
        switch self {
        case .shape(let s): return "shape error: \(s)"
        case .state(let s): return "state error: \(s)"
        case .unsupported(let s): return s
        }
    }
}

/// Gaussian samples from Format's seeded generator, for model initialization.
extension SplitMix64 {
    /// A standard normal sample (Box-Muller).
    public mutating func nextGaussian() -> Double {
        let u1 = Double(next() >> 11 + 1) / Double(1 << 53)
        let u2 = Double(next() >> 11) / Double(1 << 53)
        return (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2)
    }
}

/// Sets `a` to `n` zeros, reusing its storage when it is large enough (a training step allocates nothing).
@inline(__always) func resizeReusingStorage(_ a: inout [Float], to n: Int) {
    if a.count == n { return }
    a.removeAll(keepingCapacity: true)
    a.append(contentsOf: repeatElement(0, count: n))
}
