import Support

/// Memory for the ids of one encode call, owned by an encoder and reused across calls.
final class TokenStorage {
    private(set) var base: UnsafeMutablePointer<UInt32>
    private(set) var capacity: Int

    init() {
        capacity = 4096
        base = .allocate(capacity: capacity)
    }

    deinit { base.deallocate() }

    /// An empty sink over this storage with room for at least `count` ids.
    func sink(reserving count: Int) -> TokenSink {
        if count > capacity { grow(to: count, keeping: 0) }
        return TokenSink(storage: self, base: base, count: 0, capacity: capacity)
    }

    /// Reallocates to at least `minimum` ids, keeping the first `keeping`.
    func grow(to minimum: Int, keeping: Int) {
        let next = max(minimum, capacity * 2)
        let fresh = UnsafeMutablePointer<UInt32>.allocate(capacity: next)
        fresh.initialize(from: base, count: keeping)
        base.deallocate()
        base = fresh
        capacity = next
    }
}

/// Appends ids into a `TokenStorage` with a bounds check and no other bookkeeping.
struct TokenSink {
    let storage: TokenStorage
    private(set) var base: UnsafeMutablePointer<UInt32>
    private(set) var count: Int
    private(set) var capacity: Int

    init(storage: TokenStorage, base: UnsafeMutablePointer<UInt32>, count: Int, capacity: Int) {
        self.storage = storage
        self.base = base
        self.count = count
        self.capacity = capacity
    }

    /// Adds one id.
    @inline(__always)
    mutating func append(_ id: UInt32) {
        if count == capacity { grow() }
        base[count] = id
        count += 1
    }

    /// Adds ids in order.
    mutating func append(contentsOf ids: [UInt32]) {
        for id in ids { append(id) }
    }

    @inline(never)
    private mutating func grow() {
        storage.grow(to: capacity + 1, keeping: count)
        base = storage.base
        capacity = storage.capacity
    }
}
