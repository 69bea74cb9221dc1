/// Binary min-heap operations on an array the caller owns (so its storage is reused across calls and a hot
/// loop allocates nothing once the array has grown): the smallest element is `heap[0]`.
public enum MinHeap {
    /// Adds `value`, restoring the heap order by moving it up.
    @inlinable
    public static func push<T: Comparable>(_ heap: inout [T], _ value: T) {
        heap.append(value)
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if heap[parent] <= heap[i] { break }
            heap.swapAt(parent, i)
            i = parent
        }
    }

    /// Removes and returns the smallest element, or nil when the heap is empty.
    @inlinable
    public static func pop<T: Comparable>(_ heap: inout [T]) -> T? {
        guard let top = heap.first else { return nil }
        let last = heap.removeLast()
        if heap.isEmpty { return top }
        heap[0] = last
        siftDown(&heap, from: 0)
        return top
    }

    /// Replaces the smallest element with `value` and restores the order (a pop and a push in one pass).
    @inlinable
    public static func replaceTop<T: Comparable>(_ heap: inout [T], with value: T) {
        heap[0] = value
        siftDown(&heap, from: 0)
    }

    /// Moves the element at `start` down until neither child is smaller.
    @inlinable
    public static func siftDown<T: Comparable>(_ heap: inout [T], from start: Int) {
        var i = start
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < heap.count && heap[l] < heap[m] { m = l }
            if r < heap.count && heap[r] < heap[m] { m = r }
            if m == i { return }
            heap.swapAt(i, m)
            i = m
        }
    }
}
