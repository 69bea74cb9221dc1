import Support

extension UTF8Scan {
    /// Class and byte length of the scalar at `i`, from `ct` (`ScalarClass.table`) when it covers it.
    @inline(__always)
    static func classAt(_ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ ct: UnsafePointer<UInt8>) -> (
        cls: UInt8, length: Int
    ) {
        let c0 = b[i]
        if c0 < 0x80 { return (ct[Int(c0)], 1) }
        let (v, len) = decode(b, i)
        return (v < ScalarClass.tableLimit ? ct[Int(v)] : ScalarClass.compute(v), len)
    }
}
