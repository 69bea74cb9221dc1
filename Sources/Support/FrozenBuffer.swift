/// An array copied into memory this object owns and never changes, so hot loops can read it
/// through a plain pointer (no bounds checks, retains or lazy-global checks) while the owner lives.
public final class FrozenBuffer<Element: BitwiseCopyable>: @unchecked Sendable {
    // @unchecked: the memory is written once in init and only read afterwards.
    @usableFromInline let base: UnsafeMutablePointer<Element>
    /// Number of elements.
    public let count: Int

    /// Copies `values`.
    public init(_ values: [Element]) {
        count = values.count
        base = .allocate(capacity: max(values.count, 1))
        values.withUnsafeBufferPointer { src in
            if let p = src.baseAddress { base.initialize(from: p, count: src.count) }
        }
    }

    deinit { base.deallocate() }

    /// The elements; valid for as long as this object is alive.
    @inlinable public var pointer: UnsafePointer<Element> { UnsafePointer(base) }
}
